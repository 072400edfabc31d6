"""Which windows to make, when, and in what order: pure functions of the sessions' state and a
clock passed in as `now` (tests assert plans, no sleeps). Nothing here publishes, generates or
starts a thread. docs/scheduling.md explains the rules: targets, context horizon, deadlines
from measured estimates, stand-ins after tempo changes, priorities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from engine.session import Session, Target
from engine.timeline import horizon_bar, window_bar

ESTIMATE_SAFETY = 1.5          # a job is due `ESTIMATE_SAFETY * estimate + ESTIMATE_MARGIN` before its deadline
ESTIMATE_MARGIN = 0.02
FIRST_ESTIMATE = 0.25          # generation-time guess (s) before anything was measured


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


def generation_key(session: Session) -> tuple:
    return session.generator_name, session.setting("window_bars")


def stretch_key(session: Session) -> tuple:
    return "stretch", session.sample_rate, session.setting("window_bars")


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


def lookahead(session: Session) -> int:
    """The lookahead parameter, capped so the playhead's window and those ahead fit the store."""
    grid = session.grid
    frames = grid.bar_start_sample(session.setting("window_bars")) - grid.bar_start_sample(0)
    slots_per_window = -(-frames // session.store.capacity)
    fits = session.store.slot_count // slots_per_window - 1
    return max(0, min(session.setting("lookahead"), fits))


def targets(s: Session) -> list[Target]:
    """The playhead's window and `lookahead` after it: clipped at the loop end, then on from
    the loop start in the next epoch (the wrap is predicted, never what lies past the end)."""
    grid, span = s.grid, s.setting("window_bars")
    loop = s.loop_samples()
    out: list[Target] = []
    count = lookahead(s) + 1
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


def pending(s: Session, now: float, estimates: Estimates, generator_ready: Callable[[str], bool]
            ) -> list[tuple[Job, float]]:
    """(job, earliest start) for the session: windows missing from the targets, stand-ins to
    stretch, stand-ins to remake. Expects the windows placed for the current grid already."""
    grid = s.grid
    if s.closed or not s.playing or grid is None or now < s.blocked_until:
        return []
    if not generator_ready(s.generator_name):
        return []
    span, look = s.setting("window_bars"), s.setting("lookahead")
    estimate = generation_key(s)
    jobs = []
    for target in targets(s):
        if (target.epoch, target.bar) in s.in_flight:
            continue
        window = s.table(target.epoch).get(target.bar)
        horizon = horizon_bar(target.bar, look, span)
        preroll = grid.bar_start_beat(horizon) <= 1e-9
        urgent = target.deadline <= s.playhead_wall and target.epoch == s.epoch
        if window is None:
            ends = target.deadline + target.frames / s.sample_rate
            if not s.offline and ends < now + estimates.seconds(estimate):
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
                        else target.deadline - estimates.budget(estimate))
            jobs.append((job, earliest))
        elif window.regenerate and (window.start > s.playhead or target.epoch != s.epoch):
            remake = Job(s, target, horizon, preroll, False, s.version)
            budget = estimates.budget(estimate)
            if s.offline:
                jobs.append((remake, now))
            elif target.deadline - now >= budget - ESTIMATE_MARGIN:
                # Remade at the last moment that still makes it: under a ramp, once, at the latest tempo.
                jobs.append((remake, target.deadline - budget))
            elif (window.meter == (grid.tsig_num, grid.tsig_den) and not window.fits(grid)
                  and target.deadline - now >= estimates.seconds(stretch_key(s))):
                jobs.append((Job(s, target, horizon, False, False, s.version, "stretch", urgent=True), now))
    return jobs


def priority(job: Job, estimates: Estimates) -> tuple[int, float]:
    """Class, then deadline: what the playhead is already in (a start or seek) and stand-ins
    go first, and a session whose generator cannot keep up with its windows goes last, so it
    cannot starve the others."""
    s = job.session
    window_seconds = job.target.frames / s.sample_rate
    measured = estimates.measured(generation_key(s))
    overloaded = measured is not None and measured > window_seconds
    return (0 if job.urgent and not overloaded else 2 if overloaded else 1), job.deadline


def next_job(plans: Iterable[tuple[Job, float]], now: float, estimates: Estimates) -> tuple[Job | None, float]:
    """Earliest deadline first (by priority) among jobs whose start time has come; else None
    and how long to wait for the next one (at most 0.1 s)."""
    plans = list(plans)
    ready = [job for job, earliest in plans if earliest <= now]
    if ready:
        return min(ready, key=lambda job: priority(job, estimates)), 0.0
    soonest = min((earliest - now for _, earliest in plans), default=0.1)
    return None, min(0.1, max(0.002, soonest))
