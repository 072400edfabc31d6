"""Context assembly: the WindowRequest a job's window is generated from. Window b hears the
context_bars bars before it: the track's audio before its horizon, the session's own windows
from the horizon on (docs/scheduling.md, "Context"). [worker-thread, scheduler lock held]"""
from __future__ import annotations

from typing import Callable

import numpy as np

from engine import context_source
from engine.anchoring import sounds
from engine import representation as rep
from engine.dsp import SEAM_SECONDS, fit, to_length
from engine.generator import WindowRequest
from engine.planner import Job
from engine.publisher import WindowKind
from engine.session import Session, Window
from engine.timeline import round_half_up, window_bar

_MASK64 = (1 << 64) - 1
BROUGHT_CACHE = 32             # context bars kept brought to a bar length, per session
MEMORY_BARS = 128              # how far back the track's last sound is looked for (and the ~3 min of input kept)


def window_seed(session_seed: int, bar: int) -> int:
    """splitmix64 of (session seed, bar index): a window's seed depends on where it is, not on
    when or in what order it was generated."""
    x = ((((session_seed & 0xFFFFFFFF) << 32) | (bar & 0xFFFFFFFF)) + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) & 0x7FFFFFFF


def context_sources(bar: int, horizon: int, context_bars: int, has_generated: Callable[[int], bool]) -> list[tuple[int, str]]:
    """(bar, "input" | "generated") for each context bar of window `bar`.

    Bars before the horizon come from input, bars from the horizon on from generated windows;
    when one of those was never generated (right after start or a seek) the context is instead
    the context_bars bars of input ending at the horizon."""
    bars = range(bar - context_bars, bar)
    if all(b < horizon or has_generated(b) for b in bars):
        return [(b, "input" if b < horizon else "generated") for b in bars]
    return [(b, "input") for b in range(horizon - context_bars, horizon)]


def input_bars(context_bars: int) -> int:
    """Bars of the track alone a window is given (WindowRequest.input_context): its context, and
    at least two phrases, so that a generator can continue the track from the bar one phrase
    back, or two where the bar one phrase back is a break."""
    return max(context_bars, 2 * rep.PHRASE_BARS)


def memory_bars(context_bars: int) -> int:
    """Sounding bars of the track a window is given as its memory (WindowRequest.track_memory):
    its context, and at least a phrase."""
    return max(context_bars, rep.PHRASE_BARS)


def bar_frames(beats: float, tempo: float, sample_rate: int) -> int:
    return round_half_up(beats * 60.0 * sample_rate / tempo)


def brought_to(audio: np.ndarray, marks: np.ndarray, beats: float, tempo: float, bar_beats: float,
               sample_rate: int) -> np.ndarray:
    """A bar of `beats` beats whose 16th notes are at `marks`, brought to a bar of `bar_beats`
    beats at `tempo`: first to that tempo (its 16th notes laid on the new grid, dsp.to_length),
    then cut or continued to the meter's length in beats (a 4/4 bar heard before a 7/8 one gives
    its first 3.5 beats)."""
    at_tempo = to_length(audio, bar_frames(beats, tempo, sample_rate), sample_rate, marks)
    return fit(at_tempo, bar_frames(bar_beats, tempo, sample_rate))


def sixteenths(to_sample: Callable[[float], int], first: float, last: float) -> np.ndarray:
    """Where a bar's 16th notes are, from its start, by a beat -> sample map."""
    start = to_sample(first)
    return np.array([to_sample(first + k / 4) - start for k in range(max(1, round((last - first) * 4)))], float)


def input_bar(session: Session, source: str, bar: int) -> tuple[np.ndarray, np.ndarray, float, tuple]:
    """(audio, 16th marks, beats, cache key) of what `source` (context_source.SOURCES) played in
    `bar`, between the bar lines it was played at (the tempo map and meter of then)."""
    grid = session.grid
    first, last = grid.bar_span_beats(bar)
    audio = context_source.read_bar(session, source, bar)
    start = grid.sample_at_beat(first)
    return (audio, sixteenths(grid.sample_at_beat, first, last), last - first,
            (source, start, audio.shape[1], context_source.version(session, source, start, audio.shape[1])))


def generated_bar(session: Session, table: dict[int, Window], bar: int
                  ) -> tuple[np.ndarray, np.ndarray, float, tuple] | None:
    """(audio, 16th marks, beats, cache key) of the generator's own audio of `bar` (not the
    baked seam), between the bar lines it was made for."""
    window = table.get(window_bar(bar, session.setting("window_bars")))
    if window is None or window.kind is WindowKind.PREROLL:
        return None
    first, last = session.grid.bar_span_beats(bar)
    start, end = window.made.sample_at_beat(first), window.made.sample_at_beat(last)
    return (fit(window.audio[:, start:], end - start), sixteenths(window.made.sample_at_beat, first, last),
            last - first, ("made", window.window_id, start, end))


