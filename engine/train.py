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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine import representation as rep
from engine import samplers
from engine.backends import WEIGHTS_DIR, WEIGHTS_FILE
from engine.model import LiveDiffusion, ModelConfig, load_weights, save_weights
from engine.music import draw_song, random_song
from engine.sampled import sampled_song
from engine.styles import load_styles

HELP = "Train the built-in diffusion model (or fine-tune it on a folder of loops with --data)."
SONG_BARS = 12                      # up to 8 context bars + up to 2 rolled-out bars + up to 2 target bars
TAIL_TOKENS = 2                     # target tokens past the last bar (the seam crossfade tail)
ROLLOUT_SHARE = 0.5                 # batches whose last context bars are the model's own output
MAX_ROLLOUT_BARS = 2
GAP_SHARE = 0.25                    # examples whose prior is the bar before the last (the track leads)
SMEAR_SHARE = 0.3                   # examples whose own-output bars are smeared/noised like a decode
PROBE_POOL = 2**20                  # pool index of the fixed loss-probe songs (never a training pool)
AUDIO_SUFFIXES = (".wav", ".flac", ".aiff", ".aif", ".mp3", ".ogg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoint/output directory")
    parser.add_argument("--steps", type=int, default=None,
                        help="total optimizer steps (default 15000; 300 with --quick or --data: a few minutes)")
    parser.add_argument("--quick", action="store_true", help="a few minutes: small song pool, 300 steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--pool-songs", type=int, default=None, help="songs per generated pool (default 600, 150 with --quick)")
    parser.add_argument("--pool-steps", type=int, default=1500, help="steps before a fresh song pool is generated")
    parser.add_argument("--keep-every", type=int, default=0, help="also keep livediff-stepN.npz every N steps")
    parser.add_argument("--sampled-share", type=float, default=0.0,
                        help="share of procedural songs played by General MIDI instruments instead of the "
                             "synthesiser (needs fluidsynth and fluid-soundfont-gm; 0.25 measured in docs/model-card.md)")
    parser.add_argument("--context-dropout", type=float, default=0.1, help="share of examples trained without context")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out")
    parser.add_argument("--data", type=Path, help="fine-tune on the audio loops in this folder")
    parser.add_argument("--init", default=None, help="'builtin' or a weights .npz to start from")
    parser.add_argument("--style", type=int, default=0, help="style id given to --data loops")


# --- data --------------------------------------------------------------------------------

class Clip:
    """One song's tokens and what the model is told about it. The audio is kept so that a
    context can be cut exactly where the engine's is: the engine never hears past the bar line."""

    def __init__(self, audio: np.ndarray, tempo: float, tsig: tuple[int, int], style: int, bars: int):
        n_tokens = bars * rep.sixteenths_per_bar(*tsig) + TAIL_TOKENS
        self.audio = audio.astype(np.float16)
        self.tokens = rep.encode(audio, tempo, 0.0, n_tokens).astype(np.float16)
        self.tempo, self.tsig, self.style, self.bars = tempo, tsig, style, bars

    def context(self, start_token: int, n_tokens: int) -> np.ndarray:
        """Tokens [start_token - n_tokens, start_token) as heard up to the bar line: the last
        token is re-encoded from audio that stops there (its last frame would see the next bar)."""
        tokens = self.tokens[start_token - n_tokens: start_token].astype(np.float32)
        sixteenth = rep.sixteenth_samples(self.tempo)
        heard = self.audio[: int(round(start_token * sixteenth))].astype(np.float32)
        tokens[-1] = rep.encode(heard, self.tempo, (start_token - 1) * sixteenth, 1)[0]
        return tokens


def song_pool(seed: int, pool_index: int, n_songs: int, sampled_share: float = 0.0) -> list[Clip]:
    """Procedural songs; a `sampled_share` of them played by General MIDI instruments
    (engine/sampled.py) instead of the synthesiser - the same kinds of notes, other timbres."""
    styles = load_styles()
    clips = []
    for i in tqdm(range(n_songs), desc=f"songs (pool {pool_index})", leave=False):
        song_seed = int(np.random.SeedSequence([seed, pool_index, i]).generate_state(1)[0])
        if np.random.default_rng([song_seed, 11]).random() < sampled_share:
            style, tempo, tsig, notes_seed = draw_song(styles, song_seed)
            stereo = sampled_song(style, tempo, tsig, SONG_BARS, notes_seed, rep.SAMPLE_RATE,
                                  tail_sixteenths=TAIL_TOKENS)
            song = replace(stereo, audio=stereo.audio.mean(axis=0))    # the network hears the mid
        else:
            song = random_song(styles, song_seed, SONG_BARS, tail_sixteenths=TAIL_TOKENS)
        clips.append(Clip(song.audio, song.tempo_bpm, song.tsig, song.style, SONG_BARS))
    return clips


