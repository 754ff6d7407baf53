/*
 * store_pg.c: the store's PostgreSQL backend (see store.h, store_internal.h), through libpq: the
 * store several `nuri serve` replicas share. Each connection of the pool is one libpq session with
 * every statement of store.c prepared in it; the schema is store_sqlite.c's, table for table,
 * column for column, in PostgreSQL's types.
 *
 * Durability: PostgreSQL's COMMIT returns after its WAL record is flushed (synchronous_commit,
 * on by default): acknowledged writes survive a crash of the server or of the replica.
 * Locking: a write transaction first takes a transaction-scoped advisory lock (key
 * STORE_APPLICATION_ID), so writers take turns across every replica as they do on one SQLite
 * file, and "next position in a conversation" cannot be read by two writers at once. Reads run
 * in REPEATABLE READ READ ONLY transactions: one snapshot for a whole chain walk.
 * Schema: the table nuri_schema holds one row, the number of migrations applied; migrations run
 * under a session advisory lock, so replicas that start together migrate once.
 * Outages: a connection the server dropped is noticed when it is borrowed (its socket turned
 * readable while idle) or when a call fails, and is re-established on the next borrow; while the
 * server cannot be reached, calls fail with NURI_ERR_UNAVAILABLE (the server answers 503).
 */
#include "store/store_internal.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== schema */

/* migrations[v] takes the database from nuri_schema.version v to v + 1 (the caller updates the
 * version in the same transaction). The twins of store_sqlite.c's migrations: add both or
 * neither. */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
    // 0 -> 1: responses and the input items each was made from
    "CREATE TABLE responses ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY," // insertion order
    "  id text NOT NULL UNIQUE,"
    "  owner text NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  model text NOT NULL,"
    "  status text NOT NULL,"
    "  previous_response_id text,"
    "  body text NOT NULL"
    ");"
    "CREATE TABLE response_items ("
    "  response_seq bigint NOT NULL REFERENCES responses(seq) ON DELETE CASCADE,"
    "  pos bigint NOT NULL,"
    "  id text NOT NULL,"
    "  type text NOT NULL,"
    "  item text NOT NULL,"
    "  PRIMARY KEY (response_seq, pos)"
    ");"
    "CREATE INDEX response_items_by_id ON response_items(response_seq, id);",

    // 1 -> 2: conversations and their items; a response may belong to one
    "ALTER TABLE responses ADD COLUMN conversation_id text;"
    "CREATE TABLE conversations ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  id text NOT NULL UNIQUE,"
    "  owner text NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  metadata text NOT NULL"
    ");"
    "CREATE INDEX conversations_by_owner ON conversations(owner, seq);"
    "CREATE TABLE conversation_items ("
    "  conversation_seq bigint NOT NULL REFERENCES conversations(seq) ON DELETE CASCADE,"
    "  pos bigint NOT NULL,"
    "  id text NOT NULL,"
    "  type text NOT NULL,"
    "  item text NOT NULL,"
    "  PRIMARY KEY (conversation_seq, pos)"
    ");"
    "CREATE UNIQUE INDEX conversation_items_by_id ON conversation_items(conversation_seq, id);",
};

#define LOCK_KEY "1853190761" // STORE_APPLICATION_ID
_Static_assert(STORE_APPLICATION_ID == 1853190761, "LOCK_KEY spells this number");

/* ======================================================================== errors */

/* Records why res (or, without one, the connection) failed. */
static void pg_record(store_conn *c, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg) msg = PQerrorMessage(c->pg);
    if (PQstatus(c->pg) != CONNECTION_OK || !state || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57P", 3) == 0) // connection exceptions, the server shutting down
        c->fail = STORE_FAIL_GONE;
    else if (strncmp(state, "23", 2) == 0) // integrity constraint violations
        c->fail = STORE_FAIL_CONSTRAINT;
    else if (strcmp(state, "53200") == 0)
        c->fail = STORE_FAIL_NOMEM;
    else
        c->fail = STORE_FAIL_OTHER;
    snprintf(c->fail_msg, sizeof c->fail_msg, "%s", msg && *msg ? msg : "no answer");
    // libpq's messages end in a newline and may continue on more lines: keep the first
    char *nl = strchr(c->fail_msg, '\n');
    if (nl) *nl = 0;
}

