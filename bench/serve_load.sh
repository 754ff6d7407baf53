#!/usr/bin/env bash
# bench/serve_load.sh: the bounded load test of issue 17 ("Serving under fire").
#
#   bench/serve_load.sh [--clients 64] [--duration 300] [-m MODEL] [--min-tokens 16]
#                       [--max-tokens 200] [--sample S] [--json FILE] [-- SERVER ARGS...]
#
# Starts `nuri serve` with its default settings (plus SERVER ARGS) on a tiny model (default
# tests/data/models/llama-tiny-Q8_0.gguf) on a free loopback port, then runs bench/serve_load.mjs:
# CLIENTS streaming clients, each looping chat requests with a random max_tokens, for DURATION
# seconds. It counts streams completed, streams that died after their 200 (an error event or a
# cut), refusals (which must be 503 with Retry-After, before the stream starts) and samples the
# server's RSS and open fds, which must stay flat. Prints one JSON line and a table (the machine's
# CPU model and flags included). Exits non-zero if a stream died inside a 200, or another check
# failed (see serve_load.mjs), or the server did not stop with status 0 on SIGTERM. Bounded: every
# request has a time limit, the run stops by itself, and the traffic never leaves 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
model=tests/data/models/llama-tiny-Q8_0.gguf
load_args=()
server_args=()
while [ $# -gt 0 ]; do
    case "$1" in
    -m) model=$2; shift 2 ;;
    --clients | --duration | --min-tokens | --max-tokens | --sample | --json)
        load_args+=("$1" "$2")
        shift 2
        ;;
    --) shift; server_args=("$@"); break ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench/serve_load.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

"$NURI" serve -m "$model" --port 0 ${server_args[@]+"${server_args[@]}"} >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=""
for _ in $(seq 1 300); do
    port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/out")
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$port" ] || ! curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
    echo "bench/serve_load.sh: the server did not start:" >&2
    cat "$tmp/err" >&2
    exit 1
fi

rc=0
NURI_VERSION=$("$NURI" version 2>/dev/null | head -n 1) NURI_ARGS="-m $model ${server_args[*]:-}" \
    node bench/serve_load.mjs --url "http://127.0.0.1:$port" --pid "$pid" ${load_args[@]+"${load_args[@]}"} || rc=$?

# and it still stops cleanly: nothing runs now, so well within the shutdown timeout
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    echo "FAIL the server did not stop within 10 s of SIGTERM"
    rc=1
else
    src=0
    wait "$pid" || src=$?
    if [ "$src" -ne 0 ]; then
        echo "FAIL the server exited with status $src after SIGTERM:"
        tail -n 20 "$tmp/err"
        rc=1
    fi
fi
pid=""
exit "$rc"
