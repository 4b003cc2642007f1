"""driftwatch against Evidently, alibi-detect and NannyML: the same embeddings to every
method, power at a matched false-alarm rate, wall time and peak memory per check.

    make bench-peers                              # = .venv/bin/python bench/peers.py
    .venv/bin/python bench/peers.py --quick       # a couple of minutes: 1k rows, 384-d, 5 runs
    .venv/bin/python bench/peers.py --report-only # remake the section from the last run's records
    .venv/bin/python bench/peers.py --rerun --configs 1k/384:rotation,5k/768:rotation:driftwatch+alibi_ks
                                                  # some cells again, into a sub-section of their own

The peers live in virtual environments of their own under bench/.peers/ (made here from the
pins in bench/peers_requirements/, never project dependencies); a peer that does not
install or import is reported with its error instead of its numbers. Every method runs in
a worker process of its environment (bench/peers_worker.py), single-threaded; `--lanes`
workers of each run side by side (default: one per core).

Data (no PostgreSQL): topic-structured unit vectors from driftwatch.synthetic. A run draws
one baseline of 6n rows (what `baseline capture` reads for sample size n: driftwatch fits
on n of them and holds out 5n) and, independently of it, one current window of n rows per
scenario; every method gets the same arrays. Per (n, d) every method is first probed on a
ladder of subsamples (see `ladder` and `probe` in peers_probe.py) and does its power runs at the largest size
whose check fits the time budget; the tables say which.

Power at a matched false-alarm rate: every method's threshold is the (1 - α) quantile of
its own statistic over the no-drift runs, so every method alarms on the same share of
them; power is the share of drift runs above it. Each method's own default verdict is
reported separately, with its false-alarm rate on the no-drift runs.

Writes its section of BENCHMARKS.md (between the peers markers) and bench/peers_power.png;
the raw records go to bench/.data/peers-results.json, which `--report-only` reads to remake the
section (a change of wording or layout needs no new run; the numbers stay that run's).

A re-run (`--rerun`, peers_rerun.py) measures chosen cells again, e.g. after driftwatch gained
detectors: the peers run at the sizes the full run gave them (read from BENCHMARKS.md), on the
same windows, and the result is a sub-section of its own next to the full run's text, which stays.

Where things live: the methods in peers_methods.py, the scenarios and arrays in
peers_data.py, the worker processes in peers_lanes.py (and peers_worker.py, their other
end), sizing and power runs in peers_probe.py, tables and plot in peers_report.py, the peer
environments in peers_install.py. This file plans the configurations and runs the phases.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy; the workers inherit it: one core per worker
os.environ.update(
    DO_NOT_TRACK="1",  # Evidently's telemetry
    NML_DISABLE_USAGE_LOGGING="1",  # NannyML's usage logging
    HF_HUB_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    TQDM_DISABLE="1",
    MPLBACKEND="Agg",
    PYTHONWARNINGS="ignore",
)

import argparse  # noqa: E402
import queue  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import peers_install  # noqa: E402
from common import machine, write_section  # noqa: E402
from peers_data import ALL, PROBE, QUICK, Config, conditions_of, draw  # noqa: E402
from peers_lanes import Lane, publish, run_lanes  # noqa: E402
from peers_methods import METHODS, Method  # noqa: E402
from peers_probe import Plan, Settings, power_run, probe, rows_text  # noqa: E402
from peers_report import MARK_BEGIN, MARK_END, PLOT, Outcome, plot, report  # noqa: E402
from peers_rerun import history_plans, keep_rerun, rerun_report, write_rerun  # noqa: E402

RESULTS = BENCH / ".data" / "peers-results.json"
RERUN_RESULTS = BENCH / ".data" / "peers-rerun-results.json"


def plan_configs(args: argparse.Namespace) -> list[Config]:
    if args.quick:
        configs = [Config(1000, 384, args.runs or 5, QUICK)]
    else:
        runs = args.runs or 50
        configs = [Config(n, d, runs, ALL) for d in (384, 768) for n in (1000, 5000, 20000)]
    if args.configs:
        template = configs[0]
        configs = [parse_config(spec, template) for spec in args.configs.split(",")]
    return configs


def parse_config(spec: str, template: Config) -> Config:
    """`KEY[:FAMILY+...][:METHOD+...]`, e.g. `5k/384:rotation:driftwatch+evidently_model`: a
    size, the scenario families run there (no drift always; default: the template's) and the
    methods (default: every chosen one). A re-run of some cells draws exactly the rows the
    full run drew for them (peers_data.draw)."""
    key, *rest = spec.strip().split(":")
    families, methods = [*rest, "", ""][:2]
    conditions = conditions_of(families.split("+")) if families else template.conditions
    chosen = tuple(methods.split("+")) if methods else None
    unknown = set(chosen or ()) - set(METHODS)
    if unknown:
        raise SystemExit(f"--configs {spec}: unknown methods {sorted(unknown)}")
    n, dim = int(key.split("k/")[0]) * 1000, int(key.split("/")[1])
    return Config(n, dim, template.runs, conditions, chosen)


def _commit() -> str:
    """The driftwatch commit measured (and whether the tree had changes)."""
    git = ["git", "-C", str(BENCH.parent)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
        status = [*git, "status", "--porcelain", "--", "driftwatch"]
        dirty = subprocess.run(status, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.strip() + (" (driftwatch/ modified)" if dirty.stdout.strip() else "")


def start_envs(installs: dict[str, peers_install.Installed], wanted: set[str]) -> dict[str, Path]:
    pythons = {"driftwatch": Path(sys.executable)}
    for name, result in installs.items():
        if result.ok and name in wanted:
            pythons[name] = result.python
    return pythons


def probe_all(
    lanes: list[Lane],
    configs: list[Config],
    usable: list[Method],
    settings: Settings,
    scratch: Path,
    fixed: dict[str, dict[str, Plan]] | None = None,
) -> dict[str, dict[str, Plan]]:
    """Phase 1: each method's affordable size per configuration, one method per lane at a time;
    `fixed` sizes (a re-run's: the full run's) are taken as they are."""
    over: list[tuple[str, tuple[int, int], int, str]] = []
    plans: dict[str, dict[str, Plan]] = {}
    ordered = sorted(configs, key=lambda c: c.n * c.dim)

    probe_data: dict[str, dict[str, str]] = {}

    def probe_paths(config: Config) -> dict[str, str]:
        """One probe data set per configuration, shared by the lanes."""
        with lock:
            if config.key not in probe_data:
                baseline, windows = draw(config, 10**6, PROBE)
                key = config.key.replace("/", "-")
                probe_data[config.key] = publish(scratch / f"probe-{key}", baseline, windows, f"probe-{key}")
            return probe_data[config.key]

    def probe_lane(lane: Lane, todo: queue.Queue) -> None:  # type: ignore[type-arg]
        while True:  # a method's sizes in order on one lane: a size over budget skips the larger ones
            try:
                method = todo.get_nowait()
            except queue.Empty:
                return
            for config in ordered:
                if method.timing_only and not config.times_report:
                    continue
                if not config.runs_method(method.name):
                    with lock:
                        plans.setdefault(config.key, {})[method.name] = Plan(reason="not run at this size")
                    continue
                given = (fixed or {}).get(config.key, {}).get(method.name)
                if given is not None:
                    with lock:
                        plans.setdefault(config.key, {})[method.name] = given
                    print(f"  {config.key} {method.name}: {given.rows} as in the full run", flush=True)
                    continue
                try:
                    plan = probe(lane, config, method, settings, over, probe_paths(config))
                except Exception as exc:  # a broken worker must not stop the others
                    plan = Plan(reason=f"failed: {type(exc).__name__}: {exc}")
                    print(f"  probe {config.key} {method.name}: {plan.reason}", flush=True)
                with lock:
                    plans.setdefault(config.key, {})[method.name] = plan

    lock = threading.Lock()
    todo: queue.Queue[Method] = queue.Queue()
    for method in sorted(usable, key=lambda m: (not m.timing_only, m.name != "nannyml_dc")):
        todo.put(method)  # the slowest first, so the lanes finish together
    run_lanes(lanes, probe_lane, todo)
    for paths in probe_data.values():
        shutil.rmtree(Path(paths["ref"]).parent, ignore_errors=True)
    plans = {k: {m: v[m] for m in METHODS if m in v} for k, v in plans.items()}  # the table's order
    return plans


def power_all(
    lanes: list[Lane],
    configs: list[Config],
    plans: dict[str, dict[str, Plan]],
    settings: Settings,
    started: float,
) -> tuple[list[dict], dict[str, int]]:  # type: ignore[type-arg]
    """Phase 2: runs round-robin across the configurations, so a time cut leaves equal run counts."""
    jobs: queue.Queue[tuple[Config, int]] = queue.Queue()
    for run in range(max((c.runs for c in configs), default=0)):
        for config in configs:
            if run < config.runs:
                jobs.put((config, run))
    records: list[dict] = []  # type: ignore[type-arg]
    done: dict[str, int] = {}
    deadline = started + settings.time_limit
    lock = threading.Lock()
    cut: list[str] = []
    total_jobs = jobs.qsize()

    def power_lane(lane: Lane, todo: queue.Queue) -> None:  # type: ignore[type-arg]
        while True:
            try:
                config, run = todo.get_nowait()
            except queue.Empty:
                return
            if time.monotonic() > deadline:
                if not cut:
                    cut.append(config.key)
                    print(
                        f"  time limit reached: no new run starts ({settings.time_limit / 60:g} min)",
                        flush=True,
                    )
                continue
            try:
                got = power_run(lane, config, run, plans[config.key], settings)
            except Exception as exc:  # recorded, and the lane goes on
                got = [{"config": config.key, "run": run, "method": "-", "step": "run", "error": repr(exc)}]
            with lock:
                records.extend(got)
                done[config.key] = done.get(config.key, 0) + 1
                count = sum(done.values())
                if count % 10 == 0 or count == total_jobs:
                    mins = (time.monotonic() - started) / 60
                    print(f"  {count}/{total_jobs} runs done ({mins:.1f} min)", flush=True)

    print(
        f"power runs: {total_jobs} ({', '.join(f'{c.key} x{c.runs}' for c in configs)}), "
        f"{settings.lanes} lanes",
        flush=True,
    )
    run_lanes(lanes, power_lane, jobs)
    return records, done


class LoadWatch:
    """The machine's load while the benchmark runs (1-minute load average, every 30 s): on a
    shared machine it says how much of each core the workers had."""

    def __init__(self) -> None:
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(30.0):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self.samples.append(os.getloadavg()[0])
        return {
            "start": self.samples[0],
            "end": self.samples[-1],
            "mean": sum(self.samples) / len(self.samples),
            "max": max(self.samples),
            "cores": float(os.cpu_count() or 1),
        }


def report_only(results: Path, no_write: bool, rerun: bool, driftwatch_from: Path | None = None) -> None:
    """Remake the section and the plot from the last run's saved records (after a change to the
    report's wording or layout): the numbers stay that run's, and so do its command and date."""
    if not results.exists():
        sys.exit(f"{results} does not exist: run bench/peers.py first")
    outcome = Outcome.load(results)
    if driftwatch_from is not None:
        outcome = with_driftwatch_from(outcome, Outcome.load(driftwatch_from))
        outcome.save(results)
    if rerun:
        write_rerun_report(outcome, no_write, results)
        return
    outcome.run["remade"] = f"{datetime.now(UTC):%Y-%m-%d}"  # the date the wording was remade
    write_report(outcome, no_write)


def with_driftwatch_from(outcome: Outcome, newer: Outcome) -> Outcome:
    """The peers' records of `outcome` with driftwatch's from `newer`, a run of the same cells
    with `--methods driftwatch` after a change to driftwatch: the peers' code and windows did
    not change (their powers repeat exactly run to run), so only driftwatch is run again."""
    if [(c.n, c.dim, c.conditions) for c in newer.configs] != [
        (c.n, c.dim, c.conditions) for c in outcome.configs
    ]:
        sys.exit("--driftwatch-from: that run's cells differ from this one's; run the same --configs")
    outcome.records = [r for r in outcome.records if r["method"] != "driftwatch"] + [
        r for r in newer.records if r["method"] == "driftwatch"
    ]
    outcome.run = {**outcome.run, "driftwatch_run": dict(newer.run)}
    outcome.run["driftwatch_run"]["minutes"] = newer.elapsed["total"] / 60
    return outcome


def write_report(outcome: Outcome, no_write: bool) -> None:
    plotted = not no_write and plot(outcome.configs, outcome.records, PLOT)
    text = report(outcome, plotted)
    if no_write:
        print(text)
    else:
        write_section(keep_rerun(text), MARK_BEGIN, MARK_END)


def write_rerun_report(outcome: Outcome, no_write: bool, results: Path) -> None:
    """The re-run's own sub-section inside the peers section; the full run's text stays."""
    text = rerun_report(outcome, f"python bench/peers.py --rerun --report-only --results {_shown(results)}")
    if no_write:
        print(text)
    else:
        write_rerun(text)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(BENCH.parent))
    except ValueError:
        return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1k rows, 384-d, 5 runs, 2 scenarios (development)"
    )
    parser.add_argument("--runs", type=int, help="runs per scenario and size (default 50; quick 5)")
    parser.add_argument(
        "--budget", type=float, default=0.75, help="seconds per check on one core (default 0.75)"
    )
    parser.add_argument("--setup-budget", type=float, default=60.0, help="seconds per setup (default 60)")
    parser.add_argument("--lanes", type=int, default=os.cpu_count() or 1, help="workers side by side")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=360.0,
        help="minutes from the start after which no new run starts (default 360; a cut run says so)",
    )
    parser.add_argument("--methods", help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument(
        "--configs",
        help="comma-separated sizes to run, e.g. 1k/384,5k/384 (with --quick: "
        "its scenarios and runs at those sizes); a size may name its scenario families and "
        "methods: 5k/384:rotation:driftwatch+evidently_model",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave BENCHMARKS.md and the plot alone"
    )
    parser.add_argument(
        "--probe-only",
        action="store_true",
        help="only find and print each method's affordable size, and its cost",
    )
    parser.add_argument(
        "--write", action="store_true", help="with --quick: write BENCHMARKS.md and the plot anyway"
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="re-run some cells (--configs): the peers run at the full run's sizes (BENCHMARKS.md), "
        "and the result is its own sub-section of the peers section; the full run's text stays",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"where the run's records are kept (default {_shown(RESULTS)}; "
        f"with --rerun {_shown(RERUN_RESULTS)})",
    )
    parser.add_argument(
        "--driftwatch-from",
        type=Path,
        help="with --rerun --report-only: take driftwatch's records from this run's results "
        "(the same --configs run with --methods driftwatch) and the peers' from --results",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="remake the section and the plot from the last run's records (--results)",
    )
    args = parser.parse_args()
    args.results = args.results or (RERUN_RESULTS if args.rerun else RESULTS)
    if args.report_only:
        report_only(args.results, args.no_write, args.rerun, args.driftwatch_from)
        return
    if args.quick and not args.write:
        args.no_write = True
    started = time.monotonic()
    load = LoadWatch()
    chosen = [METHODS[m] for m in args.methods.split(",")] if args.methods else list(METHODS.values())
    configs = plan_configs(args)
    settings = Settings(args.budget, args.setup_budget, 8 * 2**30, max(1, args.lanes), args.time_limit * 60)

    wanted = {m.env for m in chosen} - {"driftwatch"}
    installs = peers_install.ensure(tuple(sorted(wanted)))
    install_s = time.monotonic() - started
    pythons = start_envs(installs, wanted)
    scratch_root = Path("/dev/shm") if Path("/dev/shm").is_dir() else BENCH / ".data"
    scratch = Path(tempfile.mkdtemp(prefix="driftwatch-peers-", dir=scratch_root))
    logs = BENCH / ".data" / "peers-logs"
    logs.mkdir(parents=True, exist_ok=True)
    lanes = [Lane(i, pythons, scratch, logs) for i in range(settings.lanes)]
    envs: dict[str, dict[str, Any]] = {}
    try:
        print("starting workers ...", flush=True)
        for env in ["driftwatch", *sorted(wanted)]:
            if env not in pythons:
                envs[env] = {"install_error": installs[env].error, "versions": {}}
                continue
            try:
                envs[env] = lanes[0].worker(env).hello
            except Exception as exc:
                envs[env] = {"start_error": str(exc), "versions": {}}
        usable = [
            m
            for m in chosen
            if m.env in envs
            and not envs[m.env].get("import_error")
            and "start_error" not in envs[m.env]
            and "install_error" not in envs[m.env]
        ]
        for env, info in envs.items():
            problem = (
                info.get("install_error")
                or info.get("start_error")
                or (info.get("import_error") or {}).get("error")
            )
            print(f"  {env}: {problem or 'ok'}", flush=True)

        measuring = time.monotonic()
        fixed = history_plans() if args.rerun else None
        plans = probe_all(lanes, configs, usable, settings, scratch, fixed)
        probe_s = time.monotonic() - measuring

        if args.probe_only:
            for config in configs:
                for name, plan in plans.get(config.key, {}).items():
                    tried = "; ".join(
                        f"{rows_text(tuple(t['rows']))}: "
                        + (
                            t["error"]
                            if "error" in t
                            else f"setup {t['setup_s']:.2f} s, check {t['test_s']:.3f} s, "
                            f"{t['peak_mib']:.0f} MiB"
                        )
                        for t in plan.tried
                    )
                    chosen = rows_text(plan.rows) if plan.rows else "not run"
                    print(f"{config.key} {name}: {chosen} | tried {tried}", flush=True)
            print(f"probes took {(time.monotonic() - measuring) / 60:.1f} min", flush=True)
            return

        powering = time.monotonic()
        records, done = power_all(lanes, configs, plans, settings, started)
        power_s = time.monotonic() - powering
    finally:
        for lane in lanes:
            lane.close()
        shutil.rmtree(scratch, ignore_errors=True)

    elapsed = {"install": install_s, "probe": probe_s, "power": power_s, "total": time.monotonic() - started}
    run = {
        "command": ("python bench/peers.py " + " ".join(sys.argv[1:])).strip(),
        "machine": machine(),
        "load": load.stop(),
        "commit": _commit(),
        "started": f"{datetime.now(UTC) - timedelta(seconds=elapsed['total']):%Y-%m-%d %H:%M} UTC",
    }
    outcome = Outcome(run, configs, plans, records, envs, installs, elapsed, settings, done)
    outcome.save(args.results)
    if args.rerun:
        write_rerun_report(outcome, args.no_write, args.results)
    else:
        write_report(outcome, args.no_write)
    print(f"\ntotal {elapsed['total'] / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
