"""``sluicegate top``: the gateway's ``/metrics`` as a live terminal view.

For operators without Grafana: request rate, errors and latency per model,
tokens and cost per second, queue depth, deployment health and breakers, engine
load, refusals and the usage/audit queues. Rates come from two scrapes, the way
Prometheus' ``rate()`` and ``histogram_quantile()`` would compute them, so the
figures agree with a dashboard over the same window.

The arithmetic lives in ``observability.rates`` (pure, testable without a
terminal); this module scrapes, and renders ``Figures`` with rich.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluicegate.cli.admin import AdminError, admin_key
from sluicegate.observability.rates import Figures, NotMetrics, Scrape, compute, parse

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

__all__ = ["TopError", "add_top_command", "fetch", "render", "run_top"]


class TopError(Exception):
    """A scrape that failed: one line an operator can act on."""


# --- scrape ------------------------------------------------------------------------------


def fetch(url: str, key: str, timeout: float = 10.0) -> str:
    """``GET {url}/metrics`` with an admin key; a failure is a ``TopError`` with one line."""
    request = urllib.request.Request(f"{url}/metrics", headers={"authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        raise TopError(_refused(url, exc.code)) from None
    except urllib.error.URLError as exc:
        raise TopError(_unreachable(url, exc.reason)) from None
    except OSError as exc:  # a timeout or a reset once connected
        raise TopError(_unreachable(url, exc)) from None
    except ValueError:
        raise TopError(f"--url {url!r} is not an http(s) URL") from None
    return body.decode("utf-8", errors="replace")


def _refused(url: str, code: int) -> str:
    if code == 401:
        return (
            f"the gateway at {url} did not accept the key (HTTP 401); "
            "pass an admin key with --key or $SLUICEGATE_MASTER_KEY"
        )
    if code == 403:
        return (
            f"the key is not an admin key (HTTP 403); {url}/metrics needs the master key "
            "or a key with the admin role"
        )
    return f"GET {url}/metrics answered HTTP {code}"


def _unreachable(url: str, reason: object) -> str:
    return f"cannot reach the gateway at {url} ({reason}); is it running? (--url)"


def _scrape(url: str, key: str) -> tuple[Scrape, float]:
    try:
        scrape = parse(fetch(url, key))
    except NotMetrics as exc:
        raise TopError(f"{url}/metrics: {exc}") from None
    return scrape, time.monotonic()


# --- render ------------------------------------------------------------------------------


def render(
    figures: Figures | None, *, url: str, interval: float, error: str | None = None
) -> RenderableType:
    """One frame: the figures (None before the second scrape), and the last scrape's error."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    parts: list[RenderableType] = [
        Text.assemble(
            ("sluicegate top", "bold"),
            f"  {url}  every {interval:g}s  {time.strftime('%H:%M:%S')}",
        )
    ]
    if error is not None:
        note = "" if figures is None else " (the figures below are from the last good scrape)"
        parts.append(Panel(Text(error + note, style="red"), title="scrape failed", style="red"))
    if figures is None:
        if error is None:
            parts.append(Text("first scrape done; rates after the next one…", style="dim"))
        return Group(*parts)
    total = figures.total
    error_share = "-" if total.error_percent is None else f"{total.error_percent:.1f} %"
    parts.append(
        Text(
            f"{_num(total.requests_per_s)} req/s   errors (5xx) {error_share}   "
            f"p50 {_secs(total.p50_seconds)}   p95 {_secs(total.p95_seconds)}   "
            f"in flight {figures.in_flight:g}\n"
            f"tokens in {_num(total.prompt_tokens_per_s)}/s   "
            f"out {_num(total.completion_tokens_per_s)}/s   "
            f"cost ${total.cost_usd_per_minute:.4f}/min   over the last {figures.seconds:.1f} s"
        )
    )
    parts.append(_models_tables(figures))
    if figures.deployments:
        parts.append(_deployments_table(figures))
    parts.append(_side_tables(figures))
    return Group(*parts)


def _models_tables(figures: Figures) -> RenderableType:
    from rich.columns import Columns

    # Two tables, side by side when the terminal is wide enough, else one above the other.
    traffic, work = _table("models: calls"), _table("models: latency, tokens, cost")
    for table, headers in (
        (traffic, ("req/s", "2xx/s", "4xx/s", "5xx/s", "err %", "failover/s", "queue")),
        (work, ("p50", "p95", "TTFT p95", "tok in/s", "tok out/s", "$/min")),
    ):
        table.add_column("model", style="bold", no_wrap=True)
        for header in headers:
            table.add_column(header, justify="right")
    for m in figures.models:
        name = "- (unknown)" if m.model == "-" else m.model
        traffic.add_row(
            name,
            _num(m.requests_per_s),
            *(_num(m.by_class.get(c, 0) / figures.seconds) for c in ("2xx", "4xx", "5xx")),
            "-" if m.error_percent is None else f"{m.error_percent:.1f}",
            _num(m.failovers / figures.seconds),
            f"[yellow]{m.queue_depth:g}[/]" if m.queue_depth else "0",
        )
        work.add_row(
            name,
            _secs(m.p50_seconds),
            _secs(m.p95_seconds),
            _secs(m.ttft_p95_seconds),
            _num(m.prompt_tokens_per_s),
            _num(m.completion_tokens_per_s),
            f"{m.cost_usd_per_minute:.4f}",
        )
    return Columns([traffic, work], padding=(0, 4))


