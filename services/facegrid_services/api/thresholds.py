"""Threshold statistics: read the workers' acceptance grid and suggest a threshold.

The worker counts, for every candidate threshold ``t`` of a fixed grid, how
many events would be accepted at ``t`` (``keys.THRESHOLD_GRID``, a hash
``"0.45" -> count``).  That count falls as ``t`` rises; its drop between two
neighbouring thresholds is the number of best-match scores in that interval,
i.e. a histogram.  Scores of strangers pile up low and scores of enrolled
people high; the suggestion is the middle of the emptiest interval between
the two piles (Otsu's split of the histogram, then its valley).
"""

from __future__ import annotations

import math

import redis

from facegrid import keys

#: Below this many events the histogram is noise: no suggestion.
MIN_EVENTS = 30


def read_grid(r: redis.Redis) -> list[tuple[float, int]]:
    """(threshold, accepted) sorted by threshold; unreadable entries are skipped."""
    grid: list[tuple[float, int]] = []
    for k, v in r.hgetall(keys.THRESHOLD_GRID).items():
        try:
            t, n = float(k), int(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(t) and n >= 0:
            grid.append((t, n))
    grid.sort()
    return grid


def suggest(grid: list[tuple[float, int]]) -> tuple[float | None, str]:
    """A threshold between the strangers' and the enrolled people's scores, and why."""
    if len(grid) < 3:
        return None, "the threshold grid has fewer than 3 points"
    events = grid[0][1]
    if events < MIN_EVENTS:
        return None, f"only {events} events counted; need {MIN_EVENTS}"
    # Scores in [t_i, t_{i+1}): accepted(t_i) - accepted(t_{i+1}).
    bins = [(grid[i][0], grid[i + 1][0], max(0, grid[i][1] - grid[i + 1][1]))
            for i in range(len(grid) - 1)]
    counts = [b[2] for b in bins]
    centres = [(b[0] + b[1]) / 2 for b in bins]
    # Otsu: the split that best separates the histogram into two classes.
    best_k, best_var = None, 0.0
    for k in range(1, len(bins)):
        w0, w1 = sum(counts[:k]), sum(counts[k:])
        if not w0 or not w1:
            continue
        mu0 = sum(c * n for c, n in zip(centres[:k], counts[:k], strict=True)) / w0
        mu1 = sum(c * n for c, n in zip(centres[k:], counts[k:], strict=True)) / w1
        var = w0 * w1 * (mu0 - mu1) ** 2
        if var > best_var:
            best_k, best_var = k, var
    if best_k is None:
        return None, "the scores form a single pile: no valley to put a threshold in"
    lo = max(range(best_k), key=lambda i: counts[i])
    hi = max(range(best_k, len(bins)), key=lambda i: counts[i])
    between = range(lo + 1, hi)
    if not between:
        return None, "the scores form a single pile: no valley to put a threshold in"
    valley = min(between, key=lambda i: (counts[i], abs(i - (lo + hi) / 2)))
    if counts[valley] > 0.5 * min(counts[lo], counts[hi]):
        return None, "the scores form a single pile: no valley to put a threshold in"
    t = round((bins[valley][0] + bins[valley][1]) / 2, 4)
    return t, (f"middle of the emptiest score interval [{bins[valley][0]:g}, "
               f"{bins[valley][1]:g}) between the strangers' and the enrolled people's "
               "scores (Otsu split)")
