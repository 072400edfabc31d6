"""Built-in model speed: one bar at 120 BPM (48 kHz stereo host), ONNX Runtime on 2 threads,
at 1, 2, 4 and 8 sampling steps; and the peak RSS of an ORT-only inference process.

    .venv/bin/python bench/model_speed.py [--repeats 15]

Prints medians (whole window, and the model's share: context encoder + denoiser calls) and
the real-time factor (bar length / median time). Quality at each step count: `livediff eval`.
"""
from __future__ import annotations

import engine  # noqa: F401, I001 - first: it sets numpy's BLAS threads before numpy loads
import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from engine.diffusion import DiffusionGenerator, SamplingOptions, load_builtin
from engine.evaluate import window_request
from engine.music import render_song
from engine.styles import load_styles

REPO = Path(__file__).resolve().parent.parent
RSS_PROBE = """
import resource, sys
from engine.diffusion import DiffusionGenerator, SamplingOptions, load_builtin
from bench.model_speed import one_bar_request
generator = load_builtin("onnx")
request = one_bar_request()
for seed in range(5):
    generator.generate(request)
assert "torch" not in sys.modules, "the ORT path imported torch"
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def one_bar_request():
    """The bar after a 4-bar phrase of a held-out house song at 120 BPM, for a 48 kHz stereo host,
    as the engine asks for it free-running (the track silent since, its memory that phrase, the
    window on the phrase's first bar): the costliest path, with the memory's tokens, the re-seed
    and every anchor."""
    song = render_song(load_styles()[0], 120.0, (4, 4), 4, 5_000_000)
    phrase = window_request(song.audio, song, bars=1, seed=0, first_bar=4, sample_rate=48000).context
    request = window_request(song.audio[len(song.audio) // 2:], song, bars=1, seed=0, first_bar=4, sample_rate=48000)
    return replace(request, input_context=np.zeros_like(request.context), track_memory=phrase,
                   track_memory_bars=(0, 1, 2, 3))


def timings(fn, repeats: int) -> tuple[float, float]:
    """(median, minimum) wall-clock seconds; the minimum shows the cost without other load."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times)), float(np.min(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--decoder-iterations", type=int, nargs="+", default=[SamplingOptions.decoder_iterations],
                        help="Griffin-Lim iteration counts to measure")
    args = parser.parse_args()
    load = os.getloadavg()
    base = load_builtin("onnx", threads=2)
    request = one_bar_request()
    bar_seconds = request.frames / request.sample_rate
    rows = []
    for iterations in args.decoder_iterations:
        for steps in (1, 2, 4, 8):
            generator = DiffusionGenerator(base.backend, replace(base.options, steps=steps, decoder_iterations=iterations))
            plan = generator._plan(request)
            total, fastest = timings(lambda: generator.generate(request), args.repeats)
            model, _ = timings(lambda: generator._sample(plan, 0, steps), args.repeats)
            rows.append({"steps": steps, "decoder_iterations": iterations, "window_ms": 1000 * total,
                         "window_min_ms": 1000 * fastest, "model_ms": 1000 * model,
                         "realtime_factor": bar_seconds / total})
    rss_kb = int(subprocess.run([sys.executable, "-c", RSS_PROBE], check=True, capture_output=True, text=True,
                                cwd=REPO).stdout.split()[-1])
    print(f"load average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    print("| steps | Griffin-Lim iterations | window: median (min) | model: median | real-time factor (median) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['steps']} | {r['decoder_iterations']} | {r['window_ms']:.1f} ms ({r['window_min_ms']:.1f} ms) "
              f"| {r['model_ms']:.1f} ms | {r['realtime_factor']:.1f}x |")
    print(f"peak RSS of an ORT-only inference process: {rss_kb / 1024:.0f} MB")
    print(json.dumps({"bar_seconds": bar_seconds, "defaults": asdict(base.options), "rows": rows,
                      "peak_rss_mb": rss_kb / 1024}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
