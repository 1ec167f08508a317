"""Presences: one identity decision per person in view, not one per frame (pure logic).

A *presence* is one track of one node: ``(node_id, track_id)``.  The worker
decides who a presence is from the track's **aggregate** embedding (wire v2:
the node's quality-weighted mean of every face of the track; wire v1: the
worker's own running mean of the events it received), and keeps that decision
stable:

Statuses
    ``pending``     nothing decisive yet (every face so far failed the node's
                    quality gate): neither someone nor a stranger;
    ``recognised``  the aggregate matches ``person_id`` at or above the threshold;
    ``unknown``     decisive evidence, below the threshold.

The rule (:func:`decide`), for each new observation of a presence:

1. An observation without decisive evidence (v2 ``weight`` 0) changes nothing
   but the counters.
2. Not *locked*: the decision follows the aggregate: the best person if its
   score reaches the threshold, else unknown.  It **locks** when the score is
   at least ``lock_margin`` above the threshold AND at least ``lead_margin``
   above the runner-up person ("recognised with a clear margin").
3. Locked on person P, later observations refine P's score but only flip when
   the evidence clearly changes:

   * to another person Q: Q's score reaches the threshold AND beats P's by at
     least ``flip_margin``;
   * to unknown: P's score falls ``drop_margin`` or more below the threshold
     (or P is no longer in the gallery: erased, so the lock is void and the
     aggregate is decided afresh).

A presence that never reaches the threshold is therefore ONE unknown
presence however many events it sent, and a recognised one never turns into
an intruder because one frame was poor.  Every change of status or person is
appended to the presence's history (:class:`Change`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

PENDING = "pending"
RECOGNISED = "recognised"
UNKNOWN = "unknown"
STATUSES = (PENDING, RECOGNISED, UNKNOWN)
#: Decision changes kept per presence (the oldest are dropped beyond this).
MAX_HISTORY = 32


@dataclass(frozen=True, slots=True)
class PresenceRule:
    threshold: float
    lock_margin: float = 0.05
    lead_margin: float = 0.05
    flip_margin: float = 0.10
    drop_margin: float = 0.15


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a presence's decision history."""

    at: datetime
    status: str
    person_id: int | None
    score: float
    locked: bool
    frames: int

    def as_json(self) -> dict:
        return {"at": self.at.isoformat(), "status": self.status, "person_id": self.person_id,
                "score": round(self.score, 4), "locked": self.locked, "frames": self.frames}


@dataclass(frozen=True, slots=True)
class Observation:
    """What one event says about its presence's aggregate, against the gallery.

    ``scores``: cosine similarity of the aggregate to every person of the gallery
    (``person_ids`` gives the person of each column).
    """

    at: datetime
    scores: np.ndarray = field(repr=False)  # (P,) float32
    person_ids: np.ndarray = field(repr=False)  # (P,) int64
    decisive: bool = True
    frames: int = 1

    def best_two(self) -> tuple[int | None, float, float]:
        """``(best person or None, its score, runner-up's score)``; -1 scores when absent."""
        n = self.scores.shape[0]
        if n == 0:
            return None, -1.0, -1.0
        if n == 1:
            return int(self.person_ids[0]), float(self.scores[0]), -1.0
        top = np.argpartition(-self.scores, 1)[:2]
        a, b = (top[0], top[1]) if self.scores[top[0]] >= self.scores[top[1]] else (top[1], top[0])
        return int(self.person_ids[a]), float(self.scores[a]), float(self.scores[b])

    def score_of(self, person_id: int) -> float | None:
        hit = np.flatnonzero(self.person_ids == person_id)
        return float(self.scores[hit[0]]) if hit.size else None


@dataclass(frozen=True, slots=True)
class Presence:
    """The decision state of one presence (what the store keeps between events)."""

    status: str = PENDING
    person_id: int | None = None
    locked: bool = False
    #: Aggregate score of the current decision (the person's; the best one when unknown).
    score: float = -1.0
    #: Highest aggregate score any observation of this presence reached.
    best_score: float = -1.0
    frames: int = 0
    events: int = 0
    history: tuple[Change, ...] = ()

    @property
    def recognised(self) -> bool:
        return self.status == RECOGNISED


def decide(state: Presence, obs: Observation, rule: PresenceRule) -> Presence:
    """The presence after one more observation (see the module docstring for the rule)."""
    frames = max(state.frames, obs.frames)
    events = state.events + 1
    if not obs.decisive:
        return replace(state, frames=frames, events=events)
    best, best_score, runner_up = obs.best_two()
    top = max(state.best_score, best_score)
    t = rule.threshold
    status, person, score, locked = state.status, state.person_id, state.score, state.locked

    if locked and person is not None:
        mine = obs.score_of(person)
        if mine is None:  # erased from the gallery: the lock is void, decide afresh
            locked = False
        elif best is not None and best != person and best_score >= t \
                and best_score >= mine + rule.flip_margin:
            person, score = best, best_score  # clearly someone else
            locked = (best_score >= t + rule.lock_margin
                      and best_score - max(runner_up, mine) >= rule.lead_margin)
        elif mine < t - rule.drop_margin:
            status, person, score, locked = UNKNOWN, None, best_score, False
        else:
            score = mine  # refine, keep the decision
    if not locked:
        if best is not None and best_score >= t:
            status, person, score = RECOGNISED, best, best_score
            locked = (best_score >= t + rule.lock_margin
                      and best_score - runner_up >= rule.lead_margin)
        else:
            status, person, score = UNKNOWN, None, best_score

    history = state.history
    if (status, person, locked) != (state.status, state.person_id, state.locked):
        history = (*history, Change(obs.at, status, person, round(score, 4), locked,
                                    frames))[-MAX_HISTORY:]
    return Presence(status, person, locked, score, top, frames, events, history)


