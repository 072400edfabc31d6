"""A scripted VST3 host for tests: tests/host/vst3_host.c (compiled once per test session with
the system compiler, on the shim's own ABI header) driven through cffi. Unlike pedalboard it
sends a ProcessContext the test writes, block by block, as DAWs do.

    with Vst3Host(sample_rate=48000, max_frames=1024, offline=True) as plugin:
        plugin.set_param("generator", 1)
        out = plugin.process(audio, Context(tempo=120, samples=0, beats=0.0))

API (all on the calling thread):
    Vst3Host(path=None, sample_rate, max_frames, offline=False)    setupProcessing + setActive + setProcessing
    .process(audio [2, n] float32 | None, context | None, frames=None, offline=None) -> [2, n] float32
        context None = no ProcessContext; offline overrides this call's processMode
    .set_param(name_or_id, plain_value)   through the edit controller (a generic editor)
    .close()
"""
from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cffi
import numpy as np

from tests.host.build import BUILD_DIR, built_plugin
from tests.host.clap_host import _param_id

SOURCE = Path(__file__).with_name("vst3_host.c")
V3_REALTIME, V3_OFFLINE = 0, 2
STATE = {"playing": 1 << 1, "cycle_active": 1 << 2, "music_valid": 1 << 9, "tempo_valid": 1 << 10,
         "bar_valid": 1 << 11, "cycle_valid": 1 << 12, "tsig_valid": 1 << 13}

ffi = cffi.FFI()
ffi.cdef("""
    typedef struct vh_context {
        uint32_t state;
        int64_t project_time_samples;
        double project_time_music;
        double bar_position_music;
        double cycle_start_music, cycle_end_music;
        double tempo;
        int32_t tsig_num, tsig_den;
    } vh_context;
    typedef struct vh_host vh_host;
    vh_host *vh_open(const char *path, double sample_rate, int32_t max_block, int32_t mode);
    int vh_set_param(vh_host *host, uint32_t id, double plain);
    int vh_process(vh_host *host, const float *input, float *output, int32_t frames, const vh_context *context,
                   int32_t mode);
    void vh_close(vh_host *host);
""")


@functools.cache
def _library():
    out = BUILD_DIR / "vst3_host.so"
    if not out.exists() or out.stat().st_mtime < SOURCE.stat().st_mtime:
        subprocess.run(["cc", "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", str(SOURCE),
                        "-o", str(out), "-ldl"], check=True)
    return ffi.dlopen(str(out))


@dataclass(frozen=True)
class Context:
    """What the host puts in ProcessContext for one block (as a DAW would: flags valid)."""
    tempo: float = 120.0
    samples: int = 0                    # projectTimeSamples
    beats: float = 0.0                  # projectTimeMusic (quarter notes)
    bar_position: float | None = None   # barPositionMusic; None: the bar line at or before `beats`
    tsig: tuple[int, int] = (4, 4)
    playing: bool = True

    def to_c(self):
        c = ffi.new("vh_context *")
        c.state = STATE["music_valid"] | STATE["tempo_valid"] | STATE["bar_valid"] | STATE["tsig_valid"]
        c.state |= STATE["playing"] if self.playing else 0
        bar_beats = self.tsig[0] * 4 / self.tsig[1]
        c.project_time_samples = self.samples
        c.project_time_music = self.beats
        c.bar_position_music = self.beats // bar_beats * bar_beats if self.bar_position is None else self.bar_position
        c.tempo = self.tempo
        c.tsig_num, c.tsig_den = self.tsig
        return c


class Vst3Host:
    def __init__(self, path: str | Path | None = None, sample_rate: float = 48000.0, max_frames: int = 1024,
                 offline: bool = False):
        bundle = Path(path) if path else built_plugin()["VST3"]
        self.lib = _library()
        self.offline = offline
        self._host = self.lib.vh_open(str(bundle / "Contents" / "x86_64-linux" / f"{bundle.stem}.so").encode(),
                                      sample_rate, max_frames, V3_OFFLINE if offline else V3_REALTIME)
        if self._host == ffi.NULL:
            raise RuntimeError(f"{bundle}: loading, initialize, setupProcessing or setActive failed")

    def set_param(self, name_or_id: str | int, plain: float) -> None:
        if not self.lib.vh_set_param(self._host, _param_id(name_or_id), plain):
            raise KeyError(name_or_id)

    def process(self, audio: np.ndarray | None, context: Context | None, frames: int | None = None,
                offline: bool | None = None) -> np.ndarray:
        frames = frames if audio is None else audio.shape[1]
        data = np.zeros((2, frames), np.float32) if audio is None else np.ascontiguousarray(audio, np.float32)
        out = np.zeros((2, frames), np.float32)
        c = context.to_c() if context is not None else ffi.NULL
        mode = V3_OFFLINE if (self.offline if offline is None else offline) else V3_REALTIME
        result = self.lib.vh_process(self._host, ffi.from_buffer("float[]", data), ffi.from_buffer("float[]", out),
                                     frames, c, mode)
        if result != 0:
            raise RuntimeError(f"process returned {result}")
        return out

    def close(self) -> None:
        if self._host is not None:
            self.lib.vh_close(self._host)
            self._host = None

    def __enter__(self) -> "Vst3Host":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