/* Runs constant SQL (transaction control, migrations); rows, if any, are dropped. */
static nuri_status exec_sql(store_conn *c, const char *sql, const char *what)
{
    PGresult *res = PQexec(c->pg, sql);
    ExecStatusType es = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    nuri_status st = NURI_OK;
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
        pg_record(c, res);
        st = store_sql_error(c, what);
    }
    PQclear(res);
    return st;
}

/* The integer in the first column of the only row of sql; -1 when there is no such row. */
static nuri_status query_int(store_conn *c, const char *sql, const char *what, int64_t *out)
{
    PGresult *res = PQexec(c->pg, sql);
    nuri_status st = NURI_OK;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_record(c, res);
        st = store_sql_error(c, what);
    } else {
        *out = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)
                   ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                   : -1;
    }
    PQclear(res);
    return st;
}

/* ======================================================================== connections */

nuri_status store_pg_open(nuri_store *s, store_conn *c)
{
    c->path = s->path;
    // keywords are applied in order, and the URL (dbname, expanded) comes last: what it sets wins
    static const char *const keys[] = {"connect_timeout",
                                       "keepalives_idle",
                                       "keepalives_interval",
                                       "keepalives_count",
                                       "application_name",
                                       "dbname",
                                       NULL};
    const char *values[] = {"5", "30", "10", "3", "nuri", s->conninfo, NULL};
    c->pg = PQconnectdbParams(keys, values, 1);
    if (!c->pg) return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    if (PQstatus(c->pg) != CONNECTION_OK) {
        pg_record(c, NULL);
        c->fail = STORE_FAIL_GONE;
        return store_sql_error(c, "connect");
    }
    return NURI_OK;
}

nuri_status store_pg_prepare(store_conn *c)
{
    for (int i = 0; i < ST_COUNT; i++) {
        store_q *q = &c->q[i];
        q->c = c;
        q->i = i;
        // ?N -> $N (no statement has a ? inside a string literal)
        const char *sql = store_stmt_sql(i);
        char text[1024];
        size_t n = strlen(sql);
        NURI_ASSERT(n < sizeof text);
        int max_param = 0;
        for (size_t k = 0; k <= n; k++) {
            text[k] = sql[k] == '?' ? '$' : sql[k];
            if (sql[k] == '?') {
                int p = atoi(sql + k + 1);
                if (p > max_param) max_param = p;
            }
        }
        NURI_ASSERT(max_param <= STORE_PARAMS_MAX);
        q->n_params = max_param;
        char name[24];
        snprintf(name, sizeof name, "nuri_%d", i);
        PGresult *res = PQprepare(c->pg, name, text, max_param, NULL);
        bool ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok) pg_record(c, res);
        PQclear(res);
        if (!ok) return store_sql_error(c, "prepare a statement");
    }
    c->pg_prepared = true;
    return NURI_OK;
}

nuri_status store_pg_revive(nuri_store *s, store_conn *c)
{
    // An idle session has nothing to say: if its socket is readable, the server has closed it
    // (or is about to, with a FATAL message). Start a new one rather than fail a request on it.
    bool stale = PQstatus(c->pg) != CONNECTION_OK || !c->pg_prepared;
    if (!stale) {
        struct pollfd pf = {.fd = PQsocket(c->pg), .events = POLLIN};
        stale = pf.fd < 0 || poll(&pf, 1, 0) != 0;
    }
    if (!stale) return NURI_OK;
    c->pg_prepared = false;
    PQreset(c->pg);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        pg_record(c, NULL);
        c->fail = STORE_FAIL_GONE;
        return store_sql_error(c, "reconnect");
    }
    return store_pg_prepare(c);
}

void store_pg_close(store_conn *c)
{
    PQfinish(c->pg);
    c->pg = NULL;
}

/* ======================================================================== statements */

int store_pg_step(store_q *q)
{
    store_conn *c = q->c;
    if (q->oom) {
        c->fail = STORE_FAIL_NOMEM;
        snprintf(c->fail_msg, sizeof c->fail_msg, "out of memory");
        return STORE_ERR;
    }
    if (!q->res) {
        char name[24];
        snprintf(name, sizeof name, "nuri_%d", q->i);
        q->res =
            PQexecPrepared(c->pg, name, q->n_params, (const char *const *)q->param, NULL, NULL, 0);
        ExecStatusType es = q->res ? PQresultStatus(q->res) : PGRES_FATAL_ERROR;
        if (es != PGRES_TUPLES_OK && es != PGRES_COMMAND_OK) {
            pg_record(c, q->res);
            PQclear(q->res);
            q->res = NULL;
            return STORE_ERR;
        }
        q->row = -1;
    }
    if (q->row < PQntuples(q->res)) q->row++;
    return q->row < PQntuples(q->res) ? STORE_ROW : STORE_DONE;
}

