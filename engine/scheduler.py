"""Which windows to generate, in what order, from what context; one worker thread runs them.

Per session the scheduler keeps the playhead's window and `lookahead` windows after it
generated (or in flight): up to the loop end and, with an active loop, on from the loop start
in the next epoch (the shim bumps the epoch by exactly one per wrap). All sessions share one
earliest-deadline-first queue served by a single worker thread, so the socket thread only
records what arrived and never waits for a model. docs/scheduling.md explains the rules:
context horizon, deadlines from a measured generation-time estimate, tempo changes (re-placed,
time-stretched stand-ins, regenerated), meters, loops, seeks and priorities.

Threads: the socket thread calls add/remove/on_* ([main-thread] of the server); the worker
thread runs _serve(). Both hold `_cond` while touching session state; generating and
time-stretching run with the lock released.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bridge.layout import const, enum_members
from bridge.protocol import PARAM_NAME, Audio, Transport, default_params
from bridge.shm import StoreFull, TimelineStore
from engine.generator import Generator, WindowRequest
from engine.timeline import Grid, GridTracker, horizon_bar, window_bar

log = logging.getLogger("livediff.scheduler")

GENERATOR_NAMES = {value: name[len("LD_GENERATOR_"):].lower() for name, value in enum_members("ld_generator").items()}
SEAM_SECONDS = const("LD_SEAM_MS") / 1000   # seam crossfade length (Magenta RT uses 40 ms); the shim matches it
INPUT_KEEP_SECONDS = 180       # received input kept around the playhead, by song position
TEMPO_TOLERANCE = 0.015        # audio made within 1.5 % of the grid's tempo is re-placed, not remade
ESTIMATE_SAFETY = 1.5          # a job is due `ESTIMATE_SAFETY * estimate + ESTIMATE_MARGIN` before its deadline
ESTIMATE_MARGIN = 0.02
FIRST_ESTIMATE = 0.25          # generation-time guess (s) before anything was measured
EPOCH_STORM = 8                # epoch changes within a second that get a log line (a host jumping every block)
_MASK64 = (1 << 64) - 1
_EPOCH_MASK = 0xFFFFFFFF


# --- small pure functions -----------------------------------------------------------------

def window_seed(session_seed: int, bar: int) -> int:
    """splitmix64 of (session seed, bar index): a window's seed depends on where it is, not on
    when or in what order it was generated."""
    x = ((((session_seed & 0xFFFFFFFF) << 32) | (bar & 0xFFFFFFFF)) + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) & 0x7FFFFFFF


def equal_power_crossfade(previous_tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Fade from the previous window's continuation into this window's first frames:
    gains cos/sin of a quarter turn, so uncorrelated material keeps its power."""
    n = min(previous_tail.shape[1], head.shape[1])
    turn = np.arange(n, dtype=np.float64) / n * (math.pi / 2)
    out = head.copy()
    out[:, :n] = (previous_tail[:, :n] * np.cos(turn) + head[:, :n] * np.sin(turn)).astype(np.float32)
    return out


def fit(audio: np.ndarray, frames: int) -> np.ndarray:
    """`frames` frames of audio: cut, or continued by repeating it from its start."""
    if audio.shape[1] >= frames:
        return audio[:, :frames]
    return np.pad(audio, ((0, 0), (0, frames - audio.shape[1])), mode="wrap")


def context_sources(bar: int, horizon: int, context_bars: int, has_generated: Callable[[int], bool]) -> list[tuple[int, str]]:
    """(bar, "input" | "generated") for each context bar of window `bar`.

    Bars before the horizon come from input, bars from the horizon on from generated windows;
    when one of those was never generated (right after start or a seek) the context is instead
    the context_bars bars of input ending at the horizon."""
    bars = range(bar - context_bars, bar)
    if all(b < horizon or has_generated(b) for b in bars):
        return [(b, "input" if b < horizon else "generated") for b in bars]
    return [(b, "input") for b in range(horizon - context_bars, horizon)]


class InputStore:
    """Received input by song position (samples), in fixed chunks; never-heard audio reads as 0."""
    CHUNK = 8192

    def __init__(self, channels: int, keep_frames: int):
        self.channels = channels
        self.keep_chunks = keep_frames // self.CHUNK + 1
        self._chunks: dict[int, np.ndarray] = {}

    def write(self, start: int, audio: np.ndarray) -> None:
        pos, end = start, start + audio.shape[1]
        while pos < end:
            index, offset = divmod(pos, self.CHUNK)
            n = min(self.CHUNK - offset, end - pos)
            chunk = self._chunks.get(index)
            if chunk is None:
                chunk = self._chunks[index] = np.zeros((self.channels, self.CHUNK), np.float32)
            chunk[:, offset:offset + n] = audio[:, pos - start:pos - start + n]
            pos += n
        newest = (end - 1) // self.CHUNK
        for index in [i for i in self._chunks if abs(i - newest) > self.keep_chunks]:
            del self._chunks[index]

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


