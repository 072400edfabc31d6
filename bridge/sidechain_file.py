"""A sidechain read from an audio file: `livediff serve --sidechain-file PATH`, which `livediff
bounce --sidechain` starts. pedalboard gives the plugin no aux bus (its aux channels are 0 and
null), so under pedalboard the plugin cannot deliver a sidechain; the engine instead attaches the
file to every session it opens, by song position: frame 0 of the file plays at song sample 0
(where pedalboard's own clock starts). Read where the context needs it, never held whole in
memory. [worker-thread, scheduler lock held] for read; [main-thread] for the rest."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class SidechainFileError(ValueError):
    pass


def open_audio(path: Path, sample_rate: int | None = None):
    """A pedalboard ReadableAudioFile (resampled to sample_rate when given and different)."""
    from pedalboard.io import AudioFile
    try:
        audio = AudioFile(str(path))
    except Exception as exc:  # pedalboard raises ValueError/RuntimeError for anything it cannot decode
        raise SidechainFileError(f"sidechain file {path} cannot be read ({exc}); allowed: WAV, FLAC, MP3, OGG "
                                 f"or AIFF") from None
    if audio.frames == 0:
        raise SidechainFileError(f"sidechain file {path} has no audio; allowed: at least one frame")
    return audio if sample_rate is None or int(audio.samplerate) == sample_rate else audio.resampled_to(sample_rate)


class SidechainFile:
    """Stands in for a session's sidechain InputStore (same read/write)."""

    def __init__(self, path: Path, sample_rate: int, channels: int):
        self._audio = open_audio(path, sample_rate)
        self.channels = channels
        self.frames = int(self._audio.frames)

    def write(self, start: int, audio: np.ndarray) -> None:
        """The file is this session's sidechain; whatever the host sends on its aux bus is not used."""

    def read(self, start: int, frames: int) -> np.ndarray:
        out = np.zeros((self.channels, frames), np.float32)
        first, end = max(start, 0), min(start + frames, self.frames)
        if end > first:
            self._audio.seek(first)
            data = self._audio.read(end - first)
            if data.shape[0] != self.channels:      # mono file into stereo, or stereo into mono
                data = np.broadcast_to(data.mean(axis=0, keepdims=True), (self.channels, data.shape[1]))
            out[:, first - start:first - start + data.shape[1]] = data
        return out
