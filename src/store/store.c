/*
 * store.c: the store's front (see store.h): the backend chosen by the store's name, the
 * connection pool, the statements both backends run, ids, and the helpers its object files share
 * (store_internal.h). All SQL of the store's objects is in this file, in one table that both
 * backends prepare (the schemas are in store_sqlite.c and store_pg.c). No SQL is ever built from
 * strings; every value travels as a bound parameter.
 *
 * Backends: "sqlite:PATH" or a plain path is an SQLite file (store_sqlite.c);
 * "postgresql://..." or "postgres://..." a PostgreSQL server (store_pg.c), shared by replicas.
 * Locking: a pool of connections (one thread at a time each) and one writer mutex per process;
 * see store.h.
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

/* ======================================================================== statements */

/* Written for both backends: ?N parameters (PostgreSQL's $N), RETURNING instead of
 * last_insert_rowid and changes (SQLite has it since 3.35), types both read alike. */
static const char *const stmt_sql[ST_COUNT] = {
    [ST_RESP_INSERT] = "INSERT INTO responses (id, owner, created_at, model, status, "
                       "previous_response_id, conversation_id, body) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING seq",
    [ST_RESP_GET] = "SELECT seq, body, previous_response_id FROM responses "
                    "WHERE id = ?1 AND owner = ?2",
    [ST_RESP_DELETE] = "DELETE FROM responses WHERE id = ?1 AND owner = ?2 RETURNING seq",
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
                       "VALUES (?1, ?2, ?3, ?4) RETURNING seq",
    [ST_CONV_GET] = "SELECT seq, created_at, metadata FROM conversations "
                    "WHERE id = ?1 AND owner = ?2",
    [ST_CONV_UPDATE] = "UPDATE conversations SET metadata = ?3 WHERE id = ?1 AND owner = ?2 "
                       "RETURNING seq",
    [ST_CONV_DELETE] = "DELETE FROM conversations WHERE id = ?1 AND owner = ?2 RETURNING seq",
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
    [ST_CITEM_DELETE] = "DELETE FROM conversation_items WHERE conversation_seq = ?1 AND id = ?2 "
                        "RETURNING pos",
    [ST_CITEM_ALL] = "SELECT item FROM conversation_items WHERE conversation_seq = ?1 "
                     "ORDER BY pos LIMIT ?2",
    [ST_CITEM_POS] = "SELECT pos FROM conversation_items WHERE conversation_seq = ?1 AND id = ?2",
    [ST_CITEM_ASC] = "SELECT pos, id, item FROM conversation_items "
                     "WHERE conversation_seq = ?1 AND pos > ?2 ORDER BY pos LIMIT ?3",
    [ST_CITEM_DESC] = "SELECT pos, id, item FROM conversation_items "
                      "WHERE conversation_seq = ?1 AND pos < ?2 ORDER BY pos DESC LIMIT ?3",
};

const char *store_stmt_sql(enum store_stmt i)
{
    NURI_ASSERT(i < ST_COUNT);
    return stmt_sql[i];
}

store_q *store_stmt(store_conn *c, enum store_stmt i)
{
    NURI_ASSERT(i < ST_COUNT);
    store_q *q = &c->q[i];
    store_reset(q);
    if (q->lite) sqlite3_clear_bindings(q->lite);
    for (int k = 0; k < STORE_PARAMS_MAX; k++) {
        free(q->param[k]);
        q->param[k] = NULL;
    }
    q->oom = false;
    return q;
}

