"""`livediff doctor`: checks the setup, one line per check, each failure with its fix.

Exit status 0 when nothing failed (warnings are things that work around themselves, such as
no engine running: hosts find none, bounces start their own).
"""
from __future__ import annotations

import argparse
import ctypes.util
import importlib.metadata
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from bridge import build
from bridge.endpoint import EndpointError, default_endpoint, ipc_path

HELP = "Check the setup (libraries, plugin build and install, engine, model speed, ONNX Runtime, torch, permissions)."
OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    status: str
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status:<4}  {self.what}" + (f"\n      fix: {self.fix}" if self.fix else "")


def check_libraries() -> Check:
    """libzmq and msgpack-c: the headers to build the shim, the shared libraries it loads."""
    missing = build.missing_requirements()
    libraries = [name for name in ("zmq", "msgpackc") if ctypes.util.find_library(name) is None]
    if missing or libraries:
        return Check(FAIL, "missing to build or run the plugin: " + ", ".join(missing + [f"lib{n}.so" for n in libraries]),
                     "sudo apt-get install libzmq3-dev libmsgpack-dev build-essential pkg-config")
    return Check(OK, "libzmq and msgpack-c are installed (headers and libraries)")


def check_build(build_dir: Path) -> Check:
    outputs = build.outputs(build_dir)
    absent = [f"{kind} ({path})" for kind, path in outputs.items() if not path.is_file()]
    if absent:
        return Check(FAIL, "plugin not built: missing " + ", ".join(absent), "livediff build-plugin")
    sources = [p for p in build.SHIM.rglob("*") if p.suffix in (".c", ".h") or p.name == "Makefile"]
    newest = max(p.stat().st_mtime for p in sources) if sources else 0
    stale = [kind for kind, path in outputs.items() if path.stat().st_mtime < newest]
    if stale:
        return Check(FAIL, f"plugin build is older than its sources ({', '.join(stale)}): hosts would load an old shim",
                     "livediff build-plugin")
    return Check(OK, f"plugin built: {outputs['VST3'].parents[2]} and {outputs['CLAP']}")


def installed_locations(home: Path, environ=os.environ) -> dict[str, list[Path]]:
    """Where hosts look (Linux): VST3 in ~/.vst3 and /usr/lib/vst3; CLAP in ~/.clap, /usr/lib/clap and $CLAP_PATH."""
    clap_path = [Path(p) for p in environ.get("CLAP_PATH", "").split(":") if p]
    return {"VST3": [home / ".vst3" / "livediff.vst3", Path("/usr/lib/vst3/livediff.vst3")],
            "CLAP": [d / "livediff.clap" for d in [home / ".clap", Path("/usr/lib/clap"), *clap_path]]}


def check_installed(build_dir: Path, home: Path) -> list[Check]:
    built = build.outputs(build_dir)
    checks = []
    for kind, places in installed_locations(home).items():
        found = next((p for p in places if p.exists()), None)
        library = (found / "Contents" / "x86_64-linux" / "livediff.so") if found and kind == "VST3" else found
        fix = "livediff install-plugin" if "install-plugin" in _commands() else \
            f"copy {built[kind].parents[2] if kind == 'VST3' else built[kind]} to {places[0].parent}/"
        if found is None:
            checks.append(Check(WARN, f"{kind} plugin not installed where hosts look ({places[0]})", fix))
        elif built[kind].is_file() and library.is_file() and library.read_bytes() != built[kind].read_bytes():
            checks.append(Check(WARN, f"{kind} plugin at {found} differs from the build in {build_dir}", fix))
        else:
            checks.append(Check(OK, f"{kind} plugin installed: {found}"))
    return checks


def _commands() -> dict:
    from bridge.cli import COMMANDS
    return COMMANDS


def check_endpoint_directory(endpoint: str) -> Check:
    path = ipc_path(endpoint)
    if path is None:
        return Check(OK, f"endpoint {endpoint} is loopback TCP (no directory)")
    directory = path.parent
    if not directory.exists():
        return Check(OK, f"endpoint directory {directory} does not exist yet (the engine creates it, mode 700)")
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return Check(FAIL, f"endpoint directory {directory} is not a directory of yours (uid {info.st_uid})",
                     f"remove it, or set LIVEDIFF_ENDPOINT=ipc://<a directory of yours>/engine.sock")
    if info.st_mode & 0o077:
        return Check(FAIL, f"endpoint directory {directory} has mode {stat.S_IMODE(info.st_mode):o}: "
                           f"other users could reach the engine", f"chmod 700 {directory}")
    return Check(OK, f"endpoint directory {directory} is yours, mode 700")


def check_engine(endpoint: str) -> Check:
    from bridge.client import engine_answers
    if engine_answers(endpoint, 0.5):
        return Check(OK, f"an engine answers on {endpoint}")
    return Check(WARN, f"no engine answers on {endpoint}: plugins in a DAW play silence until one does "
                       f"(livediff bounce starts its own)", "livediff serve")


