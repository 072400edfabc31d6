"""`livediff bounce`: render a file through the livediff VST3 in pedalboard, offline.

pedalboard is the host: it loads the VST3, the plugin connects to an engine (one started here
on a private endpoint and stopped afterwards, whatever ends the command; or the one at
--endpoint) and, being offline, waits for every window, so the output is complete and the
same on every run. Every argument is checked before any work. A bounce in which any block
played without its generated audio exits non-zero, names the bars, and writes no output file.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge.build import BUILD_DIR
from bridge.client import Client, engine_answers
from bridge.endpoint import ENV_VAR, EndpointError, check_local
from bridge.layout import const
from bridge.presets import GENERATORS, PLUGIN_KEYS, RANDOM_SEED, SOUND_NAMES, Preset, find_preset, sound_of
from bridge.protocol import ERR, MSG, SAMPLE_RATES, param_range
from bridge.server import READY_TEXT
from bridge.shm import sweep_stale_segments
from engine.styles import load_styles
from engine.validate import PresetError

HELP = "Render an audio file through the livediff VST3 (pedalboard host, offline, complete windows)."
PLUGIN = BUILD_DIR / "livediff.vst3"
ENGINE_START_SECONDS = 30
GENERATOR_LOAD_SECONDS = 300
MAX_BARS = 9999
MAX_MINUTES = 30                  # the render is held in memory: input, output (and stems)
BUFFER_SIZES = (32, 65536)
CHUNK_SECONDS = 0.5               # audio handed to pedalboard per call: progress, Ctrl-C and engine checks between
TEMPO_TOLERANCE = 0.02            # --bpm may differ this much from the estimate (or its half/double)
OUTPUT_SUFFIXES = (".wav",)
REPORT_SUFFIXES = (".png", ".json")
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
ENGINE_DIR_PREFIX = "livediff-bounce-"    # a bounce's private endpoint directory, in the temp dir
STALE_DIR_SECONDS = 120


class BounceError(RuntimeError):
    def __init__(self, message: str, status: int = EXIT_FAILED):
        super().__init__(message)
        self.status = status


def usage(message: str) -> BounceError:
    return BounceError(message, EXIT_USAGE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    low, high = param_range("tempo_bpm")
    parser.add_argument("input", help="audio file to process (looped or trimmed to --bars)")
    parser.add_argument("-o", "--output", required=True, help="float32 WAV to write")
    parser.add_argument("--bpm", type=float, help=f"tempo of the input, {low}..{high} (default: estimated from the input)")
    parser.add_argument("--bars", type=int, help=f"length of the render in 4/4 bars, 1..{MAX_BARS} and at most "
                                                 f"{MAX_MINUTES} min (default: the input's length)")
    parser.add_argument("--seed", type=int, help="0..999 (default: the preset's, else 0)")
    parser.add_argument("--preset", help="a preset name (`livediff presets`) or a .toml file: sets the plugin's "
                                         "parameters and the engine's steps, FX chain and gain; never the tempo")
    parser.add_argument("--generator", choices=list(GENERATORS),
                        help="diffusion: the built-in model (default); loop: hold/loop the last bar (no model); "
                             "sao_small: Stable Audio Open Small from --model sao-small=DIR")
    parser.add_argument("--model", action="append", default=[], metavar="KIND=DIR",
                        help="a model folder for the engine started here, as in `livediff serve --model` (repeatable)")
    parser.add_argument("--t5", metavar="DIR", help="local T5 directory for the engine started here (`serve --t5`)")
    parser.add_argument("--style", help="a trained style by name or id (`livediff styles`; default: the preset's, else 0)")
    parser.add_argument("--sound", choices=SOUND_NAMES, help="the plugin's `sound` parameter: whose steps, FX chain and "
                                                              "gain this instance gets, as in a DAW (default: the preset's)")
    for name in PLUGIN_KEYS:
        low, high = param_range(name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"{low}..{high} (default: the preset's or plugin's)")
    parser.add_argument("--buffer-size", type=int, default=8192,
                        help=f"host block size in frames, {BUFFER_SIZES[0]}..{BUFFER_SIZES[1]} (default 8192)")
    parser.add_argument("--report", action="append", default=[], metavar="PATH",
                        help="write a report of the run: .png (waveforms over the bar grid, windows, underruns, "
                             "spectrogram) or .json (the same numbers); may be given twice")
    parser.add_argument("--stems", action="store_true",
                        help="also write OUTPUT's generated and dry parts: NAME.generated.wav, NAME.dry.wav")
    parser.add_argument("--window-log", metavar="PATH", help="JSON line per window (from the engine started here)")
    parser.add_argument("--endpoint", help="use the engine already running there instead of starting one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (there is none off a terminal)")
    parser.add_argument("--sidechain", metavar="SC", help="an audio file the plugin hears as the track's sidechain "
                                                          "(looped or cut like the input); the input stays the main "
                                                          "input. pedalboard has no aux bus: the engine started here "
                                                          "reads the file itself (README, Sidechain)")


# --- checking what was asked, before any work ------------------------------------------------

@dataclass
class Plan:
    """A checked bounce: what to render and with which settings."""
    input: Path
    output: Path
    reports: list[Path]
    bpm: float | None                # None: estimate from the input
    bars: int | None                 # None: the input's length
    seed: int
    generator: str
    params: dict[str, float]         # plugin parameters besides tempo, seed and generator
    preset: Preset | None
    buffer_size: int
    stems: bool
    window_log: Path | None
    endpoint: str | None
    serve_args: list[str]            # --model / --t5 for the engine started here
    progress: bool
    sidechain: Path | None = None    # heard as the sidechain, through the engine (pedalboard has no aux bus)
    notes: list[str] = field(default_factory=list)


def _in_range(option: str, value, low, high, unit: str = "") -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise usage(f"{option} {value if isinstance(value, int) else f'{value:g}'} is out of range; "
                    f"allowed: {low:g} to {high:g}{unit}")


def _check_length(bars: int, bpm: float) -> None:
    minutes = bars * 4 / bpm
    if minutes > MAX_MINUTES:
        raise usage(f"--bars {bars} at {bpm:g} BPM is {minutes:.0f} min of audio; allowed: at most {MAX_MINUTES} min "
                    f"({int(MAX_MINUTES * bpm / 4)} bars at {bpm:g} BPM)")


def _writable_file(option: str, path: Path, suffixes: tuple[str, ...]) -> Path:
    if path.suffix.lower() not in suffixes:
        raise usage(f"{option} {path}: unsupported file type {path.suffix or '(none)'!r}; allowed: {', '.join(suffixes)}")
    if path.is_dir():
        raise usage(f"{option} {path} is a directory; allowed: a file path")
    parent = path.parent
    if not parent.is_dir():
        raise usage(f"{option} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise usage(f"{option} {path}: directory {parent} is not writable by you")
    return path


def _style_id(text: str) -> int:
    styles = load_styles()
    for style in styles:
        if text in (style.name, str(style.id)):
            return style.id
    raise usage(f"--style {text} is not a trained style; allowed: "
                + ", ".join(f"{s.name} ({s.id})" for s in styles))


def plan(args: argparse.Namespace) -> Plan:
    """Every argument checked, the preset merged under the explicit options; raises BounceError."""
    _in_range("--bpm", args.bpm, *param_range("tempo_bpm"), " BPM")
    _in_range("--bars", args.bars, 1, MAX_BARS)
    _in_range("--seed", args.seed, *param_range("seed"))
    _in_range("--buffer-size", args.buffer_size, *BUFFER_SIZES, " frames")
    for name in PLUGIN_KEYS:
        _in_range(f"--{name.replace('_', '-')}", getattr(args, name), *param_range(name))
    if args.bpm is not None and args.bars is not None:
        _check_length(args.bars, args.bpm)
    source = Path(args.input)
    if not source.exists():
        raise usage(f"input file {source} does not exist")
    if not source.is_file():
        raise usage(f"input {source} is not a file; allowed: an audio file (WAV, FLAC, MP3, OGG, AIFF)")
    sidechain = Path(args.sidechain) if args.sidechain else None
    if sidechain and not sidechain.is_file():
        raise usage(f"--sidechain {sidechain} {'is not a file' if sidechain.exists() else 'does not exist'}; "
                    f"allowed: an audio file (WAV, FLAC, MP3, OGG, AIFF)")
    if sidechain and args.endpoint:
        raise usage("--sidechain needs the engine started by bounce (it reads the file); leave out --endpoint")
    output = _writable_file("-o", Path(args.output), OUTPUT_SUFFIXES)
    if output.exists() and output.resolve() == source.resolve():
        raise usage(f"-o {output} is the input file; allowed: another path")
    reports = [_writable_file("--report", Path(p), REPORT_SUFFIXES) for p in args.report]
    if any(p.suffix.lower() == ".png" for p in reports):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise usage("--report *.png needs matplotlib: pip install 'livediff[report]'") from None
    window_log = Path(args.window_log) if args.window_log else None
    if window_log and args.endpoint:
        raise usage("--window-log needs the engine started by bounce; leave out --endpoint")
    serve_args = [arg for spec in args.model for arg in ("--model", spec)] + (["--t5", args.t5] if args.t5 else [])
    if serve_args and args.endpoint:
        raise usage("--model and --t5 need the engine started by bounce; leave out --endpoint")
    endpoint = None
    if args.endpoint:
        try:
            endpoint = check_local(args.endpoint)
        except EndpointError as exc:
            raise usage(str(exc)) from None
    try:
        preset = find_preset(args.preset) if args.preset else None
    except PresetError as exc:
        raise usage(str(exc)) from None

    params: dict[str, float] = dict(preset.params) if preset else {}
    params.update({name: getattr(args, name) for name in PLUGIN_KEYS if getattr(args, name) is not None})
    if args.style is not None:
        params["style"] = _style_id(args.style)
    notes = []
    seed = args.seed
    if seed is None and preset and preset.seed is not None:
        seed = random.randrange(int(param_range("seed")[1]) + 1) if preset.seed == RANDOM_SEED else preset.seed
        if preset.seed == RANDOM_SEED:
            notes.append(f"seed {seed} (preset {preset.name}: a new seed per bounce; --seed {seed} repeats this one)")
    if args.sound is not None:
        params["sound"] = args.sound        # over the preset's engine part, as the parameter is in a DAW
    elif preset and endpoint and not preset.sound.neutral:
        if (name := sound_of(preset)) is not None:
            params["sound"] = name              # the engine there gives it to this instance
        else:
            notes.append(f"the engine at {endpoint} applies its own preset's steps, FX and gain, not {preset.name}'s "
                         f"(the `sound` parameter names only {', '.join(SOUND_NAMES[1:])}; start the engine with "
                         f"`livediff serve --preset {preset.path}`, or leave out --endpoint)")
    generator = args.generator or (preset.generator if preset and preset.generator else "diffusion")
    return Plan(input=source, output=output, reports=reports, bpm=args.bpm, bars=args.bars,
                seed=0 if seed is None else seed, generator=generator, params=params, preset=preset,
                buffer_size=args.buffer_size, stems=args.stems, window_log=window_log, endpoint=endpoint,
                serve_args=serve_args, progress=not args.no_progress and sys.stderr.isatty(), sidechain=sidechain,
                notes=notes)


def read_input(path: Path) -> tuple[np.ndarray, int]:
    """The file as float32 [channels, frames] and its rate; anything unreadable is a usage error."""
    from pedalboard.io import AudioFile
    try:
        with AudioFile(str(path)) as f:
            rate, channels, frames = int(f.samplerate), f.num_channels, f.frames
            if rate not in SAMPLE_RATES:
                raise usage(f"{path} is at {rate} Hz; supported rates: {', '.join(map(str, SAMPLE_RATES))}")
            if frames == 0 or not 1 <= channels <= const("LD_MAX_CHANNELS"):
                raise usage(f"{path} has {channels} channels and {frames} frames; allowed: "
                            f"1..{const('LD_MAX_CHANNELS')} channels, at least one frame")
            limit = MAX_MINUTES * 60 * rate
            audio = f.read(min(frames, limit))
    except BounceError:
        raise
    except Exception as exc:  # pedalboard raises ValueError/RuntimeError for anything it cannot decode
        raise usage(f"{path} is not an audio file livediff can read ({exc}); allowed: WAV, FLAC, MP3, OGG or AIFF "
                    f"at {', '.join(map(str, SAMPLE_RATES))} Hz") from None
    return np.ascontiguousarray(audio, dtype=np.float32), rate


def estimate_input_tempo(audio: np.ndarray, rate: int) -> float | None:
    """The engine's tempo estimate of (up to a minute of) the input; None when it is too short or
    has no beat to go by (fewer than 4 onsets: silence, a drone)."""
    from engine import representation as rep
    mono = rep.resample(audio[:, :60 * rate].mean(axis=0, keepdims=True), rate, rep.SAMPLE_RATE)[0]
    if len(rep.onset_times(mono)) < 4:
        return None
    try:
        return rep.estimate_tempo(mono)
    except ValueError:
        return None


def tempo_warning(bpm: float, estimate: float | None) -> str | None:
    """A warning when --bpm is more than TEMPO_TOLERANCE from the estimate, its half and its double."""
    if estimate is None or any(abs(bpm / (estimate * k) - 1) <= TEMPO_TOLERANCE for k in (0.5, 1.0, 2.0)):
        return None
    return (f"warning: --bpm {bpm:g} disagrees with the input's estimated tempo {estimate:.2f} BPM "
            f"(by {100 * (bpm / estimate - 1):+.0f} %); the bars will not line up with the music "
            f"(half and double tempo are fine)")


def fit_to_bars(audio: np.ndarray, bars: int, bpm: float, rate: int) -> np.ndarray:
    """Stereo, looped or trimmed to exactly `bars` 4/4 bars at `bpm`."""
    frames = int(round(bars * 4 * 60.0 / bpm * rate))
    audio = np.repeat(audio, 2, axis=0) if audio.shape[0] == 1 else audio
    reps = -(-frames // audio.shape[1])
    return np.ascontiguousarray(np.tile(audio, (1, reps))[:, :frames])


# --- the engine --------------------------------------------------------------------------------

@dataclass
class Engine:
    endpoint: str
    process: subprocess.Popen | None = None     # None: someone else's engine
    window_log: Path | None = None
    _entries: list[dict] = field(default_factory=list)
    _read_to: int = 0                           # bytes of the window log parsed so far

    def died(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def windows(self, instance: str | None = None) -> list[dict]:
        """Window-log entries of `instance`, by default of the one that rendered last (pedalboard
        opens throwaway instances first); the log is read on from where the last call stopped."""
        if self.window_log is not None and self.window_log.exists():
            with open(self.window_log, "rb") as f:
                f.seek(self._read_to)
                chunk = f.read()
            complete = chunk[:chunk.rfind(b"\n") + 1]      # a line being written is read next time
            self._read_to += len(complete)
            self._entries += [json.loads(line) for line in complete.splitlines() if line.strip()]
        instance = instance or (self._entries[-1]["instance"] if self._entries else None)
        return [e for e in self._entries if e["instance"] == instance]


def sweep_stale_engine_dirs(older_than: float = STALE_DIR_SECONDS) -> list[Path]:
    """Remove private endpoint directories of bounces that were killed (SIGKILL leaves no chance to
    clean up): ours, without a live engine's socket, and older than a bounce takes to start one."""
    removed = []
    for directory in Path(tempfile.gettempdir()).glob(f"{ENGINE_DIR_PREFIX}*"):
        try:
            info = directory.lstat()
            if info.st_uid != os.getuid() or time.time() - info.st_mtime < older_than \
                    or (directory / "engine.sock").exists():
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


