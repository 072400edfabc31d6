"""The `livediff` command. Each subcommand lives in its own module, imported only when used
(so `livediff serve` does not pay for importing torch), and exposes:
    HELP: str
    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "build-plugin": "bridge.build",
    "install-plugin": "bridge.install",
    "serve": "bridge.server",
    "bounce": "bridge.bounce",
    "demo": "bridge.demo",
    "train": "engine.train",
    "export-onnx": "engine.export_onnx",
    "eval": "engine.evaluate",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="livediff", description="Live music diffusion engine.")
        parser.add_argument("command", choices=sorted(COMMANDS))
        parser.parse_args(argv[:1] or ["--help"])
        return 2
    module = importlib.import_module(COMMANDS[argv[0]])
    parser = argparse.ArgumentParser(prog=f"livediff {argv[0]}", description=module.HELP)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv[1:])) or 0)


if __name__ == "__main__":
    sys.exit(main())
