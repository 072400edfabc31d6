"""A minimal VST3 host in Python (cffi) for tests, the one that feeds the kAux (sidechain) bus
pedalboard switches off: loads build/livediff.vst3 through its C ABI (ModuleEntry ->
GetPluginFactory -> create_instance -> IComponent, IAudioProcessor, IEditController),
negotiates the buses, and calls process() with a scripted ProcessContext.

    with Vst3Host(sample_rate=48000, max_frames=512, offline=True, aux="stereo") as plugin:
        plugin.set_param("generator", 1)
        out = plugin.process(audio, Transport(playing=True, tempo=120, beats=0.0), sidechain=drums)

API (all on the calling thread, which plays main thread and audio thread in turn):
    Vst3Host(path=None, sample_rate, max_frames, offline=False, aux="stereo", params=None)
        params {name: plain}: set through the IEditController before activation (the HELLO has them)
        aux "stereo": the aux bus negotiated stereo, activated and fed;
            "empty": negotiated stereo, then set to an empty arrangement, yet passed as two
                     non-null silent channels (BRIEF §1b);
            "off":   left inactive: 0 channels, null buffers (what pedalboard does)
    .process(audio [2, n] | None, transport | None, sidechain=None, frames=None) -> [2, n] float32
        transport None: no ProcessContext (NULL); sidechain is ignored unless aux is "stereo"
    .set_param(name_or_id, plain)  an IParameterChanges point for the next process()
    .param(name_or_id) -> float    IEditController get_param_normalized, as a plain value
    .bus_info(direction, index) -> (bus_type, channel_count, name)
    .close()                       set_processing(0), set_active(0), terminate, release, ModuleExit
The declarations are vst3_abi.h's own, run through the C preprocessor (cffi reads no macros)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import cffi
import numpy as np

from tests.host.build import built_plugin
from tests.host.clap_host import Transport, _param_id

VST3_ABI = Path(__file__).resolve().parents[2] / "plugin_shim" / "vst3_abi.h"
AUX_MODES = ("stereo", "empty", "off")


def _declarations() -> str:
    text = re.sub(r"^#include.*$", "", VST3_ABI.read_text(), flags=re.M)   # cffi knows the stdint types
    return subprocess.run(["cc", "-E", "-P", "-x", "c", "-"], input=text, capture_output=True, text=True,
                          check=True).stdout


def _interface_ids() -> dict[str, bytes]:
    """V3_*_IID of the header as the 16 bytes hosts compare (four big-endian words)."""
    found = re.findall(r"#define V3_(\w+)_IID\s+V3_ID\((\w+), (\w+), (\w+), (\w+)\)", VST3_ABI.read_text())
    return {name: b"".join(int(w, 16).to_bytes(4, "big") for w in words) for name, *words in found}


ffi = cffi.FFI()
ffi.cdef(_declarations())
ffi.cdef("""
    typedef struct { const v3_factory_vtbl *vtbl; } v3_factory;
    typedef struct { const v3_component_vtbl *vtbl; } v3_component;
    typedef struct { const v3_audio_processor_vtbl *vtbl; } v3_audio_processor;
    typedef struct { const v3_edit_controller_vtbl *vtbl; } v3_edit_controller;
""")
IID = _interface_ids()
SPEAKER_STEREO = int(re.search(r"#define V3_SPEAKER_STEREO \(\(v3_speaker_arrangement\)(\d+)\)", VST3_ABI.read_text()).group(1))
ENUM = ffi.dlopen(None)  # the cdef'd enum constants (V3_OK, V3_AUX, ...) live on any library object


class _ParameterChanges:
    """The host's IParameterChanges for one process call: one queue of one point per parameter."""

    def __init__(self):
        self.points: list[tuple[int, float]] = []       # (id, normalized)
        callback = lambda signature, fn: self._keep.append(ffi.callback(signature, fn)) or self._keep[-1]  # noqa: E731
        self._keep: list = []                           # a struct does not keep its callbacks alive
        unknown = {"query_interface": callback("v3_result(void *, const v3_tuid, void **)", lambda s, i, o: -1),
                   "add_ref": callback("uint32_t(void *)", lambda s: 1), "release": callback("uint32_t(void *)", lambda s: 1)}
        self._queue_vtbl = ffi.new("v3_param_value_queue_vtbl *", {
            **unknown, "get_parameter_id": callback("uint32_t(void *)", lambda s: self.points[self._index(s)][0]),
            "get_point_count": callback("int32_t(void *)", lambda s: 1),
            "get_point": callback("v3_result(void *, int32_t, int32_t *, double *)", self._get_point),
            "add_point": callback("v3_result(void *, int32_t, double, int32_t *)", lambda s, o, v, i: 1)})
        self._vtbl = ffi.new("v3_parameter_changes_vtbl *", {
            **unknown, "get_parameter_count": callback("int32_t(void *)", lambda s: len(self.points)),
            "get_parameter_data": callback("v3_param_value_queue *(void *, int32_t)",
                                           lambda s, i: self._queues[i] if 0 <= i < len(self.points) else ffi.NULL),
            "add_parameter_data": callback("v3_param_value_queue *(void *, const uint32_t *, int32_t *)",
                                           lambda s, p, i: ffi.NULL)})
        self._queues: list = []                         # one per point, made as points are added
        self.object = ffi.new("v3_parameter_changes *", {"vtbl": self._vtbl})

    def add(self, pid: int, normalized: float) -> None:
        self.points.append((pid, normalized))
        if len(self._queues) < len(self.points):
            self._queues.append(ffi.new("v3_param_value_queue *", {"vtbl": self._queue_vtbl}))

    def _index(self, queue) -> int:
        address = int(ffi.cast("uintptr_t", queue))
        return next(i for i, q in enumerate(self._queues) if int(ffi.cast("uintptr_t", q)) == address)

    def _get_point(self, queue, index, offset, value) -> int:
        if index != 0:
            return ENUM.V3_INVALID_ARGUMENT
        offset[0], value[0] = 0, self.points[self._index(queue)][1]
        return ENUM.V3_OK


