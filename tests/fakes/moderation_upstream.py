"""A fake moderation service speaking both the OpenAI and the Azure Content Safety shapes.

The first path segment picks the behaviour, so one server plays many services:
``{base}/{mode}/v1/moderations`` (OpenAI) and ``{base}/{mode}/contentsafety/text:analyze``
(Azure; point the adapter's endpoint at ``{base}/{mode}``). Modes:

- ``clean``: nothing flagged, every score low / severity 0
- ``flagged``: flagged for violence (OpenAI score 0.91; Azure Violence 6)
- ``scored``: not flagged, but self-harm 0.3 and harassment 0.12 (OpenAI); Hate 2 and
  SelfHarm 2 (Azure): blocked or not depending on the thresholds
- ``keyword``: like ``flagged`` for a text that contains ``BADWORD``, else ``clean``
- ``slow``: answers ``clean`` after 1 s (longer than the tests' timeouts)
- ``status-NNN``: answers HTTP NNN with an error body (``500``, ``429``, ``401``...)
- ``garbage``: 200 with a body that is not JSON
- ``partial``: Azure answers only the Hate category; OpenAI answers no ``results``
- ``flaky``: HTTP 500 while ``STATE["failing"]`` is true, else ``clean``

Every request's mode, path, headers and decoded body are kept in ``SEEN``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["SEEN", "STATE", "app"]

SEEN: list[dict[str, Any]] = []
STATE: dict[str, Any] = {"failing": True}

_OPENAI_CATEGORIES = ("harassment", "hate", "self-harm", "sexual", "violence")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


async def _early(mode: str) -> Response | None:
    """The answer of a mode that does not depend on the shape, if any."""
    if mode == "slow":
        await asyncio.sleep(1.0)
    if mode.startswith("status-"):
        status = int(mode.removeprefix("status-"))
        return _json({"error": {"code": "FakeError", "message": "the text was: secret"}}, status)
    if mode == "flaky" and STATE["failing"]:
        return _json({"error": {"code": "InternalServerError", "message": "down"}}, 500)
    if mode == "garbage":
        return Response(b'{"results": [ not json', 200, media_type="application/json")
    return None


async def _record(request: Request, mode: str) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(await request.body())
    SEEN.append(
        {"mode": mode, "path": request.url.path, "headers": dict(request.headers), "body": body}
    )
    return body


def _openai_result(text: str, mode: str) -> dict[str, Any]:
    scores = dict.fromkeys(_OPENAI_CATEGORIES, 0.001)
    if mode == "flagged" or (mode == "keyword" and "BADWORD" in text):
        scores["violence"] = 0.91
    if mode == "scored":
        scores["self-harm"] = 0.3
        scores["harassment"] = 0.12
    categories = {c: s >= 0.5 for c, s in scores.items()}
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
    }


async def openai_moderations(request: Request) -> Response:
    mode = request.path_params["mode"]
    body = await _record(request, mode)
    early = await _early(mode)
    if early is not None:
        return early
    if mode == "partial":
        return _json({"id": "modr-fake", "model": body.get("model")})
    data = body["input"]
    texts = [data] if isinstance(data, str) else data
    results = [_openai_result(text, mode) for text in texts]
    return _json({"id": "modr-fake", "model": body.get("model"), "results": results})


async def azure_analyze(request: Request) -> Response:
    mode = request.path_params["mode"]
    body = await _record(request, mode)
    early = await _early(mode)
    if early is not None:
        return early
    if request.query_params.get("api-version") is None:
        return _json({"error": {"code": "MissingApiVersion", "message": "no version"}}, 400)
    severities = dict.fromkeys(body.get("categories") or ["Hate", "SelfHarm", "Sexual"], 0)
    if mode == "flagged" or (mode == "keyword" and "BADWORD" in body["text"]):
        severities["Violence"] = 6
    if mode == "scored":
        severities["Hate"] = 2
        severities["SelfHarm"] = 2
    if mode == "partial":
        severities = {"Hate": 0}
    analysis = [{"category": c, "severity": s} for c, s in severities.items()]
    matches = []
    if body.get("blocklistNames") and "BLOCKME" in body["text"]:
        matches = [{"blocklistName": body["blocklistNames"][0], "blocklistItemText": "BLOCKME"}]
    return _json({"blocklistsMatch": matches, "categoriesAnalysis": analysis})


app = Starlette(
    routes=[
        Route("/{mode}/v1/moderations", openai_moderations, methods=["POST"]),
        Route("/{mode}/contentsafety/text:analyze", azure_analyze, methods=["POST"]),
    ]
)
