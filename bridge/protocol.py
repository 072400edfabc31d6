"""Wire messages: msgpack maps keyed by the integer LD_KEY_* values of the header.

decode_message() turns one ZeroMQ frame from a plugin into a validated message object
(Hello, Transport, Audio, Params or Bye) or raises ProtocolError(code, message) whose
message names what was wrong and what is allowed. The fields of each message class are
exactly its required keys (field name = LD_KEY_<NAME> lower-cased), so docs/protocol.md,
the header and this file cannot disagree. Nothing is unpickled: msgpack only, with limits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable

import msgpack
import numpy as np

from bridge.layout import const, enum_members

KEY = {name[len("LD_KEY_"):].lower(): value for name, value in enum_members("ld_key").items()}
KEY_NAME = {value: name for name, value in KEY.items()}
MSG = {name[len("LD_MSG_"):].lower(): value for name, value in enum_members("ld_msg_type").items()}
ERR = {name: value for name, value in enum_members("ld_error").items()}

# Rates a host may run at; others get LD_ERR_SAMPLE_RATE (the generators resample nothing).
SAMPLE_RATES = tuple(sorted(enum_members("ld_sample_rate").values()))
FORMATS = ("vst3", "clap", "harness")
MAX_BLOCK_LIMIT = 1 << 20
UINT32_MAX = (1 << 32) - 1
UINT64_MAX = (1 << 64) - 1
# Wire ranges of positions (ld_wire_range): anything beyond is refused before it reaches a session.
POS_BEATS_LIMIT = float(1 << const("LD_POS_BEATS_BITS"))
POS_SAMPLES_LIMIT = 1 << const("LD_POS_SAMPLES_BITS")


class ProtocolError(Exception):
    def __init__(self, code: int, message: str, ref_type: int = 0):
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref_type = ref_type


# --- field checks: one per kind of value; each returns the (converted) value or raises -----

def _fail(code_name: str, key: str, what: str) -> ProtocolError:
    return ProtocolError(ERR[code_name], f"{key.upper()} {what}")


def _uint(low: int, high: int, code_name: str = "LD_ERR_TYPE") -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail("LD_ERR_TYPE", key, f"is {type(value).__name__}; allowed: integer {low}..{high}")
        if not low <= value <= high:
            raise _fail(code_name, key, f"is {value}; allowed: {low}..{high}")
        return value
    return check


def _one_of(allowed: tuple, code_name: str = "LD_ERR_TYPE") -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise _fail(code_name, key, f"is {value!r}; allowed: {', '.join(map(str, allowed))}")
        return value
    return check


def _float(key: str, value: Any) -> float:
    """Any number. Tempo's range is the grid's business (it keeps the last good tempo and logs
    once), so a host's garbage tempo does not cost the position in the same TRANSPORT."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail("LD_ERR_TYPE", key, f"is {type(value).__name__}; allowed: float64")
    return float(value)


def _beats(key: str, value: Any) -> float:
    """A song position in quarter notes: finite, within +-2^LD_POS_BEATS_BITS."""
    value = _float(key, value)
    if not -POS_BEATS_LIMIT <= value <= POS_BEATS_LIMIT:   # NaN fails too
        raise _fail("LD_ERR_TYPE", key, f"is {value!r}; allowed: finite quarter notes "
                                        f"{-POS_BEATS_LIMIT:.0f}..{POS_BEATS_LIMIT:.0f}")
    return value


def _flags(enum_name: str) -> Callable[[str, Any], int]:
    mask = sum(enum_members(enum_name).values())
    def check(key: str, value: Any) -> int:
        value = _uint(0, UINT32_MAX)(key, value)
        if value & ~mask:
            raise _fail("LD_ERR_TYPE", key, f"has unknown bits {value & ~mask:#x}; allowed: bits of {enum_name} ({mask:#x})")
        return value
    return check


