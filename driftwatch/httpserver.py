"""The daemon's HTTP server: a WSGI server that a burst of scrapers, idle connections and slow
clients cannot starve.

* A listen backlog of `BACKLOG`: a burst waits in the kernel instead of being refused.
* Accepted connections wait in one selector (no thread each) until their first bytes arrive;
  one that sends nothing for `idle_timeout` is closed.
* A fixed pool of `workers` threads answers requests, so the thread count is bounded.
* Every connection a worker holds gets `timeout` per read and `deadline` in all: a client
  that trickles its request byte by byte is cut off instead of holding a worker for ever.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

log = logging.getLogger(__name__)

BACKLOG = 1024  # the kernel caps it at net.core.somaxconn (4096 on current Linux)
MAX_WAITING = 4096  # connections waiting for their first bytes; beyond, new ones are closed


class _Handler(WSGIRequestHandler):
    timeout = 5.0  # per read and write on the connection (socketserver sets it on setup)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)


class HttpServer(WSGIServer):
    request_queue_size = BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        app: Any,
        workers: int = 8,
        idle_timeout: float = 10.0,
        deadline: float = 15.0,
        ipv6: bool = False,
    ) -> None:
        self.address_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        super().__init__(address, _Handler)
        self.set_app(app)
        self.idle_timeout, self.deadline = idle_timeout, deadline
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="driftwatch-http")
        self._arrivals: queue.SimpleQueue[tuple[socket.socket, Any]] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._active: dict[socket.socket, float] = {}  # connection -> when a worker took it
        self._lock = threading.Lock()
        self._closing = False
        self._watcher = threading.Thread(target=self._watch, name="driftwatch-http-wait", daemon=True)
        self._watcher.start()

    # socketserver calls this on the accepting thread for every new connection
    def process_request(self, request: Any, client_address: Any) -> None:
        self._arrivals.put((request, client_address))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _watch(self) -> None:
        """Move connections with bytes to read to the pool; close idle and overdue ones."""
        waiting: dict[socket.socket, tuple[Any, float]] = {}
        while not self._closing:
            for key, _ in self._selector.select(timeout=0.5):
                if key.data is None:  # the wake-up pipe
                    self._drain_wakeups()
                    continue
                conn = key.fileobj
                self._selector.unregister(conn)
                address, _ = waiting.pop(conn)  # type: ignore[call-overload]
                with self._lock:
                    self._active[conn] = time.monotonic()  # type: ignore[index]
                self._pool.submit(self._answer, conn, address)
            self._admit(waiting)
            self._expire(waiting)

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_r.recv(4096)

    def _admit(self, waiting: dict[socket.socket, tuple[Any, float]]) -> None:
        while True:
            try:
                conn, address = self._arrivals.get_nowait()
            except queue.Empty:
                return
            if len(waiting) >= MAX_WAITING:
                self.shutdown_request(conn)
                continue
            waiting[conn] = (address, time.monotonic())
            self._selector.register(conn, selectors.EVENT_READ, address)

    def _expire(self, waiting: dict[socket.socket, tuple[Any, float]]) -> None:
        now = time.monotonic()
        for conn, (_, since) in list(waiting.items()):
            if now - since > self.idle_timeout:
                self._selector.unregister(conn)
                del waiting[conn]
                self.shutdown_request(conn)
        with self._lock:
            overdue = [c for c, since in self._active.items() if now - since > self.deadline]
        for conn in overdue:  # unblocks the worker's read or write; it then closes the connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _answer(self, conn: socket.socket, address: Any) -> None:
        try:
            self.finish_request(conn, address)
        except Exception:
            log.debug("http request from %s failed", address, exc_info=True)
        finally:
            with self._lock:
                self._active.pop(conn, None)
            self.shutdown_request(conn)

    def server_close(self) -> None:
        self._closing = True
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._watcher.join(timeout=2)
        self._wake_r.close()
        self._wake_w.close()


__all__ = ["BACKLOG", "HttpServer"]
