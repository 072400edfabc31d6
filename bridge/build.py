"""`livediff build-plugin`: compile the C shim (plugin_shim/) into build/livediff.vst3 and
build/livediff.clap with make, after checking the libraries it links are installed.

The shim's sources are package data, so this works from a checkout (build/ in it) and from an
installed livediff (build/ in ~/.local/share/livediff/)."""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from engine.styles import STYLES_DIR

HELP = "Build the plugin: build/livediff.vst3 (VST3 bundle) and build/livediff.clap, from plugin_shim/."

PACKAGE_ROOT = Path(__file__).resolve().parent.parent   # the checkout, or site-packages
SHIM = PACKAGE_ROOT / "plugin_shim"


def default_build_dir() -> Path:
    if (PACKAGE_ROOT / "pyproject.toml").is_file():   # a checkout
        return PACKAGE_ROOT / "build"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "livediff" / "build"


BUILD_DIR = default_build_dir()
REQUIREMENTS = {  # header -> Debian 12 package that provides it
    "/usr/include/zmq.h": "libzmq3-dev",
    "/usr/include/msgpack.h": "libmsgpack-dev",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build-dir", default=str(BUILD_DIR), help=f"output folder (default: {BUILD_DIR})")
    parser.add_argument("--clean", action="store_true", help="rebuild everything")


def outputs(build_dir: Path) -> dict[str, Path]:
    return {"VST3": build_dir / "livediff.vst3" / "Contents" / "x86_64-linux" / "livediff.so",
            "CLAP": build_dir / "livediff.clap"}


def missing_requirements() -> list[str]:
    tools = [tool for tool in ("make", "cc", "pkg-config") if shutil.which(tool) is None]
    headers = [f"{header} (apt install {package})" for header, package in REQUIREMENTS.items()
               if not Path(header).is_file()]
    return [f"{tool} (apt install build-essential pkg-config)" for tool in tools] + headers


def engine_command() -> str:
    """The `livediff` of this installation, baked into the plugin as the command it starts when
    no engine answers; "" (then `livediff` on PATH) when it is not found or its path would need
    quoting."""
    script = Path(sys.executable).with_name("livediff")
    found = str(script) if script.is_file() else shutil.which("livediff") or ""
    return found if re.fullmatch(r"[A-Za-z0-9_./+-]*", found) else ""


def build(build_dir: Path, clean: bool = False) -> subprocess.CompletedProcess:
    """Run make; returns the completed process (stdout+stderr in .stdout). The style and sound
    names come from the presets (presets/, presets/styles/)."""
    command = ["make", "-C", str(SHIM), f"BUILD={build_dir.resolve()}", f"PYTHON={sys.executable}",
               f"PRESETS={STYLES_DIR.parent}", f"ENGINE_COMMAND={engine_command()}"]
    if clean:
        subprocess.run([*command, "clean"], check=False, capture_output=True)
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(args: argparse.Namespace) -> int:
    missing = missing_requirements()
    if missing:
        print("livediff build-plugin: cannot build, missing:\n  " + "\n  ".join(missing))
        return 1
    build_dir = Path(args.build_dir)
    result = build(build_dir, args.clean)
    print(result.stdout, end="")
    if result.returncode != 0:
        print(f"livediff build-plugin: make failed (exit {result.returncode}); see the compiler output above")
        return result.returncode
    vst3, clap = outputs(build_dir).values()
    print(f"VST3 bundle: {vst3.parents[2]}  (library {vst3})")
    print(f"CLAP: {clap}")
    return 0
