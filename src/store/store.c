/*
 * store.c: the store's file, connections and schema (see store.h), and the helpers its object
 * files share (store_internal.h). All SQL of the store is in this file: the migrations that make
 * the schema, then one table of prepared statements. No SQL is ever built from strings; every
 * value travels as a bound parameter.
 *
 * Durability: journal_mode=WAL with synchronous=FULL, so COMMIT returns after the WAL is fsynced.
 * Locking: a pool of connections (one thread at a time each, SQLITE_OPEN_NOMUTEX) and one writer
 * mutex; see store.h. Schema: PRAGMA user_version counts the migrations applied, application_id
 * marks the file as nuri's.
 */
#include "store/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* ======================================================================== schema */

/* migrations[v] takes a database from user_version v to v + 1, and sets user_version itself, so
 * one transaction holds the change and its version. Never edit a migration that has shipped: add
 * the next one. */
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

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",

    [ST_RESP_INSERT] = "INSERT INTO responses (id, owner, created_at, model, status, "
                       "previous_response_id, conversation_id, body) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_RESP_GET] = "SELECT seq, body, previous_response_id FROM responses "
                    "WHERE id = ?1 AND owner = ?2",
    [ST_RESP_DELETE] = "DELETE FROM responses WHERE id = ?1 AND owner = ?2",
    [ST_RESP_ITEM_INSERT] = "INSERT INTO response_items (response_seq, pos, id, type, item) "
                            "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_RESP_ITEMS_ALL] = "SELECT item FROM response_items WHERE response_seq = ?1 ORDER BY pos",
    [ST_RESP_ITEM_POS] = "SELECT pos FROM response_items WHERE response_seq = ?1 AND id = ?2 "
                         "ORDER BY pos LIMIT 1",
    [ST_RESP_ITEMS_ASC] = "SELECT pos, id, item FROM response_items "
                          "WHERE response_seq = ?1 AND pos > ?2 ORDER BY pos LIMIT ?3",
    [ST_RESP_ITEMS_DESC] = "SELECT pos, id, item FROM response_items "
                           "WHERE response_seq = ?1 AND pos < ?2 ORDER BY pos DESC LIMIT ?3",

    [ST_CONV_INSERT] = "INSERT INTO conversations (id, owner, created_at, metadata) "
                       "VALUES (?1, ?2, ?3, ?4)",
    [ST_CONV_GET] = "SELECT seq, created_at, metadata FROM conversations "
                    "WHERE id = ?1 AND owner = ?2",
    [ST_CONV_UPDATE] = "UPDATE conversations SET metadata = ?3 WHERE id = ?1 AND owner = ?2",
    [ST_CONV_DELETE] = "DELETE FROM conversations WHERE id = ?1 AND owner = ?2",
    [ST_CONV_POS] = "SELECT seq FROM conversations WHERE owner = ?1 AND id = ?2",
    [ST_CONV_LIST_ASC] = "SELECT seq, id, created_at, metadata FROM conversations "
                         "WHERE owner = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    [ST_CONV_LIST_DESC] = "SELECT seq, id, created_at, metadata FROM conversations "
                          "WHERE owner = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
    [ST_CITEM_NEXT_POS] = "SELECT coalesce(max(pos) + 1, 0) FROM conversation_items "
                          "WHERE conversation_seq = ?1",
    [ST_CITEM_INSERT] = "INSERT INTO conversation_items (conversation_seq, pos, id, type, item) "
                        "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_CITEM_GET] = "SELECT item FROM conversation_items WHERE conversation_seq = ?1 AND id = ?2",
    [ST_CITEM_DELETE] = "DELETE FROM conversation_items WHERE conversation_seq = ?1 AND id = ?2",
    [ST_CITEM_ALL] = "SELECT item FROM conversation_items WHERE conversation_seq = ?1 "
                     "ORDER BY pos LIMIT ?2",
    [ST_CITEM_POS] = "SELECT pos FROM conversation_items WHERE conversation_seq = ?1 AND id = ?2",
    [ST_CITEM_ASC] = "SELECT pos, id, item FROM conversation_items "
                     "WHERE conversation_seq = ?1 AND pos > ?2 ORDER BY pos LIMIT ?3",
    [ST_CITEM_DESC] = "SELECT pos, id, item FROM conversation_items "
                      "WHERE conversation_seq = ?1 AND pos < ?2 ORDER BY pos DESC LIMIT ?3",
};

