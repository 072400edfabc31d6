"""The shim builds from a clean tree without a single compiler warning."""
from __future__ import annotations

from bridge.build import build, outputs


def test_clean_build_has_no_warnings(tmp_path):
    result = build(tmp_path, clean=True)
    assert result.returncode == 0, result.stdout
    assert "warning" not in result.stdout.lower(), result.stdout
    for path in outputs(tmp_path).values():
        assert path.is_file() and path.stat().st_size > 0
