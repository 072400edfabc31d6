"""`livediff install-plugin`: copy the built plugin where hosts look for it, ~/.vst3 and ~/.clap
(or PREFIX/vst3 and PREFIX/clap, e.g. --prefix /usr/lib for every user), building it first if
needed."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from bridge.build import BUILD_DIR, build, missing_requirements, outputs

HELP = "Install the plugin for hosts: the VST3 bundle into ~/.vst3 and the CLAP file into ~/.clap (or --prefix)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefix", metavar="DIR", help="install into DIR/vst3 and DIR/clap instead "
                                                        "(e.g. /usr/lib, which hosts search for every user)")
    parser.add_argument("--build-dir", default=str(BUILD_DIR), help=f"where the plugin is built (default: {BUILD_DIR})")


def destinations(prefix: str | None) -> tuple[Path, Path]:
    """(VST3 folder, CLAP folder)."""
    if prefix:
        return Path(prefix) / "vst3", Path(prefix) / "clap"
    home = Path.home()
    return home / ".vst3", home / ".clap"


def install(build_dir: Path, prefix: str | None) -> tuple[Path, Path]:
    """Copy the bundle and the .clap (replacing earlier copies); returns where they went."""
    built = outputs(build_dir)
    vst3_dir, clap_dir = destinations(prefix)
    bundle = built["VST3"].parents[2]
    vst3_dir.mkdir(parents=True, exist_ok=True)
    clap_dir.mkdir(parents=True, exist_ok=True)
    vst3_target, clap_target = vst3_dir / bundle.name, clap_dir / built["CLAP"].name
    if vst3_target.is_symlink() or vst3_target.is_file():
        vst3_target.unlink()
    elif vst3_target.exists():
        shutil.rmtree(vst3_target)
    shutil.copytree(bundle, vst3_target)
    # A host may have the old file mapped: write a new file and rename it over the old one.
    partial = clap_target.with_name(clap_target.name + ".partial")
    shutil.copy2(built["CLAP"], partial)
    partial.replace(clap_target)
    return vst3_target, clap_target


def run(args: argparse.Namespace) -> int:
    build_dir = Path(args.build_dir)
    missing = missing_requirements()
    if missing:
        print("livediff install-plugin: cannot build the plugin, missing:\n  " + "\n  ".join(missing))
        return 1
    result = build(build_dir)           # incremental: nothing to do when it is up to date
    if result.returncode != 0:
        print(result.stdout, end="")
        print(f"livediff install-plugin: building the plugin failed (exit {result.returncode}); see above")
        return result.returncode
    try:
        vst3, clap = install(build_dir, args.prefix)
    except OSError as exc:
        print(f"livediff install-plugin: {exc}")
        return 1
    print(f"VST3: {vst3}")
    print(f"CLAP: {clap}")
    return 0