@contextmanager
def engine_for(plan: Plan, sidechain: np.ndarray | None = None, rate: int = 0):
    """The engine at --endpoint, or one started here on a private endpoint and stopped (with its
    directory) whatever ends the block; it also exits by itself if this process dies. `sidechain`
    (at `rate`) becomes every session's sidechain there (serve --sidechain-file)."""
    if plan.endpoint:
        if not engine_answers(plan.endpoint):
            raise BounceError(f"no engine answers on {plan.endpoint}; start one with `livediff serve --endpoint "
                              f"{plan.endpoint}` or leave out --endpoint")
        yield Engine(plan.endpoint)
        return
    sweep_stale_engine_dirs()
    directory = Path(tempfile.mkdtemp(prefix=ENGINE_DIR_PREFIX))
    endpoint = f"ipc://{directory}/engine.sock"
    window_log = plan.window_log or directory / "windows.jsonl"
    command = [sys.executable, "-m", "bridge.cli", "serve", "--endpoint", endpoint, "--log-level", "WARNING",
               "--window-log", str(window_log), "--exit-with-parent", *plan.serve_args]
    if plan.preset:
        command += ["--preset", str(plan.preset.path)]
    if sidechain is not None:
        write_wav(directory / "sidechain.wav", sidechain, rate)
        command += ["--sidechain-file", str(directory / "sidechain.wav")]
    process = subprocess.Popen(command)
    engine = Engine(endpoint, process, window_log)
    try:
        deadline = time.monotonic() + ENGINE_START_SECONDS
        while not engine_answers(endpoint, 0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BounceError(f"the engine did not start on {endpoint} (exit status {process.poll()})")
        yield engine
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        sweep_stale_segments()      # an engine that was killed could not remove its own
        engine.windows()            # the log's last lines (a window can be played before it is logged)
        shutil.rmtree(directory, ignore_errors=True)


def check_generator(endpoint: str, generator: str, sample_rate: int) -> None:
    """Ask the engine for the generator before rendering, so a missing model is one clear
    error rather than a render that times out block after block."""
    client = Client(endpoint)
    try:
        client.hello(sample_rate, 2, offline=True, generator=GENERATORS[generator])
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


# --- rendering ---------------------------------------------------------------------------------

class MissLog:
    """Offline blocks the plugin played without their generated audio (livediff_offline_misses in
    the plugin library, which pedalboard has loaded into this process)."""

    def __init__(self, library: Path):
        try:
            self._read = ctypes.CDLL(str(library)).livediff_offline_misses
        except AttributeError:
            raise BounceError(f"{library} is an old build without livediff_offline_misses; run `livediff build-plugin`")
        self._read.restype = ctypes.c_uint64
        self._read.argtypes = [ctypes.c_uint64, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_uint32),
                               ctypes.c_uint32]
        self.start = self.count()

    def count(self) -> int:
        return self._read(0, None, None, 0)

    def since_start(self) -> tuple[int, list[tuple[int, int]]]:
        """(blocks missed since this log was made, their (start, frames) as far as kept)."""
        n = self.count() - self.start
        starts, frames = (ctypes.c_int64 * max(n, 1))(), (ctypes.c_uint32 * max(n, 1))()
        self._read(self.start, starts, frames, n)
        return n, [(starts[i], frames[i]) for i in range(n) if frames[i]]


