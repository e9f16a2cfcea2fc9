"""Request bodies of the admin API, validated before anything touches the database."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from sluicegate.config.governance import LimitsConfig

__all__ = [
    "AccountCreate",
    "KeyCreate",
    "KeyRotate",
    "KeyUpdate",
    "LimitsUpdate",
    "OrgCreate",
    "RoleCreate",
    "RoleUpdate",
    "TeamCreate",
]

#: Names of orgs, teams, accounts and roles: they appear in URLs and limit scopes.
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
DataAccess = Literal["public", "internal", "confidential", "restricted"]
LlmAccess = Literal["local", "cloud"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrgCreate(_Body):
    name: str = Field(pattern=NAME)
    limits: LimitsConfig = LimitsConfig()


class LimitsUpdate(_Body):
    """Replaces the limits of an org, team or key (unset fields become unlimited)."""

    limits: LimitsConfig


class TeamCreate(_Body):
    name: str = Field(pattern=NAME)
    limits: LimitsConfig = LimitsConfig()


class AccountCreate(_Body):
    """A user or a service account, to which keys can be issued."""

    name: str = Field(pattern=NAME)
    kind: Literal["user", "service"] = "user"
    email: str | None = Field(None, max_length=200)
    team: str | None = None


class RoleCreate(_Body):
    name: str = Field(pattern=NAME, max_length=50)
    description: str = Field("", max_length=200)
    models: list[str] = Field(["*"], description="model names or fnmatch patterns; * for all")
    llm_access: list[LlmAccess] = Field(["local", "cloud"], min_length=1)
    data_access: DataAccess = "internal"
    admin: bool = Field(False, description="may use the admin API")


class RoleUpdate(_Body):
    description: str | None = Field(None, max_length=200)
    models: list[str] | None = None
    llm_access: list[LlmAccess] | None = Field(None, min_length=1)
    data_access: DataAccess | None = None
    admin: bool | None = None


class KeyCreate(_Body):
    name: str = Field(min_length=1, max_length=100)
    org: str | None = Field(None, description="the org whose limits also bind the key")
    team: str | None = Field(None, description="a team of that org; its limits bind too")
    account: str | None = Field(None, description="the user or service account it is for")
    role: str = "developer"
    limits: LimitsConfig = LimitsConfig()
    expires_at: AwareDatetime | None = None
    expires_in_days: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyCreate:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        if (self.team is not None or self.account is not None) and self.org is None:
            raise ValueError("a team or account needs its org")
        return self


class KeyUpdate(_Body):
    name: str | None = Field(None, min_length=1, max_length=100)
    role: str | None = None
    limits: LimitsConfig | None = None
    expires_at: AwareDatetime | None = None


class KeyRotate(_Body):
    grace_seconds: int = Field(
        0, ge=0, le=30 * 86400, description="how long the old key keeps working"
    )
