"""Config for the audit log: a hash-chained, signed, append-only record of every call."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["AuditConfig"]


class AuditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="write the audit log")
    directory: str | None = Field(None, description="where its files go (default: data_dir/audit)")
    signing_key: SecretStr | None = Field(
        None,
        description="HMAC key for checkpoints, ≥ 16 characters (default: $SLUICEGATE_AUDIT_KEY); "
        "`sluicegate audit verify` needs the same",
    )
    signing_key_file: str | None = Field(
        None,
        description="a file holding the key instead: an HMAC secret, or an Ed25519 private key "
        "(PEM, from `sluicegate audit keygen`), which auditors verify with the public key alone",
    )
    replica: str | None = Field(
        None, description="this process's chain id (default: the host name); unique per replica"
    )
    on_full: Literal["drop", "refuse"] = Field(
        "drop", description="when the queue is full: drop entries (counted) or refuse calls (503)"
    )
    capacity: int = Field(100_000, ge=1, description="entries queued in memory at most")
    checkpoint_every: int = Field(1000, ge=1, description="entries between signed checkpoints")
    checkpoint_seconds: float = Field(60.0, gt=0, description="seconds between checkpoints")
    max_file_mb: int = Field(64, ge=1, description="rotate a file at about this size")
    hot_days: int | None = Field(7, ge=0, description="gzip files older than this into archive/")
    archive_days: int | None = Field(30, ge=0, description="delete files older than this")
    record_prompts: bool = Field(
        False, description="keep the prompt text (after PII redaction) in each entry"
    )

    @field_validator("signing_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _one_key(self) -> AuditConfig:
        if self.signing_key is not None and self.signing_key_file is not None:
            raise ValueError("set audit.signing_key or audit.signing_key_file, not both")
        return self
