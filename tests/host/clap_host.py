"""A minimal CLAP host in Python (cffi) for tests: loads build/livediff.clap through its C
entry points (clap_entry -> factory -> create_plugin -> init/activate/start_processing) and
calls process() with a scripted transport.

    with ClapHost(sample_rate=48000, max_frames=512) as plugin:
        plugin.set_param("generator", 1)
        out = plugin.process(audio, Transport(playing=True, tempo=120, beats=0.0))

API (all on the calling thread, which plays main thread and audio thread in turn):
    ClapHost(path=None, sample_rate, max_frames, offline=False, render=True)   activate + start_processing
        render=False: the host never calls clap.render (like qtractor); blocks are then realtime
    .process(audio [2, n] float32 | None, transport | None, sidechain=None) -> [2, n] float32
        transport None = a free-running host (clap_process.transport is NULL)
        .constant_mask afterwards: the output buffer's constant_mask the plugin set
    .set_param(name_or_id, value, time=0)  queued as a CLAP_EVENT_PARAM_VALUE for the next process(),
                                   at frame `time` of that block (queue them in time order)
    .param(name_or_id) -> float    current plain value (clap.params get_value)
    .param_infos() -> list[dict]   clap.params get_info of every index (id, name, flags, min, max, default)
    .value_text(name_or_id, value) -> str   clap.params value_to_text
    .stats() -> dict               livediff_clap_stats: underruns, offline_timeouts, dropped_frames,
                                   engine_state (0 connecting, 1 alive, 2 dead), epoch
    .latency() -> int, .save_state() -> bytes, .load_state(bytes) -> bool
    .audio_ports(is_input) -> [(name, flags, channel_count)]
    .reset()                       clap_plugin.reset (own clock back to 0, new epoch)
    .close()                       stop_processing, deactivate, destroy (also on context exit)
Transport(...).advanced(frames, sample_rate) gives the transport of the next block.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import cffi
import numpy as np

from bridge.layout import _CDEF_BLOCK, const
from tests.host.build import built_plugin

SHIM = Path(__file__).resolve().parents[2] / "plugin_shim"
FIXED_POINT = 1 << 31
PLUGIN_ID = b"org.livediff.shim"

ffi = cffi.FFI()
ffi.cdef(_CDEF_BLOCK.search((SHIM / "clap_abi.h").read_text()).group(1))
ffi.cdef(_CDEF_BLOCK.search((SHIM / "core.h").read_text()).group(1))
ffi.cdef("""
    extern clap_plugin_entry clap_entry;
    void livediff_clap_stats(const clap_plugin *plugin, ld_core_stats *out);
""")


def _fixed(value: float) -> int:
    """CLAP's 31-bit fixed point, saturating (tests feed garbage such as inf on purpose)."""
    if math.isnan(value):
        return 0
    return max(-(1 << 63), min((1 << 63) - 1, round(value * FIXED_POINT) if math.isfinite(value) else
                               (1 << 63) * (1 if value > 0 else -1)))


def _param_id(name_or_id: str | int) -> int:
    return name_or_id if isinstance(name_or_id, int) else const(f"LD_PARAM_{name_or_id.upper()}")


