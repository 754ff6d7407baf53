#!/usr/bin/env bash
# bench/longctx.sh: decode speed after a long context (attention-bound), nuri against llama.cpp,
# for each KV cache type.
#
# Usage: bench/longctx.sh [-t THREADS] [-n N_GEN] [-d "4096 16384"] [-k "f16 q8_0 q4_0"]
#                         [--nuri build/nuri] MODEL.gguf
#
# For each depth D it runs, alternately on this shared machine:
#   nuri bench --depth D -p 0 -n N --kv-type f16 | q8_0 | q4_0 (the cache filled, then N decodes)
#   llama.cpp (bench/peer_longctx.mjs: node-llama-cpp) with f16, without and with flash
#   attention, and with q8_0 and q4_0 (K and V; flash attention on, which llama.cpp needs for a
#   quantized V)
# and prints one line per run: tokens/s of the D-token prompt that fills the cache (pp: long-prompt
# speed, attention included; timed once, cold) and of the N decodes (tg), and the cache's bytes
# per token. The load average goes beside every number (this machine is shared: only side-by-side
# ratios mean anything). Never downloads or builds llama.cpp.
set -u
cd "$(dirname "$0")/.."
NURI=build/nuri
threads=2 n_gen=64 depths="4096 16384" kvs="f16 q8_0 q4_0"
while [ $# -gt 1 ]; do
    case $1 in
    -t) threads=$2; shift 2 ;;
    -n) n_gen=$2; shift 2 ;;
    -d) depths=$2; shift 2 ;;
    -k) kvs=$2; shift 2 ;;
    --nuri) NURI=$2; shift 2 ;;
    *) echo "longctx: unknown option $1" >&2; exit 2 ;;
    esac
done
model=${1:?usage: bench/longctx.sh [-t T] [-n N] [-d DEPTHS] [-k KV_TYPES] MODEL.gguf}
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), threads $threads, model $model, nuri $(git rev-parse --short HEAD)"
for d in $depths; do
    for kv in $kvs; do
        line=$("$NURI" bench -m "$model" -p 0 -n "$n_gen" -r 1 --depth "$d" -t "$threads" \
            --no-membw --json --kv-type "$kv" 2>/dev/null)
        tg=$(printf '%s\n' "$line" | sed -n 's/.*"test": "tg[0-9]*".*"tokens_per_s": \([0-9.]*\).*/\1/p')
        kvb=$(printf '%s\n' "$line" | sed -n 's/.*"test": "kv".*"bytes_per_token": \([0-9]*\).*/\1/p')
        pp=$(printf '%s\n' "$line" | sed -n 's/.*"test": "kv".*"fill_tokens_per_s": \([0-9.]*\).*/\1/p')
        echo "depth $d nuri      kv $kv/$kv        pp $pp tok/s  tg $tg tok/s  kv $kvb B/token  load $(cut -d' ' -f1 /proc/loadavg)"
        for fa in nofa fa; do
            [ "$kv" != f16 ] && [ $fa = nofa ] && continue
            peer=$(node bench/peer_longctx.mjs "$model" "$d" "$n_gen" "$threads" "$kv" "$kv" $fa 2>/dev/null)
            tg=$(printf '%s\n' "$peer" | sed -n 's/.*"tg_tokens_per_s":\([0-9.]*\).*/\1/p')
            pp=$(printf '%s\n' "$peer" | sed -n 's/.*"pp_tokens_per_s":\([0-9.]*\).*/\1/p')
            echo "depth $d llama.cpp kv $kv/$kv $(printf '%-6s' $fa) pp $pp tok/s  tg $tg tok/s  load $(cut -d' ' -f1 /proc/loadavg)"
        done
    done
done
