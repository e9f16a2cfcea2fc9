"""Start the gateway under uvicorn (uvloop + httptools) and say how to use it."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import uvicorn

from sluicegate.config import load_config
from sluicegate.config.schema import ModelConfig
from sluicegate.observability.logs import configure_logging
from sluicegate.server.app import create_app
from sluicegate.server.gateway import Gateway, resolve_master_key
from sluicegate.server.shutdown import DrainingServer

__all__ = ["serve"]


def serve(
    config_path: str | None, host: str | None, port: int | None, workers: int, log_level: str
) -> int:
    config = load_config(config_path)
    if workers != 1:
        # Limits, key snapshots and local models live in each process; workers in one
        # process tree would split in-process counters N ways.
        if config.governance.state == "memory":
            reason = (
                "with governance.state: memory every worker would count limits on its own, "
                "so N workers would allow N times each limit. Set governance.state to a "
                "redis:// URL (and database.url to PostgreSQL) and "
            )
        else:
            reason = "shared state is set, so "
        print(
            f"error: --workers {workers} is refused: {reason}run one `sluicegate serve` per "
            "CPU (or per container) behind a load balancer instead.",
            file=sys.stderr,
        )
        return 2
    configure_logging(log_level)
    key = resolve_master_key(config)
    bind_host = host or config.server.host
    bind_port = port or config.server.port
    app = create_app(config, key)
    _banner(bind_host, bind_port, config.models, key.source)
    settings = uvicorn.Config(
        app,
        host=bind_host,
        port=bind_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=log_level,
        log_config=None,
        server_header=False,
        date_header=False,
    )
    gw: Gateway = app.state.gateway
    DrainingServer(settings, gw.drain).run()
    return 0


def _banner(host: str, port: int, models: Sequence[ModelConfig], key_source: str) -> None:
    url = f"http://{host}:{port}/v1"
    if key_source in ("config", "environment"):
        how = "the master key you configured (SLUICEGATE_MASTER_KEY or auth.master_key)"
        export = "export OPENAI_API_KEY=<your master key>"
    else:
        how = f"the master key in {key_source}"
        export = f"export OPENAI_API_KEY=$(cat {key_source})"
    lines = [
        "",
        f"Sluicegate is listening on {url}",
        "Models: " + ", ".join(f"{m.name} ({m.kind})" for m in models),
        f"API key: {how}",
        "Try it:",
        f"  {export}",
        f"  export OPENAI_BASE_URL={url}",
        '  curl $OPENAI_BASE_URL/models -H "Authorization: Bearer $OPENAI_API_KEY"',
        "",
    ]
    print("\n".join(lines), flush=True)
