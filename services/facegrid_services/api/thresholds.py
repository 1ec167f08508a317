"""Threshold statistics: read the workers' acceptance grid and suggest a threshold.

The worker counts, for every candidate threshold ``t`` of a fixed grid, how
many events would be accepted at ``t`` (``keys.THRESHOLD_GRID``, a hash
``"0.45" -> count``).  That count falls as ``t`` rises; its drop between two
neighbouring thresholds is the number of best-match scores in that interval,
i.e. a histogram.  Scores of strangers pile up low and scores of enrolled
people high; the suggestion is the middle of the emptiest interval between
the two largest piles (the valley of a bimodal histogram).
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
    order = sorted(range(len(bins)), key=lambda i: bins[i][2], reverse=True)
    first = order[0]
    second = next((i for i in order[1:] if abs(i - first) > 1 and bins[i][2] > 0), None)
    if second is None:
        return None, "the scores form a single pile: no valley to put a threshold in"
    lo, hi = sorted((first, second))
    valley = min(range(lo + 1, hi), key=lambda i: (bins[i][2], abs(i - (lo + hi) / 2)))
    t = round((bins[valley][0] + bins[valley][1]) / 2, 4)
    return t, (f"middle of the emptiest score interval [{bins[valley][0]:g}, "
               f"{bins[valley][1]:g}) between the two largest piles of scores")
