"""The timeline store in POSIX shared memory (layout: ld_shm_header in livediff_shm.h).

The engine owns one segment per plugin session and is its only writer (TimelineStore);
the shim maps it and reads slots under the seqlock. TimelineReader does in Python what
the shim does in C, for tests and tools.

Size: SLOT_COUNT slots of SLOT_SECONDS of audio each (16 x 4 s = 64 s per channel, about
22.6 MB at 44.1 kHz stereo). A one-bar window at 20 BPM in 4/4 (12 s) spans 3 slots, so
even the slowest grid keeps a handful of windows ahead; the scheduler caps its lookahead to
what fits. tmpfs pages are only allocated once written, so idle slots cost no memory.
"""
from __future__ import annotations

import errno
import itertools
import mmap
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cffi
import numpy as np

from bridge.layout import HEADER_SIZE, const, ffi
from engine.publisher import StoreFull, WindowKind

SHM_DIR = Path("/dev/shm")
SLOT_COUNT = 16
SLOT_SECONDS = 4
NAME_ATTEMPTS = 8        # a name already taken (a stale or planted file) moves on to "-1", "-2", ...
_SEGMENT_NAME = re.compile(r"^livediff-(\d+)-([0-9a-f]{16})(-\d+)?$")
WINDOW_FLAGS = {kind: const(f"LD_WINDOW_{kind.name}") for kind in WindowKind}
_window_ids = itertools.count(1)  # engine-wide, increasing: a larger id replaces a smaller one

# The engine maps segments with libc's mmap, not Python's: mmap.mmap keeps a dup of the file
# descriptor for its lifetime, one per session, and ~1,000 sessions then exhaust a 1024-fd limit.
_libc_ffi = cffi.FFI()
_libc_ffi.cdef("void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);"
               "int munmap(void *addr, size_t length);")
_libc = _libc_ffi.dlopen(None)
_MAP_FAILED = _libc_ffi.cast("void *", -1)


def segment_name(instance: int, pid: int | None = None, attempt: int = 0) -> str:
    suffix = f"-{attempt}" if attempt else ""
    return f"/livediff-{os.getpid() if pid is None else pid}-{instance:016x}{suffix}"


class _Mapping:
    """A shared read-write mapping of `size` bytes of fd that holds no file descriptor."""

    def __init__(self, fd: int, size: int):
        self.size = size
        self._base = _libc.mmap(_libc_ffi.NULL, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        if self._base == _MAP_FAILED:
            raise OSError(_libc_ffi.errno, os.strerror(_libc_ffi.errno))
        self.buffer = _libc_ffi.buffer(self._base, size)
        self.closed = False

    def close(self) -> None:
        """Only once nothing refers to `buffer` any more."""
        if not self.closed:
            self.closed = True
            del self.buffer
            _libc.munmap(self._base, self.size)


def _create(instance: int, size: int) -> tuple[str, _Mapping]:
    """Create, size and map a new 0600 segment under the first free name."""
    for attempt in range(NAME_ATTEMPTS):
        name = segment_name(instance, attempt=attempt)
        path = SHM_DIR / name[1:]
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, 0o600)  # the umask must not widen or narrow it
            os.ftruncate(fd, size)
            return name, _Mapping(fd, size)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
    raise FileExistsError(errno.EEXIST, f"{segment_name(instance)} and its {NAME_ATTEMPTS - 1} alternatives "
                                        f"are taken in {SHM_DIR}")


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def _audio_view(mm, header) -> np.ndarray:
    """float32 [slot, channel, frame] over the segment's audio area."""
    shape = (header.slot_count, header.channels, header.slot_capacity_frames)
    return np.frombuffer(mm, dtype=np.float32, count=shape[0] * shape[1] * shape[2],
                         offset=header.audio_offset).reshape(shape)


@dataclass(frozen=True)
class SlotCopy:
    """A consistent copy of one READY slot (taken under the seqlock)."""
    index: int
    epoch: int
    flags: int
    start_sample: int
    frames: int
    bar_index: int
    start_beat: float
    length_beats: float
    tempo_bpm: float
    window_id: int
    grid: int
    audio: np.ndarray  # float32 [channels, frames]

    @property
    def end_sample(self) -> int:
        return self.start_sample + self.frames


