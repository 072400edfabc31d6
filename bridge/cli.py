"""The `livediff` command. Each subcommand lives in its own module, imported only when used
(so `livediff serve` does not pay for importing torch), and exposes:
    HELP: str
    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int
The top-level help reads each module's HELP from its source, without importing it.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import importlib.util
import sys

COMMANDS = {
    "build-plugin": "bridge.build",
    "install-plugin": "bridge.install",
    "serve": "bridge.server",
    "bounce": "bridge.bounce",
    "demo": "bridge.demo",
    "doctor": "bridge.doctor",
    "styles": "bridge.styles",
    "presets": "bridge.presets",
    "train": "engine.train",
    "export-onnx": "engine.export_onnx",
    "eval": "engine.evaluate",
    "export-sao": "engine.sao.export",
    "embed-prompts": "engine.sao.prompts",
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, not the usage block: what was wrong and where the options are listed."""
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists what is allowed)\n")


def version() -> str:
    try:
        return importlib.metadata.version("livediff")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; run `make setup`)"


def command_help(module: str) -> str:
    """The module's HELP string, read from its source."""
    source = importlib.util.find_spec(module).loader.get_source(module)
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "HELP" for t in node.targets):
            return ast.literal_eval(node.value)
    return ""


def top_level_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    lines = "\n".join(f"  {name.ljust(width)}  {command_help(module)}" for name, module in COMMANDS.items())
    parser = Parser(
        prog="livediff", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Live music diffusion in your DAW: a CLAP/VST3 plugin and the engine that generates "
                    "bar-aligned continuation windows for it.",
        epilog=f"commands:\n{lines}\n\n`livediff COMMAND --help` gives a command's options. "
               "Something not working? Start with `livediff doctor`.")
    parser.add_argument("--version", action="version", version=f"livediff {version()}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        parser = top_level_parser()
        if not argv:
            parser.print_help()
            return 2
        parser.parse_args(argv[:1])  # --help, --version, or an error naming the commands
        return 2
    module = importlib.import_module(COMMANDS[argv[0]])
    parser = Parser(prog=f"livediff {argv[0]}", description=module.HELP)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv[1:])) or 0)


if __name__ == "__main__":
    sys.exit(main())
