"""CPU cost of the input guards on a typical 500-token prompt, layer by layer.

Each layer runs in a tight loop on one clean prompt (no PII, no attack: the common
case) and on one holding PII; CPU µs per call is reported (best of 5 rounds).
A micro-benchmark, not a test:

    .venv/bin/python -m bench.safety [-n 50]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from sluicegate.safety.injection import InjectionCheck
from sluicegate.safety.pii import SUPPORTED_TYPES, PiiDetector, protect_body

STRUCTURED = ("CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "PHONE_NUMBER", "US_SSN")

#: About 500 tokens of ordinary support-chat prose.
CLEAN = (
    "Hello, I am writing about the delivery of our quarterly report. The team has "
    "finished the analysis of the regional sales figures and would like a summary "
    "that explains the main trends, the products that grew fastest, and the areas "
    "where demand fell compared with last year. Please keep the tone neutral and "
    "the summary short enough for a slide. "
) * 7
PII = CLEAN + (
    " Contact Maria Gonzalez at maria.gonzalez@example.com or +1 415 555 0134; her "
    "card 4111 1111 1111 1111 was charged twice, from 192.168.10.24."
)


def _cpu_us(fn: Callable[[], object], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=50, help="calls per round")
    args = parser.parse_args()
    injection = InjectionCheck()
    structured = PiiDetector(types=STRUCTURED)
    full = PiiDetector(types=SUPPORTED_TYPES)
    rows = [
        ("injection check (all layers)", lambda t: injection.check(t), args.n),
        ("PII, structured types only", structured.detect, args.n),
        ("PII, all types (spaCy NER)", full.detect, max(3, args.n // 10)),
        (
            "PII redact of a chat body, structured",
            lambda t: protect_body(
                {"messages": [{"role": "user", "content": t}]}, structured.detect, "redact"
            ),
            args.n,
        ),
    ]
    print(f"prompt: {len(CLEAN.split())} words clean, {len(PII.split())} with PII\n")
    print("| layer | clean prompt, CPU µs | prompt with PII, CPU µs |")
    print("|---|---|---|")
    for name, fn, n in rows:
        clean = _cpu_us(lambda fn=fn: fn(CLEAN), n)  # type: ignore[misc]
        pii = _cpu_us(lambda fn=fn: fn(PII), n)  # type: ignore[misc]
        print(f"| {name} | {clean:,.0f} | {pii:,.0f} |")


if __name__ == "__main__":
    main()
