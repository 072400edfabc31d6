"""Which windows to make, when, and in what order: pure functions of the sessions' state and a
clock passed in as `now` (tests assert plans, no sleeps). Nothing here publishes, generates or
starts a thread. docs/scheduling.md explains the rules: targets, context horizon, deadlines
from measured estimates, stand-ins after tempo changes, priorities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from engine.publisher import WindowKind
from engine.session import Session, Target
from engine.timeline import horizon_bar, window_bar

ESTIMATE_SAFETY = 1.5          # a job is due `ESTIMATE_SAFETY * estimate + ESTIMATE_MARGIN` before its deadline
ESTIMATE_MARGIN = 0.02
FIRST_ESTIMATE = 0.25          # generation-time guess (s) before anything was measured
STRETCH_INTERVAL = 0.5         # realtime: a playing stand-in is stretched again at most this often (ramps)


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


def generation_key(session: Session, crossing: bool = False) -> tuple:
    """Estimates of making a window, apart for windows whose context must first be brought to
    their bar length (heard at another tempo or meter)."""
    return session.generator_name, session.setting("window_bars"), crossing


def estimate_key(session: Session, estimates: "Estimates", crossing: bool) -> tuple:
    """The key to plan with: a crossing window's own estimate once measured, the plain one before."""
    key = generation_key(session, crossing)
    return key if estimates.measured(key) is not None else generation_key(session)


def crossing(s: Session, bar: int, horizon: int) -> bool:
    """Some context bar of window `bar` was played at another tempo or meter than the grid's now."""
    grid = s.grid
    first = grid.bar_span_beats(min(bar, horizon) - s.setting("context_bars"))[0]
    return first < grid.meter.beat or grid.segment_at_beat(first) is not grid.segments[-1]


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
    from_bar: int | None = None   # generate: remake only from this bar line on (the window is playing)
    from_sample: int = 0          # stretch: the stand-in follows the new grid from this sample on
    crossing: bool = False        # generate: its context crosses a tempo or meter change (planner.crossing)

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
    the loop start in the next epoch (the wrap is predicted, never what lies past the end). A
    loop the host never announced (a jump back it made, s.loop_inferred) may not come again:
    its end is not clipped and the window after it is made too, so the playhead never waits
    at a loop end that the host plays through."""
    grid, span = s.grid, s.setting("window_bars")
    loop = s.loop_samples()
    clip = loop is not None and not s.loop_inferred
    out: list[Target] = []
    count = lookahead(s) + 1
    bar = window_bar(grid.bar_at_sample(s.playhead), span)
    seconds = lambda sample: s.playhead_wall + (sample - s.playhead) / s.sample_rate  # noqa: E731
    playing = s.windows.get(bar)
    while len(out) < count:
        start, end = grid.bar_start_sample(bar), grid.bar_start_sample(bar + span)
        if loop and start >= loop[1] and (clip or start - loop[1] >= end - start):
            break
        entry = 0
        if playing is not None and bar == playing.bar and playing.start <= s.playhead:
            start, entry = playing.start, playing.entry   # it is playing: only its end may move
        end = min(end, loop[1]) if clip else end
        out.append(Target(s.epoch, bar, start, end - start, entry, seconds(start + entry)))
        bar += span
        if loop and not clip and start >= loop[1]:
            count += 1      # the window after an unannounced loop end is made besides the wrap's
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


def context_settled(s: Session, table: dict, bar: int, horizon: int) -> bool:
    """The session's own windows that window `bar` hears (its bars from the horizon on) are
    final: none is waiting to be stretched or remade. Offline waits for that, so what a
    window is made from does not depend on timing."""
    span = s.setting("window_bars")
    for b in range(window_bar(horizon, span), bar, span):
        window = table.get(b)
        if window is not None and (window.stale or (s.epoch, b) in s.in_flight):
            return False
    return True


def input_missing(s: Session, target: Target, horizon: int) -> bool:
    """Input the window's context is heard from has not all arrived (a preroll window needs none)."""
    grid = s.grid
    heard_horizon = s.heard_at(target.epoch, horizon - 1) + 1
    if grid.bar_start_beat(heard_horizon) <= 1e-9:
        return False
    # Input before the epoch began (a seek) will not come again: what was stored is all there is.
    # A window after a predicted wrap hears this epoch's input; one whose context was
    # heard in a pass before the wrap has it all.
    needed = grid.bar_start_sample(heard_horizon)
    if heard_horizon != horizon:    # heard up to the loop end (a loop may end off a bar line)
        needed = min(needed, grid.sample_at_beat(s.loop[1]))
    return (needed > s.epoch_start and s.input_end.get(s.epoch, -math.inf) < needed
            and (target.epoch != s.epoch or heard_horizon == horizon))


