"""The engine's scheduling front: sessions in, windows out.

Per session the engine keeps the playhead's window and `lookahead` windows after it generated
(or in flight): up to the loop end and, with an active loop, on from the loop start in the next
epoch. All sessions share one earliest-deadline-first queue served by a single worker thread,
so the socket thread only records what arrived and never waits for a model. The data path, one
file each (docs/architecture.md):

    transport_state  what a transport / input block / parameter change does to a session
    timeline         the session's bar grid
    planner          which windows, when, in what order (pure, `now` passed in)
    context          the WindowRequest a window is made from
    placement        where a window goes, seams, publishing through the session's Publisher
    worker           the thread that runs jobs

Threads: the socket thread calls add/remove/on_* ([main-thread] of the server); the worker
thread runs jobs. Both hold `_cond` while touching session state; generating and
time-stretching run with the lock released.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from engine import planner, transport_state
from engine.generators import GeneratorPool
from engine.input_budget import DEFAULT_TOTAL_MB, InputBudget
from engine.planner import Estimates
from engine.session import InputStore, Session
from engine.transport import InputBlock, TransportSnapshot
from engine.worker import Worker

log = logging.getLogger("livediff.scheduler")
HOLD_SECONDS = 10.0     # offline: the longest a grid change waits for its window (the shim waits 60 s)
HOLD_MESSAGES = 20000   # ... and the most messages held behind it (~20 s of 1024-frame blocks)


class Scheduler:
    def __init__(self, on_window: Callable[[Session, dict], None] = lambda s, e: None,
                 on_problem: Callable[[Session, str, str], None] = lambda s, kind, m: None,
                 generators: GeneratorPool | None = None, max_input_mb: float = DEFAULT_TOTAL_MB):
        self._cond = threading.Condition()
        self._sessions: dict[int, Session] = {}
        self.input_budget = InputBudget.megabytes(max_input_mb)   # received input of all sessions
        self.generators = generators or GeneratorPool()
        self.estimates = Estimates()
        self._on_window = on_window
        self._worker = Worker(self._cond, self._sessions, self.generators, self.estimates, on_window, on_problem)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        with self._cond:
            self._worker.stopped = True
            self._cond.notify_all()
        self._worker.join()
        self.generators.join()

    # [main-thread]
    def add(self, session: Session) -> None:
        with self._cond:
            self._sessions[session.instance] = session
            for store in self._budgeted(session):
                store.budget = self.input_budget
                self.input_budget.add(store)
            self._cond.notify_all()
        # Load on hello, not on the first transport: a client may wait for "ready" before playing.
        self._worker.generator_ready(session.generator_name)

    # [main-thread]
    def remove(self, instance: int) -> Session | None:
        """Forget a session; the caller closes its store (the worker never touches it again)."""
        with self._cond:
            session = self._sessions.pop(instance, None)
            if session:
                session.closed = True
                for store in self._budgeted(session):
                    self.input_budget.remove(store)
                    store.budget = None
            return session

    @staticmethod
    def _budgeted(session: Session) -> list[InputStore]:
        """The session's stores of received input (a sidechain file stands in for one, costs nothing)."""
        return [store for store in session.inputs.values() if isinstance(store, InputStore)]

    # [main-thread]
    def on_params(self, session: Session, params: dict[str, float | str]) -> None:
        self._receive(session, params, time.monotonic())

    # [main-thread]
    def on_transport(self, session: Session, transport: TransportSnapshot, now: float) -> None:
        self._receive(session, transport, now)

    # [main-thread]
    def on_audio(self, session: Session, block: InputBlock) -> None:
        self._receive(session, block, time.monotonic())

    # [main-thread]
    def release_held(self, now: float) -> None:
        """Apply what waited behind an offline grid change whose window is made now (call it often)."""
        with self._cond:
            for session in self._sessions.values():
                if session.held:
                    self._release(session, now)
            self._cond.notify_all()

    def _receive(self, session: Session, message, now: float) -> None:
        with self._cond:
            session.held.append(message)
            self._release(session, now)
            self._cond.notify_all()

    def _release(self, session: Session, now: float) -> None:
        """[_cond held] Apply the session's messages in order. Offline, a transport that changes
        the grid waits (with what came after it) while the window it will find playing is still
        to be made for the old grid, as realtime always has it: then that window is stretched to
        the new grid whatever the timing, and two bounces are the same (docs/scheduling.md)."""
        while session.held:
            message = session.held[0]
            if isinstance(message, TransportSnapshot) and self._waits(session, message):
                if session.held_since is None:
                    session.held_since = now
                if now - session.held_since < HOLD_SECONDS and len(session.held) <= HOLD_MESSAGES:
                    return
                log.warning("session %016x: a tempo, meter or loop change at sample %d waited %.1f s for the "
                            "window playing there; applied without it (this bounce may differ from another)",
                            session.instance, message.pos_samples, now - session.held_since)
            session.held.popleft()
            if isinstance(message, TransportSnapshot):
                session.held_since = None
                transport_state.on_transport(session, message, now, self._on_window)
            elif isinstance(message, InputBlock):
                transport_state.on_audio(session, message)
            else:
                transport_state.on_params(session, message)

    def _waits(self, session: Session, t: TransportSnapshot) -> bool:
        return (t.offline and t.epoch == session.epoch and t.grid != session.grid_seq
                and planner.unmade_before_change(session, t.pos_samples, self._worker.generator_ready))
