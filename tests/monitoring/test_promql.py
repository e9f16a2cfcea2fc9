"""The PromQL name reader the monitoring checks rely on: it must find every metric and
nothing else, or those checks pass for the wrong reasons."""

from __future__ import annotations

import pytest

from tests.monitoring.promql import metric_names, variables


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ("up == 0", {"up"}),
        (
            'sum by (model, le) (rate(a_bucket{model=~"$model", le!="+Inf"}[$__rate_interval]))',
            {"a_bucket"},
        ),
        ("histogram_quantile(0.95, sum(rate(a_bucket[5m])) by (le))", {"a_bucket"}),
        ("a / on (x) group_left (y) b offset 1h", {"a", "b"}),
        ("a * ignoring(code) group_right b", {"a", "b"}),
        ('vllm:num_requests_running{model_name="m"} > bool 3', {"vllm:num_requests_running"}),
        ("max_over_time(x[10m:1m]) unless y @ start()", {"x", "y"}),
        ('label_replace(up, "dst", "$1", "src", "(.*)") or vector(0)', {"up"}),
        ('a{b="}{", c=~"by (x)"} and without_total', {"a", "without_total"}),
        ("sum without (instance) (a) > 1e-3 * inf", {"a"}),
        ("(a or b * 0) / a", {"a", "b"}),
        (
            "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > 0.9",
            {"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"},
        ),
    ],
)
def test_metric_names_are_found(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize("expr", ["sum(rate(a[5m])", 'a{b="c"', "rate(a[5m)]", "a # b"])
def test_what_it_cannot_read_raises(expr: str) -> None:
    with pytest.raises(ValueError):
        metric_names(expr)


def test_variables_are_found_in_selectors_and_ranges() -> None:
    expr = 'sum(rate(a{org=~"$org", m="${model}"}[$__rate_interval])) by ($group)'
    assert variables(expr) == {"org", "model", "group"}
