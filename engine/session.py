"""One plugin session's state: what was heard (input by song position), the windows made and
where they are placed, the transport as last reported. Plain data; the transport state machine
(engine/transport_state.py), the planner, placement and the worker read and change it with the
scheduler's lock held."""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from engine.dsp import fit
from engine.input_budget import InputBudget
from engine.publisher import Publisher, WindowKind
from engine.sound import Sound
from engine.timeline import Grid, GridTracker, Segment

INPUT_KEEP_SECONDS = 180       # received input kept around the playhead, by song position
OFFLINE_DRIFT = 1.0            # samples: offline a window off the grid by more is remade or stretched
REALTIME_DRIFT_SECONDS = 0.005 # realtime: a window whose bar lines drift less is only moved (a ramp does not thrash)
EPOCH_STORM = 8                # epoch changes within a second that get a log line (a host jumping every block)
EPOCH_MASK = 0xFFFFFFFF


class InputStore:
    """Received input by song position (samples), in fixed chunks; never-heard audio reads as 0.

    Memory follows what was received, not where: the chunks kept are at least half filled on
    average (two chunks of slack), so 1-frame writes far apart cost a chunk or two, not a chunk
    each; chunks further than keep_frames from the latest write are dropped; and when the
    engine's InputBudget (engine/input_budget.py) needs room, the farthest from the latest go."""
    CHUNK = 8192

    def __init__(self, channels: int, keep_frames: int):
        self.channels = channels
        self.keep_chunks = keep_frames // self.CHUNK + 1
        self._chunks: dict[int, np.ndarray] = {}
        self._filled: dict[int, int] = {}     # chunk -> frames written into it (at most CHUNK)
        self._writes: dict[int, int] = {}     # chunk -> how often it was written (cache keys)
        self._total_filled = 0
        self._newest = 0
        self.budget: InputBudget | None = None    # set while the scheduler serves the session

    @property
    def nbytes(self) -> int:
        return len(self._chunks) * self.channels * self.CHUNK * 4

    def drop_farthest(self) -> None:
        self._drop(max(self._chunks, key=lambda i: abs(i - self._newest)))

    def _drop(self, index: int) -> None:
        chunk = self._chunks.pop(index)
        self._writes.pop(index, None)
        self._total_filled -= self._filled.pop(index)
        if self.budget is not None:
            self.budget.dropped(chunk.nbytes)

    def write(self, start: int, audio: np.ndarray) -> None:
        pos, end = start, start + audio.shape[1]
        while pos < end:
            index, offset = divmod(pos, self.CHUNK)
            n = min(self.CHUNK - offset, end - pos)
            chunk = self._chunks.get(index)
            if chunk is None:
                chunk = self._chunks[index] = np.zeros((self.channels, self.CHUNK), np.float32)
                self._filled[index] = 0
                self._newest = index
                if self.budget is not None:
                    self.budget.made(chunk.nbytes)
            chunk[:, offset:offset + n] = audio[:, pos - start:pos - start + n]
            self._writes[index] = self._writes.get(index, 0) + 1
            if index in self._filled:      # (the budget may have taken it back meanwhile)
                grown = min(self.CHUNK, self._filled[index] + n) - self._filled[index]
                self._filled[index] += grown
                self._total_filled += grown
            pos += n
        self._newest = (end - 1) // self.CHUNK
        for index in [i for i in self._chunks if abs(i - self._newest) > self.keep_chunks]:
            self._drop(index)
        while len(self._chunks) > 2 and len(self._chunks) * self.CHUNK > 2 * self._total_filled + 2 * self.CHUNK:
            self._drop(min((i for i in self._chunks if i != self._newest), key=self._filled.__getitem__))

    def version(self, start: int, frames: int) -> tuple:
        """Changes whenever anything in [start, start + frames) is written."""
        return tuple(self._writes.get(i, 0) for i in range(start // self.CHUNK, (start + frames - 1) // self.CHUNK + 1))

    def holds(self, start: int, frames: int) -> bool:
        """Whether anything received lies in [start, start + frames) (else it reads as silence)."""
        return any(i in self._chunks for i in range(start // self.CHUNK, (start + frames - 1) // self.CHUNK + 1))

    def read(self, start: int, frames: int) -> np.ndarray:
        out = np.zeros((self.channels, frames), np.float32)
        pos, end = start, start + frames
        while pos < end:
            index, offset = divmod(pos, self.CHUNK)
            n = min(self.CHUNK - offset, end - pos)
            chunk = self._chunks.get(index)
            if chunk is not None:
                out[:, pos - start:pos - start + n] = chunk[:, offset:offset + n]
            pos += n
        return out


@dataclass
class Window:
    """One window as made and as placed. audio[:, i] plays at `start + i`; the shim plays
    [start, start + frames); `entry` is where playback comes in (the loop start inside the
    first window after a wrap), where the seam crossfade goes. `made` says what the audio was
    made for: audio index i (as a sample of that grid) <-> song beat, so a window is addressed
    by musical position whatever the session's grid does later."""
    bar: int
    kind: WindowKind
    audio: np.ndarray         # generator output: the window and its continuation (seam source)
    made: Grid                # audio index <-> beat (one tempo; a stand-in follows the grid it was made for)
    start: int = 0
    frames: int = 0
    entry: int = 0
    window_id: int = 0
    grid: int = 0             # the transport grid sequence this audio is right for (acknowledged in its slots)
    stale: bool = False       # placed for a grid it was not made for: a stand-in until stretched or remade
    stretched_at: float = -math.inf   # wall time of its last stretch (realtime stretches are rate-limited)
    shaped: np.ndarray | None = None  # audio through the session's Sound (FX, gain), as published; None: audio
    in_slots: np.ndarray | None = None    # what its slots hold now (seams baked in)

    @property
    def tempo(self) -> float:
        """The tempo its audio ends at (what slots and logs report)."""
        return self.made.tempo_bpm

    @property
    def meter(self) -> tuple[int, int]:
        return self.made.tsig_num, self.made.tsig_den

    def drift(self, grid: Grid, start: int, frames: int, from_sample: int) -> float:
        """Samples by which this audio, placed at [start, start + frames), is off the grid's bar
        lines where it has yet to play (from from_sample on): the larger error of its two ends,
        infinite when the meter differs."""
        if self.meter != (grid.tsig_num, grid.tsig_den):
            return math.inf
        if self.kind is WindowKind.PREROLL:
            return 0.0          # silence is right for any grid
        points = (max(from_sample, start), start + frames)
        return max(abs(self.made.sample_at_beat(grid.beat_at_sample(x)) - (x - start)) for x in points)

    def continuation(self, seam: int) -> np.ndarray:
        """What this window would have played after its end (the next window fades in from it)."""
        return fit(self.published_audio, self.frames + seam)[:, self.frames:]

    @property
    def published_audio(self) -> np.ndarray:
        """What plays: the generator's audio through the preset's FX and gain (context reads `audio`,
        so effects never feed back into generation)."""
        return self.audio if self.shaped is None else self.shaped


def made_for(grid: Grid, bar: int, tempo: float, meter: tuple[int, int]) -> Grid:
    """The `made` map of audio generated for bar `bar` of `grid` at one tempo: index 0 is the bar line."""
    return Grid(grid.sample_rate, (Segment(0, grid.bar_start_beat(bar), tempo),),
                (replace(grid.meter, tsig_num=meter[0], tsig_den=meter[1]),))


@dataclass(frozen=True)
class Target:
    """Where a window must be: epoch, first bar, placement and the wall time it starts playing."""
    epoch: int
    bar: int
    start: int
    frames: int
    entry: int
    deadline: float


@dataclass
class Session:
    instance: int
    sample_rate: int
    channels: int
    store: Publisher
    params: dict[str, float | str]            # by parameter name; enum parameters by value name
    tempo_range: tuple[float, float]          # host tempos accepted (others keep the last good one)
    grid_seq: int = 0             # the shim's grid sequence of the last transport applied
    changed_at: int = 0           # song sample of the transport that last changed the grid
    offline: bool = False
    tracker: GridTracker | None = None
    grid: Grid | None = None
    epoch: int | None = None      # None until the first transport
    epoch_start: int = 0          # song position where the current epoch began
    playing: bool = False
    playhead: int = 0
    playhead_wall: float = 0.0
    loop: tuple[float, float] | None = None   # active loop (start, end) in beats
    loop_inferred: bool = False   # the loop is a jump back the host made without loop points (not announced)
    post_wrap: bool = False       # this epoch began with a jump back into the loop (a wrap)
    history: dict = field(default_factory=dict)   # bar -> window of the passes before this one (after a wrap)
    heard_from: float = math.inf  # first song sample any input was received for
    inputs: dict[str, InputStore] = field(default_factory=dict)   # "input" (main), "sidechain" -> what it played
    context_in_use: str = "main"  # source of the latest window's context (engine/context_source.py)
    input_end: dict[int, int] = field(default_factory=dict)   # epoch -> end sample of received input
    windows: dict[int, Window] = field(default_factory=dict)  # bar -> window of the current epoch
    ahead: dict[int, Window] = field(default_factory=dict)    # bar -> window of the next epoch (after a loop wrap)
    in_flight: set[tuple[int, int]] = field(default_factory=set)  # (epoch, bar)
    held: deque = field(default_factory=deque)    # offline: what arrived after a grid change that waits (engine/scheduler.py)
    held_since: float | None = None   # when that grid change began to wait
    version: int = 0              # bumped when the timeline restarts: in-flight results are dropped
    in_loop: bool = False         # the playhead is inside the active loop
    problem: tuple[str, str] | None = None    # (kind, message) of the last problem reported
    blocked_until: float = 0.0    # store full or generator failed: retry after this time
    published: int = 0
    late: int = 0                 # windows published after the playhead reached them (not counting starts/seeks)
    underruns: int = 0
    closed: bool = False
    epoch_changes: deque = field(default_factory=lambda: deque(maxlen=EPOCH_STORM))
    warned: dict[str, float] = field(default_factory=dict)    # kind -> when last logged
    sound: Sound = field(default_factory=Sound)               # a preset's steps, FX chain and gain
    brought: dict = field(default_factory=dict)   # context bars already brought to a bar length (worker's cache)
    memory: tuple | None = None   # engine/context.py track_memory's scan: (key, horizon, bars found)

    def __post_init__(self):
        self.tracker = GridTracker(self.sample_rate, float(self.params["tempo_bpm"]), self.tempo_range)
        keep = INPUT_KEEP_SECONDS * self.sample_rate
        self.inputs = {"input": InputStore(self.channels, keep), "sidechain": InputStore(self.channels, keep)}

    @property
    def input(self) -> InputStore:
        return self.inputs["input"]

    def drift_tolerance(self) -> float:
        """Samples a window may be off the grid and still count as made for it."""
        return OFFLINE_DRIFT if self.offline else REALTIME_DRIFT_SECONDS * self.sample_rate

    def setting(self, name: str) -> int:
        return int(self.params[name])

    @property
    def generator_name(self) -> str:
        return str(self.params["generator"])

    @property
    def next_epoch(self) -> int:
        return (self.epoch + 1) & EPOCH_MASK

    def table(self, epoch: int) -> dict[int, Window] | None:
        """The windows of `epoch` if it is the current or the predicted next one."""
        if epoch == self.epoch:
            return self.windows
        if self.loop is not None and epoch == self.next_epoch:
            return self.ahead
        return None

    def heard_at(self, epoch: int, bar: int) -> int:
        """The song bar whose audio played `bar`'s part in the context of a window of `epoch`.
        In a pass after a loop wrap, bars before the loop start that were never heard (before
        the song start, or before playback began) are the bars that played before the wrap:
        the end of the loop, so a loop from the song start is not silent preroll every pass.
        Otherwise the bar itself (the context is by song position)."""
        if self.loop is None or not (epoch != self.epoch or self.post_wrap):
            return bar
        grid = self.grid
        first = grid.bar_at_sample(grid.sample_at_beat(self.loop[0]))
        length = grid.bar_at_sample(grid.sample_at_beat(self.loop[1]) - 1) + 1 - first
        while bar < first and length > 0 and (grid.bar_start_beat(bar) < 0 or grid.bar_start_sample(bar) < self.heard_from):
            bar += length
        return bar

    def loop_samples(self) -> tuple[int, int] | None:
        """The loop (start, end) in samples while the playhead is inside it."""
        if self.loop is None:
            return None
        start, end = (self.grid.sample_at_beat(b) for b in self.loop)
        return (start, end) if start <= self.playhead < end else None


def warn_rarely(session: Session, kind: str, now: float, log, text: str, *args) -> None:
    """One log line per kind of host trouble per session every 5 s, not one per block."""
    if now - session.warned.get(kind, -math.inf) >= 5.0:
        session.warned[kind] = now
        log.warning("session %016x: " + text, session.instance, *args)
