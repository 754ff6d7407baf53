/*
 * store_internal.h: what the store's files share: the connection pool, the prepared statements
 * (all SQL of the store is in store.c, in one table, run by both backends), transactions, and
 * item and list helpers. Not for use outside src/store/ (tests excepted: store_migrate_to builds
 * older SQLite schemas).
 *
 * Two backends sit under one statement interface: SQLite (store_sqlite.c, a file on this machine)
 * and PostgreSQL through libpq (store_pg.c, a server several replicas share). The object files
 * (store_response.c, store_conversation.c) see only store_q: bind, step, read columns, reset.
 */
#ifndef NURI_STORE_INTERNAL_H
#define NURI_STORE_INTERNAL_H

#include "base/status.h"
#include "store/store.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>

#define STORE_SCHEMA_VERSION 2          // PRAGMA user_version (SQLite) / nuri_schema.version (PG)
#define STORE_APPLICATION_ID 0x6e757269 // PRAGMA application_id, and PG's advisory lock key: "nuri"
#define STORE_PARAMS_MAX 8              // bound parameters of one statement at most

/* Every statement the store runs, prepared once per connection at open (and again after a
 * PostgreSQL reconnect). */
enum store_stmt {
    ST_RESP_INSERT,      // (id, owner, created_at, model, status, previous_response_id, conv, body)
                         // -> seq
    ST_RESP_GET,         // (id, owner) -> seq, body, previous_response_id
    ST_RESP_DELETE,      // (id, owner) -> seq of the deleted row
    ST_RESP_ITEM_INSERT, // (response_seq, pos, id, type, item)
    ST_RESP_ITEMS_ALL,   // (response_seq) -> item, in order
    ST_RESP_ITEM_POS,    // (response_seq, id) -> pos
    ST_RESP_ITEMS_ASC,   // (response_seq, after_pos, limit) -> pos, id, item
    ST_RESP_ITEMS_DESC,  // (response_seq, before_pos, limit) -> pos, id, item

    ST_CONV_INSERT,    // (id, owner, created_at, metadata) -> seq
    ST_CONV_GET,       // (id, owner) -> seq, created_at, metadata
    ST_CONV_UPDATE,    // (id, owner, metadata) -> seq of the updated row
    ST_CONV_DELETE,    // (id, owner) -> seq of the deleted row
    ST_CONV_POS,       // (owner, id) -> seq
    ST_CONV_LIST_ASC,  // (owner, after_seq, limit) -> seq, id, created_at, metadata
    ST_CONV_LIST_DESC, // (owner, before_seq, limit) -> seq, id, created_at, metadata
    ST_CITEM_NEXT_POS, // (conversation_seq) -> next pos
    ST_CITEM_INSERT,   // (conversation_seq, pos, id, type, item)
    ST_CITEM_GET,      // (conversation_seq, id) -> item
    ST_CITEM_DELETE,   // (conversation_seq, id) -> pos of the deleted row
    ST_CITEM_ALL,      // (conversation_seq, limit) -> item, in order
    ST_CITEM_POS,      // (conversation_seq, id) -> pos
    ST_CITEM_ASC,      // (conversation_seq, after_pos, limit) -> pos, id, item
    ST_CITEM_DESC,     // (conversation_seq, before_pos, limit) -> pos, id, item

    ST_COUNT
};

/* The SQL of statement i, with ?N parameters (PostgreSQL gets them as $N). */
const char *store_stmt_sql(enum store_stmt i);

struct store_conn;

/* One prepared statement of one connection. */
typedef struct store_q {
    struct store_conn *c;
    int i;                         // which statement (enum store_stmt)
    int n_params;                  // PostgreSQL: the highest ?N in its SQL
    sqlite3_stmt *lite;            // SQLite: the statement
    char *param[STORE_PARAMS_MAX]; // PostgreSQL: bound values as text, owned (NULL: SQL NULL)
    bool oom;                      // PostgreSQL: a value could not be copied
    PGresult *res;                 // PostgreSQL: the rows of the execution under way, or NULL
    int row;                       // PostgreSQL: the row the last step returned
} store_q;

/* Why the last step or command of a connection failed. */
enum store_fail {
    STORE_FAIL_OTHER = 0,
    STORE_FAIL_CONSTRAINT, // a unique key or foreign key said no
    STORE_FAIL_BUSY,       // SQLite: another process held the lock past the busy timeout
    STORE_FAIL_NOMEM,
    STORE_FAIL_CORRUPT, // SQLite: not a database, or a damaged one
    STORE_FAIL_GONE,    // PostgreSQL: the server cannot be reached (NURI_ERR_UNAVAILABLE)
};

typedef struct store_conn {
    sqlite3 *db;      // SQLite, or NULL
    PGconn *pg;       // PostgreSQL, or NULL
    bool pg_prepared; // its statements exist in the server's session
    store_q q[ST_COUNT];
    const char *path; // borrowed from the store, for messages (no password)
    struct store_conn *next_idle;
    enum store_fail fail; // of the last failure
    char fail_msg[256];   // the database's words for it
} store_conn;

struct nuri_store {
    char *path;        // for messages: the SQLite file, or the PostgreSQL URL without a password
    char *conninfo;    // PostgreSQL: the URL as given (NULL for SQLite)
    store_conn *conns; // (n_conns)
    int n_conns;
    store_conn *idle; // connections no thread holds
    pthread_mutex_t mu;
    pthread_cond_t idle_cv;
    pthread_mutex_t write_mu; // held by the one thread of this process inside a write transaction
};

