"""The timeline store in /dev/shm: permissions, slot splitting and reuse, the seqlock under a
concurrent writer process, and the sweep of stale segments."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from bridge.layout import const
from bridge.shm import NAME_ATTEMPTS, SHM_DIR, StoreFull, TimelineReader, TimelineStore, sweep_stale_segments
from conftest import REPO
from engine.publisher import WindowKind

SR = 1000  # a tiny rate keeps slots small: capacity = 4 s = 4000 frames


@pytest.fixture
def store():
    s = TimelineStore(0xfeed, 2, SR)
    yield s
    s.close()
    assert not s.path.exists()


def window(value: float, frames: int) -> np.ndarray:
    return np.full((2, frames), value, np.float32)


def publish(store, start, frames, value, epoch=0, grid=0):
    return store.publish(epoch=epoch, start_sample=start, bar_index=start // 1000, start_beat=start / 500,
                         tempo_bpm=120.0, kind=WindowKind.GENERATED, grid=grid, audio=window(value, frames))


def test_segment_is_0600_whatever_the_umask_and_has_the_header():
    old = os.umask(0)
    try:
        s = TimelineStore(0xbeef, 1, 48000)
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o600
        assert s.name == f"/livediff-{os.getpid()}-000000000000beef"
        reader = TimelineReader(s.name)
        h = reader.header
        assert (h.magic, h.slot_count, h.channels, h.sample_rate, h.slot_capacity_frames) == \
               (const("LD_SHM_MAGIC"), 16, 1, 48000, 4 * 48000)
        assert h.audio_offset % 4096 == 0 and h.total_bytes == os.stat(s.path).st_size
        reader.close()
    finally:
        s.close()


def test_slots_say_which_grid_they_were_made_for_and_can_be_acknowledged(store):
    reader = TimelineReader(store.name)
    long_id = publish(store, 0, 9000, 1.0, grid=7)           # three slots
    other = publish(store, 9000, 100, 2.0, grid=7)
    assert sorted(s.grid for s in reader.slots()) == [7, 7, 7, 7]
    store.acknowledge(long_id, 8)
    assert sorted((s.window_id, s.grid) for s in reader.slots()) == [(long_id, 8)] * 3 + [(other, 7)]
    publish(store, 9100, 10, 3.0, grid=(1 << 32) + 9)     # the shim's sequence is a uint32
    assert {s.grid for s in reader.slots() if s.start_sample == 9100} == {9}
    reader.close()


def test_a_taken_segment_name_moves_on_to_the_next_free_one():
    planted = SHM_DIR / f"livediff-{os.getpid()}-000000000000beef"
    planted.write_bytes(b"a stale or planted file")      # issue #9: O_EXCL raised and the engine died
    stores = []
    try:
        for attempt in range(1, NAME_ATTEMPTS):
            stores.append(TimelineStore(0xbeef, 1, 48000))
            assert stores[-1].name == f"/livediff-{os.getpid()}-000000000000beef-{attempt}"
        with pytest.raises(FileExistsError, match="alternatives are taken"):
            TimelineStore(0xbeef, 1, 48000)
        assert planted.read_bytes() == b"a stale or planted file", "someone else's file is left alone"
    finally:
        for store in stores:
            store.close()
        planted.unlink()
    assert not list(SHM_DIR.glob(f"livediff-{os.getpid()}-000000000000beef-*"))


def test_the_engine_keeps_no_file_descriptor_per_segment():
    before = len(os.listdir("/proc/self/fd"))
    stores = [TimelineStore(0xfd00 + n, 2, 48000) for n in range(50)]
    try:
        assert len(os.listdir("/proc/self/fd")) == before   # Python's mmap kept a dup of each
    finally:
        for store in stores:
            store.close()


def test_long_window_spans_slots_and_replacement_wins(store):
    reader = TimelineReader(store.name)
    audio = np.arange(2 * 9000, dtype=np.float32).reshape(2, 9000)
    first = store.publish(epoch=0, start_sample=100, bar_index=0, start_beat=0.2, tempo_bpm=120.0,
                          kind=WindowKind.GENERATED, grid=0, audio=audio)
    slots = sorted(reader.slots(), key=lambda s: s.start_sample)
    assert [(s.start_sample, s.frames, s.window_id) for s in slots] == [(100, 4000, first), (4100, 4000, first),
                                                                         (8100, 1000, first)]
    assert slots[1].start_beat == pytest.approx(0.2 + 4000 * 2 / SR)  # 120 BPM = 2 beats/s
    out, covered = reader.render(0, 0, 9200)
    np.testing.assert_array_equal(out[:, 100:9100], audio)
    assert covered.sum() == 9000 and not covered[:100].any()
    second = publish(store, 100, 9000, 7.0)           # a replacement of the same stretch
    assert second > first
    assert {s.window_id for s in reader.slots()} == {second}, "covered older slots were not emptied"
    assert (reader.render(0, 100, 9000)[0] == 7.0).all()
    reader.close()


def test_slots_of_older_epochs_are_reused_first(store):
    reader = TimelineReader(store.name)
    for i in range(8):
        publish(store, i * 1000, 1000, i, epoch=1)
    for i in range(8):
        publish(store, i * 1000, 1000, 10 + i, epoch=2)
    store.set_playhead(2, 0)                   # a seek made epoch 1 stale
    for i in range(8, 16):
        publish(store, i * 1000, 1000, 10 + i, epoch=2)
    assert {s.epoch for s in reader.slots()} == {2} and len(reader.slots()) == 16
    with pytest.raises(StoreFull):             # all of epoch 2 is at or ahead of the playhead
        publish(store, 16000, 1000, 99, epoch=2)
    store.set_playhead(3, 0)
    publish(store, 0, 1000, 50, epoch=3)
    assert sorted(s.epoch for s in reader.slots()).count(3) == 1
    reader.close()


def test_reuse_order(store):
    reader = TimelineReader(store.name)
    for i in range(16):
        publish(store, i * 1000, 1000, i, epoch=5)
    store.set_playhead(5, 0)
    with pytest.raises(StoreFull):
        publish(store, 16000, 1000, 16, epoch=5)
    store.set_playhead(5, 2000)     # slots [0, 1000) and [1000, 2000) are behind the playhead
    publish(store, 16000, 1000, 16, epoch=5)
    publish(store, 17000, 1000, 17, epoch=5)
    with pytest.raises(StoreFull):
        publish(store, 18000, 1000, 18, epoch=5)
    assert sorted(s.start_sample for s in reader.slots())[0] == 2000
    assert store.invalidate(5, 10000) == 8 and len(reader.slots()) == 8
    reader.close()


def test_status_text(store):
    reader = TimelineReader(store.name)
    store.set_status(const("LD_ERR_GENERATOR"), "x" * 1000)
    code, text = reader.status()
    assert code == const("LD_ERR_GENERATOR") and text == "x" * (const("LD_STATUS_TEXT_BYTES") - 1)
    reader.close()


WRITER = """
import sys, time, numpy as np
from bridge.shm import TimelineStore
from engine.publisher import WindowKind
store = TimelineStore(0x5eed, 2, 44100, slot_seconds=0.5)
print(store.name, flush=True)
n, end = 0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    n += 1
    frames = 5000 + (n * 7919) % 17000       # lengths vary so a torn copy shows as a length mismatch too
    store.set_playhead(0, (n - 4) * 44100)
    store.publish(epoch=0, start_sample=n * 44100, bar_index=n, start_beat=float(n), tempo_bpm=60.0,
                  kind=WindowKind.GENERATED, grid=0, audio=np.full((2, frames), float(n), np.float32))
