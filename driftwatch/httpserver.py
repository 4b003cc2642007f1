"""The daemon's HTTP server: a WSGI server that a burst of scrapers, idle connections and slow
clients cannot starve.

* A listen backlog of `BACKLOG`: a burst waits in the kernel instead of being refused.
* Accepted connections wait in one selector (no thread each) until their request head has
  arrived whole (the blank line after the headers: driftwatch serves GETs); one that has
  not sent it within `idle_timeout` is closed. An idle or trickling client costs a socket,
  not a worker.
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
MAX_WAITING = 4096  # connections waiting for their request head; beyond, new ones are closed
MAX_HEAD = 65536  # a request head longer than this goes to a worker, which refuses it


class _Handler(WSGIRequestHandler):
    timeout = 5.0  # per read and write on the connection (socketserver sets it on setup)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)


def _head_complete(conn: socket.socket) -> bool:
    """True once the request head has arrived (or the client closed, or sent more than a head
    may be): the worker's reads will not wait on the client."""
    try:
        head = conn.recv(MAX_HEAD, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True  # let the worker find the error and close it
    return not head or b"\r\n\r\n" in head or b"\n\n" in head or len(head) >= MAX_HEAD


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
        """Move connections whose request head is complete to the pool; close idle and
        overdue ones. A connection with part of a head is looked at again every 0.1 s
        (outside the selector: its pending bytes would wake it at once, again and again)."""
        waiting: dict[socket.socket, tuple[Any, float]] = {}
        partial: set[socket.socket] = set()
        while not self._closing:
            for key, _ in self._selector.select(timeout=0.1 if partial else 0.5):
                if key.data is None:  # the wake-up pipe
                    self._drain_wakeups()
                    continue
                conn = key.fileobj
                self._selector.unregister(conn)
                partial.add(conn)  # type: ignore[arg-type]
            for conn in list(partial):
                if _head_complete(conn):
                    partial.discard(conn)
                    address, _ = waiting.pop(conn)
                    with self._lock:
                        self._active[conn] = time.monotonic()
                    self._pool.submit(self._answer, conn, address)
            self._admit(waiting)
            self._expire(waiting, partial)

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

    def _expire(self, waiting: dict[socket.socket, tuple[Any, float]], partial: set[socket.socket]) -> None:
        now = time.monotonic()
        for conn, (_, since) in list(waiting.items()):
            if now - since > self.idle_timeout:
                if conn in partial:
                    partial.discard(conn)
                else:
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