/* ======================================================================== transactions */

nuri_status store_pg_begin(store_conn *c, bool write)
{
    if (!write)
        return exec_sql(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "begin a read");
    nuri_status st = exec_sql(c, "BEGIN", "begin a write");
    if (st == NURI_OK) st = exec_sql(c, "SELECT pg_advisory_xact_lock(" LOCK_KEY ")", "lock");
    if (st != NURI_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        PQclear(PQexec(c->pg, "ROLLBACK"));
    return st;
}

nuri_status store_pg_end(store_conn *c, nuri_status st)
{
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    if (ts == PQTRANS_INTRANS && st == NURI_OK) {
        st = exec_sql(c, "COMMIT", "commit");
    } else if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
        PQclear(PQexec(c->pg, "ROLLBACK"));
    }
    return st;
}

/* ======================================================================== migrations */

/* Runs the migrations this database lacks, each in its own transaction with its version. */
static nuri_status migrate_locked(store_conn *c)
{
    int64_t ours = 0, others = 0;
    nuri_status st = query_int(c,
                               "SELECT count(*) FROM pg_catalog.pg_tables WHERE "
                               "tablename = 'nuri_schema' AND schemaname = current_schema()",
                               "read the schema version", &ours);
    if (st == NURI_OK)
        st = query_int(c,
                       "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = "
                       "current_schema() AND tablename IN ('responses', 'response_items', "
                       "'conversations', 'conversation_items')",
                       "read the schema version", &others);
    if (st != NURI_OK) return st;
    if (ours == 0 && others > 0)
        return nuri_error(NURI_ERR_FORMAT,
                          "store %s: its tables (responses, conversations) belong to another "
                          "program: not a nuri store",
                          c->path);
    if (ours == 0)
        st = exec_sql(c,
                      "BEGIN; CREATE TABLE nuri_schema (version integer NOT NULL);"
                      "INSERT INTO nuri_schema VALUES (0); COMMIT",
                      "create the schema table");
    while (st == NURI_OK) {
        int64_t v = -1, rows = 0;
        st = exec_sql(c, "BEGIN", "migrate");
        if (st == NURI_OK)
            st = query_int(c, "SELECT count(*) FROM nuri_schema", "read the schema version", &rows);
        if (st == NURI_OK)
            st = query_int(c, "SELECT version FROM nuri_schema", "read the schema version", &v);
        if (st == NURI_OK && (rows != 1 || v < 0))
            st =
                nuri_error(NURI_ERR_FORMAT, "store %s: nuri_schema must hold one version", c->path);
        else if (st == NURI_OK && v > STORE_SCHEMA_VERSION)
            st = nuri_error(NURI_ERR_UNSUPPORTED,
                            "store %s: written by a newer nuri (schema version %lld; this nuri "
                            "reads up to %d): upgrade nuri",
                            c->path, (long long)v, STORE_SCHEMA_VERSION);
        if (st == NURI_OK && v == STORE_SCHEMA_VERSION) return exec_sql(c, "COMMIT", "migrate");
        if (st == NURI_OK) st = exec_sql(c, migrations[v], "migrate the schema");
        if (st == NURI_OK) {
            char sql[64];
            snprintf(sql, sizeof sql, "UPDATE nuri_schema SET version = %lld", (long long)v + 1);
            st = exec_sql(c, sql, "migrate the schema");
        }
        if (st == NURI_OK) st = exec_sql(c, "COMMIT", "migrate the schema");
        if (st != NURI_OK) {
            if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) PQclear(PQexec(c->pg, "ROLLBACK"));
            if (v >= 0 && v < STORE_SCHEMA_VERSION)
                return nuri_error_wrap(st, "schema version %lld -> %lld", (long long)v,
                                       (long long)v + 1);
        }
    }
    return st;
}

nuri_status store_pg_migrate(store_conn *c)
{
    nuri_status st = exec_sql(c, "SELECT pg_advisory_lock(" LOCK_KEY ")", "lock the schema");
    if (st != NURI_OK) return st;
    st = migrate_locked(c);
    PQclear(PQexec(c->pg, "SELECT pg_advisory_unlock(" LOCK_KEY ")"));
    return st;
}
