"""Timing with time.perf_counter: medians and spread, and A/B pairs run alternately."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    """A sample of durations in seconds: its median and spread (quartiles, extremes)."""

    median: float
    p25: float
    p75: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Stats:
        ordered = sorted(samples)
        if len(ordered) == 1:
            only = ordered[0]
            return cls(only, only, only, only, only, 1)
        p25, _, p75 = statistics.quantiles(ordered, n=4, method="inclusive")
        return cls(statistics.median(ordered), p25, p75, ordered[0], ordered[-1], len(ordered))

    def summary(self, scale: float = 1000.0, digits: int = 2) -> dict:
        """The figures scaled (to milliseconds by default), for results.json."""
        return {
            "median": round(self.median * scale, digits), "p25": round(self.p25 * scale, digits),
            "p75": round(self.p75 * scale, digits), "min": round(self.low * scale, digits),
            "max": round(self.high * scale, digits), "n": self.n,
        }  # fmt: skip


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def time_calls(fn: Callable[[], object], *, repeat: int, warmup: int = 1) -> Stats:
    """Call ``fn`` ``warmup`` times untimed, then ``repeat`` times timed."""
    for _ in range(warmup):
        fn()
    return Stats.of([timed(fn) for _ in range(repeat)])


def time_pairs(
    a: Callable[[], object], b: Callable[[], object], *, pairs: int, warmup: int = 1
) -> tuple[Stats, Stats]:
    """Time ``a`` and ``b`` alternately (ABBA order), so drift in machine load hits both alike."""
    for _ in range(warmup):
        a()
        b()
    times_a, times_b = [], []
    for i in range(pairs):
        if i % 2 == 0:
            times_a.append(timed(a))
            times_b.append(timed(b))
        else:
            times_b.append(timed(b))
            times_a.append(timed(a))
    return Stats.of(times_a), Stats.of(times_b)
