"""What a preset sets in the engine for a session's windows: sampler steps, the FX chain and
the output gain. The bridge hands one Sound to each session; the scheduler asks for
`steps` in each window request and runs each generated window through `process`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine import fx
from engine.validate import Number

STEPS = Number(1, 8, integer=True)
GAIN_DB = Number(-24.0, 12.0)
KEYS = ("steps", "gain_db", "fx")


@dataclass(frozen=True)
class Sound:
    steps: int | None = None                 # sampler steps; None: the generator's default
    gain_db: float = 0.0                     # applied after the FX chain
    fx: tuple[fx.Effect, ...] = ()

    def __str__(self) -> str:
        effects = " -> ".join(f"{e.plugin}({', '.join(f'{k}={v:g}' for k, v in e.params)})" for e in self.fx)
        return f"steps {self.steps or 'default'}, gain {self.gain_db:+g} dB, fx {effects or 'none'}"

    @property
    def neutral(self) -> bool:
        return not self.fx and self.gain_db == 0.0

    def process(self, audio: np.ndarray, sample_rate: float, warmup: np.ndarray | None = None,
                position: int | None = None) -> np.ndarray:
        """A generated window [channels, n] as the preset wants it heard (`fx.apply`)."""
        out = fx.apply(self.fx, audio, sample_rate, warmup, position)
        return out if self.gain_db == 0.0 else (out * np.float32(10 ** (self.gain_db / 20))).astype(np.float32)


def parse_sound(data: dict[str, Any], where: str) -> Sound:
    """The engine-side keys of a (key-checked) preset table."""
    return Sound(steps=STEPS.check(where, "steps", data["steps"]) if "steps" in data else None,
                 gain_db=GAIN_DB.check(where, "gain_db", data.get("gain_db", 0.0)),
                 fx=fx.parse_chain(data.get("fx", []), where))
