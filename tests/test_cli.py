"""The `livediff` command: a top-level help that says what each command does, --version, one-line
errors, and the styles/presets listings."""
from __future__ import annotations

import subprocess
import sys

import pytest

from bridge.cli import COMMANDS, command_help, main
from conftest import REPO


def test_top_level_help_says_what_each_command_does_without_importing_them():
    result = subprocess.run([sys.executable, "-c", "import sys; from bridge.cli import main\n"
                             "try: main(['--help'])\nexcept SystemExit: pass\n"
                             "print('torch' in sys.modules, 'engine.train' in sys.modules)"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    width = max(map(len, COMMANDS))
    for name, module in COMMANDS.items():
        assert command_help(module), f"{module} has no HELP"
        assert f"  {name.ljust(width)}  {command_help(module)}\n" in result.stdout, result.stdout
    assert result.stdout.strip().endswith("False False"), "--help imported the commands"


def test_version_and_unknown_commands(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == "livediff 0.1.0"
    with pytest.raises(SystemExit) as exit:
        main(["bouncy"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "invalid choice: 'bouncy'" in err and len(err.strip().splitlines()) == 1
    assert main([]) == 2 and "commands:" in capsys.readouterr().out


def test_styles_and_presets_listings(capsys):
    assert main(["styles"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["0", "house"], ["1", "hiphop"], ["2", "drum_and_bass"],
                                                    ["3", "ambient"], ["4", "techno"], ["5", "rock"]]
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{name} " in "\n" + out for name in ("house", "hiphop", "drum_and_bass", "ambient", "techno", "rock"))
    assert main(["presets", "techno"]) == 0
    out = capsys.readouterr().out
    assert "plugin: style techno" in out and "engine: steps 2, gain -6 dB, fx HighpassFilter(" in out
    assert "(in a DAW: the plugin's `sound` = techno)" in out