def _deployments_table(figures: Figures) -> RenderableType:

    engine = any(
        d.engine_waiting is not None or d.engine_running is not None or d.kv_cache_usage is not None
        for d in figures.deployments
    )
    table = _table("deployments")
    for header in ("model", "deployment", "health", "breaker", "in flight"):
        table.add_column(header, justify="right" if header == "in flight" else "left")
    if engine:
        for header in ("waiting", "running", "KV cache"):
            table.add_column(header, justify="right")
    colours = {"closed": "green", "open": "red", "half_open": "yellow"}
    for d in figures.deployments:
        row = [
            d.model,
            d.deployment,
            "[green]up[/]" if d.healthy else "[bold red]down[/]",
            f"[{colours.get(d.breaker, 'white')}]{d.breaker}[/]",
            f"{d.in_flight:g}",
        ]
        if engine:
            row += [
                "-" if d.engine_waiting is None else f"{d.engine_waiting:g}",
                "-" if d.engine_running is None else f"{d.engine_running:g}",
                "-" if d.kv_cache_usage is None else f"{100 * d.kv_cache_usage:.0f} %",
            ]
        table.add_row(*row)
    return table


def _side_tables(figures: Figures) -> RenderableType:
    from rich.columns import Columns

    refusals = _table("refusals")
    refusals.add_column("code")
    refusals.add_column("calls", justify="right")
    refusals.add_column("/s", justify="right")
    for code, count in figures.refusals.items():
        refusals.add_row(code, str(count), _num(count / figures.seconds))
    if not figures.refusals:
        refusals.add_row("[dim]none[/]", "0", "0")

    queues = _table("record queues")
    for header in ("queue", "pending", "written/s", "dropped", "dropped (all)"):
        queues.add_column(header, justify="left" if header == "queue" else "right")
    for q in figures.queues:
        dropped = f"[bold red]{q.dropped}[/]" if q.dropped else "0"
        queues.add_row(
            q.name, f"{q.pending:g}", _num(q.written_per_s), dropped, str(q.dropped_total)
        )
    if figures.key_directory_available is False:
        queues.caption = "[bold red]key directory unavailable: serving the last snapshot[/]"
    return Columns([refusals, queues], padding=(0, 4))


def _table(title: str) -> Table:
    from rich import box
    from rich.table import Table

    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
    )


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) < 10:
        return f"{value:.2f}"
    if abs(value) < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


# --- the command -------------------------------------------------------------------------


def add_top_command(commands: Any) -> None:
    top = commands.add_parser("top", help="a live view of a running gateway's /metrics")
    top.add_argument(
        "--url", help="the gateway (default: $SLUICEGATE_URL or http://127.0.0.1:8080)"
    )
    top.add_argument(
        "--key",
        help="an admin key (default: $SLUICEGATE_ADMIN_KEY, $SLUICEGATE_MASTER_KEY, "
        "else the master key file under the data directory)",
    )
    top.add_argument(
        "--interval", type=_seconds, default=2.0, help="seconds between scrapes (default 2)"
    )
    top.add_argument(
        "--once", action="store_true", help="print one frame after two scrapes, then exit"
    )
    top.add_argument(
        "--json", action="store_true", help="print the figures as JSON (implies --once)"
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def run_top(args: argparse.Namespace, data_dir: Callable[[], str]) -> int:
    """``data_dir`` is called only when no key was given (it may read the config)."""
    url = (args.url or os.environ.get("SLUICEGATE_URL") or "http://127.0.0.1:8080").rstrip("/")
    try:
        key = args.key or admin_key(data_dir())
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.once or args.json:
        return _once(url, key, args.interval, as_json=args.json)
    return _live(url, key, args.interval)


def _once(url: str, key: str, interval: float, *, as_json: bool) -> int:
    try:
        first, first_at = _scrape(url, key)
        time.sleep(interval)
        second, second_at = _scrape(url, key)
    except TopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    figures = compute(first, second, second_at - first_at)
    if as_json:
        print(figures.as_json())
    else:
        _console().print(render(figures, url=url, interval=interval))
    return 0


def _live(url: str, key: str, interval: float) -> int:
    from rich.live import Live

    previous: tuple[Scrape, float] | None = None
    figures: Figures | None = None
    error: str | None = None
    try:
        with Live(console=_console(), auto_refresh=False, redirect_stderr=False) as live:
            while True:
                try:
                    scrape, at = _scrape(url, key)
                except TopError as exc:
                    # Keep the last good scrape: the next success measures from it.
                    error = str(exc)
                else:
                    if previous is not None:
                        figures = compute(previous[0], scrape, at - previous[1])
                    previous, error = (scrape, at), None
                live.update(render(figures, url=url, interval=interval, error=error), refresh=True)
                time.sleep(interval)
    except KeyboardInterrupt:
        return 0


def _console() -> Console:
    from rich.console import Console

    # Piped output would get rich's 80 columns: too narrow for the models table.
    wide = sys.stdout.isatty() or os.environ.get("COLUMNS")
    return Console(width=None if wide else 120)
