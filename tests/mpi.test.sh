#!/usr/bin/env bash
# mpi.test.sh: pipelines across processes with OpenMPI (`--pp N` under mpirun, oversubscribed on
# one machine). Builds $BUILD/nuri-mpi (make MPI=1) beside $NURI, then checks:
#   - every architecture's logits, 2 and 3 stages, bit for bit those of one process ($NURI);
#   - greedy and seeded generation the same as one process;
#   - each stage's peak resident memory: about 1/N of the weights (a model of 81 MiB);
#   - the server under mpirun passing tests/serve/api.test.mjs, and stopping cleanly;
#   - wrong stage counts, --pp without MPI, and KV snapshots under --pp refused with the reason.
# Skips (with the reason) only when mpicc is not installed; scripts/setup installs it.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
B=$(dirname "$NURI")
if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null; then
    echo "mpi: MPI build not present (mpicc/mpirun not found; scripts/setup installs libopenmpi-dev and openmpi-bin): skipped"
    echo "0 passed, 0 failed"
    exit 0
fi
san=0
case $B in *san*) san=1 ;; esac
# (under `make test` the parent's jobserver is not ours: a plain make of its own)
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s MPI=1 SAN=$san WERROR=1 BUILD="$B" \
    "$B/nuri-mpi" >/dev/null; then
    echo "mpi: make MPI=1 failed"
    echo "0 passed, 1 failed"
    exit 1
fi
MPI_NURI=$B/nuri-mpi
# CI runs as root, which OpenMPI refuses unless told; in a container without ptrace rights the
# shared-memory transport's single-copy mode (CMA) fails, so the plain copy is used
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi() { # NP, then nuri's arguments
    local np=$1
    shift
    # -k: mpirun has been seen to hang after every rank exited (zombies), ignoring the TERM
    timeout -k 10 120 mpirun --oversubscribe -np "$np" "$MPI_NURI" "$@"
}
passed=0
failed=0
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
# Under the sanitizers: OpenMPI keeps allocations until exit in components it has unloaded by
# then, so LeakSanitizer cannot name (or be told to suppress) them and would fail every run.
# Reports go to files instead, leaks do not change the exit status, and the last check fails on
# any sanitizer error and on any leak with a frame in nuri's own sources.
if [ $san = 1 ]; then
    export ASAN_OPTIONS="log_path=$tmp/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}" LSAN_OPTIONS=exitcode=0
fi
check() { # name, then a command that must succeed
    local name=$1
    shift
    if "$@" >"$tmp/out" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed 's/^/    /' "$tmp/out" | head -8
    fi
}

# check_bg: the same in the background, MPI_JOBS at a time (default: one per CPU; an mpirun of
# oversubscribed ranks leaves the CPUs idle much of the time); checks_collect waits for those
# started since its last call and prints their verdicts in order (tests/checks.sh)
# shellcheck source=tests/checks.sh
. tests/checks.sh
checks_jobs "${MPI_JOBS:-$(nproc)}"

# ---- logits, bit for bit, every architecture ----
TOKS=1,2,3,4,5,6,7,8,9,10,11 # 11 tokens: micro-batches of 5+6 (2 stages), 3+4+4 (3 stages)
same_logits() { # ARCH SHAPE TYPE [mkmodel options]
    local arch=$1 shape=$2 type=$3
    shift 3
    local m="$tmp/$arch.gguf"
    "$NURI" mkmodel --arch "$arch" --shape "$shape" --type "$type" --layers 4 "$@" "$m" >/dev/null ||
        return 1
    "$NURI" eval -m "$m" --tokens $TOKS --top 3 --logits "$tmp/$arch.1" >"$tmp/$arch.1.txt" || return 1
    for np in 2 3; do
        mpi $np eval -m "$m" --tokens $TOKS --top 3 --logits "$tmp/$arch.$np" --pp $np \
            >"$tmp/$arch.$np.txt" 2>"$tmp/$arch.$np.err" || { cat "$tmp/$arch.$np.err"; return 1; }
        # the last stage held the head: it printed its layers
        grep -q "stage $((np - 1)) of $np (layers [0-9]*\.\.3)" "$tmp/$arch.$np.err" || return 1
        cmp "$tmp/$arch.1" "$tmp/$arch.$np" || return 1
        cmp "$tmp/$arch.1.txt" "$tmp/$arch.$np.txt" || return 1 # (MoE: router margins too)
    done
    [ "$(wc -c <"$tmp/$arch.1")" -gt 0 ]
}
check_bg "llama: logits of 2 and 3 stages are one process's, bit for bit" same_logits llama tiny Q4_K_M
check_bg "qwen2: the same" same_logits qwen2 tiny Q8_0
check_bg "qwen3: the same" same_logits qwen3 tiny Q4_K_M
check_bg "exaone: the same" same_logits exaone tiny F16
check_bg "exaone4 (sliding window): the same" same_logits exaone4 tiny Q4_K_M --swa 4
check_bg "granite: the same" same_logits granite tiny Q4_K_M
check_bg "hyperclovax: the same" same_logits hyperclovax tiny Q5_K_M
check_bg "qwen3moe: the same" same_logits qwen3moe moe-tiny Q4_K_M
check_bg "qwen2moe (shared expert): the same" same_logits qwen2moe moe-tiny Q8_0
check_bg "mixtral: the same" same_logits mixtral moe-tiny Q4_K_M
check_bg "gemma2 (soft-caps, window): the same" same_logits gemma2 gemma2-tiny Q8_0
check_bg "gemma3 (GeGLU, window, rope scaling): the same" same_logits gemma3 gemma3-tiny Q4_K_M
check_bg "exaone-moe (dense lead, sigmoid router, shared expert): the same" same_logits exaone-moe \
    moe-tiny Q8_0 --swa 4
