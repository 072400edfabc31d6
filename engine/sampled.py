"""Procedural songs played by sampled instruments: the notes of engine/music.py, written as a
Standard MIDI File and rendered by FluidSynth through a General MIDI soundfont.

Debian 12: `apt-get install fluidsynth fluid-soundfont-gm` (FluidSynth 2.3.1, LGPL-2.1, run as a
separate program; FluidR3_GM 3.1, MIT licence). Nothing here is downloaded; without them,
`SampledUnavailable` says what to install.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from engine.music import Note, Song, render_song
from engine.styles import Style

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
TICKS_PER_QUARTER = 480
# General MIDI programs (0-based) per style id: bass, chords, lead
PROGRAMS = {0: (38, 4, 80), 1: (33, 4, 11), 2: (38, 89, 81), 3: (32, 89, 73), 4: (39, 81, 80), 5: (34, 29, 30)}
CHANNELS = {"bass": 0, "chords": 1, "lead": 2, "drums": 9}


class SampledUnavailable(RuntimeError):
    pass


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(notes: list[Note], song: Song) -> bytes:
    """Format-0 SMF of the notes at the song's tempo and meter (one channel per part)."""
    samples_per_tick = song.sample_rate * 60.0 / song.tempo_bpm / TICKS_PER_QUARTER
    tick = lambda sample: int(round(sample / samples_per_tick))  # noqa: E731
    events = [(0, bytes([0xFF, 0x51, 3]) + int(round(60e6 / song.tempo_bpm)).to_bytes(3, "big")),
              (0, bytes([0xFF, 0x58, 4, song.tsig[0], int(np.log2(song.tsig[1])), 24, 8]))]
    for part, program in zip(("bass", "chords", "lead"), PROGRAMS[song.style % len(PROGRAMS)]):
        events.append((0, bytes([0xC0 | CHANNELS[part], program])))
    for note in notes:
        channel = CHANNELS[note.part]
        velocity = int(np.clip(round(127 * min(1.0, note.gain / 0.9) ** 0.5), 1, 127))
        pan = int(np.clip(round(64 + 63 * note.pan), 0, 127))
        start, end = tick(note.start), max(tick(note.start) + 1, tick(note.start + note.length))
        if channel != 9:
            events.append((start, bytes([0xB0 | channel, 10, pan])))
        events.append((start, bytes([0x90 | channel, note.pitch, velocity])))
        events.append((end, bytes([0x80 | channel, note.pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90))   # note-offs before note-ons at a tick
    track, now = bytearray(), 0
    for at, data in events:
        track += _vlq(at - now) + data
        now = at
    track += _vlq(0) + bytes([0xFF, 0x2F, 0])
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
            + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


def sampled_song(style: Style, tempo_bpm: float, tsig: tuple[int, int], bars: int, seed: int,
                 sample_rate: int = 44100, soundfont: Path = SOUNDFONT, tail_sixteenths: int = 0) -> Song:
    """The song render_song would synthesise (same notes, timing and velocities), played by the
    soundfont's instruments: stereo float32 at sample_rate, peak-normalised like render_song."""
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None or not Path(soundfont).is_file():
        raise SampledUnavailable(f"sampled instruments need fluidsynth and {soundfont}: "
                                 "apt-get install fluidsynth fluid-soundfont-gm")
    from pedalboard.io import AudioFile

    notes: list[Note] = []
    song = render_song(style, tempo_bpm, tsig, bars, seed, tail_sixteenths=tail_sixteenths, sample_rate=sample_rate,
                       stereo=True, score=notes)
    with tempfile.TemporaryDirectory(prefix="ld-sampled-") as folder:
        mid, wav = Path(folder) / "song.mid", Path(folder) / "song.wav"
        mid.write_bytes(midi_file(notes, song))
        subprocess.run([fluidsynth, "-ni", "-q", "-g", "0.8", "-r", str(sample_rate), "-F", str(wav), str(soundfont),
                        str(mid)], check=True, capture_output=True, timeout=120)
        with AudioFile(str(wav)) as f:
            audio = f.read(f.frames)
    n = song.audio.shape[1]
    audio = np.pad(audio[:2, :n], ((0, 0), (0, max(0, n - audio.shape[1]))))
    peak = np.abs(audio).max()
    audio = audio * (np.random.default_rng([seed, 2]).uniform(0.5, 0.9) / peak) if peak > 0 else audio
    return Song(audio.astype(np.float32), song.tempo_bpm, song.tsig, song.bars, song.style, sample_rate)
