"""Long-run behaviour of the built-in model (engine/long_eval.py): 64-bar free-running rollouts
and the live-input test on held-out songs of every style, tempos 76-172 BPM, meters 4/4, 3/4,
7/8, 6/8, 5/4, 12/8, 44.1 kHz stereo.

    .venv/bin/python bench/model_rollout.py [--weights-dir DIR] [--no-anchor] [--change-gate X] [--seed S]
                                            [--songs 8] [--out FILE]

Prints one row per song and 8-bar block, then the summary against the targets of issue #10.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from engine import long_eval
from engine.diffusion import load_builtin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--no-anchor", action="store_true", help="without engine/anchoring.py (today's pipeline)")
    parser.add_argument("--change-gate", type=float, default=None,
                        help="SamplingOptions.change_gate (0: off; default the shipped value)")
    parser.add_argument("--seed", type=int, default=0, help="free-running song i plays with noise seed SEED + i")
    parser.add_argument("--songs", type=int, default=8)
    parser.add_argument("--bars", type=int, default=64)
    parser.add_argument("--live-songs", type=int, default=None, help="songs for the live-input test (default --songs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sampled", action="store_true",
                        help="the songs played by General MIDI instruments (fluidsynth + fluid-soundfont-gm)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    generator = load_builtin(args.backend, args.weights_dir, threads=args.threads)
    generator.options = replace(generator.options, anchor=not args.no_anchor)
    if args.change_gate is not None:
        generator.options = replace(generator.options, change_gate=args.change_gate)
    free = long_eval.free_running(generator, long_eval.heldout_songs(args.songs, long_eval.INTRO_BARS + args.bars,
                                                                     args.sampled), args.bars, args.seed)
    live = long_eval.live_input(generator, long_eval.heldout_songs(args.live_songs or args.songs, 16, args.sampled))
    print("| song | meter | BPM | bars | loudness vs intro | on grid (song's own) | peak | rolloff ratio (song's own) | "
          "spectral distance (song's own) | width vs intro | contrast vs intro |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for i, row in enumerate(free):
        for b in row["blocks"]:
            print(f"| {i} | {row['meter']} | {row['tempo']:g} | {b['bars'][0]}-{b['bars'][1]} | "
                  f"{b['loudness_vs_intro_db']:+.1f} dB | {100 * b['on_grid']:.0f} % ({100 * b['truth']['on_grid']:.0f} %) | "
                  f"{b['peak_dbfs']:.2f} dBFS | {b['rolloff_ratio']:.2f} ({b['truth']['rolloff_ratio']:.2f}) | "
                  f"{b['spectral_distance_db']:.1f} dB ({b['truth']['spectral_distance_db']:.1f} dB) | "
                  f"{b['width_vs_intro_db']:+.1f} dB | {b['contrast_vs_intro_db']:+.1f} dB |")
    result = {"weights_dir": str(args.weights_dir), "anchor": not args.no_anchor, "sampled": args.sampled,
              "change_gate": generator.options.change_gate, "seed": args.seed,
              "free_running": free, "live": live,
              "summary": long_eval.summary(free, live)}
    print(json.dumps(result["summary"], indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