check_bg "gpt-oss (sinks, YaRN, biases): the same" same_logits gpt-oss gpt-oss-tiny MXFP4 --swa 5

checks_collect # (the generation and bench checks use two of these models)

# ---- generation ----
same_generation() {
    local m="$tmp/qwen3.gguf"
    a=$("$NURI" run -m "$m" --tokens 5,6,7 -n 12) || return 1
    b=$(mpi 3 run -m "$m" --tokens 5,6,7 -n 12 --pp 3 2>/dev/null) || return 1
    c=$("$NURI" run -m "$m" --tokens 5,6,7 -n 12 --temp 1 --seed 3) || return 1
    d=$(mpi 2 run -m "$m" --tokens 5,6,7 -n 12 --temp 1 --seed 3 --pp 2 2>/dev/null) || return 1
    echo "$a / $b / $c / $d"
    [ -n "$a" ] && [ "$a" = "$b" ] && [ "$c" = "$d" ]
}
check "run: greedy and seeded generation of a pipeline are one process's" same_generation

several_sequences() {
    # 5 sequences decoding at once: micro-batches in flight; then the prompt test
    out=$(mpi 3 bench -m "$tmp/qwen3moe.gguf" -p 16 -n 4 --seqs 5 -r 1 --no-membw --pp 3) || return 1
    echo "$out"
    echo "$out" | grep -q '^tg4 x5 ' && echo "$out" | grep -q '^pp16 '
}
check "bench --seqs under 3 stages" several_sequences

# ---- memory: each stage holds its layers only ----
peak() { sed -n "s/^nuri: pipeline stage $1 of $2.*peak resident \([0-9.]*\) MiB$/\1/p" "$3"; }
per_stage_memory() {
    local m="$s/big.gguf"
    "$NURI" mkmodel --arch llama --shape small --type Q8_0 --layers 24 "$m" >/dev/null || return 1
    local w
    w=$(($(stat -c %s "$m") / 1048576)) # MiB of weights (81)
    for np in 1 2 3; do
        mpi $np eval -m "$m" --tokens 1,2,3 --top 1 --pp $np >/dev/null 2>"$s/rss.$np" || return 1
    done
    cat "$s/rss.1" "$s/rss.2" "$s/rss.3"
    local one st r
    one=$(peak 0 1 "$s/rss.1")
    [ -n "$one" ] || return 1
    # whole weights in one process; with N stages each must have shed most of (1 - 1/N) of them
    # (2: at least 0.3 W less, 3: at least 0.45 W less; a stage holding every layer sheds none)
    for st in 0 1; do
        r=$(peak $st 2 "$s/rss.2")
        python3 -c "import sys; sys.exit(not ($r <= $one - 0.3 * $w))" || return 1
    done
    for st in 0 1 2; do
        r=$(peak $st 3 "$s/rss.3")
        python3 -c "import sys; sys.exit(not ($r <= $one - 0.45 * $w))" || return 1
    done
}
check_bg "each stage's peak resident memory is about 1/N of the weights" per_stage_memory