def check_runtimes() -> list[Check]:
    checks = []
    try:
        import onnxruntime
        providers = onnxruntime.get_available_providers()
        checks.append(Check(OK, f"ONNX Runtime {onnxruntime.__version__}, providers: {', '.join(providers)} "
                                f"(the engine uses CPUExecutionProvider)"))
    except ImportError as exc:
        checks.append(Check(FAIL, f"ONNX Runtime does not import ({exc}): the engine falls back to torch, if any",
                            "pip install onnxruntime-gpu"))
    try:
        version = importlib.metadata.version("torch")
        checks.append(Check(OK, f"torch {version} (for train, export-onnx and the torch backend)"))
    except importlib.metadata.PackageNotFoundError:
        checks.append(Check(WARN, "torch is not installed: inference uses ONNX Runtime; train and export-onnx need torch",
                            "pip install 'livediff[train]'"))
    return checks


def check_model() -> Check:
    """Load the built-in model and time one 1-bar window at 120 BPM, 44.1 kHz stereo (after one warm-up)."""
    import numpy as np

    from engine.diffusion import load_builtin
    from engine.generator import WindowRequest
    try:
        generator = load_builtin(backend="auto")
        rate, frames = 44100, 88200     # one 4/4 bar at 120 BPM
        context = np.zeros((2, 2 * frames), np.float32)
        context[:, ::11025] = 0.8       # a click every 16th: something to continue
        request = WindowRequest(context=context, sample_rate=rate, tempo_bpm=120.0, tsig_num=4, tsig_den=4,
                                context_bars=2, bars=1, frames=frames, tail_frames=1323, style=0, seed=1)
        generator.generate(request)
        started = time.perf_counter()
        audio = generator.generate(request)
        seconds = time.perf_counter() - started
    except Exception as exc:  # missing or corrupt weights, backend failures: reported, not raised
        return Check(FAIL, f"the built-in model does not load or run: {type(exc).__name__}: {exc}",
                     "reinstall livediff (its weights are package data), or `livediff export-onnx`")
    if audio.shape != (2, frames + 1323) or not np.isfinite(audio).all():
        return Check(FAIL, f"the built-in model returned shape {audio.shape} or non-finite audio", "reinstall livediff")
    speed = frames / rate / seconds
    status, fix = (OK, "") if speed >= 2 else (WARN, "a busy or slow machine: use --generator loop, or fewer instances")
    return Check(status, f"built-in model ({generator.backend.name}) runs one bar in {seconds * 1000:.0f} ms "
                         f"({speed:.0f}x real time on this machine)", fix)


def check_presets() -> list[Check]:
    from bridge.layout import const
    from bridge.presets import SOUND_NAMES, load_preset, preset_files
    from engine.styles import load_styles
    from engine.validate import PresetError
    checks = []
    try:
        styles = load_styles()
        if len(styles) != const("LD_STYLE_COUNT"):
            checks.append(Check(FAIL, f"{len(styles)} styles but the plugin has {const('LD_STYLE_COUNT')}",
                                "reinstall livediff"))
    except PresetError as exc:
        checks.append(Check(FAIL, f"styles: {exc}", "reinstall livediff"))
    if len(SOUND_NAMES) != const("LD_SOUND_COUNT"):
        checks.append(Check(FAIL, f"{len(SOUND_NAMES) - 1} shipped presets but the plugin's `sound` parameter names "
                                  f"{const('LD_SOUND_COUNT') - 1}", "reinstall livediff"))
    broken = []
    for name, path in preset_files().items():
        try:
            load_preset(path)
        except PresetError as exc:
            broken.append(str(exc))
    if broken:
        checks += [Check(FAIL, f"preset: {text}", "fix or remove that file (an instance whose `sound` names it gets "
                                                  "the engine's sound)") for text in broken]
    else:
        checks.append(Check(OK, f"{len(preset_files())} presets load (`livediff presets` lists them)"))
    return checks


def run_checks(endpoint: str | None = None, home: Path | None = None, model: bool = True) -> list[Check]:
    build_dir = build.BUILD_DIR
    checks = [check_libraries(), check_build(build_dir), *check_installed(build_dir, home or Path.home())]
    try:
        endpoint = endpoint or default_endpoint()
        checks += [check_endpoint_directory(endpoint), check_engine(endpoint)]
    except EndpointError as exc:
        checks.append(Check(FAIL, str(exc), "set LIVEDIFF_ENDPOINT to ipc://<path> or tcp://127.0.0.1:<port>"))
    checks += check_runtimes()
    if model:
        checks.append(check_model())
    checks += check_presets()
    return checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="engine endpoint to check (default: the rule of docs/protocol.md)")
    parser.add_argument("--no-model", action="store_true", help="skip loading and timing the model")


def run(args: argparse.Namespace) -> int:
    from bridge.cli import version
    print(f"livediff {version()}")
    checks = run_checks(endpoint=args.endpoint, model=not args.no_model)
    for check in checks:
        print(check.line())
    failed = sum(c.status == FAIL for c in checks)
    print(f"{failed} problem(s) to fix" if failed else "all good")
    return 1 if failed else 0
