"""A re-run of some cells of the peers comparison (`bench/peers.py --rerun`): where the full run
said a peer was better, what today's driftwatch does on exactly the same windows.

The full run's section stays as it was (it names the driftwatch it measured); the re-run is a
sub-section of its own inside it, between its own markers. Two things come from the full run's
text in BENCHMARKS.md: the rows each peer ran at (`history_plans`: a peer is not cut down further
because the shared machine is busier today, which would make it look worse than it is) and its
powers (`history_powers`: the "then" column). The windows are the same too: a run's rows depend
on the size and run number only (peers_data.draw), so run r of a re-run sees run r's arrays.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

from common import markdown_table
from peers_methods import METHODS
from peers_probe import Plan
from peers_report import ALPHA, MARK_BEGIN, MARK_END, Outcome, Row, collect, ordered_rows, power_row

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
RERUN_BEGIN, RERUN_END = "<!-- peers-rerun:begin -->", "<!-- peers-rerun:end -->"
THEN_LABEL = "driftwatch (centroid or spatial)"  # the full run's driftwatch row


def _history(text: str | None = None) -> str:
    """The full run's part of the peers section (without any re-run sub-section)."""
    text = BENCHMARKS.read_text() if text is None else text
    if MARK_BEGIN not in text:
        return ""
    section = text.split(MARK_BEGIN, 1)[1].split(MARK_END, 1)[0]
    if RERUN_BEGIN in section:
        head, rest = section.split(RERUN_BEGIN, 1)
        section = head + rest.split(RERUN_END, 1)[1]
    return section


