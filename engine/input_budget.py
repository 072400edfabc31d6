"""How much received input all sessions together may keep (each session's own bound is its
InputStore's: what `INPUT_KEEP_SECONDS` of contiguous input needs, engine/session.py).

Input is stored in fixed chunks by song position. Without a bound, sessions sending 1-frame
AUDIO messages at far-apart positions allocate a whole chunk for each (issue #9: garbage took
the engine from 85 MB to 2 GB). Past `total_bytes`, the store holding the most gives up its
chunk farthest from its latest write, so a hog pays before anyone else does.

[any-thread], under the scheduler's lock (the budget takes none).
"""
from __future__ import annotations

from typing import Protocol

DEFAULT_TOTAL_MB = 512         # `livediff serve --max-input-mb`: ~8 sessions of 180 s of 48 kHz stereo


class ChunkStore(Protocol):
    @property
    def nbytes(self) -> int: ...

    def drop_farthest(self) -> None: ...


class InputBudget:
    def __init__(self, total_bytes: int):
        if total_bytes < 1:
            raise ValueError(f"an input budget of {total_bytes} bytes; allowed: 1 or more")
        self.total = total_bytes
        self.used = 0
        self._stores: list[ChunkStore] = []

    @classmethod
    def megabytes(cls, mb: float) -> "InputBudget":
        return cls(int(mb * 2 ** 20))

    def add(self, store: ChunkStore) -> None:
        self._stores.append(store)
        self.used += store.nbytes

    def remove(self, store: ChunkStore) -> None:
        """The session closed: its chunks no longer count."""
        if store in self._stores:
            self._stores.remove(store)
            self.used -= store.nbytes

    def made(self, nbytes: int) -> None:
        """A store made a chunk: while over the total, the largest store drops one."""
        self.used += nbytes
        while self.used > self.total:
            max(self._stores, key=lambda s: s.nbytes).drop_farthest()

    def dropped(self, nbytes: int) -> None:
        self.used -= nbytes
