"""A plugin instance written in Python: a DEALER that speaks the wire protocol.

Used by tests, benchmarks and `livediff bounce` (to check an engine answers); the real
plugin is the C shim. Not thread-safe: one client per thread, like a ZeroMQ socket.
"""
from __future__ import annotations

import os
import time

import numpy as np
import zmq

from bridge import protocol
from bridge.layout import const

HARNESS_FORMAT = "harness"


def _param_ids(params: dict[str, float]) -> dict[int, float]:
    return {protocol.PARAM[name]: float(value) for name, value in params.items()}


class Client:
    def __init__(self, endpoint: str, instance: int | None = None, context: zmq.Context | None = None):
        self.instance = int.from_bytes(os.urandom(8), "little") if instance is None else instance
        self._context = context or zmq.Context.instance()
        self._grid, self._grid_key = 0, None
        self.socket = self._context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, self.instance.to_bytes(8, "little"))
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def send(self, msg_type: str, **fields) -> None:
        self.socket.send(protocol.encode(msg_type, instance=self.instance, **fields))

    def send_raw(self, frame: bytes) -> None:
        self.socket.send(frame)

    def recv(self, timeout: float) -> dict | None:
        """The next engine message as {key name: value}, or None after `timeout` seconds."""
        if not self.socket.poll(int(timeout * 1000)):
            return None
        return protocol.decode_reply(self.socket.recv())

    def wait_for(self, msg_type: str, timeout: float = 5.0, skip: tuple[str, ...] = ("status",)) -> dict:
        """Wait for a message of `msg_type`, dropping those in `skip`; fail on anything else."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            reply = self.recv(left)
            if reply is None:
                break
            if reply["type"] == protocol.MSG[msg_type]:
                return reply
            if not any(reply["type"] == protocol.MSG[s] for s in skip):
                raise AssertionError(f"expected {msg_type}, got {reply}")
        raise TimeoutError(f"no {msg_type} from the engine within {timeout} s")

    def hello(self, sample_rate: int = 44100, channels: int = 2, offline: bool = False, max_block: int = 512,
              **params: float) -> dict:
        """Open the session; returns the WELCOME."""
        self.sample_rate, self.channels = sample_rate, channels
        self.send("hello", version=const("LD_PROTOCOL_VERSION"), format=HARNESS_FORMAT, sample_rate=sample_rate,
                  max_block=max_block, channels=channels,
                  process_mode=const("LD_MODE_OFFLINE" if offline else "LD_MODE_REALTIME"), params=_param_ids(params))
        return self.wait_for("welcome")

    def transport(self, *, pos_samples: int, tempo: float, epoch: int = 0, playing: bool = True,
                  tsig: tuple[int, int] = (4, 4), offline: bool = False, bar_start_beats: float | None = None,
                  underruns: int = 0) -> None:
        """A transport snapshot; the grid sequence is bumped as the shim does it (docs/protocol.md)."""
        if (epoch, tempo, tsig) != self._grid_key:
            self._grid_key, self._grid = (epoch, tempo, tsig), (self._grid + 1) & 0xFFFFFFFF
        pos_beats = pos_samples * tempo / 60.0 / self.sample_rate
        bar_beats = tsig[0] * 4 / tsig[1]
        flags = const("LD_TRANSPORT_TEMPO_VALID") | const("LD_TRANSPORT_TSIG_VALID")
        flags |= const("LD_TRANSPORT_PLAYING") if playing else 0
        self.send("transport", epoch=epoch, flags=flags, tempo=tempo, pos_samples=pos_samples, pos_beats=pos_beats,
                  bar_start_beats=(pos_beats // bar_beats) * bar_beats if bar_start_beats is None else bar_start_beats,
                  tsig_num=tsig[0], tsig_den=tsig[1], loop_start_beats=0.0, loop_end_beats=0.0,
                  process_mode=const("LD_MODE_OFFLINE" if offline else "LD_MODE_REALTIME"),
                  underruns=underruns, offline_timeouts=0, dropped_frames=0, grid=self._grid)

    def audio(self, *, pos_samples: int, tempo: float, audio: np.ndarray, epoch: int = 0,
              sidechain: np.ndarray | None = None) -> None:
        """Send planar float32 input [channels, frames] (and sidechain, same shape) starting at pos_samples."""
        planar = lambda a: None if a is None else np.ascontiguousarray(a, dtype="<f4").tobytes()  # noqa: E731
        self.send("audio", epoch=epoch, pos_samples=pos_samples, pos_beats=pos_samples * tempo / 60.0 / self.sample_rate,
                  tempo=tempo, frames=audio.shape[1], channels=audio.shape[0], input=planar(audio),
                  sidechain=planar(sidechain))

    def bye(self) -> None:
        self.send("bye")

    def close(self, linger_ms: int = 0) -> None:
        """`linger_ms`: how long messages still queued (a BYE just sent) may take to go out."""
        self.socket.close(linger_ms)


def engine_answers(endpoint: str, timeout: float = 0.3) -> bool:
    """True if an engine answers on `endpoint`: a BYE for an unknown instance gets an ERROR."""
    client = Client(endpoint)
    try:
        client.bye()
        return client.recv(timeout) is not None
    finally:
        client.close()
