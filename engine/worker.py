"""The worker thread: takes the planner's next job, generates (or time-stretches) with the lock
released, then places the result where the grid wants it now. One worker serves every
session. [worker-thread]"""
from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

import numpy as np

from engine import context, placement, planner
from engine.dsp import fit, regrid
from engine.generators import GeneratorPool, GeneratorUnavailable
from engine.planner import Estimates, Job
from engine.publisher import WindowKind
from engine.session import Session, Window, made_for, warn_rarely
from engine.timeline import Grid, Segment, window_bar

log = logging.getLogger("livediff.scheduler")
OnProblem = Callable[[Session, str, str], None]
QUARANTINE_SECONDS = 5.0       # a bug planning or placing one session's windows stops that session this long
SWITCH_MARGIN = 0.05           # realtime: a playing window is replaced at least this far ahead of the shim


class Worker:
    """Runs jobs for the sessions in `sessions` (shared with the scheduler, guarded by `cond`)."""

    def __init__(self, cond: threading.Condition, sessions: dict[int, Session], generators: GeneratorPool,
                 estimates: Estimates, on_window: placement.OnWindow, on_problem: OnProblem):
        self._cond = cond
        self._sessions = sessions
        self.generators = generators
        self.estimates = estimates
        self._on_window = on_window
        self._on_problem = on_problem
        self.stopped = False
        self._thread = threading.Thread(target=self._serve, name="livediff-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.is_alive():
            self._thread.join()

    def generator_ready(self, name: str) -> bool:
        """[any-thread] Loaded (or failed); starts loading it otherwise."""
        return self.generators.ready(name, self._loaded)

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

    def _plans(self, now: float):
        for session in self._sessions.values():
            quarantined = session.problem is not None and session.problem[0] == "internal"
            if quarantined and now < session.blocked_until:
                continue
            try:
                plans = planner.pending(session, now, self.estimates, self.generator_ready)
            except Exception as exc:  # a bug with one session's state must not stop the others' windows
                self._quarantine(session, "planning its windows", exc)
                continue
            if quarantined:
                session.problem = None
            yield from plans

    def _take_work(self):
        """[_cond held] (job, what to make it from (a request to build, or a stretch's input),
        generator name, the grid sequence it is made for) for the job to run next; None once
        stopped."""
        while not self.stopped:
            work, wait = self.next_work(time.monotonic())
            if work is not None:
                return work
            self._cond.wait(wait)
        return None

    def next_work(self, now: float):
        """[_cond held] The work of the job to run now, else None and how long to wait (the
        engine fuzzer, tests/fuzz/fuzz_engine.py, steps the worker with it)."""
        job, wait = planner.next_job(self._plans(now), now, self.estimates)
        if job is None:
            return None, wait
        session = job.session
        session.in_flight.add((job.target.epoch, job.bar))
        name = session.generator_name
        if job.kind == "stretch":
            window = session.table(job.target.epoch)[job.bar]
            return (job, (window, session.grid, job.target), name, session.grid_seq), 0.0
        try:
            request = None if job.preroll else context.gather(job)
        except Exception as exc:
            session.in_flight.discard((job.target.epoch, job.bar))
            self._quarantine(session, f"gathering the context of bar {job.bar}", exc)
            return None, 0.0
        if job.input_missing and request is not None:
            log.warning("session %016x: window at bar %d generated before its input up to bar %d arrived "
                        "(deadline near); the missing input is silence", session.instance, job.bar, job.horizon)
        return (job, request, name, session.grid_seq), 0.0

    def _loaded(self, name: str, failure: str | None) -> None:
        """[loader-thread] A generator finished loading: report a failure to its sessions, wake the worker."""
        with self._cond:
            for session in self._sessions.values():
                if failure and session.generator_name == name:
                    self._report(session, failure, retry_after=1.0)
            self._cond.notify_all()

    def _run(self, job: Job, work, name: str, grid_seq: int) -> None:
        """[_cond not held] Generate or stretch, then publish under the lock."""
        session = job.session
        started = time.monotonic()
        problem, made = None, None
        try:
            if job.kind == "stretch":
                window, grid, target = work
                audio, made = stand_in(window, grid, target.start, target.frames, job.from_sample, session.channels)
            elif work is not None:
                work = work()       # the request: context bars brought to this window's bar length
                audio = self.generators.get(name).generate(work)
            else:
                audio = None
        except GeneratorUnavailable as exc:
            audio, problem = None, str(exc)
        except Exception as exc:  # a failing model must not take the engine down
            audio, problem = None, f"the {name} generator failed at bar {job.bar}: {type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - started
        shaped = self._shape(session, audio, None if job.kind == "stretch" else work, job)
        with self._cond:
            session.in_flight.discard((job.target.epoch, job.bar))
            if job.kind == "stretch":
                self.estimates.add(planner.stretch_key(session), elapsed)
            elif work is not None and problem is None:
                self.estimates.add(planner.generation_key(session, job.crossing), elapsed)
            table = session.table(job.target.epoch)
            if session.closed or session.version != job.version or table is None:
                return
            if problem:
                self._report(session, problem, retry_after=1.0)
                return
            try:
                self._finish(job, work, audio, made, shaped, name, table, grid_seq)
            except Exception as exc:
                self._quarantine(session, f"placing the window of bar {job.bar}", exc)

    @staticmethod
    def _shape(session: Session, audio: np.ndarray | None, request, job: Job) -> np.ndarray | None:
        """[_cond not held] The window through the session's Sound (a preset's FX chain and gain),
        warmed up on its context; None when there is nothing to do or the chain failed (the
        window then plays as generated: nothing is lost)."""
        if audio is None or session.sound.neutral:
            return None
        try:
            return session.sound.process(audio, session.sample_rate, None if request is None else request.context,
                                         job.target.start)
        except Exception as exc:  # a chain pedalboard refuses at this rate must not stop the music
            warn_rarely(session, "fx", time.monotonic(), log, "the preset's FX chain failed at bar %d (%s: %s); "
                        "windows play without it", job.bar, type(exc).__name__, exc)
            return None

    def _report(self, session: Session, message: str, retry_after: float) -> None:
        """A generator problem: logged and reported once while it lasts; the session retries later."""
        if session.problem != ("generator", message):
            log.error("session %016x: %s", session.instance, message)
            self._on_problem(session, "generator", message)
        session.problem = ("generator", message)
        session.blocked_until = time.monotonic() + retry_after

    def _quarantine(self, session: Session, doing: str, exc: Exception) -> None:
        """[_cond held] A bug while `doing` something for one session: that session makes no
        windows for QUARANTINE_SECONDS (reported once, with the traceback in the log), the others
        go on; afterwards it is tried again."""
        message = (f"the engine failed {doing} ({type(exc).__name__}: {exc}); this session pauses "
                   f"{QUARANTINE_SECONDS:g} s")
        if session.problem != ("internal", message):
            log.error("session %016x: %s", session.instance, message, exc_info=exc)
            self._on_problem(session, "internal", message)
        session.problem = ("internal", message)
        session.blocked_until = time.monotonic() + QUARANTINE_SECONDS

    def _finish(self, job: Job, work, audio: np.ndarray | None, made: Grid | None, shaped: np.ndarray | None,
                name: str, table: dict[int, Window], grid_seq: int) -> None:
        """Place the result where the current grid wants it now (the grid may have moved while
        it was made) and log it."""
        s, grid = job.session, job.session.grid
        target = next((t for t in planner.targets(s) if (t.epoch, t.bar) == (job.target.epoch, job.bar)), None)
        if target is None:
            return          # the playhead or the loop moved on meanwhile
        old = table.get(job.bar)
        playing = old is not None and old.window_id and old.start <= s.playhead and target.epoch == s.epoch
        switch = None
        if job.kind == "stretch":
            stood_in, _, _ = work
            if old is not stood_in:
                return      # remade or dropped meanwhile
            window = Window(job.bar, WindowKind.STRETCHED, audio, made, window_id=old.window_id,
                            stretched_at=time.monotonic(), shaped=shaped)
            if playing:
                switch = self._switch_point(s, job.from_sample), old.in_slots
        else:
            request = work
            if audio is not None and audio.shape != (s.channels, request.frames + request.tail_frames):
                self._report(s, f"the {name} generator returned shape {audio.shape}; "
                             f"expected ({s.channels}, {request.frames + request.tail_frames})", retry_after=1.0)
                return
            meter = (grid.tsig_num, grid.tsig_den)
            if job.from_bar is not None:
                if old is None or not playing:
                    return
                at = grid.bar_start_sample(job.from_bar)
                if at <= self._switch_point(s, s.playhead):
                    return  # the bar line it was made from has come: too late for it too
                # its audio up to there (as made and as shaped), then the remake of the bars from there
                head = lambda new, own: np.concatenate([fit(own, at - old.start), new], axis=1)  # noqa: E731
                window = Window(job.bar, WindowKind.GENERATED, head(audio, old.audio), placed_on(grid, old.start, old.made),
                                window_id=old.window_id,
                                shaped=None if shaped is None else head(shaped, old.published_audio))
                switch = at, old.in_slots
            elif playing:
                return      # too late to replace the stand-in: it is playing
            elif audio is None:
                window = Window(job.bar, WindowKind.PREROLL, np.zeros((s.channels, target.frames), np.float32),
                                made_for(grid, job.bar, grid.tempo_bpm, meter))
            else:
                window = Window(job.bar, WindowKind.GENERATED, audio, made_for(grid, job.bar, request.tempo_bpm, meter),
                                shaped=shaped)
            if old is not None:
                window.window_id = old.window_id
        unplayed = s.playhead if target.epoch == s.epoch else target.start
        window.stale = window.drift(grid, target.start, target.frames, unplayed) > s.drift_tolerance()
        window.grid = grid_seq if window.stale else s.grid_seq
        now = time.monotonic()
        late = now > target.deadline and not job.urgent and not s.offline
        if not placement.place(s, window, target, job.kind, self._on_window, switch=switch, generator=name,
                               input_missing=job.input_missing, late=late,
                               seed=None if job.kind == "stretch" or work is None else work.seed,
                               lead_seconds=round(target.deadline - now, 4)):
            return
        table[job.bar] = window
        placement.republish_next(s, target.epoch, window, self._on_window)
        s.late += late
        s.published += 1
        span = s.setting("window_bars")
        oldest_needed = window_bar(grid.bar_at_sample(s.playhead), span) - s.setting("context_bars") - span
        for bar in [b for b in s.windows if b < oldest_needed]:
            del s.windows[bar]

    @staticmethod
    def _switch_point(s: Session, at: int) -> int:
        """Where a replacement of a playing window may take over: offline the shim waits at
        `at` (where the grid changed); realtime not before the block the shim plays after the
        slots are written, with a margin."""
        if s.offline:
            return at
        projected = s.playhead + round((time.monotonic() - s.playhead_wall + SWITCH_MARGIN) * s.sample_rate)
        return max(at, projected)


def stand_in(window: Window, grid: Grid, start: int, frames: int, from_sample: int, channels: int
             ) -> tuple[np.ndarray, Grid]:
    """(audio, made) of a stand-in for `window` placed at [start, start + frames) of `grid`:
    its own audio up to from_sample, then its music from the beat the grid has there on, each
    16th note moved to where the grid now has it (dsp.regrid: attacks on the new grid, pitch
    kept). [any-thread] (pure)"""
    cut = min(max(0, from_sample - start), frames)
    needed = frames - cut + max(0, window.audio.shape[1] - window.frames)
    beat = grid.beat_at_sample(start + cut)
    lines = [beat]
    while grid.sample_at_beat(lines[-1]) - (start + cut) < needed:
        lines.append(math.floor(lines[-1] * 4 + 1e-6) / 4 + 0.25)     # the next 16th (a hair's breadth: this one)
    source = np.array([window.made.sample_at_beat(b) for b in lines], float)
    target = np.array([0] + [grid.sample_at_beat(b) - (start + cut) for b in lines[1:]], float)
    tail = regrid(window.audio, source, target, needed, grid.sample_rate)
    return np.concatenate([fit(window.audio, cut), tail], axis=1)[:channels], placed_on(grid, start, window.made)


def placed_on(grid: Grid, start: int, made: Grid) -> Grid:
    """The `made` map of audio that follows the grid from song sample `start` on (index 0
    there): a stand-in is right for the grid except where it has already played (at most the
    block in which the change arrived). [any-thread] (pure)"""
    first = grid.segment_at_sample(start)
    later = tuple(Segment(seg.sample - start, seg.beat, seg.tempo) for seg in grid.segments if seg.sample > start)
    return Grid(grid.sample_rate, (Segment(0, grid.beat_at_sample(start), first.tempo),) + later, made.meters)
