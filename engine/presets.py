"""Style presets: presets/<style>.toml, one per style id.

A preset names a style, its id (the plugin's style parameter), a suggested tempo, and the
parameters engine/music.py uses to generate that style. Loading validates every key, so a
typo or an out-of-range value fails with a message naming what is allowed.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.representation import STYLE_COUNT

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"

_FRACTION = (float, 0.0, 1.0)
_WAVES = ("sine", "square", "saw")
# key -> (type, min, max) for numbers, (type, choices) for strings; tempo_range is a [low, high] pair.
GENERATOR_SCHEMA: dict[str, tuple] = {
    "tempo_range": (list, 60.0, 200.0),
    "four_on_floor": (bool,),
    "kick_density": _FRACTION,
    "hat_rate": (int, (0, 8, 16)),
    "hat_density": _FRACTION,
    "open_hat": _FRACTION,
    "bass_wave": (str, _WAVES),
    "bass_density": _FRACTION,
    "chord_mode": (str, ("pad", "stab", "none")),
    "chord_wave": (str, _WAVES),
    "chord_type": (str, ("triad", "seventh", "power")),
    "lead_wave": (str, _WAVES),
    "lead_density": _FRACTION,
    "scale": (str, ("major", "minor", "dorian")),
    "brightness_hz": (float, 300.0, 7000.0),
    "fill_prob": _FRACTION,
    "drop_prob": _FRACTION,
}
TOP_LEVEL_KEYS = ("name", "style", "tempo", "generator")


class PresetError(ValueError):
    pass


@dataclass(frozen=True)
class Preset:
    name: str
    style: int
    tempo: float
    generator: dict[str, Any]


def _check_value(where: str, key: str, value: Any, rule: tuple) -> Any:
    kind = rule[0]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list:
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
            raise PresetError(f"{where}: {key} must be a [low, high] pair of numbers, got {value!r}")
        low, high = float(value[0]), float(value[1])
        if not rule[1] <= low <= high <= rule[2]:
            raise PresetError(f"{where}: {key} = {value!r} must satisfy {rule[1]} <= low <= high <= {rule[2]}")
        return (low, high)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PresetError(f"{where}: {key} must be of type {kind.__name__}, got {type(value).__name__} {value!r}")
    if len(rule) == 2 and value not in rule[1]:
        raise PresetError(f"{where}: {key} = {value!r} is not allowed; allowed: {', '.join(map(str, rule[1]))}")
    if len(rule) == 3 and not rule[1] <= value <= rule[2]:
        raise PresetError(f"{where}: {key} = {value!r} is out of range; allowed: {rule[1]} to {rule[2]}")
    return value


def parse_preset(data: dict[str, Any], where: str) -> Preset:
    unknown = set(data) - set(TOP_LEVEL_KEYS)
    missing = set(TOP_LEVEL_KEYS) - set(data)
    if unknown or missing:
        raise PresetError(f"{where}: unknown keys {sorted(unknown)} / missing keys {sorted(missing)}; "
                          f"a preset has exactly: {', '.join(TOP_LEVEL_KEYS)}")
    name = _check_value(where, "name", data["name"], (str,))
    style = _check_value(where, "style", data["style"], (int, 0, STYLE_COUNT - 1))
    tempo = _check_value(where, "tempo", data["tempo"], (float, 60.0, 200.0))
    generator = data["generator"]
    if not isinstance(generator, dict):
        raise PresetError(f"{where}: [generator] must be a table")
    unknown = set(generator) - set(GENERATOR_SCHEMA)
    missing = set(GENERATOR_SCHEMA) - set(generator)
    if unknown or missing:
        raise PresetError(f"{where}: [generator] has unknown keys {sorted(unknown)} / missing keys {sorted(missing)}; "
                          f"allowed keys: {', '.join(GENERATOR_SCHEMA)}")
    checked = {key: _check_value(f"{where} [generator]", key, value, GENERATOR_SCHEMA[key]) for key, value in generator.items()}
    return Preset(name=name, style=style, tempo=tempo, generator=checked)


def load_preset(path: Path) -> Preset:
    path = Path(path)
    if not path.is_file():
        raise PresetError(f"preset file {path} does not exist; presets live in {PRESETS_DIR} as <style>.toml")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise PresetError(f"{path}: not valid TOML: {err}") from None
    return parse_preset(data, str(path))


def load_presets(directory: Path = PRESETS_DIR) -> list[Preset]:
    """All presets, sorted by style id; style ids must be unique."""
    presets = sorted((load_preset(p) for p in Path(directory).glob("*.toml")), key=lambda p: p.style)
    if not presets:
        raise PresetError(f"no presets (*.toml) in {directory}")
    ids = [p.style for p in presets]
    if len(set(ids)) != len(ids):
        raise PresetError(f"{directory}: style ids must be unique, got {ids}")
    return presets
