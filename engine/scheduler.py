"""Which windows to generate, in what order, from what context; one worker thread runs them.

Per session the scheduler keeps the playhead's window and `lookahead` windows after it
generated (or in flight). All sessions share one earliest-deadline-first queue, served by a
single worker thread, so the socket thread only records what arrived and never waits for a
model. Context follows docs/protocol.md ("Time, epochs and windows"): window b is made from
the context_bars bars before it, input audio before the horizon h and this session's own
generated windows from h to b. Everything a window depends on (context, seed = f(session
seed, bar)) is fixed by the timeline, so realtime and offline runs give the same audio.

Threads: the socket thread calls add/remove/on_* ([main-thread] of the server); the worker
thread runs _serve(). Both hold `_cond` while touching session state; generation itself runs
with the lock released.
"""
from __future__ import annotations

import logging
import math
import threading
import time
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
SEAM_SECONDS = 0.03            # seam crossfade length (Magenta RT uses 40 ms)
INPUT_KEEP_SECONDS = 180       # received input kept around the playhead, by song position
_MASK64 = (1 << 64) - 1


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
        self._lock = threading.Lock()

    def ready(self, name: str, on_done: Callable[[str, str | None], None]) -> bool:
        """True once `name` is loaded or failed; otherwise start loading it (once) and call
        on_done(name, failure or None) from the loader thread when finished."""
        with self._lock:
            if name in self._loaded or name in self._failed:
                return True
            if name not in self._loading:
                self._loading.add(name)
                threading.Thread(target=self._load, args=(name, on_done), name=f"livediff-load-{name}",
                                 daemon=True).start()
            return False

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
    bar: int
    flags: int
    audio: np.ndarray         # the generator's output for the window (before the seam crossfade)
    tail: np.ndarray | None   # the generator's continuation past the window end, for the next seam


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
    input: InputStore | None = None
    input_end: dict[int, int] = field(default_factory=dict)   # epoch -> end sample of received input
    windows: dict[int, Window] = field(default_factory=dict)  # bar -> window, current epoch and grid
    in_flight: set[int] = field(default_factory=set)
    version: int = 0              # bumped when epoch or grid change: in-flight results are dropped
    problem: tuple[int, str] | None = None
    blocked_until: float = 0.0    # store full or generator failed: retry after this time
    published: int = 0
    underruns: int = 0
    closed: bool = False
    gen_seconds: float = 0.05     # running estimate of one window's generation time

    def __post_init__(self):
        self.tracker = GridTracker(self.sample_rate, self.params["tempo_bpm"])
        self.input = InputStore(self.channels, INPUT_KEEP_SECONDS * self.sample_rate)

    def setting(self, name: str) -> int:
        return int(self.params[name])

    @property
    def generator_name(self) -> str:
        return GENERATOR_NAMES[self.setting("generator")]


