"""The labelled injection sets in ``shared/data/injection/``, read into one shape.

Each file is a *set* of rows from one source; evaluation holds out whole sets,
because rows of one set resemble each other far more than they resemble traffic.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["SETS", "Example", "LabelledSet", "load", "load_all"]


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    attack: bool
    #: A finer source inside the set, where the file names one (PIGuard's "source").
    group: str = ""


@dataclass(frozen=True, slots=True)
class LabelledSet:
    name: str
    source: str  # the data set the rows come from: hold-outs are by source
    examples: tuple[Example, ...]

    @property
    def attacks(self) -> int:
        return sum(e.attack for e in self.examples)

    @property
    def benign(self) -> int:
        return len(self.examples) - self.attacks


#: set name -> (file, source)
SETS: dict[str, tuple[str, str]] = {
    "deepset_attacks": ("opensource_deepset_attacks.yaml", "deepset"),
    "deepset_benign": ("opensource_deepset_benign.yaml", "deepset"),
    "piguard_valid": ("piguard_valid.json", "piguard"),
    "notinject": ("piguard_notinject_one.json", "notinject"),
    "giskard": ("giskard_prompt_injections.csv", "giskard"),
}


def load(directory: Path, name: str) -> LabelledSet:
    file, source = SETS[name]
    path = directory / file
    return LabelledSet(name, source, tuple(_rows(path)))


def load_all(directory: Path) -> list[LabelledSet]:
    """Every known set whose file is in ``directory``."""
    return [
        load(directory, name) for name, (file, _) in SETS.items() if (directory / file).is_file()
    ]


def _rows(path: Path) -> Iterator[Example]:
    if path.suffix == ".yaml":
        for row in yaml.safe_load(path.read_text(encoding="utf-8")):
            yield Example(str(row["content"]), row["label"] == "malicious")
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            # Giskard's file holds attacks only.
            for record in csv.DictReader(handle):
                yield Example(record["prompt"], True, record.get("group") or "")
    else:
        rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
        for item in rows:
            # NotInject rows have no label: all are benign prompts with trigger words.
            attack = int(item.get("label", 0)) == 1
            yield Example(str(item["prompt"]), attack, str(item.get("source") or ""))
