"""What a hostile or broken plugin sends an engine, and a healthy realtime session to watch
while it does (used by tests/test_hostile_engine.py and bench/hostile.py).

Each HOSTILE case is a list of frames one identity sends after its own valid HELLO. The cases
are the findings of issue #9, reproduced byte for byte; docs/reliability.md has what each did
before and after the hardening.
"""
from __future__ import annotations

import math
import os
import time

import msgpack
import numpy as np
import zmq

from bridge import protocol
from bridge.client import Client
from bridge.layout import const
from bridge.shm import TimelineReader

RATE, TEMPO, BLOCK = 48000, 120.0, 1024
BAR = 4 * 60 * RATE // int(TEMPO)
PLAYING = const("LD_TRANSPORT_PLAYING") | const("LD_TRANSPORT_TEMPO_VALID") | const("LD_TRANSPORT_TSIG_VALID")
INT64_MAX = (1 << 63) - 1


def transport(instance: int, **changes) -> bytes:
    """A valid realtime TRANSPORT at the song start, with `changes` applied."""
    fields = dict(instance=instance, epoch=1, flags=PLAYING, tempo=TEMPO, pos_samples=0, pos_beats=0.0,
                  bar_start_beats=0.0, tsig_num=4, tsig_den=4, loop_start_beats=0.0, loop_end_beats=0.0,
                  process_mode=const("LD_MODE_REALTIME"), underruns=0, offline_timeouts=0, dropped_frames=0, grid=1)
    return protocol.encode("transport", **{**fields, **changes})


def audio(instance: int, pos_samples: int, frames: int = 1, channels: int = 2, epoch: int = 1) -> bytes:
    return protocol.encode("audio", instance=instance, epoch=epoch, pos_samples=pos_samples, pos_beats=0.0,
                           tempo=TEMPO, frames=frames, channels=channels,
                           input=bytes(4 * frames * channels), sidechain=None)


def hello(instance: int, channels: int = 2, sample_rate: int = RATE) -> bytes:
    return protocol.encode("hello", instance=instance, version=const("LD_PROTOCOL_VERSION"), format="harness",
                           sample_rate=sample_rate, max_block=BLOCK, channels=channels,
                           process_mode=const("LD_MODE_REALTIME"),
                           params={protocol.PARAM["generator"]: const("LD_GENERATOR_LOOP")})


