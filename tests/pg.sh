# tests/pg.sh: sourced by the tests that need a PostgreSQL server (store_pg.test.sh,
# replicas.test.sh). pg_start starts a private cluster: initdb in a new directory under /tmp,
# listening on 127.0.0.1 only, on a free port, its socket in that directory; trust authentication
# for the user "nuri" (nothing but this machine's loopback can reach it). PostgreSQL refuses to run
# as root: as root (CI), the cluster belongs to the system user "nobody" and every PostgreSQL
# command runs as it (runuser). Sets PG_DIR, PG_PORT, PG_URL. pg_stop stops it (fast: sessions
# are ended, as in a database restart), pg_start_again starts it on the same port, pg_destroy
# stops it and removes its directory.
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

pg_as() { # from the cluster's directory: nobody may not enter the repository's
    if [ "$(id -u)" -eq 0 ]; then
        (cd "${PG_DIR:-/tmp}" && runuser -u nobody -- "$@")
    else
        "$@"
    fi
}

# Prints why PostgreSQL cannot run here, or nothing when it can.
pg_missing() {
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
        echo "PostgreSQL's server is not installed (scripts/setup installs postgresql)"
    elif [ "$(id -u)" -eq 0 ] && ! id nobody >/dev/null 2>&1; then
        echo "running as root without a user 'nobody' to run PostgreSQL as"
    fi
}

pg_start() {
    PG_DIR=$(mktemp -d /tmp/nuri-pg.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown nobody "$PG_DIR"
    if ! pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U nuri --auth=trust -E UTF8 --no-sync \
        >"$PG_DIR/initdb.log" 2>&1; then
        echo "initdb failed:"; cat "$PG_DIR/initdb.log"; return 1
    fi
    PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    pg_start_again || return 1
    PG_URL="postgresql://nuri@127.0.0.1:$PG_PORT/postgres"
}

pg_start_again() {
    if ! pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
        -o "-h 127.0.0.1 -p $PG_PORT -k $PG_DIR" start >/dev/null; then
        echo "PostgreSQL did not start:"; cat "$PG_DIR/server.log"; return 1
    fi
}

pg_stop() {
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null
}

pg_destroy() {
    [ -n "${PG_DIR:-}" ] || return 0
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1
    rm -rf "$PG_DIR"
    PG_DIR=
}
