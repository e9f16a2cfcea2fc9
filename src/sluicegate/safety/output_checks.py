"""Cheap checks over a model's answer, whole or as it streams, each giving a ``Verdict``.

    output:leakage     a long verbatim run, or a large share, of the system prompt
    output:echo        the answer repeats an instruction-override phrase found in the input
    output:repetition  runaway loops: most recent tokens repeat n-grams seen earlier
    output:length      more characters or tokens than allowed

Text is case-folded and cut at whitespace into tokens (at most 32 characters,
punctuation stripped from their ends), and all checks compare hashed n-grams of
tokens. A stream is fed as it arrives and processed every ``check_every``
characters, in a few C-level passes per batch; a verdict depends only on the
text, never on how it was chunked: ``OutputChecks.check(text)`` and feeding
``text`` in any pieces agree.

PII in answers is checked by ``sluicegate.safety.pii.answer`` (``safety.pii.answers``).

How the defaults were measured (5-grams throughout):

- repetition (share ≥ 0.6 of 128 words): 1,199 normal texts (SmolLM2 answers,
  the seed documents, this project's code and docs, NFCorpus abstracts, JSON,
  tables, CSV) scored at most 0.48 (test code), none blocked; 295 of 300
  synthetic loops after a normal prefix were blocked (all word, phrase, sentence,
  paragraph and no-space loops; the misses are near-loops with a counter or one
  word changed per line), a median 147 words after the loop began.
- leakage (25 words verbatim, or half the prompt's n-grams): no block on 505
  pairs of normal answers and system prompts, the closest being a bot introducing
  itself in 9 words of its prompt; blocks every verbatim, quoted, re-cased or
  shuffled leak of 8 realistic prompts, most leaks of half of one, none that
  change every 4th-6th word (paraphrase is beyond a verbatim check).
- echo: no override phrase in 249 benign prompts (NotInject included, after
  role-play openers were left out); 36 of 123 attacks have one, and 8 of the
  answers a small model gave them repeated it (a persona switch, each).

A system prompt that holds facts the bot must relay verbatim (prices, opening
hours) can trip the leakage check: raise ``leak_min_words`` or turn it off there.
"""

from __future__ import annotations

import operator
import re
import string
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from itertools import accumulate, compress, count, repeat
from operator import ne, or_, sub

from pydantic import BaseModel, ConfigDict, Field

from sluicegate.safety.verdict import Decision, Verdict

__all__ = [
    "OutputChecks",
    "OutputChecksConfig",
    "OutputScan",
    "injected_spans",
    "tokens",
]

_LONGEST = 32
# Stripped from both ends of a token, so "instructions." matches "instructions".
# Typographic quotes, dashes, ellipsis and bullets too.
_PUNCTUATION = string.punctuation + (
    "\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e\u201a\u2039\u203a\u2014\u2013\u2026\u00b7\u2022"
)

