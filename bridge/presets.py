"""Presets a producer hears, and `livediff presets`.

A preset (presets/<name>.toml, or your own in ~/.config/livediff/presets/) sets:
- plugin parameters: style (by name), generator, window/lookahead/context bars, mix, variation;
- a seed policy: a fixed seed, or "random" (a new seed per bounce, printed);
- `id`, in a shipped preset: its value of the plugin's `sound` parameter, which projects save;
- what the engine does to each generated window (engine/sound.py): sampler steps, an FX
  chain of pedalboard effects, output gain. The plugin's `sound` parameter picks that part per
  instance, from the shipped presets by name (SOUND_NAMES).
Every key is optional except `style`; what a preset leaves out keeps the plugin's default.
A preset never sets a tempo: the tempo is the host's, or --bpm / the input's estimate in a bounce.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from bridge.layout import enum_members
from bridge.protocol import param_range
from engine.sound import KEYS as SOUND_KEYS
from engine.sound import Sound, parse_sound
from engine.styles import load_styles
from engine.validate import Choice, Number, PresetError, Text, check_keys, read_toml
from plugin_shim.param_labels import ENGINE_SOUND, sound_names

HELP = "List the presets (or show one): what each sets in the plugin and the engine."
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
PLUGIN_KEYS = ("window_bars", "lookahead", "context_bars", "mix", "variation")
GENERATORS = {name[len("LD_GENERATOR_"):].lower(): value
              for name, value in sorted(enum_members("ld_generator").items(), key=lambda item: item[1])}
RANDOM_SEED = "random"
# The `sound` parameter's values, as the plugin shows them (the same function writes its C table).
SOUND_NAMES = tuple(sound_names(PRESETS_DIR))


def user_presets_dir(environ=os.environ) -> Path:
    return Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "livediff" / "presets"


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    description: str
    style: int
    generator: str | None = None                     # None: the plugin's
    params: dict[str, int] = field(default_factory=dict)   # plugin parameters set (style included)
    seed: int | str | None = None                    # int, RANDOM_SEED, or None (the plugin's)
    sound: Sound = Sound()


def parse_preset(data: dict, path: Path) -> Preset:
    where = str(path)
    check_keys(where, data, ("style",), ("description", "id", "generator", "seed", *PLUGIN_KEYS, *SOUND_KEYS))
    if "id" in data:        # a shipped preset's `sound` value (plugin_shim/param_labels.py); yours may keep a copy's
        Number(1, 999, integer=True).check(where, "id", data["id"])
    styles = load_styles()
    style = Choice(tuple(s.name for s in styles)).check(where, "style", data["style"])
    params = {"style": next(s.id for s in styles if s.name == style)}
    for key in PLUGIN_KEYS:
        if key in data:
            params[key] = Number(*param_range(key), integer=True).check(where, key, data[key])
    generator = Choice(tuple(GENERATORS)).check(where, "generator", data["generator"]) if "generator" in data else None
    seed = data.get("seed")
    low, high = param_range("seed")
    if seed is not None and seed != RANDOM_SEED and (not isinstance(seed, int) or isinstance(seed, bool)
                                                     or not low <= seed <= high):
        raise PresetError(f"{where}: seed = {seed!r} is not allowed; allowed: an integer from {low:g} to {high:g}, "
                          f"or {RANDOM_SEED!r}")
    return Preset(name=path.stem, path=path, description=Text().check(where, "description", data.get("description", "")),
                  style=params["style"], generator=generator, params=params, seed=seed,
                  sound=parse_sound(data, where))


def load_preset(path: Path) -> Preset:
    path = Path(path)
    return parse_preset(read_toml(path, "preset"), path)


def preset_files() -> dict[str, Path]:
    """name -> file: the shipped presets, then yours (a preset of yours replaces a shipped one of the same name)."""
    files: dict[str, Path] = {}
    for directory in (PRESETS_DIR, user_presets_dir()):
        files.update({p.stem: p for p in sorted(directory.glob("*.toml"))})
    return files


def find_preset(name_or_path: str) -> Preset:
    """A preset by name (`house`) or by file (`my.toml`, `./presets/x.toml`)."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return load_preset(Path(name_or_path))
    files = preset_files()
    if name_or_path not in files:
        raise PresetError(f"preset {name_or_path!r} is not allowed; allowed: {', '.join(files)} "
                          f"(or a .toml file; yours go in {user_presets_dir()})")
    return load_preset(files[name_or_path])


def sound_of(preset: Preset) -> str | None:
    """The `sound` value that gives an instance this preset's engine part: its name, when an
    engine resolves that name to this very file; None for a preset the parameter cannot name."""
    files = preset_files()
    return preset.name if preset.name in SOUND_NAMES and files[preset.name].resolve() == preset.path.resolve() else None


def sounds(engine: Sound) -> tuple[dict[str, Sound], dict[str, str]]:
    """What each `sound` value gives a session: ENGINE_SOUND the engine's own (`serve --preset`),
    every other the engine part of that preset (yours where you replaced a shipped one). Also,
    name -> why it could not be read, for a preset file of yours that is broken."""
    table, broken = {ENGINE_SOUND: engine}, {}
    for name in SOUND_NAMES[1:]:
        try:
            table[name] = find_preset(name).sound
        except PresetError as exc:
            broken[name] = str(exc)
    return table, broken


def describe(preset: Preset) -> str:
    styles = load_styles()
    plugin = ", ".join([f"style {styles[preset.style].name}"] + ([f"generator {preset.generator}"] if preset.generator else [])
                       + [f"{k} {v}" for k, v in preset.params.items() if k != "style"]
                       + ([f"seed {preset.seed}"] if preset.seed is not None else []))
    sound = f" (in a DAW: the plugin's `sound` = {preset.name})" if sound_of(preset) else ""
    return (f"{preset.name}: {preset.description}\n  file: {preset.path}\n  plugin: {plugin}\n"
            f"  engine: {preset.sound}{sound}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="a preset name or .toml file to show in full (default: list all)")


def run(args: argparse.Namespace) -> int:
    if args.name:
        try:
            print(describe(find_preset(args.name)))
        except PresetError as exc:
            print(f"livediff presets: {exc}")
            return 1
        return 0
    status = 0
    for name, path in preset_files().items():
        try:
            preset = load_preset(path)
            print(f"{name:<16} {load_styles()[preset.style].name:<14} {preset.description}")
        except PresetError as exc:
            print(f"{name:<16} BROKEN: {exc}")
            status = 1
    print(f"\n`livediff presets NAME` shows one in full; your own presets go in {user_presets_dir()}.\n"
          f"In a DAW the plugin's `sound` parameter gives an instance the engine part (steps, FX, gain) of "
          f"{', '.join(SOUND_NAMES[1:])}, or `{ENGINE_SOUND}`: what `livediff serve --preset` set.")
    return status