/* ======================================================================== errors */

nuri_status store_sql_error(store_conn *c, int rc, const char *what)
{
    int primary = rc & 0xff;
    const char *detail = c && c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
    const char *path = c ? c->path : "?";
    switch (primary) {
    case SQLITE_NOMEM:
        return nuri_error(NURI_ERR_NOMEM, "store %s: %s: out of memory", path, what);
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return nuri_error(NURI_ERR_FORMAT,
                          "store %s: %s: the file is not a nuri store or is corrupt (sqlite: %s)",
                          path, what, detail);
    case SQLITE_CONSTRAINT:
        return nuri_error(NURI_ERR_INVALID_ARG, "store %s: %s: %s", path, what, detail);
    default:
        return nuri_error(NURI_ERR_IO, "store %s: %s: %s", path, what, detail);
    }
}

/* ======================================================================== statements */

sqlite3_stmt *store_stmt(store_conn *c, enum store_stmt i)
{
    NURI_ASSERT(i < ST_COUNT && c->st[i]);
    sqlite3_reset(c->st[i]);
    sqlite3_clear_bindings(c->st[i]);
    return c->st[i];
}

void store_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

nuri_status store_step_done(store_conn *c, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? NURI_OK : store_sql_error(c, rc, what);
}

static void reset_all(store_conn *c)
{
    for (int i = 0; i < ST_COUNT; i++)
        if (c->st[i]) sqlite3_reset(c->st[i]);
}

nuri_status store_begin(nuri_store *s, store_conn *c, bool write)
{
    if (write) pthread_mutex_lock(&s->write_mu);
    nuri_status st = store_step_done(c, store_stmt(c, write ? ST_BEGIN_WRITE : ST_BEGIN),
                                     write ? "begin a write" : "begin a read");
    if (st != NURI_OK && write) pthread_mutex_unlock(&s->write_mu);
    return st;
}

nuri_status store_end(nuri_store *s, store_conn *c, bool write, nuri_status st)
{
    reset_all(c); // a statement still stepping would hold the snapshot open
    if (st == NURI_OK && !sqlite3_get_autocommit(c->db))
        st = store_step_done(c, store_stmt(c, ST_COMMIT), "commit");
    if (!sqlite3_get_autocommit(c->db)) {
        // failed before or at COMMIT: undo it all (the message of the first failure stays)
        sqlite3_step(store_stmt(c, ST_ROLLBACK));
        sqlite3_reset(c->st[ST_ROLLBACK]);
    }
    if (write) pthread_mutex_unlock(&s->write_mu);
    return st;
}

/* ======================================================================== connections */

store_conn *store_conn_get(nuri_store *s)
{
    pthread_mutex_lock(&s->mu);
    while (!s->idle) pthread_cond_wait(&s->idle_cv, &s->mu);
    store_conn *c = s->idle;
    s->idle = c->next_idle;
    pthread_mutex_unlock(&s->mu);
    return c;
}

void store_conn_put(nuri_store *s, store_conn *c)
{
    pthread_mutex_lock(&s->mu);
    c->next_idle = s->idle;
    s->idle = c;
    pthread_cond_signal(&s->idle_cv);
    pthread_mutex_unlock(&s->mu);
}

/* Runs constant SQL (pragmas, migrations). */
static nuri_status exec_sql(store_conn *c, const char *sql, const char *what)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? NURI_OK : store_sql_error(c, rc, what);
}

/* Reads an integer pragma (user_version, application_id). */
static nuri_status pragma_int(store_conn *c, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    nuri_status r = NURI_OK;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        r = store_sql_error(c, rc, "read the schema version");
    sqlite3_finalize(st);
    return r;
}

