"""Token usage as the upstreams report it, normalised to one shape for pricing.

The two wire dialects count cached tokens differently, and pricing them wrong is
the most common accounting bug, so both readers live here beside each other:

- **OpenAI** (chat completions, completions, embeddings; also the final chunk of a
  stream sent with ``stream_options.include_usage``): ``prompt_tokens`` *includes*
  ``prompt_tokens_details.cached_tokens``, and ``completion_tokens`` *includes*
  ``completion_tokens_details.reasoning_tokens``. The Responses API spells the same
  inclusive counts ``input_tokens`` / ``input_tokens_details`` / ``output_tokens`` /
  ``output_tokens_details``; ``from_openai`` reads both spellings. OpenAI reports no
  cache writes; ``prompt_tokens_details.cache_write_tokens`` (or
  ``cache_creation_tokens``) is read when an OpenAI-compatible upstream sends it.
- **Anthropic** (Messages API): ``input_tokens`` *excludes* ``cache_read_input_tokens``
  and ``cache_creation_input_tokens``; ``output_tokens`` includes extended thinking,
  which Anthropic does not count apart, so ``reasoning_tokens`` stays 0.

``UsageDetail`` holds inclusive totals (OpenAI's convention): ``prompt_tokens`` is
every input token, cached and cache-written ones included; ``completion_tokens`` is
every output token, reasoning included. Upstream JSON is not trusted: absent, null,
negative or non-integer counts read as 0, and parts larger than their total are cut
to the total, so a reader never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["UsageDetail"]

_OPENAI_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "input_tokens")
_ANTHROPIC_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and value.is_integer():
        return max(int(value), 0)
    return 0


def _details(usage: dict[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        value = usage.get(name)
        if isinstance(value, dict):
            return value
    return {}


@dataclass(frozen=True, slots=True)
class UsageDetail:
    """Token counts of one call; inclusive totals, parts of them named apart."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the plain input price."""
        return self.prompt_tokens - self.cached_tokens - self.cache_write_tokens

    @property
    def visible_output_tokens(self) -> int:
        """Output tokens billed at the plain output price (reasoning apart)."""
        return self.completion_tokens - self.reasoning_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: UsageDetail) -> UsageDetail:
        return UsageDetail(
            self.prompt_tokens + other.prompt_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.completion_tokens + other.completion_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    @classmethod
    def of(
        cls,
        prompt: int,
        cached: int = 0,
        cache_write: int = 0,
        completion: int = 0,
        reasoning: int = 0,
    ) -> UsageDetail:
        """Parts clamped to their totals, so a lying upstream cannot make a cost negative."""
        cached = min(cached, prompt)
        cache_write = min(cache_write, prompt - cached)
        return cls(prompt, cached, cache_write, completion, min(reasoning, completion))

    @classmethod
    def from_openai(cls, usage: Any) -> UsageDetail | None:
        """OpenAI ``usage`` (inclusive counts); None if ``usage`` is not a usage object."""
        if not isinstance(usage, dict) or not any(key in usage for key in _OPENAI_KEYS):
            return None
        if "prompt_tokens" in usage or "completion_tokens" in usage:
            prompt = _count(usage.get("prompt_tokens"))
            completion = _count(usage.get("completion_tokens"))
        else:
            prompt = _count(usage.get("input_tokens"))
            completion = _count(usage.get("output_tokens"))
        inp = _details(usage, "prompt_tokens_details", "input_tokens_details")
        out = _details(usage, "completion_tokens_details", "output_tokens_details")
        write = inp.get("cache_write_tokens", inp.get("cache_creation_tokens"))
        return cls.of(
            prompt,
            cached=_count(inp.get("cached_tokens")),
            cache_write=_count(write),
            completion=completion,
            reasoning=_count(out.get("reasoning_tokens")),
        )

    @classmethod
    def from_anthropic(cls, usage: Any) -> UsageDetail | None:
        """Anthropic ``usage`` (cache reads and writes outside ``input_tokens``)."""
        if not isinstance(usage, dict) or not any(key in usage for key in _ANTHROPIC_KEYS):
            return None
        cached = _count(usage.get("cache_read_input_tokens"))
        written = _count(usage.get("cache_creation_input_tokens"))
        return cls(
            prompt_tokens=_count(usage.get("input_tokens")) + cached + written,
            cached_tokens=cached,
            cache_write_tokens=written,
            completion_tokens=_count(usage.get("output_tokens")),
        )