def tempo_from_name(name: str) -> float | None:
    match = re.search(r"(\d+(?:\.\d+)?)\s*bpm", name, re.IGNORECASE)
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class Loop:
    path: Path
    source: np.ndarray      # [1, frames] mono at the file's rate: exactly `bars` bars
    tempo: float
    bars: int
    sample_rate: int        # the file's

    def played(self, repeats: int) -> np.ndarray:
        """Model-rate mono of the loop played `repeats` times (tiled in file frames: no drift)."""
        return rep.resample(np.tile(self.source, (1, repeats)), self.sample_rate, rep.SAMPLE_RATE)[0]


def audio_files(folder: Path) -> list[Path]:
    """The audio files in `folder` and all its subfolders, in a stable order."""
    if not folder.is_dir():
        raise SystemExit(f"--data {folder} is not a folder; give a folder of loops ({', '.join(AUDIO_SUFFIXES)})")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def read_loop(path: Path) -> Loop:
    """A 4/4 loop that starts on a bar line and lasts whole bars. Its length is counted in the
    file's own frames: the tempo from '..._120bpm...' in the name (the bar count rounded when
    the file is within 2 % of whole bars), else the whole-bar tempo nearest an estimate."""
    from pedalboard.io import AudioFile

    with AudioFile(str(path)) as f:
        audio = f.read(f.frames)
        rate = int(round(f.samplerate))
    frames = audio.shape[1]
    seconds = frames / rate
    named = tempo_from_name(path.name)
    if named:
        tempo = named
        while tempo > rep.TEMPO_MAX:
            tempo /= 2
        exact = seconds / (4 * 60.0 / tempo)
        bars = int(round(exact)) if abs(exact - round(exact)) <= 0.02 * max(1.0, exact) else int(exact)
        if bars < 1:
            raise ValueError(f"shorter than one 4/4 bar at {tempo:.1f} BPM ({seconds:.2f} s)")
        frames = int(round(bars * 4 * 60.0 / tempo * rate))
    else:
        mono = rep.resample(audio.mean(axis=0, keepdims=True), rate, rep.SAMPLE_RATE)[0]
        estimate = rep.estimate_tempo(mono)
        bars = max(1, int(round(seconds / (4 * 60.0 / estimate))))
        tempo = bars * 4 * 60.0 / seconds          # the loop is whole bars: the tempo follows
        while tempo > rep.TEMPO_MAX and bars > 1 and bars % 2 == 0:
            bars, tempo = bars // 2, tempo / 2
        if not rep.TEMPO_MIN <= tempo <= rep.TEMPO_MAX:
            raise ValueError(f"{seconds:.2f} s is no whole number of 4/4 bars at {rep.TEMPO_MIN:g}-{rep.TEMPO_MAX:g} BPM")
    one_pass = audio.mean(axis=0, keepdims=True)[:, :frames]
    return Loop(path, np.pad(one_pass, ((0, 0), (0, frames - one_pass.shape[1]))), tempo, bars, rate)


def loop_clips(folder: Path, style: int) -> list[Clip]:
    """4/4 loops (any sample rate, any subfolder) that start on a bar line, each repeated to a song."""
    clips = []
    for path in audio_files(folder):
        try:
            loop = read_loop(path)
            clips.append(Clip(loop.played(math.ceil((SONG_BARS + 1) / loop.bars)), loop.tempo, (4, 4), style, SONG_BARS))
            print(f"using {path.relative_to(folder)}: {loop.tempo:.2f} BPM, {loop.bars} bar(s) at {loop.sample_rate} Hz")
        except Exception as err:  # one bad file must not end the run
            print(f"skipping {path.relative_to(folder)}: {err}")
    if not clips:
        raise SystemExit(f"no usable loops in {folder}: need audio files ({', '.join(AUDIO_SUFFIXES)}) of at least one bar")
    return clips


