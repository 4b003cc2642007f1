"""Worker processes for bench/peers.py: one per environment per lane, answering JSON lines
(bench/peers_worker.py). A request that runs over its time-out kills the worker, which is
restarted, so one stuck method cannot stall a lane."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent


class WorkerGone(Exception):
    pass


class Worker:
    """One worker process of one environment; requests time out by killing it (it is restarted)."""

    def __init__(self, env: str, python: Path, log: Path) -> None:
        self.env, self.python, self.log = env, python, log
        self.hello: dict[str, Any] = {}
        self.start()

    def start(self) -> None:
        if getattr(self, "stderr", None):
            self.stderr.close()
        self.stderr = self.log.open("a")
        self.proc = subprocess.Popen(
            [str(self.python), str(BENCH / "peers_worker.py"), self.env],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc, self.lines), daemon=True).start()
        self.hello = self._read(600)

    @staticmethod
    def _pump(proc: subprocess.Popen, lines: queue.Queue) -> None:  # type: ignore[type-arg]
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    def _read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise TimeoutError(f"no answer in {timeout:.0f} s") from None
        if line is None:
            code = self.proc.wait()
            raise WorkerGone(
                f"worker exited with status {code}" + (" (killed: out of memory?)" if code == -9 else "")
            )
        return json.loads(line)

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The answer, or {"error": ...} after a time-out or a dead worker (then restarted)."""
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            return self._read(timeout)
        except TimeoutError as exc:
            self.start()
            return {"error": f"over budget: {exc}", "timeout": True}
        except (WorkerGone, BrokenPipeError) as exc:
            self.start()
            return {"error": str(exc)}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()


class Lane:
    """One worker per environment, and a directory for the arrays they read."""

    def __init__(self, index: int, pythons: dict[str, Path], scratch: Path, logs: Path) -> None:
        self.index, self.pythons, self.logs = index, pythons, logs
        self.dir = scratch / f"lane{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.workers: dict[str, Worker] = {}

    def worker(self, env: str) -> Worker:
        if env not in self.workers:
            self.workers[env] = Worker(env, self.pythons[env], self.logs / f"worker-{env}-{self.index}.log")
        return self.workers[env]

    def publish(self, baseline: np.ndarray, windows: np.ndarray, token: str) -> dict[str, str]:
        return publish(self.dir, baseline, windows, token)

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()


def publish(directory: Path, baseline: np.ndarray, windows: np.ndarray, token: str) -> dict[str, str]:
    """Write a run's arrays for the workers (they memory-map them) and return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"token": token}
    for name, array in (("ref", baseline), ("cur", windows)):
        path = directory / f"{name}.npy"
        temporary = directory / f"{name}.tmp.npy"
        np.save(temporary, array)
        os.replace(temporary, path)  # a new file: a worker still mapping the old one keeps it
        paths[name] = str(path)
    return paths


def run_lanes(lanes: list[Lane], target: Any, todo: queue.Queue) -> None:  # type: ignore[type-arg]
    threads = [threading.Thread(target=target, args=(lane, todo)) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
