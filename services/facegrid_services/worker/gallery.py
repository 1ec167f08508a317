"""The in-memory gallery and matching: per-person templates, cosine similarity, threshold.

A :class:`Gallery` is an immutable snapshot of one model's enrolled embeddings.
Each person is represented by a *template*: the L2-normalised mean of their
L2-normalised embeddings (MODEL_NOTES: mean-of-5 templates beat single-photo
nearest neighbours, and a template averages out one odd photo).
:meth:`Gallery.match` classifies a whole batch with one ``(B×512)·(512×P)``
product over the P people (not over every enrolled photo), then one argmax per
row: the best person, its cosine similarity as score, recognised when the score
reaches the threshold.

**Centring** (galleries of at least ``centre_from`` people, 10 by default): the
mean of the gallery's enrolled embeddings is subtracted from every vector
(enrolled and matched) before the cosine, and the result renormalised.  What
all faces of this camera/crop/model have in common then no longer counts as
similarity: on LFW (bench/accuracy.py) it moved correct-accept at the same
stranger rate from 97.0 % to 98.9 % (lfw_dev) and from 89.5 % to 92.7 %
(lfw_dev_large).  Below 10 people the mean would be one or two people's own
face, so nothing is centred.  The mean comes from the enrolled photos alone.

:meth:`Gallery.suggest_threshold` estimates, from the enrolled photos alone,
the threshold that keeps the open-set false-accept rate at a target: each
enrolled photo is scored against the templates of every *other* person, which
is what a stranger resembling an enrolled person scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from facegrid import wire

log = logging.getLogger(__name__)

#: Candidate thresholds whose acceptance counts are kept as live statistics.
THRESHOLD_GRID = tuple(round(0.20 + 0.05 * i, 2) for i in range(14))  # 0.20 … 0.85


@dataclass(frozen=True, slots=True)
class Matches:
    """Per event: best person id (or -1), its score, and whether it passes the threshold."""

    person_ids: np.ndarray  # int64 (B,), -1 where the gallery is empty
    scores: np.ndarray  # float32 (B,)
    recognised: np.ndarray  # bool (B,)


def _unit_rows(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return np.ascontiguousarray(m / np.maximum(n, 1e-12), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Gallery:
    """``model`` is None for an empty gallery that follows no model yet."""

    model: str | None
    templates: np.ndarray = field(repr=False)  # (P, 512) float32, unit rows
    person_ids: np.ndarray = field(repr=False)  # (P,) int64, person of each template
    counts: np.ndarray = field(repr=False)  # (P,) int64, embeddings behind each template
    #: Enrolled embeddings (unit rows) and the template column of each; only needed for
    #: :meth:`impostor_scores`: :meth:`templates_only` drops them for the matching snapshot.
    matrix: np.ndarray = field(repr=False)  # (M, 512) float32
    columns: np.ndarray = field(repr=False)  # (M,) int64 index into templates
    #: Subtracted from every vector before matching (zeros: not centred).
    mean: np.ndarray = field(default_factory=lambda: np.zeros(wire.EMBEDDING_DIM, np.float32),
                             repr=False)

    @classmethod
    def empty(cls, model: str | None) -> Gallery:
        z = np.zeros((0, wire.EMBEDDING_DIM), np.float32)
        i = np.zeros(0, np.int64)
        return cls(model, z, i, i, z, i)

    @classmethod
    def from_rows(cls, model: str | None, rows, *, centre_from: int = 10) -> Gallery:
        """Build from ``(person_id, vector_bytes)`` rows; unusable vectors are skipped.

        ``centre_from``: centre on the gallery mean from this many people (0: never).
        """
        rows = list(rows)
        good = [(pid, raw) for pid, raw in rows
                if raw is not None and len(raw) == wire.EMBEDDING_BYTES]
        skipped = len(rows) - len(good)
        if good:
            matrix = np.frombuffer(b"".join(raw for _, raw in good), dtype=wire.EMBEDDING_DTYPE)
            matrix = matrix.reshape(len(good), wire.EMBEDDING_DIM).astype(np.float32)
            with np.errstate(invalid="ignore", over="ignore"):
                norms = np.linalg.norm(matrix, axis=1)
            usable = np.isfinite(norms) & (norms >= 1e-6)
            skipped += int((~usable).sum())
            matrix = np.ascontiguousarray(matrix[usable] / norms[usable, None])
            labels = np.asarray([pid for pid, _ in good], np.int64)[usable]
        if skipped:
            log.warning("gallery %s: skipped %d unusable stored embeddings", model, skipped)
        if not good or matrix.shape[0] == 0:
            return cls.empty(model)
        person_ids, columns, counts = np.unique(labels, return_inverse=True, return_counts=True)
        mean = np.zeros(wire.EMBEDDING_DIM, np.float32)
        if centre_from and person_ids.size >= centre_from:
            mean = matrix.mean(axis=0).astype(np.float32)
            matrix = _unit_rows(matrix - mean)
        order = np.argsort(columns, kind="stable")  # rows grouped by person, then summed
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        sums = np.add.reduceat(matrix[order].astype(np.float64), starts, axis=0)
        norms = np.linalg.norm(sums, axis=1)
        # Embeddings that cancel out (never seen in practice): fall back to the first photo.
        for p in np.flatnonzero(norms < 1e-6):
            sums[p] = matrix[np.flatnonzero(columns == p)[0]]
        return cls(model, _unit_rows(sums), person_ids.astype(np.int64),
                   counts.astype(np.int64), matrix, columns.astype(np.int64), mean)

    def templates_only(self) -> Gallery:
        """The same gallery without the per-photo matrix (all that matching needs)."""
        return replace(self, matrix=np.zeros((0, wire.EMBEDDING_DIM), np.float32),
                       columns=np.zeros(0, np.int64))

    @property
    def centred(self) -> bool:
        return bool(self.mean.any())

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Vectors as the templates see them: centred on the gallery mean, unit rows."""
        e = np.asarray(embeddings, np.float32)
        if not self.centred:
            return e
        return _unit_rows(e.reshape(-1, wire.EMBEDDING_DIM) - self.mean).reshape(e.shape)

    @property
    def size(self) -> int:
        """Enrolled embeddings behind the templates."""
        return int(self.counts.sum())

    @property
    def people(self) -> int:
        return int(self.person_ids.size)

    def match(self, embeddings: np.ndarray, threshold: float) -> Matches:
        """Classify a batch ``(B, 512)``: one product against the templates, one argmax."""
        b = int(embeddings.shape[0])
        if b == 0 or self.people == 0:
            return Matches(np.full(b, -1, np.int64), np.zeros(b, np.float32),
                           np.zeros(b, bool))
        sims = self.project(embeddings) @ self.templates.T  # (B, P)
        best = sims.argmax(axis=1)
        scores = sims[np.arange(b), best]
        return Matches(self.person_ids[best], scores, scores >= np.float32(threshold))

    def impostor_scores(self, max_probes: int = 5000, seed: int = 0) -> np.ndarray:
        """Each enrolled photo's best similarity to the template of *another* person.

        Probes are a random sample of up to ``max_probes`` enrolled photos;
        chunked products keep memory flat for large galleries.
        """
        if self.people < 2 or self.matrix.shape[0] == 0:
            return np.zeros(0, np.float32)
        idx = np.arange(self.matrix.shape[0])
        if idx.size > max_probes:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_probes, replace=False))
        out = np.empty(idx.size, np.float32)
        for start in range(0, idx.size, 512):
            chunk = idx[start:start + 512]
            sims = self.matrix[chunk] @ self.templates.T
            sims[np.arange(chunk.size), self.columns[chunk]] = -np.inf
            out[start:start + chunk.size] = sims.max(axis=1)
        return out

    def suggest_threshold(self, target_far: float = 0.01) -> float | None:
        """The threshold accepting ``target_far`` of the impostor scores (None: < 2 people)."""
        imp = self.impostor_scores()
        if imp.size == 0:
            return None
        return float(np.quantile(imp, 1.0 - target_far, method="higher")) + 1e-6


def threshold_counts(scores: np.ndarray, grid: tuple[float, ...] = THRESHOLD_GRID) -> list[int]:
    """How many of ``scores`` each candidate threshold of ``grid`` would accept."""
    if scores.size == 0:
        return [0] * len(grid)
    g = np.asarray(grid, np.float32)
    return (scores[:, None] >= g[None, :]).sum(axis=0).astype(int).tolist()