def sparse_positions(count: int) -> list[int]:
    """Where 1-frame AUDIO messages cost the most: each in a chunk of its own, the newest write
    brought back to the centre after each (issue #9: ~870x amplification)."""
    return [pos for j in range(-count // 2, count // 2) for pos in (j * 8192, 0)]


def _loop(instance: int, start: float, end: float) -> bytes:
    return transport(instance, flags=PLAYING | const("LD_TRANSPORT_LOOP_ACTIVE"), loop_start_beats=start,
                     loop_end_beats=end)


# name -> frames(instance). Sent after the identity's HELLO was welcomed.
HOSTILE = {
    "positions 1e306 then 2e306 beats": lambda i: [transport(i, pos_beats=1e306), transport(i, pos_beats=2e306)],
    "a loop of (1e306, 2e306) beats": lambda i: [_loop(i, 1e306, 2e306)],
    "1e300 beats, then a meter change": lambda i: [transport(i, pos_beats=1e300),
                                                   transport(i, pos_beats=1e300, tsig_num=3)],
    "+-1e300 beats": lambda i: [transport(i, pos_beats=1e300), transport(i, pos_beats=-1e300, epoch=2)],
    "INT64_MAX samples": lambda i: [transport(i, pos_samples=INT64_MAX), audio(i, INT64_MAX - 16)],
    "INT64_MIN samples": lambda i: [transport(i, pos_samples=-INT64_MAX - 1)],
    "NaN and Inf positions": lambda i: [transport(i, pos_beats=math.nan), transport(i, bar_start_beats=math.inf),
                                        _loop(i, -math.inf, math.nan)],
    "a loop of 1e-12 beats": lambda i: [_loop(i, 1.0, 1.0 + 1e-12), transport(i, pos_beats=1.0,
                                                                          pos_samples=RATE // 2)],
    "sparse 1-frame audio": lambda i: [audio(i, pos) for pos in sparse_positions(2000)],
    "garbage bytes": lambda i: [os.urandom(n) for n in (0, 1, 7, 64, 4096)] + [msgpack.packb([1] * 200)],
}


def send_case(endpoint: str, name: str, instance: int, listen: float = 0.5) -> list[dict]:
    """HELLO as a fresh connection, then the case's frames; the ERRORs the engine answered within
    `listen` seconds. A dead engine raises zmq.Again (sends time out after 1 s)."""
    client = Client(endpoint, instance=instance)
    client.socket.setsockopt(zmq.SNDTIMEO, 1000)
    try:
        client.send_raw(hello(instance))
        client.wait_for("welcome")
        for frame in HOSTILE[name](instance):
            client.send_raw(frame)
        errors, deadline = [], time.monotonic() + listen
        while (reply := client.recv(max(0.0, deadline - time.monotonic()))) is not None:
            if reply["type"] == protocol.MSG["error"]:
                errors.append(reply)
        return errors
    finally:
        client.close()


class RealtimeSession:
    """A healthy realtime plugin: TRANSPORT + AUDIO per block at the wall-clock pace (loop
    generator), and, like the shim's audio thread, a check per block that generated audio
    covers it. Blocks of the first `warmup` seconds are not counted."""

    def __init__(self, endpoint: str, warmup: float = 0.5, context: zmq.Context | None = None):
        self.client = Client(endpoint, context=context)
        welcome = self.client.hello(RATE, 2, max_block=BLOCK, generator=const("LD_GENERATOR_LOOP"), seed=7)
        self.client.socket.setsockopt(zmq.SNDTIMEO, 0)
        self.reader = TimelineReader(welcome["shm_name"])
        self.noise = np.random.default_rng(7).uniform(-0.1, 0.1, (2, BAR)).astype(np.float32)
        self.warmup = int(warmup * RATE)
        self.pos = 0
        self.started = None
        self.blocks = self.missed = 0
        self.longest_gap = 0.0          # seconds of consecutive uncovered blocks
        self._gap = 0

    def play(self, seconds: float) -> None:
        if self.started is None:
            self.started = time.monotonic()
        end = self.pos + int(seconds * RATE)
        while self.pos < end:
            start = self.pos % BAR
            try:
                self.client.transport(pos_samples=self.pos, tempo=TEMPO, epoch=1)
                self.client.audio(pos_samples=self.pos, tempo=TEMPO, epoch=1,
                                  audio=np.take(self.noise, np.arange(start, start + BLOCK) % BAR, axis=1))
            except zmq.Again:
                pass                            # a dead engine: the shim's sends do not block either
            ok = self.reader.covers(1, self.pos, BLOCK)
            if self.pos >= self.warmup:
                self.blocks += 1
                self.missed += not ok
                self._gap = 0 if ok else self._gap + 1
                self.longest_gap = max(self.longest_gap, self._gap * BLOCK / RATE)
            while self.client.socket.poll(0):
                self.client.socket.recv()       # heartbeats
            self.pos += BLOCK
            time.sleep(max(0.0, self.started + self.pos / RATE - time.monotonic()))

    @property
    def coverage(self) -> float:
        return 1.0 - self.missed / max(1, self.blocks)

    def close(self) -> None:
        try:
            self.client.bye()
        except zmq.Again:
            pass
        self.reader.close()
        self.client.close()


def _senders(context: zmq.Context, endpoint: str, count: int) -> list:
    """`count` DEALER sockets that queue much and read nothing (replies are let drop)."""
    sockets = []
    for _ in range(count):
        socket = context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, 100000)
        socket.setsockopt(zmq.RCVHWM, 10)
        socket.connect(endpoint)
        sockets.append(socket)
    return sockets


def _close_all(context: zmq.Context, sockets: list) -> None:
    for socket in sockets:
        socket.close(0)
    context.term()


def flood(endpoint: str, seconds: float, identities: int = 1, rate: float | None = None) -> int:
    """Send refused messages (valid msgpack, unknown session) from `identities` sockets for
    `seconds`, as fast as possible or at `rate` messages/s in total; returns how many were sent.
    Meant for a child process (multiprocessing spawn): it makes its own ZeroMQ context."""
    context = zmq.Context()
    sockets = _senders(context, endpoint, identities)
    frames = [transport(0xBAD0000 + n, pos_beats=float(n)) for n in range(identities)]
    sent = 0
    started = time.monotonic()
    while (now := time.monotonic()) - started < seconds:
        if rate is not None and sent >= rate * (now - started):
            time.sleep(0.001)
            continue
        k = sent % identities
        try:
            sockets[k].send(frames[k], zmq.NOBLOCK)
            sent += 1
        except zmq.Again:
            time.sleep(0.0005)
    _close_all(context, sockets)
    return sent


def big_frames(endpoint: str, seconds: float, megabytes: float, connections: int = 4) -> int:
    """Send frames of `megabytes` of zeros (not msgpack) from `connections` sockets for `seconds`,
    as fast as ZeroMQ takes them; returns how many went. (Child process: its own context.)"""
    context = zmq.Context()
    sockets = _senders(context, endpoint, connections)
    frame, sent, started = bytes(int(megabytes * 2 ** 20)), 0, time.monotonic()
    while time.monotonic() - started < seconds:
        for socket in sockets:
            try:
                socket.send(frame, zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                time.sleep(0.0005)
    _close_all(context, sockets)
    return sent


def engine_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def engine_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