def unmade_before_change(s: Session, sample: int, generator_ready: Callable[[str], bool]) -> bool:
    """Offline, before a change of the grid from `sample` on is applied: the window the playhead
    will be in there is not made yet, and only time stands in its way (it is being made, or its
    input is in). Realtime made that window `lookahead` windows ahead, long before the change
    reached it, and then stretches it; an offline shim can get there first, and the window would
    be made for the new grid instead, depending on timing (docs/scheduling.md, "Tempo changes")."""
    grid = s.grid
    if s.closed or not s.playing or grid is None or not generator_ready(s.generator_name):
        return False
    span = s.setting("window_bars")
    bar = window_bar(grid.bar_at_sample(sample), span)
    if bar in s.windows:
        return False
    if (s.epoch, bar) in s.in_flight:
        return True
    target = next((t for t in targets(s) if t.epoch == s.epoch and t.bar == bar), None)
    return target is not None and not input_missing(s, target, horizon_bar(bar, s.setting("lookahead"), span))


def pending(s: Session, now: float, estimates: Estimates, generator_ready: Callable[[str], bool]
            ) -> list[tuple[Job, float]]:
    """(job, earliest start) for the session: windows missing from the targets, stand-ins to
    stretch, stand-ins to remake. Expects the windows placed for the current grid already
    (transport_state does that when a transport arrives)."""
    grid = s.grid
    if s.closed or not s.playing or grid is None or now < s.blocked_until:
        return []
    if not generator_ready(s.generator_name):
        return []
    span, look = s.setting("window_bars"), s.setting("lookahead")
    jobs = []
    for target in targets(s):
        if (target.epoch, target.bar) in s.in_flight:
            continue
        table = s.table(target.epoch)
        window = table.get(target.bar)
        horizon = horizon_bar(target.bar, look, span)
        heard_horizon = s.heard_at(target.epoch, horizon - 1) + 1      # where its track context ends
        preroll = grid.bar_start_beat(heard_horizon) <= 1e-9
        crosses = not preroll and crossing(s, target.bar, horizon)
        estimate = estimate_key(s, estimates, crosses)
        urgent = target.deadline <= s.playhead_wall and target.epoch == s.epoch
        if s.offline and not preroll and not context_settled(s, table, target.bar, horizon):
            continue
        if window is None:
            ends = target.deadline + target.frames / s.sample_rate
            if not s.offline and ends < now + estimates.seconds(estimate):
                continue    # it would be ready only after the playhead has left it: make a later one
            missing = input_missing(s, target, horizon)
            job = Job(s, target, horizon, preroll, missing, s.version, urgent=urgent, crossing=crosses)
            # Offline always waits for the input; realtime gives up waiting when the deadline nears.
            earliest = (now if not missing else math.inf if s.offline
                        else target.deadline - estimates.budget(estimate))
            jobs.append((job, earliest))
        elif window.stale or window.kind is WindowKind.STRETCHED:
            jobs += stand_in_jobs(s, target, window, horizon, preroll, crosses, now, estimates)
    return jobs


def stand_in_jobs(s: Session, target: Target, window, horizon: int, preroll: bool, crosses: bool, now: float,
                  estimates: Estimates) -> list[tuple[Job, float]]:
    """What a stand-in needs: a window placed for a grid it was not made for (stale) or one
    stretched for it (docs/scheduling.md, "Tempo changes"). Playing and stale: stretched from
    where the grid changed, at once (realtime: at most every STRETCH_INTERVAL); realtime also
    remakes it from the next bar line inside it that a remake can still reach. Ahead: offline
    a remake at once; realtime a remake at the last moment that still makes it (under a ramp,
    once, at the latest tempo), else, if stale, a stretched stand-in if that still makes it."""
    grid, span = s.grid, s.setting("window_bars")
    estimate = estimate_key(s, estimates, crosses)
    stretchable = window.meter == (grid.tsig_num, grid.tsig_den)
    # a stand-in stretched again (a ramp) does not go before the remakes ahead
    stretch = lambda from_sample: Job(s, target, horizon, False, False, s.version, "stretch",  # noqa: E731
                                      urgent=window.kind is not WindowKind.STRETCHED, from_sample=from_sample)
    if window.start <= s.playhead and target.epoch == s.epoch:
        jobs = []
        if window.stale and stretchable and (s.offline or now - window.stretched_at >= STRETCH_INTERVAL):
            jobs.append((stretch(max(s.changed_at, window.start)), now))
        if not s.offline:
            reach = s.playhead + round((now - s.playhead_wall + estimates.budget(estimate)) * s.sample_rate)
            later = [b for b in range(target.bar + 1, target.bar + span) if grid.bar_start_sample(b) > reach]
            if later:
                jobs.append((Job(s, target, horizon, preroll, False, s.version, from_bar=later[0], crossing=crosses),
                             now))
        return jobs
    remake = Job(s, target, horizon, preroll, False, s.version, crossing=crosses)
    budget = estimates.budget(estimate)
    if s.offline:
        return [(remake, now)]
    if target.deadline - now >= budget - ESTIMATE_MARGIN:
        return [(remake, target.deadline - budget)]
    if window.stale and stretchable and target.deadline - now >= estimates.seconds(stretch_key(s)):
        return [(stretch(target.start), now)]
    return []


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
