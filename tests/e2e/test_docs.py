"""The docs keep up with the code: every setting and every route is documented."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from sluicegate.config import schema
from sluicegate.server.routes import ROUTES

ROOT = Path(__file__).resolve().parents[2]


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_every_config_field_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.M))
    models: list[type[BaseModel]] = [
        schema.ServerConfig,
        schema.DatabaseConfig,
        schema.AuthConfig,
        schema.ModelConfig,
        schema.OpenAIDeployment,
        schema.AnthropicDeployment,
        schema.LocalDeployment,
    ]
    missing = set()
    for model in models:
        for name in _fields(model):
            if name == "timeouts":
                continue
            if name not in documented:
                missing.add(f"{model.__name__}.{name}")
    for name in _fields(schema.Timeouts):
        if f"timeouts.{name}" not in documented:
            missing.add(f"Timeouts.{name}")
    assert not missing, f"undocumented settings: {sorted(missing)}"


def test_every_route_is_documented() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for route in ROUTES:
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            assert f"`{method} {route.path}`" in api, f"{method} {route.path} not in docs/api.md"
            # The README names the admin API once; docs/api.md lists its routes.
            shown = "/admin/" if route.path.startswith("/admin/") else route.path
            assert shown in readme, f"{shown} not in README.md"


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        assert (ROOT / target).exists(), f"README links to missing {target}"


def test_readme_gives_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _undocumented(page: str, models: list[type[BaseModel]]) -> list[str]:
    """Fields of ``models`` that ``docs/<page>`` names neither as `field` nor as field:."""
    text = (ROOT / "docs" / page).read_text()
    return [
        f"{model.__name__}.{name}"
        for model in models
        for name in _fields(model)
        if f"`{name}`" not in text and f"{name}:" not in text
    ]


def test_every_routing_setting_is_documented() -> None:
    from sluicegate.config import routing

    missing = _undocumented(
        "routing.md",
        [
            routing.RoutingConfig,
            routing.RetryConfig,
            routing.QueueConfig,
            routing.HealthConfig,
            routing.BreakerConfig,
        ],
    )
    assert not missing, f"not in docs/routing.md: {missing}"


def test_every_governance_setting_is_documented() -> None:
    from sluicegate.config import governance

    missing = _undocumented(
        "governance.md",
        [
            governance.GovernanceConfig,
            governance.LimitsConfig,
            governance.IpLimitsConfig,
            governance.BudgetActionsConfig,
            governance.OrgConfig,
            governance.PricingConfig,
            schema.StaticKey,
        ],
    )
    assert not missing, f"not in docs/governance.md: {missing}"


def test_every_data_protection_setting_is_documented() -> None:
    from sluicegate.config import audit, safety

    missing = _undocumented(
        "data-protection.md",
        [
            audit.AuditConfig,
            safety.SafetyConfig,
            safety.SensitivityConfig,
            safety.SensitivityRule,
            safety.OrgSafetyConfig,
            safety.PiiConfig,
            safety.GuardrailsConfig,
        ],
    )
    assert not missing, f"not in docs/data-protection.md: {missing}"