def bar_list(bars: list[int]) -> str:
    """1-based bar numbers as ranges: [0, 1, 2, 5] -> '1-3, 6'."""
    ranges, bars = [], sorted(set(bars))
    for bar in bars:
        if ranges and bar == ranges[-1][1] + 1:
            ranges[-1][1] = bar
        else:
            ranges.append([bar, bar])
    return ", ".join(f"{a + 1}" if a == b else f"{a + 1}-{b + 1}" for a, b in ranges)


class Progress:
    """One self-overwriting line on a terminal: bars rendered, windows generated, speed, ETA."""

    def __init__(self, enabled: bool, total_frames: int, bar_frames: float, rate: int):
        self.enabled, self.total, self.bar_frames, self.rate = enabled, total_frames, bar_frames, rate
        self.started = time.monotonic()

    def update(self, done: int, windows: int | None) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        speed = done / self.rate / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / self.rate / speed if speed > 0 else 0.0
        width = 24
        filled = int(width * done / self.total)
        line = (f"\r[{'#' * filled}{'.' * (width - filled)}] bar {int(done / self.bar_frames)}/"
                f"{round(self.total / self.bar_frames)}  windows {'-' if windows is None else windows}  "
                f"{speed:.1f}x real time  ETA {int(eta) // 60}:{int(eta) % 60:02d} ")
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


