"""A detector declared in one place reaches every part of driftwatch: a toy detector that
exists only in this test is validated in config, fitted at capture, stored with the
baseline, scored in a cycle, shown by `check --json`, exported on /metrics and paged on —
without any driftwatch module knowing its name."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from pgvector.psycopg import register_vector
from prometheus_client.parser import text_string_to_metric_families

from driftwatch import store
from driftwatch.baseline import Fitted
from driftwatch.cli import cli
from driftwatch.config import load_config
from driftwatch.daemon import Daemon
from driftwatch.detect.detectors import DriftResult, Stateful
from driftwatch.detect.registry import REGISTRY, Detector, FitInput, ScoreInput
from driftwatch.errors import ConfigError
from driftwatch.store import repository

from helpers import create_vector_table, free_port

TOY = "toy_first_axis"


@dataclass(frozen=True)
class FirstAxis(Stateful):
    """Mean of the first coordinate: moves when rows pile up along e0."""

    baseline_mean: float

    @classmethod
    def fit(cls, inputs: FitInput) -> FirstAxis:
        return cls(float(inputs.reference[:, 0].mean()))

    def score(self, inputs: ScoreInput) -> DriftResult:
        value = float(inputs.clean[:, 0].mean()) - self.baseline_mean
        threshold = 0.1 if inputs.fixed_threshold is None else inputs.fixed_threshold
        return DriftResult(TOY, value, threshold, None, {"rows": len(inputs.clean)})


@pytest.fixture
def toy() -> Iterator[Detector]:
    detector = Detector(
        name=TOY,
        meaning="Mean of the first coordinate.",
        action="rows pile up along the first axis: look at what was written",
        label="first-axis mean",
        state=FirstAxis,
        fit=FirstAxis.fit,
        score=lambda state, inputs: state.score(inputs),
    )
    REGISTRY.register(detector)
    yield detector
    REGISTRY.unregister(TOY)


def _config(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "driftwatch.toml"
    path.write_text(
        f"""
[store]
url = "sqlite:///{tmp_path / "store.db"}"

[server]
port = {free_port()}

[[collections]]
name = "docs"
dsn = "{dsn}"
table = "docs"
model_version_column = "model_version"
sample_size = 500
interval = "1h"
sentinels = 0
thresholds = {{ {TOY} = 0.2 }}

