/*
 * store_sqlite.c: the store's SQLite backend (see store.h, store_internal.h): one file on this
 * machine, opened by every connection of the pool; its schema's migrations; transactions; and the
 * translation of SQLite's result codes into the store's failures.
 *
 * Durability: journal_mode=WAL with synchronous=FULL, so COMMIT returns after the WAL is fsynced.
 * Locking: one thread at a time per connection (SQLITE_OPEN_NOMUTEX) and one writer mutex per
 * process (store.c); BEGIN IMMEDIATE takes SQLite's write lock at once, so no read can be
 * upgraded into a deadlock, and the busy timeout covers another process on the same file.
 * Schema: PRAGMA user_version counts the migrations applied, application_id marks the file as
 * nuri's.
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <string.h>

/* ======================================================================== schema */

/* migrations[v] takes a database from user_version v to v + 1, and sets user_version itself, so
 * one transaction holds the change and its version. Never edit a migration that has shipped: add
 * the next one (and its twin in store_pg.c). */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
    // 0 -> 1: responses and the input items each was made from
    "PRAGMA application_id = 1853190761;" // STORE_APPLICATION_ID, "nuri"
    "CREATE TABLE responses ("
    "  seq INTEGER PRIMARY KEY,"     // insertion order
    "  id TEXT NOT NULL UNIQUE,"     // resp_...
    "  owner TEXT NOT NULL,"         // hash of the API key, '' without keys
    "  created_at INTEGER NOT NULL," // unix seconds
    "  model TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  previous_response_id TEXT," // not a foreign key: a deleted one ends the chain
    "  body TEXT NOT NULL"         // the Response object, JSON
    ");"
    "CREATE TABLE response_items ("
    "  response_seq INTEGER NOT NULL REFERENCES responses(seq) ON DELETE CASCADE,"
    "  pos INTEGER NOT NULL," // order in the request's input
    "  id TEXT NOT NULL,"
    "  type TEXT NOT NULL,"
    "  item TEXT NOT NULL," // the item, JSON
    "  PRIMARY KEY (response_seq, pos)"
    ") WITHOUT ROWID;"
    "CREATE INDEX response_items_by_id ON response_items(response_seq, id);"
    "PRAGMA user_version = 1;",

    // 1 -> 2: conversations and their items; a response may belong to one
    "ALTER TABLE responses ADD COLUMN conversation_id TEXT;"
    "CREATE TABLE conversations ("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE," // conv_...
    "  owner TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  metadata TEXT NOT NULL" // JSON object
    ");"
    "CREATE INDEX conversations_by_owner ON conversations(owner, seq);"
    "CREATE TABLE conversation_items ("
    "  conversation_seq INTEGER NOT NULL REFERENCES conversations(seq) ON DELETE CASCADE,"
    "  pos INTEGER NOT NULL," // order of addition
    "  id TEXT NOT NULL,"
    "  type TEXT NOT NULL,"
    "  item TEXT NOT NULL,"
    "  PRIMARY KEY (conversation_seq, pos)"
    ") WITHOUT ROWID;"
    "CREATE UNIQUE INDEX conversation_items_by_id ON conversation_items(conversation_seq, id);"
    "PRAGMA user_version = 2;",
};

_Static_assert(STORE_APPLICATION_ID == 1853190761, "the first migration writes this number");

/* ======================================================================== errors */

void store_lite_record(store_conn *c, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        c->fail = STORE_FAIL_CONSTRAINT;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        c->fail = STORE_FAIL_BUSY;
        break;
    case SQLITE_NOMEM:
        c->fail = STORE_FAIL_NOMEM;
        break;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        c->fail = STORE_FAIL_CORRUPT;
        break;
    default:
        c->fail = STORE_FAIL_OTHER;
    }
    const char *detail = c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
    snprintf(c->fail_msg, sizeof c->fail_msg, "%s", detail ? detail : sqlite3_errstr(rc));
}

/* Runs constant SQL (pragmas, migrations, transaction control). */
static nuri_status exec_sql(store_conn *c, const char *sql, const char *what)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK) return NURI_OK;
    store_lite_record(c, rc);
    return store_sql_error(c, what);
}

/* Reads an integer pragma (user_version, application_id). */
static nuri_status pragma_int(store_conn *c, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    nuri_status r = NURI_OK;
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
    } else {
        store_lite_record(c, rc);
        r = store_sql_error(c, "read the schema version");
    }
    sqlite3_finalize(st);
    return r;
}

/* ======================================================================== connections */

