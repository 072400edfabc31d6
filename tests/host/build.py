"""Build the plugin once per test session (make is incremental, so this is cheap when
`make test` already built it)."""
from __future__ import annotations

import functools
from pathlib import Path

from bridge.build import BUILD_DIR, build, outputs


@functools.cache
def built_plugin() -> dict[str, Path]:
    """{"VST3": bundle folder, "CLAP": .clap file}; raises with the compiler output on failure."""
    result = build(BUILD_DIR)
    if result.returncode != 0:
        raise RuntimeError(f"building the plugin failed:\n{result.stdout}")
    paths = outputs(BUILD_DIR)
    return {"VST3": paths["VST3"].parents[2], "CLAP": paths["CLAP"]}