def _tables(section: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(the line above, header cells, body rows) of every markdown table in the text."""
    out = []
    lines = section.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            body = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                body.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            out.append((above, header, body))
        else:
            i += 1
    return out


def history_plans(text: str | None = None) -> dict[str, dict[str, Plan]]:
    """The rows (baseline + current) each method ran at in the full run, per size."""
    by_label = {m.label: m.name for m in METHODS.values()}
    plans: dict[str, dict[str, Plan]] = {}
    for above, header, body in _tables(_history(text)):
        if not above.startswith("#### What ran"):
            continue
        for row in body:
            name = by_label.get(row[0])
            if name is None:
                continue
            for key, cell in zip(header[1:], row[1:], strict=False):
                found = re.match(r"([\d,]+) \+ ([\d,]+)", cell)
                if found:
                    rows = (int(found[1].replace(",", "")), int(found[2].replace(",", "")))
                    reason = (
                        cell.split("subsample; ", 1)[1].rsplit(")", 1)[0] if "subsample; " in cell else ""
                    )
                    plan = Plan(rows, reason)
                else:
                    plan = Plan(None, cell)
                plans.setdefault(key, {})[name] = plan
    return plans


def history_powers(text: str | None = None) -> dict[tuple[str, str, str], tuple[float, int]]:
    """(size, method label, scenario) -> (power, runs) from the full run's power tables."""
    out: dict[tuple[str, str, str], tuple[float, int]] = {}
    for above, header, body in _tables(_history(text)):
        size = re.match(r"\*\*([\d,]+) rows, (\d+)-d\*\*", above)
        if not size or header[:4] != ["method", "rows", "runs", "FAR"]:
            continue
        key = f"{int(size[1].replace(',', '')) // 1000}k/{size[2]}"
        for row in body:
            for scenario, cell in zip(header[4:], row[4:], strict=False):
                try:
                    out[(key, row[0], scenario)] = (float(cell), int(row[2]))
                except ValueError:
                    continue
    return out


# --- the sub-section ------------------------------------------------------------------------


def better_then(history: dict[tuple[str, str, str], tuple[float, int]]) -> dict[tuple[str, str], list[str]]:
    """(size, scenario) -> the peers that detected more than driftwatch in the full run, by the
    full run's own rule: the cells a re-run is for."""
    out: dict[tuple[str, str], list[str]] = {}
    for (key, label, scenario), (power, runs) in history.items():
        ours = history.get((key, THEN_LABEL, scenario))
        if label.startswith("driftwatch") or ours is None:
            continue
        if _decide(ours[0], power, min(runs, ours[1])) == "theirs":
            out.setdefault((key, scenario), []).append(label)
    return out


def _decide(ours: float, theirs: float, runs: int) -> str:
    """As the full run's plain words: a difference counts when it is at least 0.1 and over three
    standard errors (two shares of `runs` each)."""
    se = math.sqrt(max(ours * (1 - ours) / runs + theirs * (1 - theirs) / runs, 1e-12))
    diff = ours - theirs
    if abs(diff) < 0.1 or abs(diff) <= 3 * se:
        return "same"
    return "ours" if diff > 0 else "theirs"


def _peer_rows(rows: dict[tuple[str, str], Row]) -> list[Row]:
    return [
        r for r in ordered_rows(rows) if r.method.env != "driftwatch" and r.variant == r.method.variants[0]
    ]


def _power_tables(outcome: Outcome, table: dict, history: dict) -> list[str]:  # type: ignore[type-arg]
    lines = []
    for config in outcome.configs:
        rows = table.get(config.key)
        if not rows:
            continue
        labels = [c.label for c in config.conditions if c.family != "none"]
        body = [
            power_row(row, outcome.plans[config.key][row.method.name], labels) for row in ordered_rows(rows)
        ]
        then = [history.get((config.key, THEN_LABEL, c)) for c in labels]
        if any(then):
            runs = next(t[1] for t in then if t)
            body.append(
                [f"*then: {THEN_LABEL}, 2026-12-01*", "6n + n", str(runs), "–"]
                + [f"*{t[0]:.2f}*" if t else "–" for t in then]
            )
        done = outcome.runs_done.get(config.key, 0)
        lines.append(
            f"**{config.n:,} rows, {config.dim}-d**: {done} runs (each share ±{1 / math.sqrt(done):.2f})\n"
        )
        lines.append(markdown_table(["method", "rows", "runs", "FAR", *labels], body) + "\n")
    return lines


def _cells(outcome: Outcome, table: dict, history: dict) -> tuple[list[str], dict[str, int]]:  # type: ignore[type-arg]
    """Per cell: driftwatch's verdict now against the best peer, who is better and by how much."""
    body = []
    tally = {"ours": 0, "theirs": 0, "same": 0}
    then_better = better_then(history)
    for config in outcome.configs:
        rows = table.get(config.key, {})
        ours = rows.get(("driftwatch", "verdict"))
        if ours is None:
            continue
        runs = len(ours.stats.get("no drift", []))
        _, p_ours = ours.power(ALPHA)
        peers = [(r, r.power(ALPHA)[1]) for r in _peer_rows(rows)]
        for condition in config.conditions:
            c = condition.label
            if condition.family == "none" or c not in p_ours:
                continue
            scored = [(power[c], row.label) for row, power in peers if c in power]
            if not scored:
                continue
            best, best_label = max(scored)
            kinds = {label: _decide(p_ours[c], power, runs) for power, label in scored}
            better = [label for label, kind in kinds.items() if kind == "theirs"]
            if better:
                verdict, key = f"**{', '.join(better)}**", "theirs"
            elif all(kind == "ours" for kind in kinds.values()):
                verdict, key = "**driftwatch** (over every peer)", "ours"
            else:
                verdict, key = "no clear difference", "same"
            tally[key] += 1
            then_ours = history.get((config.key, THEN_LABEL, c))
            was = then_better.get((config.key, c), [])
            then_text = "–" if then_ours is None else f"{then_ours[0]:.2f}"
            if was:
                then_text += "; better: " + ", ".join(
                    f"{label} {history[(config.key, label, c)][0]:.2f}" for label in was
                )
            body.append(
                [
                    f"{config.key} {c}",
                    f"{p_ours[c]:.2f}",
                    f"{best:.2f} ({best_label})",
                    f"{p_ours[c] - best:+.2f} ± {math.sqrt(2 / runs):.2f}",
                    verdict,
                    then_text,
                ]
            )
    head = [
        "cell",
        "driftwatch verdict now",
        "best peer now",
        "difference (± sqrt(2/N))",
        "better now",
        "then (2026-12-01, 50 runs): driftwatch centroid or spatial; the peers better than it",
    ]
    return [markdown_table(head, body) + "\n"], tally


def _defaults(outcome: Outcome, table: dict) -> str:  # type: ignore[type-arg]
    """Each method's own default verdict: alarms on no-drift runs, and the share of drift runs flagged."""
    configs = outcome.configs
    found: dict[str, list[str]] = {}
    for config in configs:
        for row in ordered_rows(table.get(config.key, {})):
            if row.method.env == "driftwatch" and row.variant not in (
                "verdict",
                "classifier_two_sample",
                "new_territory",
            ):
                continue
            if row.method.env != "driftwatch" and row.variant != row.method.variants[0]:
                continue
            for which, values in (("", row.defaults), (" (α = 0.05)", row.defaults_05)):
                if not values or (which and row.method.env != "driftwatch"):
                    continue
                label = row.label + which
                claim = row.method.nominal if not which else 0.05
                rule = row.method.default_rule
                if row.method.env == "driftwatch":
                    rule = (
                        f"Holm over the detectors that measured, family-wise α = {row.method.nominal:g}"
                        if row.variant == "verdict"
                        else f"its own p <= α = {row.method.nominal:g}"
                    ) + " (config default)"
                cells = found.setdefault(
                    label,
                    [
                        label,
                        rule if not which else "the same at α = 0.05",
                        "–" if claim is None else f"{claim:g}",
                    ]
                    + ["–"] * len(configs),
                )
                null = values.get("no drift", [])
                drift = [x for c, v in values.items() if c != "no drift" for x in v]
                cells[3 + configs.index(config)] = (
                    f"{sum(null)}/{len(null)} · {statistics.fmean(drift):.2f}" if drift else "–"
                )
    head = ["method", "default rule", "claims", *(c.key for c in configs)]
    return markdown_table(head, list(found.values())) + "\n"


def _cost(outcome: Outcome) -> str:
    """Median seconds per check and per setup, per method and size."""
    rows = []
    for name, method in METHODS.items():
        cells = []
        for config in outcome.configs:
            mine = [
                r
                for r in outcome.records
                if r["config"] == config.key and r["method"] == name and "seconds" in r
            ]
            checks = [r["seconds"] for r in mine if r["step"] == "test"]
            setups = [r["seconds"] for r in mine if r["step"] == "setup"]
            cells.append(
                "–"
                if not checks
                else f"{statistics.median(checks):.3f} / "
                + (
                    f"{statistics.median(setups):.2f}"
                    if setups and name.startswith(("driftwatch", "alibi", "nannyml"))
                    else "–"
                )
            )
        if any(c != "–" for c in cells):
            rows.append([method.label, *cells])
    return markdown_table(["method (check s / setup s)", *(c.key for c in outcome.configs)], rows) + "\n"


def _driftwatch_rerun(run: dict) -> str:  # type: ignore[type-arg]
    """What says that driftwatch's records come from a later run than the peers' (--driftwatch-from)."""
    later = run.get("driftwatch_run")
    if not later:
        return ""
    load = later.get("load", {})
    return (
        f" driftwatch's records were then made again after changes to driftwatch, by `{later['command']}` "
        f"(same windows, started {later.get('started', '?')}, {later.get('minutes', float('nan')):.0f} min, "
        f"load {load.get('mean', float('nan')):.1f} on average), and merged with the peers' records by "
        "`--rerun --report-only --driftwatch-from` (the peers' powers repeat exactly run to run): the "
        f"driftwatch below is commit {later.get('commit', '?')}."
    )


def rerun_report(outcome: Outcome, report_command: str) -> str:
    run, configs = outcome.run, outcome.configs
    table = collect(outcome.records)
    history = history_powers()
    load = run.get("load", {})
    dw = METHODS["driftwatch"]
    lines = [RERUN_BEGIN, "#### Re-run on today's driftwatch: the cells where a peer was better (issue 15)\n"]
    say = lines.append
    ran = {r["method"] for r in outcome.records}
    cells_text = "; ".join(
        f"{c.key}: "
        + (
            "every scenario"
            if len({x.family for x in c.conditions}) == 4
            else ", ".join(sorted({x.family.replace("_", " ") for x in c.conditions} - {"none"}))
        )
        + " against "
        + ", ".join(
            m.label
            for m in METHODS.values()
            if m.env != "driftwatch" and m.name in ran and c.runs_method(m.name)
        )
        for c in configs
    )
    then = better_then(history)
    missed = sorted({key for key, _ in then} - {c.key for c in configs})
    say(
        f"Command: `{run['command']}`, then `{report_command}` (writes this sub-section from the saved "
        f"records) — machine: {run['machine']}; started {run.get('started', '?')}, took "
        f"{outcome.elapsed['total'] / 60:.0f} min ({outcome.settings.lanes} lanes); driftwatch at commit "
        f"{run.get('commit', '?')}. The machine was shared: 1-minute load average "
        f"{load.get('mean', float('nan')):.1f} on average (max {load.get('max', float('nan')):.1f}) on "
        f"{load.get('cores', 0):.0f} cores while it ran, so timings below are slower than on an idle machine "
        "and only the powers compare with the full run." + _driftwatch_rerun(run) + "\n"
    )
    say(
        f"What is re-run: the {len(then)} cells where the full run above found a peer better than driftwatch "
        "(by its own rule: at least 0.1 and over three standard errors), the scenario families around them, "
        "and per size the peers that were better there (any of them, at 1k rows): "
        f"{cells_text}."
        + (f" Not re-run: {', '.join(missed)}." if missed else "")
        + " Of those cells, all are rotations but "
        + (
            ", ".join(
                f"{key} {c} ({', '.join(labels)})"
                for (key, c), labels in sorted(then.items())
                if "rotation" not in c
            )
            or "none"
        )
        + ". The windows are "
        "exactly the full run's (run r draws run r's arrays), and every peer runs at the rows it ran at "
        "then (read from *What ran* above, not probed again on a busier machine), with the same pinned "
        "environments.\n"
    )
    say(
        f"driftwatch now: {dw.note}. Its own default verdict is Holm at the config's α = 0.001 over the "
        "detectors that measured (centroid_distance, mean_shift, spatial_kl, new_territory, "
        "classifier_two_sample). "
        "Power is at a matched false-alarm rate as above (each method's threshold is the 95% quantile of its "
        "own statistic over the no-drift runs); with N runs a share is uncertain by about ±1/sqrt(N) at "
        "worst, a difference of two by about ±sqrt(2/N).\n"
    )
    say(
        "**Per cell: who is better now** (a difference counts when it is at least 0.1 and over three "
        "standard errors, as above; *then* is the full run on the same windows, 50 runs)\n"
    )
    cell_lines, tally = _cells(outcome, table, history)
    lines += cell_lines
    total = sum(tally.values())
    say(
        f"Over the {total} cells re-run: in {tally['ours']} driftwatch's verdict now detects more than every "
        f"peer that ran there, in {tally['theirs']} a peer still detects more, in {tally['same']} there "
        "is no clear difference.\n"
    )
    say(f"**Power at a matched false-alarm rate (α = {ALPHA})**, every variant\n")
    lines += _power_tables(outcome, table, history)
    say("**Each method's own default verdict**: no-drift runs it alarms on · share of drift runs it flags\n")
    say(_defaults(outcome, table))
    say("**Cost** (median seconds per check / per setup, on the loaded machine)\n")
    say(_cost(outcome))
    say(RERUN_END)
    return "\n".join(lines)


def write_rerun(text: str) -> None:
    """Put the sub-section inside the peers section (replacing an older one), and print it."""
    print(text)
    current = BENCHMARKS.read_text()
    if RERUN_BEGIN in current:
        head, rest = current.split(RERUN_BEGIN, 1)
        current = head + text + rest.split(RERUN_END, 1)[1]
    elif MARK_END in current:
        head, rest = current.split(MARK_END, 1)
        current = head + text + "\n\n" + MARK_END + rest
    else:
        raise SystemExit("BENCHMARKS.md has no peers section to put the re-run in")
    BENCHMARKS.write_text(current)


def keep_rerun(section: str, current: str | None = None) -> str:
    """A new full section keeps the re-run sub-section that is in BENCHMARKS.md (its cells were
    chosen against the full run; whoever remakes the full run decides whether to re-run them)."""
    current = BENCHMARKS.read_text() if current is None and BENCHMARKS.exists() else (current or "")
    if RERUN_BEGIN not in current or RERUN_BEGIN in section:
        return section
    block = RERUN_BEGIN + current.split(RERUN_BEGIN, 1)[1].split(RERUN_END, 1)[0] + RERUN_END
    head, rest = section.rsplit(MARK_END, 1)
    return head + block + "\n\n" + MARK_END + rest


__all__ = ["history_plans", "history_powers", "keep_rerun", "rerun_report", "write_rerun"]
