"""Turn one run's results into bench/RESULTS.md: tables, then a verdict per target."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from bench.markdown import table
from bench.pyspy import profile_sections

__all__ = ["verdicts", "write_results"]

CPU_TARGET_US = 400.0
ADDED_P50_TARGET_US = 500.0
STREAMS_TARGET = 1000
RSS_TARGET_MB = 120.0


def _mb(kib: int) -> str:
    return f"{kib * 1024 / 1e6:.1f} MB ({kib / 1024:.1f} MiB)"


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def _by_conns(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {row["connections"]: row for row in rows}


def _primary(results: dict[str, Any]) -> dict[str, Any]:
    gateways: dict[str, dict[str, Any]] = results["gateway"]
    return gateways.get("on") or next(iter(gateways.values()))


def verdicts(results: dict[str, Any]) -> list[list[str]]:
    """[target, measured, verdict] for each target of the issue, on the default config."""
    gw = _primary(results)
    label = f"access log {gw['access_log']}"
    out: list[list[str]] = []

    cpu = {r["connections"]: r["cpu_us_per_request"] for r in gw["nonstreaming"]}
    worst_c = max(cpu, key=lambda c: cpu[c])
    measured = ", ".join(f"c={c}: {v:.0f}" for c, v in cpu.items())
    if cpu[worst_c] <= CPU_TARGET_US:
        verdict = "**met** at every concurrency"
    else:
        over = [c for c, v in cpu.items() if v > CPU_TARGET_US]
        gap = cpu[worst_c] - CPU_TARGET_US
        verdict = (
            f"**missed** at c={','.join(map(str, over))}: worst {cpu[worst_c]:.0f} µs "
            f"(+{gap:.0f} µs, +{gap / CPU_TARGET_US:.0%})"
        )
    out.append(
        [f"gateway CPU ≤ {CPU_TARGET_US:.0f} µs/request ({label})", measured + " µs", verdict]
    )

    direct = _by_conns(results["direct"]["nonstreaming"]).get(1)
    mine = _by_conns(gw["nonstreaming"]).get(1)
    if direct and mine:
        added = mine["latency_us"]["p50"] - direct["latency_us"]["p50"]
        verdict = (
            "**met**"
            if added <= ADDED_P50_TARGET_US
            else f"**missed** by {added - ADDED_P50_TARGET_US:.0f} µs"
        )
        out.append(
            [
                f"added latency p50 ≤ {_ms(ADDED_P50_TARGET_US)} ms at c=1",
                f"{_ms(added)} ms ({_ms(mine['latency_us']['p50'])} - "
                f"{_ms(direct['latency_us']['p50'])})",
                verdict,
            ]
        )

    big = next((s for s in gw.get("streaming", []) if s["streams"] == STREAMS_TARGET), None)
    if big:
        ok = big["errors"] == 0 and big["stalled"] == 0 and big["ended_with_done"] == big["streams"]
        measured = (
            f"{big['clean']}/{big['streams']} clean; {big['stalled']} stalled, "
            f"{big['errors']} errors, peak {big['upstream_peak_open']} open upstream; "
            f"max gap {big['max_gap_ms'].get('max')} ms"
        )
        out.append(
            [
                f"{STREAMS_TARGET} concurrent streams, no stall, no error",
                measured,
                "**met**" if ok else "**missed**",
            ]
        )

    idle_mb = gw["rss_idle_kib"] * 1024 / 1e6
    verdict = (
        "**met**" if idle_mb <= RSS_TARGET_MB else f"**missed** by {idle_mb - RSS_TARGET_MB:.1f} MB"
    )
    out.append([f"idle RSS ≤ {RSS_TARGET_MB:.0f} MB", _mb(gw["rss_idle_kib"]), verdict])
    return out


def _other(row: dict[str, Any] | None) -> str:
    return "-" if row is None or "other_load_pct" not in row else f"{row['other_load_pct']:.0f}"


def _impossible(row: dict[str, Any]) -> bool:
    """wrk's mean exceeds the bound a closed loop of ``connections`` allows (by over 10%)."""
    bound_us = row["connections"] / max(row["rps"], 1e-9) * 1e6
    return bool(row["latency_us"]["mean"] > 1.10 * bound_us)


