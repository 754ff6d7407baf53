#!/usr/bin/env bash
# store_pg.test.sh: the store's tests (tests/test_store.c) on PostgreSQL: a private server started
# here (tests/pg.sh), the test program run with NURI_TEST_PG naming it. Prints the program's
# "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
TEST_STORE="$(dirname "$NURI")/tests/test_store"
. tests/pg.sh
why=$(pg_missing)
if [ -n "$why" ]; then
    echo "store_pg: cannot run PostgreSQL: $why"
    echo "0 passed, 1 failed"
    exit 1
fi
trap pg_destroy EXIT
pg_start || { echo "0 passed, 1 failed"; exit 1; }
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
NURI_TEST_PG="$PG_URL" "$TEST_STORE"
