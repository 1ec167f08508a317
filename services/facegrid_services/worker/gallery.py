"""The in-memory gallery and matching: cosine similarity, weighted k-NN vote, threshold.

A :class:`Gallery` is an immutable snapshot: a float32 matrix of every enrolled
embedding of one model (L2-normalised rows) and the person id of each row.
:meth:`Gallery.match` classifies a whole batch with one matrix product.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

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


@dataclass(frozen=True, slots=True)
class Gallery:
    model: str
    matrix: np.ndarray = field(repr=False)  # (M, 512) float32, unit rows
    labels: np.ndarray = field(repr=False)  # (M,) int64 person id per row

    @classmethod
    def empty(cls, model: str) -> Gallery:
        return cls(model, np.zeros((0, wire.EMBEDDING_DIM), np.float32),
                   np.zeros(0, np.int64))

    @classmethod
    def from_rows(cls, model: str, rows) -> Gallery:
        """Build from ``(person_id, vector_bytes)`` rows; unusable vectors are skipped."""
        vecs, labels, skipped = [], [], 0
        for person_id, raw in rows:
            if raw is None or len(raw) != wire.EMBEDDING_BYTES:
                skipped += 1
                continue
            v = np.frombuffer(raw, dtype=wire.EMBEDDING_DTYPE)
            n = float(np.linalg.norm(v))
            if not np.isfinite(n) or n < 1e-6:
                skipped += 1
                continue
            vecs.append(v / n)
            labels.append(int(person_id))
        if skipped:
            log.warning("gallery %s: skipped %d unusable stored embeddings", model, skipped)
        if not vecs:
            return cls.empty(model)
        matrix = np.ascontiguousarray(np.stack(vecs), dtype=np.float32)
        return cls(model, matrix, np.asarray(labels, dtype=np.int64))

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def people(self) -> int:
        return int(np.unique(self.labels).size)

    def match(self, embeddings: np.ndarray, threshold: float, k: int = 3) -> Matches:
        """Classify a batch ``(B, 512)``: one matmul, then a similarity-weighted k-NN vote.

        The winner is the person with the largest sum of (positive) similarities
        among the ``k`` nearest gallery rows; its score is its best similarity
        among them, and it is recognised when that score reaches ``threshold``.
        """
        b = int(embeddings.shape[0])
        if b == 0 or self.size == 0:
            return Matches(np.full(b, -1, np.int64), np.zeros(b, np.float32),
                           np.zeros(b, bool))
        sims = embeddings.astype(np.float32, copy=False) @ self.matrix.T  # (B, M)
        m = sims.shape[1]
        k = max(1, min(k, m))
        rows = np.arange(b)
        # k argmax passes (masking each winner) beat argpartition by far for small k.
        top = np.empty((b, k), np.int64)
        top_sims = np.empty((b, k), np.float32)
        for j in range(k):
            idx = np.argmax(sims, axis=1)
            top[:, j] = idx
            top_sims[:, j] = sims[rows, idx]
            if j + 1 < k:
                sims[rows, idx] = -np.inf
        top_labels = self.labels[top]
        same = top_labels[:, :, None] == top_labels[:, None, :]  # (B, k, k)
        weights = np.clip(top_sims, 0.0, None)
        votes = (same * weights[:, None, :]).sum(axis=2)  # (B, k): votes for candidate j
        # Ties in the vote go to the candidate with the higher single similarity.
        best_vote = votes.max(axis=1, keepdims=True)
        contenders = np.where(np.isclose(votes, best_vote), top_sims, -np.inf)
        winner = np.argmax(contenders, axis=1)
        person = top_labels[rows, winner]
        winner_mask = same[rows, winner]  # (B, k): neighbours of the winning person
        scores = np.where(winner_mask, top_sims, -np.inf).max(axis=1).astype(np.float32)
        return Matches(person.astype(np.int64), scores, scores >= np.float32(threshold))

    def impostor_scores(self, max_probes: int = 2000, seed: int = 0) -> np.ndarray:
        """Each probe's best similarity to an embedding of *another* person.

        This is what a stranger resembling an enrolled person would score, so a
        quantile of it is an open-set false-accept estimate.  Probes are a
        random sample of up to ``max_probes`` gallery rows; chunked matmuls keep
        memory flat for large galleries.
        """
        if self.people < 2:
            return np.zeros(0, np.float32)
        rng = np.random.default_rng(seed)
        idx = np.arange(self.size)
        if idx.size > max_probes:
            idx = np.sort(rng.choice(idx, max_probes, replace=False))
        out = np.empty(idx.size, np.float32)
        for start in range(0, idx.size, 256):
            chunk = idx[start:start + 256]
            sims = self.matrix[chunk] @ self.matrix.T
            sims[self.labels[chunk][:, None] == self.labels[None, :]] = -np.inf
            out[start:start + chunk.size] = sims.max(axis=1)
        return out

    def suggest_threshold(self, target_far: float = 0.001) -> float | None:
        """The threshold that accepts only ``target_far`` of impostor best-matches."""
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