def make_batch(clips: list[Clip], rng: np.random.Generator, batch_size: int, context_dropout: float,
               rollout: bool = True) -> dict[str, torch.Tensor]:
    """Examples of one meter, one context length (1..8 bars), one rollout length and one target
    length, so they stack without padding. `long_context` holds the context plus the bars a
    rollout will replace with the model's own output (see self_forced); `first_bar` is where
    each example's target starts."""
    tsig = clips[int(rng.integers(len(clips)))].tsig
    same_meter = [c for c in clips if c.tsig == tsig]
    bar_len = rep.sixteenths_per_bar(*tsig)
    song_bars = min(c.bars for c in same_meter)
    target_bars = int(rng.integers(1, 3))
    rolled = int(rng.integers(1, MAX_ROLLOUT_BARS + 1)) if rollout and rng.random() < ROLLOUT_SHARE else 0
    most = min(rep.context_bars_for(tsig, rep.MAX_CONTEXT_BARS), song_bars - target_bars - rolled)
    context_bars = int(rng.choice([2, int(rng.integers(1, most + 1))])) if most >= 2 else 1
    n_long, n_target = (context_bars + rolled) * bar_len, target_bars * bar_len + TAIL_TOKENS
    fields: dict[str, list] = {k: [] for k in ("long_context", "cond", "target", "first_bar", "gap", "dropped")}
    for _ in range(batch_size):
        clip = same_meter[int(rng.integers(len(same_meter)))]
        first_bar = int(rng.integers(context_bars + rolled, clip.bars - target_bars + 1))
        start = first_bar * bar_len
        roll = rng.random()
        dropped = 2 if roll < context_dropout else 1 if roll < 2 * context_dropout else 0  # all / all but the last bar
        for key, value in (("long_context", clip.context(start, n_long)), ("first_bar", first_bar),
                           ("gap", int(context_bars > 1 and rng.random() < GAP_SHARE)), ("dropped", dropped),
                           ("cond", rep.condition_vector(clip.style, clip.tempo, tsig)),
                           ("target", clip.tokens[start: start + n_target].astype(np.float32))):
            fields[key].append(value)
    batch = {k: torch.from_numpy(np.stack(v)) for k, v in fields.items()}
    batch["shape"] = torch.tensor([tsig[0], tsig[1], context_bars, rolled])
    return batch


def _phases(first_bars: torch.Tensor, tsig: tuple[int, int], n_context: int, n_target: int) -> tuple[torch.Tensor, ...]:
    """(context phase, target phase) for each example's window start."""
    pairs = [rep.phase_features(-n_context, n_context, tsig, int(b)) for b in first_bars], \
            [rep.phase_features(0, n_target, tsig, int(b)) for b in first_bars]
    return tuple(torch.from_numpy(np.stack(p)) for p in pairs)


