"""A session's timeline: the host's tempo map and meters, as the host reported them.

A Grid is an immutable snapshot: tempo segments in song position (each a sample, the beat
there, and a constant tempo from there on), and meters (where each meter's bar counting
starts). Every sample position is computed from its segment's start in one step (never by
adding bar lengths), so boundaries stay exact to +-1 sample at any tempo and song length. Bars
are numbered on the current meter: bar n starts at beat bar_phase + n * bar_beats; bars
before the current meter began keep the bar lines of the meter they were heard in
(bar_span_beats), so context is cut where it was played.

GridTracker turns a stream of transport snapshots into Grids (docs/scheduling.md, "Tempo
map"): a position within one host tick (TICK_BEATS) of where the map expects it is the same
grid; a tempo change starts a segment where the host's (quantized) position says it happened.
"""
from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass, field, replace

log = logging.getLogger("livediff.timeline")
MAX_TSIG_NUM = 64
TSIG_DENOMINATORS = (1, 2, 4, 8, 16, 32)
TICK_BEATS = 1 / 960          # one host tick (qtractor's resolution; Ardour's 1/1920 is inside it)
STEP_WIDTH_BEATS = 0.25       # a change the position pins to within this is a step, snapped to a line
KEEP_SECONDS = 180            # tempo history kept behind the newest position (as far as context reaches)
_EPS_BEATS = 1e-9


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


@dataclass(frozen=True)
class Segment:
    """From song sample `sample` (at beat `beat`) on, the tempo is `tempo` BPM."""
    sample: int
    beat: float
    tempo: float


@dataclass(frozen=True)
class Meter:
    """Bars of tsig_num/tsig_den counted from beat `beat` on; bar 0 of its count starts at
    bar_phase (in [0, bar_beats))."""
    beat: float
    tsig_num: int
    tsig_den: int
    bar_phase: float = 0.0

    @property
    def bar_beats(self) -> float:
        return self.tsig_num * 4 / self.tsig_den


@dataclass(frozen=True)
class Grid:
    sample_rate: int
    segments: tuple[Segment, ...]      # by sample (and beat), the first extends backwards, the last forwards
    meters: tuple[Meter, ...]          # by beat; the last is the current one
    _samples: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _beats: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_samples", tuple(s.sample for s in self.segments))
        object.__setattr__(self, "_beats", tuple(s.beat for s in self.segments))

    @classmethod
    def constant(cls, sample_rate: int, tempo_bpm: float, tsig_num: int, tsig_den: int, anchor_sample: int,
                 anchor_beat: float, bar_phase: float = 0.0) -> "Grid":
        """One tempo and one meter through (anchor_sample, anchor_beat)."""
        return cls(sample_rate, (Segment(anchor_sample, anchor_beat, tempo_bpm),),
                   (Meter(-math.inf, tsig_num, tsig_den, bar_phase),))

    # --- the current (newest) tempo and meter ----------------------------------------------
    @property
    def tempo_bpm(self) -> float:
        return self.segments[-1].tempo

    @property
    def anchor_sample(self) -> int:
        return self.segments[-1].sample

    @property
    def anchor_beat(self) -> float:
        return self.segments[-1].beat

    @property
    def meter(self) -> Meter:
        return self.meters[-1]

    @property
    def tsig_num(self) -> int:
        return self.meter.tsig_num

    @property
    def tsig_den(self) -> int:
        return self.meter.tsig_den

    @property
    def bar_phase(self) -> float:
        return self.meter.bar_phase

    @property
    def bar_beats(self) -> float:
        return self.meter.bar_beats

    @property
    def samples_per_beat(self) -> float:
        return self.sample_rate * 60.0 / self.tempo_bpm

    # --- beats <-> samples ---------------------------------------------------------------------
    def segment_at_sample(self, sample: float) -> Segment:
        return self.segments[max(0, bisect.bisect_right(self._samples, sample) - 1)]

    def segment_at_beat(self, beat: float) -> Segment:
        return self.segments[max(0, bisect.bisect_right(self._beats, beat + _EPS_BEATS) - 1)]

    def sample_at_beat(self, beat: float) -> int:
        seg = self.segment_at_beat(beat)
        return seg.sample + round_half_up((beat - seg.beat) * self.sample_rate * 60.0 / seg.tempo)

    def beat_at_sample(self, sample: float) -> float:
        seg = self.segment_at_sample(sample)
        return seg.beat + (sample - seg.sample) * seg.tempo / 60.0 / self.sample_rate

    def tempo_at_sample(self, sample: float) -> float:
        return self.segment_at_sample(sample).tempo

    def uniform(self, start: int, end: int) -> bool:
        """One tempo over [start, end)."""
        return self.segment_at_sample(start) is self.segment_at_sample(end - 1)

    # --- bars ---------------------------------------------------------------------------------
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

    def bar_span_beats(self, bar: int) -> tuple[float, float]:
        """[start, end) in beats of bar `bar` of the current count, where bars before the current
        meter began are the bars of the meter they were played in (counted back from its start)."""
        start = self.bar_start_beat(bar)
        if start >= self.meter.beat - _EPS_BEATS or len(self.meters) == 1:
            return start, start + self.bar_beats
        back = round((self.meter.beat - start) / self.bar_beats)   # bars before the current meter began
        line = self.meter.beat
        for older, newer in zip(reversed(self.meters[:-1]), reversed(self.meters)):
            bars_here = math.inf if older is self.meters[0] else max(0, round((newer.beat - older.beat) / older.bar_beats))
            steps = min(back, bars_here)
            if back <= bars_here:
                end = line - (steps - 1) * older.bar_beats
                return end - older.bar_beats, end
            back -= steps
            line -= steps * older.bar_beats
        raise AssertionError("unreachable: the first meter extends backwards")

    def same_grid(self, other: "Grid | None") -> bool:
        return other is not None and other.sample_rate == self.sample_rate and other.segments == self.segments \
            and other.meters == self.meters


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