@dataclass
class Render:
    output: np.ndarray
    seconds: float                 # wall time
    missed_blocks: int
    missed: list[tuple[int, int]]  # (start, frames) of missed blocks, as far as the plugin kept them
    latency: int
    stopped_at: int | None = None  # frame where rendering stopped early (the engine died)


def load_plugin(plan: Plan, bpm: float, mix: float | None = None):
    import pedalboard
    plugin = pedalboard.load_plugin(str(PLUGIN))
    values = {"tempo_bpm": bpm, "seed": plan.seed, "generator": plan.generator, **plan.params}
    if mix is not None:     # the generated stem: all wet, silent where nothing was generated yet
        values["mix"] = mix
        values["preroll"] = "silence"
    for name, value in values.items():
        if name not in plugin.parameters:
            raise BounceError(f"{PLUGIN} has no parameter {name!r}; it has {sorted(plugin.parameters)}; "
                              f"run `livediff build-plugin`")
        names = plugin.parameters[name].valid_values
        if isinstance(value, int) and names and isinstance(names[0], str):
            value = names[value]        # a list parameter (style) takes the name of its id
        setattr(plugin, name, value)
    return plugin


def render(plan: Plan, engine: Engine, audio: np.ndarray, rate: int, bpm: float, progress: Progress,
           mix: float | None = None) -> Render:
    """pedalboard renders the audio in chunks of whole host blocks (the plugin sees the same blocks
    as in one call); between chunks: progress, a dead engine, Ctrl-C."""
    plugin = load_plugin(plan, bpm, mix)
    misses = MissLog(PLUGIN / "Contents" / "x86_64-linux" / "livediff.so")
    chunk = plan.buffer_size * max(1, round(CHUNK_SECONDS * rate / plan.buffer_size))
    out = np.zeros_like(audio)
    started = time.monotonic()
    stopped_at = None
    try:
        for start in range(0, audio.shape[1], chunk):
            piece = plugin.process(audio[:, start:start + chunk], rate, buffer_size=plan.buffer_size, reset=start == 0)
            out[:, start:start + piece.shape[1]] = piece
            progress.update(start + piece.shape[1], generated_count(engine.windows()) if engine.window_log else None)
            if engine.died() is not None and start + chunk < audio.shape[1]:
                stopped_at = start + chunk
                break
    finally:
        progress.close()
    seconds = time.monotonic() - started
    latency = int(plugin.reported_latency_samples)
    del plugin  # says bye before the engine stops
    count, missed = misses.since_start()
    return Render(out, seconds, count, missed, latency, stopped_at)


