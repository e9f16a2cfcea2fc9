"""Generate labelled PII sentences offline with presidio-evaluator's generator.

presidio-evaluator is not a dependency of Sluicegate (it pulls in pandas, Faker,
transformers...); install it in a separate environment and run this module there::

    python -m venv /tmp/pe
    /tmp/pe/bin/pip install faker==40.54.0 pandas tqdm python-dotenv pyyaml requests \\
        plotly spacy==3.8.18 presidio-analyzer==2.2.366 presidio-anonymizer==2.2.366
    /tmp/pe/bin/pip install --no-deps presidio-evaluator==0.3.2
    PYTHONPATH=src /tmp/pe/bin/python -m sluicegate.safety.pii.datagen 3000 7 test.json

The generator ships its templates and fake-identity tables, so nothing is fetched.
SEED does not make a run repeatable (presidio-evaluator 0.3.2 also draws from an
unseeded source): keep the file a reported figure was measured on.
Its templates hold a literal backslash-n where a line break is meant (and ``\\,`` for a
comma); those are turned into what they stand for, with the spans moved to match.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "unescape"]

_ESCAPED = re.compile(r"\\[n,]")


def unescape(row: dict[str, Any]) -> dict[str, Any]:
    """One generated row with its template escapes resolved and spans shifted."""
    text: str = row["full_text"]
    cuts = [m.start() for m in _ESCAPED.finditer(text)]

    def shift(position: int) -> int:
        return position - sum(1 for cut in cuts if cut < position)

    new_text = _ESCAPED.sub(lambda m: "\n" if m.group() == "\\n" else ",", text)
    spans = []
    for span in row["spans"]:
        start, end = shift(span["start_position"]), shift(span["end_position"])
        spans.append(
            {
                "entity_type": span["entity_type"],
                "entity_value": new_text[start:end],
                "start_position": start,
                "end_position": end,
            }
        )
    return {"full_text": new_text, "spans": spans, "template_id": row.get("template_id")}


def main(argv: Sequence[str] | None = None) -> int:
    """``datagen N SEED OUT``: write N generated rows to OUT (SEED: see the module doc)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: datagen N SEED OUT.json", file=sys.stderr)
        return 2
    count, seed, out = int(args[0]), int(args[1]), args[2]
    generator = importlib.import_module("presidio_evaluator.data_generator")
    faker = generator.PresidioSentenceFaker(locale="en_US", lower_case_ratio=0.05, random_seed=seed)
    rows = [unescape(sample.to_dict()) for sample in faker.generate_new_fake_sentences(count)]
    with open(out, "w", encoding="utf-8") as file:
        json.dump(rows, file, ensure_ascii=False, indent=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
