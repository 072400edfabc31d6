"""Wire messages into engine types and engine values onto the wire. The engine never sees the
header's numbers: parameters reach it by name (enum parameters by the name of their value, e.g.
generator "loop", sound "house"), transports as TransportSnapshot, input as InputBlock; the window kinds and
problems it reports become the header's flags and error codes here."""
from __future__ import annotations

import os

from bridge import protocol
from bridge.layout import const, enum_members
from bridge.presets import SOUND_NAMES
from bridge.shm import WINDOW_FLAGS
from engine.publisher import Publisher
from engine.session import Session
from engine.transport import InputBlock, TransportSnapshot

TEMPO_RANGE = (const("LD_TEMPO_MIN"), const("LD_TEMPO_MAX"))
PROBLEM_CODES = {"generator": const("LD_ERR_GENERATOR"), "internal": const("LD_ERR_INTERNAL")}


def _value_names(enum_name: str) -> dict[int, str]:
    """Enum value -> lower-case member name without the common prefix (LD_GENERATOR_LOOP -> "loop")."""
    members = enum_members(enum_name)
    prefix = os.path.commonprefix(list(members))
    prefix = prefix[:prefix.rfind("_") + 1]
    return {value: name[len(prefix):].lower() for name, value in members.items()}


_ENUM_VALUES = {**{name: _value_names(enum) for name, enum in protocol.PARAM_ENUM.items()},
                "sound": dict(enumerate(SOUND_NAMES))}
GENERATOR_IDS = {name: value for value, name in _ENUM_VALUES["generator"].items()}


def engine_params(params: dict[int, float]) -> dict[str, float | str]:
    """Validated wire parameters (LD_PARAM_* id -> value) by name, enum values by name."""
    named = {protocol.PARAM_NAME[pid]: value for pid, value in params.items()}
    return {name: _ENUM_VALUES[name][int(value)] if name in _ENUM_VALUES else value for name, value in named.items()}


def default_engine_params(**overrides: float | str) -> dict[str, float | str]:
    defaults = engine_params({protocol.PARAM[name]: value for name, value in protocol.default_params().items()})
    return {**defaults, **overrides}


def new_session(instance: int, sample_rate: int, channels: int, store: Publisher, offline: bool = False,
                **params: float | str) -> Session:
    """A session with the header's default parameters (overridden by name)."""
    return Session(instance, sample_rate, channels, store, default_engine_params(**params), TEMPO_RANGE,
                   offline=offline)


def transport_snapshot(t: protocol.Transport) -> TransportSnapshot:
    flag = lambda name: bool(t.flags & const(name))  # noqa: E731
    return TransportSnapshot(
        epoch=t.epoch, playing=flag("LD_TRANSPORT_PLAYING"), tempo=t.tempo, pos_samples=t.pos_samples,
        pos_beats=t.pos_beats, bar_start_beats=t.bar_start_beats, tsig_num=t.tsig_num, tsig_den=t.tsig_den,
        loop=(t.loop_start_beats, t.loop_end_beats) if flag("LD_TRANSPORT_LOOP_ACTIVE") else None,
        tempo_valid=flag("LD_TRANSPORT_TEMPO_VALID"), tsig_valid=flag("LD_TRANSPORT_TSIG_VALID"),
        offline=t.process_mode == const("LD_MODE_OFFLINE"), underruns=t.underruns, grid=t.grid,
        sync_switch=flag("LD_TRANSPORT_SYNC_SWITCH"))


def input_block(a: protocol.Audio) -> InputBlock:
    return InputBlock(epoch=a.epoch, pos_samples=a.pos_samples, input=a.input, sidechain=a.sidechain)


def log_entry(entry: dict) -> dict:
    """A window-log entry as written to the JSON log: the window kind as its LD_WINDOW_* flags."""
    out = dict(entry)
    out["flags"] = WINDOW_FLAGS[out.pop("window")]
    return out
