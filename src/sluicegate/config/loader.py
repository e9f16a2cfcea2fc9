"""Load a config file: YAML, ``${ENV_VAR}`` substitution, errors that say where and how to fix."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sluicegate.config.defaults import embedded_config
from sluicegate.config.schema import Config

__all__ = ["ConfigError", "load_config"]

_PROVIDERS = ("openai", "anthropic", "local")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file, the field and the fix."""


def load_config(path: str | Path | None = None) -> Config:
    """The config from ``path``, else ``$SLUICEGATE_CONFIG``, else the embedded defaults."""
    chosen = path or os.environ.get("SLUICEGATE_CONFIG")
    if not chosen:
        return embedded_config()
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config file ({exc.strerror})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping with a 'models' list")
    missing: list[str] = []
    resolved = _substitute(raw, missing)
    if missing:
        names = ", ".join(sorted(set(missing)))
        raise ConfigError(
            f"{file}: environment variable(s) {names} are referenced but not set. "
            "Fix: export them, or write ${NAME:-default} in the file."
        )
    try:
        return Config.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_describe(file, exc, resolved)) from exc


def _substitute(node: Any, missing: list[str]) -> Any:
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            default = match.group(2)
            # As in the shell, ':-' also replaces a variable that is set but empty.
            if default is not None and not value:
                return default
            if value is None:
                missing.append(match.group(1))
                return ""
            return value

        return _ENV_REF.sub(replace, node)
    if isinstance(node, dict):
        return {key: _substitute(value, missing) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, missing) for item in node]
    return node


def _describe(file: Path, exc: ValidationError, raw: Any) -> str:
    lines = [f"{file}: {exc.error_count()} problem(s):"]
    for err in exc.errors():
        where = _dotted(err["loc"], raw)
        lines.append(f"  - {where}: {_fix(err)}")
    return "\n".join(lines)


def _dotted(loc: tuple[int | str, ...], raw: Any) -> str:
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            name = (
                node[item].get("name")
                if isinstance(node, list)
                and isinstance(node[item] if item < len(node) else None, dict)
                else None
            )
            parts.append(f"[{item}]" + (f"({name})" if name else ""))
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            # Discriminated unions add the tag ('openai') as a location step; skip it.
            if (
                isinstance(node, dict)
                and item not in node
                and item in ("openai", "anthropic", "local")
            ):
                continue
            parts.append(("." if parts else "") + item)
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def _fix(err: Any) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "missing":
        return "required field is missing. Fix: add it."
    if kind == "extra_forbidden":
        return "unknown field. Fix: remove it or check its spelling (see docs/configuration.md)."
    if kind == "union_tag_invalid":
        return "unknown provider. Fix: use one of openai, anthropic, local."
    if kind == "union_tag_not_found":
        return "no provider given. Fix: add 'provider: openai|anthropic|local'."
    return msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg
