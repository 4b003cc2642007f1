"""Sizing and power runs for bench/peers.py: `probe` finds the largest size at which each
method's check fits the time budget (the same budget for every method), `power_run` runs
one seeded baseline and all its scenarios through every method at its size."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peers_data import BASELINE_FACTOR, PROBE, Config, draw
from peers_lanes import Lane
from peers_methods import METHODS, Method, memory_estimate

MIN_ROWS = 250  # the smallest subsample a method is tried on


def ladder(method: Method, n: int) -> list[tuple[int, int]]:
    """(baseline rows, current rows) from the full size down: "equal" halves an equal-size
    pair after the full baseline, "ratio" keeps the 6:1 baseline (NannyML needs several
    baseline chunks of the window's size), "none" is the full size only."""
    levels = [(BASELINE_FACTOR * n, n)]
    if method.ladder == "none":
        return levels
    k = n
    while k >= MIN_ROWS:
        level = (k, k) if method.ladder == "equal" else (BASELINE_FACTOR * k, k)
        if level not in levels:
            levels.append(level)
        k //= 2
    return levels


@dataclass
class Plan:
    rows: tuple[int, int] | None = None  # the size the power runs use; None: not run
    reason: str = ""  # why not, or why smaller than the full size
    tried: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Settings:
    budget: float  # seconds per check
    setup_budget: float  # seconds per baseline
    memory_limit: float  # bytes
    lanes: int
    time_limit: float  # seconds from the start; no new power run starts after it


def rows_text(rows: tuple[int, int]) -> str:
    return f"{rows[0]:,} + {rows[1]:,}"


def probe(lane: Lane, config: Config, method: Method, settings: Settings, over: list, paths: dict) -> Plan:  # type: ignore[type-arg]
    """Which size the method runs at. A pilot on the smallest size first: over budget there
    (setup over its budget, or a check over three times its budget) means over budget at
    every size. Otherwise from the full size down: the first size whose check (the better
    of two) and setup fit their budgets is the one. Not tried, as over budget: a size whose
    kernel matrix cannot fit in memory, a kernel method's size predicted from the pilot at
    over three times the budget, and a size at least as large as one already over budget
    (at this or a lower dimension). A size is abandoned when a step runs far over."""
    conditions = PROBE
    plan = Plan()
    worker = lane.worker(method.env)
    levels = ladder(method, config.n)  # largest first
    timeout_test = 300.0 if method.timing_only else max(3 * settings.budget, 3.0)
    timeout_setup = 1.5 * settings.setup_budget
    whole = method.ladder == "none" and not method.timing_only
    if whole:  # driftwatch is measured as it runs, at the full size: the budget sizes the peers
        timeout_test, timeout_setup = max(timeout_test, 120.0), max(timeout_setup, 900.0)

    def measure(rows: tuple[int, int]) -> dict[str, Any]:
        """{"setup_s", "test_s", "peak_mib"} or {"error", "timeout"}; appended to plan.tried."""
        seed = 10**6
        setup = worker.request(
            {
                "op": "setup",
                "method": method.name,
                "path": paths["ref"],
                "token": paths["token"],
                "rows": rows[0],
                "n": rows[1],
                "seed": seed,
            },
            timeout=timeout_setup,
        )
        if "error" in setup:
            what = f"setup took over {timeout_setup:.0f} s" if setup.get("timeout") else setup["error"]
            result = {"rows": rows, "error": what, "timeout": bool(setup.get("timeout"))}
            plan.tried.append(result)
            return result
        tests: list[dict[str, Any]] = []
        for index in range(1 if method.timing_only else len(conditions)):
            if setup["seconds"] > settings.setup_budget or (tests and tests[0]["seconds"] > settings.budget):
                break  # already over: no second check
            answer = worker.request(
                {
                    "op": "test",
                    "method": method.name,
                    "path": paths["cur"],
                    "token": paths["token"],
                    "index": index,
                    "rows": rows[1],
                    "seed": seed,
                },
                timeout=timeout_test,
            )
            if "error" in answer:
                what = f"a check took over {timeout_test:.0f} s" if answer.get("timeout") else answer["error"]
                result = {
                    "rows": rows,
                    "error": what,
                    "timeout": bool(answer.get("timeout")),
                    "setup_s": setup["seconds"],
                }
                plan.tried.append(result)
                return result
            tests.append(answer)
        worker.request({"op": "drop", "method": method.name}, timeout=60)
        result = {
            "rows": rows,
            "setup_s": setup["seconds"],
            "test_s": min(t["seconds"] for t in tests) if tests else float("inf"),
            "peak_mib": max([setup["peak_mib"] or 0] + [t["peak_mib"] or 0 for t in tests]),
        }
        plan.tried.append(result)
        return result

    def fits(result: dict[str, Any]) -> bool:
        return (
            "error" not in result
            and result["setup_s"] <= settings.setup_budget
            and (result["test_s"] <= settings.budget)
        )

    def over_text(result: dict[str, Any]) -> str:
        if "error" in result:
            return result["error"]
        if result["setup_s"] > settings.setup_budget:
            return f"setup {result['setup_s']:.0f} s"
        return f"{result['test_s']:.2f} s per check"

    def known_over(rows: tuple[int, int]) -> str | None:
        """Where a size no larger than this one was over budget (at this or a lower dimension)."""
        for name, r, d, key in over:
            if name == method.name and rows[0] >= r[0] and rows[1] >= r[1] and config.dim >= d:
                return f"as {rows_text(r)} was at {key}"
        return None

    def give_up(rows: tuple[int, int], why: str) -> None:  # the last one (the next size up) is the one shown
        plan.reason = f"over budget at {rows_text(rows)}: {why}"

    if method.timing_only:
        result = measure(levels[0])
        plan.rows = levels[0] if "error" not in result else None
        plan.reason = (
            "" if plan.rows else f"{'over budget' if result.get('timeout') else 'failed'}: {result['error']}"
        )
        levels = []
    pilot: dict[str, Any] | None = None
    if levels:
        smallest = levels[-1]
        needed = memory_estimate(method, *smallest, config.dim)
        if needed > settings.memory_limit:
            give_up(smallest, f"needs ~{needed / 2**30:.0f} GiB")
            levels = []
        elif why := known_over(smallest):
            give_up(smallest, why)
            levels = []
        else:
            pilot = measure(smallest)
            if whole and "error" not in pilot:
                plan.rows = smallest
                plan.reason = "" if fits(pilot) else f"full size, over the budget: {over_text(pilot)}"
                levels = []
            elif "error" in pilot and not pilot.get("timeout"):
                plan.reason = f"failed at {rows_text(smallest)}: {pilot['error']}"
                levels = []
            elif (
                "error" in pilot
                or pilot["setup_s"] > settings.setup_budget
                or (pilot["test_s"] > 3 * settings.budget)
            ):
                give_up(smallest, over_text(pilot))
                over.append((method.name, smallest, config.dim, config.key))
                levels = []
    for rows in levels[:-1]:
        needed = memory_estimate(method, *rows, config.dim)
        if needed > settings.memory_limit:
            give_up(rows, f"needs ~{needed / 2**30:.0f} GiB")
            continue
        if method.quadratic and pilot is not None:
            predicted = pilot["test_s"] * (sum(rows) / sum(levels[-1])) ** 2
            if predicted > 10 * settings.budget:  # the pilot's fixed costs inflate it: a wide margin
                give_up(rows, f"~{predicted:.0f} s per check predicted")
                continue
        if why := known_over(rows):
            give_up(rows, why)
            continue
        result = measure(rows)
        if fits(result):
            plan.rows = rows
            break
        give_up(rows, over_text(result))
        over.append((method.name, rows, config.dim, config.key))
    if plan.rows is None and pilot is not None and levels:
        if fits(pilot):
            plan.rows = levels[-1]
        else:
            give_up(levels[-1], over_text(pilot))
    state = rows_text(plan.rows) if plan.rows else "not run"
    print(f"  probe {config.key} {method.name}: {state}; {plan.reason}".rstrip("; "), flush=True)
    return plan


# --- the power runs ------------------------------------------------------------------------


def power_run(lane: Lane, config: Config, run: int, plans: dict[str, Plan], settings: Settings) -> list[dict]:  # type: ignore[type-arg]
    baseline, windows = draw(config, run, config.conditions)
    paths = lane.publish(baseline, windows, f"{config.key}-{run}")
    records = []
    for name, plan in plans.items():
        method = METHODS[name]
        if plan.rows is None or method.timing_only:
            continue
        worker = lane.worker(method.env)
        seed = 1000 * run + 7
        setup = worker.request(
            {
                "op": "setup",
                "method": name,
                "path": paths["ref"],
                "token": paths["token"],
                "rows": plan.rows[0],
                "n": plan.rows[1],
                "seed": seed,
            },
            timeout=3 * settings.setup_budget + 60,
        )
        base = {"config": config.key, "run": run, "method": name}
        if "error" in setup:
            records.append({**base, "step": "setup", "error": setup["error"]})
            continue
        records.append({**base, "step": "setup", "seconds": setup["seconds"], "peak_mib": setup["peak_mib"]})
        for index, condition in enumerate(config.conditions):
            answer = worker.request(
                {
                    "op": "test",
                    "method": name,
                    "path": paths["cur"],
                    "token": paths["token"],
                    "index": index,
                    "rows": plan.rows[1],
                    "seed": seed + index,
                },
                timeout=max(20 * settings.budget, 60),
            )
            record = {**base, "step": "test", "condition": condition.label}
            if "error" in answer:
                records.append({**record, "error": answer["error"]})
                if answer.get("timeout") or "worker exited" in answer["error"]:
                    break  # its state is gone with the worker
                continue
            records.append(
                {
                    **record,
                    "seconds": answer["seconds"],
                    "peak_mib": answer["peak_mib"],
                    "variants": answer["variants"],
                }
            )
        worker.request({"op": "drop", "method": name}, timeout=60)
    return records
