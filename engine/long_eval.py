"""Long-run measurements of a generator, window by window as the engine makes them.

The scheduler's context rule, simulated for 1-bar windows (lookahead 2): window k is made
from input bars up to k - 2 and the generator's own bar k - 1 (`context`), plus the live input
alone (`input_context`, its last bar k - 2, gap 1). Songs are held-out procedural songs of
every style, at several tempos and meters, rendered in stereo at 44.1 kHz.

  free-running   4 bars of the song, then silence at the input for 64 bars: per 8-bar block,
                 loudness against the song's 4 bars, onsets on the 16th grid, peak, 85 %
                 rolloff, stereo width and rhythmic contrast against the song's
  live input     16 bars: the whole song playing vs silence after bar 4; log-mel distance of
                 generated bars 9-16 to the true bars
"""
from __future__ import annotations

import numpy as np

from engine import representation as rep
from engine.context import MEMORY_BARS, input_bars, memory_bars
from engine.anchoring import sounds
from engine.dsp import PEAK_CEILING, SEAM_SECONDS, crossfade, limit
from engine.evaluate import grid_alignment, mel_distance
from engine.generator import WindowRequest
from engine.music import Song, render_song
from engine.styles import load_styles

HOST_RATE = 44100
SEED = 950_000                      # held-out: training draws its song seeds from a 32-bit hash
CONTEXT_BARS = 2
INTRO_BARS = 4
BLOCK_BARS = 8
TAIL_FRAMES = round(SEAM_SECONDS * HOST_RATE)
SONGS = ((124.0, (4, 4)), (92.0, (4, 4)), (172.0, (4, 4)), (76.0, (3, 4)), (132.0, (7, 8)), (108.0, (6, 8)),
         (100.0, (5, 4)), (96.0, (12, 8)))

def heldout_songs(n: int, bars: int, sampled: bool = False) -> list[Song]:
    """Held-out songs, synthesised - or with `sampled`, the same notes played by General MIDI
    instruments (engine/sampled.py: timbres the model never heard)."""
    styles = load_styles()
    if sampled:
        from engine.sampled import sampled_song
        return [sampled_song(styles[i % len(styles)], *SONGS[i % len(SONGS)], bars, SEED + i, HOST_RATE)
                for i in range(n)]
    return [render_song(styles[i % len(styles)], *SONGS[i % len(SONGS)], bars, SEED + i, tail_sixteenths=0,
                        sample_rate=HOST_RATE, stereo=True) for i in range(n)]


def bar_lines(song: Song, n: int, first: int = 0) -> np.ndarray:
    """Host-rate sample positions of bar lines first .. n (negative bars lie before the song)."""
    bar = rep.sixteenths_per_bar(*song.tsig) * 15.0 / song.tempo_bpm * HOST_RATE
    return np.round(np.arange(first, n + 1) * bar).astype(np.int64)


def bars_of(song: Song, audio: np.ndarray, first: int, last: int) -> np.ndarray:
    """Bars [first, last) of `audio` (which starts at bar 0); silence before it."""
    lo, hi = bar_lines(song, last, first)[[0, -1]]
    part = audio[:, max(0, lo):max(0, hi)]
    return np.pad(part, ((0, 0), (hi - lo - part.shape[1], 0)))