[[alerts.rules]]
detector = "{TOY}"
severity = "warning"
for_cycles = 1
"""
    )
    return path


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _pile_up_on_first_axis(dsn: str, count: int, rng: np.random.Generator) -> None:
    rows = rng.normal(size=(count, 16))
    rows[:, 0] += 6.0
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor().copy(
            "COPY docs (id, embedding, model_version) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "vector", "text"])
            for i, vector in enumerate(_unit(rows)):
                copy.write_row((100_000 + i, vector, "v1"))
        conn.execute("ANALYZE docs")


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_config_accepts_only_registered_detectors(tmp_path: Path) -> None:
    path = _config(tmp_path, "postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(ConfigError) as unknown:
        load_config(path, env={})
    assert f"unknown detector '{TOY}'" in str(unknown.value)
    assert "alerts.rules[0].detector: must be one of 'any', 'centroid_distance'" in str(unknown.value)


def test_a_detector_declared_once_is_fitted_scored_exported_and_paged(
    toy: Detector, pg_db: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(11)
    create_vector_table(pg_db, "docs", _unit(rng.normal(size=(3000, 16))))
    config = _config(tmp_path, pg_db)
    settings = load_config(config, env={})
    assert settings.collection("docs").thresholds == {TOY: 0.2}
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(config), "db", "upgrade"]).exit_code == 0

    captured = runner.invoke(cli, ["--config", str(config), "baseline", "capture"])
    assert captured.exit_code == 0, captured.output
    engine = store.create_store_engine(settings.store.url)
    try:
        baseline = repository.active_baseline(engine, "docs")
        assert baseline is not None
        state = Fitted.unpack(baseline.arrays, baseline.summary).states[TOY]
        assert isinstance(state, FirstAxis) and abs(state.baseline_mean) < 0.1
    finally:
        engine.dispose()

    quiet = runner.invoke(cli, ["--config", str(config), "check", "--json"])
    assert quiet.exit_code == 0, quiet.output
    assert json.loads(quiet.stdout)["collections"]["docs"]["detectors"][TOY]["drifted"] is False

    _pile_up_on_first_axis(pg_db, 3000, rng)
    moved = runner.invoke(cli, ["--config", str(config), "check", "--json"])
    body = json.loads(moved.stdout)["collections"]["docs"]
    assert moved.exit_code == 1, moved.output
    assert body["detectors"][TOY]["drifted"] is True and body["detectors"][TOY]["threshold"] == 0.2
    assert list(body["detectors"])[-1] == TOY  # registration order
    (alert,) = [a for a in body["alerts"] if a["detector"] == TOY]
    assert alert["state"] == "firing" and alert["alertname"] == "EmbeddingDrift"

    daemon = Daemon(settings, store.create_store_engine(settings.store.url))
    daemon.start()
    try:
        port, labels = settings.server.port, (("collection", "docs"), ("detector", TOY))
        deadline = time.monotonic() + 60
        while ("driftwatch_drifted", labels) not in (scraped := _scrape(port)):
            assert time.monotonic() < deadline, "the daemon's first cycle never exported the toy detector"
            time.sleep(0.2)
        assert scraped[("driftwatch_drifted", labels)] == 1
        assert scraped[("driftwatch_detector_value", labels)] > 0.2
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/alerts", timeout=10) as response:
            alerts = json.loads(response.read())["alerts"]
        (firing,) = [a for a in alerts if a["detector"] == TOY]
        assert firing["state"] == "firing"
    finally:
        daemon.stop()


def test_every_detector_is_documented_where_a_person_reads() -> None:
    """docs/design.md lists every registered detector; README's runbook has a line for each
    (the arrival detectors share one)."""
    root = Path(__file__).resolve().parent.parent
    design, readme = (root / "docs" / "design.md").read_text(), (root / "README.md").read_text()
    runbook = readme[readme.index("### Runbook") :]
    for detector in REGISTRY:
        assert f"| `{detector.name}` |" in design, detector.name
        shown = "arrivals_*" if detector.name.startswith("arrivals_") else detector.name
        assert f"`{shown}`" in runbook, detector.name


def test_a_stored_state_this_version_cannot_read_turns_off_that_detector_alone() -> None:
    """An upgrade that changed one detector's stored state (as the classifier's did) must not
    stop a collection's monitoring until someone re-captures: that detector is off with a
    note, every other one is restored as it was."""
    from driftwatch.detect.classifier import ClassifierTwoSample
    from driftwatch.detect.population import CentroidDistance

    rng = np.random.default_rng(5)
    rows = _unit(rng.normal(size=(1800, 16))).astype(np.float32)
    reference, held = rows[:300], rows[300:]
    fitted = Fitted(
        states={
            "centroid_distance": CentroidDistance.fit(reference, held, 300, "cosine", rng, 200),
            "classifier_two_sample": ClassifierTwoSample.fit(reference, held, "cosine", rng),
        },
        versions=[None],
        sentinel_ids=[],
        sentinel_vectors=np.zeros((0, 16), np.float32),
        cycle_size=300,
    )
    arrays, summary = fitted.pack()
    intact = Fitted.unpack(dict(arrays), summary)
    assert set(intact.states) == {"centroid_distance", "classifier_two_sample"}

    older = {k: v for k, v in arrays.items() if not k.startswith("classifier_two_sample.base_")}
    restored = Fitted.unpack(older, summary)
    assert "classifier_two_sample" not in restored.states
    assert "re-capture" in restored.notes["classifier_two_sample"]
    centroid = restored.states["centroid_distance"]
    current = _unit(rng.normal(size=(300, 16)))
    assert centroid.score(current, 0.001) == intact.states["centroid_distance"].score(current, 0.001)
