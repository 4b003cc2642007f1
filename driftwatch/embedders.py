"""Embedding the reference suite's text with the model the application uses *now*.

An embedder is one method: `embed(texts) -> (n, d) float32`. Kinds:
* `http`: POST {"texts": [...]} to `url`, expects {"embeddings": [[...], ...]}.
* `openai`: any OpenAI-compatible endpoint, POST {url}/embeddings {"model", "input"}.
* `sentence_transformers`: a local model (needs `pip install sentence-transformers`).
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import httpx
import numpy as np

from driftwatch.config import EmbedderSettings
from driftwatch.errors import DriftwatchError
from driftwatch.outbound import describe_url, make_client, post_json


class EmbedderError(DriftwatchError):
    """The embedder could not be reached or answered something that is not embeddings."""


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


def _matrix(rows: Any, expected: int, where: str) -> np.ndarray:
    try:
        matrix = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise EmbedderError(f"{where}: embeddings are not a list of equal-length number lists") from None
    if matrix.ndim != 2 or len(matrix) != expected:
        raise EmbedderError(f"{where}: expected {expected} embeddings, got shape {matrix.shape}")
    return matrix


class HttpEmbedder:
    """POST {"texts": [...]} to the url, read {"embeddings": [[...], ...]}. Errors name the
    host only: an embedder URL may carry a key in its query string."""

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        self.url = settings.url or ""
        self.where = f"embedder {describe_url(self.url)}"

    def _open(self) -> httpx.Client:
        """A client for one `embed` call, closed after it (an embedder lives for one cycle).
        Embedding is idempotent, but a retry after a read timeout would double the wait:
        only failures to connect are retried."""
        return make_client(self.settings.connect_timeout, self.settings.timeout, connect_retries=2)

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.settings.api_key_env or "", "") if self.settings.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _post(self, client: httpx.Client, url: str, body: dict[str, Any]) -> Any:
        return post_json(client, url, body, self.where, EmbedderError, self._headers())

    def _batches(self, texts: list[str]) -> list[list[str]]:
        size = self.settings.batch_size
        return [texts[start : start + size] for start in range(0, len(texts), size)]

    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        with self._open() as client:
            for batch in self._batches(texts):
                answer = self._post(client, self.url, {"texts": batch})
                if not isinstance(answer, dict) or "embeddings" not in answer:
                    raise EmbedderError(f"{self.where}: answer has no 'embeddings' field")
                out.append(_matrix(answer["embeddings"], len(batch), self.where))
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)


class OpenAIEmbedder(HttpEmbedder):
    def embed(self, texts: list[str]) -> np.ndarray:
        url = self.url.rstrip("/") + "/embeddings"
        out = []
        with self._open() as client:
            for batch in self._batches(texts):
                answer = self._post(client, url, {"model": self.settings.model, "input": batch})
                try:
                    items = sorted(answer["data"], key=lambda item: item["index"])
                    rows = [item["embedding"] for item in items]
                except (KeyError, TypeError):
                    raise EmbedderError(f"{self.where}: not an OpenAI embeddings response") from None
                out.append(_matrix(rows, len(batch), self.where))
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)


class SentenceTransformerEmbedder:
    def __init__(self, settings: EmbedderSettings) -> None:
        try:
            from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]
        except ImportError:
            raise EmbedderError(
                "embedder kind 'sentence_transformers' needs `pip install sentence-transformers`"
            ) from None
        self.model = SentenceTransformer(settings.model)
        self.batch_size = settings.batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, batch_size=self.batch_size), dtype=np.float32)


KINDS: dict[str, type] = {
    "http": HttpEmbedder,
    "openai": OpenAIEmbedder,
    "sentence_transformers": SentenceTransformerEmbedder,
}


def make_embedder(settings: EmbedderSettings) -> Embedder:
    return KINDS[settings.kind](settings)


__all__ = ["Embedder", "EmbedderError", "make_embedder"]