static nuri_status conn_open(nuri_store *s, store_conn *c, int busy_timeout_ms)
{
    c->path = s->path;
    int rc = sqlite3_open_v2(s->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) return store_sql_error(c, rc, "open");
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, busy_timeout_ms);

    // journal_mode answers with the mode it is in: anything but "wal" means WAL is unavailable
    // (a read-only directory, a network file system), and then commits would not be what store.h
    // promises.
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        nuri_status e = store_sql_error(c, rc, "open");
        sqlite3_finalize(st);
        return e;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    bool wal = mode && strcmp(mode, "wal") == 0;
    sqlite3_finalize(st);
    if (!wal)
        return nuri_error(NURI_ERR_IO, "store %s: cannot use write-ahead logging (journal mode %s)",
                          s->path, mode ? mode : "?");
    return exec_sql(c, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", "configure");
}

static nuri_status conn_prepare(store_conn *c)
{
    for (int i = 0; i < ST_COUNT; i++) {
        int rc =
            sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL);
        if (rc != SQLITE_OK) return store_sql_error(c, rc, "prepare a statement");
    }
    return NURI_OK;
}

static void conn_close(store_conn *c)
{
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(c->st[i]);
    if (c->db) sqlite3_close(c->db);
    memset(c, 0, sizeof *c);
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
static nuri_status check_and_migrate(store_conn *c)
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

/* ======================================================================== lifecycle */

/* fsync of the directory that holds path. */
static int fsync_dir_of(const char *path)
{
    char *dir = strdup(path);
    if (!dir) return -1;
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = 0;
    else if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : fsync(fd);
    int err = errno;
    if (fd >= 0) close(fd);
    free(dir);
    errno = err;
    return rc;
}

nuri_status nuri_store_open(const char *path, const nuri_store_params *params, nuri_store **out)
{
    *out = NULL;
    if (!path || !*path) return nuri_error(NURI_ERR_INVALID_ARG, "store: no path");
    if (!sqlite3_threadsafe())
        return nuri_error(NURI_ERR_UNSUPPORTED, "store: this SQLite was built without threads");
    int n_conns = params && params->n_conns > 0 ? params->n_conns : 4;
    int busy = params && params->busy_timeout_ms > 0 ? params->busy_timeout_ms : 5000;
    if (n_conns > 64) return nuri_error(NURI_ERR_INVALID_ARG, "store: at most 64 connections");

    // Create the file ourselves, so that it is private from its first byte (SQLite would use
    // 0644); the -wal and -shm files take the database file's mode.
    // A new file's directory entry is fsynced too, so the file outlives a power loss as its first
    // commit does (SQLite syncs the directory of the WAL, not of a file it did not create).
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        bool synced = fsync(fd) == 0 && fsync_dir_of(path) == 0;
        close(fd);
        if (!synced)
            return nuri_error(NURI_ERR_IO, "store %s: cannot sync: %s", path, strerror(errno));
    } else if (errno == EEXIST) {
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd >= 0) close(fd);
    }
    if (fd < 0) return nuri_error(NURI_ERR_IO, "store %s: cannot open: %s", path, strerror(errno));

    nuri_store *s = calloc(1, sizeof *s);
    if (!s) return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    s->path = strdup(path);
    s->conns = calloc((size_t)n_conns, sizeof *s->conns);
    if (!s->path || !s->conns) {
        free(s->path);
        free(s->conns);
        free(s);
        return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    s->n_conns = n_conns;

    nuri_status st = conn_open(s, &s->conns[0], busy);
    if (st == NURI_OK) st = check_and_migrate(&s->conns[0]);
    for (int i = 1; i < n_conns && st == NURI_OK; i++) st = conn_open(s, &s->conns[i], busy);
    for (int i = 0; i < n_conns && st == NURI_OK; i++) st = conn_prepare(&s->conns[i]);
    if (st != NURI_OK) {
        nuri_store_close(s);
        return st;
    }
    for (int i = n_conns - 1; i >= 0; i--) {
        s->conns[i].next_idle = s->idle;
        s->idle = &s->conns[i];
    }
    *out = s;
    return NURI_OK;
}

void nuri_store_close(nuri_store *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_conns; i++) conn_close(&s->conns[i]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle_cv);
    pthread_mutex_destroy(&s->write_mu);
    free(s->conns);
    free(s->path);
    free(s);
}

