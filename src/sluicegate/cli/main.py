"""``sluicegate serve | config check | models``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sluicegate import __version__
from sluicegate.config import Config, ConfigError, load_config

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluicegate", description="An LLM inference gateway.")
    parser.add_argument("--version", action="version", version=f"sluicegate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the gateway")
    serve.add_argument("--config", help="YAML config (default: $SLUICEGATE_CONFIG, else embedded)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--log-level", default="info")

    config_cmd = commands.add_parser("config", help="config tools")
    config_sub = config_cmd.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("file")

    models = commands.add_parser("models", help="list the models a config serves")
    models.add_argument("--config")

    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            from sluicegate.cli.serve import serve as run_serve

            return run_serve(args.config, args.host, args.port, args.workers, args.log_level)
        if args.command == "config":
            config = load_config(args.file)
            print(f"{args.file}: OK — {_summary(config)}")
            return 0
        if args.command == "models":
            _print_models(load_config(args.config))
            return 0
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


def _summary(config: Config) -> str:
    deployments = sum(len(m.deployments) for m in config.models)
    return f"{len(config.models)} model(s), {deployments} deployment(s)"


def _print_models(config: Config) -> None:
    for model in config.models:
        for index, dep in enumerate(model.deployments):
            where = getattr(dep, "base_url", None) or getattr(dep, "path", "")
            name = dep.id or f"{model.name}/{index}"
            hosted = "self-hosted" if dep.self_hosted else "cloud"
            print(f"{model.name:24} {model.kind:9} {name:28} {dep.provider:9} {hosted:11} {where}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