@dataclass(frozen=True)
class Transport:
    """What the host reports at the first frame of a block (clap_event_transport)."""
    playing: bool = True
    tempo: float = 120.0
    beats: float = 0.0                  # song position in quarter notes
    seconds: float | None = None        # None: beats * 60 / tempo (a constant-tempo song)
    tsig: tuple[int, int] = (4, 4)
    bar_start: float | None = None      # None: derived from beats and tsig
    loop: tuple[float, float] | None = None   # active loop (start, end) in beats
    has_tempo: bool = True
    has_beats: bool = True
    has_seconds: bool = True
    has_tsig: bool = True

    def advanced(self, frames: int, sample_rate: float) -> "Transport":
        """The next block's transport when playing straight on (no loop wrap)."""
        if not self.playing:
            return self
        seconds = frames / sample_rate
        return dataclasses.replace(self, beats=self.beats + seconds * self.tempo / 60.0,
                                   seconds=None if self.seconds is None else self.seconds + seconds,
                                   bar_start=None)

    def to_clap(self):
        t = ffi.new("clap_event_transport *")
        t.header.size = ffi.sizeof("clap_event_transport")
        t.header.type = 9
        flags = (1 if self.has_tempo else 0) | (2 if self.has_beats else 0) | (4 if self.has_seconds else 0)
        flags |= (8 if self.has_tsig else 0) | (16 if self.playing else 0) | (64 if self.loop else 0)
        t.flags = flags
        sane_tempo = self.tempo if math.isfinite(self.tempo) and self.tempo > 0 else 120.0
        seconds = self.beats * 60.0 / sane_tempo if self.seconds is None else self.seconds
        bar_beats = self.tsig[0] * 4.0 / self.tsig[1] if self.tsig[0] > 0 and self.tsig[1] > 0 else 4.0
        bar_start = (self.beats // bar_beats) * bar_beats if self.bar_start is None else self.bar_start
        t.song_pos_beats = _fixed(self.beats)
        t.song_pos_seconds = _fixed(seconds)
        t.tempo = self.tempo
        t.bar_start = _fixed(bar_start)
        t.bar_number = int(bar_start // bar_beats) if math.isfinite(bar_start) else 0
        t.tsig_num, t.tsig_denom = self.tsig
        if self.loop:
            t.loop_start_beats = _fixed(self.loop[0])
            t.loop_end_beats = _fixed(self.loop[1])
        return t


class ClapHost:
    def __init__(self, path: str | Path | None = None, sample_rate: float = 48000.0, max_frames: int = 512,
                 offline: bool = False, channels: int = 2, render: bool = True):
        self.path = str(path or built_plugin()["CLAP"])
        self.sample_rate = sample_rate
        self.channels = channels
        self.lib = ffi.dlopen(self.path)
        entry = ffi.addressof(self.lib, "clap_entry")
        if not entry.init(self.path.encode()):
            raise RuntimeError(f"{self.path}: clap_entry.init failed")
        factory = ffi.cast("const clap_plugin_factory *", entry.get_factory(b"clap.plugin-factory"))
        self._keep = []                         # cffi objects the plugin may point to
        self._host = self._new_host()
        self.plugin = factory.create_plugin(factory, self._host, PLUGIN_ID)
        if self.plugin == ffi.NULL or not self.plugin.init(self.plugin):
            raise RuntimeError(f"{self.path}: create_plugin/init failed")
        self._params = ffi.cast("const clap_plugin_params *", self.plugin.get_extension(self.plugin, b"clap.params"))
        self._render = ffi.cast("const clap_plugin_render *", self.plugin.get_extension(self.plugin, b"clap.render"))
        self._latency = ffi.cast("const clap_plugin_latency *", self.plugin.get_extension(self.plugin, b"clap.latency"))
        self._state = ffi.cast("const clap_plugin_state *", self.plugin.get_extension(self.plugin, b"clap.state"))
        if render:
            self._render.set(self.plugin, 1 if offline else 0)
        self.constant_mask = 0
        self._pending: list = []
        self._events_in, self._events_out = self._new_event_lists()
        self._process = ffi.new("clap_process *")
        self._steady = 0
        self._closed = False
        if not self.plugin.activate(self.plugin, sample_rate, 1, max_frames):
            raise RuntimeError("activate failed")
        self.plugin.start_processing(self.plugin)

    def _new_host(self):
        host = ffi.new("clap_host *")
        host.clap_version = (1, 2, 2)
        for field, text in (("name", b"livediff-test-host"), ("vendor", b"livediff"), ("url", b""), ("version", b"1")):
            value = ffi.new("char[]", text)
            self._keep.append(value)
            setattr(host, field, value)
        callbacks = [ffi.callback("const void *(const clap_host *, const char *)", lambda h, i: ffi.NULL)]
        callbacks += [ffi.callback("void(const clap_host *)", lambda h: None) for _ in range(3)]
        self._keep.extend(callbacks)
        host.get_extension, host.request_restart, host.request_process, host.request_callback = callbacks
        return host

    def _new_event_lists(self):
        size = ffi.callback("uint32_t(const clap_input_events *)", lambda lst: len(self._pending))
        get = ffi.callback("const clap_event_header *(const clap_input_events *, uint32_t)",
                           lambda lst, i: ffi.cast("const clap_event_header *", self._pending[i]))
        push = ffi.callback("bool(const clap_output_events *, const clap_event_header *)", lambda lst, e: False)
        self._keep.extend((size, get, push))
        events_in = ffi.new("clap_input_events *", {"size": size, "get": get})
        events_out = ffi.new("clap_output_events *", {"try_push": push})
        return events_in, events_out

    # -- parameters ------------------------------------------------------------------------
    def set_param(self, name_or_id: str | int, value: float, time: int = 0) -> None:
        event = ffi.new("clap_event_param_value *")
        event.header.size = ffi.sizeof("clap_event_param_value")
        event.header.type = 5
        event.header.time = time
        event.param_id = _param_id(name_or_id)
        event.value = value
        self._pending.append(event)

    def param(self, name_or_id: str | int) -> float:
        out = ffi.new("double *")
        if not self._params.get_value(self.plugin, _param_id(name_or_id), out):
            raise KeyError(name_or_id)
        return out[0]

    def param_infos(self) -> list[dict]:
        infos = []
        info = ffi.new("clap_param_info *")
        for index in range(self._params.count(self.plugin)):
            assert self._params.get_info(self.plugin, index, info)
            infos.append({"id": info.id, "name": ffi.string(info.name).decode(), "flags": info.flags,
                          "min": info.min_value, "max": info.max_value, "default": info.default_value})
        return infos

    def value_text(self, name_or_id: str | int, value: float) -> str:
        text = ffi.new("char[256]")
        if not self._params.value_to_text(self.plugin, _param_id(name_or_id), value, text, 256):
            raise KeyError(name_or_id)
        return ffi.string(text).decode()

    # -- processing ------------------------------------------------------------------------
    def _buffers(self, audio: np.ndarray | None, frames: int):
        """clap_audio_buffer over a [channels, frames] float32 array (zeros if None)."""
        data = np.zeros((self.channels, frames), np.float32) if audio is None else np.ascontiguousarray(audio, np.float32)
        pointers = ffi.new("float *[]", [ffi.cast("float *", ffi.from_buffer(row)) for row in data])
        buffer = ffi.new("clap_audio_buffer *", {"data32": pointers, "channel_count": len(data)})
        return data, buffer, pointers

    def process(self, audio: np.ndarray | None, transport: Transport | None = None,
                sidechain: np.ndarray | None = None, frames: int | None = None) -> np.ndarray:
        frames = frames if audio is None else audio.shape[1]
        inputs = ffi.new("clap_audio_buffer[2]")
        main_in, main_buffer, main_ptrs = self._buffers(audio, frames)
        inputs[0] = main_buffer[0]
        side_ptrs = None
        if sidechain is not None:
            _, side_buffer, side_ptrs = self._buffers(sidechain, frames)
            inputs[1] = side_buffer[0]
        out, out_buffer, out_ptrs = self._buffers(None, frames)
        clap_transport = transport.to_clap() if transport is not None else ffi.NULL
        p = self._process
        p.steady_time = self._steady
        p.frames_count = frames
        p.transport = clap_transport
        p.audio_inputs = inputs
        p.audio_outputs = out_buffer
        p.audio_inputs_count = 2
        p.audio_outputs_count = 1
        p.in_events = self._events_in
        p.out_events = self._events_out
        status = self.plugin.process(self.plugin, p)
        self.constant_mask = out_buffer.constant_mask
        self._pending.clear()
        self._steady += frames
        del main_in, main_ptrs, side_ptrs, out_ptrs, clap_transport
        if status != 1:
            raise RuntimeError(f"process returned status {status}")
        return out

    def reset(self) -> None:
        self.plugin.reset(self.plugin)

    # -- the rest --------------------------------------------------------------------------
    def audio_ports(self, is_input: bool) -> list[tuple[str, int, int]]:
        """(name, flags, channel_count) of each port (clap.audio-ports)."""
        ports = ffi.cast("const clap_plugin_audio_ports *", self.plugin.get_extension(self.plugin, b"clap.audio-ports"))
        info = ffi.new("clap_audio_port_info *")
        out = []
        for index in range(ports.count(self.plugin, is_input)):
            assert ports.get(self.plugin, index, is_input, info)
            out.append((ffi.string(info.name).decode(), info.flags, info.channel_count))
        return out

    def stats(self) -> dict[str, int]:
        out = ffi.new("ld_core_stats *")
        self.lib.livediff_clap_stats(self.plugin, out)
        return {name: getattr(out, name) for name, _ in ffi.typeof("ld_core_stats").fields}

    def latency(self) -> int:
        return self._latency.get(self.plugin)

    def save_state(self) -> bytes:
        chunks: list[bytes] = []
        write = ffi.callback("int64_t(const clap_ostream *, const void *, uint64_t)",
                             lambda s, buf, n: chunks.append(ffi.buffer(buf, n)[:]) or n)
        stream = ffi.new("clap_ostream *", {"write": write})
        if not self._state.save(self.plugin, stream):
            raise RuntimeError("state save failed")
        return b"".join(chunks)

    def load_state(self, data: bytes) -> bool:
        position = [0]

        def read(stream, buffer, size):
            chunk = data[position[0]:position[0] + min(size, 7)]   # partial reads, as hosts may do
            ffi.memmove(buffer, chunk, len(chunk))
            position[0] += len(chunk)
            return len(chunk)
        callback = ffi.callback("int64_t(const clap_istream *, void *, uint64_t)", read)
        stream = ffi.new("clap_istream *", {"read": callback})
        return bool(self._state.load(self.plugin, stream))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.plugin.stop_processing(self.plugin)
        self.plugin.deactivate(self.plugin)
        self.plugin.destroy(self.plugin)
        ffi.addressof(self.lib, "clap_entry").deinit()

    def __enter__(self) -> "ClapHost":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