/* mkdir -p, mode 0700 for what it creates; path is changed in place and restored. */
static nuri_status mkdirs(char *path)
{
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char saved = *p;
        *p = 0;
        int rc = mkdir(path, 0700);
        int err = errno;
        struct stat sb;
        bool is_dir = rc == 0 || (err == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
        if (!is_dir) {
            nuri_status st =
                nuri_error(NURI_ERR_IO, "store: cannot create directory %s: %s", path,
                           rc == 0 || err == EEXIST ? "not a directory" : strerror(err));
            *p = saved;
            return st;
        }
        *p = saved;
        if (!saved) return NURI_OK;
    }
}

nuri_status nuri_store_default_path(char **out)
{
    *out = NULL;
    const char *xdg = getenv("XDG_DATA_HOME");
    char *dir = NULL;
    int n;
    if (xdg && xdg[0] == '/') { // the XDG spec: a relative path is to be ignored
        n = asprintf(&dir, "%s/nuri", xdg);
    } else {
        const char *home = getenv("HOME");
        if (!home || home[0] != '/') {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home || home[0] != '/')
            return nuri_error(NURI_ERR_NOT_FOUND,
                              "store: no home directory (set XDG_DATA_HOME or HOME, or pass "
                              "--store PATH)");
        n = asprintf(&dir, "%s/.local/share/nuri", home);
    }
    if (n < 0) return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    nuri_status st = mkdirs(dir);
    char *path = NULL;
    if (st == NURI_OK && asprintf(&path, "%s/nuri.db", dir) < 0) {
        path = NULL;
        st = nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    }
    free(dir);
    *out = path;
    return st;
}

/* ======================================================================== ids */

nuri_status nuri_store_new_id(const char *prefix, char out[NURI_STORE_ID_MAX])
{
    size_t plen = strlen(prefix);
    if (plen == 0 || plen > 16) return nuri_error(NURI_ERR_INVALID_ARG, "store: bad id prefix");
    unsigned char rnd[24];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t r = getrandom(rnd + got, sizeof rnd - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return nuri_error(NURI_ERR_IO, "store: getrandom: %s", strerror(errno));
        got += (size_t)r;
    }
    static const char hex[] = "0123456789abcdef";
    memcpy(out, prefix, plen);
    out[plen] = '_';
    for (size_t i = 0; i < sizeof rnd; i++) {
        out[plen + 1 + 2 * i] = hex[rnd[i] >> 4];
        out[plen + 2 + 2 * i] = hex[rnd[i] & 15];
    }
    out[plen + 1 + 2 * sizeof rnd] = 0;
    return NURI_OK;
}

bool store_id_ok(const char *id)
{
    return id && *id && strnlen(id, NURI_STORE_ID_MAX) < NURI_STORE_ID_MAX;
}

/* ======================================================================== items and lists */

const char *store_item_type(const json_t *item)
{
    const char *t = json_string_value(json_object_get(item, "type"));
    return t ? t : "message";
}

static const char *id_prefix(const char *type)
{
    static const struct {
        const char *type, *prefix;
    } table[] = {
        {"message", "msg"},
        {"function_call", "fc"},
        {"function_call_output", "fco"},
        {"reasoning", "rs"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(type, table[i].type) == 0) return table[i].prefix;
    return "item";
}

json_t *store_items_with_ids(const json_t *items, const char *what, nuri_status *st)
{
    *st = NURI_OK;
    if (items && !json_is_array(items)) {
        *st = nuri_error(NURI_ERR_INVALID_ARG, "store: %s: not an array", what);
        return NULL;
    }
    json_t *copy = json_array();
    if (!copy) goto nomem;
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        if (!json_is_object(item)) {
            json_decref(copy);
            *st = nuri_error(NURI_ERR_INVALID_ARG, "store: %s[%zu]: not an object", what, i);
            return NULL;
        }
        json_t *id = json_object_get(item, "id");
        if (id && !json_is_null(id) &&
            !(json_is_string(id) && store_id_ok(json_string_value(id)))) {
            json_decref(copy);
            *st = nuri_error(NURI_ERR_INVALID_ARG,
                             "store: %s[%zu]: id is not a string of 1 to %d bytes", what, i,
                             NURI_STORE_ID_MAX - 1);
            return NULL;
        }
        json_t *c = json_copy((json_t *)item); // shallow: only "id" is ever set on it
        if (!c || json_array_append_new(copy, c)) goto nomem;
        if (!id || json_is_null(id)) {
            char buf[NURI_STORE_ID_MAX];
            *st = nuri_store_new_id(id_prefix(store_item_type(item)), buf);
            if (*st != NURI_OK) {
                json_decref(copy);
                return NULL;
            }
            if (json_object_set_new(c, "id", json_string(buf))) goto nomem;
        }
    }
    return copy;
nomem:
    json_decref(copy);
    *st = nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    return NULL;
}

