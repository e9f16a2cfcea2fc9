"""OpenAI request bodies → llama-cpp-python keyword arguments. Pure; no model needed.

What the local model cannot do is refused with a 400 naming the field, never
silently dropped: ``n`` > 1, ``tools``, ``logprobs``, several prompts at once.
Sampling fields the request leaves out keep llama-cpp-python's defaults
(chat: temperature 0.2, top_p 0.95; completions: temperature 0.8), which suit a
small model better than OpenAI's temperature 1.
"""

from __future__ import annotations

from typing import Any

from sluicegate.errors import InvalidRequest
from sluicegate.types import JSONObject

__all__ = ["chat_kwargs", "chat_messages", "completion_kwargs"]

_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_ROLE_ALIASES = {"developer": "system", "function": "tool"}


def _common(body: JSONObject) -> dict[str, Any]:
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest(
            "The local model returns one choice per request; 'n' must be 1.", param="n"
        )
    kwargs: dict[str, Any] = {k: body[k] for k in _SAMPLING if body.get(k) is not None}
    stop = body.get("stop")
    if stop:
        kwargs["stop"] = [stop] if isinstance(stop, str) else list(stop)
    seed = body.get("seed")
    if seed is not None:
        # llama.cpp seeds are 32-bit; OpenAI's are 64-bit. Same seed in, same seed out.
        kwargs["seed"] = int(seed) % 2**32
    bias = body.get("logit_bias")
    if bias:
        kwargs["logit_bias"] = _logit_bias(bias)
    return kwargs


def _logit_bias(bias: Any) -> dict[int, float]:
    if not isinstance(bias, dict):
        raise InvalidRequest("'logit_bias' must map token ids to numbers.", param="logit_bias")
    try:
        return {int(token): float(value) for token, value in bias.items()}
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(
            "'logit_bias' must map token ids (of this model's vocabulary) to numbers.",
            param="logit_bias",
        ) from exc


def _refuse_if_set(body: JSONObject, field: str, why: str) -> None:
    value = body.get(field)
    if value not in (None, False, [], 0):
        raise InvalidRequest(f"'{field}' is not supported by the local model: {why}", param=field)


def chat_messages(messages: list[JSONObject]) -> list[dict[str, str]]:
    """Messages as the GGUF chat template expects them: a role and plain-text content."""
    out: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        role = str(message.get("role"))
        content = message.get("content")
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        else:
            parts = []
            for part_index, part in enumerate(content):
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    where = f"messages[{index}].content[{part_index}]"
                    raise InvalidRequest(
                        f"'{where}' is a '{part.get('type')}' part; the local model reads "
                        "text only.",
                        param=where,
                    )
                parts.append(part["text"])
            text = "".join(parts)
        out.append({"role": _ROLE_ALIASES.get(role, role), "content": text})
    return out


def _response_format(body: JSONObject) -> dict[str, Any]:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return {}
    if fmt["type"] == "json_object":
        return {"response_format": {"type": "json_object"}}
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "'response_format.json_schema.schema' must be a JSON schema object.",
            param="response_format.json_schema.schema",
        )
    import json

    from llama_cpp.llama_grammar import LlamaGrammar

    try:
        # Built here, not by llama-cpp-python, which would quietly fall back to any JSON.
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:
        raise InvalidRequest(
            f"The local model cannot enforce this JSON schema ({exc}).",
            param="response_format.json_schema.schema",
        ) from exc
    return {"grammar": grammar}


def chat_kwargs(body: JSONObject) -> dict[str, Any]:
    """Arguments for ``Llama.create_chat_completion`` (without ``stream``)."""
    _refuse_if_set(
        body, "tools", "its chat template has no tool-calling format. Use a model that does."
    )
    _refuse_if_set(body, "functions", "its chat template has no function-calling format.")
    _refuse_if_set(body, "logprobs", "it does not keep per-token logits.")
    _refuse_if_set(body, "top_logprobs", "it does not keep per-token logits.")
    kwargs = _common(body)
    kwargs["messages"] = chat_messages(body["messages"])
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if limit is not None:
        kwargs["max_tokens"] = limit
    kwargs |= _response_format(body)
    return kwargs


def completion_kwargs(body: JSONObject) -> dict[str, Any]:
    """Arguments for ``Llama.create_completion`` (without ``stream``)."""
    _refuse_if_set(body, "logprobs", "it does not keep per-token logits.")
    best_of = body.get("best_of")
    if best_of is not None and best_of != 1:
        raise InvalidRequest(
            "The local model returns one choice per request; 'best_of' must be 1.",
            param="best_of",
        )
    kwargs = _common(body)
    prompt = body["prompt"]
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        if len(prompt) != 1:
            raise InvalidRequest(
                f"The local model takes one prompt per request, got {len(prompt)}.",
                param="prompt",
            )
        prompt = prompt[0]
    kwargs["prompt"] = prompt
    # OpenAI's default for /v1/completions; llama-cpp-python's is the same.
    kwargs["max_tokens"] = body.get("max_tokens") or 16
    if body.get("echo"):
        kwargs["echo"] = True
    suffix = body.get("suffix")
    if isinstance(suffix, str) and suffix:
        kwargs["suffix"] = suffix
    return kwargs