@dataclass(frozen=True)
class Job:
    session: Session
    bar: int
    horizon: int
    deadline: float
    preroll: bool
    input_missing: bool
    version: int


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
        self._worker = threading.Thread(target=self._serve, name="livediff-worker", daemon=True)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._worker.is_alive():
            self._worker.join()

    # --- socket-thread side ----------------------------------------------------------------

    def add(self, session: Session) -> None:
        with self._cond:
            self._sessions[session.instance] = session
            self._cond.notify_all()

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
                self._restart_timeline(session, from_sample=session.playhead)
            self._cond.notify_all()

    def on_transport(self, session: Session, t: Transport, now: float) -> None:
        with self._cond:
            new_epoch = t.epoch != session.epoch
            grid = session.tracker.update(
                tempo=t.tempo, tsig_num=t.tsig_num, tsig_den=t.tsig_den, pos_samples=t.pos_samples,
                pos_beats=t.pos_beats, bar_start_beats=t.bar_start_beats,
                tempo_valid=bool(t.flags & const("LD_TRANSPORT_TEMPO_VALID")),
                tsig_valid=bool(t.flags & const("LD_TRANSPORT_TSIG_VALID")), reanchor=new_epoch)
            if new_epoch:
                session.epoch, session.epoch_start = t.epoch, t.pos_samples
                session.grid = grid
                self._restart_timeline(session, from_sample=None)
            elif grid is not session.grid:
                if session.grid is not None:
                    log.info("session %016x: grid changed to %.6g BPM %d/%d; replacing windows from the playhead",
                             session.instance, grid.tempo_bpm, grid.tsig_num, grid.tsig_den)
                session.grid = grid
                self._restart_timeline(session, from_sample=t.pos_samples)
            session.offline = t.process_mode == const("LD_MODE_OFFLINE")
            session.playing = bool(t.flags & const("LD_TRANSPORT_PLAYING"))
            session.playhead, session.playhead_wall = t.pos_samples, now
            session.underruns = t.underruns
            session.store.set_playhead(session.epoch, t.pos_samples)
            self._cond.notify_all()

    def on_audio(self, session: Session, audio: Audio) -> None:
        with self._cond:
            session.input.write(audio.pos_samples, audio.input)
            end = audio.pos_samples + audio.frames
            session.input_end[audio.epoch] = max(end, session.input_end.get(audio.epoch, end))
            for old in [e for e in session.input_end if e not in (session.epoch, audio.epoch)]:
                del session.input_end[old]
            self._cond.notify_all()

    def _restart_timeline(self, session: Session, from_sample: int | None) -> None:
        """Drop generated windows (a new epoch, grid or shaping parameter makes them wrong);
        with from_sample, also withdraw their published slots from there on."""
        session.windows.clear()
        session.in_flight.clear()
        session.version += 1
        if from_sample is not None and session.grid is not None:
            start = session.grid.bar_start_sample(window_bar(session.grid.bar_at_sample(from_sample),
                                                             session.setting("window_bars")))
            session.store.invalidate(session.epoch, start)

    # --- planning (called with _cond held) -------------------------------------------------

    def _lookahead(self, session: Session) -> int:
        """The lookahead parameter, capped so the playhead's window and those ahead fit the store."""
        grid = session.grid
        frames = grid.bar_start_sample(session.setting("window_bars")) - grid.bar_start_sample(0)
        slots_per_window = -(-frames // session.store.capacity)
        fits = session.store.slot_count // slots_per_window - 1
        return max(0, min(session.setting("lookahead"), fits))

    def _pending(self, session: Session, now: float) -> list[Job]:
        """Windows from the playhead's window to `lookahead` windows ahead that are neither
        generated nor in flight, with their deadlines (wall clock of their first frame)."""
        grid = session.grid
        if session.closed or not self.generators.ready(session.generator_name, self._loaded):
            return []
        if not session.playing or grid is None or now < session.blocked_until:
            return []
        span = session.setting("window_bars")
        first = window_bar(grid.bar_at_sample(session.playhead), span)
        jobs = []
        for k in range(self._lookahead(session) + 1):
            bar = first + k * span
            if bar in session.windows or bar in session.in_flight:
                continue
            horizon = horizon_bar(bar, session.setting("lookahead"), span)
            deadline = session.playhead_wall + (grid.bar_start_sample(bar) - session.playhead) / session.sample_rate
            preroll = grid.bar_start_beat(horizon) <= 1e-9
            # Input before the epoch began (a seek) will not come again: what was stored is all there is.
            needed = grid.bar_start_sample(horizon)
            missing = needed > session.epoch_start and session.input_end.get(session.epoch, -math.inf) < needed
            jobs.append(Job(session, bar, horizon, deadline, preroll, missing and not preroll, session.version))
        return jobs

    def _ready(self, job: Job, now: float) -> bool:
        """Offline waits for the input up to the horizon; realtime also goes once the deadline
        is too close to wait any longer (missing input is then zero)."""
        if not job.input_missing:
            return True
        return not job.session.offline and job.deadline - now <= 2 * job.session.gen_seconds + 0.02

    def _next_job(self, now: float) -> tuple[Job | None, float]:
        pending = [job for s in self._sessions.values() for job in self._pending(s, now)]
        ready = [job for job in pending if self._ready(job, now)]
        if ready:
            return min(ready, key=lambda j: j.deadline), 0.0
        soonest = min((j.deadline - 2 * j.session.gen_seconds - 0.02 - now for j in pending if not j.session.offline),
                      default=0.1)
        return None, min(0.1, max(0.002, soonest))

    def _request(self, job: Job, generator_name: str) -> WindowRequest:
        s, grid = job.session, job.session.grid
        span, context_bars = s.setting("window_bars"), s.setting("context_bars")
        sources = context_sources(job.bar, job.horizon, context_bars, lambda b: self._generated_bar(s, b) is not None)
        parts = [s.input.read(grid.bar_start_sample(b), grid.bar_start_sample(b + 1) - grid.bar_start_sample(b))
                 if source == "input" else self._generated_bar(s, b) for b, source in sources]
        frames = grid.bar_start_sample(job.bar + span) - grid.bar_start_sample(job.bar)
        return WindowRequest(context=np.concatenate(parts, axis=1), sample_rate=s.sample_rate,
                             tempo_bpm=grid.tempo_bpm, tsig_num=grid.tsig_num, tsig_den=grid.tsig_den,
                             context_bars=context_bars, bars=span, frames=frames,
                             tail_frames=round(SEAM_SECONDS * s.sample_rate), style=s.setting("style"),
                             seed=window_seed(s.setting("seed"), job.bar), bar_index=job.bar)

    @staticmethod
    def _generated_bar(session: Session, bar: int) -> np.ndarray | None:
        span = session.setting("window_bars")
        window = session.windows.get(window_bar(bar, span))
        if window is None or window.flags & const("LD_WINDOW_PREROLL"):
            return None
        grid = session.grid
        origin = grid.bar_start_sample(window.bar)
        return window.audio[:, grid.bar_start_sample(bar) - origin:grid.bar_start_sample(bar + 1) - origin]

    # --- worker thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            try:
                with self._cond:
                    work = self._take_work()
                    if work is None:
                        return
                    self._generate(*work)
            except Exception:  # a bug here must not silently end all generation
                log.exception("worker: unexpected error; continuing")
                time.sleep(0.1)

    def _take_work(self):
        """[worker-thread, _cond held] (job, request, generator name) for the earliest deadline
        that is ready; None once stopped."""
        while not self._stopped:
            job, wait = self._next_job(time.monotonic())
            if job:
                session = job.session
                session.in_flight.add(job.bar)
                name = session.generator_name
                request = None if job.preroll else self._request(job, name)
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

    def _generate(self, job: Job, request: WindowRequest | None, name: str) -> None:
        session = job.session
        started = time.monotonic()
        try:
            audio = None if request is None else self.generators.get(name).generate(request)
            problem = None
        except GeneratorUnavailable as exc:
            audio, problem = None, str(exc)
        except Exception as exc:  # a failing model must not take the engine down
            audio, problem = None, f"the {name} generator failed at bar {job.bar}: {type(exc).__name__}: {exc}"
        with self._cond:
            session.in_flight.discard(job.bar)
            if session.closed or session.version != job.version:
                return
            if problem:
                self._report(session, const("LD_ERR_GENERATOR"), problem, retry_after=1.0)
                return
            session.gen_seconds = 0.8 * session.gen_seconds + 0.2 * (time.monotonic() - started)
            self._finish(job, request, audio, name)

    def _report(self, session: Session, code: int, message: str, retry_after: float) -> None:
        if session.problem != (code, message):
            log.error("session %016x: %s", session.instance, message)
            self._on_problem(session, code, message)
        session.problem = (code, message)
        session.blocked_until = time.monotonic() + retry_after

    def _finish(self, job: Job, request: WindowRequest | None, audio: np.ndarray | None, name: str) -> None:
        """Bake the seam crossfade into what is published; remember the generator's own output as
        context for later windows (seams would otherwise compound from window to window)."""
        s, grid = job.session, job.session.grid
        span = s.setting("window_bars")
        frames = grid.bar_start_sample(job.bar + span) - grid.bar_start_sample(job.bar)
        if audio is None:
            flags, body, tail = const("LD_WINDOW_PREROLL"), np.zeros((s.channels, frames), np.float32), None
        elif audio.shape != (s.channels, frames + request.tail_frames):
            self._report(s, const("LD_ERR_GENERATOR"), f"the {name} generator returned shape {audio.shape}; "
                         f"expected ({s.channels}, {frames + request.tail_frames})", retry_after=1.0)
            return
        else:
            flags, body, tail = const("LD_WINDOW_GENERATED"), audio[:, :frames], audio[:, frames:]
        previous = s.windows.get(job.bar - span)
        seam = audio is not None and previous is not None and previous.tail is not None
        published = equal_power_crossfade(previous.tail, body) if seam else body
        start = grid.bar_start_sample(job.bar)
        start_beat = grid.bar_start_beat(job.bar)
        try:
            window_id = s.store.publish(epoch=s.epoch, start_sample=start, bar_index=job.bar & 0xFFFFFFFF,
                                        start_beat=start_beat, tempo_bpm=grid.tempo_bpm, flags=flags, audio=published)
        except StoreFull as exc:
            log.warning("session %016x: %s; window at bar %d waits", s.instance, exc, job.bar)
            s.blocked_until = time.monotonic() + 0.02
            return
        s.windows[job.bar] = Window(job.bar, flags, body, tail)
        s.published += 1
        oldest_needed = job.bar - s.setting("context_bars") - (s.setting("lookahead") + 1) * span
        for bar in [b for b in s.windows if b < oldest_needed]:
            del s.windows[bar]
        self._on_window(s, {"instance": f"{s.instance:016x}", "epoch": s.epoch, "bar_index": job.bar,
                            "start_sample": start, "frames": frames, "start_beat": start_beat,
                            "tempo": grid.tempo_bpm, "flags": flags, "generator": name, "window_id": window_id,
                            "seed": None if request is None else request.seed,
                            "input_missing": job.input_missing})