class Estimates:
    """Measured seconds per job, by (kind, generator or rate, window bars): an exponentially
    weighted moving average, so start times follow what the machine actually delivers."""

    def __init__(self, alpha: float = 0.2):
        self.alpha = alpha
        self._seconds: dict[tuple, float] = {}

    def seconds(self, key: tuple) -> float:
        return self._seconds.get(key, FIRST_ESTIMATE)

    def measured(self, key: tuple) -> float | None:
        return self._seconds.get(key)

    def budget(self, key: tuple) -> float:
        """How long before a deadline the job must start to make it with margin."""
        return ESTIMATE_SAFETY * self.seconds(key) + ESTIMATE_MARGIN

    def add(self, key: tuple, seconds: float) -> None:
        old = self._seconds.get(key)
        self._seconds[key] = seconds if old is None else old + self.alpha * (seconds - old)


# --- generators ---------------------------------------------------------------------------

class GeneratorUnavailable(RuntimeError):
    pass


class GeneratorPool:
    """Generators by name, each loaded once on a loader thread of its own (a slow model load must
    not stall the other sessions' windows). A failed load is remembered with its reason and
    reported, never replaced by another generator. [any-thread]"""

    def __init__(self):
        self._loaded: dict[str, Generator] = {}
        self._failed: dict[str, str] = {}
        self._loading: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def ready(self, name: str, on_done: Callable[[str, str | None], None]) -> bool:
        """True once `name` is loaded or failed; otherwise start loading it (once) and call
        on_done(name, failure or None) from the loader thread when finished."""
        with self._lock:
            if name in self._loaded or name in self._failed:
                return True
            if name not in self._loading:
                self._loading.add(name)
                thread = threading.Thread(target=self._load, args=(name, on_done), name=f"livediff-load-{name}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            return False

    def join(self) -> None:
        """Wait for loads in progress: a process exiting while a backend initialises its native
        thread pools aborts instead of exiting cleanly."""
        for thread in self._threads:
            thread.join()

    def _load(self, name: str, on_done: Callable[[str, str | None], None]) -> None:
        failure = None
        try:
            if name == "loop":
                from engine.loop_generator import LoopGenerator
                generator = LoopGenerator()
            else:
                from engine.diffusion import load_builtin
                generator = load_builtin(backend="auto")
        except Exception as exc:  # import errors, missing weights, backend problems: all reported
            failure = f"the {name} generator is not available: {type(exc).__name__}: {exc}"
        with self._lock:
            self._loading.discard(name)
            if failure:
                self._failed[name] = failure
            else:
                self._loaded[name] = generator
        on_done(name, failure)

    def loaded(self, name: str) -> bool:
        return name in self._loaded

    def get(self, name: str) -> Generator:
        with self._lock:
            if name in self._failed:
                raise GeneratorUnavailable(self._failed[name])
            return self._loaded[name]


# --- sessions -----------------------------------------------------------------------------

@dataclass
class Window:
    """One window as made and as placed. audio[:, 0] plays at `start`; the shim plays
    [start, start + frames); `entry` is where playback comes in (the loop start inside the
    first window after a wrap), where the seam crossfade goes."""
    bar: int
    flags: int
    audio: np.ndarray         # generator output: the window and its continuation (seam source)
    tempo: float              # tempo the audio was made (or stretched) for
    meter: tuple[int, int]    # time signature it was made for
    start: int = 0
    frames: int = 0
    entry: int = 0
    window_id: int = 0
    regenerate: bool = False  # a stand-in (moved or stretched for a new grid): remake it if time allows

    def fits(self, grid: Grid) -> bool:
        """Made for this grid's meter and, within TEMPO_TOLERANCE, its tempo."""
        return self.meter == (grid.tsig_num, grid.tsig_den) and abs(grid.tempo_bpm / self.tempo - 1) <= TEMPO_TOLERANCE

    def continuation(self, seam: int) -> np.ndarray:
        """What this window would have played after its end (the next window fades in from it)."""
        return fit(self.audio, self.frames + seam)[:, self.frames:]


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
    store: TimelineStore
    params: dict[str, float] = field(default_factory=default_params)
    offline: bool = False
    tracker: GridTracker | None = None
    grid: Grid | None = None
    epoch: int | None = None      # None until the first transport
    epoch_start: int = 0          # song position where the current epoch began
    playing: bool = False
    playhead: int = 0
    playhead_wall: float = 0.0
    loop: tuple[float, float] | None = None   # active loop (start, end) in beats
    input: InputStore | None = None
    input_end: dict[int, int] = field(default_factory=dict)   # epoch -> end sample of received input
    windows: dict[int, Window] = field(default_factory=dict)  # bar -> window of the current epoch
    ahead: dict[int, Window] = field(default_factory=dict)    # bar -> window of the next epoch (after a loop wrap)
    in_flight: set[tuple[int, int]] = field(default_factory=set)  # (epoch, bar)
    version: int = 0              # bumped when the timeline restarts: in-flight results are dropped
    moved: bool = False           # grid or loop changed: windows must be re-placed
    in_loop: bool = False         # the playhead is inside the active loop
    problem: tuple[int, str] | None = None
    blocked_until: float = 0.0    # store full or generator failed: retry after this time
    published: int = 0
    late: int = 0                 # windows published after the playhead reached them (not counting starts/seeks)
    underruns: int = 0
    closed: bool = False
    epoch_changes: deque = field(default_factory=lambda: deque(maxlen=EPOCH_STORM))
    warned: dict[str, float] = field(default_factory=dict)    # kind -> when last logged

    def __post_init__(self):
        self.tracker = GridTracker(self.sample_rate, self.params["tempo_bpm"])
        self.input = InputStore(self.channels, INPUT_KEEP_SECONDS * self.sample_rate)

    def setting(self, name: str) -> int:
        return int(self.params[name])

    @property
    def generator_name(self) -> str:
        return GENERATOR_NAMES[self.setting("generator")]

    @property
    def next_epoch(self) -> int:
        return (self.epoch + 1) & _EPOCH_MASK

    def table(self, epoch: int) -> dict[int, Window] | None:
        """The windows of `epoch` if it is the current or the predicted next one."""
        if epoch == self.epoch:
            return self.windows
        if self.loop is not None and epoch == self.next_epoch:
            return self.ahead
        return None

    def loop_samples(self) -> tuple[int, int] | None:
        """The loop (start, end) in samples while the playhead is inside it."""
        if self.loop is None:
            return None
        start, end = (self.grid.sample_at_beat(b) for b in self.loop)
        return (start, end) if start <= self.playhead < end else None


@dataclass(frozen=True)
class Job:
    session: Session
    target: Target
    horizon: int
    preroll: bool
    input_missing: bool
    version: int
    kind: str = "generate"        # "generate" (new or remade window) or "stretch" (a stand-in)
    urgent: bool = False          # the playhead is already in it (start, seek) or it was a stand-in

    @property
    def bar(self) -> int:
        return self.target.bar

    @property
    def deadline(self) -> float:
        return self.target.deadline


class Scheduler:
    def __init__(self, on_window: Callable[[Session, dict], None] = lambda s, e: None,
                 on_problem: Callable[[Session, int, str], None] = lambda s, c, m: None,
                 generators: GeneratorPool | None = None):
        self._cond = threading.Condition()
        self._sessions: dict[int, Session] = {}
        self._stopped = False
        self._on_window = on_window
        self._on_problem = on_problem
        self.generators = generators or GeneratorPool()
        self.estimates = Estimates()
        self._worker = threading.Thread(target=self._serve, name="livediff-worker", daemon=True)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._worker.is_alive():
            self._worker.join()
        self.generators.join()

    # --- socket-thread side ----------------------------------------------------------------

    def add(self, session: Session) -> None:
        with self._cond:
            self._sessions[session.instance] = session
            self._cond.notify_all()
        # Load on hello, not on the first transport: a client may wait for "ready" before playing.
        self.generators.ready(session.generator_name, self._loaded)

    def remove(self, instance: int) -> Session | None:
        """Forget a session; the caller closes its store (the worker never touches it again)."""
        with self._cond:
            session = self._sessions.pop(instance, None)
            if session:
                session.closed = True
            return session

    def on_params(self, session: Session, params: dict[int, float]) -> None:
        with self._cond:
            before = dict(session.params)
            session.params.update({PARAM_NAME[pid]: value for pid, value in params.items()})
            shaping = ("seed", "style", "window_bars", "lookahead", "context_bars", "generator")
            if any(before[n] != session.params[n] for n in shaping):
                session.problem, session.blocked_until = None, 0.0
                self._restart_timeline(session, withdraw_from=session.playhead)
            self._cond.notify_all()

    def on_transport(self, session: Session, t: Transport, now: float) -> None:
        with self._cond:
            new_epoch = t.epoch != session.epoch
            grid = session.tracker.update(
                tempo=t.tempo, tsig_num=t.tsig_num, tsig_den=t.tsig_den, pos_samples=t.pos_samples,
                pos_beats=t.pos_beats, bar_start_beats=t.bar_start_beats,
                tempo_valid=bool(t.flags & const("LD_TRANSPORT_TEMPO_VALID")),
                tsig_valid=bool(t.flags & const("LD_TRANSPORT_TSIG_VALID")), reanchor=new_epoch)
            loop = None
            if t.flags & const("LD_TRANSPORT_LOOP_ACTIVE") and math.isfinite(t.loop_start_beats) \
                    and math.isfinite(t.loop_end_beats) and t.loop_end_beats > t.loop_start_beats:
                loop = (t.loop_start_beats, t.loop_end_beats)
            if not new_epoch and session.playing and t.pos_samples < session.playhead - 1:
                warn_rarely(session, "backwards", now, "position went back from sample %d to %d within epoch %d "
                            "(a jump the shim should have made a new epoch); windows follow the position",
                            session.playhead, t.pos_samples, t.epoch)
            if new_epoch:
                self._enter_epoch(session, t, grid, loop, now)
            elif grid is not session.grid or loop != session.loop:
                if grid is not session.grid:
                    log.info("session %016x: grid now %.6g BPM %d/%d; re-placing windows from the playhead",
                             session.instance, grid.tempo_bpm, grid.tsig_num, grid.tsig_den)
                if loop != session.loop and session.ahead:
                    self._withdraw_ahead(session)
                session.grid, session.loop, session.moved = grid, loop, True
            session.offline = t.process_mode == const("LD_MODE_OFFLINE")
            session.playing = bool(t.flags & const("LD_TRANSPORT_PLAYING"))
            session.playhead, session.playhead_wall = t.pos_samples, now
            in_loop = session.grid is not None and session.loop_samples() is not None
            session.moved |= in_loop != session.in_loop    # entering the loop clips the window at its end
            session.in_loop = in_loop
            session.underruns = t.underruns
            session.store.set_playhead(session.epoch, t.pos_samples)
            self._cond.notify_all()

    def _enter_epoch(self, session: Session, t: Transport, grid: Grid, loop, now: float) -> None:
        """A loop wrap that was predicted keeps the windows made ahead for it; anything else
        (seek, restart, meter change, an unpredicted jump) starts the timeline over."""
        wrapped = (session.epoch is not None and session.loop is not None and t.epoch == session.next_epoch
                   and grid is session.grid and loop == session.loop
                   and abs(t.pos_samples - grid.sample_at_beat(loop[0])) <= 1)
        if not t.flags & const("LD_TRANSPORT_SYNC_SWITCH"):   # the sync_mode parameter, not the host
            session.epoch_changes.append(now)
        if len(session.epoch_changes) == EPOCH_STORM and now - session.epoch_changes[0] < 1.0:
            warn_rarely(session, "storm", now, "%d epoch changes within %.2f s (the host position jumps, e.g. "
                        "backwards every block); generation restarts at each one", EPOCH_STORM,
                        now - session.epoch_changes[0])
        if wrapped:
            session.windows, session.ahead = session.ahead, {}
        session.epoch, session.epoch_start, session.grid, session.loop = t.epoch, t.pos_samples, grid, loop
        if not wrapped:
            self._restart_timeline(session, withdraw_from=None)

    def on_audio(self, session: Session, audio: Audio) -> None:
        with self._cond:
            session.input.write(audio.pos_samples, audio.input)
            end = audio.pos_samples + audio.frames
            session.input_end[audio.epoch] = max(end, session.input_end.get(audio.epoch, end))
            for old in [e for e in session.input_end if e not in (session.epoch, audio.epoch)]:
                del session.input_end[old]
            self._cond.notify_all()

    def _restart_timeline(self, session: Session, withdraw_from: int | None) -> None:
        """Forget every window (a new epoch, or a parameter that shapes the audio changed). Slots
        of the current epoch are withdrawn from `withdraw_from` on, or all of them when it is None
        (a new epoch number may have been used by windows made ahead of a loop wrap)."""
        session.windows.clear()
        self._withdraw_ahead(session)
        session.in_flight.clear()
        session.version += 1
        session.moved = False
        if session.epoch is not None:
            session.store.invalidate(session.epoch, -(1 << 62) if withdraw_from is None else withdraw_from)

    @staticmethod
    def _withdraw_ahead(session: Session) -> None:
        if session.epoch is not None:
            session.store.invalidate(session.next_epoch, -(1 << 62))
        session.ahead = {}

    # --- planning (called with _cond held) -------------------------------------------------

    def _lookahead(self, session: Session) -> int:
        """The lookahead parameter, capped so the playhead's window and those ahead fit the store."""
        grid = session.grid
        frames = grid.bar_start_sample(session.setting("window_bars")) - grid.bar_start_sample(0)
        slots_per_window = -(-frames // session.store.capacity)
        fits = session.store.slot_count // slots_per_window - 1
        return max(0, min(session.setting("lookahead"), fits))

    def _targets(self, s: Session) -> list[Target]:
        """The playhead's window and `lookahead` after it: clipped at the loop end, then on from
        the loop start in the next epoch (the wrap is predicted, never what lies past the end)."""
        grid, span = s.grid, s.setting("window_bars")
        loop = s.loop_samples()
        out: list[Target] = []
        count = self._lookahead(s) + 1
        bar = window_bar(grid.bar_at_sample(s.playhead), span)
        seconds = lambda sample: s.playhead_wall + (sample - s.playhead) / s.sample_rate  # noqa: E731
        playing = s.windows.get(bar)
        while len(out) < count:
            start, end = grid.bar_start_sample(bar), grid.bar_start_sample(bar + span)
            if loop and start >= loop[1]:
                break
            entry = 0
            if playing is not None and bar == playing.bar and playing.start <= s.playhead:
                start, entry = playing.start, playing.entry   # it is playing: only its end may move
            end = min(end, loop[1]) if loop else end
            out.append(Target(s.epoch, bar, start, end - start, entry, seconds(start + entry)))
            bar += span
        if loop and len(out) < count:
            bar = window_bar(grid.bar_at_sample(loop[0]), span)
            while len(out) < count:
                start, end = grid.bar_start_sample(bar), min(grid.bar_start_sample(bar + span), loop[1])
                entry = max(0, loop[0] - start)
                if entry >= end - start:
                    break
                out.append(Target(s.next_epoch, bar, start, end - start, entry,
                                  seconds(loop[1]) + (start + entry - loop[0]) / s.sample_rate))
                bar += span
        return out

    def _pending(self, s: Session, now: float) -> list[tuple[Job, float]]:
        """(job, earliest start) for the session: windows missing from the targets, stand-ins to
        stretch, stand-ins to remake. Re-placements that only move audio happen right here."""
        grid = s.grid
        if s.closed or not s.playing or grid is None or now < s.blocked_until:
            return []
        if not self.generators.ready(s.generator_name, self._loaded):
            return []
        targets = self._targets(s)
        if s.moved:
            self._replace(s, targets)
        span, lookahead = s.setting("window_bars"), s.setting("lookahead")
        estimate = (s.generator_name, span)
        jobs = []
        for target in targets:
            if (target.epoch, target.bar) in s.in_flight:
                continue
            window = s.table(target.epoch).get(target.bar)
            horizon = horizon_bar(target.bar, lookahead, span)
            preroll = grid.bar_start_beat(horizon) <= 1e-9
            urgent = target.deadline <= s.playhead_wall and target.epoch == s.epoch
            if window is None:
                ends = target.deadline + target.frames / s.sample_rate
                if not s.offline and ends < now + self.estimates.seconds(estimate):
                    continue    # it would be ready only after the playhead has left it: make a later one
                # Input before the epoch began (a seek) will not come again: what was stored is all there is.
                needed = grid.bar_start_sample(horizon)
                epoch_start = s.epoch_start if target.epoch == s.epoch else grid.sample_at_beat(s.loop[0])
                heard = s.input_end.get(target.epoch, s.input_end.get(s.epoch, -math.inf))
                missing = needed > epoch_start and heard < needed
                missing = missing and not preroll and target.epoch == s.epoch
                job = Job(s, target, horizon, preroll, missing, s.version, urgent=urgent)
                # Offline always waits for the input; realtime gives up waiting when the deadline nears.
                earliest = (now if not missing else math.inf if s.offline
                            else target.deadline - self.estimates.budget(estimate))
                jobs.append((job, earliest))
            elif window.regenerate and (window.start > s.playhead or target.epoch != s.epoch):
                remake = Job(s, target, horizon, preroll, False, s.version)
                budget = self.estimates.budget(estimate)
                if s.offline:
                    jobs.append((remake, now))
                elif target.deadline - now >= budget - ESTIMATE_MARGIN:
                    # Remade at the last moment that still makes it: under a ramp, once, at the latest tempo.
                    jobs.append((remake, target.deadline - budget))
                elif (window.meter == (grid.tsig_num, grid.tsig_den) and not window.fits(grid)
                      and target.deadline - now >= self.estimates.seconds(("stretch", s.sample_rate, span))):
                    jobs.append((Job(s, target, horizon, False, False, s.version, "stretch", urgent=True), now))
        return jobs

    def _next_job(self, now: float) -> tuple[Job | None, float]:
        """Earliest deadline first among jobs whose start time has come; what the playhead is
        already in (a start or seek) and stand-ins go first, and a session whose generator cannot
        keep up with its windows goes last, so it cannot starve the others."""
        pending = [entry for s in self._sessions.values() for entry in self._pending(s, now)]
        ready = [job for job, earliest in pending if earliest <= now]
        if ready:
            return min(ready, key=self._priority), 0.0
        soonest = min((earliest - now for _, earliest in pending), default=0.1)
        return None, min(0.1, max(0.002, soonest))

    def _priority(self, job: Job) -> tuple[int, float]:
        s = job.session
        window_seconds = job.target.frames / s.sample_rate
        measured = self.estimates.measured((s.generator_name, s.setting("window_bars")))
        overloaded = measured is not None and measured > window_seconds
        return (0 if job.urgent and not overloaded else 2 if overloaded else 1), job.deadline

    def _replace(self, s: Session, targets: list[Target]) -> None:
        """[_cond held] The grid or loop moved: put every window where the new grid wants it. Audio
        made within TEMPO_TOLERANCE of the new tempo (and the window already playing) keeps its
        samples and only moves; other windows move now and are then remade if there is time for
        it, else time-stretched (_pending; docs/scheduling.md, "Tempo changes")."""
        s.moved = False
        wanted = {(t.epoch, t.bar): t for t in targets}
        previous_moved = False      # in play order: a moved window changes the seam of the next one
        for epoch in (s.epoch, s.next_epoch):
            table = s.table(epoch) or {}
            for bar in sorted(table):
                window, target = table[bar], wanted.get((epoch, bar))
                if target is None:
                    if window.start > s.playhead or epoch != s.epoch:   # no longer wanted: never play it
                        s.store.withdraw(window.window_id)
                        del table[bar]
                    continue
                playing = window.start <= s.playhead and epoch == s.epoch
                window.regenerate |= not window.fits(s.grid) and not playing
                moved = (target.start, target.frames, target.entry) != (window.start, window.frames, window.entry)
                if moved or (previous_moved and not playing):
                    self._place(s, window, target, "move")
                previous_moved = moved

    # --- publishing (called with _cond held) -----------------------------------------------

    def _previous(self, s: Session, target: Target) -> Window | None:
        """The window that plays right before the target is entered: the one ending where it
        starts, or, for the first window after a loop wrap, the one ending at the loop end."""
        if target.epoch != s.epoch:
            loop = s.loop_samples()
            if loop and target.start + target.entry == loop[0]:
                return next((w for w in s.windows.values() if w.start + w.frames == loop[1]), None)
        before = s.table(target.epoch).get(target.bar - s.setting("window_bars"))
        return before if before is not None and before.start + before.frames == target.start else None

    def _place(self, s: Session, window: Window, target: Target, kind: str, **details) -> bool:
        """Publish `window` at the target placement with the seam crossfade baked in at its entry;
        the slots of its earlier placement are withdrawn; one window-log entry. False if the
        store is full."""
        seam = round(SEAM_SECONDS * s.sample_rate)
        audio = fit(window.audio, target.frames)
        if not window.flags & const("LD_WINDOW_PREROLL"):
            # Fade from what played before; from silence after a preroll window or nothing.
            previous = self._previous(s, target)
            before = previous.continuation(seam) if previous is not None else np.zeros((s.channels, seam), np.float32)
            audio = audio.copy()
            audio[:, target.entry:] = equal_power_crossfade(before, audio[:, target.entry:])
        grid = s.grid
        start_beat = grid.beat_at_sample(target.start) if target.start != grid.bar_start_sample(window.bar) \
            else grid.bar_start_beat(window.bar)
        try:
            window_id = s.store.publish(epoch=target.epoch, start_sample=target.start,
                                        bar_index=window.bar & 0xFFFFFFFF, start_beat=start_beat,
                                        tempo_bpm=window.tempo, flags=window.flags, audio=audio)
        except StoreFull as exc:
            log.warning("session %016x: %s; window at bar %d waits", s.instance, exc, window.bar)
            s.blocked_until = time.monotonic() + 0.02
            return False
        if window.window_id:
            s.store.withdraw(window.window_id)
        window.start, window.frames, window.entry = target.start, target.frames, target.entry
        window.window_id = window_id
        self._on_window(s, {"instance": f"{s.instance:016x}", "epoch": target.epoch, "bar_index": window.bar,
                            "start_sample": target.start, "frames": target.frames, "entry": target.entry,
                            "start_beat": start_beat, "tempo": window.tempo, "grid_tempo": grid.tempo_bpm,
                            "anchor_sample": grid.anchor_sample, "anchor_beat": grid.anchor_beat,
                            "flags": window.flags, "window_id": window_id, "kind": kind, "playhead": s.playhead,
                            "session_epoch": s.epoch,
                            **details})
        return True

    def _republish_next(self, s: Session, epoch: int, window: Window) -> None:
        """A window changed: the next one's baked seam fades from its continuation, so redo it."""
        table = s.table(epoch)
        following = table.get(window.bar + s.setting("window_bars"))
        if epoch == s.epoch and s.loop_samples() and window.start + window.frames == s.loop_samples()[1]:
            table, epoch = s.ahead, s.next_epoch
            following = min(s.ahead.values(), key=lambda w: w.bar, default=None)
        if following is not None and following.window_id and following.start > s.playhead:
            self._place(s, following, Target(epoch, following.bar, following.start, following.frames,
                                             following.entry, 0.0), "seam")

    # --- context ----------------------------------------------------------------------------

    def _request(self, job: Job) -> WindowRequest:
        s, grid = job.session, job.session.grid
        span, context_bars = s.setting("window_bars"), s.setting("context_bars")
        table = s.table(job.target.epoch)
        generated = lambda b: self._generated_bar(s, table, b)  # noqa: E731
        sources = context_sources(job.bar, job.horizon, context_bars, lambda b: generated(b) is not None)
        parts = [s.input.read(grid.bar_start_sample(b), grid.bar_start_sample(b + 1) - grid.bar_start_sample(b))
                 if source == "input" else generated(b) for b, source in sources]
        frames = grid.bar_start_sample(job.bar + span) - grid.bar_start_sample(job.bar)
        return WindowRequest(context=np.concatenate(parts, axis=1), sample_rate=s.sample_rate,
                             tempo_bpm=grid.tempo_bpm, tsig_num=grid.tsig_num, tsig_den=grid.tsig_den,
                             context_bars=context_bars, bars=span, frames=frames,
                             tail_frames=round(SEAM_SECONDS * s.sample_rate), style=s.setting("style"),
                             seed=window_seed(s.setting("seed"), job.bar), bar_index=job.bar)

    @staticmethod
    def _generated_bar(session: Session, table: dict[int, Window], bar: int) -> np.ndarray | None:
        """The generator's own audio of `bar` (not the baked seam), cut at this grid's bar lines."""
        window = table.get(window_bar(bar, session.setting("window_bars")))
        if window is None or window.flags & const("LD_WINDOW_PREROLL"):
            return None
        grid = session.grid
        offset = grid.bar_start_sample(bar) - grid.bar_start_sample(window.bar)
        return fit(window.audio[:, offset:], grid.bar_start_sample(bar + 1) - grid.bar_start_sample(bar))

    # --- worker thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            try:
                with self._cond:
                    work = self._take_work()
                    if work is None:
                        return
                self._run(*work)
            except Exception:  # a bug here must not silently end all generation
                log.exception("worker: unexpected error; continuing")
                time.sleep(0.1)

    def _take_work(self):
        """[worker-thread, _cond held] (job, request or stretch input, generator name) for the
        job to run next; None once stopped."""
        while not self._stopped:
            job, wait = self._next_job(time.monotonic())
            if job:
                session = job.session
                session.in_flight.add((job.target.epoch, job.bar))
                name = session.generator_name
                if job.kind == "stretch":
                    window = session.table(job.target.epoch)[job.bar]
                    return job, (window, session.grid.tempo_bpm), name
                request = None if job.preroll else self._request(job)
                if job.input_missing and request is not None:
                    log.warning("session %016x: window at bar %d generated before its input up to bar %d arrived "
                                "(deadline near); the missing input is silence", session.instance, job.bar, job.horizon)
                return job, request, name
            self._cond.wait(wait)
        return None

    def _loaded(self, name: str, failure: str | None) -> None:
        """[loader-thread] A generator finished loading: report a failure to its sessions, wake the worker."""
        with self._cond:
            for session in self._sessions.values():
                if failure and session.generator_name == name:
                    self._report(session, const("LD_ERR_GENERATOR"), failure, retry_after=1.0)
            self._cond.notify_all()

    def _run(self, job: Job, work, name: str) -> None:
        """[worker-thread, _cond not held] Generate or stretch, then publish under the lock."""
        session = job.session
        started = time.monotonic()
        problem = None
        try:
            if job.kind == "stretch":
                window, tempo = work
                audio = stretch(window.audio, session.sample_rate, window.tempo, tempo)
            else:
                audio = None if work is None else self.generators.get(name).generate(work)
        except GeneratorUnavailable as exc:
            audio, problem = None, str(exc)
        except Exception as exc:  # a failing model must not take the engine down
            audio, problem = None, f"the {name} generator failed at bar {job.bar}: {type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - started
        with self._cond:
            session.in_flight.discard((job.target.epoch, job.bar))
            if job.kind == "stretch":
                self.estimates.add(("stretch", session.sample_rate, session.setting("window_bars")), elapsed)
            elif work is not None and problem is None:
                self.estimates.add((name, session.setting("window_bars")), elapsed)
            table = session.table(job.target.epoch)
            if session.closed or session.version != job.version or table is None:
                return
            if problem:
                self._report(session, const("LD_ERR_GENERATOR"), problem, retry_after=1.0)
                return
            self._finish(job, work, audio, name, table)

    def _report(self, session: Session, code: int, message: str, retry_after: float) -> None:
        if session.problem != (code, message):
            log.error("session %016x: %s", session.instance, message)
            self._on_problem(session, code, message)
        session.problem = (code, message)
        session.blocked_until = time.monotonic() + retry_after

    def _finish(self, job: Job, work, audio: np.ndarray | None, name: str, table: dict[int, Window]) -> None:
        """Place the result where the current grid wants it now (the grid may have moved while
        it was made) and log it."""
        s, grid = job.session, job.session.grid
        if s.moved:     # the grid moved while this was made: place the others first (seams)
            self._replace(s, self._targets(s))
        target = next((t for t in self._targets(s) if (t.epoch, t.bar) == (job.target.epoch, job.bar)), None)
        if target is None:
            return          # the playhead or the loop moved on meanwhile
        old = table.get(job.bar)
        if job.kind == "stretch":
            stood_in, tempo = work
            if old is not stood_in or old.meter != (grid.tsig_num, grid.tsig_den):
                return      # remade or dropped meanwhile
            old.audio, old.tempo, old.flags = audio, tempo, const("LD_WINDOW_STRETCHED")
            window = old
        else:
            request = work
            if old is not None and old.window_id and old.start <= s.playhead and target.epoch == s.epoch:
                return      # too late to replace the stand-in: it is playing
            if audio is None:
                window = Window(job.bar, const("LD_WINDOW_PREROLL"),
                                np.zeros((s.channels, target.frames), np.float32), grid.tempo_bpm,
                                (grid.tsig_num, grid.tsig_den))
            elif audio.shape != (s.channels, request.frames + request.tail_frames):
                self._report(s, const("LD_ERR_GENERATOR"), f"the {name} generator returned shape {audio.shape}; "
                             f"expected ({s.channels}, {request.frames + request.tail_frames})", retry_after=1.0)
                return
            else:
                window = Window(job.bar, const("LD_WINDOW_GENERATED"), audio, request.tempo_bpm,
                                (request.tsig_num, request.tsig_den))
            if old is not None:
                window.window_id = old.window_id
        window.regenerate = not window.fits(grid)   # made for a grid that has moved on meanwhile
        now = time.monotonic()
        late = now > target.deadline and not job.urgent and not s.offline
        if not self._place(s, window, target, job.kind, generator=name, input_missing=job.input_missing, late=late,
                           seed=None if job.kind == "stretch" or work is None else work.seed,
                           lead_seconds=round(target.deadline - now, 4)):
            return
        table[job.bar] = window
        self._republish_next(s, target.epoch, window)
        s.late += late
        s.published += 1
        span = s.setting("window_bars")
        oldest_needed = window_bar(grid.bar_at_sample(s.playhead), span) - s.setting("context_bars") - span
        for bar in [b for b in s.windows if b < oldest_needed]:
            del s.windows[bar]


def warn_rarely(session: Session, kind: str, now: float, text: str, *args) -> None:
    """One log line per kind of host trouble per session every 5 s, not one per block."""
    if now - session.warned.get(kind, -math.inf) >= 5.0:
        session.warned[kind] = now
        log.warning("session %016x: " + text, session.instance, *args)


def stretch(audio: np.ndarray, sample_rate: int, from_tempo: float, to_tempo: float) -> np.ndarray:
    """Audio made at from_tempo, time-stretched to to_tempo (pitch kept): a stand-in until the
    window is made again for the new tempo."""
    from pedalboard import time_stretch
    return time_stretch(np.ascontiguousarray(audio, np.float32), float(sample_rate), to_tempo / from_tempo,
                        high_quality=False).astype(np.float32)