def _smear(tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """What a Griffin-Lim decode and re-encode does to tokens, roughly: frames blurred over time, a
    little noise. Applied to the model's own bars in a rollout, so it learns to sharpen them back."""
    frames = tokens.flatten(1, 2)
    blurred = (torch.roll(frames, 1, 1) + 2 * frames + torch.roll(frames, -1, 1)) / 4
    mix = torch.rand(tokens.shape[0], 1, 1, generator=generator)
    noisy = (1 - mix) * frames + mix * blurred + 0.1 * torch.rand(tokens.shape[0], 1, 1, generator=generator) * \
        torch.randn(frames.shape, generator=generator)
    return noisy.unflatten(1, tokens.shape[1:3])


def self_forced(model: LiveDiffusion, batch: dict[str, torch.Tensor], generator: torch.Generator,
                sampling_steps: int = 1) -> dict[str, torch.Tensor]:
    """The model inputs of a batch. With a rollout, the model first plays the `rolled` bars before
    the target itself, one window at a time, each from its own previous output (no gradient); the
    loss is then taken on the true continuation of that rollout (self-forcing against error
    build-up). Own bars may be smeared like a decode; contexts may be dropped; the prior may be
    the bar before the last (the engine's prior when the live input leads)."""
    num, den, context_bars, rolled = (int(v) for v in batch["shape"])
    tsig, bar_len = (num, den), rep.sixteenths_per_bar(num, den)
    n_context = context_bars * bar_len
    long = batch["long_context"].clone()
    first = batch["first_bar"]
    for j in range(rolled, 0, -1):  # the bar first - j, from the context just before it
        lo = (rolled - j) * bar_len
        context = long[:, lo: lo + n_context]
        context_phase, phase = _phases(first - j, tsig, n_context, bar_len)
        prior = context[:, -bar_len:]
        with torch.no_grad():
            memory = model.encode(context, context_phase, batch["cond"])

            def denoise(x: torch.Tensor, t: float) -> torch.Tensor:
                return model.denoise(x, prior, phase, torch.full((x.shape[0],), t), memory, batch["cond"])
            own = samplers.euler(denoise, torch.randn(prior.shape, generator=generator),
                                 samplers.noise_levels(sampling_steps))
        smeared = torch.rand(own.shape[0], generator=generator) < SMEAR_SHARE
        own = torch.where(smeared[:, None, None, None], _smear(own, generator), own)
        long[:, lo + n_context: lo + n_context + bar_len] = own
    context = long[:, -n_context:].clone()
    dropped = batch["dropped"]
    context[dropped == 2] = rep.SILENCE
    context[:, :-bar_len][dropped == 1] = rep.SILENCE
    n_target = batch["target"].shape[1]
    context_phase, phase = _phases(first, tsig, n_context, n_target)
    gap = batch["gap"].bool() & (dropped == 0)
    last = context[:, -bar_len:]
    before = context[:, -2 * bar_len: -bar_len] if context_bars > 1 else last
    prior_bar = torch.where(gap[:, None, None, None], before, last)
    prior = prior_bar[:, torch.arange(n_target) % bar_len]
    return {"context": context, "context_phase": context_phase, "cond": batch["cond"], "target": batch["target"],
            "prior": prior, "phase": phase}


def noise_levels(n: int, generator: torch.Generator) -> torch.Tensor:
    pick = torch.rand(n, generator=generator)
    logit_normal = torch.sigmoid(torch.randn(n, generator=generator))
    uniform = torch.rand(n, generator=generator)
    return torch.where(pick < 0.4, logit_normal, torch.where(pick < 0.9, uniform, torch.ones(n)))


def diffusion_loss(model: LiveDiffusion, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """x0-prediction on the straight noise path. Noise levels: 40 % logit-normal, 50 % uniform,
    10 % exactly 1 - few-step sampling starts at t = 1, so pure noise must be trained often."""
    batch = self_forced(model, batch, generator)
    x0 = batch["target"]
    t = noise_levels(x0.shape[0], generator)
    noise = torch.randn(x0.shape, generator=generator)
    tt = t[:, None, None, None]
    memory = model.encode(batch["context"], batch["context_phase"], batch["cond"])
    predicted = model.denoise(samplers.noised(x0, noise, tt), batch["prior"], batch["phase"], t, memory, batch["cond"])
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


def default_steps(args: argparse.Namespace) -> int:
    """15 000 for the built-in model; 300 (a few minutes on 2 cores) for --quick and for --data fine-tuning."""
    return args.steps or (300 if args.quick or args.data else 15000)


def train(args: argparse.Namespace) -> dict:
    if not 0.0 <= args.sampled_share <= 1.0:
        raise SystemExit(f"--sampled-share {args.sampled_share} is not a share; allowed: 0 to 1")
    torch.set_num_threads(args.threads)
    steps = default_steps(args)
    pool_songs = args.pool_songs or (150 if args.quick else 600)
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
                             args.batch_size, 0.0, rollout=False)
    probe_loss_start = probe_loss(model, probe_batch, args.seed)
    bar = tqdm(total=steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    started = time.monotonic() - elapsed
    while step < steps:
        if user_clips is None and step // args.pool_steps != pool_index:
            pool_index = step // args.pool_steps
            clips = song_pool(args.seed, pool_index, pool_songs, args.sampled_share)
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
            if args.keep_every and step % args.keep_every == 0:
                save_weights(model, args.out / f"livediff-step{step}.npz")
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