json_t *store_json_parse(store_conn *c, const char *text, const char *what)
{
    json_error_t err;
    json_t *j = text ? json_loads(text, 0, &err) : NULL;
    if (!j)
        nuri_error(NURI_ERR_FORMAT, "store %s: %s: stored JSON is corrupt (%s)", c->path, what,
                   text ? err.text : "missing");
    return j;
}

json_t *store_list_new(json_t *data, bool has_more)
{
    json_t *list = json_object();
    if (!list || !data) {
        json_decref(list);
        json_decref(data);
        return NULL;
    }
    size_t n = json_array_size(data);
    json_t *first = n ? json_object_get(json_array_get(data, 0), "id") : NULL;
    json_t *last = n ? json_object_get(json_array_get(data, n - 1), "id") : NULL;
    if (json_object_set_new(list, "object", json_string("list")) ||
        json_object_set_new(list, "data", data) ||
        json_object_set_new(list, "first_id", first ? json_incref(first) : json_null()) ||
        json_object_set_new(list, "last_id", last ? json_incref(last) : json_null()) ||
        json_object_set_new(list, "has_more", json_boolean(has_more))) {
        json_decref(list);
        return NULL;
    }
    return list;
}

json_t *store_item_row(store_conn *c, sqlite3_stmt *st, nuri_status *status)
{
    json_t *item = store_json_parse(c, (const char *)sqlite3_column_text(st, 2), "an item");
    *status = item ? NURI_OK : NURI_ERR_FORMAT;
    return item;
}

static void bind_parent(sqlite3_stmt *st, const char *parent_text, int64_t parent_int)
{
    if (parent_text)
        store_bind_text(st, 1, parent_text);
    else
        sqlite3_bind_int64(st, 1, parent_int);
}

nuri_status store_page(store_conn *c, enum store_stmt st_pos, enum store_stmt st_asc,
                       enum store_stmt st_desc, const char *parent_text, int64_t parent_int,
                       const nuri_store_page *page, store_row_fn row, json_t **list)
{
    *list = NULL;
    if (!page || page->limit < 1 || page->limit > NURI_STORE_LIST_MAX)
        return nuri_error(NURI_ERR_INVALID_ARG, "limit must be 1 to %d", NURI_STORE_LIST_MAX);
    bool asc = page->order == NURI_STORE_ASC;
    int64_t key = asc ? -1 : INT64_MAX;
    if (page->after) {
        sqlite3_stmt *st = store_stmt(c, st_pos);
        bind_parent(st, parent_text, parent_int);
        store_bind_text(st, 2, page->after);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            key = sqlite3_column_int64(st, 0);
        else if (rc == SQLITE_DONE)
            return nuri_error(NURI_ERR_INVALID_ARG, "after: no object '%.*s' in this list",
                              NURI_STORE_ID_MAX, page->after);
        else
            return store_sql_error(c, rc, "list");
        sqlite3_reset(st);
    }
    sqlite3_stmt *st = store_stmt(c, asc ? st_asc : st_desc);
    bind_parent(st, parent_text, parent_int);
    sqlite3_bind_int64(st, 2, key);
    sqlite3_bind_int(st, 3, page->limit + 1); // one more than asked: is there a next page?
    json_t *data = json_array();
    if (!data) return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    bool has_more = false;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((int)json_array_size(data) == page->limit) {
            has_more = true;
            break;
        }
        nuri_status status;
        json_t *obj = row(c, st, &status);
        if (!obj || json_array_append_new(data, obj)) {
            json_decref(data);
            return obj ? nuri_error(NURI_ERR_NOMEM, "store: out of memory") : status;
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        json_decref(data);
        return store_sql_error(c, rc, "list");
    }
    *list = store_list_new(data, has_more);
    return *list ? NURI_OK : nuri_error(NURI_ERR_NOMEM, "store: out of memory");
}
