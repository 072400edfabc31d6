"""`livediff train`: train the built-in model on procedural music, or fine-tune it on your loops.

Reproducible from --seed: the song pools, the batches and the noise are all functions of
(seed, step), so a resumed run sees exactly what an uninterrupted one would have seen.
Checkpoints (atomic) go to OUT/checkpoint.pt; the run resumes from it when present.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine import representation as rep
from engine.backends import WEIGHTS_DIR, WEIGHTS_FILE
from engine.model import LiveDiffusion, ModelConfig, load_weights, save_weights
from engine.music import random_song
from engine.styles import load_styles

HELP = "Train the built-in diffusion model (or fine-tune it on a folder of loops with --data)."
SONG_BARS = 5                       # context + up to 2 target bars + room to shift the crop
TAIL_TOKENS = 2                     # target tokens past the last bar (the seam crossfade tail)
PROBE_POOL = 2**20                  # pool index of the fixed loss-probe songs (never a training pool)
AUDIO_SUFFIXES = (".wav", ".flac", ".aiff", ".aif", ".mp3", ".ogg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoint/output directory")
    parser.add_argument("--steps", type=int, default=None, help="total optimizer steps (default 15000, 300 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a few minutes: small song pool, 300 steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--pool-songs", type=int, default=None, help="songs per generated pool (default 1500, 150 with --quick)")
    parser.add_argument("--pool-steps", type=int, default=3000, help="steps before a fresh song pool is generated")
    parser.add_argument("--context-dropout", type=float, default=0.1, help="share of examples trained without context")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out")
    parser.add_argument("--data", type=Path, help="fine-tune on the audio loops in this folder")
    parser.add_argument("--init", default=None, help="'builtin' or a weights .npz to start from")
    parser.add_argument("--style", type=int, default=0, help="style id given to --data loops")


# --- data --------------------------------------------------------------------------------

class Clip:
    """One song's tokens and what the model is told about it. The audio is kept so that a
    context can be cut exactly where the engine's is: the engine never hears past the bar line."""

    def __init__(self, audio: np.ndarray, tempo: float, tsig: tuple[int, int], style: int, n_tokens: int):
        self.audio = audio.astype(np.float16)
        self.tokens = rep.encode(audio, tempo, 0.0, n_tokens).astype(np.float16)
        self.tempo, self.tsig, self.style = tempo, tsig, style

    def context(self, start_token: int, n_tokens: int) -> np.ndarray:
        """Tokens [start_token - n_tokens, start_token) as heard up to the bar line: the last
        token is re-encoded from audio that stops there (its last frame would see the next bar)."""
        tokens = self.tokens[start_token - n_tokens: start_token].astype(np.float32)
        sixteenth = rep.sixteenth_samples(self.tempo)
        heard = self.audio[: int(round(start_token * sixteenth))].astype(np.float32)
        tokens[-1] = rep.encode(heard, self.tempo, (start_token - 1) * sixteenth, 1)[0]
        return tokens


def song_pool(seed: int, pool_index: int, n_songs: int) -> list[Clip]:
    styles = load_styles()
    clips = []
    for i in tqdm(range(n_songs), desc=f"songs (pool {pool_index})", leave=False):
        song = random_song(styles, int(np.random.SeedSequence([seed, pool_index, i]).generate_state(1)[0]),
                           SONG_BARS, tail_sixteenths=TAIL_TOKENS)
        n_tokens = SONG_BARS * rep.sixteenths_per_bar(*song.tsig) + TAIL_TOKENS
        clips.append(Clip(song.audio, song.tempo_bpm, song.tsig, song.style, n_tokens))
    return clips


def tempo_from_name(name: str) -> float | None:
    match = re.search(r"(\d+(?:\.\d+)?)\s*bpm", name, re.IGNORECASE)
    return float(match.group(1)) if match else None


