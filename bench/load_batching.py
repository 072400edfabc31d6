"""Does batching compatible windows into one generate_batch call help? Times, per window:
N separate generate() calls vs one generate_batch() of N requests (same tempo, meter, length:
compatible model inputs), for the loop generator and the built-in diffusion model, and for the
diffusion model's denoiser graph itself: one forward pass over a batch of N vs N passes of 1.

    .venv/bin/python bench/load_batching.py [--batch 4] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.generator import WindowRequest  # noqa: E402
from engine.loop_generator import LoopGenerator  # noqa: E402

RATE, TEMPO = 48000, 120.0


def requests(count: int) -> list[WindowRequest]:
    bar = round(4 * 60 / TEMPO * RATE)
    rng = np.random.default_rng(0)
    return [WindowRequest(context=rng.uniform(-0.3, 0.3, (2, 2 * bar)).astype(np.float32), sample_rate=RATE,
                          tempo_bpm=TEMPO, tsig_num=4, tsig_den=4, context_bars=2, bars=1, frames=bar,
                          tail_frames=1440, style=0, seed=seed, bar_index=4) for seed in range(count)]


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def compare(name: str, generator, batch: int, repeats: int) -> dict:
    work = requests(batch)
    generator.generate(work[0])                                   # warm up
    one_by_one = best_of(repeats, lambda: [generator.generate(r) for r in work])
    batched = best_of(repeats, lambda: generator.generate_batch(work))
    return {"what": f"{name} generator", "batch": batch, "ms_per_window_separate": round(1000 * one_by_one / batch, 2),
            "ms_per_window_batched": round(1000 * batched / batch, 2), "speedup": round(one_by_one / batched, 2)}


def denoiser(generator, batch: int, repeats: int) -> dict:
    """The diffusion model's denoiser step on batch N vs N steps on batch 1."""
    plan = generator._plan(requests(1)[0])
    backend = generator.backend
    single = [a[None] for a in (plan.context, plan.context_phase, plan.cond)]
    memory = backend.encode(*single)
    noisy = np.zeros((1, *plan.prior.shape), np.float32)
    inputs1 = (noisy, plan.prior[None], plan.phase[None], np.full(1, 0.5, np.float32), memory, plan.cond[None])
    inputsn = tuple(np.repeat(a, batch, axis=0) for a in inputs1)
    one_by_one = best_of(repeats, lambda: [backend.denoise(*inputs1) for _ in range(batch)])
    batched = best_of(repeats, lambda: backend.denoise(*inputsn))
    return {"what": f"diffusion denoiser step ({type(backend).__name__})", "batch": batch,
            "ms_per_window_separate": round(1000 * one_by_one / batch, 2),
            "ms_per_window_batched": round(1000 * batched / batch, 2), "speedup": round(one_by_one / batched, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(compare("loop", LoopGenerator(), args.batch, args.repeats)))
    try:
        from engine.diffusion import load_builtin
        model = load_builtin()
    except Exception as exc:  # the benchmark reports what it can
        print(json.dumps({"what": "diffusion generator", "skipped": f"{type(exc).__name__}: {exc}"}))
        return
    print(json.dumps(compare("diffusion", model, args.batch, args.repeats)))
    print(json.dumps(denoiser(model, args.batch, args.repeats)))


if __name__ == "__main__":
    main()
