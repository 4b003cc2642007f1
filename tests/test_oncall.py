"""What the person on call meets on the command line, against the embedded PostgreSQL +
pgvector: a metric that does not match the index fails in seconds naming the operator class,
`spatial_kl` names the rows (ids and text) of the region that moved, `status` says what to
do, marks collections that left the config and exits 1 on drift with --exit-code, and
`history --detector` refuses names it does not know."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import psycopg

from driftwatch.detect.registry import REGISTRY
from driftwatch.synthetic import Topics

from helpers import create_vector_table, run_cli

DIM = 16


def write_config(
    tmp_path: Path, dsn: str, metric: str = "cosine", names: tuple[str, ...] = ("docs",)
) -> Path:
    collections = "".join(
        f"""
[[collections]]
name = "{name}"
dsn = "{dsn}"
table = "docs"
metric = "{metric}"
text_column = "content"
sample_size = 400
null_replicates = 100
cells = 8
interval = "1h"
"""
        for name in names
    )
    config = tmp_path / "driftwatch.toml"
    config.write_text(
        f"""[store]
url = "sqlite:///{tmp_path / "store.db"}"
{collections}
[[alerts.rules]]
detector = "spatial_kl"
for_cycles = 1

[[alerts.notifiers]]
kind = "log"
"""
    )
    return config


def make_docs(dsn: str, index: str | None = "vector_cosine_ops") -> Topics:
    rng = np.random.default_rng(11)
    topics = Topics.make(rng, 6, DIM)
    docs, labels = topics.sample(rng, 3000)
    texts = [f"topic {t} document {i}" for i, t in enumerate(labels)]
    create_vector_table(dsn, "docs", docs, kind=f"vector({DIM})", texts=texts)
    if index:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE INDEX docs_embedding_idx ON docs USING hnsw (embedding {index})")
    return topics


def add_new_topic(dsn: str, count: int) -> None:
    """Rows far from every baseline topic, with text that says so."""
    rng = np.random.default_rng(12)
    centre = rng.normal(size=DIM)
    rows = centre / np.linalg.norm(centre) + 0.05 * rng.normal(size=(count, DIM))
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i, row in enumerate(rows):
            vector = "[" + ",".join(f"{x:.6f}" for x in row / np.linalg.norm(row)) + "]"
            conn.execute(
                "INSERT INTO docs (id, embedding, model_version, content) VALUES (%s, %s, 'v1', %s)",
                (500_000 + i, vector, f"brand new subject {i}"),
            )
        conn.execute("ANALYZE docs")


def cli(config: Path, *args: str):  # type: ignore[no-untyped-def]
    return run_cli("--config", str(config), *args, cwd=config.parent)


def test_a_metric_the_index_does_not_answer_fails_at_capture_and_check(tmp_path: Path, pg_db: str) -> None:
    make_docs(pg_db, index="vector_cosine_ops")
    config = write_config(tmp_path, pg_db, metric="l2")
    assert cli(config, "db", "upgrade").returncode == 0
    started = time.monotonic()
    capture = cli(config, "baseline", "capture")
    assert capture.returncode == 2
    assert "docs_embedding_idx (hnsw) uses vector_cosine_ops" in capture.stderr
    assert 'set metric = "cosine"' in capture.stderr
    assert time.monotonic() - started < 60  # no minute-long capture ending in statement_timeout
    good = write_config(tmp_path, pg_db, metric="cosine")
    assert cli(good, "baseline", "capture").returncode == 0
    wrong = write_config(tmp_path, pg_db, metric="inner_product")
    check = cli(wrong, "check", "--json")
    assert check.returncode == 2
    error = json.loads(check.stdout)["collections"]["docs"]["error"]
    assert "vector_cosine_ops" in error and 'set metric = "cosine"' in error


def test_a_table_without_an_ann_index_is_a_warning(tmp_path: Path, pg_db: str) -> None:
    make_docs(pg_db, index=None)
    config = write_config(tmp_path, pg_db)
    cli(config, "db", "upgrade")
    capture = cli(config, "baseline", "capture")
    assert capture.returncode == 0, capture.stderr
    assert "has no ANN index" in capture.stderr and "vector_cosine_ops" in capture.stderr
    # not a terminal: one log line per phase of the long step, with the time it took so far
    phases = re.findall(r"INFO driftwatch\.baseline: docs: (\w+) .*\((\d+\.\d)s\)", capture.stderr)
    assert [p for p, _ in phases][:2] == ["sampling", "fitting"], capture.stderr


def test_spatial_kl_names_the_rows_of_the_region_that_moved(tmp_path: Path, pg_db: str) -> None:
    make_docs(pg_db)
    config = write_config(tmp_path, pg_db)
    cli(config, "db", "upgrade")
    assert cli(config, "baseline", "capture").returncode == 0
    add_new_topic(pg_db, 600)
    check = cli(config, "check", "--json")
    assert check.returncode == 1, check.stderr
    docs = json.loads(check.stdout)["collections"]["docs"]
    spatial = docs["detectors"]["spatial_kl"]
    assert spatial["drifted"]
    assert spatial["action"] == REGISTRY["spatial_kl"].action
    assert spatial["runbook"] == "driftwatch runbook spatial_kl"
    top = spatial["details"]["top_cells"][0]
    assert top["change"] > 0 and 1 <= len(top["examples"]) <= 3
    assert all(e["text"].startswith("brand new subject") for e in top["examples"])
    assert all(int(e["id"]) >= 500_000 for e in top["examples"])
    (alert,) = [a for a in docs["alerts"] if a["detector"] == "spatial_kl"]
    assert alert["state"] == "firing" and alert["action"] == REGISTRY["spatial_kl"].action
    assert "brand new subject" in alert["description"]
    table = cli(config, "check")
    assert "spatial_kl: do: " in table.stdout and "runbook: driftwatch runbook spatial_kl" in table.stdout
    assert "Where: cell" in table.stdout and "brand new subject" in table.stdout


def test_status_says_what_to_do_marks_gone_collections_and_exits_on_drift(tmp_path: Path, pg_db: str) -> None:
    make_docs(pg_db)
    both = write_config(tmp_path, pg_db, names=("docs", "faq"))
    cli(both, "db", "upgrade")
    assert cli(both, "baseline", "capture").returncode == 0
    assert cli(both, "check").returncode == 0
    quiet = cli(both, "status", "--exit-code")
    assert quiet.returncode == 0, quiet.stdout
    add_new_topic(pg_db, 600)
    assert cli(both, "check").returncode == 1
    drift = cli(both, "status", "--exit-code")
    assert drift.returncode == 1
    assert f"  do: {REGISTRY['spatial_kl'].action}" in drift.stdout
    assert "  runbook: driftwatch runbook spatial_kl" in drift.stdout
    only_docs = write_config(tmp_path, pg_db, names=("docs",))
    status = cli(only_docs, "status")
    assert "faq: last cycle" in status.stdout and "[not in the config any more" in status.stdout
    # the next check resolves faq's alerts: no cycle would ever step them again
    cli(only_docs, "check")
    after = cli(only_docs, "status")
    assert "EmbeddingDrift" not in "\n".join(
        line for line in after.stdout.splitlines() if "faq" in line and "firing" in line
    )


def test_history_refuses_a_detector_it_does_not_know(tmp_path: Path) -> None:
    config = write_config(tmp_path, "postgresql://nobody@127.0.0.1:1/none")
    cli(config, "db", "upgrade")
    out = cli(config, "history", "--detector", "spatial_kll")
    assert out.returncode == 2
    assert "unknown detector 'spatial_kll'" in out.stderr and "spatial_kl, new_territory" in out.stderr
    assert cli(config, "history", "--detector", "spatial_kl").returncode == 0


def test_example_positions_a_detector_reports_become_its_rows() -> None:
    """The new-territory detector reports `details["examples"]` as positions in the rows it
    scored; where.py turns any such list into those rows' ids, dropping positions that do
    not exist, and leaves cells it cannot assign alone."""
    from driftwatch.where import _with_ids

    ids = ["a", "b", "c", "d"]
    rows = np.zeros((4, 2), np.float32)
    details = {"examples": [3, 0, 9], "top_cells": [{"cell": 1, "change": 0.1}]}
    located = _with_ids(details, None, rows, ids)
    assert located["examples"] == [{"id": "d"}, {"id": "a"}]
    assert located["top_cells"] == details["top_cells"]  # no fitted cells to assign rows with
    assert details["examples"] == [3, 0, 9]  # the detector's own result is not changed
