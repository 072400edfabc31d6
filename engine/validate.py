"""Checks for values read from TOML files (trained styles, presets, FX chains).

Every failure is one PresetError whose message names the file, the key, the bad value and
what is allowed, e.g. `presets/house.toml: steps = 40 is out of range; allowed: 1 to 8`.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PresetError(ValueError):
    pass


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The file's table; a missing, unreadable, binary or malformed file is a PresetError."""
    path = Path(path)
    if not path.is_file():
        raise PresetError(f"{what} file {path} does not exist")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise PresetError(f"{path}: not a text file (not UTF-8); a {what} is a TOML text file") from None
    except tomllib.TOMLDecodeError as err:
        raise PresetError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise PresetError(f"{path}: cannot read it: {err.strerror}") from None


def check_keys(where: str, data: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    if not isinstance(data, dict):
        raise PresetError(f"{where} must be a table, got {type(data).__name__} {data!r}")
    unknown = sorted(set(data) - set(required) - set(optional))
    missing = [key for key in required if key not in data]
    if unknown or missing:
        problem = "; ".join(part for part in (unknown and f"unknown keys {unknown}",
                                              missing and f"missing keys {missing}") if part)
        allowed = ", ".join(required + optional)
        raise PresetError(f"{where}: {problem}; allowed keys: {allowed}" +
                          (f" (required: {', '.join(required)})" if required and optional else ""))


def _fail(where: str, key: str, value: Any, allowed: str) -> PresetError:
    return PresetError(f"{where}: {key} = {value!r} is not allowed; allowed: {allowed}")


@dataclass(frozen=True)
class Number:
    low: float
    high: float
    integer: bool = False

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a number"
        low, high = (int(self.low), int(self.high)) if self.integer else (self.low, self.high)
        return f"{kind} from {low:g} to {high:g}"

    def check(self, where: str, key: str, value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.integer and not isinstance(value, int)):
            raise _fail(where, key, value, self.allowed())
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise PresetError(f"{where}: {key} = {value!r} is out of range; allowed: {self.allowed()}")
        return int(value) if self.integer else float(value)


@dataclass(frozen=True)
class Choice:
    options: tuple

    def allowed(self) -> str:
        return "one of " + ", ".join(map(repr, self.options))

    def check(self, where: str, key: str, value: Any) -> Any:
        if isinstance(value, bool) != isinstance(self.options[0], bool) or value not in self.options:
            raise _fail(where, key, value, self.allowed())
        return value


@dataclass(frozen=True)
class Text:
    def allowed(self) -> str:
        return "a string"

    def check(self, where: str, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _fail(where, key, value, self.allowed())
        return value


@dataclass(frozen=True)
class Range:
    """A [low, high] pair inside [low, high]."""
    low: float
    high: float

    def allowed(self) -> str:
        return f"[low, high] with {self.low:g} <= low <= high <= {self.high:g}"

    def check(self, where: str, key: str, value: Any) -> tuple[float, float]:
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                and self.low <= value[0] <= value[1] <= self.high):
            raise _fail(where, key, value, self.allowed())
        return float(value[0]), float(value[1])


BOOLEAN = Choice((False, True))


def check_table(where: str, data: Any, rules: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every key of `data` checked by its rule; keys outside `rules` and missing required ones refused."""
    check_keys(where, data, required, tuple(k for k in rules if k not in required))
    return {key: rules[key].check(where, key, value) for key, value in data.items()}
