"""`driftwatch demo` at a small size, as a user runs it: each step shows the signature of its
cause, the model push pages through the log notifier, the adapter brings recall back, and
the plot is a real PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli


@pytest.mark.slow
def test_demo_steps_show_their_signatures(tmp_path: Path) -> None:
    picture = tmp_path / "demo.png"
    result = run_cli("demo", "--size", "3000", "--dim", "32", "--json", "--plot", str(picture))
    assert result.returncode == 0, result.stderr
    story = json.loads(result.stdout)
    steps = {s["step"]: s for s in story["steps"]}
    assert list(steps) == ["steady", "growth", "push", "adapter"]

    assert steps["steady"]["drifted"] == []
    feedback = ("click_rate", "negative_feedback_rate", "reformulation_rate")
    for name in feedback:  # measured in the steady state, against the baseline's rates
        measured = steps["steady"]["detectors"][name]
        assert measured["value"] is not None and measured["details"]["queries"] >= 30, measured
    # The population moved (mean_shift, the stronger of the two mean tests: at this size
    # centroid_distance sits near its threshold, and some of the sampler's draws stay under it).
    assert {"mean_shift", "spatial_kl"} <= set(steps["growth"]["drifted"])
    assert "model_version" not in steps["growth"]["drifted"]
    push = steps["push"]
    assert {"embedding_canary", "score_psi", "recall_at_k", "model_version"} <= set(push["drifted"])
    assert {"click_rate", "reformulation_rate"} <= set(push["drifted"])  # users click less, ask again
    rates = push["detectors"]["click_rate"]["details"]
    assert rates["rate"] < rates["baseline_rate"] / 2
    assert not {"centroid_distance", "mean_shift", "spatial_kl"} & set(push["drifted"])  # growth accepted
    first = push["cycles"][0]  # the service was redeployed, no query on v2 logged yet: the canary first
    assert first["embedding_canary"]["drifted"] and not first["model_version"]["drifted"]
    assert not any(c["embedding_canary"]["drifted"] for s in story["steps"][:2] for c in s["cycles"])
    pages = [a for a in push["alerts"] if a["state"] == "firing"]
    assert [(a["alertname"], a["detector"]) for a in pages] == [
        ("EmbeddingFunctionChanged", "embedding_canary")
    ]
    assert "ALERT FIRING EmbeddingFunctionChanged" in result.stderr  # the log notifier got it, once
    assert "ALERT FIRING EmbeddingModelVersionPushed" not in result.stderr  # one push, one page
    assert "canary probes moved" in pages[0]["summary"]

    adapter = steps["adapter"]
    assert "score_psi" not in adapter["drifted"]
    recall = story["suite_recall"]
    assert recall["push"] < 0.2 and recall["adapter"] > 0.7 * recall["growth"]
    assert adapter["detectors"]["recall_at_k"]["value"] < push["detectors"]["recall_at_k"]["value"] / 3
    assert story["adapter"]["recall"]["mapped"] > 0.7 and story["finetune_candidates"] > 0
    sources = story["finetune_candidate_sources"]
    assert set(sources) >= {"skip_above", "thumbs_down", "follow_up"}  # clicks, thumbs, follow-ups
    assert sum(sources.values()) == story["finetune_candidates"]
    for step in story["steps"]:
        assert step["advice"] and set(step["detectors"]) >= {"centroid_distance", "recall_at_k"}

    png = picture.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(str(picture)).shape
    assert width >= 800 and height >= 800


@pytest.mark.slow
def test_demo_serve_keeps_a_working_daemon_up(tmp_path: Path) -> None:
    """After the walk-through the daemon goes on: its cycles succeed (the demo's model service
    stays up for them) and Ctrl-C stops it cleanly."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from helpers import free_port

    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftwatch",
            "demo",
            "--size",
            "2000",
            "--dim",
            "16",
            "--serve",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "demo.log").open("w"),
    )
    try:
        deadline, metrics = time.monotonic() + 90, ""
        while time.monotonic() < deadline and 'driftwatch_cycles_total{collection="docs"} 1.0' not in metrics:
            time.sleep(0.5)
            try:
                metrics = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                )
            except OSError:
                continue
        assert 'driftwatch_cycles_total{collection="docs"} 1.0' in metrics, (
            tmp_path / "demo.log"
        ).read_text()
        assert 'driftwatch_cycle_failures_total{collection="docs"} 0.0' in metrics
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)
    assert code == 0
