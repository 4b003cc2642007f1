"""From bench/peers.py's records to BENCHMARKS.md: power at a matched false-alarm rate,
each method's own verdict, cost, plain-word verdicts and the power plot. Every number in
the text comes from the records; nothing is typed in."""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import peers_install
from common import markdown_table
from peers_data import FAMILIES, FAMILY_TEXT, TOPICS, Condition, Config
from peers_methods import METHODS, Method
from peers_probe import MIN_ROWS, Plan, Settings, rows_text

BENCH = Path(__file__).resolve().parent
MARK_BEGIN, MARK_END = "<!-- peers:begin -->", "<!-- peers:end -->"
ALPHA = 0.05
PLOT = BENCH / "peers_power.png"


def calibrated_threshold(null: list[float], alpha: float) -> float:
    """The smallest threshold with at most alpha of the no-drift runs strictly above it."""
    ordered = sorted(null, reverse=True)
    return ordered[min(math.floor(alpha * len(ordered)), len(ordered) - 1)]


@dataclass
class Row:
    """One variant of one method at one (n, d)."""

    method: Method
    variant: str
    stats: dict[str, list[float]] = field(default_factory=dict)  # condition label -> statistics
    defaults: dict[str, list[bool]] = field(default_factory=dict)
    defaults_05: dict[str, list[bool]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.method.name == "driftwatch" and self.variant == "centroid_or_spatial":
            return "driftwatch centroid or spatial (no correction)"
        if self.method.name == "driftwatch" and self.variant != "verdict":
            return f"driftwatch {self.variant}"
        return self.method.label

    def power(self, alpha: float) -> tuple[float | None, dict[str, float]]:
        null = self.stats.get("no drift", [])
        if not null:
            return None, {}
        threshold = calibrated_threshold(null, alpha)
        return threshold, {c: float(np.mean(np.array(v) > threshold)) for c, v in self.stats.items()}


def collect(records: list[dict]) -> dict[str, dict[tuple[str, str], Row]]:  # type: ignore[type-arg]
    table: dict[str, dict[tuple[str, str], Row]] = {}
    for r in records:
        if r["step"] != "test" or "error" in r:
            continue
        for variant, v in r["variants"].items():
            row = table.setdefault(r["config"], {}).setdefault(
                (r["method"], variant), Row(METHODS[r["method"]], variant)
            )
            row.stats.setdefault(r["condition"], []).append(float(v["stat"]))
            row.defaults.setdefault(r["condition"], []).append(bool(v["default"]))
            if "default_05" in v:
                row.defaults_05.setdefault(r["condition"], []).append(bool(v["default_05"]))
    return table


def power_row(row: Row, plan: Plan, labels: list[str]) -> list[str]:
    """One method's line of a power table: its rows, no-drift runs, FAR and power per condition."""
    _, power = row.power(ALPHA)
    return [
        row.label,
        rows_text(plan.rows) if plan.rows else "–",
        str(len(row.stats.get("no drift", []))),
        f"{power.get('no drift', float('nan')):.2f}",
        *(f"{power[c]:.2f}" if c in power else "–" for c in labels),
    ]


def ordered_rows(rows: dict[tuple[str, str], Row]) -> list[Row]:
    order = {name: i for i, name in enumerate(METHODS)}
    return sorted(rows.values(), key=lambda r: (order[r.method.name], r.method.variants.index(r.variant)))


def fmt_s(values: list[float]) -> str:
    if not values:
        return "–"
    median = statistics.median(values)
    return f"{median:.3f}" if median < 0.1 else f"{median:.2f}" if median < 10 else f"{median:.0f}"


def fmt_mib(values: list[float]) -> str:
    return "–" if not values else "<1" if max(values) < 1 else f"{max(values):,.0f}"


# --- report --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One run of bench/peers.py: what the report is made from, kept as JSON so that
    `--report-only` can remake the section (wording, layout) without measuring again."""

    run: dict[str, str]  # "command" and "machine" (with the date) of the run
    configs: list[Config]
    plans: dict[str, dict[str, Plan]]
    records: list[dict]  # type: ignore[type-arg]
    envs: dict[str, dict[str, Any]]
    installs: dict[str, peers_install.Installed]
    elapsed: dict[str, float]  # seconds: install, probe, power, total
    settings: Settings
    runs_done: dict[str, int]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            **self.__dict__,
            "configs": [
                {
                    "n": c.n,
                    "dim": c.dim,
                    "runs": c.runs,
                    "conditions": [[x.family, x.strength] for x in c.conditions],
                    "methods": c.methods,
                }
                for c in self.configs
            ],
            "plans": {k: {m: p.__dict__ for m, p in v.items()} for k, v in self.plans.items()},
            "installs": {k: v.__dict__ for k, v in self.installs.items()},
            "settings": self.settings.__dict__,
        }
        path.write_text(json.dumps(data, default=str))

    @classmethod
    def load(cls, path: Path) -> Outcome:
        data = json.loads(path.read_text())
        return cls(
            run=data["run"],
            configs=[
                Config(
                    c["n"],
                    c["dim"],
                    c["runs"],
                    tuple(Condition(f, s) for f, s in c["conditions"]),
                    tuple(c["methods"]) if c.get("methods") else None,
                )
                for c in data["configs"]
            ],
            plans={
                k: {
                    m: Plan(tuple(p["rows"]) if p["rows"] else None, p["reason"], p["tried"])
                    for m, p in v.items()
                }
                for k, v in data["plans"].items()
            },
            records=data["records"],
            envs=data["envs"],
            installs={k: peers_install.Installed(**v) for k, v in data["installs"].items()},
            elapsed=data["elapsed"],
            settings=Settings(**data["settings"]),
            runs_done=data["runs_done"],
        )


def report(outcome: Outcome, plotted: bool) -> str:
    run, configs, plans, records = outcome.run, outcome.configs, outcome.plans, outcome.records
    envs, installs, elapsed = outcome.envs, outcome.installs, outcome.elapsed
    settings, runs_done = outcome.settings, outcome.runs_done
    table = collect(records)
    lines: list[str] = []
    say = lines.append
    say(f"{MARK_BEGIN}\n### driftwatch against Evidently, alibi-detect and NannyML\n")
    say(
        f"Command: `{run['command']}` (`make bench-peers` runs it with no options, installing the peers "
        f"first) — machine: {run['machine']}. Took {elapsed['total'] / 60:.1f} min: installs "
        f"{elapsed['install']:.0f} s, probes {elapsed['probe']:.0f} s, power runs {elapsed['power']:.0f} s. "
        "Everything below is printed by that run; nothing is typed in by hand"
        + (
            f" (the text was remade on {run['remade']} from that run's saved records by `--report-only`; "
            "the numbers are the run's).\n"
            if "remade" in run
            else ".\n"
        )
    )
    say(
        "How: the same arrays go to every method. A run draws a baseline of 6n rows (what "
        "`baseline capture` reads for a sample size of n: driftwatch fits on n rows and holds out 5n) and, "
        "independently, one current window of n rows per scenario, from "
        f"{TOPICS} topics on the unit sphere (`driftwatch.synthetic`). Scenarios: "
        + "; ".join(
            f"*{f.replace('_', ' ')}* ({', '.join(map(str, s))}): {FAMILY_TEXT[f]}"
            for f, s in FAMILIES.items()
        )
        + ". A run's baseline serves all of its scenarios (each method's setup runs once per run). "
        f"Power is at a matched false-alarm rate: each method's threshold is the {1 - ALPHA:.0%} quantile of "
        "its own statistic over the no-drift runs (the highest value with at most "
        f"{ALPHA:.0%} of them above it), the same for driftwatch. Every method runs single-threaded in its "
        f"own environment's worker, {settings.lanes} workers side by side; its time per check is the median "
        "over the power runs, its memory the largest rise of the worker's RSS above where the step started "
        f"(setup or check; the arrays are already loaded). Budget: {settings.budget:g} s per check and "
        f"{settings.setup_budget:g} s per setup on one core; a method over it at the full size runs on "
        f"evenly spaced subsamples of both windows, halving down to {MIN_ROWS} rows, at the largest that "
        "fits, or is marked over budget (NannyML keeps a 6:1 baseline: it needs several baseline chunks). "
        f"That budget is this benchmark's (every method, {configs[0].runs} runs of "
        f"{len(configs[0].conditions)} scenarios, on {settings.lanes} cores), not a verdict on what a "
        "monitor can afford: at full size a subsampled method would usually detect more. "
        "Every method gets the raw embeddings: alibi-detect's docs suggest reducing high-dimensional data "
        "first (an untrained autoencoder or PCA), which would be a different detector and is not done here.\n"
    )
    # environments
    say("#### Environments\n")
    env_rows = []
    for env, info in envs.items():
        install = installs.get(env)
        took = (
            "–"
            if install is None
            else ("already there" if install.seconds is None else f"{install.seconds:.0f} s")
        )
        if install is not None and not install.ok:
            state = f"install failed: `{_one_line(install.error)}`"
        elif info.get("import_error"):
            state = f"import failed: `{_one_line(info['import_error']['error'])}`"
        elif info.get("start_error"):
            state = f"did not start: `{_one_line(info['start_error'])}`"
        else:
            state = "ok"
        versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items() if v)
        where = ".venv (the project)" if env == "driftwatch" else f"bench/.peers/{env}"
        pins = "" if env == "driftwatch" else f" (pins: bench/peers_requirements/{env}.txt)"
        env_rows.append([env, where + pins, f"Python {info.get('python', '?')}; {versions}", took, state])
    say(markdown_table(["environment", "where", "versions", "install", "state"], env_rows) + "\n")
    # what ran
    say("#### What ran: rows per check (baseline + current) and runs\n")
    what = []
    for name, method in METHODS.items():
        cells = []
        for config in configs:
            plan = plans.get(config.key, {}).get(name)
            failed = [
                r for r in records if r["config"] == config.key and r["method"] == name and "error" in r
            ]
            if plan is None:
                cells.append("–" if method.timing_only else _unavailable(method, envs))
            elif plan.rows is None:
                cells.append(plan.reason or "not run")
            else:
                full = plan.rows == (config.baseline_rows, config.n)
                cells.append(rows_text(plan.rows) + ("" if full else f" (subsample; {plan.reason})"))
                if failed:
                    cells[-1] += f"; {len(failed)} steps failed, e.g. `{_one_line(failed[0]['error'])}`"
        what.append([method.label, *cells])
    runs = [f"{runs_done.get(c.key, 0)} runs x {len(c.conditions)} scenarios" for c in configs]
    what.append(["*runs done*", *runs])
    say(markdown_table(["method", *(c.key for c in configs)], what) + "\n")
    broken = [r for r in records if r["step"] == "run"]
    if broken:
        first = broken[0]
        say(f"{len(broken)} runs failed as a whole, e.g. {first['config']}: `{_one_line(first['error'])}`.\n")
    # power
    say(f"#### Power at a matched false-alarm rate (α = {ALPHA})\n")
    say(
        "Share of drift runs flagged when every method's threshold is set to alarm on "
        f"{ALPHA:.0%} of the no-drift runs (`FAR` is the share it actually alarms on there, by construction "
        "at most α; fewer with few runs or tied statistics). With N runs a share is uncertain by about "
        "±1/sqrt(N) at worst (±0.14 at 50 runs).\n"
    )
    for config in configs:
        rows = table.get(config.key)
        if not rows:
            continue
        labels = [c.label for c in config.conditions if c.family != "none"]
        body = [power_row(row, plans[config.key][row.method.name], labels) for row in ordered_rows(rows)]
        done = runs_done.get(config.key, 0)
        notes = [f"{done} runs"]
        if done < 50:
            notes.append(
                "under 50 runs, so indicative only: with few no-drift runs the "
                "calibrated threshold sits near their maximum"
            )
        note = ": " + ", ".join(notes)
        say(f"**{config.n:,} rows, {config.dim}-d**{note}\n")
        say(markdown_table(["method", "rows", "runs", "FAR", *labels], body) + "\n")
    if plotted:
        say(f"![power against drift strength per method]({PLOT.relative_to(BENCH.parent)})\n")
    # defaults
    say("#### Each method's own default verdict\n")
    say(
        "Per size: how many no-drift runs the default alarms on (its false-alarm rate, against what it "
        "claims) · the share of drift runs it flags (all drift scenarios pooled).\n"
    )
    head = ["method", "default rule", "claims", *(c.key for c in configs)]
    seen: dict[str, list[str]] = {}
    for config in configs:
        for row in ordered_rows(table.get(config.key, {})):
            for which, values in (("default", row.defaults), ("α = 0.05", row.defaults_05)):
                if not values:
                    continue
                key = f"{row.label}|{which}"
                if key not in seen:
                    rule = row.method.default_rule if which == "default" else "same nulls at α = 0.05"
                    claim = row.method.nominal if which == "default" else 0.05
                    if row.variant == "centroid_or_spatial":  # two tests, either may alarm
                        rule = "either detector at its own α (no correction)"
                        claim = None if claim is None else 1 - (1 - claim) ** 2
                    seen[key] = [
                        row.label + ("" if which == "default" else " (α = 0.05)"),
                        rule,
                        "–" if claim is None else f"{claim:.3g}",
                    ] + ["–"] * len(configs)
                null = values.get("no drift", [])
                drift = [x for c, v in values.items() if c != "no drift" for x in v]
                seen[key][3 + configs.index(config)] = (f"{sum(null)}/{len(null)}" if null else "–") + (
                    f" · {np.mean(drift):.2f}" if drift else ""
                )
    body_rows = list(seen.values())
    say(markdown_table(head, body_rows) + "\n")
    # cost
    say("#### Cost on one core\n")
    say(
        "Median seconds per check (the current window against a prepared baseline), median seconds per setup "
        "(once per baseline: driftwatch's fit and null calibration, alibi-detect's detector, NannyML's fit; "
        "Evidently has none and redoes everything per call), and the largest memory rise in MiB during "
        "either, at the rows in *What ran*. The Evidently Report row is the whole `Report` with "
        "`EmbeddingsDriftMetric`, as a user runs it: the same default method plus the t-SNE its plot needs, "
        "measured once on the full size.\n"
    )
    cost_rows = []
    for name, method in METHODS.items():
        test_cells, setup_cells, mem_cells = [], [], []
        for config in configs:
            plan = plans.get(config.key, {}).get(name)
            mine = [
                r for r in records if r["config"] == config.key and r["method"] == name and "error" not in r
            ]
            if plan is None:
                test_cells.append("–")
                setup_cells.append("")
                mem_cells.append("")
                continue
            if method.timing_only and plan is not None and plan.tried:
                tried = plan.tried[-1]
                test_cells.append(f"{tried['test_s']:.1f}" if "test_s" in tried else plan.reason or "–")
                setup_cells.append("–")
                mem_cells.append(f"{tried.get('peak_mib', 0):,.0f}" if "test_s" in tried else "–")
                continue
            tests = [r["seconds"] for r in mine if r["step"] == "test"]
            setups = [r["seconds"] for r in mine if r["step"] == "setup"]
            peaks = [r["peak_mib"] for r in mine if r.get("peak_mib") is not None]
            if not tests and plan is not None and plan.rows is None:
                measured = [t for t in plan.tried if "test_s" in t]  # over budget: what the probe measured
                if measured:
                    last = measured[-1]
                    check = "–" if math.isinf(last["test_s"]) else f"{last['test_s']:.2f}"
                    test_cells.append(f"({check}")
                    setup_cells.append(f"{last['setup_s']:.2f}")
                    mem_cells.append(f"{last['peak_mib']:,.0f} at {rows_text(tuple(last['rows']))})")
                else:
                    test_cells.append("not run (see *What ran*)")
                    setup_cells.append("")
                    mem_cells.append("")
                continue
            test_cells.append(fmt_s(tests))
            setup_cells.append(fmt_s(setups) if any(s > 0.0005 for s in setups) else "–")
            mem_cells.append(fmt_mib(peaks))
        cost_rows.append(
            [
                method.label,
                *(
                    " / ".join(x for x in cell if x)
                    for cell in zip(test_cells, setup_cells, mem_cells, strict=True)
                ),
            ]
        )
    say(markdown_table(["method (check s / setup s / MiB)", *(c.key for c in configs)], cost_rows) + "\n")
    say(
        "In parentheses, for a method over budget: what the probe measured at the largest size it completed. "
        "Idle worker RSS after imports (MiB): "
        + ", ".join(
            f"{env} {info.get('rss_mib', 0):.0f}" for env, info in envs.items() if info.get("rss_mib")
        )
        + ".\n"
    )
    # plain words
    say("#### Where a peer is better, and where driftwatch is\n")
    for line in verdicts(configs, table, records, plans):
        say(f"- {line}")
    say("")
    notes = [m for m in METHODS.values() if m.note]
    say("Notes: " + " ".join(f"*{m.label}*: {m.note}." for m in notes) + "\n")
    say(MARK_END)
    return "\n".join(lines)


def _one_line(text: str | None) -> str:
    """An error for a table cell: pip's ERROR lines (or the last line), each cut to 300 characters."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    chosen = [line for line in lines if line.startswith("ERROR")] or lines[-1:]
    cut = [line if len(line) <= 300 else line[:240] + " ... " + line[-50:] for line in chosen]
    return " / ".join(cut).replace("`", "'").replace("|", "/")


def _unavailable(method: Method, envs: dict[str, dict[str, Any]]) -> str:
    info = envs.get(method.env, {})
    if info.get("import_error") or info.get("start_error") or info.get("install_error"):
        return "not available (see Environments)"
    return "not run"


SHOWN_DIFFERENCES = 3  # the largest differences named per method and direction
Cells = dict[str, list[tuple[float, str]]]  # "better" / "worse" / "same" -> (difference, text)


def _compare(
    config: Config, theirs: Row, p_ours: dict[str, float], count: int, note: str, into: Cells
) -> None:
    """Sort each drift scenario of one size into better / worse / same for `theirs`, against
    driftwatch's powers `p_ours` over `count` runs. A cell counts when the powers differ by at
    least 0.1 and by more than three standard errors: with hundreds of cells compared, two
    would pass by chance alone at two standard errors."""
    _, p_theirs = theirs.power(ALPHA)
    for condition in config.conditions:
        c = condition.label
        if condition.family == "none" or c not in p_theirs or c not in p_ours:
            continue
        p, q = p_theirs[c], p_ours[c]
        se = math.sqrt(max(p * (1 - p) / count + q * (1 - q) / count, 1e-12))
        kind = "same" if abs(p - q) < 0.1 or abs(p - q) <= 3 * se else "better" if p > q else "worse"
        into.setdefault(kind, []).append((abs(p - q), f"{config.key}{note} {c}: {p:.2f} vs {q:.2f}"))


def verdicts(configs: list[Config], table: dict, records: list[dict], plans: dict) -> list[str]:  # type: ignore[type-arg]
    """Plain sentences from the numbers: power per peer against driftwatch's verdict, then
    driftwatch's single statistics against its verdict (does combining the two through each
    baseline's own nulls cost power?), then cost."""
    cells: dict[str, Cells] = {}
    compared = []
    for config in configs:
        rows = table.get(config.key, {})
        ours = rows.get(("driftwatch", "verdict"))
        count = 0 if ours is None else len(ours.stats.get("no drift", []))
        if ours is None or count < 20:
            continue
        _, p_ours = ours.power(ALPHA)
        compared.append(config.key)
        for (name, variant), row in rows.items():
            if name == "driftwatch" and variant != "verdict":
                label = f"{row.label} alone"
            elif name.startswith("driftwatch") or variant != row.method.variants[0]:
                continue
            else:
                label = row.label
            plan = plans.get(config.key, {}).get(name)
            cut = plan is not None and plan.rows != (config.baseline_rows, config.n)
            _compare(config, row, p_ours, count, " (subsample)" if cut else "", cells.setdefault(label, {}))
    lines = []
    if not compared:
        lines.append("Too few runs (under 20 per scenario) to compare power.")
    else:
        lines.append(
            "Power against driftwatch's cycle verdict, per (size, scenario) cell at "
            f"{', '.join(compared)}: "
            "a cell counts when the powers differ by at least 0.1 and by more than three standard errors; "
            f"the {SHOWN_DIFFERENCES} largest differences are named (the peer's power first)."
        )
    for label in sorted(cells, key=lambda name: name.endswith(" alone")):  # the peers first
        kinds = {
            kind: sorted(cells[label].get(kind, []), reverse=True) for kind in ("better", "worse", "same")
        }
        named = {k: "; ".join(text for _, text in v[:SHOWN_DIFFERENCES]) for k, v in kinds.items()}
        total = sum(len(v) for v in kinds.values())
        better, worse = len(kinds["better"]), len(kinds["worse"])
        lines.append(
            f"**{label}** detects more in {better} of {total} cells"
            + (f" ({named['better']})" if better else "")
            + f", less in {worse}"
            + (f" ({named['worse']})" if worse else "")
            + f", no clear difference in {len(kinds['same'])}."
        )
    # cost, at each configuration with power runs
    for config in configs:

        def median(name: str, step: str, cfg: Config = config) -> float | None:
            values = [
                r["seconds"]
                for r in records
                if r["config"] == cfg.key and r["method"] == name and r["step"] == step and "error" not in r
            ]
            return statistics.median(values) if values else None

        def peak(name: str, cfg: Config = config) -> float | None:
            values = [
                r["peak_mib"]
                for r in records
                if r["config"] == cfg.key and r["method"] == name and r.get("peak_mib") is not None
            ]
            return max(values) if values else None

        ours_test, ours_setup, ours_peak = (
            median("driftwatch", "test"),
            median("driftwatch", "setup"),
            peak("driftwatch"),
        )
        if ours_test is None or ours_setup is None:
            continue
        fresh, per_check, leaner = [], [], []
        for name, method in METHODS.items():
            if method.env == "driftwatch" or method.timing_only:
                continue
            t, s, m = median(name, "test"), median(name, "setup") or 0.0, peak(name)
            if t is not None and t + s < ours_test + ours_setup:
                fresh.append(f"{method.label} ({t + s:.2f} s)")
            if t is not None and t < ours_test:
                per_check.append(f"{method.label} ({t:.3f} s)")
            if m is not None and ours_peak is not None and m < ours_peak:
                leaner.append(f"{method.label} ({fmt_mib([m])} MiB)")
        lines.append(
            f"Cost at {config.key} (driftwatch: {ours_setup:.2f} s to fit a baseline, "
            f"{ours_test:.3f} s per check). "
            + (
                "Cheaper for one check against a new baseline (setup + check): " + ", ".join(fresh) + ". "
                if fresh
                else "No peer is cheaper for one check against a new baseline (setup + check). "
            )
            + (
                "Faster per check against a prepared baseline: " + ", ".join(per_check) + ". "
                if per_check
                else "No peer is faster per check against a prepared baseline. "
            )
            + (
                f"Less peak memory than driftwatch's {ours_peak:,.0f} MiB (setup or check): "
                + ", ".join(leaner)
                + "."
                if leaner and ours_peak is not None
                else "No peer needs less peak memory."
            )
        )
    return lines


# --- plot ----------------------------------------------------------------------------------


def plot(configs: list[Config], records: list[dict], path: Path) -> bool:  # type: ignore[type-arg]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no plot (pip install -e '.[plot]')", file=sys.stderr)
        return False
    table = collect(records)
    shown = [c for c in configs if c.key in table and len({x.family for x in c.conditions}) > 1]
    if not shown:
        return False
    families = [f for f in FAMILIES if any(c.family == f for c in shown[0].conditions)]
    fig, axes = plt.subplots(
        len(shown),
        len(families),
        figsize=(4.2 * len(families), 2.9 * len(shown) + 0.3 + 0.22 * math.ceil(len(METHODS) / 4)),
        squeeze=False,
        sharey=True,
    )
    styles: dict[str, tuple[str, str]] = {}
    palette = plt.get_cmap("tab10").colors
    for r, config in enumerate(shown):
        for row in ordered_rows(table[config.key]):
            if row.method.name == "driftwatch" and row.variant != "verdict":
                continue
            _, power = row.power(ALPHA)
            style = styles.setdefault(
                row.label,
                (
                    palette[len(styles) % 10],
                    "o-" if row.method.env == "driftwatch" else "sv^DPX*hp"[len(styles) % 9] + "--",
                ),
            )
            for col, family in enumerate(families):
                points = [(c.strength, power.get(c.label)) for c in config.conditions if c.family == family]
                xs = [x for x, y in points if y is not None]
                ys = [y for _, y in points if y is not None]
                axes[r][col].plot(
                    xs,
                    ys,
                    style[1],
                    color=style[0],
                    label=row.label,
                    linewidth=2.2 if row.method.env == "driftwatch" else 1.2,
                    markersize=7 if row.method.env == "driftwatch" else 5,
                    markerfacecolor="none" if row.method.env != "driftwatch" else None,
                )
        for col, family in enumerate(families):
            ax = axes[r][col]
            ax.set_title(f"{family.replace('_', ' ')}, {config.n:,} rows, {config.dim}-d", fontsize=10)
            ax.set_xlabel(
                {"new_topic": "share of rows", "rotation": "angle (rad)", "gradual": "final share"}[family]
            )
            strengths = FAMILIES[family]
            ax.set_xscale("log")  # the strengths are roughly geometric
            ax.set_xticks(strengths, [f"{x:g}" for x in strengths])
            ax.minorticks_off()
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
        axes[r][0].set_ylabel(f"power at {ALPHA:.0%} false alarms")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    legend_inches = 0.35 + 0.22 * math.ceil(len(labels) / 4)
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