def _bytes(key: str, value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise _fail("LD_ERR_TYPE", key, f"is {type(value).__name__}; allowed: bin (planar float32 little-endian)")
    return value


def _bytes_or_nil(key: str, value: Any) -> bytes | None:
    return None if value is None else _bytes(key, value)


def _params(key: str, value: Any) -> dict[int, float]:
    if not isinstance(value, dict):
        raise _fail("LD_ERR_TYPE", key, f"is {type(value).__name__}; allowed: map of LD_PARAM_* id -> number")
    return {param_id: check_param(param_id, raw) for param_id, raw in value.items()}


FIELD_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "version": _uint(0, UINT32_MAX),  # the value itself is checked per message (hello)
    "instance": _uint(0, UINT64_MAX),
    "format": _one_of(FORMATS),
    "sample_rate": _one_of(SAMPLE_RATES, "LD_ERR_SAMPLE_RATE"),
    "max_block": _uint(1, MAX_BLOCK_LIMIT),
    "channels": _uint(1, const("LD_MAX_CHANNELS")),
    "process_mode": _one_of(tuple(enum_members("ld_process_mode").values())),
    "epoch": _uint(0, UINT32_MAX),
    "flags": _flags("ld_transport_flags"),
    "tempo": _float,
    "pos_samples": _uint(-POS_SAMPLES_LIMIT, POS_SAMPLES_LIMIT),
    "pos_beats": _beats,
    "bar_start_beats": _beats,
    "tsig_num": _uint(0, 255),        # 0 is caught by the timeline (keeps the last good grid)
    "tsig_den": _uint(0, 255),
    "loop_start_beats": _beats,
    "loop_end_beats": _beats,
    "frames": _uint(1, const("LD_MAX_AUDIO_FRAMES"), "LD_ERR_OVERSIZED"),
    "input": _bytes,
    "sidechain": _bytes_or_nil,
    "params": _params,
    "underruns": _uint(0, UINT64_MAX),
    "offline_timeouts": _uint(0, UINT64_MAX),
    "dropped_frames": _uint(0, UINT64_MAX),
    "grid": _uint(0, UINT32_MAX),
}

# --- parameters ----------------------------------------------------------------------------

PARAM = {name[len("LD_PARAM_"):].lower(): value
         for name, value in enum_members("ld_param").items() if name != "LD_PARAM_COUNT"}
PARAM_NAME = {value: name for name, value in PARAM.items()}
# Parameters whose range is a LD_<PREFIX>_MIN/MAX pair, and those whose values are an enum.
_PARAM_RANGE_PREFIX = {"tempo_bpm": "TEMPO", "seed": "SEED", "style": "STYLE", "window_bars": "WINDOW_BARS",
                       "lookahead": "LOOKAHEAD", "context_bars": "CONTEXT_BARS", "mix": "MIX",
                       "variation": "VARIATION", "sound": "SOUND"}
PARAM_ENUM = {"underrun_policy": "ld_underrun_policy", "sync_mode": "ld_sync_mode", "generator": "ld_generator",
              "bypass": "ld_bypass", "preroll": "ld_preroll", "context_source": "ld_context_source"}


def param_range(name: str) -> tuple[float, float]:
    if name in _PARAM_RANGE_PREFIX:
        prefix = _PARAM_RANGE_PREFIX[name]
        return const(f"LD_{prefix}_MIN"), const(f"LD_{prefix}_MAX")
    values = enum_members(PARAM_ENUM[name]).values()
    return min(values), max(values)


def param_default(name: str) -> float:
    if name in _PARAM_RANGE_PREFIX:
        return const(f"LD_{_PARAM_RANGE_PREFIX[name]}_DEFAULT")
    return min(enum_members(PARAM_ENUM[name]).values())


def default_params() -> dict[str, float]:
    return {name: param_default(name) for name in PARAM}


