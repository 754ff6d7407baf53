/*
 * store_conversation.c: conversations and their items (see store.h): create, get, update,
 * delete, list, and items added, listed, fetched, deleted and read whole for a prompt.
 *
 * A conversation is one row (id, owner, created_at, metadata JSON) and one row per item, in the
 * order the items were added (pos), each item's id unique within its conversation.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The Conversation object OpenAI returns. NULL on allocation failure or corrupt metadata. */
static json_t *conv_object(store_conn *c, const char *id, int64_t created_at, const char *metadata,
                           nuri_status *st)
{
    json_t *meta = store_json_parse(c, metadata, "conversation metadata");
    if (!meta) {
        *st = NURI_ERR_FORMAT;
        return NULL;
    }
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "id", json_string(id)) ||
        json_object_set_new(o, "object", json_string("conversation")) ||
        json_object_set_new(o, "created_at", json_integer(created_at)) ||
        json_object_set_new(o, "metadata", meta)) {
        if (!o) json_decref(meta);
        json_decref(o);
        *st = nuri_error(NURI_ERR_NOMEM, "store: out of memory");
        return NULL;
    }
    *st = NURI_OK;
    return o;
}

/* A conversation of this owner: its seq and (when obj is not NULL) its object. */
static nuri_status conv_find(store_conn *c, const char *owner, const char *id, int64_t *seq,
                             json_t **obj)
{
    if (!store_id_ok(id)) return nuri_error(NURI_ERR_NOT_FOUND, "no conversation with this id");
    store_q *q = store_stmt(c, ST_CONV_GET);
    store_bind_text(q, 1, id);
    store_bind_text(q, 2, owner);
    int rc = store_step(q);
    if (rc == STORE_DONE) return nuri_error(NURI_ERR_NOT_FOUND, "no conversation '%s'", id);
    if (rc != STORE_ROW) return store_sql_error(c, "find a conversation");
    if (seq) *seq = store_col_int64(q, 0);
    nuri_status st = NURI_OK;
    if (obj) *obj = conv_object(c, id, store_col_int64(q, 1), store_col_text(q, 2), &st);
    store_reset(q);
    return st;
}

static json_t *conv_row(store_conn *c, store_q *q, nuri_status *st)
{
    return conv_object(c, store_col_text(q, 1), store_col_int64(q, 2), store_col_text(q, 3), st);
}

static nuri_status check_metadata(const json_t *metadata, char **text)
{
    *text = NULL;
    if (metadata && !json_is_object(metadata))
        return nuri_error(NURI_ERR_INVALID_ARG, "store: metadata is not an object");
    json_t *empty = metadata ? NULL : json_object();
    *text = json_dumps(metadata ? metadata : empty, JSON_COMPACT);
    json_decref(empty);
    return *text ? NURI_OK : nuri_error(NURI_ERR_NOMEM, "store: out of memory");
}

nuri_status store_conv_append(store_conn *c, int64_t conv_seq, const json_t *items)
{
    if (json_array_size(items) == 0) return NURI_OK;
    store_q *q = store_stmt(c, ST_CITEM_NEXT_POS);
    store_bind_int64(q, 1, conv_seq);
    int rc = store_step(q);
    if (rc != STORE_ROW) return store_sql_error(c, "append to a conversation");
    int64_t pos = store_col_int64(q, 0);
    store_reset(q);
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "id"));
        NURI_ASSERT(id); // store_items_with_ids gave every item one
        char *text = json_dumps(item, JSON_COMPACT);
        if (!text) return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
        q = store_stmt(c, ST_CITEM_INSERT);
        store_bind_int64(q, 1, conv_seq);
        store_bind_int64(q, 2, pos + (int64_t)i);
        store_bind_text(q, 3, id);
        store_bind_text(q, 4, store_item_type(item));
        store_bind_text(q, 5, text);
        rc = store_step(q);
        store_reset(q);
        free(text);
        if (rc == STORE_ERR && c->fail == STORE_FAIL_CONSTRAINT)
            return nuri_error(NURI_ERR_INVALID_ARG,
                              "the conversation already holds an item with id '%s'", id);
        if (rc != STORE_DONE) return store_sql_error(c, "append to a conversation");
    }
    return NURI_OK;
}

/* ======================================================================== conversations */