# Instruction-override phrases (English and German, as in the injection data). Only
# the phrase and the rest of its sentence count: the answer must repeat part of it.
# Role-play openers ("act as", "pretend to be") are left out: benign requests use them
# as often as attacks, and answers quote them.
_OVERRIDE = re.compile(
    r"""\b(?:
      (?:ignore|disregard|forget|skip|override|bypass|neglect)\s+(?:\w+\s+){0,3}?
        (?:instructions?|prompts?|rules|directions|guidelines|directives|commands|orders
          |constraints|tasks?|programming|restrictions|guardrails|policies|everything)
    | you\s+are\s+now | from\s+now\s+on | new\s+(?:instructions?|tasks?|rules)\s*:
    | (?:system|developer)\s+(?:prompt|message|mode) | do\s+anything\s+now | jailbroken
    | (?:reveal|print|show|output|repeat|display|leak)\s+(?:\w+\s+){0,2}?
        (?:instructions|prompt|secret|password)s?
    | (?:vergiss|vergessen\s+sie|ignoriere|ignorieren\s+sie)\s+(?:\w+\s+){0,3}?
        (?:anweisungen|befehle|aufgaben|aufträge|regeln|instruktionen|alles)
    | du\s+bist\s+(?:jetzt|nun) | ab\s+(?:jetzt|sofort) | neue\s+aufgabe
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)
# A full stop ends a sentence, the dot in "evil.example" or "3.5" does not.
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
_SPAN_WORDS = 40
_CACHED_CHARS = 20_000


class OutputChecksConfig(BaseModel):
    """Which output checks run and where they draw the line (measured defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ngram: int = Field(5, ge=2, le=16, description="tokens per n-gram, for every check")
    leakage: bool = True
    leak_min_words: int = Field(
        25, ge=2, description="a verbatim run of this many system-prompt words is a leak"
    )
    leak_min_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="…and so is this share of the system prompt's n-grams, if that is at "
        "least leak_min_words / 2 of them",
    )
    echo: bool = True
    repetition: bool = True
    repetition_window: int = Field(128, ge=16, description="recent tokens the share is over")
    repetition_max_share: float = Field(
        0.6, gt=0, le=1, description="share of the window repeating earlier n-grams that blocks"
    )
    max_chars: int | None = Field(None, ge=1)
    max_words: int | None = Field(None, ge=1, description="tokens as cut here, about words")
    check_every: int = Field(
        256, ge=1, description="characters a stream accumulates between two evaluations"
    )


def tokens(text: str) -> list[str]:
    """``text`` as the checks see it."""
    return _strip(_pieces(text.casefold().split()))


def _pieces(toks: list[str]) -> list[str]:
    # A loop without spaces ("aaaa…", "=-=-…") becomes equal pieces, which repeat.
    lengths = list(map(len, toks))
    if not toks or max(lengths) <= _LONGEST:
        return toks
    out: list[str] = []
    start = 0
    for i in compress(count(), map(_LONGEST.__lt__, lengths)):
        out += toks[start:i]
        token = toks[i]
        out += [token[j : j + _LONGEST] for j in range(0, len(token), _LONGEST)]
        start = i + 1
    out += toks[start:]
    return out


def _strip(toks: list[str]) -> list[str]:
    stripped = list(map(str.strip, toks, repeat(_PUNCTUATION)))
    if "" in stripped:
        # A token of punctuation only ("---", "!!!") stays as it is.
        for i in compress(count(), map(operator.not_, stripped)):
            stripped[i] = toks[i]
    return stripped


def _ngrams(toks: Sequence[str], size: int) -> list[int]:
    return list(map(hash, zip(*(toks[i:] for i in range(size)), strict=False)))


def injected_spans(texts: Iterable[str]) -> list[list[str]]:
    """Each override phrase in ``texts`` with the rest of its sentence (≤ 40 tokens)."""
    spans = []
    for text in texts:
        for match in _OVERRIDE.finditer(text):
            end = _SENTENCE_END.search(text, match.end())
            stop = end.start() if end else len(text)
            spans.append(tokens(text[match.start() : stop])[:_SPAN_WORDS])
    return spans


class OutputChecks:
    """The configured checks, built once; ``scan()`` starts one answer's checks."""

    def __init__(self, config: OutputChecksConfig, cache_size: int = 256) -> None:
        self.config = config
        # System prompts repeat across requests; their n-grams are worth keeping.
        self._system: OrderedDict[tuple[str, ...], frozenset[int]] = OrderedDict()
        self._cache_size = cache_size

    def scan(self, system: Sequence[str] = (), inputs: Sequence[str] = ()) -> OutputScan:
        """Checks for one answer to a request with these system and other input texts.

        ``inputs``: the texts an override could hide in (user and tool messages)."""
        config = self.config
        leak = self._system_ngrams(tuple(system)) if config.leakage and system else frozenset()
        echo: frozenset[int] = frozenset()
        if config.echo and inputs:
            spans = injected_spans(inputs)
            echo = frozenset(h for span in spans for h in _ngrams(span, config.ngram))
        return OutputScan(config, leak, echo)

    def check(
        self, answer: str, system: Sequence[str] = (), inputs: Sequence[str] = ()
    ) -> list[Verdict]:
        """The verdicts of every enabled check on a whole answer."""
        scan = self.scan(system, inputs)
        scan.feed(answer)
        return scan.finish()

    def _system_ngrams(self, system: tuple[str, ...]) -> frozenset[int]:
        cached = self._system.get(system)
        if cached is not None:
            self._system.move_to_end(system)
            return cached
        size = self.config.ngram
        ngrams = frozenset(h for text in system for h in _ngrams(tokens(text), size))
        # A huge system message (retrieved context) is seldom sent twice: not kept.
        if sum(map(len, system)) <= _CACHED_CHARS:
            self._system[system] = ngrams
            if len(self._system) > self._cache_size:
                self._system.popitem(last=False)
        return ngrams


class _Overlap:
    """Verbatim overlap of the answer with a set of n-grams: longest run, distinct hits."""

    __slots__ = ("best", "hits", "ngrams", "run")

    def __init__(self, ngrams: frozenset[int]) -> None:
        self.ngrams = ngrams
        self.run = 0
        self.best = 0
        self.hits: set[int] = set()

    def feed(self, hashes: list[int]) -> None:
        flags = bytes(map(self.ngrams.__contains__, hashes))
        if not any(flags):
            self.run = 0 if hashes else self.run
            return
        self.hits.update(self.ngrams.intersection(hashes))
        runs = flags.split(b"\x00")
        first = self.run + len(runs[0])
        self.best = max(self.best, first, *map(len, runs[1:]))
        self.run = first if len(runs) == 1 else len(runs[-1])


class _Repeats:
    """Per token, whether its n-gram was seen before; the worst share over a window."""

    __slots__ = ("flags", "seen", "window", "worst")

    def __init__(self, window: int) -> None:
        self.window = window
        self.seen: set[int] = set()
        self.flags: list[int] = []
        self.worst = 0

    def feed(self, hashes: list[int], leading: int) -> None:
        """``leading``: tokens at the answer's start that end no n-gram."""
        seen = self.seen
        new = list(map(seen.__contains__, hashes))
        count = len(hashes)
        if len(set(hashes)) != count:
            # Repeats inside this batch too: each hash's first index here (the reversed
            # walk leaves the smallest), and every later one is a repeat.
            first = dict(zip(reversed(hashes), range(count - 1, -1, -1), strict=True))
            later = map(ne, map(first.__getitem__, hashes), range(count))
            new = list(map(or_, new, later))
        seen.update(hashes)
        flags = self.flags + [0] * leading + new
        window = self.window
        if len(flags) >= window:
            sums = list(accumulate(flags, initial=0))
            self.worst = max(self.worst, max(map(sub, sums[window:], sums[:-window])))
        self.flags = flags[1 - window :]

    @property
    def share(self) -> float:
        return self.worst / self.window


class OutputScan:
    """One answer's checks. ``feed`` text as it arrives; ``finish`` for the verdicts."""

    def __init__(
        self, config: OutputChecksConfig, system: frozenset[int], injected: frozenset[int]
    ) -> None:
        self.config = config
        self.chars = 0
        self.words = 0
        self.blocked: Verdict | None = None
        self._pending: list[str] = []
        self._pending_chars = 0
        self._carry = ""
        self._tail: list[str] = []
        self._leak = _Overlap(system) if system else None
        self._echo = _Overlap(injected) if injected else None
        self._system_size = len(system)
        self._repeats = _Repeats(config.repetition_window) if config.repetition else None

    def feed(self, text: str) -> Verdict | None:
        """Take the next piece of the answer; the first blocking verdict so far, if any."""
        self._pending.append(text)
        self._pending_chars += len(text)
        self.chars += len(text)
        if self._pending_chars >= self.config.check_every:
            self._process(final=False)
        elif self.config.max_chars is not None and self.chars > self.config.max_chars:
            self._evaluate()
        return self.blocked

    def finish(self) -> list[Verdict]:
        """The answer is complete: every enabled check's verdict."""
        self._process(final=True)
        return self.verdicts()

    def verdicts(self) -> list[Verdict]:
        """Every enabled check's verdict on the text processed so far."""
        config = self.config
        out = []
        if config.leakage:
            out.append(self._leak_verdict())
        if config.echo:
            out.append(self._echo_verdict())
        if self._repeats is not None:
            out.append(self._repeat_verdict(self._repeats))
        if config.max_chars is not None or config.max_words is not None:
            out.append(self._length_verdict())
        return out

    def _process(self, *, final: bool) -> None:
        text = self._carry + "".join(self._pending).casefold()
        self._pending.clear()
        self._pending_chars = 0
        self._carry = ""
        raw = text.split()
        whole = ""
        if not final and raw and not text[-1].isspace():
            # The last token may go on in the next piece: hold it back, but for
            # its whole 32-character pieces, which are final already.
            last = raw.pop()
            cut = len(last) - len(last) % _LONGEST
            whole, self._carry = last[:cut], last[cut:]
        toks = _pieces(raw)
        if whole:
            toks = [*toks, *_pieces([whole])]
        if not toks:
            return
        toks = _strip(toks)
        self.words += len(toks)
        size = self.config.ngram
        history = self._tail + toks
        self._tail = history[1 - size :]
        hashes = _ngrams(history, size)
        if self._leak is not None:
            self._leak.feed(hashes)
        if self._echo is not None:
            self._echo.feed(hashes)
        if self._repeats is not None:
            self._repeats.feed(hashes, len(toks) - len(hashes))
        self._evaluate()

    def _evaluate(self) -> None:
        # Numbers first: a verdict (and its reason) is built only when one blocks.
        if self.blocked is not None:
            return
        config = self.config
        if (config.max_chars is not None and self.chars > config.max_chars) or (
            config.max_words is not None and self.words > config.max_words
        ):
            self.blocked = self._length_verdict()
        elif self._repeats is not None and self._repeats.share >= config.repetition_max_share:
            self.blocked = self._repeat_verdict(self._repeats)
        elif self._leak is not None and self._leaks(self._leak):
            self.blocked = self._leak_verdict()
        elif self._echo is not None and self._echo.best:
            self.blocked = self._echo_verdict()

    def _run_words(self, overlap: _Overlap) -> int:
        """The longest verbatim run, in tokens."""
        return overlap.best + self.config.ngram - 1 if overlap.best else 0

    def _leaks(self, leak: _Overlap) -> bool:
        share = len(leak.hits) / self._system_size
        config = self.config
        if self._run_words(leak) >= config.leak_min_words:
            return True
        # The share counts only for a fair amount of text: a bot that introduces itself
        # in the words of a one-line system prompt has not leaked it.
        return share >= config.leak_min_share and len(leak.hits) * 2 >= config.leak_min_words

    def _leak_verdict(self) -> Verdict:
        leak = self._leak
        if leak is None:
            return Verdict("output:leakage", Decision.ALLOW, 0.0, "no system prompt")
        share = len(leak.hits) / self._system_size
        words = self._run_words(leak)
        reason = f"{words} words verbatim from the system prompt, {share:.0%} of it"
        decision = Decision.BLOCK if self._leaks(leak) else Decision.ALLOW
        return Verdict("output:leakage", decision, words, reason)

    def _echo_verdict(self) -> Verdict:
        echo = self._echo
        if echo is None:
            return Verdict("output:echo", Decision.ALLOW, 0.0, "no override phrase in the input")
        words = self._run_words(echo)
        if words:
            reason = f"repeats {words} words of an instruction-override phrase from the input"
            return Verdict("output:echo", Decision.BLOCK, words, reason)
        return Verdict("output:echo", Decision.ALLOW, 0.0, "override phrase not repeated")

    def _repeat_verdict(self, repeats: _Repeats) -> Verdict:
        share = repeats.share
        config = self.config
        reason = (
            f"{share:.0%} of {config.repetition_window} tokens in a row repeat earlier "
            f"{config.ngram}-grams"
        )
        decision = Decision.BLOCK if share >= config.repetition_max_share else Decision.ALLOW
        return Verdict("output:repetition", decision, share, reason)

    def _length_verdict(self) -> Verdict:
        config = self.config
        if config.max_chars is not None and self.chars > config.max_chars:
            reason = f"{self.chars} characters, over {config.max_chars}"
            return Verdict("output:length", Decision.BLOCK, self.chars, reason)
        if config.max_words is not None and self.words > config.max_words:
            reason = f"{self.words} words, over {config.max_words}"
            return Verdict("output:length", Decision.BLOCK, self.words, reason)
        return Verdict("output:length", Decision.ALLOW, self.chars, "within limits")
