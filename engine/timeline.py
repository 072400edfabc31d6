"""Bar-grid math from a transport snapshot.

A Grid is anchored at one transport point (sample, quarter-note beat) at a constant tempo.
Every sample position is computed from that anchor in one step (never by adding bar
lengths), so boundaries stay exact to +-1 sample at any tempo and song length.
Bars are numbered on the host grid: bar n starts at beat bar_phase + n * bar_beats.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

log = logging.getLogger("livediff.timeline")
MAX_TSIG_NUM = 64
TSIG_DENOMINATORS = (1, 2, 4, 8, 16, 32)
_EPS_BEATS = 1e-9


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


@dataclass(frozen=True)
class Grid:
    sample_rate: int
    tempo_bpm: float
    tsig_num: int
    tsig_den: int
    anchor_sample: int
    anchor_beat: float
    bar_phase: float = 0.0  # quarter-note position of bar 0's start, in [0, bar_beats)

    @property
    def bar_beats(self) -> float:
        return self.tsig_num * 4 / self.tsig_den

    @property
    def samples_per_beat(self) -> float:
        return self.sample_rate * 60.0 / self.tempo_bpm

    def sample_at_beat(self, beat: float) -> int:
        return self.anchor_sample + round_half_up((beat - self.anchor_beat) * self.samples_per_beat)

    def beat_at_sample(self, sample: int) -> float:
        return self.anchor_beat + (sample - self.anchor_sample) / self.samples_per_beat

    def bar_start_beat(self, bar: int) -> float:
        return self.bar_phase + bar * self.bar_beats

    def bar_start_sample(self, bar: int) -> int:
        return self.sample_at_beat(self.bar_start_beat(bar))

    def bar_at_sample(self, sample: int) -> int:
        """The bar containing `sample`, consistent with the rounded bar_start_sample lines."""
        bar = math.floor((self.beat_at_sample(sample) - self.bar_phase) / self.bar_beats)
        while self.bar_start_sample(bar + 1) <= sample:
            bar += 1
        while self.bar_start_sample(bar) > sample:
            bar -= 1
        return bar

    def bar_lines(self, first_bar: int, last_bar: int) -> list[int]:
        return [self.bar_start_sample(bar) for bar in range(first_bar, last_bar + 1)]

    def same_grid(self, other: "Grid | None") -> bool:
        """Same tempo, signature and bar lines (anchors may differ but must agree)."""
        return (other is not None and other.sample_rate == self.sample_rate
                and other.tempo_bpm == self.tempo_bpm and other.tsig_num == self.tsig_num
                and other.tsig_den == self.tsig_den and abs(other.bar_phase - self.bar_phase) < 1e-6
                and abs(self.sample_at_beat(other.anchor_beat) - other.anchor_sample) <= 1)


def window_bar(bar: int, window_bars: int) -> int:
    """First bar of the window containing `bar`: windows tile the grid from bar 0."""
    return bar - bar % window_bars


def horizon_bar(bar: int, lookahead: int, window_bars: int) -> int:
    """The context horizon of window `bar`: h = b - (lookahead - 1) * window_bars."""
    return bar - (lookahead - 1) * window_bars


def tempo_problem(tempo: float, tempo_range: tuple[float, float]) -> str | None:
    low, high = tempo_range
    if not math.isfinite(tempo) or not low <= tempo <= high:
        return f"tempo {tempo!r} BPM ignored; allowed: {low}..{high} BPM"
    return None


def tsig_problem(num: int, den: int) -> str | None:
    if not 1 <= num <= MAX_TSIG_NUM or den not in TSIG_DENOMINATORS:
        return (f"time signature {num}/{den} ignored; allowed: numerator 1..{MAX_TSIG_NUM}, "
                f"denominator one of {', '.join(map(str, TSIG_DENOMINATORS))}")
    return None


class GridTracker:
    """Turns a stream of transport snapshots into a Grid, keeping the last good tempo and
    time signature when a host sends garbage (one log line per distinct problem, not one per
    block), and keeping the grid while new snapshots agree with it (so bar lines do not wobble
    by a sample from block to block, and windows made ahead survive a loop wrap).

    A time-signature change takes effect at the previous grid's next bar line (the running bar
    keeps its meter); the new meter counts from there until the next discontinuity, whatever
    phase the host reports meanwhile."""

    def __init__(self, sample_rate: int, fallback_tempo: float, tempo_range: tuple[float, float]):
        self.sample_rate = sample_rate
        self.tempo_range = tempo_range
        self.tempo = fallback_tempo
        self.tsig = (4, 4)
        self.grid: Grid | None = None
        self._meter_line: float | None = None   # beat where the last meter change took effect
        self._reported: dict[str, str] = {}     # kind -> last problem logged

    def _report(self, kind: str, problem: str | None, keeping: str) -> bool:
        """Log a problem once while it lasts; True if the value must be ignored."""
        if problem is None:
            self._reported.pop(kind, None)
            return False
        if self._reported.get(kind) != problem:
            self._reported[kind] = problem
            log.warning("%s; keeping %s", problem, keeping)
        return True

    def update(self, *, tempo: float, tsig_num: int, tsig_den: int, pos_samples: int, pos_beats: float,
               bar_start_beats: float, tempo_valid: bool = True, tsig_valid: bool = True,
               reanchor: bool = False) -> Grid:
        """Feed one snapshot (reanchor: it starts a new epoch); returns the current grid (the
        same object if nothing changed)."""
        if tempo_valid and not self._report("tempo", tempo_problem(tempo, self.tempo_range), f"{self.tempo:.6g} BPM"):
            self.tempo = tempo
        if tsig_valid and not self._report("tsig", tsig_problem(tsig_num, tsig_den), "%d/%d" % self.tsig):
            self.tsig = (tsig_num, tsig_den)
        if self._report("position", None if math.isfinite(pos_beats) else
                        f"position {pos_beats!r} beats ignored", "the previous grid"):
            pos_beats = self.grid.beat_at_sample(pos_samples) if self.grid else 0.0
        bar_beats = self.tsig[0] * 4 / self.tsig[1]
        previous = self.grid
        if previous is not None and (previous.tsig_num, previous.tsig_den) != self.tsig:
            bar = previous.bar_at_sample(pos_samples)
            on_line = previous.bar_start_sample(bar) == pos_samples
            self._meter_line = previous.bar_start_beat(bar if on_line else bar + 1)
            log.info("time signature %d/%d from beat %.6g (the next bar line)", *self.tsig, self._meter_line)
        elif reanchor:
            self._meter_line = None
        if self._meter_line is not None:
            bar_start_beats = self._meter_line
        elif not (math.isfinite(bar_start_beats)
                  and bar_start_beats - _EPS_BEATS <= pos_beats < bar_start_beats + bar_beats - _EPS_BEATS):
            # Hosts report wrong bar positions (e.g. 1-based bars); derive bar lines from beat 0.
            bar_start_beats = 0.0
        candidate = Grid(self.sample_rate, self.tempo, self.tsig[0], self.tsig[1], pos_samples, pos_beats,
                         bar_start_beats % bar_beats)
        if not candidate.same_grid(self.grid):
            self.grid = candidate
        return self.grid
