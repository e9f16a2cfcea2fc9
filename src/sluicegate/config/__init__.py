"""Configuration: one YAML file, validated at start-up."""

from sluicegate.config.loader import ConfigError, load_config
from sluicegate.config.schema import Config

__all__ = ["Config", "ConfigError", "load_config"]
