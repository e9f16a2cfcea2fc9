"""Train the injection classifiers shipped as src/sluicegate/safety/injection/*.npz.

    .venv/bin/python scripts/train_injection.py [--data ../shared/data/injection] [--no-write]

Two models: model.npz (the n-gram classifier, ``injection_model: ngram``) and
embedding_model.npz (logistic regression on MiniLM window embeddings, stacked on
out-of-fold n-gram margins, ``injection_model: minilm``; the window vectors are
cached in .sluicegate/ between runs). Needs scikit-learn (a dev dependency); the
gateway scores with numpy alone (and onnxruntime for the MiniLM route). Features
are the package's own (hashed char 3-5-grams, word 1-2-grams, pattern-family flags),
so training and serving cannot drift apart. Deterministic: fixed seeds, sorted inputs.

Training rows: the deepset set, plus auxiliary rows that are not from any evaluation set
(scripts/injection_synthetic.py; docstrings of the Python standard library and
concatenated sentences from shared/data/pii as benign documents). The threshold is
the one that flags TARGET_FPR of the benign training rows in 5-fold out-of-fold
predictions: training data only. Printed figures:

1. held-out sets (PIGuard valid, giskard, NotInject) with every layer of the check;
2. leave-one-dataset-out: each public set held out in turn, the rest plus the auxiliary
   rows trained on, the threshold again picked on training rows only; both models,
   then a summary table.

``--train all`` trains the shipped model on every set instead (figures 2 still hold for
the method; figures 1 then measure training data).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import random
import sys
import sysconfig
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import (  # type: ignore[import-untyped]
    StratifiedKFold,
    cross_val_predict,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import injection_synthetic  # noqa: E402
from sluicegate.safety.injection import features, heuristics  # noqa: E402
from sluicegate.safety.injection.check import InjectionCheck  # noqa: E402
from sluicegate.safety.injection.datasets import LabelledSet, load_all  # noqa: E402
from sluicegate.safety.injection.embedding import (  # noqa: E402
    EMBEDDING_FILE,
    EmbeddingModel,
    WindowEncoder,
)
from sluicegate.safety.injection.evaluate import Figure, evaluate, format_figures  # noqa: E402
from sluicegate.safety.injection.model import MODEL_FILE, LinearModel  # noqa: E402
from sluicegate.safety.injection.normalize import fold_obfuscation, normalize  # noqa: E402

SEED = 0
C = 4.0
#: Regularisation of the embedding model (unit vectors, 384 dimensions).
C_EMBEDDING = 1.0
CACHE = ROOT / ".sluicegate" / "injection-windows.npz"
TARGET_FPR = 0.01
FAMILIES = tuple(heuristics.FAMILIES)
#: Public sets the shipped model trains on by default; the rest are held out.
TRAIN_SOURCES = ("deepset",)

Row = tuple[str, bool]


def default_data() -> Path:
    for candidate in (ROOT.parent / "shared/data/injection", ROOT / "../shared/data/injection"):
        if candidate.is_dir():
            return candidate.resolve()
    return ROOT.parent / "shared/data/injection"


def stdlib_docstrings(count: int, seed: int) -> list[Row]:
    """Benign documents: long docstrings of the standard library's top-level modules."""
    docs: list[str] = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 200:
                    docs.append(doc)
    return [(doc, False) for doc in random.Random(seed).sample(docs, min(count, len(docs)))]


def pii_documents(data: Path, count: int, seed: int) -> list[Row]:
    """Benign documents: a few to a dozen sentences of the PII set run together."""
    path = data.parent / "pii/presidio_generated_small.json"
    if not path.is_file():
        return []
    sentences = [row["full_text"] for row in json.loads(path.read_text(encoding="utf-8"))]
    rng = random.Random(seed)
    return [(" ".join(rng.sample(sentences, rng.randint(3, 15))), False) for _ in range(count)]


