"""The sao_small generator at Stable Audio Open Small's published size (random weights: speed and
memory do not depend on their values), one 1-bar window at 120 BPM for a 48 kHz stereo host,
8 ping-pong steps, with 2 and 8 bars of context (8 bars = 16 s, capped at the model's 9.7 s).

    nice -n 19 .venv/bin/python bench/sao_speed.py [--work /tmp/sao-full] [--repeats 3] [--torch]

Exports the ONNX graphs once into --work (about 2 GB), then runs each case in a fresh ONNX
Runtime process on 2 threads (no torch imported there) and reports the median seconds per window,
the split into encode / DiT steps / decode, the real-time factor (window length / time) and the
process's peak RSS. --torch adds the same for eager torch.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))      # tests/sao_fixtures.py holds the published config
PROBE = r"""
import json, sys, time
import numpy as np
from engine.sao import load_generator
from tests.sao_fixtures import request
backend, directory, context_bars, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
generator = load_generator(directory, backend=backend, threads=2)
spent = {"encode": 0.0, "velocity": 0.0, "decode": 0.0}
for name in ("encode", "decode", "velocity"):
    method = getattr(generator.backend, name)
    def timed(*args, _method=method, _name=name):
        started = time.perf_counter()
        out = _method(*args)
        spent[_name] += time.perf_counter() - started
        return out
    setattr(generator.backend, name, timed)
req = request(48000, 120.0, bars=1, context_bars=context_bars)
times, parts = [], []
for i in range(repeats + 1):                   # the first run warms up
    for key in spent:
        spent[key] = 0.0
    started = time.perf_counter()
    generator.generate(req)
    if i:
        times.append(time.perf_counter() - started)
        parts.append(dict(spent))
# VmHWM, not ru_maxrss: the latter keeps the parent's peak (the export) across exec
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
print(json.dumps({"backend": backend, "context_bars": context_bars, "seconds": times,
                  "parts": {k: float(np.median([p[k] for p in parts])) for k in spent},
                  "window_seconds": req.frames / req.sample_rate, "torch_imported": "torch" in sys.modules,
                  "peak_rss_mb": peak}))
"""


def prepare(work: Path) -> None:
    import torch

    from engine.sao.config import parse_config
    from engine.sao.export import export
    from engine.sao.model import SaoModel
    from engine.sao.weights import save
    from tests.sao_fixtures import sao_small_config
    if (work / "onnx" / "velocity.onnx").is_file():
        return
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = sao_small_config()
    (work / "model_config.json").write_text(json.dumps(config))
    model = SaoModel(parse_config(config)).eval()
    save(model, work / "model.safetensors")
    started = time.perf_counter()
    export(model, work / "onnx", work / "model_config.json")
    print(f"exported in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sao-full"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch", action="store_true", help="also time eager torch")
    args = parser.parse_args()
    prepare(args.work)
    for backend in ["onnx"] + (["torch"] if args.torch else []):
        for context_bars in (2, 8):
            result = subprocess.run([sys.executable, "-c", PROBE, backend, str(args.work), str(context_bars),
                                     str(args.repeats)], cwd=REPO, capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.splitlines()[-1])
            median = sorted(row["seconds"])[len(row["seconds"]) // 2]
            row.update(median_seconds=median, real_time_factor=row["window_seconds"] / median)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
