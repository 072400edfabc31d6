"""The Python half of bench/ardour_tempo.sh: the input clip of an Ardour 7 session (added to the
session file that bench/ardour_tempo.lua saved), and the measurement of Ardour's export.

    prepare DIR NAME --tempos 100,140 --input drums|song
        writes DIR/interchange/NAME/audiofiles/input.wav (on the session's tempo map, from
        tests/host/daw.py), puts it on the track as one region from 0, and sets the session range
    measure OUT.wav --tempos 100,140 [--window-log FILE] [--engine-log FILE]
        one JSON line: the share of onsets within 20 ms of the host's 16th grid from the first full
        bar after the change (tests/host/daw.py on_grid_share), and the window-log check of
        tests/test_tempo_hosts.py (no window made for the old grid acknowledged after the change)
        [--engine-log FILE] adds the engine's "grid now" count and its warnings

The tempo map is 4/4, the first tempo from beat 0, the second from CHANGE_BEAT (bar 5); the
session lasts BARS_AFTER bars after it and the last one is not judged (as in the tests).
"""
from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pedalboard.io import AudioFile  # noqa: E402

from tests.host import daw  # noqa: E402

RATE = 48000
CHANGE_BEAT = 16.0
BARS_AFTER = 6
SUPERCLOCK_PER_SAMPLE = 282240000 // RATE       # Ardour 7 stores time as "a<superclock>"


def session(tempos: str) -> daw.Session:
    first, second = (float(t) for t in tempos.split(","))
    return daw.Session(RATE, ((0.0, first), (CHANGE_BEAT, second)))


def end_sample(s: daw.Session) -> int:
    return round(s.sample_at(CHANGE_BEAT + 4 * BARS_AFTER))


def superclock(samples: int) -> str:
    return f"a{samples * SUPERCLOCK_PER_SAMPLE}"


def prepare(args) -> None:
    s = session(args.tempos)
    end = end_sample(s)
    audio = daw.drums(s, end) if args.input == "drums" else daw.song(s, end)
    # Ardour made one folder under interchange/ (named after the session's directory) and
    # refuses to load a session with two.
    folder, = (args.dir / "interchange").iterdir()
    folder = folder / "audiofiles"
    folder.mkdir(exist_ok=True)
    with AudioFile(str(folder / "input.wav"), "w", RATE, 2, bit_depth=32) as f:
        f.write(audio)

    path = args.dir / f"{args.name}.ardour"
    tree = ET.parse(path)
    root = tree.getroot()
    ids = iter(range(int(root.get("id-counter")) + 1, 1 << 30))
    sources = [next(ids) for _ in range(2)]
    for channel, sid in enumerate(sources):
        ET.SubElement(root.find("Sources"), "Source", {
            "name": "input.wav", "type": "audio", "flags": "", "id": str(sid), "captured-for": "",
            "channel": str(channel), "origin": "", "gain": "1"})
    track = next(r for r in root.find("Routes") if r.get("name") == "input")
    playlist = next(p for p in root.find("Playlists") if p.get("id") == track.get("audio-playlist"))
    region = {"name": "input", "type": "audio", "id": str(next(ids)), "position": superclock(0),
              "start": superclock(0), "length": superclock(end) + "@a0", "sync-position": superclock(0),
              "whole-file": "0", "muted": "0", "opaque": "1", "locked": "0", "position-locked": "0",
              "layering-index": "0", "scale-amplitude": "1", "envelope-active": "0",
              "fade-in-active": "0", "fade-out-active": "0", "channels": "2"}
    for channel, sid in enumerate(sources):
        region[f"source-{channel}"] = region[f"master-source-{channel}"] = str(sid)
    ET.SubElement(playlist, "Region", region)
    ET.SubElement(root.find("Locations"), "Location", {
        "id": str(next(ids)), "name": "session", "start": superclock(0), "end": superclock(end),
        "flags": "IsSessionRange", "locked": "0", "timestamp": "0", "cue": "0"})
    root.set("id-counter", str(next(ids)))
    tree.write(path, encoding="UTF-8", xml_declaration=True)


def measure(args) -> None:
    s = session(args.tempos)
    with AudioFile(str(args.wav)) as f:
        assert f.samplerate == RATE, f"{args.wav}: {f.samplerate} Hz, the session is {RATE} Hz"
        out = f.read(f.frames)
    judged = round(s.sample_at(CHANGE_BEAT))
    end = round(s.sample_at(CHANGE_BEAT + 4 * (BARS_AFTER - 1)))
    share, onsets = daw.on_grid_share(out, s, judged, end)
    result = {"tempos": args.tempos, "frames": out.shape[1], "expected_frames": end_sample(s),
              "share": round(share, 4), "onsets": onsets, "sixteenths": len(s.sixteenths(judged, end)),
              "peak": round(float(np.abs(out).max()), 4),
              # preroll = silence: the first two bars are the plugin's, not the track's dry audio
              "rms_preroll_db": db(out[:, :round(s.sample_at(8.0))]),
              "rms_judged_db": db(out[:, judged:end])}
    if args.window_log:
        result.update(window_check(s, args.window_log))
    if args.engine_log:
        lines = args.engine_log.read_text().splitlines()
        result["engine_log"] = {"grid_now": sum("grid now" in line for line in lines),
                                "warnings": [line.split(" ", 3)[-1] for line in lines if " WARNING " in line or " ERROR " in line]}
    print(json.dumps(result))


def db(audio: np.ndarray) -> float:
    return round(float(20 * np.log10(np.sqrt(np.mean(audio ** 2)) + 1e-12)), 1)


def window_check(s: daw.Session, log: Path) -> dict:
    """The window log of the instance that exported: the one with the most windows (Ardour also
    instantiates the plugin while the session is built and when it closes)."""
    from tests.test_tempo_hosts import check_acknowledged_windows
    windows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if not windows:
        return {"windows": 0, "window_check": "no windows logged"}
    counts: dict[str, int] = {}
    for w in windows:
        counts[w["instance"]] = counts.get(w["instance"], 0) + 1
    windows = [w for w in windows if w["instance"] == max(counts, key=counts.get)]
    kinds: dict[str, int] = {}
    for w in windows:
        kinds[w["kind"]] = kinds.get(w["kind"], 0) + 1
    report = {"windows": len(windows), "window_kinds": kinds, "epochs": sorted({w["epoch"] for w in windows}),
              "tempos_made": sorted({w["tempo"] for w in windows})}
    if s.tempos[0][1] == s.tempos[1][1]:
        report["window_check"] = "constant tempo: not applicable"
        return report
    try:
        check_acknowledged_windows(s, CHANGE_BEAT, windows, tolerance=1)
        report["window_check"] = "ok: every window acknowledged after the change was made for the new tempo, on the bar lines (+-1 sample)"
    except (AssertionError, ValueError) as exc:
        report["window_check"] = f"FAILED: {exc}"[:600]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("dir", type=Path)
    p.add_argument("name")
    p.add_argument("--tempos", required=True, help="FIRST,SECOND BPM (equal: constant tempo)")
    p.add_argument("--input", choices=["drums", "song"], required=True)
    m = sub.add_parser("measure")
    m.add_argument("wav", type=Path)
    m.add_argument("--tempos", required=True)
    m.add_argument("--window-log", type=Path)
    m.add_argument("--engine-log", type=Path)
    args = parser.parse_args()
    prepare(args) if args.command == "prepare" else measure(args)


if __name__ == "__main__":
    main()