def auxiliary(data: Path, seed: int) -> list[Row]:
    synthetic: list[Row] = injection_synthetic.rows(seed) + injection_synthetic.indirect_rows(seed)
    return synthetic + stdlib_docstrings(300, seed) + pii_documents(data, 150, seed)


class Featurizer:
    """Rows -> the sparse matrix the model's ``probability`` computes on, cached per text."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple[np.ndarray, np.ndarray, list[int]]] = {}

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
        if text not in self.cache:
            base = normalize(text)
            h = features.hashed(base)
            found = heuristics.hits(fold_obfuscation(base))
            flags = [k for k, name in enumerate(FAMILIES) if name in found]
            self.cache[text] = (np.unique(h.chars), np.unique(h.words), flags)
        return self.cache[text]

    def matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        data: list[float] = []
        indices: list[int] = []
        indptr = [0]
        for text in texts:
            chars, words, flags = self.row(text)
            for block in (chars, words):
                if len(block):
                    indices.extend(block.tolist())
                    data.extend([1.0 / np.sqrt(len(block))] * len(block))
            indices.extend(features.DIMENSIONS + k for k in flags)
            data.extend([1.0] * len(flags))
            indptr.append(len(indices))
        shape = (len(texts), features.DIMENSIONS + len(FAMILIES))
        return sp.csr_matrix((np.array(data), np.array(indices), np.array(indptr)), shape=shape)


def classifier(seed: int) -> LogisticRegression:
    return LogisticRegression(
        C=C, class_weight="balanced", solver="liblinear", max_iter=10_000, random_state=seed
    )


def train(
    rows: Sequence[Row], featurizer: Featurizer, seed: int, info: dict[str, str]
) -> LinearModel:
    texts = [text for text, _ in rows]
    labels = np.array([attack for _, attack in rows], dtype=int)
    x = featurizer.matrix(texts)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    oof = cross_val_predict(classifier(seed), x, labels, cv=folds, method="predict_proba")[:, 1]
    benign = np.sort(oof[labels == 0])
    # The lowest threshold that flags at most TARGET_FPR of the benign rows out of fold.
    threshold = float(benign[int(np.ceil((1 - TARGET_FPR) * len(benign))) - 1]) + 1e-6
    oof_recall = float(np.mean(oof[labels == 1] >= threshold))
    fitted = classifier(seed).fit(x, labels)
    weights = fitted.coef_[0].astype(np.float32)
    info = {
        **info,
        "rows": str(len(rows)),
        "attacks": str(int(labels.sum())),
        "oof_recall": f"{oof_recall:.3f}",
        "oof_fpr_target": str(TARGET_FPR),
    }
    return LinearModel(weights, float(fitted.intercept_[0]), threshold, FAMILIES, info)


def key(text: str) -> str:
    return " ".join(normalize(text).lower().split())


def rows_of(sets: Sequence[LabelledSet], exclude: Collection[str] = ()) -> list[Row]:
    return [(e.text, e.attack) for s in sets for e in s.examples if key(e.text) not in exclude]


class CachedEncoder(WindowEncoder):
    """The check's window encoder, remembering each text's vectors (on disk between runs)."""

    def __init__(self, path: Path) -> None:
        super().__init__(threads=2)
        self.path = path
        self.cache: dict[str, np.ndarray] = {}
        self.dirty = False
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                counts = data["counts"]
                bounds = np.concatenate(([0], np.cumsum(counts)))
                for k, digest in enumerate(data["keys"]):
                    self.cache[str(digest)] = data["vectors"][bounds[k] : bounds[k + 1]]

    @staticmethod
    def digest(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        digests = [self.digest(text) for text in texts]
        missing = sorted({d: t for d, t in zip(digests, texts, strict=True) if d not in self.cache})
        if missing:
            lookup = {self.digest(t): t for t in texts}
            found = super().vectors([lookup[d] for d in missing])
            self.cache.update(zip(missing, found, strict=True))
            self.dirty = True
        return [self.cache[d] for d in digests]

    def save(self) -> None:
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.cache)
        np.savez(
            self.path,
            keys=np.array(keys),
            counts=np.array([len(self.cache[k]) for k in keys]),
            vectors=np.concatenate([self.cache[k] for k in keys]),
        )


def embedding_classifier(seed: int) -> LogisticRegression:
    return LogisticRegression(
        C=C_EMBEDDING, class_weight="balanced", solver="liblinear", random_state=seed
    )


def window_margins(fitted: LogisticRegression, vectors: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([float(np.max(fitted.decision_function(v))) for v in vectors])


def fit_windows(vectors: Sequence[np.ndarray], labels: np.ndarray, seed: int) -> LogisticRegression:
    """Every window carries its text's label; the check reads the highest window."""
    x = np.concatenate(vectors)
    y = np.concatenate([np.full(len(v), label) for v, label in zip(vectors, labels, strict=True)])
    return embedding_classifier(seed).fit(x, y)