def bring(session: Session, bars: list[tuple[np.ndarray, np.ndarray, float, tuple]], tempo: float,
          bar_beats: float) -> np.ndarray:
    """Context bars brought to one bar length each and joined. [worker-thread, lock released]:
    the session's cache of brought bars is the worker's alone (a bar is heard by several
    windows, and each is stretched once)."""
    out = []
    for audio, marks, beats, key in bars:
        key += (beats, tempo, bar_beats)
        if key not in session.brought:
            if len(session.brought) >= BROUGHT_CACHE:
                session.brought.pop(next(iter(session.brought)))
            session.brought[key] = brought_to(audio, marks, beats, tempo, bar_beats, session.sample_rate)
        out.append(session.brought[key])
    return np.concatenate(out, axis=1)


def track_memory(session: Session, key: tuple, horizon: int, count: int, sounds_at: Callable[[int], bool]) -> list[int]:
    """The newest `count` bars before `horizon`, at most MEMORY_BARS back, in which the track
    sounded, oldest first. [scheduler lock held] The session keeps what it found up to the
    last horizon of the same `key` (source, epoch, count), so windows that follow scan only
    their new bars; the answer is the same as a full scan's."""
    lowest = horizon - MEMORY_BARS
    if session.memory is not None and session.memory[0] == key and session.memory[1] <= horizon:
        _, scanned, found = session.memory
    else:
        scanned, found = lowest, ()
    found = [b for b in (*found, *(b for b in range(max(scanned, lowest), horizon) if sounds_at(b))) if b >= lowest]
    session.memory = (key, horizon, tuple(found[-count:]))
    return found[-count:]


def gather(job: Job) -> Callable[[], WindowRequest]:
    """[scheduler lock held] What the job's window is made from, collected quickly; the
    returned function brings every bar to the window's bar length and builds the request
    (time-stretching takes long: call it with the lock released). A remake from a bar line
    inside a playing window (job.from_bar) asks for the bars from there on, heard as if the
    window started there."""
    s, grid = job.session, job.session.grid
    span, context_bars, tempo, rate = s.setting("window_bars"), s.setting("context_bars"), grid.tempo_bpm, s.sample_rate
    first = job.bar if job.from_bar is None else job.from_bar
    horizon = job.horizon + first - job.bar
    table = s.table(job.target.epoch)
    heard = context_source.source_at(s, horizon)         # main, sidechain or both: for the whole window
    context_source.in_use(s, heard, horizon)
    epoch = job.target.epoch
    # after a loop wrap, bars never heard before the loop start are those that played before the
    # wrap, and the session's own bars come from this pass, else the pass before it
    passes = [table] + ([s.windows] if epoch != s.epoch else []) + [s.history]
    own = lambda b: next(filter(None, (generated_bar(s, t, s.heard_at(epoch, b)) for t in passes)), None)  # noqa: E731
    track_bar = lambda b: input_bar(s, heard, s.heard_at(epoch, b))  # noqa: E731
    sources = context_sources(first, horizon, context_bars, lambda b: own(b) is not None)
    parts = [track_bar(b) if source == "input" else own(b) for b, source in sources]
    track = [track_bar(b) for b in range(horizon - input_bars(context_bars), horizon)]
    remembered = track_memory(s, (heard, epoch, context_bars), horizon, memory_bars(context_bars),
                              lambda b: context_source.bar_sounds(s, heard, s.heard_at(epoch, b)))
    memory = [(b, bar) for b, bar in ((b, track_bar(b)) for b in remembered)
              if sounds(bar[0])]                          # fell out of the input kept since
    frames = grid.bar_start_sample(job.bar + span) - grid.bar_start_sample(first)
    steps, variation = s.sound.steps, s.setting("variation") / 100
    return lambda: WindowRequest(
        context=bring(s, parts, tempo, grid.bar_beats), sample_rate=rate, tempo_bpm=tempo, tsig_num=grid.tsig_num,
        tsig_den=grid.tsig_den, context_bars=context_bars, bars=job.bar + span - first, frames=frames,
        tail_frames=round(SEAM_SECONDS * rate), style=s.setting("style"), seed=window_seed(s.setting("seed"), first),
        bar_index=first, input_context=bring(s, track, tempo, grid.bar_beats), input_gap_bars=first - horizon,
        track_memory=bring(s, [bar for _, bar in memory], tempo, grid.bar_beats) if memory else None,
        track_memory_bars=tuple(b for b, _ in memory) if memory else None, steps=steps,
        variation=variation)