void store_bind_text(store_q *q, int i, const char *v)
{
    NURI_ASSERT(i >= 1 && i <= STORE_PARAMS_MAX);
    if (q->lite) {
        if (v)
            sqlite3_bind_text(q->lite, i, v, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(q->lite, i);
        return;
    }
    free(q->param[i - 1]);
    q->param[i - 1] = v ? strdup(v) : NULL;
    if (v && !q->param[i - 1]) q->oom = true; // the step fails with NURI_ERR_NOMEM
}

void store_bind_int64(store_q *q, int i, int64_t v)
{
    NURI_ASSERT(i >= 1 && i <= STORE_PARAMS_MAX);
    if (q->lite) {
        sqlite3_bind_int64(q->lite, i, v);
        return;
    }
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    store_bind_text(q, i, buf);
}

int store_step(store_q *q)
{
    if (!q->lite) return store_pg_step(q);
    int rc = sqlite3_step(q->lite);
    if (rc == SQLITE_ROW) return STORE_ROW;
    if (rc == SQLITE_DONE) return STORE_DONE;
    store_lite_record(q->c, rc);
    return STORE_ERR;
}

const char *store_col_text(store_q *q, int col)
{
    if (q->lite) return (const char *)sqlite3_column_text(q->lite, col);
    if (!q->res || q->row < 0 || q->row >= PQntuples(q->res) || col >= PQnfields(q->res) ||
        PQgetisnull(q->res, q->row, col))
        return NULL;
    return PQgetvalue(q->res, q->row, col);
}

int64_t store_col_int64(store_q *q, int col)
{
    if (q->lite) return sqlite3_column_int64(q->lite, col);
    const char *v = store_col_text(q, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

void store_reset(store_q *q)
{
    if (q->lite) sqlite3_reset(q->lite);
    if (q->res) PQclear(q->res);
    q->res = NULL;
    q->row = -1;
}

nuri_status store_step_done(store_q *q, const char *what)
{
    int rc = store_step(q);
    store_reset(q);
    return rc == STORE_DONE ? NURI_OK : store_sql_error(q->c, what);
}

int store_step_one(store_q *q, int64_t *key)
{
    int rc = store_step(q);
    if (rc == STORE_ROW && key) *key = store_col_int64(q, 0);
    store_reset(q);
    return rc;
}

/* ======================================================================== errors */

nuri_status store_sql_error(store_conn *c, const char *what)
{
    const char *path = c ? c->path : "?";
    const char *detail = c ? c->fail_msg : "?";
    switch (c ? c->fail : STORE_FAIL_OTHER) {
    case STORE_FAIL_NOMEM:
        return nuri_error(NURI_ERR_NOMEM, "store %s: %s: out of memory", path, what);
    case STORE_FAIL_CORRUPT:
        return nuri_error(NURI_ERR_FORMAT,
                          "store %s: %s: the file is not a nuri store or is corrupt (sqlite: %s)",
                          path, what, detail);
    case STORE_FAIL_CONSTRAINT:
        return nuri_error(NURI_ERR_INVALID_ARG, "store %s: %s: %s", path, what, detail);
    case STORE_FAIL_GONE:
        return nuri_error(NURI_ERR_UNAVAILABLE, "store %s: %s: the database cannot be reached (%s)",
                          path, what, detail);
    default:
        return nuri_error(NURI_ERR_IO, "store %s: %s: %s", path, what, detail);
    }
}

/* ======================================================================== transactions */

nuri_status store_begin(nuri_store *s, store_conn *c, bool write)
{
    if (write) pthread_mutex_lock(&s->write_mu);
    nuri_status st = c->pg ? store_pg_begin(c, write) : store_lite_begin(c, write);
    if (st != NURI_OK && write) pthread_mutex_unlock(&s->write_mu);
    return st;
}

nuri_status store_end(nuri_store *s, store_conn *c, bool write, nuri_status st)
{
    for (int i = 0; i < ST_COUNT; i++) store_reset(&c->q[i]);
    st = c->pg ? store_pg_end(c, st) : store_lite_end(c, st);
    if (write) pthread_mutex_unlock(&s->write_mu);
    return st;
}

/* ======================================================================== connections */

nuri_status store_conn_get(nuri_store *s, store_conn **out)
{
    pthread_mutex_lock(&s->mu);
    while (!s->idle) pthread_cond_wait(&s->idle_cv, &s->mu);
    store_conn *c = s->idle;
    s->idle = c->next_idle;
    pthread_mutex_unlock(&s->mu);
    if (c->pg) {
        nuri_status st = store_pg_revive(s, c);
        if (st != NURI_OK) {
            store_conn_put(s, c);
            *out = NULL;
            return st;
        }
    }
    *out = c;
    return NURI_OK;
}

void store_conn_put(nuri_store *s, store_conn *c)
{
    if (!c) return;
    pthread_mutex_lock(&s->mu);
    c->next_idle = s->idle;
    s->idle = c;
    pthread_cond_signal(&s->idle_cv);
    pthread_mutex_unlock(&s->mu);
}

static void conn_close(store_conn *c)
{
    for (int i = 0; i < ST_COUNT; i++) {
        store_reset(&c->q[i]);
        for (int k = 0; k < STORE_PARAMS_MAX; k++) free(c->q[i].param[k]);
    }
    if (c->pg)
        store_pg_close(c);
    else
        store_lite_close(c);
    memset(c, 0, sizeof *c);
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

/* Create the SQLite file ourselves, so that it is private from its first byte (SQLite would use
 * 0644); the -wal and -shm files take the database file's mode. A new file's directory entry is
 * fsynced too, so the file outlives a power loss as its first commit does (SQLite syncs the
 * directory of the WAL, not of a file it did not create). */
static nuri_status lite_create(const char *path)
{
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
    return NURI_OK;
}

/* A PostgreSQL URL as messages show it: without the password of user:password@, and without
 * the query (?password=... and other options). */
static char *url_for_messages(const char *url)
{
    char *out = strdup(url);
    if (!out) return NULL;
    char *query = strchr(out, '?');
    if (query) *query = 0;
    char *scheme = strstr(out, "://");
    if (!scheme) return out;
    char *auth = scheme + 3;
    char *at = strrchr(auth, '@');
    char *slash = strchr(auth, '/');
    if (!at || (slash && slash < at)) return out;
    char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (colon) memmove(colon, at, strlen(at) + 1);
    return out;
}

static bool is_pg_url(const char *name)
{
    return strncmp(name, "postgresql://", 13) == 0 || strncmp(name, "postgres://", 11) == 0;
}

nuri_status nuri_store_open(const char *name, const nuri_store_params *params, nuri_store **out)
{
    *out = NULL;
    if (!name || !*name) return nuri_error(NURI_ERR_INVALID_ARG, "store: no path");
    bool pg = is_pg_url(name);
    const char *path = name;
    if (strncmp(name, "sqlite:", 7) == 0) path = name + 7;
    if (!*path) return nuri_error(NURI_ERR_INVALID_ARG, "store: no path after sqlite:");
    if (!pg && strstr(name, "://"))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "store %s: unknown kind of store (use sqlite:PATH, a file path, or "
                          "postgresql://...)",
                          name);
    if (!pg && !sqlite3_threadsafe())
        return nuri_error(NURI_ERR_UNSUPPORTED, "store: this SQLite was built without threads");
    if (pg && !PQisthreadsafe())
        return nuri_error(NURI_ERR_UNSUPPORTED, "store: this libpq was built without threads");
    int n_conns = params && params->n_conns > 0 ? params->n_conns : 4;
    int busy = params && params->busy_timeout_ms > 0 ? params->busy_timeout_ms : 5000;
    if (n_conns > 64) return nuri_error(NURI_ERR_INVALID_ARG, "store: at most 64 connections");
    if (!pg) {
        nuri_status st = lite_create(path);
        if (st != NURI_OK) return st;
    }

    nuri_store *s = calloc(1, sizeof *s);
    if (!s) return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    s->path = pg ? url_for_messages(name) : strdup(path);
    s->conninfo = pg ? strdup(name) : NULL;
    s->conns = calloc((size_t)n_conns, sizeof *s->conns);
    if (!s->path || !s->conns || (pg && !s->conninfo)) {
        free(s->path);
        free(s->conninfo);
        free(s->conns);
        free(s);
        return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    s->n_conns = n_conns;

    nuri_status st;
    if (pg) {
        st = store_pg_open(s, &s->conns[0]);
        if (st == NURI_OK) st = store_pg_migrate(&s->conns[0]);
        for (int i = 1; i < n_conns && st == NURI_OK; i++) st = store_pg_open(s, &s->conns[i]);
        for (int i = 0; i < n_conns && st == NURI_OK; i++) st = store_pg_prepare(&s->conns[i]);
    } else {
        st = store_lite_open(s, &s->conns[0], busy);
        if (st == NURI_OK) st = store_lite_check_and_migrate(&s->conns[0]);
        for (int i = 1; i < n_conns && st == NURI_OK; i++)
            st = store_lite_open(s, &s->conns[i], busy);
        for (int i = 0; i < n_conns && st == NURI_OK; i++) st = store_lite_prepare(&s->conns[i]);
    }
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
    free(s->conninfo);
    free(s->path);
    free(s);
}

const char *nuri_store_name(const nuri_store *s)
{
    return s->path;
}

nuri_status nuri_store_check(nuri_store *s)
{
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    store_conn_put(s, c);
    return st;
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

json_t *store_item_row(store_conn *c, store_q *q, nuri_status *status)
{
    json_t *item = store_json_parse(c, store_col_text(q, 2), "an item");
    *status = item ? NURI_OK : NURI_ERR_FORMAT;
    return item;
}

static void bind_parent(store_q *q, const char *parent_text, int64_t parent_int)
{
    if (parent_text)
        store_bind_text(q, 1, parent_text);
    else
        store_bind_int64(q, 1, parent_int);
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
        store_q *q = store_stmt(c, st_pos);
        bind_parent(q, parent_text, parent_int);
        store_bind_text(q, 2, page->after);
        int rc = store_step(q);
        if (rc == STORE_ROW)
            key = store_col_int64(q, 0);
        else if (rc == STORE_DONE)
            return nuri_error(NURI_ERR_INVALID_ARG, "after: no object '%.*s' in this list",
                              NURI_STORE_ID_MAX, page->after);
        else
            return store_sql_error(c, "list");
        store_reset(q);
    }
    store_q *q = store_stmt(c, asc ? st_asc : st_desc);
    bind_parent(q, parent_text, parent_int);
    store_bind_int64(q, 2, key);
    store_bind_int64(q, 3, page->limit + 1); // one more than asked: is there a next page?
    json_t *data = json_array();
    if (!data) return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    bool has_more = false;
    int rc;
    while ((rc = store_step(q)) == STORE_ROW) {
        if ((int)json_array_size(data) == page->limit) {
            has_more = true;
            break;
        }
        nuri_status status;
        json_t *obj = row(c, q, &status);
        if (!obj || json_array_append_new(data, obj)) {
            json_decref(data);
            return obj ? nuri_error(NURI_ERR_NOMEM, "store: out of memory") : status;
        }
    }
    store_reset(q);
    if (rc == STORE_ERR) {
        json_decref(data);
        return store_sql_error(c, "list");
    }
    *list = store_list_new(data, has_more);
    return *list ? NURI_OK : nuri_error(NURI_ERR_NOMEM, "store: out of memory");
}
