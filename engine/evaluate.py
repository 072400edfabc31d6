"""`livediff eval`: measure the built-in model on held-out procedural songs -> JSON + PNG.

Songs come from seeds >= HELDOUT_SEED (training draws its seeds from a hash of
(seed, pool, index), so these are never trained on). Every window goes through the same
path as in the engine (DiffusionGenerator.generate at a 44.1 kHz host rate).

  beat alignment   share of output onsets within +-20 ms of the host 16th-note grid
  tempo accuracy   BPM estimated on a 3-window rollout, within 1 % (double/half allowed)
  context use      log-mel distance to the true continuation, right context / shuffled context
                   (another song, same tempo and meter); baselines: repeat last context bar,
                   an unrelated song, and the decoder alone on the true bar
  seams            sample jumps and spectral flux at window boundaries vs inside windows
  sanity           NaN/inf, silent windows, peak
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from engine import representation as rep
from engine.diffusion import DiffusionGenerator, SamplingOptions, load_builtin
from engine.generator import WindowRequest
from engine.music import Song, random_song, render_song
from engine.dsp import SEAM_SECONDS, crossfade
from engine.styles import load_styles

HELP = "Evaluate the built-in model on held-out generated music; writes JSON and a PNG."
HELDOUT_SEED = 900_000
HOST_RATE = 44100
CONTEXT_BARS = rep.CONTEXT_BARS
GRID_TOLERANCE_S = 0.020
ONSET_HOP = 80                  # samples per onset-envelope frame (representation.onset_envelope)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--weights-dir", type=Path, default=None, help="folder with livediff.npz / the .onnx graphs")
    parser.add_argument("--examples", type=int, default=32, help="held-out songs")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8], help="sampling step counts to measure")
    parser.add_argument("--guidance", type=float, default=SamplingOptions.guidance)
    parser.add_argument("--decoder-iterations", type=int, default=SamplingOptions.decoder_iterations,
                        help="Griffin-Lim iterations")
    parser.add_argument("--out", type=Path, default=Path("runs/eval"), help="folder for eval.json and eval.png")
    parser.add_argument("--data", type=Path, default=None,
                        help="evaluate on your own loops (a folder, subfolders too) instead: prints a table")
    parser.add_argument("--style", type=int, default=0, help="style id given to --data loops")
    parser.add_argument("--no-anchor", action="store_true",
                        help="without the level/spectrum/stereo anchors of engine/anchoring.py (for comparison)")


def window_request(context: np.ndarray, song: Song, bars: int, seed: int, first_bar: int,
                   sample_rate: int = HOST_RATE, context_bars: int = CONTEXT_BARS) -> WindowRequest:
    """The engine's request for the window after `context` (model-rate mono audio of `song`
    ending on bar line `first_bar`), at a stereo host of `sample_rate`."""
    bar_seconds = rep.sixteenths_per_bar(*song.tsig) * 15.0 / song.tempo_bpm
    host = rep.resample(context[None], rep.SAMPLE_RATE, sample_rate)
    return WindowRequest(context=np.repeat(host, 2, axis=0), sample_rate=sample_rate, tempo_bpm=song.tempo_bpm,
                         tsig_num=song.tsig[0], tsig_den=song.tsig[1], context_bars=context_bars, bars=bars,
                         frames=int(round(bars * bar_seconds * sample_rate)),
                         tail_frames=round(SEAM_SECONDS * sample_rate), style=song.style,
                         seed=seed, bar_index=first_bar)


def _model_rate(window: np.ndarray) -> np.ndarray:
    return rep.resample(window[:1], HOST_RATE, rep.SAMPLE_RATE)[0]


def _bar_samples(song: Song) -> int:
    return int(round(rep.sixteenths_per_bar(*song.tsig) * rep.sixteenth_samples(song.tempo_bpm)))


def mel_distance(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.abs(rep.log_mel(a[:n]) - rep.log_mel(b[:n])).mean())


def grid_alignment(audio: np.ndarray, tempo_bpm: float) -> tuple[int, int]:
    """(onsets within tolerance of the 16th grid, onsets) for model-rate audio starting on a bar line."""
    onsets = rep.onset_times(audio)
    sixteenth = 15.0 / tempo_bpm
    off = np.abs(onsets - np.round(onsets / sixteenth) * sixteenth)
    return int((off <= GRID_TOLERANCE_S).sum()), len(onsets)


def tempo_error(estimated: float, tempo_bpm: float) -> float:
    """Relative error, allowing the estimate to be double or half the tempo."""
    return min(abs(estimated * f - tempo_bpm) / tempo_bpm for f in (0.5, 1.0, 2.0))


def heldout_songs(n: int, bars: int) -> list[Song]:
    styles = load_styles()
    return [random_song(styles, HELDOUT_SEED + i, bars) for i in range(n)]


def context_use(generator: DiffusionGenerator, songs: list[Song]) -> dict:
    """Distances of one generated bar to the true continuation, right vs shuffled context."""
    styles = load_styles()
    rows = {"right": [], "shuffled": [], "repeat_last_bar": [], "unrelated_song": [], "decoder_only": []}
    hits = total = 0
    for i, song in enumerate(songs):
        bar = _bar_samples(song)
        context, truth = song.audio[: CONTEXT_BARS * bar], song.audio[CONTEXT_BARS * bar: (CONTEXT_BARS + 1) * bar]
        other = render_song(styles[(song.style + 1 + i) % len(styles)], song.tempo_bpm, song.tsig, CONTEXT_BARS + 1,
                            HELDOUT_SEED + 10_000 + i)
        for key, ctx in (("right", context), ("shuffled", other.audio[: CONTEXT_BARS * bar])):
            window = _model_rate(generator.generate(window_request(ctx, song, 1, i, CONTEXT_BARS)))[:bar]
            rows[key].append(mel_distance(window, truth))
            if key == "right":
                h, t = grid_alignment(window, song.tempo_bpm)
                hits, total = hits + h, total + t
        rows["repeat_last_bar"].append(mel_distance(context[-bar:], truth))
        rows["unrelated_song"].append(mel_distance(other.audio[CONTEXT_BARS * bar:], truth))
        # the decoder alone on the true bar, started as the engine starts it (context audio and phases)
        n_tokens = rep.sixteenths_per_bar(*song.tsig)
        tokens = rep.encode(song.audio, song.tempo_bpm, CONTEXT_BARS * bar, n_tokens)
        last_bar_phase = np.angle(rep.spectra(context, song.tempo_bpm, len(context) - bar, n_tokens))
        decoded = rep.decode(tokens, song.tempo_bpm, bar, i, generator.options.decoder_iterations,
                             prefix=context, phase=last_bar_phase)
        rows["decoder_only"].append(mel_distance(decoded, truth))
    means = {k: float(np.mean(v)) for k, v in rows.items()}
    wins = float(np.mean(np.array(rows["right"]) < np.array(rows["shuffled"])))
    return {"mel_distance": means, "ratio_right_over_shuffled": means["right"] / means["shuffled"],
            "right_beats_shuffled_share": wins, "beat_alignment": hits / max(1, total), "onsets": total}


def stitch(windows: list[np.ndarray], frames: int, fade: bool) -> np.ndarray:
    """Consecutive host-rate windows played back to back; with `fade`, each window's head
    fades in over the previous window's tail exactly as the engine's scheduler does it."""
    played = []
    for k, window in enumerate(windows):
        body = window[:1, :frames]
        if fade and k > 0:
            body = crossfade(windows[k - 1][:1, frames:], body)
        played.append(body[0])
    return np.concatenate(played)


def seam_ratios(played: np.ndarray, bar: float, windows: int, bars: int) -> tuple[list, list, list, list]:
    """Sample jumps and spectral flux at window boundaries and at bar lines inside windows."""
    bar_lines = np.arange(1, windows * bars)
    is_edge = bar_lines % bars == 0
    positions = np.round(bar_lines * bar).astype(np.int64)
    jumps = np.abs(played[positions] - played[positions - 1])
    model_rate = rep.resample(played[None], HOST_RATE, rep.SAMPLE_RATE)[0]
    flux = rep.onset_envelope(model_rate)[positions * rep.SAMPLE_RATE // HOST_RATE // ONSET_HOP]
    return list(jumps[is_edge]), list(jumps[~is_edge]), list(flux[is_edge]), list(flux[~is_edge])


def rollout(generator: DiffusionGenerator, songs: list[Song], windows: int = 3, bars: int = 2) -> dict:
    """Each window continues the previous ones (context = last 2 bars heard or generated)."""
    tempo_errors = []
    seams = {"raw": [[], [], [], []], "crossfaded": [[], [], [], []]}
    silent = nonfinite = 0
    peak = 0.0
    hits = total = 0
    for i, song in enumerate(songs):
        bar = _bar_samples(song)
        heard = song.audio[: CONTEXT_BARS * bar]
        outputs = []
        for w in range(windows):
            request = window_request(heard[-CONTEXT_BARS * bar:], song, bars, 1000 * i + w, CONTEXT_BARS + w * bars)
            out = generator.generate(request)
            nonfinite += int(not np.isfinite(out).all())
            peak = max(peak, float(np.abs(out).max()))
            piece = _model_rate(out[:, : request.frames])[: bars * bar]
            silent += int(np.sqrt(np.mean(piece ** 2)) < 1e-3)
            outputs.append(out)
            heard = np.concatenate([heard, piece])
        generated = heard[CONTEXT_BARS * bar:]
        h, t = grid_alignment(generated, song.tempo_bpm)
        hits, total = hits + h, total + t
        tempo_errors.append(tempo_error(rep.estimate_tempo(generated), song.tempo_bpm))
        host_bar = request.frames / bars
        for key in seams:
            for acc, values in zip(seams[key], seam_ratios(stitch(outputs, request.frames, key == "crossfaded"),
                                                           host_bar, windows, bars)):
                acc.extend(values)
    ratio = lambda edge, inner: float(np.mean(edge) / max(1e-9, np.mean(inner)))  # noqa: E731
    return {"tempo_within_1pct": float(np.mean(np.array(tempo_errors) <= 0.01)),
            "tempo_error_median": float(np.median(tempo_errors)),
            "beat_alignment": hits / max(1, total), "onsets": total,
            "seams_boundary_over_inner_barline": {
                key: {"sample_jump": ratio(v[0], v[1]), "spectral_flux": ratio(v[2], v[3])} for key, v in seams.items()},
            "windows": len(songs) * windows, "nonfinite_windows": nonfinite, "silent_windows": silent, "peak": peak}


def ground_truth_checks(songs: list[Song]) -> dict:
    """The detectors on the real songs: the ceiling the model is measured against."""
    hits = total = 0
    errors = []
    for song in songs:
        h, t = grid_alignment(song.audio, song.tempo_bpm)
        hits, total = hits + h, total + t
        errors.append(tempo_error(rep.estimate_tempo(song.audio), song.tempo_bpm))
    return {"beat_alignment": hits / max(1, total), "tempo_within_1pct": float(np.mean(np.array(errors) <= 0.01))}


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["steps"] for r in results["by_steps"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(steps, [r["context"]["beat_alignment"] for r in results["by_steps"]], "o-", label="generated")
    axes[0].axhline(results["ground_truth"]["beat_alignment"], color="gray", ls="--", label="true music")
    axes[0].axhline(0.95, color="red", ls=":", label="target")
    axes[0].set(title="onsets within ±20 ms of the 16th grid", xlabel="sampling steps", ylim=(0, 1.02))
    axes[0].legend()
    for key in ("right", "shuffled"):
        axes[1].plot(steps, [r["context"]["mel_distance"][key] for r in results["by_steps"]], "o-", label=f"{key} context")
    baselines = results["by_steps"][0]["context"]["mel_distance"]
    for key, style in (("repeat_last_bar", ":"), ("decoder_only", "--"), ("unrelated_song", "-.")):
        axes[1].axhline(baselines[key], color="gray", ls=style, label=key.replace("_", " "))
    axes[1].set(title="log-mel distance to the true continuation", xlabel="sampling steps")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [str(s) for s in steps])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def evaluate(backend: str, weights_dir: Path | None, examples: int, step_counts: list[int], guidance: float,
             decoder_iterations: int, anchor: bool = True) -> dict:
    base = load_builtin(backend, weights_dir, SamplingOptions(guidance=guidance, decoder_iterations=decoder_iterations,
                                                              anchor=anchor))
    songs = heldout_songs(examples, CONTEXT_BARS + 1)
    results = {"backend": base.backend.name, "examples": examples, "host_rate": HOST_RATE,
               "ground_truth": ground_truth_checks(songs), "by_steps": []}
    for steps in step_counts:
        generator = DiffusionGenerator(base.backend, replace(base.options, steps=steps))
        results["by_steps"].append({"steps": steps, "context": context_use(generator, songs)})
        print(json.dumps(results["by_steps"][-1]))
    results["options"] = asdict(base.options)
    results["rollout"] = rollout(base, heldout_songs(max(4, examples // 2), CONTEXT_BARS))
    return results


def loop_rows(generator: DiffusionGenerator, folder: Path, style: int) -> list[dict]:
    """Per loop: the model's next bar after 2 bars of the loop, against the loop's true next bar."""
    from engine.train import audio_files, read_loop

    loops = []
    for path in audio_files(folder):
        try:
            loops.append(read_loop(path))
        except Exception as err:  # an unreadable file is reported, not fatal
            print(f"skipping {path.relative_to(folder)}: {err}")
    rows = []
    for i, loop in enumerate(loops):
        song = Song(loop.played(2 + math.ceil(3 / loop.bars)), loop.tempo, (4, 4), 3, style)
        bar = _bar_samples(song)
        context, truth = song.audio[: CONTEXT_BARS * bar], song.audio[CONTEXT_BARS * bar: (CONTEXT_BARS + 1) * bar]
        window = _model_rate(generator.generate(window_request(context, song, 1, i, CONTEXT_BARS)))[:bar]
        hits, onsets = grid_alignment(window, loop.tempo)
        row = {"loop": str(loop.path.relative_to(folder)), "tempo": loop.tempo, "bars": loop.bars,
               "sample_rate": loop.sample_rate, "distance": mel_distance(window, truth),
               "repeat_last_bar": mel_distance(context[-bar:], truth), "on_grid": hits / max(1, onsets), "shuffled": None}
        other = loops[(i + 1) % len(loops)]
        if len(loops) > 1:
            other_song = Song(other.played(2 + math.ceil(3 / other.bars)), loop.tempo, (4, 4), 3, style)
            shuffled = _model_rate(generator.generate(window_request(other_song.audio[: CONTEXT_BARS * _bar_samples(
                other_song)], song, 1, i, CONTEXT_BARS)))[:bar]
            row["shuffled"] = mel_distance(shuffled, truth)
        rows.append(row)
    return rows


def print_loop_table(rows: list[dict]) -> None:
    print("log-mel distance of the generated bar to the loop's true next bar (lower is better); 2 bars of context")
    print(f"{'loop':<40} {'BPM':>7} {'bars':>4} {'Hz':>6} {'model':>6} {'repeat':>6} {'other':>6} {'on grid':>7}")
    for r in rows:
        shuffled = f"{r['shuffled']:6.3f}" if r["shuffled"] is not None else f"{'-':>6}"
        print(f"{r['loop'][:40]:<40} {r['tempo']:7.2f} {r['bars']:4d} {r['sample_rate']:6d} {r['distance']:6.3f} "
              f"{r['repeat_last_bar']:6.3f} {shuffled} {100 * r['on_grid']:6.0f}%")
    if rows:
        print(f"{'mean':<40} {'':>7} {'':>4} {'':>6} {np.mean([r['distance'] for r in rows]):6.3f} "
              f"{np.mean([r['repeat_last_bar'] for r in rows]):6.3f}")
    print("model: the generated bar; repeat: the last context bar played again; other: the model given another "
          "loop's context (the model should be clearly closer than this)")


def run(args: argparse.Namespace) -> int:
    if args.data:
        generator = load_builtin(args.backend, args.weights_dir, SamplingOptions(
            guidance=args.guidance, decoder_iterations=args.decoder_iterations, anchor=not args.no_anchor))
        rows = loop_rows(generator, args.data, args.style)
        print_loop_table(rows)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "eval-loops.json").write_text(json.dumps(rows, indent=2))
        return 0 if rows else 1
    results = evaluate(args.backend, args.weights_dir, args.examples, args.steps, args.guidance, args.decoder_iterations,
                       not args.no_anchor)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "eval.png")
    print(json.dumps({"rollout": results["rollout"], "ground_truth": results["ground_truth"]}, indent=2))
    print(f"wrote {args.out / 'eval.json'} and {args.out / 'eval.png'}")
    return 0
