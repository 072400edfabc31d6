#!/usr/bin/env bash
# Issue #7's measurement in the real DAW: headless Ardour 7 (Debian's `ardour` package:
# ardour7-lua, ardour7-export, the Dummy backend) exports a 48 kHz session with the livediff
# VST3 on a stereo track (generator loop or diffusion, mix 100, seed 7, preroll silence) whose
# tempo steps at bar 5, and bench/ardour_tempo.py measures the share of generated onsets within
# 20 ms of the host's 16th grid from bar 5 on, and checks the engine's window log.
#
#   bench/ardour_tempo.sh [OUTDIR]        (default: a new directory under /tmp)
#   CASES="loop:100,140 diffusion:140,90" bench/ardour_tempo.sh
#
# A case is GENERATOR:FROM,TO (FROM = TO: constant tempo). The input clip is tests/host/daw.py's
# drum track (loop) or procedural song (diffusion) on the session's tempo map. Each case gets its
# own engine (`livediff serve --window-log`) on a private endpoint that the plugin is pointed at
# (LIVEDIFF_ENDPOINT; auto-launch off, so a missing engine shows as silence, not another engine).
# OUTDIR/results.jsonl holds one JSON line per case; OUTDIR/CASE/ the session, the export, logs.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=$repo/.venv/bin/python
CASES=${CASES:-"loop:100,100 loop:140,140 loop:100,140 loop:140,90 diffusion:100,100 diffusion:140,140 diffusion:100,140 diffusion:140,90"}

for tool in ardour7-lua ardour7-export; do
    command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y ardour (Debian 12: Ardour 7.3)" >&2; exit 2; }
done
[ -x "$python" ] || { echo "no .venv here: run make setup" >&2; exit 2; }

out=${1:-$(mktemp -d /tmp/ardour_tempo.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
: > "$out/results.jsonl"

# Ardour finds VST3 plugins in ~/.vst3 through its scanner's cache; rescan after each build.
"$repo/.venv/bin/livediff" install-plugin >/dev/null
LD_LIBRARY_PATH=/usr/lib/ardour7 /usr/lib/ardour7/ardour-vst3-scanner -q -f "$HOME/.vst3/livediff.vst3"

engine_pid=
stop_engine() { [ -n "$engine_pid" ] && kill "$engine_pid" 2>/dev/null && wait "$engine_pid" 2>/dev/null; engine_pid=; }
trap stop_engine EXIT

for case in $CASES; do
    generator=${case%%:*} tempos=${case#*:}
    from=${tempos%,*} to=${tempos#*,}
    case $generator in
        loop) generator_id=1 input=drums ;;
        diffusion) generator_id=0 input=song ;;
        *) echo "case $case: the generator is loop or diffusion" >&2; exit 2 ;;
    esac
    name=${generator}_${from}_${to}
    dir=$out/$name
    rm -rf "$dir" && mkdir -p "$dir" && chmod 700 "$dir"
    export LIVEDIFF_ENDPOINT=ipc://$dir/engine.sock LIVEDIFF_AUTO_LAUNCH=0

    nice -n 19 "$repo/.venv/bin/livediff" serve --endpoint "$LIVEDIFF_ENDPOINT" \
        --window-log "$dir/windows.jsonl" > "$dir/engine.log" 2>&1 &
    engine_pid=$!
    for _ in $(seq 120); do [ -S "$dir/engine.sock" ] && break; sleep 0.5; done
    [ -S "$dir/engine.sock" ] || { echo "$name: the engine did not start (see $dir/engine.log)" >&2; exit 1; }

    LD_SESSION_DIR=$dir/$name LD_SESSION_NAME=$name LD_TEMPO_FROM=$from LD_TEMPO_TO=$to LD_CHANGE_BEAT=16 \
        LD_GENERATOR=$generator_id ardour7-lua "$repo/bench/ardour_tempo.lua" < /dev/null > "$dir/lua.log" 2>&1 \
        || { echo "$name: ardour7-lua failed (see $dir/lua.log)" >&2; exit 1; }
    "$python" "$repo/bench/ardour_tempo.py" prepare "$dir/$name" "$name" --tempos "$tempos" --input "$input"

    started=$(date +%s.%N)
    timeout 600 nice -n 19 ardour7-export -b float -o "$dir/export.wav" "$dir/$name" "$name" < /dev/null > "$dir/export.log" 2>&1 \
        || { echo "$name: ardour7-export failed (see $dir/export.log)" >&2; exit 1; }
    seconds=$(echo "$(date +%s.%N) - $started" | bc)
    stop_engine

    "$python" "$repo/bench/ardour_tempo.py" measure "$dir/export.wav" --tempos "$tempos" \
        --window-log "$dir/windows.jsonl" --engine-log "$dir/engine.log" \
        | "$python" -c "import json, sys; r = json.loads(sys.stdin.read()); \
r.update(case='$name', generator='$generator', export_seconds=round($seconds, 1)); print(json.dumps(r))" \
        | tee -a "$out/results.jsonl"
done

"$python" - "$out/results.jsonl" <<'EOF'
import json, sys
print(f"\n{'case':<22} {'on grid':>8} {'onsets':>7} {'export s':>9}  window log after the change")
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['case']:<22} {r['share']:>8.1%} {r['onsets']:>7} {r['export_seconds']:>9}  {r['window_check'][:60]}")
EOF
echo "results: $out/results.jsonl"