nuri_status nuri_store_conversation_create(nuri_store *s, const char *owner, const json_t *metadata,
                                           const json_t *items, json_t **conversation)
{
    if (conversation) *conversation = NULL;
    if (!owner) return nuri_error(NURI_ERR_INVALID_ARG, "store: no owner");
    char *meta = NULL;
    nuri_status st = check_metadata(metadata, &meta);
    if (st != NURI_OK) return st;
    json_t *copy = store_items_with_ids(items, "items", &st);
    char id[NURI_STORE_ID_MAX];
    if (copy) st = nuri_store_new_id("conv", id);
    if (st != NURI_OK) {
        free(meta);
        json_decref(copy);
        return st;
    }
    int64_t now = (int64_t)time(NULL);
    json_t *obj = NULL;

    store_conn *c = NULL;
    st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, true);
    if (st == NURI_OK) {
        store_q *q = store_stmt(c, ST_CONV_INSERT);
        store_bind_text(q, 1, id);
        store_bind_text(q, 2, owner);
        store_bind_int64(q, 3, now);
        store_bind_text(q, 4, meta);
        int64_t seq = 0;
        if (store_step_one(q, &seq) != STORE_ROW) st = store_sql_error(c, "create a conversation");
        if (st == NURI_OK) st = store_conv_append(c, seq, copy);
        if (st == NURI_OK && conversation) obj = conv_object(c, id, now, meta, &st);
        st = store_end(s, c, true, st);
    }
    store_conn_put(s, c);
    free(meta);
    json_decref(copy);
    if (st != NURI_OK) {
        json_decref(obj);
        return st;
    }
    if (conversation) *conversation = obj;
    return NURI_OK;
}

nuri_status nuri_store_conversation_get(nuri_store *s, const char *owner, const char *id,
                                        json_t **conversation)
{
    *conversation = NULL;
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) {
        st = conv_find(c, owner, id, NULL, conversation);
        st = store_end(s, c, false, st);
    }
    store_conn_put(s, c);
    if (st != NURI_OK) {
        json_decref(*conversation);
        *conversation = NULL;
    }
    return st;
}

nuri_status nuri_store_conversation_update(nuri_store *s, const char *owner, const char *id,
                                           const json_t *metadata, json_t **conversation)
{
    if (conversation) *conversation = NULL;
    if (!store_id_ok(id)) return nuri_error(NURI_ERR_NOT_FOUND, "no conversation with this id");
    char *meta = NULL;
    nuri_status st = check_metadata(metadata, &meta);
    if (st != NURI_OK) return st;
    json_t *obj = NULL;
    store_conn *c = NULL;
    st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, true);
    if (st == NURI_OK) {
        store_q *q = store_stmt(c, ST_CONV_UPDATE);
        store_bind_text(q, 1, id);
        store_bind_text(q, 2, owner);
        store_bind_text(q, 3, meta);
        int rc = store_step_one(q, NULL);
        st = rc == STORE_ROW    ? NURI_OK
             : rc == STORE_DONE ? nuri_error(NURI_ERR_NOT_FOUND, "no conversation '%s'", id)
                                : store_sql_error(c, "update a conversation");
        if (st == NURI_OK && conversation) st = conv_find(c, owner, id, NULL, &obj);
        st = store_end(s, c, true, st);
    }
    store_conn_put(s, c);
    free(meta);
    if (st != NURI_OK) {
        json_decref(obj);
        return st;
    }
    if (conversation) *conversation = obj;
    return NURI_OK;
}

nuri_status nuri_store_conversation_delete(nuri_store *s, const char *owner, const char *id)
{
    if (!store_id_ok(id)) return nuri_error(NURI_ERR_NOT_FOUND, "no conversation with this id");
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, true);
    if (st == NURI_OK) {
        store_q *q = store_stmt(c, ST_CONV_DELETE);
        store_bind_text(q, 1, id);
        store_bind_text(q, 2, owner);
        int rc = store_step_one(q, NULL);
        st = rc == STORE_ROW    ? NURI_OK
             : rc == STORE_DONE ? nuri_error(NURI_ERR_NOT_FOUND, "no conversation '%s'", id)
                                : store_sql_error(c, "delete a conversation");
        st = store_end(s, c, true, st);
    }
    store_conn_put(s, c);
    return st;
}

nuri_status nuri_store_conversation_list(nuri_store *s, const char *owner,
                                         const nuri_store_page *page, json_t **list)
{
    *list = NULL;
    if (!owner) return nuri_error(NURI_ERR_INVALID_ARG, "store: no owner");
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, false);
    if (st == NURI_OK) {
        st = store_page(c, ST_CONV_POS, ST_CONV_LIST_ASC, ST_CONV_LIST_DESC, owner, 0, page,
                        conv_row, list);
        st = store_end(s, c, false, st);
    }
    store_conn_put(s, c);
    if (st != NURI_OK) {
        json_decref(*list);
        *list = NULL;
    }
    return st;
}

/* ======================================================================== items */

nuri_status nuri_store_conversation_items_add(nuri_store *s, const char *owner, const char *id,
                                              const json_t *items, json_t **list)
{
    if (list) *list = NULL;
    if (!items) return nuri_error(NURI_ERR_INVALID_ARG, "store: no items");
    nuri_status st;
    json_t *copy = store_items_with_ids(items, "items", &st);
    if (!copy) return st;
    store_conn *c = NULL;
    st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, true);
    if (st == NURI_OK) {
        int64_t seq = 0;
        st = conv_find(c, owner, id, &seq, NULL);
        if (st == NURI_OK) st = store_conv_append(c, seq, copy);
        st = store_end(s, c, true, st);
    }
    store_conn_put(s, c);
    if (st == NURI_OK && list) {
        *list = store_list_new(copy, false);
        return *list ? NURI_OK : nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    }
    json_decref(copy);
    return st;
}