def fold_embedding(aggregate: np.ndarray | None, weight: float, embedding: np.ndarray,
                   node_weight: float | None) -> tuple[np.ndarray, float]:
    """The presence's aggregate after one event: ``(unit aggregate, weight behind it)``.

    v2 (``node_weight`` given): the node's aggregate replaces the stored one
    (the node saw every frame; the worker only some).  v1 (None): the worker
    folds the frame in itself, each event with weight 1.
    """
    e = np.asarray(embedding, np.float32).reshape(-1)
    if node_weight is not None:
        return e, float(node_weight)
    if aggregate is None or weight <= 0:
        return e, 1.0
    total = aggregate.astype(np.float64) * weight + e
    n = float(np.linalg.norm(total))
    if n < 1e-9:
        return e, 1.0
    return (total / n).astype(np.float32), weight + 1.0


def confirmed_unknown(p: Presence, min_frames: int) -> bool:
    """An unknown presence counts as a stranger (alerts, linking) from ``min_frames`` frames."""
    return p.status == UNKNOWN and p.frames >= min_frames


def history_json(history: Sequence[Change]) -> list[dict]:
    return [c.as_json() for c in history]


def history_from_json(items: Sequence[dict] | None) -> tuple[Change, ...]:
    out = []
    for d in items or ():
        try:
            out.append(Change(datetime.fromisoformat(d["at"]), str(d["status"]),
                              None if d.get("person_id") is None else int(d["person_id"]),
                              float(d["score"]), bool(d["locked"]), int(d["frames"])))
        except (KeyError, TypeError, ValueError):
            continue  # a damaged entry is history, not state: skip it
    return tuple(out)


# --- one batch -------------------------------------------------------------------------

Key = tuple[str, int]  # (node_id, track_id)


@dataclass(slots=True)
class Tracked:
    """A presence as the store holds it: id, decision state and aggregate."""

    id: int
    state: Presence
    first_seen: datetime
    last_seen: datetime
    aggregate: np.ndarray | None = field(default=None, repr=False)
    weight: float = 0.0
    #: Already counted as a confirmed stranger (alerts, linking) before this batch.
    confirmed: bool = False


@dataclass(frozen=True, slots=True)
class Seen:
    """What the batch planner needs of one event (in stream order)."""

    key: Key
    at: datetime
    embedding: np.ndarray = field(repr=False)
    #: v2: the node's aggregate weight and frame count; v1: None.
    node_weight: float | None = None
    node_frames: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decision after one event: what its sighting row stores."""

    presence_id: int
    status: str
    person_id: int | None
    score: float


def plan(events: Sequence[Seen], tracked: dict[Key, Tracked], templates: np.ndarray,
         person_ids: np.ndarray, rule_for, *, min_frames: int,
         project=None) -> tuple[list[Outcome], list[tuple[Key, datetime]]]:
    """Apply a batch of events to their presences (``tracked`` is updated in place).

    ``templates`` (P, 512) and ``person_ids`` (P,) are the gallery snapshot;
    ``rule_for(node_id)`` gives the :class:`PresenceRule` of a camera (its
    threshold); ``project`` maps aggregates into the templates' space
    (:meth:`Gallery.project`: centring), identity when None.  Events of one
    presence are applied in the order given.
    Returns one :class:`Outcome` per event and ``(key, time)`` of each presence
    that became a confirmed stranger in this batch (see :func:`confirmed_unknown`).
    """
    aggregates = np.zeros((len(events), templates.shape[1] if templates.ndim == 2 else 512),
                          np.float32)
    folded: list[tuple[np.ndarray, float]] = []
    state_agg: dict[Key, tuple[np.ndarray | None, float]] = {
        k: (t.aggregate, t.weight) for k, t in tracked.items()}
    for i, ev in enumerate(events):
        agg, w = state_agg[ev.key]
        agg, w = fold_embedding(agg, w, ev.embedding, ev.node_weight)
        state_agg[ev.key] = (agg, w)
        aggregates[i] = agg
        folded.append((agg, w))
    if project is not None and len(events):
        aggregates = project(aggregates)
    sims = aggregates @ templates.T if templates.shape[0] else np.zeros((len(events), 0),
                                                                          np.float32)
    outcomes: list[Outcome] = []
    newly_confirmed: list[tuple[Key, datetime]] = []
    for i, ev in enumerate(events):
        t = tracked[ev.key]
        frames = ev.node_frames if ev.node_frames is not None else t.state.frames + 1
        decisive = ev.node_weight is None or ev.node_weight > 0.0
        obs = Observation(ev.at, sims[i], person_ids, decisive, frames)
        t.state = decide(t.state, obs, rule_for(ev.key[0]))
        t.aggregate, t.weight = folded[i]
        t.first_seen = min(t.first_seen, ev.at)
        t.last_seen = max(t.last_seen, ev.at)
        if not t.confirmed and confirmed_unknown(t.state, min_frames):
            t.confirmed = True
            newly_confirmed.append((ev.key, ev.at))
        outcomes.append(Outcome(t.id, t.state.status, t.state.person_id, t.state.score))
    return outcomes, newly_confirmed