class TimelineStore:
    """Engine side of one session's segment, the engine's Publisher (engine/publisher.py).
    Methods are [any-thread] but serialised by a lock; the worker thread publishes, the socket
    thread writes status."""

    def __init__(self, instance: int, channels: int, sample_rate: int,
                 slot_count: int = SLOT_COUNT, slot_seconds: float = SLOT_SECONDS):
        if not 0 < slot_count <= const("LD_SHM_MAX_SLOTS"):
            raise ValueError(f"slot_count {slot_count}; allowed: 1..{const('LD_SHM_MAX_SLOTS')}")
        self.slot_count = slot_count
        self.capacity = int(round(slot_seconds * sample_rate))
        audio_offset = _align(HEADER_SIZE, 4096)
        total = audio_offset + slot_count * channels * self.capacity * 4
        self.name, self._mm = _create(instance, total)
        self.path = SHM_DIR / self.name[1:]
        self._lock = threading.Lock()
        self._header = ffi.from_buffer("ld_shm_header *", self._mm.buffer)
        h = self._header
        h.layout_version = const("LD_SHM_LAYOUT_VERSION")
        h.header_bytes = HEADER_SIZE
        h.slot_count = slot_count
        h.slot_capacity_frames = self.capacity
        h.channels = channels
        h.sample_rate = sample_rate
        h.audio_offset = audio_offset
        h.total_bytes = total
        self._audio = _audio_view(self._mm.buffer, h)
        self._playhead = (0, 0)  # (epoch, sample): slots behind it may be reclaimed
        h.magic = const("LD_SHM_MAGIC")  # last: a reader checks magic before trusting the rest

    # [any-thread]
    def set_playhead(self, epoch: int, sample: int) -> None:
        self._playhead = (epoch, sample)

    def _reclaimable(self, slot) -> bool:
        epoch, sample = self._playhead
        if slot.state == const("LD_SLOT_EMPTY") or slot.epoch < epoch:
            return True
        return slot.epoch == epoch and slot.start_sample + slot.frames <= sample

    def _free_slots(self, needed: int) -> list[int]:
        """Empty slots first, then stale epochs, then audio the playhead has passed."""
        slots = self._header.slots
        count = self._header.slot_count
        empty = [i for i in range(count) if slots[i].state == const("LD_SLOT_EMPTY")]
        stale = [i for i in range(count) if i not in empty and self._reclaimable(slots[i])]
        stale.sort(key=lambda i: (slots[i].epoch, slots[i].start_sample))
        chosen = (empty + stale)[:needed]
        if len(chosen) < needed:
            raise StoreFull(f"{self.name}: {needed} slots needed, {len(chosen)} reclaimable")
        return chosen

    def _write(self, index: int, **fields) -> None:
        """Seqlock write of one slot: seq odd, fields (and audio), seq even."""
        slot = self._header.slots[index]
        audio = fields.pop("audio", None)
        slot.seq += 1
        for name, value in fields.items():
            setattr(slot, name, value)
        if audio is not None:
            self._audio[index, :, :audio.shape[1]] = audio
        slot.seq += 1

    # [any-thread]
    def publish(self, *, epoch: int, start_sample: int, bar_index: int, start_beat: float,
                tempo_bpm: float, kind: WindowKind, grid: int, audio: np.ndarray) -> int:
        """Publish one window as consecutive slots; older slots it covers are invalidated.
        Returns its window id. Raises StoreFull when no slot can be reclaimed."""
        flags = WINDOW_FLAGS[kind]
        frames = audio.shape[1]
        beats_per_frame = tempo_bpm / 60.0 / self._header.sample_rate
        chunks = range(0, frames, self.capacity)
        with self._lock:
            window_id = next(_window_ids)
            targets = self._free_slots(len(chunks))
            for index, offset in zip(targets, chunks):
                part = audio[:, offset:offset + self.capacity]
                self._write(index, state=const("LD_SLOT_READY"), epoch=epoch, flags=flags,
                            start_sample=start_sample + offset, frames=part.shape[1], bar_index=bar_index,
                            start_beat=start_beat + offset * beats_per_frame,
                            length_beats=part.shape[1] * beats_per_frame, tempo_bpm=tempo_bpm,
                            window_id=window_id, grid=grid & 0xFFFFFFFF, audio=part)
            self._invalidate_covered(epoch, start_sample, start_sample + frames, window_id)
        return window_id

    def _invalidate_covered(self, epoch: int, start: int, end: int, window_id: int) -> None:
        slots = self._header.slots
        for i in range(self._header.slot_count):
            s = slots[i]
            if (s.state == const("LD_SLOT_READY") and s.epoch == epoch and s.window_id < window_id
                    and start <= s.start_sample and s.start_sample + s.frames <= end):
                self._write(i, state=const("LD_SLOT_EMPTY"))

    # [any-thread]
    def acknowledge(self, window_id: int, grid: int) -> None:
        with self._lock:
            slots = self._header.slots
            for i in range(self._header.slot_count):
                if slots[i].state == const("LD_SLOT_READY") and slots[i].window_id == window_id:
                    self._write(i, grid=grid & 0xFFFFFFFF)

    # [any-thread]
    def invalidate(self, epoch: int, from_sample: int) -> int:
        """Drop the slots of `epoch` that end after from_sample (e.g. windows made for an old
        tempo). Returns how many were dropped."""
        dropped = 0
        with self._lock:
            slots = self._header.slots
            for i in range(self._header.slot_count):
                s = slots[i]
                if s.state == const("LD_SLOT_READY") and s.epoch == epoch and s.start_sample + s.frames > from_sample:
                    self._write(i, state=const("LD_SLOT_EMPTY"))
                    dropped += 1
        return dropped

    # [any-thread]
    def withdraw(self, window_id: int) -> int:
        """Drop the slots of one window (it was placed again elsewhere). Returns how many."""
        dropped = 0
        with self._lock:
            slots = self._header.slots
            for i in range(self._header.slot_count):
                if slots[i].state == const("LD_SLOT_READY") and slots[i].window_id == window_id:
                    self._write(i, state=const("LD_SLOT_EMPTY"))
                    dropped += 1
        return dropped

    # [any-thread]
    def set_status(self, code: int, text: str) -> None:
        """status_seq is odd while the text is written, even when it is whole."""
        data = text.encode("utf-8")[:const("LD_STATUS_TEXT_BYTES") - 1]
        with self._lock:
            h = self._header
            h.status_seq += 1
            h.status_code = code
            ffi.memmove(h.status_text, data + b"\0", len(data) + 1)
            h.status_seq += 1

    # [any-thread]
    def close(self) -> None:
        """Unmap and unlink. Idempotent."""
        with self._lock:
            if self._mm.closed:
                return
            del self._audio
            ffi.release(self._header)
            self._mm.close()
            self.path.unlink(missing_ok=True)


