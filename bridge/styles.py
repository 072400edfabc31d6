"""`livediff styles`: the trained styles, one line each (the plugin's `style` parameter)."""
from __future__ import annotations

import argparse

from bridge.layout import const
from engine.styles import STYLES_DIR, load_styles

HELP = "List the styles the built-in model was trained on (the plugin's `style` parameter)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    styles = load_styles()
    if len(styles) != const("LD_STYLE_COUNT"):
        print(f"livediff styles: {STYLES_DIR} holds {len(styles)} styles; the plugin has LD_STYLE_COUNT = "
              f"{const('LD_STYLE_COUNT')} (plugin_shim/include/livediff_shm.h): reinstall livediff")
        return 1
    for style in styles:
        print(f"{style.id}  {style.name:<14} {style.description}")
    return 0