class Vst3Host:
    def __init__(self, path: str | Path | None = None, sample_rate: float = 48000.0, max_frames: int = 512,
                 offline: bool = False, aux: str = "stereo", params: dict[str, float] | None = None):
        if aux not in AUX_MODES:
            raise ValueError(f"aux {aux!r}; allowed: {', '.join(AUX_MODES)}")
        bundle = Path(path or built_plugin()["VST3"])
        self.sample_rate, self.offline, self.aux = sample_rate, offline, aux
        self.lib = ffi.dlopen(str(bundle / "Contents" / "x86_64-linux" / f"{bundle.stem}.so"))
        if not self.lib.ModuleEntry(ffi.NULL):
            raise RuntimeError(f"{bundle}: ModuleEntry failed")
        factory = ffi.cast("v3_factory *", self.lib.GetPluginFactory())
        info = ffi.new("v3_class_info *")
        if factory.vtbl.get_class_info(factory, 0, info) != ENUM.V3_OK:
            raise RuntimeError(f"{bundle}: no class 0")
        self.component = ffi.cast("v3_component *", self._create(factory, info.cid))
        self.processor = ffi.cast("v3_audio_processor *", self._query(self.component, "AUDIO_PROCESSOR"))
        self.controller = ffi.cast("v3_edit_controller *", self._query(self.component, "EDIT_CONTROLLER"))
        self._check(self.component.vtbl.initialize(self.component, ffi.NULL), "initialize")
        inputs = ffi.new("v3_speaker_arrangement[2]", [SPEAKER_STEREO, SPEAKER_STEREO])
        outputs = ffi.new("v3_speaker_arrangement[1]", [SPEAKER_STEREO])
        self._check(self.processor.vtbl.set_bus_arrangements(self.processor, inputs, 2, outputs, 1), "set_bus_arrangements")
        if aux == "empty":
            inputs[1] = 0
            self._check(self.processor.vtbl.set_bus_arrangements(self.processor, inputs, 2, outputs, 1),
                        "set_bus_arrangements with an empty aux arrangement")
        for direction, index in ((ENUM.V3_INPUT, 0), (ENUM.V3_OUTPUT, 0)) + (((ENUM.V3_INPUT, 1),) if aux != "off" else ()):
            self._check(self.component.vtbl.activate_bus(self.component, ENUM.V3_AUDIO, direction, index, 1), "activate_bus")
        mode = ENUM.V3_OFFLINE if offline else ENUM.V3_REALTIME
        setup = ffi.new("v3_process_setup *", {"process_mode": mode, "symbolic_sample_size": ENUM.V3_SAMPLE32,
                                               "max_samples_per_block": max_frames, "sample_rate": sample_rate})
        self._check(self.processor.vtbl.setup_processing(self.processor, setup), "setup_processing")
        for name, plain in (params or {}).items():     # as a host restoring a project: before activation
            pid = _param_id(name)
            normalized = self.controller.vtbl.plain_param_to_normalized(self.controller, pid, plain)
            self._check(self.controller.vtbl.set_param_normalized(self.controller, pid, normalized), f"set {name}")
        self._check(self.component.vtbl.set_active(self.component, 1), "set_active")
        self._check(self.processor.vtbl.set_processing(self.processor, 1), "set_processing")
        self._changes = _ParameterChanges()
        self._context = ffi.new("v3_process_context *")
        self._continuous = 0
        self._closed = False

    @staticmethod
    def _check(result: int, what: str) -> None:
        if result != ENUM.V3_OK:
            raise RuntimeError(f"{what} returned {result}")

    @staticmethod
    def _create(factory, cid):
        obj = ffi.new("void **")
        Vst3Host._check(factory.vtbl.create_instance(factory, cid, IID["COMPONENT"], obj), "create_instance")
        return obj[0]

    @staticmethod
    def _query(component, interface: str):
        obj = ffi.new("void **")
        Vst3Host._check(component.vtbl.query_interface(component, IID[interface], obj), f"query {interface}")
        return obj[0]

    # -- buses and parameters ----------------------------------------------------------------
    def bus_info(self, direction: int, index: int) -> tuple[int, int, str]:
        info = ffi.new("v3_bus_info *")
        self._check(self.component.vtbl.get_bus_info(self.component, ENUM.V3_AUDIO, direction, index, info), "get_bus_info")
        name = "".join(chr(c) for c in info.name if c)
        return info.bus_type, info.channel_count, name

    def set_param(self, name_or_id: str | int, plain: float) -> None:
        pid = _param_id(name_or_id)
        self._changes.add(pid, self.controller.vtbl.plain_param_to_normalized(self.controller, pid, plain))

    def param(self, name_or_id: str | int) -> float:
        pid = _param_id(name_or_id)
        normalized = self.controller.vtbl.get_param_normalized(self.controller, pid)
        return self.controller.vtbl.normalized_param_to_plain(self.controller, pid, normalized)

    # -- processing --------------------------------------------------------------------------
    def _fill_context(self, t: Transport) -> None:
        c = self._context
        bar_beats = t.tsig[0] * 4.0 / t.tsig[1]
        seconds = t.beats * 60.0 / t.tempo if t.seconds is None else t.seconds
        c.state = ((ENUM.V3_CTX_PLAYING if t.playing else 0) | ENUM.V3_CTX_PROJECT_TIME_MUSIC_VALID
                   | ENUM.V3_CTX_BAR_POSITION_VALID | (ENUM.V3_CTX_TEMPO_VALID if t.has_tempo else 0)
                   | (ENUM.V3_CTX_TIME_SIG_VALID if t.has_tsig else 0)
                   | ((ENUM.V3_CTX_CYCLE_ACTIVE | ENUM.V3_CTX_CYCLE_VALID) if t.loop else 0))
        c.sample_rate = self.sample_rate
        c.project_time_samples = round(seconds * self.sample_rate)
        c.continuous_time_samples = self._continuous
        c.project_time_music = t.beats
        c.bar_position_music = (t.beats // bar_beats) * bar_beats if t.bar_start is None else t.bar_start
        c.cycle_start_music, c.cycle_end_music = t.loop or (0.0, 0.0)
        c.tempo = t.tempo
        c.time_sig_numerator, c.time_sig_denominator = t.tsig

    def process(self, audio: np.ndarray | None, transport: Transport | None = None,
                sidechain: np.ndarray | None = None, frames: int | None = None) -> np.ndarray:
        frames = frames if audio is None else audio.shape[1]
        main = np.zeros((2, frames), np.float32) if audio is None else np.ascontiguousarray(audio, np.float32)
        if self.aux == "stereo" and sidechain is not None:
            side = np.ascontiguousarray(sidechain, np.float32)
        else:
            side = np.zeros((2, frames), np.float32)    # "empty": non-null silent channels
        out = np.zeros((2, frames), np.float32)
        pointers = [ffi.new("float *[]", [ffi.cast("float *", ffi.from_buffer(row)) for row in data])
                    for data in (main, side, out)]
        inputs = ffi.new("v3_audio_bus_buffers[2]")
        inputs[0].num_channels, inputs[0].channel_buffers32 = 2, pointers[0]
        if self.aux != "off":
            inputs[1].num_channels, inputs[1].channel_buffers32 = 2, pointers[1]
        outputs = ffi.new("v3_audio_bus_buffers[1]")
        outputs[0].num_channels, outputs[0].channel_buffers32 = 2, pointers[2]
        if transport is not None:
            self._fill_context(transport)
        data = ffi.new("v3_process_data *", {
            "process_mode": ENUM.V3_OFFLINE if self.offline else ENUM.V3_REALTIME,
            "symbolic_sample_size": ENUM.V3_SAMPLE32, "num_samples": frames, "num_inputs": 2, "num_outputs": 1,
            "inputs": inputs, "outputs": outputs, "input_parameter_changes": self._changes.object,
            "context": self._context if transport is not None else ffi.NULL})
        result = self.processor.vtbl.process(self.processor, data)
        self._changes.points.clear()
        self._continuous += frames
        if result != ENUM.V3_OK:
            raise RuntimeError(f"process returned {result}")
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.processor.vtbl.set_processing(self.processor, 0)
        self.component.vtbl.set_active(self.component, 0)
        self.component.vtbl.terminate(self.component)
        for face in (self.controller, self.processor, self.component):
            face.vtbl.release(face)
        self.lib.ModuleExit()

    def __enter__(self) -> "Vst3Host":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