def loop_clips(folder: Path, style: int) -> list[Clip]:
    """4/4 loops that start on a bar line; tempo from '..._120bpm...' in the name, else estimated."""
    from pedalboard.io import AudioFile

    if not folder.is_dir():
        raise SystemExit(f"--data {folder} is not a folder; give a folder of loops ({', '.join(AUDIO_SUFFIXES)})")
    clips = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        try:
            with AudioFile(str(path)) as f:
                audio = f.read(f.frames)
                rate = f.samplerate
            mono = rep.resample(audio.mean(axis=0, keepdims=True), rate, rep.SAMPLE_RATE)[0]
            tempo = tempo_from_name(path.name) or rep.estimate_tempo(mono)
            while tempo < rep.TEMPO_MIN:
                tempo *= 2
            while tempo > rep.TEMPO_MAX:
                tempo /= 2
            bar = 16 * rep.sixteenth_samples(tempo)
            bars = int(len(mono) // round(bar))
            if bars < 1:
                raise ValueError(f"shorter than one 4/4 bar at {tempo:.1f} BPM ({len(mono) / rep.SAMPLE_RATE:.2f} s)")
            loop = mono[: int(round(bars * bar))]
            tiled = np.tile(loop, math.ceil(SONG_BARS / bars) + 1)
            clips.append(Clip(tiled, tempo, (4, 4), style, SONG_BARS * 16 + TAIL_TOKENS))
            print(f"using {path.name}: {tempo:.2f} BPM, {bars} bar(s)")
        except Exception as err:  # one bad file must not end the run
            print(f"skipping {path.name}: {err}")
    if not clips:
        raise SystemExit(f"no usable loops in {folder}: need audio files ({', '.join(AUDIO_SUFFIXES)}) of at least one bar")
    return clips


def make_batch(clips: list[Clip], rng: np.random.Generator, batch_size: int, context_dropout: float) -> dict[str, torch.Tensor]:
    """Examples of one meter and one target length, so they stack without padding."""
    tsig = clips[int(rng.integers(len(clips)))].tsig
    same_meter = [c for c in clips if c.tsig == tsig]
    bar_len = rep.sixteenths_per_bar(*tsig)
    target_bars = int(rng.integers(1, 3))
    n_context, n_target = rep.CONTEXT_BARS * bar_len, target_bars * bar_len + TAIL_TOKENS
    fields: dict[str, list] = {k: [] for k in ("context", "context_phase", "cond", "target", "prior", "phase")}
    for _ in range(batch_size):
        clip = same_meter[int(rng.integers(len(same_meter)))]
        first_bar = int(rng.integers(rep.CONTEXT_BARS, SONG_BARS - target_bars + 1))
        start = first_bar * bar_len
        context = clip.context(start, n_context)
        roll = rng.random()
        if roll < context_dropout:
            context = np.full_like(context, rep.SILENCE)
        elif roll < 2 * context_dropout:  # a song that just started: only the last bar was heard
            context[:-bar_len] = rep.SILENCE
        context_phase, prior, phase = rep.outpainting_inputs(context, tsig, first_bar, n_target)
        for key, value in (("context", context), ("context_phase", context_phase), ("prior", prior), ("phase", phase),
                           ("cond", rep.condition_vector(clip.style, clip.tempo, tsig)),
                           ("target", clip.tokens[start: start + n_target].astype(np.float32))):
            fields[key].append(value)
    return {k: torch.from_numpy(np.stack(v)) for k, v in fields.items()}


def noise_levels(n: int, generator: torch.Generator) -> torch.Tensor:
    pick = torch.rand(n, generator=generator)
    logit_normal = torch.sigmoid(torch.randn(n, generator=generator))
    uniform = torch.rand(n, generator=generator)
    return torch.where(pick < 0.4, logit_normal, torch.where(pick < 0.9, uniform, torch.ones(n)))


def diffusion_loss(model: LiveDiffusion, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """x0-prediction on the straight noise path. Noise levels: 40 % logit-normal, 50 % uniform,
    10 % exactly 1 - few-step sampling starts at t = 1, so pure noise must be trained often."""
    x0 = batch["target"]
    t = noise_levels(x0.shape[0], generator)
    noise = torch.randn(x0.shape, generator=generator)
    tt = t[:, None, None, None]
    memory = model.encode(batch["context"], batch["context_phase"], batch["cond"])
    predicted = model.denoise((1 - tt) * x0 + tt * noise, batch["prior"], batch["phase"], t, memory, batch["cond"])
    return ((predicted - x0) ** 2).mean()


def probe_loss(model: LiveDiffusion, batch: dict[str, torch.Tensor], seed: int) -> float:
    """The loss on one fixed batch with fixed noise: comparable before and after training."""
    with torch.no_grad():
        return float(diffusion_loss(model, batch, torch.Generator().manual_seed(seed)))


# --- loop ----------------------------------------------------------------------------------

def learning_rate(step: int, total: int, peak: float) -> float:
    warmup = min(200, total // 10 + 1)
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def save_checkpoint(path: Path, model: LiveDiffusion, optimizer: torch.optim.Optimizer, step: int,
                    elapsed_s: float, args_json: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "elapsed_s": elapsed_s, "config": json.dumps(asdict(model.cfg)), "args": args_json}, tmp)
    tmp.replace(path)


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    steps = args.steps or (300 if args.quick else 15000)
    pool_songs = args.pool_songs or (150 if args.quick else 1500)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint_path, log_path = args.out / "checkpoint.pt", args.out / "log.jsonl"
    torch.manual_seed(args.seed)
    if args.init:
        model = load_weights(WEIGHTS_DIR / WEIGHTS_FILE if args.init == "builtin" else Path(args.init)).train()
    else:
        model = LiveDiffusion(ModelConfig())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    step, elapsed = 0, 0.0
    args_json = json.dumps({k: str(v) for k, v in sorted(vars(args).items())})
    if checkpoint_path.exists() and not args.fresh:
        state = torch.load(checkpoint_path, weights_only=True)
        model = LiveDiffusion(ModelConfig(**json.loads(state["config"])))
        model.load_state_dict(state["model"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = int(state["step"]), float(state["elapsed_s"])
        print(f"resuming from {checkpoint_path} at step {step} ({elapsed / 60:.1f} min trained so far)")
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; training to step {steps}")

    user_clips = loop_clips(args.data, args.style) if args.data else None
    pool_index, clips = -1, []
    losses = []
    last_loss = None
    probe_batch = make_batch(user_clips or song_pool(args.seed, PROBE_POOL, 8), np.random.default_rng([args.seed, 2**32]),
                             args.batch_size, 0.0)
    probe_loss_start = probe_loss(model, probe_batch, args.seed)
    bar = tqdm(total=steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    started = time.monotonic() - elapsed
    while step < steps:
        if user_clips is None and step // args.pool_steps != pool_index:
            pool_index = step // args.pool_steps
            clips = song_pool(args.seed, pool_index, pool_songs)
        rng = np.random.default_rng([args.seed, step])
        batch = make_batch(user_clips or clips, rng, args.batch_size, args.context_dropout)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, args.lr)
        loss = diffusion_loss(model, batch, torch.Generator().manual_seed(args.seed * 1_000_003 + step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if step % args.checkpoint_every == 0 or step == steps:
            last_loss = float(np.mean(losses[-args.checkpoint_every:]))
            elapsed = time.monotonic() - started
            save_checkpoint(checkpoint_path, model, optimizer, step, elapsed, args_json)
            save_weights(model, args.out / WEIGHTS_FILE)
            with log_path.open("a") as log:
                log.write(json.dumps({"step": step, "loss": last_loss, "elapsed_s": round(elapsed, 1)}) + "\n")
    bar.close()
    return {"steps": step, "last_loss": last_loss, "probe_loss_start": probe_loss_start,
            "probe_loss_end": probe_loss(model, probe_batch, args.seed),
            "elapsed_s": time.monotonic() - started, "weights": str(args.out / WEIGHTS_FILE)}


def run(args: argparse.Namespace) -> int:
    if args.data and args.init is None:
        args.init = "builtin"
    summary = train(args)
    print(json.dumps(summary))
    return 0
