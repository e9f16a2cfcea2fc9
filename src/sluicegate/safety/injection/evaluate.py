"""``sluicegate eval injection DATA_DIR``: recall per attack set, false positives per benign set.

Reads the labelled sets that ``datasets.SETS`` names from DATA_DIR, runs the shipped
check (every layer, the shipped threshold; ``--kind minilm`` adds the MiniLM model) on
each row and prints one line per set and label, plus the finer groups inside a set
(PIGuard's sources). Sets the shipped model was trained on are marked: their figures
are not a measure of generalisation.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sluicegate.safety.injection.check import InjectionCheck
from sluicegate.safety.injection.datasets import LabelledSet, load_all
from sluicegate.safety.injection.embedding import EMBEDDING_FILE, EmbeddingModel
from sluicegate.safety.injection.model import MODEL_FILE, LinearModel
from sluicegate.safety.verdict import Decision

__all__ = ["Figure", "evaluate", "format_figures", "main"]


@dataclass(frozen=True, slots=True)
class Figure:
    name: str  # set, or set/group
    attack: bool  # True: the figure is recall; False: false-positive rate
    rows: int
    flagged: int
    trained_on: bool = False

    @property
    def rate(self) -> float:
        return self.flagged / self.rows if self.rows else 0.0


def evaluate(
    check: InjectionCheck, sets: Sequence[LabelledSet], trained_on: frozenset[str] = frozenset()
) -> list[Figure]:
    """One figure per set and label, then per group inside a set that has several."""
    figures: list[Figure] = []
    for labelled in sets:
        seen = labelled.source in trained_on
        tallies: dict[tuple[str, bool], list[int]] = {}
        for example in labelled.examples:
            blocked = check.check(example.text).decision is not Decision.ALLOW
            keys = [(labelled.name, example.attack)]
            if example.group and labelled.name == "piguard_valid":
                keys.append((f"{labelled.name}/{example.group}", example.attack))
            for key in keys:
                tally = tallies.setdefault(key, [0, 0])
                tally[0] += 1
                tally[1] += blocked
        for (name, attack), (rows, flagged) in tallies.items():
            figures.append(Figure(name, attack, rows, flagged, seen))
    figures.sort(key=lambda f: (f.name.split("/")[0], "/" in f.name, not f.attack, f.name))
    return figures


def format_figures(figures: Sequence[Figure]) -> str:
    lines = [f"{'set':<48} {'label':<7} {'rows':>5} {'metric':<7} {'value':>6}"]
    for figure in figures:
        metric = "recall" if figure.attack else "FPR"
        label = "attack" if figure.attack else "benign"
        mark = "  (training data)" if figure.trained_on else ""
        lines.append(
            f"{figure.name:<48} {label:<7} {figure.rows:>5} {metric:<7} {figure.rate:>6.3f}{mark}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sluicegate eval injection", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("data_dir", type=Path, help="folder with the injection sets")
    parser.add_argument("--model", type=Path, default=MODEL_FILE, help="model file (.npz)")
    parser.add_argument("--threshold", type=float, help="override the model's threshold")
    parser.add_argument(
        "--kind",
        choices=("ngram", "minilm"),
        default="ngram",
        help="safety.guardrails.injection_model",
    )
    parser.add_argument(
        "--embedding", type=Path, default=EMBEDDING_FILE, help="MiniLM model file (.npz)"
    )
    parser.add_argument(
        "--timing", action="store_true", help="also time one ~500-token benign prompt"
    )
    args = parser.parse_args(argv)
    sets = load_all(args.data_dir)
    if not sets:
        print(f"no injection sets found in {args.data_dir}", file=sys.stderr)
        return 2
    model = LinearModel.load(args.model)
    if args.kind == "minilm":
        from sluicegate.safety.injection.embedding import WindowEncoder

        embedding = EmbeddingModel.load(args.embedding)
        check = InjectionCheck(model, args.threshold, embedding, WindowEncoder())
    else:
        check = InjectionCheck(model, args.threshold)
    trained_on = frozenset(model.info.get("trained_on", "").split(","))
    started = time.perf_counter()
    figures = evaluate(check, sets, trained_on)
    elapsed = time.perf_counter() - started
    rows = sum(len(s.examples) for s in sets)
    name = args.model.name + (f" + {args.embedding.name}" if check.slow else "")
    print(f"model {name}: threshold {check.threshold:.3f}; {model.info.get('summary', '')}")
    print(format_figures(figures))
    print(f"{rows} rows in {elapsed:.2f} s ({elapsed / rows * 1e6:.0f} µs a row, all layers)")
    if args.timing:
        print(timing(check, sets))
    return 0


def timing(check: InjectionCheck, sets: Sequence[LabelledSet]) -> str:
    """Best-of-seven wall time and mean CPU time of one check on benign rows joined to ~2,700
    characters.

    2,700 characters of this English and German text is about 500 tokens for the
    bundled MiniLM WordPiece tokenizer (and for GPT-style tokenizers, roughly).
    """
    benign = [e.text for s in sets for e in s.examples if not e.attack]
    prompt = ""
    for text in benign:
        if len(prompt) >= PROMPT_CHARS:
            break
        prompt += text + "\n"
    runs = 5 if check.slow else 50
    check.check(prompt)  # loads what loads lazily
    cpu = time.process_time()
    best = min(timeit.repeat(lambda: check.check(prompt), number=runs, repeat=7)) / runs
    cpu = (time.process_time() - cpu) / (7 * runs)
    return (
        f"one {len(prompt)}-character benign prompt: {best * 1e6:.0f} µs wall "
        f"(best of 7 x {runs}), {cpu * 1e6:.0f} µs CPU (mean)"
    )


#: About 500 tokens of English prose.
PROMPT_CHARS = 2_700


if __name__ == "__main__":
    raise SystemExit(main())
