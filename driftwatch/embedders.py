"""Embedding the reference suite's text with the model the application uses *now*.

An embedder is one method: `embed(texts) -> (n, d) float32`. Kinds:
* `http`: POST {"texts": [...]} to `url`, expects {"embeddings": [[...], ...]}.
* `openai`: any OpenAI-compatible endpoint, POST {url}/embeddings {"model", "input"}.
* `sentence_transformers`: a local model (needs `pip install sentence-transformers`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any, Protocol

import numpy as np

from driftwatch.config import EmbedderSettings
from driftwatch.errors import DriftwatchError


class EmbedderError(DriftwatchError):
    """The embedder could not be reached or answered something that is not embeddings."""


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


def _post(url: str, payload: dict[str, Any], timeout: float, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise EmbedderError(f"embedder {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise EmbedderError(f"embedder {url} unreachable: {getattr(exc, 'reason', exc)}") from None
    except json.JSONDecodeError:
        raise EmbedderError(f"embedder {url} did not answer JSON") from None


def _matrix(rows: Any, expected: int, url: str) -> np.ndarray:
    try:
        matrix = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise EmbedderError(
            f"embedder {url}: embeddings are not a list of equal-length number lists"
        ) from None
    if matrix.ndim != 2 or len(matrix) != expected:
        raise EmbedderError(f"embedder {url}: expected {expected} embeddings, got shape {matrix.shape}")
    return matrix


class HttpEmbedder:
    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.settings.api_key_env or "", "") if self.settings.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def embed(self, texts: list[str]) -> np.ndarray:
        url = self.settings.url or ""
        out = []
        for start in range(0, len(texts), self.settings.batch_size):
            batch = texts[start : start + self.settings.batch_size]
            answer = _post(url, {"texts": batch}, self.settings.timeout, self._headers())
            if not isinstance(answer, dict) or "embeddings" not in answer:
                raise EmbedderError(f"embedder {url}: answer has no 'embeddings' field")
            out.append(_matrix(answer["embeddings"], len(batch), url))
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)


class OpenAIEmbedder(HttpEmbedder):
    def embed(self, texts: list[str]) -> np.ndarray:
        url = (self.settings.url or "").rstrip("/") + "/embeddings"
        out = []
        for start in range(0, len(texts), self.settings.batch_size):
            batch = texts[start : start + self.settings.batch_size]
            answer = _post(
                url, {"model": self.settings.model, "input": batch}, self.settings.timeout, self._headers()
            )
            try:
                items = sorted(answer["data"], key=lambda item: item["index"])
                rows = [item["embedding"] for item in items]
            except (KeyError, TypeError):
                raise EmbedderError(f"embedder {url}: answer is not an OpenAI embeddings response") from None
            out.append(_matrix(rows, len(batch), url))
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
