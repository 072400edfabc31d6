"""Seed corpora of the fuzz targets, made from the real encoders so they follow the protocol
and the layout as they change.

    .venv/bin/python -m tests.fuzz.seeds DIR      # DIR/engine, DIR/fuzz_reply, DIR/fuzz_segment, DIR/fuzz_state

engine: scripts for tests/fuzz/fuzz_engine.py (records [connection][u16 length][frame]): plain
sessions (a few bars, a loop, a tempo and a meter change, two sessions) and every hostile case
of tests/hostile.py. fuzz_reply: the engine's WELCOME, STATUS and ERROR. fuzz_segment: a small
valid segment with slots in it. fuzz_state: the shim's saved state. (fuzz_clock starts empty:
its input is raw structs.)
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

from bridge import protocol
from bridge.layout import HEADER_SIZE, const, enum_members, ffi
from tests import hostile

CONNECTIONS = [(0x1000 + n).to_bytes(8, "little") for n in range(3)]
RATE = 22050                   # small windows keep the engine fuzzer fast


def _record(connection: int, frame: bytes) -> bytes:
    return bytes([connection]) + len(frame).to_bytes(2, "little") + frame


def _session(connection: int, frames: list[bytes]) -> bytes:
    instance = int.from_bytes(CONNECTIONS[connection], "little")
    return b"".join(_record(connection, f) for f in [hostile.hello(instance, 1, RATE)] + frames)


def engine() -> dict[str, bytes]:
    def playing(instance, bars, **changes):
        out = []
        for bar in range(bars):
            pos = bar * RATE * 2
            out.append(hostile.transport(instance, pos_samples=pos, pos_beats=4.0 * bar, **changes))
            out.append(hostile.audio(instance, pos, frames=256, channels=1))
        return out
    i0, i1 = (int.from_bytes(c, "little") for c in CONNECTIONS[:2])
    found = {
        "plain": _session(0, playing(i0, 4)),
        "loop": _session(0, playing(i0, 3, flags=hostile.PLAYING | const("LD_TRANSPORT_LOOP_ACTIVE"),
                                    loop_start_beats=4.0, loop_end_beats=12.0)),
        "tempo": _session(0, playing(i0, 2) + playing(i0, 2, tempo=97.0)),
        "meter": _session(0, playing(i0, 2) + playing(i0, 2, tsig_num=7, tsig_den=8)),
        "two": _session(0, playing(i0, 2)) + _session(1, playing(i1, 2)),
    }
    for name, make in hostile.HOSTILE.items():
        frames = [f for f in make(i0) if len(f) < 65536][:64]
        found["hostile-" + "".join(c if c.isalnum() else "-" for c in name)] = _session(0, frames)
    return found


def reply() -> dict[str, bytes]:
    return {"welcome": protocol.welcome("/livediff-1-0000000000000001", 0, "loop"),
            "welcome-long-name": protocol.welcome("/livediff-" + "9" * 80, 0, "loop"),
            "status": protocol.status(0, "ok", 3, 1, "loop", "main"),
            "error": protocol.error(const("LD_ERR_UNKNOWN_SESSION"), "no session", 2),
            "error-busy": protocol.error(const("LD_ERR_BUSY"), "x" * 300, 1)}


def segment() -> dict[str, bytes]:
    """A valid segment of 4 slots of 16 frames, 2 channels, at 48 kHz (what fuzz_segment maps)."""
    slots, capacity, channels = 4, 16, 2
    audio_offset = (HEADER_SIZE + 15) // 16 * 16
    total = audio_offset + slots * channels * capacity * 4
    header = ffi.new("ld_shm_header *")
    h = header[0]
    h.magic, h.layout_version, h.header_bytes = const("LD_SHM_MAGIC"), const("LD_SHM_LAYOUT_VERSION"), HEADER_SIZE
    h.slot_count, h.slot_capacity_frames, h.channels, h.sample_rate = slots, capacity, channels, 48000
    h.audio_offset, h.total_bytes = audio_offset, total
    for i in range(slots):
        s = h.slots[i]
        s.state, s.epoch, s.start_sample, s.frames, s.window_id = const("LD_SLOT_READY"), 1, i * capacity, capacity, i
    data = bytes(ffi.buffer(header)) + bytes(audio_offset - HEADER_SIZE)
    audio = struct.pack(f"<{slots * channels * capacity}f", *[(n % 7) / 7.0 for n in range(slots * channels * capacity)])
    return {"valid": data + audio}


def state() -> dict[str, bytes]:
    count = const("LD_PARAM_COUNT")
    values = {value: 1.0 for name, value in enum_members("ld_param").items() if name != "LD_PARAM_COUNT"}
    entries = b"".join(struct.pack("<Id", pid, values.get(pid, 0.0)) for pid in range(count))
    return {"saved": b"LDP1" + struct.pack("<I", count) + entries, "text": b"120.5"}


TARGETS = {"engine": engine, "fuzz_reply": reply, "fuzz_segment": segment, "fuzz_state": state}


def write(directory: Path, target: str) -> Path:
    """Write one target's seeds into directory/target; returns that folder."""
    folder = directory / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in TARGETS.get(target, dict)().items():
        (folder / name).write_bytes(data)
    return folder


if __name__ == "__main__":
    for target in TARGETS:
        write(Path(sys.argv[1]), target)
