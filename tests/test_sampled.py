"""Procedural songs through sampled General MIDI instruments (needs Debian's fluidsynth and
fluid-soundfont-gm; skipped where they are not installed)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine import long_eval
from engine.music import GM_DRUMS, render_song
from engine.styles import load_styles
from engine.sampled import SOUNDFONT, midi_file, sampled_song


def test_the_midi_file_holds_every_note_of_the_song():
    notes = []
    song = render_song(load_styles()[0], 120.0, (4, 4), 2, 3, tail_sixteenths=0, sample_rate=44100, stereo=True,
                       score=notes)
    data = midi_file(notes, song)
    assert data[:4] == b"MThd" and b"MTrk" in data
    assert data.count(bytes([0xFF, 0x51, 3])) == 1            # one tempo
    assert sum(1 for n in notes if n.part == "drums" and n.pitch == GM_DRUMS["kick"]) >= 2
    assert {"drums", "bass", "chords"} <= {n.part for n in notes}


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not SOUNDFONT.is_file(),
                    reason="apt-get install fluidsynth fluid-soundfont-gm")
def test_a_sampled_song_is_stereo_on_the_grid_and_not_the_synth():
    song = sampled_song(load_styles()[1], 100.0, (4, 4), 4, 11)
    synth = render_song(load_styles()[1], 100.0, (4, 4), 4, 11, tail_sixteenths=0, sample_rate=44100, stereo=True)
    assert song.audio.shape == synth.audio.shape and np.isfinite(song.audio).all()
    assert long_eval.width_db(song.audio) > -30
    hits, onsets = long_eval.on_grid(song.audio, 100.0)
    assert onsets > 10 and hits / onsets > 0.9
    assert long_eval.rolloff_hz(song.audio) != long_eval.rolloff_hz(synth.audio)
