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
from bridge.presets import find_preset
from engine.validate import PresetError

HELP = "Bounce a generated demo loop through the livediff VST3 with the built-in diffusion model."
HOST_RATE = 44100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="demo.wav", help="WAV to write (default demo.wav)")
    parser.add_argument("--preset", default="house", help="a preset (`livediff presets`; default house): its style "
                                                           "makes the input, and it shapes the output")
    parser.add_argument("--bars", type=int, default=16, help="length of the bounce in bars (default 16)")
    parser.add_argument("--input-bars", type=int, default=4, help="bars of generated input, looped (default 4)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--generator", choices=["diffusion", "loop"], default="diffusion")


def write_demo_input(path: Path, style_id: int, bars: int, seed: int) -> float:
    """A procedural loop of the style at its typical tempo, HOST_RATE, stereo; returns the tempo."""
    from pedalboard.io import AudioFile

    from engine.music import render_song
    from engine.representation import SAMPLE_RATE, resample
    from engine.styles import load_styles
    style = load_styles()[style_id]
    song = render_song(style, style.tempo, (4, 4), bars, seed, tail_sixteenths=0)
    mono = resample(song.audio[None, :], SAMPLE_RATE, HOST_RATE)
    frames = int(round(bars * 4 * 60.0 / style.tempo * HOST_RATE))
    mono = np.pad(mono, ((0, 0), (0, max(0, frames - mono.shape[1]))))[:, :frames]
    with AudioFile(str(path), "w", HOST_RATE, 2, bit_depth=32) as f:
        f.write(np.repeat(mono, 2, axis=0).astype(np.float32))
    return style.tempo


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    demo_input = output.with_name(output.stem + "-input.wav")
    try:
        preset = find_preset(args.preset)
    except PresetError as exc:
        print(f"livediff demo: error: {exc}")
        return 2
    tempo = write_demo_input(demo_input, preset.style, args.input_bars, args.seed)
    print(f"demo input: {args.input_bars} bars of {args.preset} at {tempo:g} BPM -> {demo_input}")
    parser = argparse.ArgumentParser()
    bounce.add_arguments(parser)
    bounce_args = parser.parse_args([str(demo_input), "-o", str(output), "--preset", args.preset, "--bpm", str(tempo),
                                     "--bars", str(args.bars), "--seed", str(args.seed),
                                     "--generator", args.generator])
    status = bounce.run(bounce_args)
    if status == 0:
        print(f"demo output: {args.bars} bars through the livediff VST3 ({args.generator} generator) -> {output}")
    return status
