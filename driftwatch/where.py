"""*Where* a regional detector moved, in rows a person can open: for each of `spatial_kl`'s
top cells (and the arrival variant's) a few representative ids of the sampled rows in that
cell, and for a detector that names rows itself (`details["examples"]`: positions in the
array it scored, as the new-territory detector reports them) those rows' ids. With a
`text_column`, each id comes with its text, read through the pg layer in the same pass, so
"which region" needs no hand-written SQL.

Read generically from the details, so a detector that reports cells or example positions
gets this for free. A failure to read the text never fails the cycle: the ids stay.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from driftwatch.baseline import Fitted
from driftwatch.config import CollectionSettings
from driftwatch.detect.detectors import DriftResult
from driftwatch.detect.observation import Observation, VectorSample
from driftwatch.detect.registry import REGISTRY, Registry
from driftwatch.errors import DriftwatchError
from driftwatch.pg.session import Sessions
from driftwatch.pg.sources import fetch_documents_everywhere

log = logging.getLogger(__name__)

PER_CELL = 3  # representative rows shown per top cell
PER_DETECTOR = 5  # rows shown for a detector's own `examples`
TEXT_CHARS = 300  # of each row's text kept in details


def clean_positions(sample: VectorSample, fitted: Fitted) -> np.ndarray | None:
    """Positions in `sample.vectors` of the rows the vector-sanity screen lets through (the
    rows the detectors scored, in order): finite, non-zero, inside the baseline's norm band.
    None when the sample has no ids or the screen is not fitted."""
    sanity = fitted.states.get("vector_sanity")
    if sample.ids is None or sanity is None or len(sample.ids) != len(sample.vectors):
        return None
    rows = sample.vectors.astype(np.float32, copy=False)
    finite = np.all(np.isfinite(rows), axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    keep = finite & (norms > 0) & (norms >= sanity.norm_low) & (norms <= sanity.norm_high)
    return np.flatnonzero(keep)


def _spread(positions: np.ndarray, count: int, surplus: float = 0.0) -> list[int]:
    """Up to `count` of a cell's row positions (in heap order), at interior quantiles.

    A cell that gained a share `surplus` of its current rows (change / current) is shown by
    its newest rows: drift arrives in insert order, so the surplus is most likely the last
    `surplus` of the cell's rows in the heap; a cell that lost rows is shown by what it holds."""
    if len(positions) == 0:
        return []
    if surplus > 0:
        positions = positions[-max(count, round(surplus * len(positions))) :]
    k = min(count, len(positions))
    picks = np.unique(((np.arange(k) + 0.5) / k * len(positions)).astype(int))
    return [int(positions[i]) for i in picks]


def locate(
    sessions: Sessions,
    collection: CollectionSettings,
    fitted: Fitted,
    observed: Observation,
    results: list[DriftResult],
    registry: Registry = REGISTRY,
) -> list[DriftResult]:
    """`results` with representative rows ({"id", "text"?}) put in place of cell numbers'
    and example positions' anonymity."""
    scored = {"sample": _scored(observed.sample, fitted)}
    if observed.arrivals is not None:
        scored["arrivals"] = _scored(observed.arrivals.sample, fitted)
    located, wanted = [], set()
    for result in results:
        which = "arrivals" if result.detector.startswith("arrivals_") else "sample"
        rows, ids = scored.get(which, (observed.sample.vectors[:0], None))
        if result.value is None or ids is None:
            located.append(result)
            continue
        owner = registry[result.detector].fitted_as if result.detector in registry else None
        details = _with_ids(result.details, fitted.states.get(owner) if owner else None, rows, ids)
        wanted.update(_ids_in(details))
        located.append(replace(result, details=details) if details is not result.details else result)
    if not wanted or not collection.text_column:
        return located
    texts = _texts(sessions, collection, sorted(wanted))
    return [replace(r, details=_with_texts(r.details, texts)) if _ids_in(r.details) else r for r in located]


def _scored(sample: VectorSample, fitted: Fitted) -> tuple[np.ndarray, list[str] | None]:
    """The rows a detector scored and their ids (None when they cannot be told)."""
    positions = clean_positions(sample, fitted)
    if positions is None or sample.ids is None:
        return sample.vectors[:0], None
    if len(positions) == len(sample.vectors):  # every row is clean: no copy of the sample
        return sample.vectors, list(sample.ids)
    return sample.vectors[positions], [sample.ids[i] for i in positions]


def _with_ids(details: dict[str, Any], state: Any, rows: np.ndarray, ids: list[str]) -> dict[str, Any]:
    out = details
    cells = details.get("top_cells")
    if isinstance(cells, list) and cells and hasattr(state, "assign") and len(rows):
        of_row = state.assign(rows)
        far = getattr(state, "cells", None)  # assign() numbers the far cell after the others
        located = []
        for cell in cells:
            number = far if cell.get("cell") == "far" else cell.get("cell")
            current, change = float(cell.get("current", 0.0)), float(cell.get("change", 0.0))
            surplus = min(1.0, change / current) if change > 0 and current > 0 else 0.0
            picks = _spread(np.flatnonzero(of_row == number), PER_CELL, surplus)
            located.append({**cell, "examples": [{"id": ids[i]} for i in picks]})
        out = {**out, "top_cells": located}
    examples = details.get("examples")
    if isinstance(examples, list) and examples and all(isinstance(i, int | np.integer) for i in examples):
        inside = [int(i) for i in examples if 0 <= int(i) < len(ids)][:PER_DETECTOR]
        out = {**out, "examples": [{"id": ids[i]} for i in inside]}
    return out


def _ids_in(details: dict[str, Any]) -> set[str]:
    found = set()
    for cell in details.get("top_cells", []) if isinstance(details.get("top_cells"), list) else []:
        found.update(e["id"] for e in cell.get("examples", []) if isinstance(e, dict))
    examples = details.get("examples")
    if isinstance(examples, list):
        found.update(e["id"] for e in examples if isinstance(e, dict))
    return found


def _texts(sessions: Sessions, collection: CollectionSettings, ids: list[str]) -> dict[str, str | None]:
    try:
        documents = fetch_documents_everywhere(sessions, collection, ids, with_text=True)
    except DriftwatchError as exc:
        log.warning(
            "%s: the text of the rows that show where drift is could not be read: %s", collection.name, exc
        )
        return {}
    finally:
        sessions.end_snapshot()
    return {row_id: (text[:TEXT_CHARS] if text else text) for row_id, (_vector, text) in documents.items()}


def _with_texts(details: dict[str, Any], texts: dict[str, str | None]) -> dict[str, Any]:
    def filled(examples: list[Any]) -> list[Any]:
        return [{**e, "text": texts.get(e["id"])} if isinstance(e, dict) else e for e in examples]

    out = dict(details)
    if isinstance(out.get("top_cells"), list):
        out["top_cells"] = [{**c, "examples": filled(c.get("examples", []))} for c in out["top_cells"]]
    if isinstance(out.get("examples"), list):
        out["examples"] = filled(out["examples"])
    return out


__all__ = ["clean_positions", "locate"]
