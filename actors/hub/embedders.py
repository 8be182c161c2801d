"""The hub's embedders: the shared ones (:mod:`actors.embedders`), an OpenAI-compatible
service, and :func:`load_embedder`, which turns an :class:`~actors.hub.search.EmbedderSpec`
(the ``hub serve --embedder ...`` options) into an embedder; ``auto`` picks
MiniLM when the extra is installed and the hashing fallback otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import httpx
import numpy as np

from actors.embedders import (
    MINILM_NAME,
    Embedder,
    HashingEmbedder,
    Matrix,
    MiniLMEmbedder,
    describe_embedder,
    minilm_available,
    minilm_model_dir,
    normalise_rows,
)
from actors.errors import EmbedderError
from actors.hub.search import EmbedderSpec

__all__ = [
    "MINILM_NAME",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "describe_embedder",
    "load_embedder",
    "minilm_available",
    "minilm_model_dir",
]

logger = logging.getLogger(__name__)


# -- an OpenAI-compatible endpoint ------------------------------------------------------------


def _endpoint(url: str) -> str:
    """``…/v1/embeddings`` from a base URL (``http://h:p``, ``http://h:p/v1``) or the full URL."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"the embeddings URL {url!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"the embeddings URL must be http(s)://host[:port][/path], got {url!r}")
    path = parsed.path.rstrip("/")
    if path.endswith("/embeddings"):
        return str(parsed)
    if not path:
        path = "/v1"
    return str(parsed.copy_with(path=f"{path}/embeddings"))


class OpenAIEmbedder:
    """An OpenAI-compatible ``POST /v1/embeddings`` service, by URL, key and model name.

    Sends ``{"model": ..., "input": [...]}`` with ``Authorization: Bearer
    <key>``, expects ``{"data": [{"index": i, "embedding": [...]}, ...]}``,
    and normalises each vector. Texts are cut to ``max_chars`` characters
    (embedding models read a few thousand tokens at most). Without a
    ``dimension`` it embeds one probe text at construction to learn it.
    Every failure (unreachable, timeout, a non-2xx answer, the wrong shape
    or size) raises :class:`~actors.errors.EmbedderError`; the key never
    appears in a message. Thread-safe (one pooled ``httpx.Client``).
    """

    semantic: Final = True

    def __init__(
        self,
        url: str,
        api_key: str | None,
        model: str,
        *,
        dimension: int | None = None,
        timeout: float = 10.0,
        max_chars: int = 8000,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not model:
            raise ValueError("the embeddings model name is empty")
        self.endpoint = _endpoint(url)
        self.model = model
        self.name = f"openai:{model}"
        self.max_chars = max_chars
        self.timeout = timeout
        headers = {"accept": "application/json", "user-agent": "memory-actors-hub/1"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            timeout=timeout, headers=headers, transport=transport, follow_redirects=False
        )
        self.dimension = 0
        if dimension is not None:
            if dimension < 1:
                raise ValueError(f"dimension must be positive, got {dimension}")
            self.dimension = dimension
        else:
            try:
                self.dimension = int(self._request(["dimension probe"]).shape[1])
            except BaseException:
                self._http.close()
                raise

    def __repr__(self) -> str:
        return f"<OpenAIEmbedder {self.endpoint} {self.name} dim={self.dimension}>"

    def close(self) -> None:
        self._http.close()

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        matrix = self._request([text[: self.max_chars] for text in texts], timeout)
        if matrix.shape[1] != self.dimension:
            raise EmbedderError(
                f"{self.endpoint} answered {matrix.shape[1]}-dimensional vectors for "
                f"{self.model!r}; this hub expects {self.dimension}. Set --embedder-dimension "
                "to match the model, or use another --embedder-model (vectors are re-made)."
            )
        return matrix

    def _request(self, texts: list[str], timeout: float | None = None) -> Matrix:
        where = f"POST {self.endpoint}"
        wait = self.timeout if timeout is None else max(0.001, min(timeout, self.timeout))
        try:
            response = self._http.post(
                self.endpoint, json={"model": self.model, "input": texts}, timeout=wait
            )
        except httpx.TimeoutException as exc:
            raise EmbedderError(
                f"{where}: no answer within {wait:g}s ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise EmbedderError(f"{where}: cannot reach the embeddings service ({exc})") from exc
        if not response.is_success:
            snippet = response.text[:200].strip() or "(no body)"
            raise EmbedderError(f"{where}: answered {response.status_code}: {snippet}")
        try:
            data = response.json()["data"]
            rows = sorted(data, key=lambda item: int(item["index"]))
            matrix = np.array([row["embedding"] for row in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderError(
                f"{where}: the answer is not an embeddings list ({type(exc).__name__}: {exc})"
            ) from exc
        if matrix.ndim != 2 or matrix.shape[0] != len(texts) or matrix.shape[1] < 1:
            raise EmbedderError(
                f"{where}: expected {len(texts)} vectors, got an array of shape {matrix.shape}"
            )
        if not np.isfinite(matrix).all():
            raise EmbedderError(f"{where}: the vectors hold NaN or infinity")
        return normalise_rows(matrix)


# -- choosing one -------------------------------------------------------------------------------


def load_embedder(spec: EmbedderSpec) -> Embedder | None:
    """The embedder ``spec`` asks for (None for ``none``); raises EmbedderError or ValueError."""
    kind = spec.kind
    if kind == "none":
        return None
    if kind == "auto":
        kind = "minilm" if minilm_available() else "hashing"
        if kind == "hashing":
            logger.warning(
                "semantic recall uses the keyword-ish hashing fallback: run "
                "memory-actors install-model for the all-MiniLM-L6-v2 model"
            )
    if kind == "minilm":
        return MiniLMEmbedder()
    if kind == "hashing":
        return HashingEmbedder() if spec.dimension is None else HashingEmbedder(spec.dimension)
    if spec.url is None or spec.model is None:
        raise ValueError("--embedder openai needs --embedder-url and --embedder-model")
    return OpenAIEmbedder(
        spec.url, spec.api_key, spec.model, dimension=spec.dimension, timeout=spec.timeout
    )
