"""``sluicegate serve | config check | models | db | orgs | teams | keys | usage | top``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sluicegate import __version__
from sluicegate.cli.admin import add_admin_commands, run_admin_command
from sluicegate.cli.top import add_top_command, run_top
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

    db = commands.add_parser("db", help="the database: migrations")
    db.add_argument("--config", help="YAML config naming database.url (default: embedded)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply every pending migration")
    down = db_sub.add_parser("downgrade", help="undo migrations down to a revision")
    down.add_argument("revision", help="a revision id, or 'base' for an empty database")
    db_sub.add_parser("current", help="print the applied and the latest revision")

    add_admin_commands(commands)
    add_top_command(commands)

    evaluation = commands.add_parser("eval", help="measure the safety checks on labelled data")
    eval_sub = evaluation.add_subparsers(dest="eval_command", required=True)
    for name, what in (
        ("pii", "PII detection: F1 per entity type"),
        ("injection", "the injection guard: recall and false positives per set"),
    ):
        sub = eval_sub.add_parser(name, add_help=False, help=f"{what} (--help for more)")
        sub.add_argument("rest", nargs=argparse.REMAINDER)

    audit = commands.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", add_help=False, help="check the hash chain and signatures (--help for more)"
    )
    verify.add_argument("rest", nargs=argparse.REMAINDER)
    keygen = audit_sub.add_parser(
        "keygen", help="make an Ed25519 key pair for signing (private) and verifying (public)"
    )
    keygen.add_argument("out", help="the private key's file (0600); the public key goes to OUT.pub")

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
        if args.command == "db":
            return _db(args)
        if args.command == "eval":
            if args.eval_command == "pii":
                from sluicegate.safety.pii.evaluate import main as pii_main

                return pii_main(args.rest)
            from sluicegate.safety.injection.evaluate import main as injection_main

            return injection_main(args.rest)
        if args.command == "audit":
            if args.audit_command == "keygen":
                return _keygen(args.out)
            from sluicegate.audit.verify import main as verify_main

            return verify_main(args.rest)
        if args.command in ("orgs", "teams", "keys", "usage"):
            return run_admin_command(args, _data_dir())
        if args.command == "top":
            return run_top(args, _data_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


def _keygen(out: str) -> int:
    from sluicegate.audit.chain import generate_ed25519

    private, public = generate_ed25519()
    path = Path(out)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"error: {path} exists; keygen never overwrites a key", file=sys.stderr)
        return 2
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    Path(f"{out}.pub").write_bytes(public)
    print(
        f"private key: {path} (mode 0600; set audit.signing_key_file to it)\n"
        f"public key:  {out}.pub (give it to auditors: sluicegate audit verify DIR "
        f"--key-file {out}.pub)"
    )
    return 0


def _data_dir() -> str:
    """Where the master key file is: from $SLUICEGATE_CONFIG, else the default."""
    return load_config().server.data_dir


def _db(args: argparse.Namespace) -> int:
    from sluicegate.storage.database import Database, database_url

    config = load_config(args.config)
    database = Database(database_url(config.database.url, config.server.data_dir))
    try:
        if args.db_command == "upgrade":
            database.upgrade()
        elif args.db_command == "downgrade":
            database.downgrade(args.revision)
        current = database.current_revision() or "none"
        print(f"{database.display_url}: at {current} (latest {database.head_revision()})")
        return 0
    finally:
        database.close()


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