def play(generator, song: Song, input_audio: np.ndarray, bars: int, context_bars: int = CONTEXT_BARS,
         seed: int = 0) -> np.ndarray:
    """[2, n] what the engine plays: input for the first 2 bars (no window can be ready before),
    then window k (1 bar) from the scheduler's context rule, each window's tail crossfaded into
    the next window's head by the level-keeping seam crossfade (engine.dsp.crossfade) and
    limited to -0.1 dBFS, as engine.placement publishes it; the track as it last sounded is the
    window's `track_memory` (engine.context.track_memory). The
    context hears each window as generated, not the seam (engine.context.generated_bar)."""
    lines = bar_lines(song, bars)
    played = np.zeros((2, lines[-1]), np.float32)
    played[:, :lines[2]] = input_audio[:, :lines[2]]
    generated = played.copy()
    tail = None
    for k in range(2, bars):
        own = bars_of(song, generated if k >= 3 else input_audio, k - 1, k)
        context = np.concatenate([bars_of(song, input_audio, k - context_bars, k - 1), own], axis=1)
        sounding = [b for b in range(max(0, k - 1 - MEMORY_BARS), k - 1)
                    if sounds(bars_of(song, input_audio, b, b + 1))][-memory_bars(context_bars):]
        memory = np.concatenate([bars_of(song, input_audio, b, b + 1) for b in sounding], axis=1) if sounding else None
        request = WindowRequest(context=context, sample_rate=HOST_RATE, tempo_bpm=song.tempo_bpm, tsig_num=song.tsig[0],
                                tsig_den=song.tsig[1], context_bars=context_bars, bars=1,
                                frames=int(lines[k + 1] - lines[k]), tail_frames=TAIL_FRAMES, style=song.style,
                                seed=seed * 100_003 + k, bar_index=k,
                                input_context=bars_of(song, input_audio, k - 1 - input_bars(context_bars), k - 1),
                                input_gap_bars=1,
                                track_memory=memory, track_memory_bars=tuple(sounding) or None)
        out = generator.generate(request)
        generated[:, lines[k]:lines[k + 1]] = out[:, :request.frames]
        played[:, lines[k]:lines[k + 1]] = limit(out[:, :request.frames] if tail is None else crossfade(
            tail, out[:, :request.frames]), PEAK_CEILING)      # as engine.placement publishes it
        tail = out[:, request.frames:]
    return played


def loudness_db(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(audio.astype(np.float64) ** 2) + 1e-12))


