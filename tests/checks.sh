# shellcheck shell=bash
# tests/checks.sh: checks run several at a time in the background, their verdicts printed in the
# order they were started. Sourced by a test script that has a scratch directory in $tmp and
# counts its checks in $passed and $failed.
#   checks_jobs N         at most N checks at a time (default: one per CPU; not a number or < 1: 1)
#   check_bg NAME CMD...  starts CMD, once fewer than N run; its output goes to a file, the first
#                         ${SHOW:-8} lines of which follow its FAIL line; in CMD, $s is a directory
#                         of its own
#   checks_collect        waits for the checks started since its last call and prints their
#                         verdicts in order, adding them to $passed and $failed; a check that left
#                         no verdict (its shell was killed) counts as failed, with a line saying so

checks_max=$(nproc)
checks_n=0
checks_done=0

checks_jobs() {
    checks_max=$1
    [ "$checks_max" -ge 1 ] 2>/dev/null || checks_max=1
}

check_bg() {
    local name=$1
    shift
    checks_n=$((checks_n + 1))
    # shellcheck disable=SC2154 # $tmp is the sourcing script's
    local d=$tmp/check.$checks_n
    mkdir -p "$d"
    while [ "$(jobs -rp | wc -l)" -ge "$checks_max" ]; do wait -n; done
    (
        # shellcheck disable=SC2034 # $s is for CMD
        s=$d
        if "$@" >"$d/out" 2>&1; then
            echo "ok   $name" >"$d/verdict"
        else
            { echo "FAIL $name"; sed 's/^/    /' "$d/out" | head -"${SHOW:-8}"; } >"$d/verdict"
        fi
    ) &
}

checks_collect() {
    wait
    local i v
    for i in $(seq $((checks_done + 1)) "$checks_n"); do
        v=$(cat "$tmp/check.$i/verdict" 2>/dev/null)
        [ -n "$v" ] || v="FAIL check $i: no verdict (its run stopped)"
        echo "$v"
        case $v in
        "ok   "*) passed=$((passed + 1)) ;;
        *) failed=$((failed + 1)) ;;
        esac
    done
    checks_done=$checks_n
}