nuri_status store_lite_open(nuri_store *s, store_conn *c, int busy_timeout_ms)
{
    c->path = s->path;
    int rc = sqlite3_open_v2(s->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        store_lite_record(c, rc);
        return store_sql_error(c, "open");
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, busy_timeout_ms);

    // journal_mode answers with the mode it is in: anything but "wal" means WAL is unavailable
    // (a read-only directory, a network file system), and then commits would not be what store.h
    // promises.
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        store_lite_record(c, rc);
        sqlite3_finalize(st);
        return store_sql_error(c, "open");
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    bool wal = mode && strcmp(mode, "wal") == 0;
    nuri_status r =
        wal ? NURI_OK
            : nuri_error(NURI_ERR_IO, "store %s: cannot use write-ahead logging (journal mode %s)",
                         s->path, mode ? mode : "?");
    sqlite3_finalize(st);
    if (r != NURI_OK) return r;
    return exec_sql(c, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", "configure");
}

nuri_status store_lite_prepare(store_conn *c)
{
    for (int i = 0; i < ST_COUNT; i++) {
        store_q *q = &c->q[i];
        q->c = c;
        q->i = i;
        int rc = sqlite3_prepare_v3(c->db, store_stmt_sql(i), -1, SQLITE_PREPARE_PERSISTENT,
                                    &q->lite, NULL);
        if (rc != SQLITE_OK) {
            store_lite_record(c, rc);
            return store_sql_error(c, "prepare a statement");
        }
    }
    return NURI_OK;
}

void store_lite_close(store_conn *c)
{
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(c->q[i].lite);
    if (c->db) sqlite3_close(c->db);
}

/* ======================================================================== transactions */

nuri_status store_lite_begin(store_conn *c, bool write)
{
    return exec_sql(c, write ? "BEGIN IMMEDIATE" : "BEGIN",
                    write ? "begin a write" : "begin a read");
}

nuri_status store_lite_end(store_conn *c, nuri_status st)
{
    for (int i = 0; i < ST_COUNT; i++) // a statement still stepping would hold the snapshot open
        if (c->q[i].lite) sqlite3_reset(c->q[i].lite);
    if (st == NURI_OK && !sqlite3_get_autocommit(c->db)) st = exec_sql(c, "COMMIT", "commit");
    if (!sqlite3_get_autocommit(c->db)) // failed before or at COMMIT: undo it all
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

/* ======================================================================== migrations */

nuri_status store_migrate_to(store_conn *c, int version)
{
    NURI_ASSERT(version >= 0 && version <= STORE_SCHEMA_VERSION);
    for (;;) {
        // each step re-reads the version inside its own write transaction: another process may
        // have opened the same file and migrated it meanwhile
        nuri_status st = exec_sql(c, "BEGIN IMMEDIATE", "migrate");
        if (st != NURI_OK) return st;
        int64_t v = 0;
        st = pragma_int(c, "PRAGMA user_version", &v);
        if (st == NURI_OK && v >= version) {
            exec_sql(c, "ROLLBACK", "migrate");
            return NURI_OK;
        }
        if (st == NURI_OK && (v < 0 || v >= STORE_SCHEMA_VERSION))
            st = nuri_error(NURI_ERR_FORMAT, "store %s: unknown schema version %lld", c->path,
                            (long long)v);
        if (st == NURI_OK) st = exec_sql(c, migrations[v], "migrate the schema");
        if (st == NURI_OK) st = exec_sql(c, "COMMIT", "migrate the schema");
        if (st != NURI_OK) {
            if (!sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return nuri_error_wrap(st, "schema version %lld -> %lld", (long long)v,
                                   (long long)v + 1);
        }
    }
}

/* Is this file ours, and from a nuri that this one can read? Then bring it up to date. */
nuri_status store_lite_check_and_migrate(store_conn *c)
{
    int64_t version = 0, app = 0, tables = 0;
    nuri_status st = pragma_int(c, "PRAGMA user_version", &version);
    if (st == NURI_OK) st = pragma_int(c, "PRAGMA application_id", &app);
    if (st == NURI_OK) st = pragma_int(c, "SELECT count(*) FROM sqlite_master", &tables);
    if (st != NURI_OK) return st;
    if ((app != 0 && app != STORE_APPLICATION_ID) || (app == 0 && (version != 0 || tables != 0)))
        return nuri_error(NURI_ERR_FORMAT,
                          "store %s: an SQLite database of another program, not a nuri store",
                          c->path);
    if (version > STORE_SCHEMA_VERSION)
        return nuri_error(NURI_ERR_UNSUPPORTED,
                          "store %s: written by a newer nuri (schema version %lld; this nuri reads "
                          "up to %d): upgrade nuri, or use another --store file",
                          c->path, (long long)version, STORE_SCHEMA_VERSION);
    return store_migrate_to(c, STORE_SCHEMA_VERSION);
}
