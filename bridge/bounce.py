"""`livediff bounce`: render a file through the livediff VST3 in pedalboard, offline.

pedalboard is the host: it loads build/livediff.vst3, the plugin connects to the engine
(started here if none answers, stopped afterwards) and, being offline, waits for every
window, so the output is complete and the same on every run.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bridge.client import Client, engine_answers
from bridge.endpoint import ENV_VAR, EndpointError, check_local, default_endpoint
from bridge.layout import const
from bridge.protocol import ERR, MSG, SAMPLE_RATES, param_range
from bridge.server import READY_TEXT

HELP = "Render an audio file through the livediff VST3 (pedalboard host, offline, complete windows)."
PLUGIN = Path(__file__).resolve().parent.parent / "build" / "livediff.vst3"
ENGINE_START_SECONDS = 30
GENERATOR_LOAD_SECONDS = 300
OPTIONAL_PARAMS = ("style", "window_bars", "lookahead", "context_bars", "mix")
log = logging.getLogger("livediff.bounce")


class BounceError(RuntimeError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio file to process (its length is looped/trimmed to --bars)")
    parser.add_argument("-o", "--output", required=True, help="float32 WAV to write")
    parser.add_argument("--bpm", type=float, help="tempo of the input (the plugin's tempo_bpm); default: the preset's")
    parser.add_argument("--bars", type=int, required=True, help="length of the render in 4/4 bars")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", help="a style preset: a name from presets/ (e.g. house) or a .toml path; "
                                         "sets --style and, unless given, --bpm")
    parser.add_argument("--generator", choices=["diffusion", "loop"], default="diffusion",
                        help="diffusion: the built-in model; loop: hold/loop the last bar (no model)")
    for name in OPTIONAL_PARAMS:
        low, high = param_range(name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"{low}..{high} (default: the plugin's)")
    parser.add_argument("--buffer-size", type=int, default=8192, help="host block size in frames")
    parser.add_argument("--window-log", metavar="PATH", help="JSON line per window (needs an engine started here)")
    parser.add_argument("--endpoint", help="engine endpoint (default: the rule of docs/protocol.md)")


def read_input(path: str, bars: int, bpm: float) -> tuple[np.ndarray, int]:
    """The input as float32 stereo, looped or trimmed to exactly `bars` 4/4 bars at `bpm`."""
    from pedalboard.io import AudioFile
    if not Path(path).is_file():
        raise BounceError(f"input file {path} does not exist")
    with AudioFile(path) as f:
        audio, rate = f.read(f.frames), int(f.samplerate)
    if rate not in SAMPLE_RATES:
        raise BounceError(f"{path} is at {rate} Hz; supported rates: {', '.join(map(str, SAMPLE_RATES))}")
    if audio.shape[0] > const("LD_MAX_CHANNELS") or audio.shape[1] == 0:
        raise BounceError(f"{path} has {audio.shape[0]} channels and {audio.shape[1]} frames; "
                          f"allowed: 1..{const('LD_MAX_CHANNELS')} channels, at least one frame")
    audio = np.repeat(audio, 2, axis=0) if audio.shape[0] == 1 else audio
    frames = int(round(bars * 4 * 60.0 / bpm * rate))
    return np.ascontiguousarray(audio[:, np.arange(frames) % audio.shape[1]], dtype=np.float32), rate


@contextmanager
def engine_on(endpoint: str, window_log: str | None):
    """Yield with an engine answering on `endpoint`: the one already there, or one started here
    (and stopped, segments and socket removed, on the way out)."""
    if engine_answers(endpoint):
        if window_log:
            raise BounceError(f"an engine already runs on {endpoint}; --window-log needs bounce to start its own "
                              f"(stop that engine or pass another --endpoint)")
        yield
        return
    command = [sys.executable, "-m", "engine.cli", "serve", "--endpoint", endpoint, "--log-level", "WARNING"]
    process = subprocess.Popen(command + (["--window-log", window_log] if window_log else []))
    try:
        deadline = time.monotonic() + ENGINE_START_SECONDS
        while not engine_answers(endpoint, 0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BounceError(f"the engine did not start on {endpoint} (exit status {process.poll()})")
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_generator(endpoint: str, generator: str, sample_rate: int) -> None:
    """Ask the engine for the generator before rendering, so a missing model is one clear
    error rather than a render that times out block after block."""
    client = Client(endpoint)
    try:
        client.hello(sample_rate, 2, offline=True, generator=const(f"LD_GENERATOR_{generator.upper()}"))
        deadline = time.monotonic() + GENERATOR_LOAD_SECONDS
        while time.monotonic() < deadline:
            reply = client.recv(1.0)
            if reply is None or reply["type"] not in (MSG["status"], MSG["error"]):
                continue
            if reply["code"] != ERR["LD_OK"]:
                raise BounceError(reply["message"])
            if reply["message"] == READY_TEXT:
                return
        raise BounceError(f"the {generator} generator did not load within {GENERATOR_LOAD_SECONDS} s")
    finally:
        client.bye()
        client.close()


def set_parameters(plugin, args: argparse.Namespace) -> None:
    values = {"tempo_bpm": args.bpm, "seed": args.seed, "generator": args.generator}
    values.update({name: getattr(args, name) for name in OPTIONAL_PARAMS if getattr(args, name) is not None})
    for name, value in values.items():
        if name not in plugin.parameters:
            raise BounceError(f"{PLUGIN} has no parameter {name!r}; it has {sorted(plugin.parameters)}")
        names = plugin.parameters[name].valid_values
        if isinstance(value, int) and names and isinstance(names[0], str):
            value = names[value]        # a list parameter (style) takes the name of its id
        setattr(plugin, name, value)


def apply_preset(args: argparse.Namespace) -> None:
    """Fill style (and tempo, unless given) from --preset; without one, --bpm is required."""
    if args.preset:
        from engine.presets import PRESETS_DIR, PresetError, load_preset
        path = Path(args.preset) if args.preset.endswith(".toml") else PRESETS_DIR / f"{args.preset}.toml"
        try:
            preset = load_preset(path)
        except PresetError as exc:
            raise BounceError(str(exc)) from None
        args.style = preset.style if args.style is None else args.style
        args.bpm = preset.tempo if args.bpm is None else args.bpm
    if args.bpm is None:
        raise BounceError("give the input's tempo with --bpm (or a --preset that has one)")


def bounce(args: argparse.Namespace) -> Path:
    import pedalboard
    from pedalboard.io import AudioFile
    apply_preset(args)
    audio, rate = read_input(args.input, args.bars, args.bpm)
    if not (PLUGIN / "Contents" / "x86_64-linux" / "livediff.so").is_file():
        raise BounceError(f"the plugin is not built ({PLUGIN} is missing); run `livediff build-plugin`")
    endpoint = check_local(args.endpoint) if args.endpoint else default_endpoint()
    os.environ[ENV_VAR] = endpoint  # the plugin computes its endpoint from the same rule
    with engine_on(endpoint, args.window_log):
        check_generator(endpoint, args.generator, rate)
        plugin = pedalboard.load_plugin(str(PLUGIN))
        set_parameters(plugin, args)
        started = time.monotonic()
        out = plugin.process(audio, rate, buffer_size=args.buffer_size, reset=True)
        elapsed = time.monotonic() - started
        del plugin  # say bye before the engine stops
    with AudioFile(args.output, "w", rate, out.shape[0], bit_depth=32) as f:
        f.write(np.ascontiguousarray(out, dtype=np.float32))
    log.info("bounced %d bars (%.1f s of audio) in %.1f s (%.1fx real time) to %s", args.bars,
             audio.shape[1] / rate, elapsed, audio.shape[1] / rate / elapsed, args.output)
    return Path(args.output)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level="INFO", format="%(name)s %(levelname)s %(message)s")
    try:
        bounce(args)
    except (BounceError, EndpointError) as exc:
        log.error("%s", exc)
        return 1
    return 0