def _nonstreaming(results: dict[str, Any]) -> list[str]:
    direct = _by_conns(results["direct"]["nonstreaming"])
    modes = {m: _by_conns(p["nonstreaming"]) for m, p in results["gateway"].items()}
    head = ["c", "direct RPS"]
    for m in modes:
        head += [f"gateway RPS (log {m})", f"CPU µs/req (log {m})"]
    head += ["errors", "other load % (direct / " + " / ".join(f"log {m}" for m in modes) + ")"]
    rows = []
    for c, d in direct.items():
        row: list[Any] = [c, f"{d['rps']:,.0f}"]
        errors = d["errors"]
        other = [_other(d)]
        for by_c in modes.values():
            g = by_c.get(c)
            row += [f"{g['rps']:,.0f}", f"{g['cpu_us_per_request']:.0f}"] if g else ["-", "-"]
            errors += g["errors"] if g else 0
            other.append(_other(g))
        row += [errors, " / ".join(other)]
        rows.append(row)
    lines = ["### Non-streaming chat: throughput and gateway CPU", ""]
    lines += table(head, rows)
    head = ["c", "direct p50 / p99 ms"]
    flagged = False
    for m in modes:
        head += [f"gateway p50 / p99 ms (log {m})", f"added p50 / p99 ms (log {m})"]
    rows = []
    for c, d in direct.items():
        dl = d["latency_us"]
        row = [c, f"{_ms(dl['p50'])} / {_ms(dl['p99'])}"]
        for by_c in modes.values():
            g = by_c.get(c)
            if g is None:
                row += ["-", "-"]
                continue
            gl = g["latency_us"]
            mark = "†" if _impossible(g) else ""
            flagged = flagged or bool(mark)
            row += [
                f"{_ms(gl['p50'])} / {_ms(gl['p99'])}{mark}",
                f"{_ms(gl['p50'] - dl['p50'])} / {_ms(gl['p99'] - dl['p99'])}{mark}",
            ]
        rows.append(row)
    lines += ["### Non-streaming chat: latency (wrk's histogram)", ""]
    lines += table(head, rows)
    if flagged:
        lines += [
            "† wrk corrects its histogram for coordinated omission: for each response slower "
            "than twice the steady per-connection cycle it adds the latencies that requests "
            "sent on schedule during that wait would have seen. In these runs the added "
            "samples carry the tail (wrk's mean exceeds connections / RPS, which no measured "
            "set of requests can), so a few rare stalls (a garbage-collector pass, a slow "
            "first request on a new connection) show up as this p99; the measured p90 is "
            "the better guide to the typical request.",
            "",
        ]
    return lines


def _streaming(results: dict[str, Any]) -> list[str]:
    head = [
        "target",
        "streams",
        "peak open (client / upstream)",
        "TTFB p50 / p99 ms",
        "stream time p50 / p99 ms",
        "max gap p99 / max ms",
        "stalled",
        "errors",
        "ended with [DONE]",
        "server CPU ms/stream (µs/event)",
        "other load %",
    ]
    rows = []
    sources = [("direct", results["direct"])] + [
        (f"gateway (log {m})", p) for m, p in results["gateway"].items()
    ]
    for name, phase in sources:
        for s in phase.get("streaming", []):
            rows.append(
                [
                    name,
                    s["streams"],
                    f"{s['peak_open']} / {s['upstream_peak_open']}",
                    f"{s['ttfb_ms'].get('p50')} / {s['ttfb_ms'].get('p99')}",
                    f"{s['total_ms'].get('p50')} / {s['total_ms'].get('p99')}",
                    f"{s['max_gap_ms'].get('p99')} / {s['max_gap_ms'].get('max')}",
                    s["stalled"],
                    s["errors"],
                    s["ended_with_done"],
                    f"{s['cpu_us_per_stream'] / 1000:.2f} ({s.get('cpu_us_per_event', '-')})",
                    _other(s),
                ]
            )
    return ["### Streaming", "", *table(head, rows)]


def _memory(results: dict[str, Any]) -> list[str]:
    rows = []
    for m, p in results["gateway"].items():
        plain = max([r["rss_max_kib"] for r in p["nonstreaming"]] or [0])
        streams = p.get("streaming", [])
        during = (
            ", ".join(f"{s['streams']}: {_mb(s['rss_max_kib'])}" for s in streams)
            if streams
            else "not run"
        )
        after = p["rss_after_load_kib"]
        rows.append(
            [
                f"log {m}",
                _mb(p["rss_idle_kib"]),
                _mb(p["rss_ready_kib"]),
                _mb(plain),
                during,
                _mb(after["VmRSS"]),
                _mb(after["VmHWM"]),
            ]
        )
    head = [
        "gateway",
        "idle (before any API request)",
        "after /ready",
        "max, non-streaming runs",
        "max, by concurrent streams",
        "after load",
        "peak (VmHWM)",
    ]
    return ["### Gateway memory (VmRSS)", "", *table(head, rows)]


