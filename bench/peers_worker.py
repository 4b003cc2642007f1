"""One worker of bench/peers.py, run by the Python of one environment (the project's .venv
for driftwatch, bench/.peers/NAME/bin/python for a peer):

    python bench/peers_worker.py ENV

It imports that environment's libraries once (imports are not timed), then answers one
JSON request per line on stdin with one JSON line on the original stdout; whatever the
libraries print goes to stderr, which the driver keeps in a log. Arrays come as .npy
files (memory-mapped) and are copied into memory before a step is measured, so a step's
memory is what the method itself allocates.

Memory: before each step the kernel's peak-RSS mark is reset (`echo 5 >
/proc/self/clear_refs`), so VmHWM afterwards is the peak during that step alone; the
step's peak is VmHWM minus the RSS it started with.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _measured(step: Any, args: tuple[Any, ...], collect: bool) -> tuple[Any, float, float | None]:
    """(result, seconds, peak MiB above the starting RSS) of step(*args)."""
    if collect:
        gc.collect()
    resettable = _reset_peak()
    before = _status("VmRSS")
    started = time.perf_counter()
    result = step(*args)
    seconds = time.perf_counter() - started
    peak = _status("VmHWM")
    mib = None if not resettable or before is None or peak is None else max(peak - before, 0) / 2**20
    return result, seconds, mib


def _evenly(total: int, rows: int) -> Any:
    """Indices of `rows` rows spread evenly over `total` (keeps a window's time order)."""
    import numpy as np

    if rows >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, rows).round().astype(np.int64))


def _error(exc: BaseException) -> dict[str, Any]:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {"error": f"{type(exc).__name__}: {exc}".strip(), "trace": "".join(lines[-6:])}


def main() -> None:
    env = sys.argv[1]
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, str(HERE))
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    from peers_methods import ENV_IMPORTS, ENV_PACKAGES, STEPS

    def answer(message: dict[str, Any]) -> None:
        protocol.write(
            json.dumps(message, default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n"
        )

    import_error = None
    try:
        for module in ENV_IMPORTS[env]:
            importlib.import_module(module)
        if env == "alibi":
            import torch

            torch.set_num_threads(1)
    except Exception as exc:  # reported, verbatim, in BENCHMARKS.md
        import_error = _error(exc)
    versions = {}
    for package in ENV_PACKAGES[env]:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    answer(
        {
            "env": env,
            "python": sys.version.split()[0],
            "versions": versions,
            "import_error": import_error,
            "rss_mib": (_status("VmRSS") or 0) / 2**20,
            "pid": os.getpid(),
        }
    )
    arrays: dict[str, tuple[str, Any]] = {}  # "ref"/"cur" -> (token, memory-mapped array)
    states: dict[str, Any] = {}

    def array(kind: str, path: str, token: str) -> Any:
        if kind not in arrays or arrays[kind][0] != token:
            arrays.pop(kind, None)
            arrays[kind] = (token, np.load(path, mmap_mode="r"))
        return arrays[kind][1]

    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "quit":
            break
        try:
            name = request["method"]
            setup, test = STEPS[name]
            if op == "setup":
                states.pop(name, None)
                source = array("ref", request["path"], request["token"])
                reference = np.ascontiguousarray(source[_evenly(len(source), request["rows"])])
                state, seconds, mib = _measured(setup, (reference, request["n"], request["seed"]), True)
                del reference
                states[name] = state
                answer({"seconds": seconds, "peak_mib": mib})
            elif op == "test":
                source = array("cur", request["path"], request["token"])[request["index"]]
                current = np.ascontiguousarray(source[_evenly(len(source), request["rows"])])
                state = states[name]
                variants, seconds, mib = _measured(test, (state, current, request["seed"]), False)
                del current
                answer({"seconds": seconds, "peak_mib": mib, "variants": variants})
            elif op == "drop":
                states.pop(name, None)
                answer({})
            else:
                answer({"error": f"unknown op {op!r}"})
        except Exception as exc:  # MemoryError included: the driver records it
            answer(_error(exc))


if __name__ == "__main__":
    main()
