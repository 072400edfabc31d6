"""The trained styles: presets/styles/<name>.toml, one per style id.

A style file names the style, its id (what the model is conditioned on, and the plugin's
`style` parameter), a line describing it, a typical tempo, the parameters engine/music.py
uses to generate its procedural training music, and optionally the text prompt that
prompt-conditioned generators (sao_small) get for it. These files are for training and demos;
what a producer hears is set by the presets (presets/*.toml, bridge/presets.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.validate import BOOLEAN, Choice, Number, PresetError, Range, Text, check_keys, check_table, read_toml

STYLES_DIR = Path(__file__).resolve().parent.parent / "presets" / "styles"

_FRACTION = Number(0.0, 1.0)
_WAVES = Choice(("sine", "square", "saw"))
MUSIC_RULES: dict[str, Any] = {
    "tempo_range": Range(60.0, 200.0),
    "four_on_floor": BOOLEAN,
    "kick_density": _FRACTION,
    "hat_rate": Choice((0, 8, 16)),
    "hat_density": _FRACTION,
    "open_hat": _FRACTION,
    "bass_wave": _WAVES,
    "bass_density": _FRACTION,
    "chord_mode": Choice(("pad", "stab", "none")),
    "chord_wave": _WAVES,
    "chord_type": Choice(("triad", "seventh", "power")),
    "lead_wave": _WAVES,
    "lead_density": _FRACTION,
    "scale": Choice(("major", "minor", "dorian")),
    "brightness_hz": Number(300.0, 7000.0),
    "fill_prob": _FRACTION,
    "drop_prob": _FRACTION,
}
STYLE_RULES = {"name": Text(), "id": Number(0, 255, integer=True), "description": Text(),
               "tempo": Number(60.0, 200.0)}


@dataclass(frozen=True)
class Style:
    name: str
    id: int
    description: str
    tempo: float               # typical tempo (demos; never imposed on a host or a bounce)
    music: dict[str, Any]      # engine/music.py's parameters
    prompt: str = ""           # text prompt for prompt-conditioned generators ("" = the empty prompt)


def load_style(path: Path) -> Style:
    path = Path(path)
    data = read_toml(path, "style")
    where = str(path)
    check_keys(where, data, (*STYLE_RULES, "music"), ("prompt",))
    top = {key: rule.check(where, key, data[key]) for key, rule in STYLE_RULES.items()}
    if top["name"] != path.stem:
        raise PresetError(f"{where}: name = {top['name']!r} is not allowed; allowed: the file's name, {path.stem!r}")
    music = check_table(f"{where} [music]", data["music"], MUSIC_RULES, tuple(MUSIC_RULES))
    prompt = Text().check(where, "prompt", data["prompt"]) if "prompt" in data else ""
    return Style(top["name"], top["id"], top["description"], top["tempo"], music, prompt)


def load_styles(directory: Path = STYLES_DIR) -> list[Style]:
    """All styles, sorted by id; the ids must be exactly 0..n-1."""
    styles = sorted((load_style(p) for p in Path(directory).glob("*.toml")), key=lambda s: s.id)
    ids = [s.id for s in styles]
    if ids != list(range(len(styles))):
        raise PresetError(f"{directory}: style ids are {ids}; allowed: each of 0..{len(styles) - 1} exactly once")
    return styles


def style_named(name: str, styles: list[Style] | None = None) -> Style:
    styles = load_styles() if styles is None else styles
    for style in styles:
        if style.name == name:
            return style
    raise PresetError(f"style {name!r} is not allowed; allowed: {', '.join(s.name for s in styles)}")
