"""`livediff bounce --report`: a picture (.png) or the numbers (.json) of one bounce.

The PNG shows the input and output waveforms over the bar and beat grid, each window's span
coloured by its kind (generated, moved, stretched, preroll), the blocks that played without
their generated audio, and a spectrogram of the output. The run's numbers (the JSON's
content) are also stored in the PNG's text metadata under "livediff".
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bridge.layout import const

KIND_COLOURS = {"generated": "tab:green", "moved": "tab:blue", "stretched": "tab:orange", "preroll": "0.8"}


def window_kind(entry: dict) -> str:
    """What a window-log entry placed: preroll (nothing to continue yet), stretched (a stand-in after a
    tempo change), moved (re-placed without new audio) or generated."""
    if entry["flags"] & const("LD_WINDOW_PREROLL"):
        return "preroll"
    if entry["flags"] & const("LD_WINDOW_STRETCHED"):
        return "stretched"
    return "moved" if entry["kind"] == "move" else "generated"


def write_report(path: Path, numbers: dict, dry: np.ndarray, out: np.ndarray, rate: int) -> None:
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(numbers, indent=1) + "\n")
    else:
        _draw(path, numbers, dry, out, rate)


def _envelope(audio: np.ndarray, points: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame index, min, max) of the mono mix in `points` buckets: a waveform that fits a figure."""
    mono = audio.mean(axis=0)
    size = max(1, len(mono) // points)
    usable = mono[:len(mono) // size * size].reshape(-1, size)
    return np.arange(usable.shape[0]) * size, usable.min(axis=1), usable.max(axis=1)


def _draw(path: Path, numbers: dict, dry: np.ndarray, out: np.ndarray, rate: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(14, 8), sharex=True,
                                                  gridspec_kw={"height_ratios": [1, 1.3, 1.2]})
    seconds = lambda frames: np.asarray(frames) / rate  # noqa: E731
    bar_frames, bars = numbers["bar_frames"], numbers["bars"]
    for axis, audio, title in ((top, dry, "input"), (middle, out, "output")):
        x, low, high = _envelope(audio)
        axis.fill_between(seconds(x), low, high, color="0.2", linewidth=0)
        axis.set_ylabel(title)
        axis.set_ylim(-1.05, 1.05)
        for beat in range(bars * 4 + 1):
            axis.axvline(seconds(beat * bar_frames / 4), color="0.85" if beat % 4 else "0.5",
                         linewidth=0.5 if beat % 4 else 0.9, zorder=0)
    for window in numbers["windows"]:
        middle.axvspan(seconds(window["start_sample"]), seconds(window["start_sample"] + window["frames"]),
                       ymin=0.0, ymax=0.06, color=KIND_COLOURS[window["kind"]])
        middle.axvline(seconds(window["start_sample"]), ymin=0.0, ymax=0.1, color="black", linewidth=1.2)
    for miss in numbers["underruns"]:
        middle.axvspan(seconds(miss["start_sample"]), seconds(miss["start_sample"] + miss["frames"]),
                       color="tab:red", alpha=0.3)
    handles = [Patch(color=c, label=k) for k, c in KIND_COLOURS.items()] + [Patch(color="tab:red", alpha=0.3,
                                                                                  label="underrun")]
    middle.legend(handles=handles, loc="upper right", fontsize=7, ncol=5)
    with np.errstate(divide="ignore"):     # silent stretches have no level
        bottom.specgram(out.mean(axis=0), NFFT=2048, Fs=rate, noverlap=1024, cmap="magma", vmin=-120)
    bottom.set_ylabel("output Hz")
    bottom.set_xlabel("seconds (grey lines: bars and beats)")
    speed = f"{numbers['speed']:.1f}x real time" if numbers["speed"] else ""
    figure.suptitle(f"{Path(numbers['input']).name} -> {Path(numbers['output']).name}: {bars} bars at "
                    f"{numbers['bpm']:g} BPM, {numbers['generator']}, {numbers['windows_generated'] or 'unknown'} windows, "
                    f"{numbers['underrun_blocks']} underruns, {speed}")
    figure.tight_layout()
    figure.savefig(path, dpi=90, metadata={"livediff": json.dumps(numbers)})
    plt.close(figure)