def check_param(param_id: Any, value: Any) -> float:
    if not isinstance(param_id, int) or param_id not in PARAM_NAME:
        raise ProtocolError(ERR["LD_ERR_TYPE"], f"PARAMS has unknown parameter id {param_id!r}; "
                                                f"allowed: {sorted(PARAM_NAME)} (LD_PARAM_*)")
    name = PARAM_NAME[param_id]
    low, high = param_range(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(ERR["LD_ERR_TYPE"], f"PARAMS {name} is {value!r}; allowed: number {low}..{high}")
    if not low <= value <= high or (name != "tempo_bpm" and value != int(value)):
        kind = "number" if name == "tempo_bpm" else "integer"
        raise ProtocolError(ERR["LD_ERR_TYPE"], f"PARAMS {name} is {value}; allowed: {kind} {low}..{high}")
    return float(value)


# --- messages ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    instance: int
    version: int
    format: str
    sample_rate: int
    max_block: int
    channels: int
    process_mode: int
    params: dict[int, float]


@dataclass(frozen=True)
class Transport:
    instance: int
    epoch: int
    flags: int
    tempo: float
    pos_samples: int
    pos_beats: float
    bar_start_beats: float
    tsig_num: int
    tsig_den: int
    loop_start_beats: float
    loop_end_beats: float
    process_mode: int
    underruns: int
    offline_timeouts: int
    dropped_frames: int
    grid: int


@dataclass(frozen=True)
class Audio:
    instance: int
    epoch: int
    pos_samples: int
    pos_beats: float
    tempo: float
    frames: int
    channels: int
    input: np.ndarray          # float32 [channels, frames] (converted from the bin)
    sidechain: np.ndarray | None


@dataclass(frozen=True)
class Params:
    instance: int
    params: dict[int, float]


@dataclass(frozen=True)
class Bye:
    instance: int


MESSAGE_CLASSES = {MSG["hello"]: Hello, MSG["transport"]: Transport, MSG["audio"]: Audio,
                   MSG["params"]: Params, MSG["bye"]: Bye}


def _planar(key: str, data: bytes, frames: int, channels: int) -> np.ndarray:
    expected = frames * channels * 4
    if len(data) != expected:
        raise _fail("LD_ERR_TYPE", key, f"has {len(data)} bytes; allowed: FRAMES*CHANNELS*4 = "
                                        f"{frames}*{channels}*4 = {expected}")
    audio = np.frombuffer(data, dtype="<f4").reshape(channels, frames)
    if not np.isfinite(audio).all():
        raise _fail("LD_ERR_TYPE", key, "contains NaN or Inf samples; allowed: finite float32")
    return audio


def decode_message(frame: bytes):
    """Decode and validate one plugin->engine frame; raise ProtocolError on anything wrong."""
    max_bytes = const("LD_MAX_MESSAGE_BYTES")
    if len(frame) > max_bytes:
        raise ProtocolError(ERR["LD_ERR_OVERSIZED"], f"message of {len(frame)} bytes; allowed: at most {max_bytes}")
    try:
        raw = msgpack.unpackb(frame, raw=False, strict_map_key=False, max_bin_len=max_bytes,
                              max_str_len=4096, max_array_len=256, max_map_len=256, max_ext_len=0)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise ProtocolError(ERR["LD_ERR_MALFORMED"],
                            f"not a msgpack map ({type(exc).__name__}: {exc}); allowed: one msgpack map "
                            f"with integer LD_KEY_* keys") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ERR["LD_ERR_MALFORMED"], f"message is a msgpack {type(raw).__name__}; "
                                                     f"allowed: a map with integer LD_KEY_* keys")
    msg_type = raw.get(KEY["type"])
    cls = MESSAGE_CLASSES.get(msg_type) if isinstance(msg_type, int) and not isinstance(msg_type, bool) else None
    if msg_type is None:
        raise ProtocolError(ERR["LD_ERR_MALFORMED"], "TYPE (key 0) is missing; every message needs one")
    if cls is None:
        allowed = ", ".join(f"{MSG[c.__name__.lower()]} ({c.__name__.upper()})" for c in MESSAGE_CLASSES.values())
        raise ProtocolError(ERR["LD_ERR_UNKNOWN_MESSAGE"], f"TYPE {msg_type!r} is not a plugin->engine message; "
                                                           f"allowed: {allowed}")
    values = {}
    for field in fields(cls):
        key = KEY[field.name]
        if key not in raw:
            raise ProtocolError(ERR["LD_ERR_MALFORMED"],
                                f"{cls.__name__.upper()} lacks required key {field.name.upper()} ({key})", msg_type)
        try:
            values[field.name] = FIELD_CHECKS[field.name](field.name, raw[key])
        except ProtocolError as exc:
            exc.ref_type = msg_type
            raise
    try:
        return _finish(cls, values)
    except ProtocolError as exc:
        exc.ref_type = msg_type
        raise


def _finish(cls, values: dict):
    if cls is Hello and values["version"] != const("LD_PROTOCOL_VERSION"):
        raise ProtocolError(ERR["LD_ERR_VERSION"], f"protocol VERSION {values['version']} is not supported; "
                                                   f"allowed: {const('LD_PROTOCOL_VERSION')}")
    if cls is Audio:
        values["input"] = _planar("input", values["input"], values["frames"], values["channels"])
        if values["sidechain"] is not None:
            values["sidechain"] = _planar("sidechain", values["sidechain"], values["frames"], values["channels"])
    return cls(**values)


# --- engine -> plugin ----------------------------------------------------------------------

def encode(msg_type: str, **values: Any) -> bytes:
    """Pack a message of type LD_MSG_<msg_type> with fields named like the LD_KEY_* keys."""
    body = {KEY["type"]: MSG[msg_type]}
    body.update({KEY[name]: value for name, value in values.items()})
    return msgpack.packb(body, use_bin_type=True)


def welcome(shm_name: str, latency_samples: int, generator: str) -> bytes:
    return encode("welcome", version=const("LD_PROTOCOL_VERSION"), shm_name=shm_name,
                  layout_version=const("LD_SHM_LAYOUT_VERSION"), latency_samples=latency_samples,
                  generator=generator)


def status(code: int, message: str, windows: int, underruns: int, generator: str, context_source: str) -> bytes:
    return encode("status", code=code, message=message, windows=windows, underruns=underruns, generator=generator,
                  context_source=context_source)


def error(code: int, message: str, ref_type: int = 0) -> bytes:
    return encode("error", code=code, message=message, ref_type=ref_type)


def decode_reply(frame: bytes) -> dict[str, Any]:
    """Engine->plugin frame as {key name: value} (used by the harness client and tests)."""
    raw = msgpack.unpackb(frame, raw=False, strict_map_key=False, max_ext_len=0)
    return {KEY_NAME.get(key, key): value for key, value in raw.items()}
