#!/usr/bin/env bash
# repack.test.sh: --repack auto|on|off (and NURI_PACK, its environment spelling). on and off give
# the same greedy text; auto repacks when the repacked weights fit in the available memory and
# otherwise runs from the mapped file with a note saying so (the available memory set by the
# test-only NURI_MEMAVAILABLE_TEST, in bytes); bad values are errors naming the option. The weights
# are repacked only on CPUs with AVX2 + FMA + F16C + BMI2 or better (kernels/pack.h): elsewhere
# auto has nothing to decide, and that is checked instead.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
TMP=$(mktemp -d /tmp/nuri-repack-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
packs=0
flags=$(grep -m1 '^flags' /proc/cpuinfo)
for flag in avx2 fma f16c bmi2; do grep -qw "$flag" <<<"$flags" || packs=x; done
[ "$packs" = x ] && packs=0 || packs=1

# The repacked kernels read the same weights with the activations quantized per their own
# layout, so results agree to rounding, not bit for bit: greedy text is the same over 32 tokens for
# Q8_0, Q6_K and F16 here (F16 is repacked where the CPU has AVX512_BF16; measured:
# log-probabilities within 0.014) (Q4_K's parts after 15 tokens, on a near-tie of these random-weight models,
# whose logits span +-25; BF16's, log-probabilities within 0.078, at its 32nd token since the
# attention's K.Q summation order changed in 7eeb9f8), and for every packed type the next-token distributions agree at 64
# positions: the same top token at 60 or more, log-probabilities within 1 nat (measured on AVX-512:
# at most 0.56, 62 of 64). A broken repacking gives unrelated distributions.
for m in llama-tiny-Q8_0 llama-tiny-Q6_K llama-tiny-F16; do
    f=tests/data/models/$m.gguf
    on=$("$NURI" run -m "$f" -p "the quick brown fox" -n 32 --repack on 2>"$TMP/on.err")
    off=$("$NURI" run -m "$f" -p "the quick brown fox" -n 32 --repack off 2>"$TMP/off.err")
    env_off=$(NURI_PACK=off "$NURI" run -m "$f" -p "the quick brown fox" -n 32 2>/dev/null)
    if [ -n "$on" ] && [ "$on" = "$off" ] && [ "$on" = "$env_off" ]; then
        ok "$m: the same text repacked (on), from the file (off) and with NURI_PACK=off"
    else
        bad "$m: on [$on] off [$off] NURI_PACK=off [$env_off] $(cat "$TMP/on.err" "$TMP/off.err")"
    fi
done
toks=$(python3 -c 'print(",".join(str((i * 7919) % 4000 + 3) for i in range(64)))')
for m in llama-tiny-Q4_K llama-tiny-Q8_0 llama-tiny-Q6_K llama-tiny-Q4_0 llama-tiny-F16 llama-tiny-BF16; do
    f=tests/data/models/$m.gguf
    NURI_PACK=on "$NURI" eval -m "$f" --tokens "$toks" --top 5 >"$TMP/on.jl" 2>"$TMP/eval.err"
    NURI_PACK=off "$NURI" eval -m "$f" --tokens "$toks" --top 5 >"$TMP/off.jl" 2>>"$TMP/eval.err"
    if res=$(python3 - "$TMP/on.jl" "$TMP/off.jl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
worst, same = 0.0, 0
for x, y in zip(a, b):
    dx, dy = dict(x["top"]), dict(y["top"])
    worst = max([worst] + [abs(dx[k] - dy[k]) for k in dx if k in dy])
    same += x["top"][0][0] == y["top"][0][0]
print("%d positions, same top token at %d, log-probabilities within %.3f" % (len(a), same, worst))
sys.exit(0 if len(a) == 64 and len(b) == 64 and same >= 60 and worst < 1.0 else 1)
PY
    ); then
        ok "$m: repacked and file-layout distributions agree ($res)"
    else
        bad "$m: repacked against file layout: $res $(head -c 300 "$TMP/eval.err")"
    fi
done

f=tests/data/models/llama-tiny-Q4_K.gguf
NURI_MEMAVAILABLE_TEST=$((64 << 20)) "$NURI" run -m "$f" -p hi -n 2 >/dev/null 2>"$TMP/small.err"
rc_small=$?
NURI_MEMAVAILABLE_TEST=$((64 << 30)) "$NURI" run -m "$f" -p hi -n 2 >/dev/null 2>"$TMP/large.err"
rc_large=$?
NURI_MEMAVAILABLE_TEST=$((64 << 20)) "$NURI" run -m "$f" -p hi -n 2 --repack on >/dev/null 2>"$TMP/forced.err"
note='note: running from the mapped file, not repacked: the repacked weights (2.0 MiB) would not fit in the available memory (64.0 MiB)'
if [ "$packs" = 1 ]; then
    if [ $rc_small -eq 0 ] && grep -qF "$note" "$TMP/small.err"; then
        ok "auto runs from the mapped file when the repacked weights would not fit, with a note"
    else
        bad "auto with 64 MiB available (rc $rc_small): $(cat "$TMP/small.err")"
    fi
else
    if [ $rc_small -eq 0 ] && ! grep -q "note: running from the mapped file" "$TMP/small.err"; then
        ok "auto: nothing to decide on a CPU without packed kernels"
    else
        bad "auto without packed kernels (rc $rc_small): $(cat "$TMP/small.err")"
    fi
fi
if [ $rc_large -eq 0 ] && ! grep -q "mapped file" "$TMP/large.err"; then
    ok "auto repacks when the repacked weights fit (no note)"
else
    bad "auto with 64 GiB available (rc $rc_large): $(cat "$TMP/large.err")"
fi
if ! grep -q "mapped file" "$TMP/forced.err"; then
    ok "--repack on repacks whatever the available memory"
else
    bad "--repack on: $(cat "$TMP/forced.err")"
fi

"$NURI" run -m "$f" -p hi --repack maybe >/dev/null 2>"$TMP/e1"
rc=$?
if [ $rc -eq 2 ] && grep -qF "nuri: --repack must be auto, on or off (got 'maybe')" "$TMP/e1"; then
    ok "a bad --repack is a usage error naming it"
else
    bad "bad --repack (rc $rc): $(cat "$TMP/e1")"
fi
NURI_PACK=sometimes "$NURI" run -m "$f" -p hi >/dev/null 2>"$TMP/e2"
rc=$?
if [ $rc -eq 1 ] && grep -qF "NURI_PACK must be auto, on or off (got 'sometimes')" "$TMP/e2"; then
    ok "a bad NURI_PACK is an error naming it"
else
    bad "bad NURI_PACK (rc $rc): $(cat "$TMP/e2")"
fi
for cmd in chat bench serve; do
    "$NURI" $cmd -m "$f" --repack never </dev/null >/dev/null 2>"$TMP/e3"
    rc=$?
    if [ $rc -eq 2 ] && grep -qF "got 'never'" "$TMP/e3"; then
        ok "$cmd takes --repack"
    else
        bad "$cmd --repack never (rc $rc): $(cat "$TMP/e3")"
    fi
done
# what bench says of the weights follows the choice
bench() { "$NURI" bench -m "$f" -p 4 -n 4 -r 1 --no-membw "$@" 2>&1; }
out_off=$(bench --repack off)
out_on=$(bench --repack on)
out_auto=$(NURI_MEMAVAILABLE_TEST=$((64 << 20)) bench)
if grep -q '^tg4 ' <<<"$out_off" && grep -qx 'weights: read in place from the mapped file' <<<"$out_off"; then
    ok "bench --repack off: the weights are read in place"
else
    bad "bench --repack off: $out_off"
fi
if [ "$packs" = 1 ]; then
    if grep -qx 'weights: repacked for this CPU (2.0 MiB)' <<<"$out_on" &&
        grep -qx 'weights: read in place from the mapped file (the repacked copy would not fit in memory)' <<<"$out_auto"; then
        ok "bench --repack on: repacked; auto with too little memory: read in place"
    else
        bad "bench --repack on / auto: $out_on $out_auto"
    fi
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