/* ======================================================================== connections */

/* Borrows a connection, waiting while all are busy. A PostgreSQL connection that was lost is
 * re-established first; when the server cannot be reached the connection goes back to the pool
 * and the answer is NURI_ERR_UNAVAILABLE. Give a borrowed one back with store_conn_put. */
nuri_status store_conn_get(nuri_store *s, store_conn **out);
void store_conn_put(nuri_store *s, store_conn *c);

/* ======================================================================== statements */

enum { STORE_DONE = 0, STORE_ROW = 1, STORE_ERR = -1 };

/* The statement i of c, reset and with its bindings cleared. Borrowed from c. */
store_q *store_stmt(store_conn *c, enum store_stmt i);

/* Binds text (copied) or NULL when v is NULL; an integer. i counts from 1. */
void store_bind_text(store_q *q, int i, const char *v);
void store_bind_int64(store_q *q, int i, int64_t v);

/* The next row: STORE_ROW, STORE_DONE, or STORE_ERR (c->fail says why; store_sql_error words
 * it). */
int store_step(store_q *q);

/* Columns of the current row, counting from 0. Text: NULL for SQL NULL, borrowed until the next
 * step or reset. */
const char *store_col_text(store_q *q, int col);
int64_t store_col_int64(store_q *q, int col);

/* Ends the statement's execution (a read stops here; rows are released). */
void store_reset(store_q *q);

/* A status and message for c's last failure while doing `what`. */
nuri_status store_sql_error(store_conn *c, const char *what);

/* Transactions. store_begin takes s's writer mutex when write; store_end commits (st == NURI_OK)
 * or rolls back, releases the mutex, and returns st or the commit's failure. A read transaction
 * is one consistent snapshot of the database. */
nuri_status store_begin(nuri_store *s, store_conn *c, bool write);
nuri_status store_end(nuri_store *s, store_conn *c, bool write, nuri_status st);

/* Steps a statement that returns no row (an INSERT). */
nuri_status store_step_done(store_q *q, const char *what);

/* Steps a statement with RETURNING once and ends it: STORE_ROW (its first column in *key, when
 * key is not NULL), STORE_DONE when no row was written, or STORE_ERR. */
int store_step_one(store_q *q, int64_t *key);

/* ======================================================================== backends */

/* SQLite (store_sqlite.c). */
nuri_status store_lite_open(nuri_store *s, store_conn *c, int busy_timeout_ms);
nuri_status store_lite_check_and_migrate(store_conn *c);
nuri_status store_lite_prepare(store_conn *c);
nuri_status store_lite_begin(store_conn *c, bool write);
nuri_status store_lite_end(store_conn *c, nuri_status st);
void store_lite_close(store_conn *c);
void store_lite_record(store_conn *c, int rc);

/* Runs the migrations that bring c's database from its version to `version` (tests build older
 * schemas with it). SQLite only. */
nuri_status store_migrate_to(store_conn *c, int version);

/* PostgreSQL (store_pg.c). */
nuri_status store_pg_open(nuri_store *s, store_conn *c);
nuri_status store_pg_migrate(store_conn *c);
nuri_status store_pg_prepare(store_conn *c);
nuri_status store_pg_revive(nuri_store *s, store_conn *c);
nuri_status store_pg_begin(store_conn *c, bool write);
nuri_status store_pg_end(store_conn *c, nuri_status st);
int store_pg_step(store_q *q);
void store_pg_close(store_conn *c);

/* ======================================================================== items and lists */

/* A copy of items (an array of objects; NULL: empty) in which every item has an "id" (assigned
 * from its "type" where missing). NULL and a message when an item is not an object or its id is
 * not a string shorter than NURI_STORE_ID_MAX. Caller json_decrefs. */
json_t *store_items_with_ids(const json_t *items, const char *what, nuri_status *st);

/* An item's type: its "type", or "message" (OpenAI's easy input message has none). */
const char *store_item_type(const json_t *item);

/* Parses JSON text read from the database; NULL (NURI_ERR_FORMAT, with a message) if it is not. */
json_t *store_json_parse(store_conn *c, const char *text, const char *what);

/* Builds a list object around data (stolen). NULL on allocation failure. */
json_t *store_list_new(json_t *data, bool has_more);

/* An id from a URL is at most NURI_STORE_ID_MAX - 1 bytes; a longer one cannot be stored. */
bool store_id_ok(const char *id);

/* One page of a list whose rows have an integer order key: the statements st_pos (parent, id) ->
 * key, st_asc / st_desc (parent, key, limit) -> key, id, ... The parent is text (parent_text)
 * or an integer (parent_int when parent_text is NULL). row turns a row into its object. */
typedef json_t *(*store_row_fn)(store_conn *c, store_q *q, nuri_status *status);
nuri_status store_page(store_conn *c, enum store_stmt st_pos, enum store_stmt st_asc,
                       enum store_stmt st_desc, const char *parent_text, int64_t parent_int,
                       const nuri_store_page *page, store_row_fn row, json_t **list);

/* The row function for item tables: column 2 is the item's JSON. */
json_t *store_item_row(store_conn *c, store_q *q, nuri_status *status);

/* Appends items (with ids already) to the conversation seq, in the current write transaction. */
nuri_status store_conv_append(store_conn *c, int64_t conv_seq, const json_t *items);

#endif
