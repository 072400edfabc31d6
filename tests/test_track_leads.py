"""While the track plays it leads (engine/diffusion.py): the window continues the track's bar at
its own place one phrase back, where music repeats (a 4-chord progression plays the window's
chord again 4 bars back), not the newest bar, which is 2 bars back and another chord."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine import diffusion, long_eval
from engine import representation as rep
from engine.diffusion import load_builtin, phrase_back
from engine.evaluate import mel_distance
from engine.loop_generator import bar_frames
from tests.model_fixtures import song_request


@pytest.fixture(scope="module")
def generator():
    return load_builtin("torch")


def test_the_bar_one_phrase_back_is_cut_out_of_the_track_when_it_was_heard():
    request, _ = song_request(1)
    frames = bar_frames(request)
    track = np.repeat(np.arange(1, 5, dtype=np.float32) * 0.01, frames)[None].repeat(2, axis=0)  # bar i is i/100
    # window k, newest track bar k - 2 (gap 1): the bar at k's place is k - 4, two before the newest
    cut = phrase_back(replace(request, input_gap_bars=1), track)
    assert cut.shape[1] == 2 * frames and np.allclose(cut[:, -frames:], 0.02)
    assert phrase_back(replace(request, input_gap_bars=3), track) is track      # the newest is that bar
    short = track[:, -2 * frames:]
    assert phrase_back(replace(request, input_gap_bars=1), short) is short      # that bar was not given
    silent = track.copy()
    silent[:, frames: 2 * frames] = 0.0
    assert phrase_back(replace(request, input_gap_bars=1), silent) is silent    # that bar had no sound


def test_a_break_one_phrase_back_is_passed_over_for_the_bar_a_phrase_before_it():
    request, _ = song_request(1)
    frames = bar_frames(request)
    track = np.full((2, 8 * frames), 0.1, np.float32)            # bars k - 9 .. k - 2 (gap 1)
    track[:, 5 * frames: 6 * frames] = 0.02                      # bar k - 4 is a break (-14 dB)
    ask = replace(request, input_gap_bars=1)
    assert phrase_back(ask, track).shape[1] == 2 * frames        # ends with bar k - 8
    track[:, frames: 2 * frames] = 0.02                          # a stop every phrase: it is the music
    assert phrase_back(ask, track).shape[1] == 6 * frames
    assert phrase_back(ask, track[:, -6 * frames:]).shape[1] == 4 * frames   # k - 8 not given: k - 4
    track[:, frames: 2 * frames] = 0.1
    track[:, 5 * frames:] = 0.02                                 # a fade: the newest bar is as quiet
    assert phrase_back(ask, track).shape[1] == 6 * frames


def test_a_one_bar_break_in_the_track_is_not_played_again_a_phrase_later(generator):
    """Bar 5 of a held-out song turned down 20 dB, as a break: bar 9, made while the song plays,
    keeps the song's level (it continues bar 1), not the break's."""
    song = long_eval.heldout_songs(1, 16)[0]
    lines = long_eval.bar_lines(song, 16)
    played = song.audio[:, :lines[16]].copy()
    played[:, lines[5]:lines[6]] *= 0.1
    made = long_eval.play(generator, song, played, 11, seed=0)
    level = lambda audio, k: long_eval.loudness_db(audio[:, lines[k]:lines[k + 1]])  # noqa: E731
    assert abs(level(made, 9) - level(played, 9)) < 3.0, (level(made, 9), level(played, 9), level(played, 5))


def test_a_playing_track_is_continued_from_its_bar_one_phrase_back(generator, monkeypatch):
    """Bars 9-16 of the long-run songs (4/4 to 12/8, 76-172 BPM) played as the engine plays them
    with the whole song on the input: continuing the bar one phrase back is closer to the truth
    than continuing the newest bar (docs/model-card.md: 0.953 against 1.066 over 8 songs)."""
    songs = long_eval.heldout_songs(8, 16)

    def playing() -> float:
        distances = []
        for i, song in enumerate(songs):
            lines = long_eval.bar_lines(song, 16)
            whole = song.audio[:, :lines[16]]
            made = long_eval.play(generator, song, whole, 16, seed=i)[:, lines[8]:]
            distances.append(mel_distance(long_eval.mid_model_rate(made), long_eval.mid_model_rate(whole[:, lines[8]:])))
        return float(np.mean(distances))

    phrase = playing()
    monkeypatch.setattr(diffusion, "phrase_back", lambda request, track: track)
    newest = playing()
    assert phrase < newest - 0.05, (phrase, newest)


def test_each_bar_of_a_longer_window_continues_the_bar_after_as_far_as_it_was_heard(generator):
    """A 2-bar window (the ambient preset's) at bars k, k + 1 continues the track's bars k - 4 and
    k - 3, not k - 4 twice; a 4-bar window continues k - 4 .. k - 2 and then k - 2 again (the
    newest bar heard)."""
    request, _ = song_request(1)
    frames = bar_frames(request)
    t = np.arange(4 * frames) / request.sample_rate
    pitches = (220.0, 330.0, 440.0, 660.0)                          # one tone per bar, oldest first
    tone = np.concatenate([0.3 * np.sin(2 * np.pi * f * t[:frames]) for f in pitches])
    track = np.stack([tone, tone]).astype(np.float32)
    bar_len = rep.sixteenths_per_bar(request.tsig_num, request.tsig_den)

    def bar_pitches(bars: int) -> list[float]:
        asked = replace(request, bars=bars, frames=bars * frames, input_context=track, input_gap_bars=1)
        prior = generator._plan(asked).prior
        peak = [int(np.argmax(prior[j * bar_len:(j + 1) * bar_len].mean(axis=(0, 1)))) for j in range(bars)]
        return [round(p * rep.SAMPLE_RATE / rep.N_FFT / 110) * 110 for p in peak]   # to the nearest 110 Hz

    assert bar_pitches(1) == [330]
    assert bar_pitches(2) == [330, 440]
    assert bar_pitches(4) == [330, 440, 660, 660]
