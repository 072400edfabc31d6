"""Trained styles (presets/styles/) and producer presets (presets/*.toml): the shipped ones load,
and every kind of bad file gets one message naming the file, the key, the value and what is allowed."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.layout import const
from bridge.presets import PRESETS_DIR, find_preset, load_preset, preset_files
from engine.music import render_song
from engine.styles import STYLES_DIR, load_style, load_styles
from engine.validate import PresetError


def test_the_styles_are_the_headers_trained_styles_and_render():
    styles = load_styles()
    assert len(styles) == const("LD_STYLE_COUNT") == const("LD_STYLE_MAX") + 1
    assert [s.id for s in styles] == list(range(len(styles)))
    for style in styles:
        assert style.description
        song = render_song(style, style.tempo, (4, 4), 1, 0)
        assert np.isfinite(song.audio).all() and np.abs(song.audio).max() > 0.1


def test_at_least_one_shipped_preset_per_style_and_none_sets_a_tempo():
    presets = [load_preset(p) for p in PRESETS_DIR.glob("*.toml")]
    assert {p.style for p in presets} == set(range(const("LD_STYLE_COUNT")))
    for preset in presets:
        assert preset.sound.fx, f"{preset.name} has no FX chain"
        assert "tempo" not in preset.path.read_text()


def _db(audio: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))))


def test_every_shipped_preset_plays_a_track_at_its_loudness():
    """The FX chain and gain of each shipped preset leave a track of its style at -18 dBFS RMS
    (the usual reference level) within 1.5 dB of its loudness; their compressors and limiters
    make a quieter track louder and a hotter one quieter, by at most 5.5 dB from -24 to -12.
    Before, house, rock and techno played a -22 dB track 7-8 dB louder than it came in."""
    for name in preset_files():
        preset = find_preset(name)
        style = load_styles()[preset.style]
        for seed in range(2):
            song = np.asarray(render_song(style, style.tempo, (4, 4), 8, 8_000_000 + seed, sample_rate=44100,
                                          stereo=True).audio, np.float32)
            for level, allowed in ((-18.0, 1.5), (-24.0, 5.5), (-12.0, 5.5)):
                track = song * np.float32(10 ** ((level - _db(song)) / 20))
                change = _db(preset.sound.process(track, 44100)) - level
                assert abs(change) <= allowed, f"{name} at {level} dBFS RMS: {change:+.1f} dB"


def write(tmp_path, text: str, name: str = "mine.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = 'style = "house"\nsteps = 2\nwindow_bars = 1\nmix = 80\nseed = 3\n[[fx]]\nplugin = "Gain"\ngain_db = -3.0\n'


def test_a_good_preset_of_your_own(tmp_path):
    preset = load_preset(write(tmp_path, GOOD))
    assert preset.style == 0 and preset.params == {"style": 0, "window_bars": 1, "mix": 80} and preset.seed == 3
    assert preset.sound.steps == 2 and preset.sound.fx[0].plugin == "Gain"


@pytest.mark.parametrize("text, message", [
    # unknown key (a tempo among them: presets never set one)
    ("tempo = 132.0\n" + GOOD, r"mine.toml: unknown keys \['tempo'\]; allowed keys: style, description, id, generator"),
    ('id = "house"\n' + GOOD, r"mine.toml: id = 'house' is not allowed; allowed: an integer from 1 to 999"),
    # missing required key
    ("steps = 2\n", r"mine.toml: missing keys \['style'\]"),
    # a name that is not in the list
    ('style = "polka"\n', r"mine.toml: style = 'polka' is not allowed; allowed: one of 'house', 'hiphop'"),
    # wrong type
    (GOOD.replace("steps = 2", 'steps = "two"'), r"mine.toml: steps = 'two' is not allowed; allowed: an integer from 1 to 8"),
    # out of range
    (GOOD.replace("window_bars = 1", "window_bars = 9"),
     r"mine.toml: window_bars = 9 is out of range; allowed: an integer from 1 to 4"),
    (GOOD.replace("mix = 80", "mix = 101"), r"mix = 101 is out of range; allowed: an integer from 0 to 100"),
    ("gain_db = 40.0\n" + GOOD, r"gain_db = 40.0 is out of range; allowed: a number from -24 to 12"),
    # enum value
    ('generator = "gan"\n' + GOOD, r"generator = 'gan' is not allowed; allowed: one of 'diffusion', 'loop'"),
    # seed policy
    (GOOD.replace("seed = 3", 'seed = "lucky"'), r"seed = 'lucky' is not allowed; allowed: an integer from 0 to 999, "
                                                 r"or 'random'"),
    # the FX chain
    (GOOD.replace('plugin = "Gain"', 'plugin = "Autotune"'), r"mine.toml \[\[fx\]\] #1: plugin = 'Autotune' is not allowed"),
    ('style = "house"\nfx = 3\n', r"fx = 3 is not allowed; allowed: an array of tables"),
    # not TOML
    ('style = "house\n', r"mine.toml: not valid TOML"),
])
def test_bad_presets_name_file_key_value_and_what_is_allowed(tmp_path, text, message):
    with pytest.raises(PresetError, match=message):
        load_preset(write(tmp_path, text))


def test_binary_and_missing_preset_files(tmp_path):
    binary = tmp_path / "noise.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(PresetError, match=r"noise.toml: not a text file \(not UTF-8\); a preset is a TOML text file"):
        load_preset(binary)
    with pytest.raises(PresetError, match=r"preset file .*nope.toml does not exist"):
        load_preset(tmp_path / "nope.toml")
    with pytest.raises(PresetError, match=r"preset 'nope' is not allowed; allowed: ambient, drum_and_bass"):
        find_preset("nope")


def test_your_presets_directory_is_searched_and_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "livediff" / "presets").mkdir(parents=True)
    write(tmp_path / "livediff" / "presets", GOOD, "house.toml")
    write(tmp_path / "livediff" / "presets", GOOD, "mine.toml")
    assert preset_files()["mine"].parent == tmp_path / "livediff" / "presets"
    assert find_preset("house").params["mix"] == 80


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + "\nswing = 0.5\n", r"unknown keys \['swing'\]"),
    (lambda t: t.replace("hat_density = 1.0", "hat_density = 1.0\nreverb = 1"), r"\[music\]: unknown keys \['reverb'\]"),
    (lambda t: t.replace("id = 0", 'id = "zero"'), r"id = 'zero' is not allowed; allowed: an integer"),
    (lambda t: t.replace("tempo = 124.0", "tempo = 250.0"), r"tempo = 250.0 is out of range; allowed: a number from 60 to 200"),
    (lambda t: t.replace('bass_wave = "saw"', 'bass_wave = "fm"'), r"bass_wave = 'fm' is not allowed; allowed: one of 'sine'"),
    (lambda t: t.replace("hat_rate = 8", "hat_rate = 12"), r"hat_rate = 12 is not allowed; allowed: one of 0, 8, 16"),
    (lambda t: t.replace("tempo_range = [118.0, 130.0]", "tempo_range = [130.0, 118.0]"), r"60 <= low <= high <= 200"),
    (lambda t: t.replace("fill_prob = 0.5\n", ""), r"missing keys \['fill_prob'\]"),
    (lambda t: t.replace('name = "house"', 'name = "disco"'), r"name = 'disco' is not allowed; allowed: the file's name"),
])
def test_bad_style_files_name_what_is_allowed(tmp_path, edit, message):
    path = tmp_path / "house.toml"
    path.write_text(edit((STYLES_DIR / "house.toml").read_text()))
    with pytest.raises(PresetError, match=message):
        load_style(path)


def test_style_ids_must_be_each_id_once(tmp_path):
    for name in ("house", "techno"):
        text = (STYLES_DIR / f"{name}.toml").read_text()
        (tmp_path / f"{name}.toml").write_text(text.replace("id = 4", "id = 0"))
    with pytest.raises(PresetError, match=r"style ids are \[0, 0\]; allowed: each of 0..1 exactly once"):
        load_styles(tmp_path)


def test_sound_values_follow_the_preset_ids_and_a_new_preset_moves_none(tmp_path):
    """The `sound` parameter's values are the shipped presets' `id`s: a project saved with
    sound 4 (house) still gets house after a preset "ambient_dub" is added, whose name sorts
    before it. Missing, repeated and gapped ids stop the build with the file named."""
    from plugin_shim.param_labels import sound_names
    for path in PRESETS_DIR.glob("*.toml"):
        (tmp_path / path.name).write_text(path.read_text())
    before = sound_names(tmp_path)
    write(tmp_path, 'style = "ambient"\nid = 7\n', "ambient_dub.toml")
    after = sound_names(tmp_path)
    assert after[:len(before)] == before and after[-1] == "ambient_dub" and after[4] == "house"
    for text, message in (('style = "ambient"\n', "needs an integer `id` of its own"),
                          ('style = "ambient"\nid = 3\n', "needs an integer `id` of its own"),
                          ('style = "ambient"\nid = 9\n', r"preset ids \[1, 2, 3, 4, 5, 6, 7, 9\] must be 1..n")):
        write(tmp_path, text, "extra.toml")
        with pytest.raises(SystemExit, match=message):
            sound_names(tmp_path)
