"""`livediff demo`: the main job. Renders a few bars of a style with the procedural music
generator, then bounces them through the real VST3 (pedalboard host) with the built-in
diffusion model, which continues what it hears, window by window, on the bar grid.

Writes the output WAV and, next to it, the input that was fed to the plugin.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bridge import bounce

HELP = "Bounce a generated demo loop through the livediff VST3 with the built-in diffusion model."
HOST_RATE = 44100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="demo.wav", help="WAV to write (default demo.wav)")
    parser.add_argument("--preset", default="house", help="style preset from presets/ (default house)")
    parser.add_argument("--bars", type=int, default=16, help="length of the bounce in bars (default 16)")
    parser.add_argument("--input-bars", type=int, default=4, help="bars of generated input, looped (default 4)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--generator", choices=["diffusion", "loop"], default="diffusion")


def write_demo_input(path: Path, preset_name: str, bars: int, seed: int) -> float:
    """A procedural loop of the preset's style at HOST_RATE, stereo; returns its tempo."""
    from pedalboard.io import AudioFile

    from engine.music import render_song
    from engine.presets import PRESETS_DIR, load_preset
    from engine.representation import SAMPLE_RATE, resample
    preset = load_preset(PRESETS_DIR / f"{preset_name}.toml")
    song = render_song(preset, preset.tempo, (4, 4), bars, seed, tail_sixteenths=0)
    mono = resample(song.audio[None, :], SAMPLE_RATE, HOST_RATE)
    frames = int(round(bars * 4 * 60.0 / preset.tempo * HOST_RATE))
    mono = np.pad(mono, ((0, 0), (0, max(0, frames - mono.shape[1]))))[:, :frames]
    with AudioFile(str(path), "w", HOST_RATE, 2, bit_depth=32) as f:
        f.write(np.repeat(mono, 2, axis=0).astype(np.float32))
    return preset.tempo


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    demo_input = output.with_name(output.stem + "-input.wav")
    tempo = write_demo_input(demo_input, args.preset, args.input_bars, args.seed)
    print(f"demo input: {args.input_bars} bars of {args.preset} at {tempo:g} BPM -> {demo_input}")
    parser = argparse.ArgumentParser()
    bounce.add_arguments(parser)
    bounce_args = parser.parse_args([str(demo_input), "-o", str(output), "--preset", args.preset,
                                     "--bars", str(args.bars), "--seed", str(args.seed),
                                     "--generator", args.generator])
    status = bounce.run(bounce_args)
    if status == 0:
        print(f"demo output: {args.bars} bars through the livediff VST3 ({args.generator} generator) -> {output}")
    return status
