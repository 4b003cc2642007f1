"""Ten collections on two `driftwatch run` replicas sharing one PostgreSQL store: every
collection runs, none runs twice at once, no replica repeats a period another one already
ran, and both do some of the work (bench/fifty.py measures fifty collections on three)."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from driftwatch import store
from driftwatch.baseline import capture
from driftwatch.config import load_config
from driftwatch.embedded import EmbeddedPostgres
from driftwatch.store.models import Cycle
from driftwatch.synthetic import Topics

from daemon_helpers import Daemon, wait_for
from helpers import create_vector_table, free_port, sqlalchemy_url

COLLECTIONS = 10
INTERVAL = 2.0


def _config(path: Path, dsn: str, store_url: str, port: int) -> Path:
    parts = [f'[store]\nurl = "{store_url}"\n\n[server]\nport = {port}\n']
    for i in range(COLLECTIONS):
        parts.append(
            f'[[collections]]\nname = "c{i}"\ndsn = "{dsn}"\ntable = "c{i}"\nsample_size = 100\n'
            f'null_replicates = 50\ncells = 4\ninterval = "{INTERVAL}s"\nindex_health_queries = 0\n'
        )
    path.write_text("\n".join(parts))
    return path


def test_replicas_share_ten_collections_without_running_one_twice(
    tmp_path: Path, pg: EmbeddedPostgres, pg_db: str
) -> None:
    rng = np.random.default_rng(5)
    topics = Topics.make(rng, 4, 8)
    for i in range(COLLECTIONS):
        create_vector_table(pg_db, f"c{i}", topics.sample(rng, 300)[0])
    store_url = sqlalchemy_url(pg.create_database(f"s_{uuid.uuid4().hex[:12]}"))
    configs = [_config(tmp_path / f"r{r}.toml", pg_db, store_url, free_port()) for r in range(2)]
    settings = load_config(configs[0])
    engine = store.create_store_engine(store_url)
    try:
        store.upgrade(engine)
        for collection in settings.collections:
            capture(collection, engine, np.random.default_rng(0))
        replicas = [Daemon(config, tmp_path / f"r{r}.log") for r, config in enumerate(configs)]

        def runners() -> int:
            with Session(engine) as session:
                return len(set(session.scalars(select(Cycle.runner).distinct())))

        try:
            time.sleep(3 * INTERVAL)
            # The second replica starts while the first already runs; on a loaded machine its
            # first cycles (cold imports, first reads) may lose every race of the first periods.
            wait_for(lambda: runners() == 2, 60, "both replicas to run a cycle", replicas[1])
        finally:
            stopped = [r.stop() for r in replicas]
        assert all(code == 0 for code, _ in stopped), [r.output() for r in replicas]
        with Session(engine) as session:
            cycles = session.scalars(select(Cycle).order_by(Cycle.collection, Cycle.started_at)).all()
    finally:
        engine.dispose()
    by_name: dict[str, list[Cycle]] = {}
    for cycle in cycles:
        by_name.setdefault(cycle.collection, []).append(cycle)
    assert sorted(by_name) == sorted(f"c{i}" for i in range(COLLECTIONS))  # every collection ran
    assert all(c.status != "failed" for c in cycles), [c.error for c in cycles if c.status == "failed"]
    for name, runs in by_name.items():
        for previous, current in itertools.pairwise(runs):
            assert current.started_at >= previous.finished_at, f"{name} ran twice at once"
            apart = (current.started_at - previous.started_at).total_seconds()
            assert apart >= INTERVAL / 2, f"{name}: a period run twice ({apart:.2f}s apart)"
    # Both replicas fire each collection at the same aligned moments; the jitter picks who runs it.
    assert len({c.runner for c in cycles}) == 2, "one replica ran every cycle"  # within the wait above