def _lines_in(low: float, high: float, phase: float, step: float) -> list[float]:
    first = math.ceil((low - phase) / step - 1e-9)
    return [phase + n * step for n in range(first, math.floor((high - phase) / step + 1e-9) + 1)]


def change_point(grid: Grid, pos_samples: int, pos_beats: float, tempo: float) -> tuple[int, float]:
    """(sample, beat) where a tempo change reported at the block starting at pos_samples took
    effect. Hosts report a change at the first block after it (a bar line inside a block is
    heard late) with the position quantized to ticks: the change lies where the old map,
    continued at the new tempo, reaches the reported position within a tick. That range is
    a few ticks wide for a step; a bar line, beat or 16th inside it is taken (the host's own
    marker, exactly); a wide range (a ramp: neighbouring tempos) takes the block start."""
    old = grid.segment_at_sample(pos_samples)
    at_pos = grid.beat_at_sample(pos_samples)
    if abs(at_pos - pos_beats) <= TICK_BEATS:
        return pos_samples, at_pos
    k1, k2 = old.tempo / 60.0 / grid.sample_rate, tempo / 60.0 / grid.sample_rate
    # reported beat as a function of the change beat B: B + (pos - S_old(B)) * k2, linear in B
    slope, offset = 1 - k2 / k1, (pos_samples - old.sample + old.beat / k1) * k2
    exact = (pos_beats - offset) / slope
    low, high = sorted(((pos_beats - TICK_BEATS - offset) / slope, (pos_beats + TICK_BEATS - offset) / slope))
    low, high = max(low, old.beat), min(high, at_pos)
    if low > high:
        return pos_samples, pos_beats    # no change inside the old segment explains it: a jump
    beat = high
    if high - low <= STEP_WIDTH_BEATS:
        beat = min(max(exact, low), high)
        for phase, step in ((grid.bar_phase, grid.bar_beats), (0.0, 1.0), (0.0, 0.25)):
            lines = _lines_in(low, high, phase % step, step)
            if lines:
                beat = min(lines, key=lambda b: abs(b - exact))
                break
    return grid.sample_at_beat(beat), beat