def pick_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The lowest threshold that flags at most TARGET_FPR of benign rows; and its recall."""
    benign = np.sort(scores[labels == 0])
    threshold = float(benign[int(np.ceil((1 - TARGET_FPR) * len(benign))) - 1]) + 1e-6
    return threshold, float(np.mean(scores[labels == 1] >= threshold))


def train_embedding(
    rows: Sequence[Row],
    featurizer: Featurizer,
    encoder: CachedEncoder,
    seed: int,
    info: dict[str, str],
) -> EmbeddingModel:
    """The window model, and a stacker over out-of-fold n-gram and window margins."""
    texts = [text for text, _ in rows]
    labels = np.array([attack for _, attack in rows], dtype=int)
    x = featurizer.matrix(texts)
    vectors = encoder.vectors([normalize(text) for text in texts])
    ngram_oof = np.zeros(len(rows))
    window_oof = np.zeros(len(rows))
    for fit_rows, test_rows in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, labels):
        ngram = classifier(seed).fit(x[fit_rows], labels[fit_rows])
        ngram_oof[test_rows] = ngram.decision_function(x[test_rows])
        windows = fit_windows([vectors[i] for i in fit_rows], labels[fit_rows], seed)
        window_oof[test_rows] = window_margins(windows, [vectors[i] for i in test_rows])
    stacked = np.column_stack((ngram_oof, window_oof))
    stacker = LogisticRegression(C=1.0, class_weight="balanced").fit(stacked, labels)
    oof = stacker.predict_proba(stacked)[:, 1]
    threshold, oof_recall = pick_threshold(oof, labels)
    windows = fit_windows(vectors, labels, seed)
    a, b = (float(v) for v in stacker.coef_[0])
    info = {
        **info,
        "rows": str(len(rows)),
        "oof_recall": f"{oof_recall:.3f}",
        "oof_fpr_target": str(TARGET_FPR),
    }
    return EmbeddingModel(
        windows.coef_[0].astype(np.float32),
        float(windows.intercept_[0]),
        (a, b, float(stacker.intercept_[0])),
        threshold,
        info,
    )


def headline(figures: Sequence[Figure]) -> dict[tuple[str, bool], float]:
    """Set-level figures only (no groups)."""
    return {(f.name, f.attack): f.rate for f in figures if "/" not in f.name}


def lodo(
    sets: Sequence[LabelledSet],
    extra: Sequence[Row],
    featurizer: Featurizer,
    encoder: CachedEncoder,
    seed: int,
) -> None:
    """Each public data set held out in turn: both checks trained on the rest."""
    sources = sorted({s.source for s in sets})
    table: list[str] = []
    for source in sources:
        out = [s for s in sets if s.source == source]
        keys = {key(e.text) for s in out for e in s.examples}
        rows = rows_of([s for s in sets if s.source != source], keys) + list(extra)
        ngram = train(rows, featurizer, seed, {})
        embedding = train_embedding(rows, featurizer, encoder, seed, {})
        plain = evaluate(InjectionCheck(ngram), out)
        both = evaluate(InjectionCheck(ngram, embedding=embedding, encoder=encoder), out)
        print(f"\n== leave-one-dataset-out: {source} held out")
        print(f"ngram: threshold {ngram.threshold:.3f}")
        print(format_figures(plain))
        print(f"ngram + minilm: threshold {embedding.threshold:.3f}")
        print(format_figures(both))
        minilm = headline(both)
        for (name, attack), rate in headline(plain).items():
            metric = "recall" if attack else "FPR"
            table.append(f"{name:<18} {metric:<7} {rate:>6.3f} {minilm[(name, attack)]:>15.3f}")
    print("\n== leave-one-dataset-out summary (held-out set; trained on the others + auxiliary)")
    print(f"{'held-out set':<18} {'metric':<7} {'ngram':>6} {'ngram + minilm':>15}")
    print("\n".join(table))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--out", type=Path, default=MODEL_FILE)
    parser.add_argument("--embedding-out", type=Path, default=EMBEDDING_FILE)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--train", choices=("holdout", "all"), default="holdout")
    parser.add_argument("--no-write", action="store_true", help="print figures only")
    parser.add_argument("--skip-lodo", action="store_true")
    parser.add_argument("--cache", type=Path, default=CACHE, help="MiniLM window vectors")
    args = parser.parse_args(argv)
    np.random.seed(args.seed)
    random.seed(args.seed)
    started = time.perf_counter()
    sets = load_all(args.data)
    sources = sorted({s.source for s in sets})
    extra = auxiliary(args.data, args.seed)
    featurizer = Featurizer()
    encoder = CachedEncoder(args.cache)
    print(f"data: {args.data} ({', '.join(f'{s.name} {len(s.examples)}' for s in sets)})")
    print(f"auxiliary rows: {len(extra)} ({sum(a for _, a in extra)} attacks)")
    print(f"C={C} C_embedding={C_EMBEDDING} target out-of-fold FPR={TARGET_FPR} seed={args.seed}\n")

    train_sources = set(sources) if args.train == "all" else set(TRAIN_SOURCES)
    held = [s for s in sets if s.source not in train_sources]
    held_keys = {key(e.text) for s in held for e in s.examples}
    rows = rows_of([s for s in sets if s.source in train_sources], held_keys) + extra
    trained_on = ",".join(sorted(train_sources))
    summary = f"trained on {trained_on} + {len(extra)} auxiliary rows, seed {args.seed}"
    info = {"trained_on": trained_on, "summary": summary}
    model = train(rows, featurizer, args.seed, info)
    embedding = train_embedding(rows, featurizer, encoder, args.seed, info)
    print(f"== shipped n-gram model: {summary}")
    print(f"threshold {model.threshold:.3f} (out-of-fold recall {model.info['oof_recall']})")
    print(format_figures(evaluate(InjectionCheck(model), sets, frozenset(train_sources))))
    print(f"\n== shipped n-gram + MiniLM model: {summary}")
    print(
        f"threshold {embedding.threshold:.3f} (out-of-fold recall {embedding.info['oof_recall']})"
    )
    stacked = InjectionCheck(model, embedding=embedding, encoder=encoder)
    print(format_figures(evaluate(stacked, sets, frozenset(train_sources))))

    if not args.skip_lodo:
        lodo(sets, extra, featurizer, encoder, args.seed)
    encoder.save()

    if not args.no_write:
        index = np.flatnonzero(model.weights)
        model.save(args.out, index)
        print(f"\nwrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {len(index)} weights)")
        embedding.save(args.embedding_out)
        size = args.embedding_out.stat().st_size / 1e3
        print(f"wrote {args.embedding_out} ({size:.1f} KB)")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
