"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def sqlalchemy_url(dsn: str) -> str:
    return "postgresql+psycopg://" + dsn.split("://", 1)[1]


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `driftwatch ARGS` as a real subprocess, the way a user or a container does."""
    return subprocess.run(
        [sys.executable, "-m", "driftwatch", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def create_vector_table(
    dsn: str,
    table: str,
    vectors,  # np.ndarray (n, d) or a list of 1-D arrays / None for mixed dims and NULLs
    *,
    kind: str = "vector",
    versions: list[str | None] | None = None,
    ids: list[int] | None = None,
    texts: list[str] | None = None,
) -> None:
    """Create `table` (id bigint, embedding, model_version, content) and bulk-load it by binary COPY."""
    import numpy as np
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg import sql

    n = len(vectors)
    ids = ids if ids is not None else list(range(n))
    versions = versions if versions is not None else ["v1"] * n
    texts = texts if texts is not None else [f"doc {i}" for i in ids]
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        name = sql.Identifier(table)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint PRIMARY KEY, embedding {} , model_version text, content text, "
                "created_at timestamptz DEFAULT now())"
            ).format(name, sql.SQL(kind))
        )
        binary = kind.startswith("vector")
        fmt = sql.SQL(" (FORMAT BINARY)") if binary else sql.SQL("")
        with conn.cursor().copy(
            sql.SQL("COPY {} (id, embedding, model_version, content) FROM STDIN{}").format(name, fmt)
        ) as copy:
            if binary:
                copy.set_types(["int8", "vector", "text", "text"])
            for i, vec, ver, text in zip(ids, vectors, versions, texts, strict=True):
                if binary:
                    value = None if vec is None else np.asarray(vec, dtype=np.float32)
                else:
                    value = (
                        None if vec is None else "[" + ",".join(repr(float(x)) for x in np.asarray(vec)) + "]"
                    )
                copy.write_row((int(i), value, ver, text))
        conn.execute(sql.SQL("ANALYZE {}").format(name))


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POSTed JSON body; stands in for
    Alertmanager, Slack and webhook receivers. `fail_next(n)` answers the next n with 500;
    `delay` holds each answer that long; `before_answer(path, body, headers)` runs after a
    POST is recorded and before it is answered (where a sender may crash)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts: list[tuple[str, object, float]] = []  # (path, body, time.time() on arrival)
        self.headers: list[dict[str, str]] = []  # each recorded POST's headers
        self.delay = 0.0
        self.before_answer = None
        self._failures = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json
                import time

                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    failing = receiver._failures > 0
                    receiver._failures -= failing
                    if not failing:
                        receiver.posts.append((self.path, json.loads(body), time.time()))
                        receiver.headers.append(dict(self.headers.items()))
                if receiver.before_answer is not None:
                    receiver.before_answer(self.path, json.loads(body), dict(self.headers.items()))
                time.sleep(receiver.delay)
                try:
                    self.send_response(500 if failing else 200)
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up (timed out, or died) before the answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._failures = count

    def bodies(self, path: str | None = None) -> list[object]:
        with self._lock:
            return [body for p, body, _ in self.posts if path is None or p == path]

    def timed(self, path: str) -> list[tuple[object, float]]:
        with self._lock:
            return [(body, at) for p, body, at in self.posts if p == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class EmbeddingService:
    """A real HTTP embedding service on 127.0.0.1 behind driftwatch's `http` embedder protocol:
    POST {"texts"} -> {"embeddings"}. `embed` (texts -> vectors) can be swapped between calls,
    as a redeploy swaps the model; `delay` seconds an answer stands for a remote model under load."""

    def __init__(self, embed: Callable[[list[str]], Any], delay: float = 0.0) -> None:
        import json
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.embed, self.delay, self.requests = embed, delay, 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["texts"]
                service.requests += 1
                time.sleep(service.delay)
                vectors = service.embed(texts)
                body = json.dumps({"embeddings": [list(map(float, v)) for v in vectors]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/embed"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class GarbageReceiver:
    """A TCP service on 127.0.0.1 that answers every request with `GARBAGE\r\n\r\n`, as any
    non-HTTP service on a notifier's URL would; counts the connections it got."""

    def __init__(self) -> None:
        import socket
        import threading

        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(b"GARBAGE\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._sock.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand: alert timing without sleeping."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, minutes: float = 15) -> None:
        self.now += timedelta(minutes=minutes)