print(n, flush=True)
sys.stdin.read()
store.close()
"""


def test_seqlock_reader_never_sees_a_half_written_window():
    writer = subprocess.Popen([sys.executable, "-c", WRITER, "1.5"], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        reader = TimelineReader(writer.stdout.readline().strip())
        seen, copies = set(), 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for s in reader.slots():
                copies += 1
                n = s.bar_index
                assert s.start_sample == n * 44100 and s.start_beat == n and s.window_id > 0
                assert s.frames == min(5000 + (n * 7919) % 17000, 22050)
                assert s.audio.shape == (2, s.frames) and (s.audio == n).all(), f"torn copy of window {n}"
                seen.add(n)
        published = int(writer.stdout.readline())
        reader.close()
    finally:
        writer.stdin.close()
        writer.wait(10)
    assert published > 100 and len(seen) > 50, (published, len(seen), copies)
    assert not list(SHM_DIR.glob(f"livediff-{writer.pid}-*"))


def test_sweep_removes_segments_of_dead_engines_only():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = SHM_DIR / f"livediff-{int(dead.stdout)}-00000000000000aa"
    stale.write_bytes(b"x")
    mine = TimelineStore(0xab, 1, 8000)
    try:
        assert f"/{stale.name}" in sweep_stale_segments()
        assert not stale.exists() and mine.path.exists()
    finally:
        stale.unlink(missing_ok=True)
        mine.close()
