"""Share of generated onsets on the host's 16th grid after tempo and meter changes, in the
scripted hosts that do what Ardour's export does (tests/host/daw.py: 1024-frame blocks after a
768-frame pre-roll, positions in 1/1920-beat ticks), from the first full bar after the change.

    .venv/bin/python bench/tempo_grid.py [--generator loop|diffusion] [--format clap|vst3]
        [--repo DIR --plugin FILE]     # another checkout's engine and plugin (e.g. before a change)

Offline renders (the shim waits for every window), the cases of tests/test_tempo_hosts.py; the
loop generator hears the drum track, the diffusion model a procedural song that follows the map.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridge.client import engine_answers  # noqa: E402
from bridge.layout import const  # noqa: E402
from tests.host import daw  # noqa: E402
from tests.host.clap_host import ClapHost  # noqa: E402
from tests.test_scripted_host import connect  # noqa: E402
from tests.test_tempo_hosts import CASES, RATE, clap_transport, script  # noqa: E402


def render(session, blocks, audio, generator: int, plugin: str | None, fmt: str):
    import numpy as np
    out = []
    if fmt == "vst3":
        from tests.host.vst3_host import Vst3Host
        with Vst3Host(sample_rate=RATE, max_frames=1024, offline=True, aux="off",
                      params={"generator": generator, "seed": 7}) as host:
            for pos, frames in blocks:
                block = audio[:, max(0, pos):max(0, pos) + frames] if pos >= 0 else np.zeros((2, frames), np.float32)
                out.append(host.process(block, clap_transport(session, pos), frames=frames))
    else:
        with ClapHost(path=plugin, sample_rate=RATE, max_frames=1024, offline=True) as host:
            if plugin is None:
                connect(host, seed=7)
            else:   # another checkout's stats struct may differ: give it time to connect instead
                host.set_param("seed", 7)
                for _ in range(400):
                    host.process(None, None, frames=1024)
                    time.sleep(0.005)
            host.set_param("generator", generator)
            for pos, frames in blocks:
                block = audio[:, max(0, pos):max(0, pos) + frames] if pos >= 0 else np.zeros((2, frames), np.float32)
                out.append(host.process(block, clap_transport(session, pos), frames=frames))
    return np.concatenate(out, axis=1)[:, blocks[0][1]:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="loop", choices=("loop", "diffusion"))
    parser.add_argument("--format", default="clap", choices=("clap", "vst3"))
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose engine serves (default: this one)")
    parser.add_argument("--plugin", help="CLAP plugin to load (default: this checkout's build)")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="ld-bench-", dir="/tmp")
    endpoint = f"ipc://{directory}/engine.sock"
    os.environ["LIVEDIFF_ENDPOINT"] = endpoint
    cli = "bridge.cli" if (args.repo / "bridge" / "cli.py").exists() else "engine.cli"
    engine = subprocess.Popen([sys.executable, "-m", cli, "serve", "--endpoint", endpoint, "--log-level", "WARNING"],
                              cwd=args.repo, env={**os.environ, "PYTHONPATH": str(args.repo)})
    try:
        while not engine_answers(endpoint, 0.2):
            if engine.poll() is not None:
                raise SystemExit("the engine did not start")
        print(f"| case | input | on grid (±20 ms) | onsets |\n|---|---|---|---|")
        for name, (session, change) in CASES.items():
            for stops in ((False, True) if args.generator == "loop" else (False,)):
                blocks, audio, judged, end = script(session, change, stops)
                if args.generator == "diffusion":
                    audio = daw.song(session, blocks[-1][0] + 2048)
                out = render(session, blocks, audio, const(f"LD_GENERATOR_{args.generator.upper()}"), args.plugin,
                             args.format)
                share, onsets = daw.on_grid_share(out, session, judged, end)
                print(f"| {name} | {'stops at the change' if stops else 'plays on'} | {share:.1%} | {onsets} |",
                      flush=True)
    finally:
        engine.terminate()
        engine.wait()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
