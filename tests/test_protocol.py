"""Message validation and the endpoint rule, without a socket."""
from __future__ import annotations

import os
import stat

import msgpack
import numpy as np
import pytest

from bridge import endpoint, protocol
from bridge.layout import const
from bridge.protocol import ERR, KEY, PARAM, ProtocolError

AUDIO = dict(instance=1, epoch=0, pos_samples=-512, pos_beats=-0.1, tempo=97.5, frames=3, channels=2)


def transport(**changes):
    fields = dict(instance=1, epoch=4, flags=const("LD_TRANSPORT_PLAYING"), tempo=120, pos_samples=0, pos_beats=0.0,
                  bar_start_beats=0.0, tsig_num=7, tsig_den=8, loop_start_beats=0.0, loop_end_beats=0.0,
                  process_mode=const("LD_MODE_OFFLINE"), underruns=0, offline_timeouts=0, dropped_frames=0, grid=0)
    return protocol.encode("transport", **{**fields, **changes})


def refused(frame: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        protocol.decode_message(frame)
    return info.value


def test_valid_messages_decode_to_typed_objects():
    audio = np.arange(6, dtype=np.float32).reshape(2, 3)
    msg = protocol.decode_message(protocol.encode("audio", **AUDIO, input=audio.tobytes(), sidechain=None))
    assert isinstance(msg, protocol.Audio) and msg.pos_samples == -512
    np.testing.assert_array_equal(msg.input, audio)
    t = protocol.decode_message(transport())
    assert isinstance(t, protocol.Transport) and (t.tsig_num, t.tsig_den, t.tempo) == (7, 8, 120.0)
    p = protocol.decode_message(protocol.encode("params", instance=1, params={PARAM["tempo_bpm"]: 92.5,
                                                                              PARAM["generator"]: 1}))
    assert p.params == {PARAM["tempo_bpm"]: 92.5, PARAM["generator"]: 1.0}


@pytest.mark.parametrize("frame, code, words", [
    (b"", "LD_ERR_MALFORMED", "not a msgpack map"),
    (msgpack.packb("text"), "LD_ERR_MALFORMED", "msgpack str"),
    (msgpack.packb({KEY["instance"]: 1}), "LD_ERR_MALFORMED", "TYPE (key 0) is missing"),
    (msgpack.packb({KEY["type"]: True, KEY["instance"]: 1}), "LD_ERR_UNKNOWN_MESSAGE", "TYPE True"),
    (msgpack.packb({KEY["type"]: 16, KEY["instance"]: 1}), "LD_ERR_UNKNOWN_MESSAGE", "allowed: 1 (HELLO)"),
    (transport(tempo="120"), "LD_ERR_TYPE", "TEMPO is str; allowed: float64"),
    (transport(epoch=-1), "LD_ERR_TYPE", "EPOCH is -1; allowed: 0..4294967295"),
    (transport(flags=1 << 12), "LD_ERR_TYPE", "unknown bits"),
    (transport(process_mode=5), "LD_ERR_TYPE", "PROCESS_MODE is 5"),
    (transport(underruns=True), "LD_ERR_TYPE", "UNDERRUNS is bool"),
    (protocol.encode("audio", **AUDIO, input=bytes(23), sidechain=None), "LD_ERR_TYPE", "= 24"),
    (protocol.encode("audio", **AUDIO, input=bytes(24), sidechain=bytes(8)), "LD_ERR_TYPE", "SIDECHAIN has 8 bytes"),
    (protocol.encode("audio", **AUDIO, input=np.full(6, np.nan, np.float32).tobytes(), sidechain=None),
     "LD_ERR_TYPE", "NaN"),
    (protocol.encode("audio", **{**AUDIO, "channels": 3}, input=bytes(36), sidechain=None), "LD_ERR_TYPE", "CHANNELS is 3"),
    (protocol.encode("params", instance=1, params={99: 1}), "LD_ERR_TYPE", "unknown parameter id 99"),
    (protocol.encode("params", instance=1, params={PARAM["seed"]: 1.5}), "LD_ERR_TYPE", "integer 0..999"),
    (protocol.encode("params", instance=1, params={PARAM["tempo_bpm"]: 5000}), "LD_ERR_TYPE", "number 20..300"),
    (protocol.encode("params", instance=1, params=[1]), "LD_ERR_TYPE", "PARAMS is list"),
    (msgpack.packb({KEY["type"]: 3, KEY["instance"]: 1, 50: msgpack.ExtType(1, b"x")}), "LD_ERR_MALFORMED", "not a msgpack"),
])
def test_bad_messages_name_the_problem_and_what_is_allowed(frame, code, words):
    error = refused(frame)
    assert error.code == ERR[code] and words in error.message, error.message


def test_unknown_keys_are_ignored_and_limits_come_from_the_header():
    frame = msgpack.packb({**msgpack.unpackb(transport(), strict_map_key=False), 200: "future"})
    assert isinstance(protocol.decode_message(frame), protocol.Transport)
    assert refused(b"\x80" + bytes(const("LD_MAX_MESSAGE_BYTES"))).code == ERR["LD_ERR_OVERSIZED"]
    too_long = protocol.encode("audio", **{**AUDIO, "frames": const("LD_MAX_AUDIO_FRAMES") + 1}, input=b"", sidechain=None)
    assert refused(too_long).code == ERR["LD_ERR_OVERSIZED"]


def test_replies_round_trip():
    reply = protocol.decode_reply(protocol.error(ERR["LD_ERR_TYPE"], "bad", 3))
    assert reply == {"type": protocol.MSG["error"], "code": ERR["LD_ERR_TYPE"], "message": "bad", "ref_type": 3}
    welcome = protocol.decode_reply(protocol.welcome("/livediff-1-00", 0, "loop"))
    assert welcome["version"] == const("LD_PROTOCOL_VERSION") and welcome["shm_name"] == "/livediff-1-00"


def test_default_endpoint_rule():
    assert endpoint.default_endpoint({"LIVEDIFF_ENDPOINT": "tcp://127.0.0.1:7000"}) == "tcp://127.0.0.1:7000"
    assert endpoint.default_endpoint({"XDG_RUNTIME_DIR": "/run/user/5"}) == "ipc:///run/user/5/livediff/engine.sock"
    assert endpoint.default_endpoint({}) == f"ipc:///tmp/livediff-{os.getuid()}/engine.sock"
    for bad in ["tcp://0.0.0.0:1", "tcp://localhost:1", "tcp://127.0.0.1:0", "udp://x", "ipc://rel"]:
        with pytest.raises(endpoint.EndpointError, match="allowed: ipc://<path> or tcp://127.0.0.1:<port>"):
            endpoint.default_endpoint({"LIVEDIFF_ENDPOINT": bad})


def test_ipc_directory_is_created_private_and_a_shared_one_is_refused(tmp_path):
    ep = f"ipc://{tmp_path}/sub/engine.sock"
    old = os.umask(0)
    try:
        endpoint.prepare(ep)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "sub").stat().st_mode) == 0o700
    (tmp_path / "sub").chmod(0o755)
    with pytest.raises(endpoint.EndpointError, match="allowed: 700"):
        endpoint.prepare(ep)
