"""What the engine hears from a plugin session, as engine types: one transport snapshot per
message and blocks of input. bridge/ converts wire messages into these; the engine never sees
the wire format."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TransportSnapshot:
    """The host's transport at the first frame of a block, as the shim reported it."""
    epoch: int                  # bumped by the shim on every discontinuity, by exactly one per loop wrap
    playing: bool
    tempo: float                # BPM (may be garbage: the timeline checks it)
    pos_samples: int            # song position in samples
    pos_beats: float            # song position in quarter notes
    bar_start_beats: float      # the host's claim of where the running bar began
    tsig_num: int
    tsig_den: int
    loop: tuple[float, float] | None = None   # an announced, active loop (start, end) in beats
    tempo_valid: bool = True
    tsig_valid: bool = True
    offline: bool = False
    underruns: int = 0          # cumulative, as counted by the shim
    grid: int = 0               # the shim's grid sequence: bumped whenever epoch, tempo, meter or loop changes
    sync_switch: bool = False   # this epoch began because the plugin's sync_mode moved the position, not the host


@dataclass(frozen=True)
class InputBlock:
    """Audio the track played: `input` float32 [channels, n] from song sample `pos_samples` on."""
    epoch: int
    pos_samples: int
    input: np.ndarray
    sidechain: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return self.input.shape[1]