def generated_count(windows: list[dict]) -> int:
    """Windows the generator made (not preroll silence, stretches or moves)."""
    return sum(1 for e in windows if e["kind"] == "generate" and e["flags"] & const("LD_WINDOW_GENERATED"))


def missed_bars(result: Render, bar_frames: float, total: int) -> list[int]:
    bars = {int(s // bar_frames) + k for s, n in result.missed
            for k in range(int((s + n - 1) // bar_frames) - int(s // bar_frames) + 1)}
    if result.stopped_at is not None:
        bars |= set(range(int(result.stopped_at // bar_frames), math.ceil(total / bar_frames)))
    return sorted(b for b in bars if b >= 0)


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    """Written next to `path` and renamed into place, so `path` is complete or absent."""
    from pedalboard.io import AudioFile
    part = path.with_name(path.name + ".part.wav")
    try:
        with AudioFile(str(part), "w", rate, audio.shape[0], bit_depth=32) as f:
            f.write(np.ascontiguousarray(audio, dtype=np.float32))
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def stem_paths(output: Path) -> tuple[Path, Path]:
    return output.with_name(f"{output.stem}.generated.wav"), output.with_name(f"{output.stem}.dry.wav")


def bounce(plan: Plan) -> dict:
    """Render and write; returns the run's numbers (what --report writes). Raises BounceError."""
    source, rate = read_input(plan.input)
    estimate = estimate_input_tempo(source, rate)
    if plan.bpm is None:
        if estimate is None:
            raise usage(f"cannot estimate the tempo of {plan.input} (too short, or no clear beat); give it with --bpm")
        plan.bpm = round(estimate, 2)
        plan.notes.append(f"tempo {plan.bpm:g} BPM, estimated from the input (give --bpm to set it)")
    elif (warning := tempo_warning(plan.bpm, estimate)):
        print(f"livediff bounce: {warning}", file=sys.stderr)
    bar_frames = 4 * 60.0 / plan.bpm * rate
    bars = plan.bars or max(1, round(source.shape[1] / bar_frames))
    _check_length(bars, plan.bpm)
    audio = fit_to_bars(source, bars, plan.bpm, rate)
    sidechain = None
    if plan.sidechain:
        from engine.dsp import resample
        heard, sidechain_rate = read_input(plan.sidechain)
        sidechain = fit_to_bars(resample(heard, sidechain_rate, rate), bars, plan.bpm, rate)
    for note in plan.notes:
        print(f"livediff bounce: {note}", file=sys.stderr)
    if not (PLUGIN / "Contents" / "x86_64-linux" / "livediff.so").is_file():
        raise BounceError(f"the plugin is not built ({PLUGIN} is missing); run `livediff build-plugin`")

    with engine_for(plan, sidechain, rate) as engine:
        os.environ[ENV_VAR] = engine.endpoint  # the plugin computes its endpoint from the same rule
        os.environ["LIVEDIFF_AUTO_LAUNCH"] = "0"  # this engine or none: a dead one fails the bounce
        check_generator(engine.endpoint, plan.generator, rate)
        result = render(plan, engine, audio, rate, plan.bpm, Progress(plan.progress, audio.shape[1], bar_frames, rate))
        rendered_by = (engine.windows() or [{}])[-1].get("instance")
        generated = render(plan, engine, audio, rate, plan.bpm, Progress(plan.progress, audio.shape[1], bar_frames, rate),
                           mix=100) if plan.stems else None
        died = engine.died()
    windows = engine.windows(rendered_by) if engine.window_log else None

    lost = missed_bars(result, bar_frames, audio.shape[1])
    if generated is not None:
        lost = sorted(set(lost) | set(missed_bars(generated, bar_frames, audio.shape[1])))
    numbers = run_numbers(plan, result, windows, bars, bar_frames, rate, lost)
    for path in plan.reports:
        from bridge.bounce_report import write_report
        write_report(path, numbers, audio, result.output, rate)
    if lost:
        why = f"the engine exited (status {died}) during the bounce; " if died is not None else ""
        blocks = result.missed_blocks + (generated.missed_blocks if generated else 0)
        raise BounceError(f"{why}{blocks} block(s) played without their generated audio, in bars "
                          f"{bar_list(lost)} of {bars}; {plan.output} was not written")
    write_wav(plan.output, result.output, rate)
    if generated is not None:
        generated_path, dry_path = stem_paths(plan.output)
        write_wav(generated_path, generated.output, rate)
        write_wav(dry_path, audio, rate)
    print(summary(numbers, plan.output))
    return numbers


def run_numbers(plan: Plan, result: Render, windows: list[dict] | None, bars: int, bar_frames: float, rate: int,
                lost: list[int]) -> dict:
    """The run's numbers; the windows are known only from an engine started here (None otherwise)."""
    from bridge.bounce_report import window_kind
    audio_seconds = result.output.shape[1] / rate
    if windows is not None:         # made ahead of the playhead past the end: not part of the render
        windows = [e for e in windows if e["start_sample"] < result.output.shape[1]]
    placed = {}
    for entry in windows or []:               # the last placement of each window is what played
        placed[(entry["epoch"], entry["bar_index"])] = entry
    return {
        "input": str(plan.input), "sidechain": str(plan.sidechain) if plan.sidechain else None,
        "output": str(plan.output), "sample_rate": rate, "bpm": plan.bpm, "bars": bars,
        "bar_frames": bar_frames, "seed": plan.seed, "generator": plan.generator,
        "preset": plan.preset.name if plan.preset else None, "buffer_size": plan.buffer_size,
        "audio_seconds": audio_seconds, "render_seconds": result.seconds,
        "speed": audio_seconds / result.seconds if result.seconds > 0 else None,
        "latency_samples": result.latency,
        "windows_generated": None if windows is None else generated_count(windows),
        "windows": [{"bar": e["bar_index"], "start_sample": e["start_sample"], "frames": e["frames"],
                     "kind": window_kind(e)} for e in sorted(placed.values(), key=lambda e: e["start_sample"])],
        "underrun_blocks": result.missed_blocks,
        "underruns": [{"start_sample": s, "frames": n} for s, n in result.missed],
        "missed_bars": [b + 1 for b in lost],
        "complete": not lost,
    }


def summary(numbers: dict, output: Path) -> str:
    speed = f"{numbers['speed']:.1f}x real time" if numbers["speed"] else "instant"
    windows = "" if numbers["windows_generated"] is None else f"{numbers['windows_generated']} windows generated, "
    return (f"bounced {numbers['bars']} bars ({numbers['audio_seconds']:.1f} s) in {numbers['render_seconds']:.1f} s "
            f"({speed}): {windows}{numbers['underrun_blocks']} underruns, latency {numbers['latency_samples']} samples "
            f"-> {output}")


class Stopped(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


def run(args: argparse.Namespace) -> int:
    # SIGTERM and SIGHUP end the bounce like Ctrl-C does: through the finally blocks that stop the engine.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGHUP)} if main_thread else {}
    try:
        bounce(plan(args))
    except BounceError as exc:
        print(f"livediff bounce: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"livediff bounce: interrupted; {args.output} was not written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Stopped as exc:
        print(f"livediff bounce: stopped by {exc}; {args.output} was not written", file=sys.stderr)
        return 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
