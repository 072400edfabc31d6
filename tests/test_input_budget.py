"""Received input is bounded per session and in total (issue #9: 1-frame AUDIO messages far
apart cost a whole chunk each, and garbage took the engine from 85 MB to 2 GB)."""
from __future__ import annotations

import numpy as np

from bridge.convert import new_session
from bridge.shm import TimelineStore
from engine.input_budget import InputBudget
from engine.scheduler import Scheduler
from engine.session import InputStore

CHUNK = InputStore.CHUNK
ONE = np.ones((2, 1), np.float32)


def test_memory_follows_what_was_received_not_where():
    store = InputStore(2, keep_frames=1000 * CHUNK)
    for j in range(-1000, 1000):        # 1-frame writes, each in a chunk of its own, the centre kept newest
        store.write(j * CHUNK, ONE)
        store.write(0, ONE)
    assert len(store._chunks) <= 3, "a chunk or two of slack, not one chunk per frame"
    contiguous = InputStore(2, keep_frames=1000 * CHUNK)
    for at in range(0, 50 * CHUNK, 100):
        contiguous.write(at, np.ones((2, 100), np.float32))
    assert len(contiguous._chunks) == 50, "input that was really received is all kept"


def test_contiguous_input_within_the_keep_span_reads_back():
    store = InputStore(1, keep_frames=20 * CHUNK)
    audio = np.random.default_rng(0).uniform(-1, 1, (1, 20 * CHUNK)).astype(np.float32)
    for at in range(0, audio.shape[1], 1000):
        store.write(at, audio[:, at:at + 1000])
    np.testing.assert_array_equal(store.read(0, audio.shape[1]), audio)
    np.testing.assert_array_equal(store.read(-CHUNK, CHUNK), np.zeros((1, CHUNK), np.float32))


def test_past_the_total_the_largest_store_gives_up_its_farthest_chunks():
    chunk_bytes = 2 * CHUNK * 4
    budget = InputBudget(10 * chunk_bytes)
    modest, hog = InputStore(2, 1000 * CHUNK), InputStore(2, 1000 * CHUNK)
    for store in (modest, hog):
        store.budget = budget
        budget.add(store)
    full = np.ones((2, CHUNK), np.float32)
    for k in range(3):
        modest.write(k * CHUNK, full)
    for k in range(100):
        hog.write(k * CHUNK, full)
    assert budget.used == modest.nbytes + hog.nbytes == budget.total
    assert len(modest._chunks) == 3, "the hog pays first"
    assert sorted(hog._chunks) == list(range(93, 100)), "the hog keeps what it wrote last"
    budget.remove(hog)
    assert budget.used == modest.nbytes


def test_the_scheduler_counts_the_sessions_it_serves():
    scheduler = Scheduler(max_input_mb=1)
    store = TimelineStore(0xB0D6E7, 2, 8000)
    try:
        session = new_session(0xB0D6E7, 8000, 2, store, generator="loop")
        scheduler.add(session)
        for k in range(40):                                  # what on_audio does under the lock
            session.input.write(k * CHUNK, np.ones((2, CHUNK), np.float32))
        assert scheduler.input_budget.used == session.input.nbytes <= 2 ** 20
        scheduler.remove(session.instance)
        assert scheduler.input_budget.used == 0 and session.input.budget is None
    finally:
        store.close()
