"""Simulated users of a search application, where true relevance is known: what they click,
whether they press thumbs up or down, and when they ask again in other words.

The click model is position-based (a result at rank r is examined with probability
1/(1+r)^decay; an examined result is clicked with one probability when relevant, another
when not). Thumbs are left on a share of answers: up when a relevant document was among the
top results, down otherwise, each flipped with a known noise rate. A user whose answer
failed (no click, or a thumbs down) asks again, with a query closer to what they meant.

Used by `driftwatch demo`, the tests and the benchmarks; nothing here talks to a database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from driftwatch.synthetic import unit

Search = Callable[[np.ndarray], tuple[list[str], list[float]]]  # query vector -> ranked ids, scores


@dataclass(frozen=True)
class Reaction:
    clicked: list[str]
    feedback: int | None  # +1, -1 or None (no thumbs)

    @property
    def failed(self) -> bool:
        """What the log can see as a failed answer: no click, or a thumbs down."""
        return not self.clicked or self.feedback == -1


@dataclass(frozen=True)
class Users:
    decay: float = 0.8  # examination falls off with rank as 1/(1+r)^decay
    click_relevant: float = 0.85
    click_other: float = 0.05
    judged_depth: int = 3  # an answer is good when a relevant document is in its top this-many
    rate_share: float = 0.3  # share of answers that get a thumbs
    thumbs_noise: float = 0.1  # a thumbs points the wrong way this often
    ask_again: float = 0.6  # after a failed answer, the user reformulates this often
    clearer: float = 0.5  # a reformulation's noise, relative to the first query's
    pause: tuple[float, float] = (5.0, 60.0)  # seconds before a reformulation

    def react(self, rng: np.random.Generator, ids: Sequence[str], relevant: set[str]) -> Reaction:
        examined = rng.random(len(ids)) < 1 / (1 + np.arange(len(ids))) ** self.decay
        pulls = rng.random(len(ids))
        clicked = [
            doc
            for doc, seen, pull in zip(ids, examined, pulls, strict=True)
            if seen and pull < (self.click_relevant if doc in relevant else self.click_other)
        ]
        feedback = None
        if rng.random() < self.rate_share:
            good = bool(relevant & set(ids[: self.judged_depth]))
            if rng.random() < self.thumbs_noise:
                good = not good
            feedback = 1 if good else -1
        return Reaction(clicked, feedback)


@dataclass
class LogRow:
    """One query-log row as an application writes it (the query-log contract's columns)."""

    ts: datetime
    query_id: str
    query_text: str
    query_embedding: np.ndarray
    model_version: str
    result_ids: list[str]
    result_scores: list[float]
    clicked_ids: list[str]
    session_id: str
    feedback: int | None

    def as_tuple(self) -> tuple[object, ...]:
        return (
            self.ts, self.query_id, self.query_text, self.query_embedding, self.model_version,
            self.result_ids, self.result_scores, self.clicked_ids, self.session_id, self.feedback,
        )  # fmt: skip


LOG_COLUMNS = (
    "ts, query_id, query_text, query_embedding, model_version, result_ids, result_scores, "
    "clicked_ids, session_id, feedback"
)


@dataclass
class Session:
    """One user's visit: a first query and, after a failed answer, a reformulation."""

    rows: list[LogRow] = field(default_factory=list)
    relevant: set[str] = field(default_factory=set)


def run_session(
    rng: np.random.Generator,
    users: Users,
    search: Search,
    meaning: np.ndarray,
    relevant: set[str],
    *,
    name: str,
    text: str,
    noise: float,
    start: datetime,
    model_version: str,
    embed: Callable[[np.ndarray], np.ndarray] = lambda v: v,
) -> Session:
    """A user who means `meaning` (whose truly relevant documents are `relevant`) searches,
    reacts, and after a failed answer may ask again 5-60 s later in clearer words."""
    session = Session(relevant=relevant)
    ts, attempt, spread = start, 0, noise
    while True:
        asked = unit(meaning + rng.standard_normal(meaning.shape) * (spread / np.sqrt(meaning.shape[0])))
        vector = embed(asked)
        ids, scores = search(vector)
        reaction = users.react(rng, ids, relevant)
        session.rows.append(
            LogRow(
                ts, f"{name}-{attempt}", text if attempt == 0 else f"{text} (again {attempt})", vector,
                model_version, ids, scores, reaction.clicked, name, reaction.feedback,
            )
        )  # fmt: skip
        if not reaction.failed or attempt >= 1 or rng.random() >= users.ask_again:
            return session
        attempt += 1
        spread *= users.clearer
        ts = ts + timedelta(seconds=float(rng.uniform(*users.pause)))


def simulate_log(
    rng: np.random.Generator,
    users: Users,
    search: Search,
    docs: np.ndarray,
    *,
    intents: int,
    visits: int,
    start: datetime,
    model_version: str = "v1",
    noise: float = 0.6,
    embed: Callable[[np.ndarray], np.ndarray] = lambda v: v,
) -> tuple[list[LogRow], dict[str, set[str]]]:
    """`intents` things users want (each a document and its two nearest: the truly relevant
    set), each searched by `visits` users a minute apart. Returns the log rows (in ts order)
    and the truly relevant ids of each query text (a reformulation's text included)."""
    from driftwatch.synthetic import exact_neighbours

    source = rng.choice(len(docs), size=intents, replace=False)
    truth = exact_neighbours(docs[source], docs, 3)
    rows: list[LogRow] = []
    relevant_of: dict[str, set[str]] = {}
    for j in range(intents):
        relevant = {str(i) for i in truth[j]}
        text = f"{model_version} query {j}"
        for visit in range(visits):
            session = run_session(
                rng, users, search, docs[source[j]], relevant,
                name=f"{model_version}-{j}-{visit}", text=text, noise=noise,
                start=start + timedelta(seconds=60 * (j * visits + visit)),
                model_version=model_version, embed=embed,
            )  # fmt: skip
            rows += session.rows
            for row in session.rows:
                relevant_of[row.query_text] = relevant
    rows.sort(key=lambda r: r.ts)
    return rows, relevant_of


def false_negative_rates(
    triplets: Sequence[tuple[str, str, str]], relevant_of: dict[str, set[str]]
) -> dict[str, tuple[float, int]]:
    """Per source, the share of (anchor, negative, source) triplets whose negative is truly
    relevant to the anchor, and how many triplets there were."""
    by_source: dict[str, list[bool]] = {}
    for anchor, negative, source in triplets:
        by_source.setdefault(source, []).append(negative in relevant_of[anchor])
    return {source: (float(np.mean(flags)), len(flags)) for source, flags in sorted(by_source.items())}


__all__ = [
    "LOG_COLUMNS",
    "LogRow",
    "Reaction",
    "Search",
    "Session",
    "Users",
    "false_negative_rates",
    "run_session",
    "simulate_log",
]
