"""config: a deployment's engine_metrics block."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluicegate.config.routing import EngineMetricsConfig
from sluicegate.config.schema import Config, OpenAIDeployment


def test_off_by_default() -> None:
    dep = OpenAIDeployment(provider="openai", base_url="http://vllm:8000/v1")
    assert dep.engine_metrics.path is None


def test_figures_stay_fresh_three_intervals_unless_told() -> None:
    assert EngineMetricsConfig(path="/metrics", interval=5).fresh_for == 15
    assert EngineMetricsConfig(path="/metrics", interval=5, stale_after=7).fresh_for == 7


def test_path_must_be_absolute() -> None:
    with pytest.raises(ValidationError, match="must start with '/'"):
        EngineMetricsConfig(path="metrics")


def test_figures_must_outlive_one_interval() -> None:
    with pytest.raises(ValidationError, match="longer than interval"):
        EngineMetricsConfig(path="/metrics", interval=5, stale_after=5)


def test_local_deployments_have_nothing_to_scrape() -> None:
    raw = {
        "models": [
            {
                "name": "local",
                "deployments": [
                    {
                        "provider": "local",
                        "path": "builtin:smollm2",
                        "engine_metrics": {"path": "/metrics"},
                    }
                ],
            }
        ]
    }
    with pytest.raises(ValidationError, match="engine_metrics needs an HTTP deployment"):
        Config.model_validate(raw)


def test_a_url_names_metrics_on_another_port() -> None:
    tei = EngineMetricsConfig(url="http://tei:9000/metrics")
    assert tei.enabled and tei.path is None
    assert not EngineMetricsConfig().enabled
    with pytest.raises(ValidationError, match="path or url, not both"):
        EngineMetricsConfig(path="/metrics", url="http://tei:9000/metrics")
    with pytest.raises(ValidationError, match="must start with http"):
        EngineMetricsConfig(url="tei:9000/metrics")
