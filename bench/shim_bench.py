"""Shim benchmarks (docs/benchmarks.md, section "Shim"). Run: .venv/bin/python bench/shim_bench.py

1. process() per 64- and 512-frame stereo block at 48 kHz, realtime, engine connected and
   windows flowing: tests/c/rt_probe.c --bench (the realtime-safety harness, here with the
   audio thread at SCHED_FIFO as DAWs run it) times each call.
2. publish -> visible through shared memory: Python TimelineStore.publish() writes a slot,
   bench/shm_visible.c (the shim's reader, plugin_shim/timeline.c) spins until it sees it.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bridge.shm import TimelineStore  # noqa: E402
from engine.publisher import WindowKind  # noqa: E402
from tests.host.build import BUILD_DIR, built_plugin  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from load_instances import spawn_engine, stop_engine  # noqa: E402

OUT = BUILD_DIR / "bench"


def compile_tools() -> dict[str, Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    shim = REPO / "plugin_shim"
    probe, visible = OUT / "rt_probe", OUT / "shm_visible"
    subprocess.run(["cc", "-std=c11", "-O2", f"-I{shim}", "-rdynamic", str(REPO / "tests/c/rt_probe.c"),
                    "-o", str(probe), "-ldl", "-lpthread", "-lm"], check=True)
    subprocess.run(["cc", "-std=c11", "-O2", "-D_GNU_SOURCE", f"-I{shim}", str(REPO / "bench/shm_visible.c"),
                    str(shim / "timeline.c"), "-o", str(visible)], check=True)
    return {"probe": probe, "visible": visible}


def process_cost(probe: Path, frames: int, blocks: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ld-bench-", dir="/tmp") as directory:
        process, endpoint = spawn_engine(Path(directory) / "windows.jsonl")
        try:
            env = dict(os.environ, LIVEDIFF_ENDPOINT=endpoint)
            out = subprocess.run([str(probe), str(built_plugin()["CLAP"]), "--rate", "48000", "--tempo", "300",
                                  "--frames", str(frames), "--blocks", str(blocks), "--bench"],
                                 capture_output=True, text=True, env=env, check=True).stdout
        finally:
            stop_engine(process)
    return {k: float(v) for k, v in (line.split() for line in out.splitlines())}


def publish_to_visible(visible: Path, count: int = 2000) -> tuple[list[float], list[float]]:
    store = TimelineStore(instance=0xBE4C4, channels=2, sample_rate=48000)
    try:
        reader = subprocess.Popen([str(visible), store.name, str(count)], stdout=subprocess.PIPE, text=True)
        assert reader.stdout.readline().strip() == "ready"
        audio = np.zeros((2, 512), np.float32)
        publish_us, visible_us = [], []
        for epoch in range(1, count + 1):
            store.set_playhead(epoch, 0)             # older epochs are reclaimable
            started = time.monotonic()
            store.publish(epoch=epoch, start_sample=0, bar_index=0, start_beat=started, tempo_bpm=120.0,
                          kind=WindowKind.GENERATED, grid=0, audio=audio)
            publish_us.append((time.monotonic() - started) * 1e6)
            visible_us.append(float(reader.stdout.readline()))   # lock-step: the slot stays until seen
        reader.wait(10)
        return visible_us, publish_us
    finally:
        store.close()


def quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


def main() -> None:
    built_plugin()
    tools = compile_tools()
    for frames, blocks in ((64, 10000), (512, 2000)):
        r = process_cost(tools["probe"], frames, blocks)
        print(f"process() {frames:>3}-frame stereo block, 48 kHz, engine connected: median {r['median_us']:.2f} us, "
              f"p99 {r['p99_us']:.2f} us, p99.9 {r['p999_us']:.2f} us, max {r['max_us']:.1f} us "
              f"({int(r['blocks'])} blocks, {int(r['generated_blocks'])} with generated audio, "
              f"underruns {int(r['underruns'])}, allocations/locks/syscalls "
              f"{int(r['allocations'])}/{int(r['locks'])}/{int(r['syscalls'])})")
    visible, publish = publish_to_visible(tools["visible"])
    print(f"publish -> visible through shm (512-frame stereo slot, {len(visible)} windows): "
          f"p50 {quantile(visible, 0.5):.1f} us, p99 {quantile(visible, 0.99):.1f} us, max {max(visible):.1f} us; "
          f"publish() call itself p50 {statistics.median(publish):.1f} us")


if __name__ == "__main__":
    main()