# ---- refusals ----
refusals() {
    local m=tests/data/models/llama-tiny-Q8_0.gguf
    mpi 2 eval -m $m --tokens 1,2 --pp 3 >/dev/null 2>"$s/e" && return 1
    grep -q -- "--pp 3, but the MPI job has 2 processes" "$s/e" || return 1
    "$NURI" eval -m $m --tokens 1,2 --pp 2 >/dev/null 2>"$s/e"
    [ $? -eq 1 ] && grep -q "needs nuri built with OpenMPI (make MPI=1" "$s/e" || return 1
    "$NURI" info $m --pp 2 >/dev/null 2>"$s/e"
    [ $? -eq 2 ] && grep -q -- "--pp applies to run, eval, bench and serve" "$s/e" || return 1
    "$NURI" eval -m $m --tokens 1 --pp x >/dev/null 2>"$s/e"
    [ $? -eq 2 ] && grep -q -- "--pp needs a number" "$s/e" || return 1
    mpi 2 serve -m $m --no-store --kv-dir "$s/kv" --port 0 --pp 2 >/dev/null 2>"$s/e" && return 1
    grep -q -- "--kv-dir is not supported with --pp" "$s/e" || return 1
    mpi 2 serve -m $m --no-store --draft $m --port 0 --pp 2 >/dev/null 2>"$s/e" && return 1
    grep -q -- "--draft is not supported with --pp" "$s/e" || return 1
    mpi 2 run -m $m -p hi -n 2 --draft $m --pp 2 >/dev/null 2>"$s/e" && return 1
    grep -q -- "--draft is not supported with --pp" "$s/e" || return 1
    # llama-tiny has 2 layers: 3 stages cannot each hold one
    mpi 3 eval -m $m --tokens 1,2 --pp 3 >/dev/null 2>"$s/e" && return 1
    grep -q "a pipeline of 3 stages needs at least one layer each; the model has 2" "$s/e"
}
check_bg "wrong stage counts, --pp without MPI, --kv-dir and --draft with --pp are refused with the reason" refusals
checks_collect

# ---- the server under mpirun: the API tests ----
serve_api() {
    if [ ! -d tests/serve/node_modules/openai ]; then
        echo "the openai npm package is not installed in tests/serve (scripts/setup installs it)"
        return 1
    fi
    local M=tests/data/models/llama-tiny-Q8_0.gguf name
    start() { # NAME ARGS...: a 2-stage server on a free port; sets URL_<NAME>
        local n=$1
        shift
        # mpirun itself in the background (not under timeout): its children are the ranks
        mpirun --oversubscribe -np 2 "$MPI_NURI" serve --pp 2 --port 0 "$@" >"$tmp/$n.out" \
            2>"$tmp/$n.err" &
        pids+=($!)
        eval "PID_$n=$!"
        local port=""
        for _ in $(seq 1 400); do
            port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/$n.out")
            [ -n "$port" ] && break
            sleep 0.05
        done
        [ -n "$port" ] || { cat "$tmp/$n.err"; return 1; }
        eval "URL_$n=http://127.0.0.1:$port"
        for _ in $(seq 1 400); do
            [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] &&
                return 0
            sleep 0.05
        done
        return 1
    }
    start main --no-store -m $M --max-seqs 16 --ctx 8192 --max-body 65536 || return 1
    start auth --no-store -m $M --max-seqs 2 --api-key other --api-key sekrit \
        --chat-template tests/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja || return 1
    start queue --no-store -m $M --max-seqs 1 --queue 1 --header-timeout 400 || return 1
    start kv --no-store -m $M --max-seqs 4 --ctx 512 || return 1
    NURI_URL=$URL_main NURI_URL_AUTH=$URL_auth NURI_URL_QUEUE=$URL_queue NURI_URL_KV=$URL_kv \
        timeout 300 node --test --test-concurrency=1 tests/serve/api.test.mjs >"$tmp/node.out" 2>&1
    local rc=$?
    grep -E '^# (pass|fail)' "$tmp/node.out"
    if [ $rc -ne 0 ]; then
        grep -v '^ok \|^# Subtest' "$tmp/node.out" | head -n 40
        return 1
    fi
    # stopped as a user stops it: SIGTERM to the job's processes (stages > 0 wait for stage 0)
    for name in main auth queue kv; do
        eval "pid=\$PID_$name"
        pkill -TERM -P "$pid"
        wait "$pid" || { echo "server $name: mpirun exited with $?"; return 1; }
        grep -q "stage 1 of 2 (layers 1\.\.1): peak resident" "$tmp/$name.err" || return 1
        ! grep -q "Sanitizer" "$tmp/$name.err" || { cat "$tmp/$name.err"; return 1; }
    done
}
check "serve --pp 2 under mpirun passes tests/serve/api.test.mjs and stops cleanly" serve_api

sanitizer_reports() {
    [ $san = 1 ] || return 0
    local own=' in [^ ]+ (/[^ ]*/)?src/(base|chat|cli|dist|gguf|grammar|hub|kernels|model|sample|serve|store|tokenizer)/'
    if cat "$tmp"/asan.* 2>/dev/null | grep -E 'ERROR: AddressSanitizer|runtime error|^ +#[0-9]+ 0x[0-9a-f]+'"$own"; then
        return 1
    fi
}
check "sanitizers: no error, no leak from nuri's own code" sanitizer_reports

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
