"""Virtual environments for the peers of bench/peers.py, one each under bench/.peers/NAME,
installed from the pinned list bench/peers_requirements/NAME.txt (never into the project).

    .venv/bin/python bench/peers_install.py [NAME ...]    # bench/peers.py calls this itself

An environment is rebuilt when its pin list changes (the list's hash is kept in
bench/.peers/NAME/.installed). A failed install is kept as a result with pip's own last
lines, so the benchmark can say exactly why a peer is missing; pip's full output is in
bench/.peers/NAME.install.log. pip's cache is bench/.peers/pip-cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH / ".peers"
PINS = BENCH / "peers_requirements"
PEERS = ("evidently", "alibi", "nannyml")


@dataclass
class Installed:
    name: str
    ok: bool
    seconds: float | None  # None: it was already there
    error: str | None = None

    @property
    def python(self) -> Path:
        return ROOT / self.name / "bin" / "python"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(command: list[str], log: Path, env: dict[str, str]) -> tuple[int, str]:
    with log.open("a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        out.write(done.stdout)
    return done.returncode, done.stdout


def _last_lines(output: str, count: int = 12) -> str:
    lines = [line for line in output.splitlines() if line.strip() and "is ignored: it is neither" not in line]
    return "\n".join(lines[-count:])


def install(name: str) -> Installed:
    pins = PINS / f"{name}.txt"
    target = ROOT / name
    marker = target / ".installed"
    digest = _digest(pins)
    if marker.exists() and marker.read_text().strip() == digest and (target / "bin" / "python").exists():
        return Installed(name, True, None)
    shutil.rmtree(target, ignore_errors=True)
    ROOT.mkdir(parents=True, exist_ok=True)
    log = ROOT / f"{name}.install.log"
    log.write_text("")
    env = dict(os.environ, PIP_CACHE_DIR=str(ROOT / "pip-cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    started = time.monotonic()
    code, output = _run([sys.executable, "-m", "venv", str(target)], log, env)
    if code == 0:
        pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(pins)]
        code, output = _run(pip, log, env)
    seconds = time.monotonic() - started
    if code != 0:
        return Installed(name, False, seconds, _last_lines(output) or f"exit status {code}")
    marker.write_text(digest + "\n")
    return Installed(name, True, seconds)


def ensure(names: tuple[str, ...] = PEERS, say=print) -> dict[str, Installed]:  # type: ignore[no-untyped-def]
    """Install (in parallel: it is mostly download and unpack) whatever is missing or stale."""
    if not names:
        return {}
    missing = [n for n in names if not _ready(n)]
    if missing:
        say(f"installing peers into bench/.peers/: {', '.join(missing)} (a few minutes on a fresh clone)")
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = dict(zip(names, pool.map(install, names), strict=True))
    for result in results.values():
        if result.seconds is not None:
            state = "installed" if result.ok else "FAILED"
            say(f"  {result.name}: {state} in {result.seconds:.0f} s")
    return results


def _ready(name: str) -> bool:
    marker = ROOT / name / ".installed"
    return marker.exists() and marker.read_text().strip() == _digest(PINS / f"{name}.txt")


if __name__ == "__main__":
    chosen = tuple(sys.argv[1:]) or PEERS
    outcome = ensure(chosen)
    for item in outcome.values():
        if not item.ok:
            print(f"{item.name}: {item.error}", file=sys.stderr)
    sys.exit(0 if all(i.ok for i in outcome.values()) else 1)
