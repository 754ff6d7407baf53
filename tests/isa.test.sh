#!/usr/bin/env bash
# isa.test.sh: the golden, batch and kernel tests again with the kernels capped at AVX2 and at the
# scalar reference (NURI_ISA), so that CPUs without AVX-512 (or without AVX at all) get the same
# answers; with AVX2 the weights are repacked for pack_avx2.c's kernels, and test_kernels checks
# those too. The default run already covers the best instruction set of this CPU.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
T=$(dirname "$NURI")/tests
passed=0
failed=0
for isa in avx2 scalar; do
    tests="test_golden test_batch test_noalloc"
    # the packed products' checks against the reference and across batches, on pack_avx2.c's
    # kernels (an AVX-512 CI machine would otherwise never run them)
    [ "$isa" = avx2 ] && tests="$tests test_kernels"
    # under the sanitizers (CI's first pass) the scalar kernels' batch and thread checks take 68 s
    # of the suite (the reference loops at -O1 with ASan); their numbers are the optimized pass's,
    # and their memory checks test_golden's and test_noalloc's on the same paths
    case $T in *san*) [ "$isa" = scalar ] && tests=${tests/test_batch /} ;; esac
    for t in $tests; do
        if NURI_ISA=$isa "$T/$t" >/tmp/isa-$$.log 2>&1; then
            passed=$((passed + 1))
            echo "ok   $t with NURI_ISA=$isa"
        else
            failed=$((failed + 1))
            echo "FAIL $t with NURI_ISA=$isa"
            grep -v '^ok ' /tmp/isa-$$.log | head -10
        fi
    done
done
rm -f /tmp/isa-$$.log
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