nuri_status nuri_store_conversation_items_list(nuri_store *s, const char *owner, const char *id,
                                               const nuri_store_page *page, json_t **list)
{
    *list = NULL;
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, false);
    if (st == NURI_OK) {
        int64_t seq = 0;
        st = conv_find(c, owner, id, &seq, NULL);
        if (st == NURI_OK)
            st = store_page(c, ST_CITEM_POS, ST_CITEM_ASC, ST_CITEM_DESC, NULL, seq, page,
                            store_item_row, list);
        st = store_end(s, c, false, st);
    }
    store_conn_put(s, c);
    if (st != NURI_OK) {
        json_decref(*list);
        *list = NULL;
    }
    return st;
}

nuri_status nuri_store_conversation_item_get(nuri_store *s, const char *owner, const char *id,
                                             const char *item_id, json_t **item)
{
    *item = NULL;
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, false);
    if (st == NURI_OK) {
        int64_t seq = 0;
        st = conv_find(c, owner, id, &seq, NULL);
        if (st == NURI_OK && !store_id_ok(item_id))
            st = nuri_error(NURI_ERR_NOT_FOUND, "no item with this id");
        if (st == NURI_OK) {
            store_q *q = store_stmt(c, ST_CITEM_GET);
            store_bind_int64(q, 1, seq);
            store_bind_text(q, 2, item_id);
            int rc = store_step(q);
            if (rc == STORE_ROW) {
                *item = store_json_parse(c, store_col_text(q, 0), "an item");
                if (!*item) st = NURI_ERR_FORMAT;
            } else if (rc == STORE_DONE) {
                st = nuri_error(NURI_ERR_NOT_FOUND, "no item '%s' in conversation '%s'", item_id,
                                id);
            } else {
                st = store_sql_error(c, "read an item");
            }
        }
        st = store_end(s, c, false, st);
    }
    store_conn_put(s, c);
    if (st != NURI_OK) {
        json_decref(*item);
        *item = NULL;
    }
    return st;
}

nuri_status nuri_store_conversation_item_delete(nuri_store *s, const char *owner, const char *id,
                                                const char *item_id, json_t **conversation)
{
    if (conversation) *conversation = NULL;
    json_t *obj = NULL;
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, true);
    if (st == NURI_OK) {
        int64_t seq = 0;
        st = conv_find(c, owner, id, &seq, conversation ? &obj : NULL);
        if (st == NURI_OK && !store_id_ok(item_id))
            st = nuri_error(NURI_ERR_NOT_FOUND, "no item with this id");
        if (st == NURI_OK) {
            store_q *q = store_stmt(c, ST_CITEM_DELETE);
            store_bind_int64(q, 1, seq);
            store_bind_text(q, 2, item_id);
            int rc = store_step_one(q, NULL);
            if (rc == STORE_DONE)
                st = nuri_error(NURI_ERR_NOT_FOUND, "no item '%s' in conversation '%s'", item_id,
                                id);
            else if (rc != STORE_ROW)
                st = store_sql_error(c, "delete an item");
        }
        st = store_end(s, c, true, st);
    }
    store_conn_put(s, c);
    if (st != NURI_OK) {
        json_decref(obj);
        return st;
    }
    if (conversation) *conversation = obj;
    return NURI_OK;
}

nuri_status nuri_store_conversation_history(nuri_store *s, const char *owner, const char *id,
                                            int max_items, json_t **items)
{
    *items = NULL;
    if (max_items < 0) return nuri_error(NURI_ERR_INVALID_ARG, "store: max_items must be >= 0");
    json_t *all = json_array();
    if (!all) return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, false);
    if (st == NURI_OK) {
        int64_t seq = 0;
        st = conv_find(c, owner, id, &seq, NULL);
        if (st == NURI_OK) {
            store_q *q = store_stmt(c, ST_CITEM_ALL);
            store_bind_int64(q, 1, seq);
            store_bind_int64(q, 2, (int64_t)max_items + 1);
            int rc;
            while (st == NURI_OK && (rc = store_step(q)) == STORE_ROW) {
                if ((int)json_array_size(all) == max_items) {
                    st = nuri_error(NURI_ERR_LIMIT, "conversation '%s' holds more than %d items",
                                    id, max_items);
                    break;
                }
                json_t *item = store_json_parse(c, store_col_text(q, 0), "an item");
                if (!item)
                    st = NURI_ERR_FORMAT;
                else if (json_array_append_new(all, item))
                    st = nuri_error(NURI_ERR_NOMEM, "store: out of memory");
            }
            if (st == NURI_OK && rc != STORE_DONE) st = store_sql_error(c, "read items");
        }
        st = store_end(s, c, false, st);
    }
    store_conn_put(s, c);
    if (st != NURI_OK) {
        json_decref(all);
        return st;
    }
    *items = all;
    return NURI_OK;
}
