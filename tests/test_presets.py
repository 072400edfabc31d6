"""presets/*.toml: one valid preset per style, and clear errors for bad ones."""
from __future__ import annotations

import tomllib

import numpy as np
import pytest

from engine.music import render_song
from engine.presets import PRESETS_DIR, PresetError, load_preset, load_presets


def test_every_shipped_preset_loads_and_renders():
    presets = load_presets()
    assert [p.style for p in presets] == list(range(len(presets)))
    assert 5 <= len(presets) <= 8
    for preset in presets:
        song = render_song(preset, preset.tempo, (4, 4), 1, 0)
        assert np.isfinite(song.audio).all() and np.abs(song.audio).max() > 0.1


def write_variant(tmp_path, edit) -> object:
    text = (PRESETS_DIR / "house.toml").read_text()
    path = tmp_path / "variant.toml"
    path.write_text(edit(text))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + "\nswing = 0.5\n", r"unknown keys \['swing'\]"),
    (lambda t: t.replace("hat_density = 1.0", "hat_density = 1.0\nreverb = 1"), r"unknown keys \['reverb'\].*allowed keys"),
    (lambda t: t.replace("style = 0", 'style = "zero"'), "style must be of type int"),
    (lambda t: t.replace("style = 0", "style = 9"), "allowed: 0 to 5"),
    (lambda t: t.replace("tempo = 124.0", "tempo = 250.0"), "allowed: 60.0 to 200.0"),
    (lambda t: t.replace('bass_wave = "saw"', 'bass_wave = "fm"'), "allowed: sine, square, saw"),
    (lambda t: t.replace("hat_rate = 8", "hat_rate = 12"), "allowed: 0, 8, 16"),
    (lambda t: t.replace("tempo_range = [118.0, 130.0]", "tempo_range = [130.0, 118.0]"), "low <= high"),
    (lambda t: t.replace("fill_prob = 0.5\n", ""), r"missing keys \['fill_prob'\]"),
    (lambda t: t.replace("[generator]", "[generator"), "not valid TOML"),
])
def test_bad_presets_name_what_is_allowed(tmp_path, edit, message):
    with pytest.raises(PresetError, match=message):
        load_preset(write_variant(tmp_path, edit))


def test_missing_preset_file(tmp_path):
    with pytest.raises(PresetError, match="does not exist; presets live in"):
        load_preset(tmp_path / "nope.toml")


def test_duplicate_style_ids_are_refused(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.toml").write_text((PRESETS_DIR / "house.toml").read_text())
    with pytest.raises(PresetError, match="style ids must be unique"):
        load_presets(tmp_path)


def test_shipped_files_are_plain_toml():
    for path in PRESETS_DIR.glob("*.toml"):
        assert tomllib.loads(path.read_text())["name"] == path.stem
