"""``sluicegate orgs | teams | keys | usage``: the admin API from the command line.

The commands speak HTTP to a running gateway, so a change takes effect on every
replica at once and goes through the same checks as any admin call. The gateway
is ``--url`` (or ``$SLUICEGATE_URL``, default http://127.0.0.1:8080); the admin
key is ``$SLUICEGATE_ADMIN_KEY``, else ``$SLUICEGATE_MASTER_KEY``, else the master
key file under the data directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["AdminError", "add_admin_commands", "admin_key", "run_admin_command"]

_BUDGET = re.compile(r"^\$?(\d+(?:\.\d+)?)\s*(?:usd)?\s*/\s*(day|month)$", re.IGNORECASE)


class AdminError(Exception):
    pass


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits (unset: unlimited)")
    group.add_argument("--rpm", type=int, help="requests per minute")
    group.add_argument("--tpm", type=int, help="tokens per minute")
    group.add_argument("--requests-per-day", type=int)
    group.add_argument("--tokens-per-day", type=int)
    group.add_argument("--tokens-per-month", type=int)
    group.add_argument("--max-inflight", type=int, help="calls in progress at once")
    group.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="AMOUNT",
        help="a dollar budget such as 50usd/month or 5usd/day (repeatable)",
    )


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for field in (
        "rpm",
        "tpm",
        "requests_per_day",
        "tokens_per_day",
        "tokens_per_month",
        "max_inflight",
    ):
        value = getattr(args, field)
        if value is not None:
            limits[field] = value
    for budget in args.budget:
        match = _BUDGET.match(budget.strip())
        if match is None:
            raise AdminError(f"--budget {budget!r}: write it as 50usd/month or 5usd/day")
        limits[f"budget_usd_{match.group(2).lower()}"] = float(match.group(1))
    return limits


def add_admin_commands(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the gateway (default: $SLUICEGATE_URL or :8080)")
    common.add_argument("--json", action="store_true", help="print the API's JSON")

    orgs = commands.add_parser("orgs", help="organisations").add_subparsers(
        dest="action", required=True
    )
    create = orgs.add_parser("create", parents=[common], help="create an organisation")
    create.add_argument("name")
    _limit_flags(create)
    orgs.add_parser("list", parents=[common], help="list organisations")
    limits = orgs.add_parser("limits", parents=[common], help="replace an org's limits")
    limits.add_argument("name")
    _limit_flags(limits)

    teams = commands.add_parser("teams", help="teams of an organisation").add_subparsers(
        dest="action", required=True
    )
    create = teams.add_parser("create", parents=[common], help="create a team")
    create.add_argument("name")
    create.add_argument("--org", required=True)
    _limit_flags(create)
    listing = teams.add_parser("list", parents=[common], help="list an org's teams")
    listing.add_argument("--org", required=True)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", parents=[common], help="create a key (shown once)")
    create.add_argument("--name", help="what the key is for (default: the org and role)")
    create.add_argument("--org")
    create.add_argument("--team")
    create.add_argument("--account", help="the user or service account it is for")
    create.add_argument("--role", default="developer")
    create.add_argument("--expires-in-days", type=float)
    _limit_flags(create)
    listing = keys.add_parser("list", parents=[common], help="list keys")
    listing.add_argument("--org")
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key now")
    revoke.add_argument("key_id")
    rotate = keys.add_parser("rotate", parents=[common], help="replace a key")
    rotate.add_argument("key_id")
    rotate.add_argument(
        "--grace", type=int, default=0, help="seconds the old key keeps working (default 0)"
    )

    usage = commands.add_parser("usage", help="usage and spend").add_subparsers(
        dest="action", required=True
    )
    report = usage.add_parser("report", parents=[common], help="requests, tokens and cost")
    report.add_argument("--org")
    report.add_argument("--key-id")
    report.add_argument(
        "--period", default="month", help="day, month, YYYY-MM, YYYY-MM-DD or last-Nd"
    )


def run_admin_command(args: argparse.Namespace, data_dir: str) -> int:
    try:
        client = _Client(args.url, data_dir)
        method, path, body = _request(args)
        result = client.call(method, path, body)
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_render(args, result))
    return 0


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    quote = urllib.parse.quote
    group, action = args.command, args.action
    if group == "orgs":
        if action == "create":
            return "POST", "/admin/orgs", {"name": args.name, "limits": _limits(args)}
        if action == "limits":
            return "PUT", f"/admin/orgs/{quote(args.name)}/limits", {"limits": _limits(args)}
        return "GET", "/admin/orgs", None
    if group == "teams":
        base = f"/admin/orgs/{quote(args.org)}/teams"
        if action == "create":
            return "POST", base, {"name": args.name, "limits": _limits(args)}
        return "GET", base, None
    if group == "keys":
        if action == "create":
            body: dict[str, Any] = {
                "name": args.name or "-".join(filter(None, [args.org, args.team, args.role])),
                "role": args.role,
                "limits": _limits(args),
            }
            for field in ("org", "team", "account", "expires_in_days"):
                if getattr(args, field) is not None:
                    body[field] = getattr(args, field)
            return "POST", "/admin/keys", body
        if action == "revoke":
            return "POST", f"/admin/keys/{quote(args.key_id)}/revoke", None
        if action == "rotate":
            return (
                "POST",
                f"/admin/keys/{quote(args.key_id)}/rotate",
                {"grace_seconds": args.grace},
            )
        query = f"?org={quote(args.org)}" if args.org else ""
        return "GET", f"/admin/keys{query}", None
    params = {"period": args.period, "org": args.org, "key_id": args.key_id}
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return "GET", f"/admin/usage?{query}", None


def _render(args: argparse.Namespace, result: dict[str, Any]) -> str:
    if args.command == "usage":
        from sluicegate.governance.usage_report import format_table

        return format_table(result)
    if result.get("object") == "list":
        rows = result["data"]
        if not rows:
            return "(none)"
        return "\n".join(_line(row) for row in rows)
    text = _line(result)
    if "key" in result:
        text += (
            f"\n\n  {result['key']}\n\n"
            "This is the only time the key is shown: store it now (a secret manager, not a file"
            " in git)."
        )
    return text


def _line(row: dict[str, Any]) -> str:
    kind = row.get("object")
    limits = " ".join(f"{k}={v}" for k, v in (row.get("limits") or {}).items()) or "no limits"
    if kind == "api_key":
        owner = "/".join(filter(None, [row.get("org"), row.get("team")])) or "-"
        return (
            f"{row['id']:14} {row['status']:8} {row['role']:10} {owner:20} "
            f"{row['name']:24} {limits}"
        )
    if kind == "team":
        return f"{row['org']}/{row['name']:20} {limits}"
    return f"{row.get('name', '?'):24} {limits}"


class _Client:
    def __init__(self, url: str | None, data_dir: str) -> None:
        self.base = (url or os.environ.get("SLUICEGATE_URL") or "http://127.0.0.1:8080").rstrip("/")
        self.key = admin_key(data_dir)

    def call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"authorization": f"Bearer {self.key}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
                message = error["message"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {exc.code}"
            raise AdminError(f"{message} (HTTP {exc.code})") from None
        except urllib.error.URLError as exc:
            raise AdminError(
                f"cannot reach the gateway at {self.base} ({exc.reason}); is it running? "
                "(--url or $SLUICEGATE_URL)"
            ) from None


def admin_key(data_dir: str) -> str:
    for name in ("SLUICEGATE_ADMIN_KEY", "SLUICEGATE_MASTER_KEY"):
        value = os.environ.get(name)
        if value:
            return value
    path = Path(data_dir) / "master_key"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        raise AdminError(
            f"no admin key: set $SLUICEGATE_ADMIN_KEY (or $SLUICEGATE_MASTER_KEY), "
            f"or run where {path} exists"
        ) from None