class GridTracker:
    """Turns a stream of transport snapshots into Grids, keeping the last good tempo and time
    signature when a host sends garbage (one log line per distinct problem, not one per block),
    and keeping the grid while new snapshots agree with it within a tick (so quantized host
    positions never move a bar line, and windows made ahead survive a loop wrap).

    A time-signature change takes effect at the previous grid's next bar line (the running bar
    keeps its meter); the new meter counts from there until the next discontinuity, whatever
    phase the host reports meanwhile. Bar phase comes from the host's bar position (when it is
    plausible) at the start of each epoch."""

    def __init__(self, sample_rate: int, fallback_tempo: float, tempo_range: tuple[float, float]):
        self.sample_rate = sample_rate
        self.tempo_range = tempo_range
        self.tempo = fallback_tempo
        self.tsig = (4, 4)
        self.grid: Grid | None = None
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
        previous = self.grid
        segments = self._segments(previous, pos_samples, pos_beats, reanchor)
        meters = self._meters(previous, segments, pos_samples, pos_beats, bar_start_beats, reanchor)
        if previous is not None and segments == previous.segments and meters == previous.meters:
            return previous
        self.grid = Grid(self.sample_rate, segments, meters)
        return self.grid

    def _segments(self, grid: Grid | None, pos: int, beats: float, reanchor: bool) -> tuple[Segment, ...]:
        k = self.tempo / 60.0 / self.sample_rate
        if grid is not None and grid.tempo_at_sample(pos) == self.tempo \
                and abs(grid.beat_at_sample(pos) - beats) <= TICK_BEATS:
            return grid.segments            # the same grid (also a wrap or a seek into the known map)
        if grid is None or reanchor or grid.tempo_at_sample(pos) == self.tempo:
            # a new start or a jump: the song's own origin (beat 0 at sample 0) when it agrees
            start = Segment(pos, pos * k if abs(pos * k - beats) <= TICK_BEATS else beats, self.tempo)
            if grid is not None and not reanchor:
                log.info("position moved by %.4g beats at sample %d (not a tempo change); bar lines follow it",
                         beats - grid.beat_at_sample(pos), pos)
        else:
            sample, beat = change_point(grid, pos, beats, self.tempo)
            start = Segment(sample, beat, self.tempo)
            before = grid.tempo_at_sample(pos)
            log.log(logging.INFO if abs(self.tempo / before - 1) >= 0.01 else logging.DEBUG,  # a ramp: every block
                    "tempo %.6g -> %.6g BPM from beat %.6g (sample %d)", before, self.tempo, beat, sample)
        kept = () if grid is None else tuple(s for s in grid.segments if s.sample < start.sample and s.beat < start.beat)
        oldest = start.sample - KEEP_SECONDS * self.sample_rate
        while len(kept) > 1 and kept[1].sample <= oldest:
            kept = kept[1:]
        return kept + (start,)

    def _meters(self, grid: Grid | None, segments: tuple[Segment, ...], pos: int, beats: float,
                bar_start_beats: float, reanchor: bool) -> tuple[Meter, ...]:
        num, den = self.tsig
        bar_beats = num * 4 / den
        if grid is not None and (grid.tsig_num, grid.tsig_den) != self.tsig:
            bar = grid.bar_at_sample(pos)
            line = grid.bar_start_beat(bar if grid.bar_start_sample(bar) == pos else bar + 1)
            log.info("time signature %d/%d from beat %.6g (the next bar line)", num, den, line)
            return grid.meters[-3:] + (Meter(line, num, den, line % bar_beats),)
        if grid is not None and not reanchor:
            return grid.meters
        if not (math.isfinite(bar_start_beats)
                and bar_start_beats - _EPS_BEATS <= beats < bar_start_beats + bar_beats - _EPS_BEATS):
            # Hosts report wrong bar positions (e.g. 1-based bars); derive bar lines from beat 0.
            bar_start_beats = 0.0
        phase = bar_start_beats % bar_beats
        if grid is None:
            return (Meter(-math.inf, num, den, phase),)
        if abs(grid.bar_phase - phase) < 1e-6:
            return grid.meters
        return grid.meters[:-1] + (replace(grid.meter, bar_phase=phase),)