def rolloff_hz(audio: np.ndarray, share: float = 0.85) -> float:
    """Frequency below which `share` of the mid's spectral energy lies (mean power spectrum)."""
    mid = audio.mean(axis=0)
    frames = mid[: len(mid) // 2048 * 2048].reshape(-1, 2048) * np.hanning(2048)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
    cumulative = np.cumsum(power) / max(power.sum(), 1e-20)
    return float(np.fft.rfftfreq(2048, 1.0 / HOST_RATE)[np.searchsorted(cumulative, share)])


def width_db(audio: np.ndarray) -> float:
    """Side energy over mid energy, dB (-inf-like -120 for mono)."""
    side, mid = (audio[0] - audio[1]) / 2, (audio[0] + audio[1]) / 2
    return float(10 * np.log10((np.mean(side.astype(np.float64) ** 2) + 1e-12) / (np.mean(mid.astype(np.float64) ** 2) + 1e-12)))


def high_band_db(audio: np.ndarray, above_hz: float = 8000.0) -> float:
    """Share of the mid's energy above `above_hz` (dB): the bandwidth a 16 kHz model would lose."""
    spectrum = np.abs(np.fft.rfft(audio.mean(axis=0).astype(np.float64))) ** 2
    high = spectrum[np.fft.rfftfreq(audio.shape[1], 1.0 / HOST_RATE) > above_hz].sum()
    return float(10 * np.log10((high + 1e-20) / (spectrum.sum() + 1e-20)))


def band_levels_db(audio: np.ndarray) -> np.ndarray:
    """[bands] level (dB) of the mid in third-octave bands from 25 Hz to 20 kHz: each band's share
    of the mean power, so that audio of any length compares (a spectrum over N samples has N / 2
    bins, and |X|^2 / N per bin summed over a band grows with N: an 8-bar block read 3 dB over
    its 4-bar intro in every band)."""
    mid = audio.mean(axis=0).astype(np.float64)
    power = np.abs(np.fft.rfft(mid)) ** 2 / max(1, len(mid)) ** 2
    freqs = np.fft.rfftfreq(len(mid), 1.0 / HOST_RATE)
    edges = 25.0 * 2.0 ** (np.arange(31) / 3)
    index = np.searchsorted(edges, freqs) - 1
    inside = (index >= 0) & (index < len(edges) - 1)
    return 10 * np.log10(np.bincount(index[inside], power[inside], len(edges) - 1) + 1e-12)


def spectral_distance_db(audio: np.ndarray, reference_levels: np.ndarray) -> float:
    """Mean absolute difference (dB) of third-octave band levels against the reference's,
    over the bands the reference has within 60 dB of its loudest: how far the spectral range
    moved, robust where the 85 % rolloff sits at a knee (a 1 dB change in one band can move it
    tenfold)."""
    used = reference_levels >= reference_levels.max() - 60
    return float(np.abs(band_levels_db(audio) - reference_levels)[used].mean())


def contrast_db(audio: np.ndarray, tempo_bpm: float) -> float:
    """How rhythmic the mid is: the spread (90th - 10th percentile, dB) of its level in frames
    of a 64th note. A groove of hits is ~15 dB; a sustained wash, which keeps its loudness and
    has few onsets to count, falls towards 0."""
    mid = audio.mean(axis=0).astype(np.float64)
    frame = max(16, int(round(3.75 / tempo_bpm * HOST_RATE)))
    level = np.sqrt((mid[:len(mid) // frame * frame].reshape(-1, frame) ** 2).mean(axis=1))
    db = 20 * np.log10(np.maximum(level, 1e-3))       # -60 dBFS floor: gaps count as silence, not as -180 dB
    return float(np.percentile(db, 90) - np.percentile(db, 10))


def mid_model_rate(audio: np.ndarray) -> np.ndarray:
    """The mid of host-rate stereo at the model's rate: what the onset and log-mel measures read."""
    return rep.resample(audio.mean(axis=0, keepdims=True), HOST_RATE, rep.SAMPLE_RATE)[0]


def on_grid(audio: np.ndarray, tempo_bpm: float) -> tuple[int, int]:
    """(onsets on the 16th grid, onsets) of host-rate stereo starting on a bar line."""
    return grid_alignment(mid_model_rate(audio), tempo_bpm)


def free_running(generator, songs: list[Song], bars: int = 64, seed: int = 0) -> list[dict]:
    """Per song: the intro's measures and one row per 8-bar block of generated audio. Song i
    plays with noise seed `seed` + i: the grid count moves by several blocks with the seed."""
    results = []
    for i, song in enumerate(songs):
        total = INTRO_BARS + bars
        lines = bar_lines(song, total)
        heard = song.audio[:, :lines[total]].copy()
        heard[:, lines[INTRO_BARS]:] = 0.0
        played = play(generator, song, heard, total, seed=seed + i)
        intro = song.audio[:, :lines[INTRO_BARS]]
        intro_bands = band_levels_db(intro)
        row = {"style": song.style, "tempo": song.tempo_bpm, "meter": f"{song.tsig[0]}/{song.tsig[1]}",
               "intro_db": loudness_db(intro), "intro_rolloff_hz": rolloff_hz(intro), "intro_width_db": width_db(intro),
               "intro_high_band_db": high_band_db(intro), "intro_contrast_db": contrast_db(intro, song.tempo_bpm),
               "blocks": []}
        for first in range(INTRO_BARS, total, BLOCK_BARS):
            span = slice(lines[first], lines[min(total, first + BLOCK_BARS)])
            block, truth = played[:, span], song.audio[:, span]
            hits, onsets = on_grid(block, song.tempo_bpm)
            true_hits, true_onsets = on_grid(truth, song.tempo_bpm)
            row["blocks"].append({"bars": [first + 1, min(total, first + BLOCK_BARS)],
                                  "loudness_vs_intro_db": loudness_db(block) - row["intro_db"],
                                  "on_grid": hits / max(1, onsets), "onsets": onsets,
                                  "peak_dbfs": float(20 * np.log10(np.abs(block).max() + 1e-12)),
                                  "rolloff_ratio": rolloff_hz(block) / max(1.0, row["intro_rolloff_hz"]),
                                  "width_vs_intro_db": width_db(block) - row["intro_width_db"],
                                  "high_band_vs_intro_db": high_band_db(block) - row["intro_high_band_db"],
                                  "contrast_vs_intro_db": contrast_db(block, song.tempo_bpm) - row["intro_contrast_db"],
                                  "spectral_distance_db": spectral_distance_db(block, intro_bands),
                                  # the song's own continuation, as if the track had played on: the
                                  # ceiling of each measure on these songs
                                  "truth": {"on_grid": true_hits / max(1, true_onsets),
                                            "rolloff_ratio": rolloff_hz(truth) / max(1.0, row["intro_rolloff_hz"]),
                                            "spectral_distance_db": spectral_distance_db(truth, intro_bands),
                                            "contrast_vs_intro_db": contrast_db(truth, song.tempo_bpm)
                                            - row["intro_contrast_db"]}})
        results.append(row)
        print(f"free-running song {i}: {row['meter']} {row['tempo']} BPM, loudness per block "
              + " ".join(f"{b['loudness_vs_intro_db']:+.1f}" for b in row["blocks"]), flush=True)
    return results


def live_input(generator, songs: list[Song], bars: int = 16) -> list[dict]:
    """Per song: distance to the true bars 9-16 with the song playing, and with silence after bar 4."""
    rows = []
    for i, song in enumerate(songs):
        lines = bar_lines(song, bars)
        whole = song.audio[:, :lines[bars]]
        silent = whole.copy()
        silent[:, lines[INTRO_BARS]:] = 0.0
        truth = mid_model_rate(whole[:, lines[8]:])
        row = {"meter": f"{song.tsig[0]}/{song.tsig[1]}", "tempo": song.tempo_bpm}
        for key, heard in (("playing", whole), ("silent_after_4", silent)):
            row[key] = mel_distance(mid_model_rate(play(generator, song, heard, bars, seed=i)[:, lines[8]:]), truth)
        rows.append(row)
        print(f"live input song {i}: playing {row['playing']:.3f}, silent after bar 4 {row['silent_after_4']:.3f}",
              flush=True)
    return rows


def within_ceiling(peak_dbfs: float) -> bool:
    """At most -0.1 dBFS, the engine's ceiling (float32 rounding of a limited peak may land
    1e-6 dB over it)."""
    return peak_dbfs <= -0.1 + 1e-4


def summary(free: list[dict], live: list[dict]) -> dict:
    blocks = [b for row in free for b in row["blocks"]]
    return {"blocks": len(blocks),
            "blocks_loudness_within_3db": float(np.mean([abs(b["loudness_vs_intro_db"]) <= 3 for b in blocks])),
            "blocks_on_grid_90pct": float(np.mean([b["on_grid"] >= 0.9 for b in blocks])),
            "blocks_peak_below_-0.1dbfs": float(np.mean([within_ceiling(b["peak_dbfs"]) for b in blocks])),
            "loudness_vs_intro_db_median": float(np.median([b["loudness_vs_intro_db"] for b in blocks])),
            "on_grid_median": float(np.median([b["on_grid"] for b in blocks])),
            "rolloff_ratio_median": float(np.median([b["rolloff_ratio"] for b in blocks])),
            "blocks_rolloff_within_25pct": float(np.mean([abs(b["rolloff_ratio"] - 1) <= 0.25 for b in blocks])),
            "spectral_distance_db_median": float(np.median([b["spectral_distance_db"] for b in blocks])),
            "spectral_distance_db_worst": float(np.max([b["spectral_distance_db"] for b in blocks])),
            "truth_blocks_on_grid_90pct": float(np.mean([b["truth"]["on_grid"] >= 0.9 for b in blocks])),
            "truth_blocks_rolloff_within_25pct": float(np.mean([abs(b["truth"]["rolloff_ratio"] - 1) <= 0.25
                                                                for b in blocks])),
            "truth_spectral_distance_db_median": float(np.median([b["truth"]["spectral_distance_db"] for b in blocks])),
            "width_vs_intro_db_median": float(np.median([b["width_vs_intro_db"] for b in blocks])),
            "blocks_width_within_3db": float(np.mean([abs(b["width_vs_intro_db"]) <= 3 for b in blocks])),
            "high_band_vs_intro_db_median": float(np.median([b["high_band_vs_intro_db"] for b in blocks])),
            "contrast_vs_intro_db_median": float(np.median([b["contrast_vs_intro_db"] for b in blocks])),
            "blocks_contrast_within_3db": float(np.mean([b["contrast_vs_intro_db"] >= -3 for b in blocks])),
            "live_playing_mean": float(np.mean([r["playing"] for r in live])) if live else None,
            "live_silent_mean": float(np.mean([r["silent_after_4"] for r in live])) if live else None}
