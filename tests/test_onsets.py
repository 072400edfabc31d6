"""The onset detector every grid measure counts with (representation.onset_times), checked
against songs whose scores say where each sound starts."""
from __future__ import annotations

import numpy as np
import pytest

from engine import long_eval
from engine import representation as rep
from engine.evaluate import GRID_TOLERANCE_S
from engine.music import GM_DRUMS, render_song
from engine.styles import load_styles

BARS = 12


def _song(i: int, score: list):
    tempo, tsig = long_eval.SONGS[i]
    return render_song(load_styles()[i % len(load_styles())], tempo, tsig, BARS, long_eval.SEED + i,
                       tail_sixteenths=0, sample_rate=long_eval.HOST_RATE, stereo=True, score=score)


@pytest.mark.parametrize("i", range(len(long_eval.SONGS)))
def test_onsets_are_where_the_score_starts_a_sound(i):
    score: list = []
    song = _song(i, score)
    # the synthesised kick stops dead after 2.5 16ths: that click is a sound too
    events = {n.start for n in score} | {n.start + n.length for n in score
                                         if n.part == "drums" and n.pitch == GM_DRUMS["kick"]}
    events = np.array(sorted(events)) / long_eval.HOST_RATE
    onsets = rep.onset_times(long_eval.mid_model_rate(song.audio))
    at_an_event = np.mean([np.min(np.abs(events - t)) <= 0.03 for t in onsets])
    # plain log-mel flux: 0.90 in the 3/4 song at 76 BPM (swells of its pads and lead)
    assert len(onsets) >= BARS and at_an_event >= 0.97, f"{at_an_event:.1%} of {len(onsets)} onsets at a sound's start"


def test_onsets_between_the_16ths_are_still_found():
    """The glide suppression hides nothing: the same song with every other bar played a 32nd
    late has those bars' onsets off the grid."""
    song = _song(2, [])
    lines = long_eval.bar_lines(song, BARS)
    shift = int(round(7.5 / song.tempo_bpm * long_eval.HOST_RATE))
    audio = song.audio[:, :lines[BARS]].copy()
    for bar in range(1, BARS, 2):
        lo, hi = lines[bar], lines[bar + 1]
        audio[:, lo:hi] = np.pad(song.audio[:, lo:hi - shift], ((0, 0), (shift, 0)))
    onsets = rep.onset_times(long_eval.mid_model_rate(audio))
    sixteenth = 15.0 / song.tempo_bpm
    on_the_grid = np.abs(onsets - np.round(onsets / sixteenth) * sixteenth) <= GRID_TOLERANCE_S
    in_a_late_bar = np.searchsorted(lines, np.round(onsets * long_eval.HOST_RATE), side="right") % 2 == 0
    on_time, late = on_the_grid[~in_a_late_bar], on_the_grid[in_a_late_bar]
    assert on_time.mean() >= 0.9 and late.mean() <= 0.1, f"on the grid: {on_time.mean():.0%} on time, {late.mean():.0%} late"
    assert len(late) >= 0.8 * len(on_time)
