/*
 * store_internal.h: what the store's files share: the connection pool, the prepared statements
 * (all SQL of the store is in store.c, in one table), transactions, and item and list helpers.
 * Not for use outside src/store/ (tests excepted: store_migrate_to builds older schemas).
 */
#ifndef NURI_STORE_INTERNAL_H
#define NURI_STORE_INTERNAL_H

#include "base/status.h"
#include "store/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>

#define STORE_SCHEMA_VERSION 2          // PRAGMA user_version this code writes and reads
#define STORE_APPLICATION_ID 0x6e757269 // PRAGMA application_id: "nuri"

/* Every statement the store runs, prepared once per connection at open. */
enum store_stmt {
    ST_BEGIN,       // a read transaction: one consistent snapshot for several statements
    ST_BEGIN_WRITE, // BEGIN IMMEDIATE: takes the write lock now, so no upgrade can deadlock
    ST_COMMIT,
    ST_ROLLBACK,

    ST_RESP_INSERT,      // (id, owner, created_at, model, status, previous_response_id, conv, body)
    ST_RESP_GET,         // (id, owner) -> seq, body, previous_response_id
    ST_RESP_DELETE,      // (id, owner)
    ST_RESP_ITEM_INSERT, // (response_seq, pos, id, type, item)
    ST_RESP_ITEMS_ALL,   // (response_seq) -> item, in order
    ST_RESP_ITEM_POS,    // (response_seq, id) -> pos
    ST_RESP_ITEMS_ASC,   // (response_seq, after_pos, limit) -> pos, id, item
    ST_RESP_ITEMS_DESC,  // (response_seq, before_pos, limit) -> pos, id, item

    ST_CONV_INSERT,    // (id, owner, created_at, metadata)
    ST_CONV_GET,       // (id, owner) -> seq, created_at, metadata
    ST_CONV_UPDATE,    // (id, owner, metadata)
    ST_CONV_DELETE,    // (id, owner)
    ST_CONV_POS,       // (owner, id) -> seq
    ST_CONV_LIST_ASC,  // (owner, after_seq, limit) -> seq, id, created_at, metadata
    ST_CONV_LIST_DESC, // (owner, before_seq, limit) -> seq, id, created_at, metadata
    ST_CITEM_NEXT_POS, // (conversation_seq) -> next pos
    ST_CITEM_INSERT,   // (conversation_seq, pos, id, type, item)
    ST_CITEM_GET,      // (conversation_seq, id) -> item
    ST_CITEM_DELETE,   // (conversation_seq, id)
    ST_CITEM_ALL,      // (conversation_seq, limit) -> item, in order
    ST_CITEM_POS,      // (conversation_seq, id) -> pos
    ST_CITEM_ASC,      // (conversation_seq, after_pos, limit) -> pos, id, item
    ST_CITEM_DESC,     // (conversation_seq, before_pos, limit) -> pos, id, item

    ST_COUNT
};

typedef struct store_conn {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    const char *path; // borrowed from the store, for messages
    struct store_conn *next_idle;
} store_conn;

struct nuri_store {
    char *path;
    store_conn *conns; // (n_conns)
    int n_conns;
    store_conn *idle; // connections no thread holds
    pthread_mutex_t mu;
    pthread_cond_t idle_cv;
    pthread_mutex_t write_mu; // held by the one thread inside a write transaction
};

/* ======================================================================== connections */

/* Borrows a connection, waiting while all are busy. Give it back with store_conn_put. */
store_conn *store_conn_get(nuri_store *s);
void store_conn_put(nuri_store *s, store_conn *c);

/* The statement i of c, reset and with its bindings cleared. Borrowed from c. */
sqlite3_stmt *store_stmt(store_conn *c, enum store_stmt i);

/* A status and message for a failed SQLite call rc while doing `what`. */
nuri_status store_sql_error(store_conn *c, int rc, const char *what);

/* Transactions. store_begin takes s's writer mutex when write; store_end commits (st == NURI_OK)
 * or rolls back, releases the mutex, and returns st or the commit's failure. */
nuri_status store_begin(nuri_store *s, store_conn *c, bool write);
nuri_status store_end(nuri_store *s, store_conn *c, bool write, nuri_status st);

/* Steps a statement that returns no row (an INSERT, UPDATE or DELETE). */
nuri_status store_step_done(store_conn *c, sqlite3_stmt *st, const char *what);

/* Binds text (copied) or NULL when v is NULL. */
void store_bind_text(sqlite3_stmt *st, int i, const char *v);

/* Runs the migrations that bring c's database from its version to `version` (tests build older
 * schemas with it). */
nuri_status store_migrate_to(store_conn *c, int version);

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
typedef json_t *(*store_row_fn)(store_conn *c, sqlite3_stmt *st, nuri_status *status);
nuri_status store_page(store_conn *c, enum store_stmt st_pos, enum store_stmt st_asc,
                       enum store_stmt st_desc, const char *parent_text, int64_t parent_int,
                       const nuri_store_page *page, store_row_fn row, json_t **list);

/* The row function for item tables: column 2 is the item's JSON. */
json_t *store_item_row(store_conn *c, sqlite3_stmt *st, nuri_status *status);

/* Appends items (with ids already) to the conversation seq, in the current write transaction. */
nuri_status store_conv_append(store_conn *c, int64_t conv_seq, const json_t *items);

#endif