def _wakeups(machine: dict[str, Any]) -> list[str]:
    w = machine.get("wakeup_us")
    if not w:
        return []
    same, cross = w["same_cpu"], w["cross_cpu"]
    return [
        "- waking a process on another, idle CPU (pipe round trip after 250 µs of work): "
        f"p50 {cross['p50']:g} µs, p99 {cross['p99']:g} µs, p99.9 {cross['p999']:g} µs, "
        f"max {cross['max']:g} µs; on the same CPU p99 {same['p99']:g} µs, max "
        f"{same['max']:g} µs. A proxied request crosses CPUs four times when pinned, so "
        "low-concurrency tail latency inherits this"
    ]


def _disturbed(results: dict[str, Any]) -> list[str]:
    phases = [results["direct"], *results["gateway"].values()]
    loads = [
        row.get("other_load_pct", 0.0)
        for phase in phases
        for row in phase["nonstreaming"] + phase.get("streaming", [])
    ]
    worst = max(loads, default=0.0)
    if worst < 10:
        return [f"- the machine was otherwise quiet: other load at most {worst:.0f}% per run"]
    return [
        f"- **disturbed**: other processes used up to {worst:.0f}% of the CPUs during a run "
        "(see the *other load* columns); latency and RPS of those runs are unreliable, "
        "CPU per request much less so"
    ]


def _where(results: dict[str, Any]) -> list[str]:
    """One line naming the biggest costs, when a profile was taken."""
    prof = _primary(results).get("profile")
    if not prof or "error" in prof or prof.get("cpu_us_per_request") is None:
        return []
    top = ", ".join(f"{r['name']} {r['us_per_request']:.0f} µs" for r in prof["own_by_layer"][:6])
    return [
        f"Where the {prof['cpu_us_per_request']:.0f} µs per request at c={prof['concurrency']} "
        f"go (py-spy, own time by layer; details below): {top}.",
        "",
    ]


def _command(results: dict[str, Any]) -> str:
    argv: list[str] = results["argv"]
    shown = shlex.join(argv)
    if not results.get("via_make"):
        return shown
    extra = shlex.join(argv[3:])
    make = f'make bench BENCH_ARGS="{extra}"' if extra else "make bench"
    return f"{make}   # runs: {shown}"


def write_results(results: dict[str, Any], path: Path) -> None:
    m = results["machine"]
    args = results["args"]
    pin = (
        "not pinned"
        if args["no_pin"]
        else (
            "gateway pinned to CPU 0 (`taskset -c 0`); mock upstream, wrk and the stream client "
            "pinned to CPU 1"
        )
    )
    lines = [
        "# Sluicegate benchmark results",
        "",
        "Generated by `bench/run.py`; see [docs/benchmarks.md](../docs/benchmarks.md) for what "
        "is measured and how. Raw JSON: `bench/out/results-latest.json`.",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} CPUs: {m['cpu_model']}; Linux {m['kernel']}; Python {m['python']}",
        "- " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- {m['wrk']}; commit {m['commit']}; {m['date_utc']}; load average at start "
        f"{' '.join(m['loadavg_at_start'])}",
        f"- {pin}",
        *_wakeups(m),
        *_disturbed(results),
        "",
        "## Command",
        "",
        "```",
        _command(results),
        "```",
        "",
        "Gateway config (written by `bench/run.py`): one model with three deployments, all on "
        "the mock upstream, round-robin, active health checks every second and circuit "
        "breakers on, so the routing of issue #3 is on the measured path.",
        "",
        f"wrk: 1 thread, {args['duration']:g} s per run after {args['warmup']:g} s of warm-up, "
        f"each run after {args.get('settle', 0):g} s of quiet; "
        f"mock streams: {args['chunks']} content chunks {args['interval_ms']:g} ms apart, then "
        f"a finish chunk, a usage chunk and `[DONE]`; a stream *stalls* when two reads are more "
        f"than {args['stall_ms']:g} ms apart. *Other load* is the share of the machine's CPUs "
        "used by anything but the gateway, the mock, wrk and the stream client during that run "
        "(other people's work on a shared machine); it disturbs latency and RPS far more than "
        f"CPU per request. Whole run: {results['wall_s']} s.",
        "",
        "## Verdict per target (1 gateway worker, default config: access log on)",
        "",
        *table(["target", "measured", "verdict"], verdicts(results)),
        *_where(results),
        "## Measurements",
        "",
        *_nonstreaming(results),
        *_streaming(results),
        *_memory(results),
        *profile_sections(results),
    ]
    notes = results.get("notes")
    if notes:
        lines += ["## Notes", "", *notes, ""]
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