class TimelineReader:
    """Read side of a segment, as the shim does it: map, check magic and version, copy slots
    under the seqlock. [any-thread] (one reader object per thread)."""

    def __init__(self, name: str):
        self.path = SHM_DIR / name.lstrip("/")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            self._mm = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        self.header = ffi.from_buffer("ld_shm_header *", self._mm)
        if self.header.magic != const("LD_SHM_MAGIC") or self.header.layout_version != const("LD_SHM_LAYOUT_VERSION"):
            self.close()
            raise ValueError(f"{name}: not a livediff segment of layout {const('LD_SHM_LAYOUT_VERSION')}")
        self._audio = _audio_view(self._mm, self.header)

    def read_slot(self, index: int, timeout: float = 2.0) -> SlotCopy | None:
        """A consistent copy of slot `index`, or None if it is empty. Unlike the shim, which
        skips a busy slot, this waits for the writer (which may be descheduled mid-write)."""
        slot = self.header.slots[index]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seq = slot.seq
            if seq & 1:
                time.sleep(0)
                continue
            state = slot.state
            copy = SlotCopy(index=index, epoch=slot.epoch, flags=slot.flags, start_sample=slot.start_sample,
                            frames=slot.frames, bar_index=slot.bar_index, start_beat=slot.start_beat,
                            length_beats=slot.length_beats, tempo_bpm=slot.tempo_bpm, window_id=slot.window_id,
                            grid=slot.grid,
                            audio=self._audio[index, :, :min(slot.frames, self.header.slot_capacity_frames)].copy())
            if slot.seq == seq:
                return copy if state == const("LD_SLOT_READY") and copy.audio.shape[1] == copy.frames else None
        raise TimeoutError(f"slot {index} stayed busy for {timeout} s")

    def slots(self) -> list[SlotCopy]:
        found = (self.read_slot(i) for i in range(self.header.slot_count))
        return [s for s in found if s is not None]

    def render(self, epoch: int, start_sample: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Audio of [start_sample, start_sample + frames) in `epoch` and a bool mask of the
        frames some slot covered; where two slots overlap the larger window_id wins."""
        out = np.zeros((self.header.channels, frames), np.float32)
        covered = np.zeros(frames, bool)
        for s in sorted((s for s in self.slots() if s.epoch == epoch), key=lambda s: s.window_id):
            lo, hi = max(start_sample, s.start_sample), min(start_sample + frames, s.end_sample)
            if lo < hi:
                out[:, lo - start_sample:hi - start_sample] = s.audio[:, lo - s.start_sample:hi - s.start_sample]
                covered[lo - start_sample:hi - start_sample] = True
        return out, covered

    def covers(self, epoch: int, pos: int, frames: int) -> bool:
        """What the shim's audio thread checks: READY slots of `epoch` cover [pos, pos + frames)
        (slot headers only, under the seqlock; cheap enough to call once per block)."""
        slots, end = self.header.slots, pos + frames
        while pos < end:
            reach = None
            for i in range(self.header.slot_count):
                slot = slots[i]
                seq = slot.seq
                if seq & 1 or slot.state != const("LD_SLOT_READY") or slot.epoch != epoch:
                    continue
                if slot.start_sample <= pos < slot.start_sample + slot.frames and slot.seq == seq:
                    reach = max(reach or pos, slot.start_sample + slot.frames)
            if reach is None:
                return False
            pos = reach
        return True

    def status(self) -> tuple[int, str]:
        while True:
            seq = self.header.status_seq
            code, text = self.header.status_code, ffi.string(self.header.status_text).decode("utf-8", "replace")
            if not seq & 1 and self.header.status_seq == seq:
                return code, text

    def close(self) -> None:
        if self._mm.closed:
            return
        self.__dict__.pop("_audio", None)
        ffi.release(self.header)
        self._mm.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_segments() -> list[str]:
    """Unlink our segments whose engine process is gone (run at engine start)."""
    removed = []
    for path in SHM_DIR.glob("livediff-*"):
        match = _SEGMENT_NAME.match(path.name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        try:
            if path.stat().st_uid == os.getuid():
                path.unlink()
                removed.append("/" + path.name)
        except FileNotFoundError:
            pass
    return removed
