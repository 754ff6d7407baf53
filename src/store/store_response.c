/*
 * store_response.c: Response objects and their input items (see store.h): put, get, delete, the
 * input_items pages, and the chain that previous_response_id names.
 *
 * A response is one row (the Response object as JSON in `body`, plus the columns the routes look
 * it up by) and one row per input item. Its output items live in the body's "output".
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

/* A response of this owner: its seq, body and previous_response_id (copied into prev, "" for
 * none). NURI_ERR_NOT_FOUND (message names the id) when there is none. */
static nuri_status resp_find(store_conn *c, const char *owner, const char *id, int64_t *seq,
                             json_t **body, char prev[NURI_STORE_ID_MAX])
{
    if (!store_id_ok(id)) return nuri_error(NURI_ERR_NOT_FOUND, "no response with this id");
    store_q *st = store_stmt(c, ST_RESP_GET);
    store_bind_text(st, 1, id);
    store_bind_text(st, 2, owner);
    int rc = store_step(st);
    if (rc == STORE_DONE) return nuri_error(NURI_ERR_NOT_FOUND, "no response '%s'", id);
    if (rc != STORE_ROW) return store_sql_error(c, "find a response");
    if (seq) *seq = store_col_int64(st, 0);
    if (body) {
        *body = store_json_parse(c, store_col_text(st, 1), "a response");
        if (!*body) return NURI_ERR_FORMAT;
    }
    if (prev) {
        const char *p = store_col_text(st, 2);
        prev[0] = 0;
        if (p && strlen(p) < NURI_STORE_ID_MAX) strcpy(prev, p);
    }
    store_reset(st);
    return NURI_OK;
}

/* ======================================================================== put */

static nuri_status insert_items(store_conn *c, int64_t resp_seq, const json_t *items)
{
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        char *text = json_dumps(item, JSON_COMPACT);
        if (!text) return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
        store_q *st = store_stmt(c, ST_RESP_ITEM_INSERT);
        store_bind_int64(st, 1, resp_seq);
        store_bind_int64(st, 2, (int64_t)i);
        store_bind_text(st, 3, json_string_value(json_object_get(item, "id")));
        store_bind_text(st, 4, store_item_type(item));
        store_bind_text(st, 5, text);
        nuri_status s = store_step_done(st, "store an input item");
        free(text);
        if (s != NURI_OK) return s;
    }
    return NURI_OK;
}

nuri_status nuri_store_response_put(nuri_store *s, const char *owner, const json_t *response,
                                    const json_t *input)
{
    if (!owner) return nuri_error(NURI_ERR_INVALID_ARG, "store: no owner");
    const char *id = json_string_value(json_object_get(response, "id"));
    const char *model = json_string_value(json_object_get(response, "model"));
    const char *status = json_string_value(json_object_get(response, "status"));
    json_t *created = json_object_get(response, "created_at");
    json_t *output = json_object_get(response, "output");
    json_t *prev_j = json_object_get(response, "previous_response_id");
    json_t *conv_j = json_object_get(response, "conversation");
    const char *prev = json_string_value(prev_j);
    const char *conv = json_string_value(json_object_get(conv_j, "id"));
    if (!json_is_object(response) || !store_id_ok(id) || !model || !status ||
        !json_is_integer(created) || !json_is_array(output) ||
        (prev_j && !json_is_null(prev_j) && !store_id_ok(prev)) ||
        (conv_j && !json_is_null(conv_j) && !store_id_ok(conv)))
        return nuri_error(NURI_ERR_INVALID_ARG,
                          "store: a response needs id, created_at, model, status and output "
                          "(and previous_response_id and conversation.id, when given, are ids)");

    // Output items were announced to the client with their ids (in a stream, before the response
    // was whole), so the store must not make up others: the stored response is the one returned.
    size_t i;
    json_t *item;
    json_array_foreach(output, i, item)
    {
        if (!store_id_ok(json_string_value(json_object_get(item, "id"))))
            return nuri_error(NURI_ERR_INVALID_ARG, "store: output[%zu] has no id", i);
    }

    // Everything that can be prepared is prepared before the write lock is taken.
    nuri_status st;
    json_t *in = store_items_with_ids(input, "input", &st);
    if (!in) return st;
    json_t *out = store_items_with_ids(output, "output", &st); // checks that items are objects
    char *text = out ? json_dumps(response, JSON_COMPACT) : NULL;
    if (out && !text) st = nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    if (st != NURI_OK) goto done;

    store_conn *c = NULL;
    st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, true);
    if (st == NURI_OK) {
        int64_t conv_seq = 0, seq = 0;
        if (prev) {
            st = resp_find(c, owner, prev, NULL, NULL, NULL);
            if (st == NURI_ERR_NOT_FOUND)
                st = nuri_error(NURI_ERR_NOT_FOUND, "previous response '%s' not found", prev);
        }
        if (st == NURI_OK && conv) {
            store_q *q = store_stmt(c, ST_CONV_GET);
            store_bind_text(q, 1, conv);
            store_bind_text(q, 2, owner);
            int rc = store_step(q);
            if (rc == STORE_ROW)
                conv_seq = store_col_int64(q, 0);
            else if (rc == STORE_DONE)
                st = nuri_error(NURI_ERR_NOT_FOUND, "conversation '%s' not found", conv);
            else
                st = store_sql_error(c, "find the conversation");
            store_reset(q);
        }
        if (st == NURI_OK) {
            store_q *q = store_stmt(c, ST_RESP_INSERT);
            store_bind_text(q, 1, id);
            store_bind_text(q, 2, owner);
            store_bind_int64(q, 3, json_integer_value(created));
            store_bind_text(q, 4, model);
            store_bind_text(q, 5, status);
            store_bind_text(q, 6, prev);
            store_bind_text(q, 7, conv);
            store_bind_text(q, 8, text);
            int rc = store_step_one(q, &seq);
            if (rc == STORE_ERR && c->fail == STORE_FAIL_CONSTRAINT)
                st = nuri_error(NURI_ERR_INVALID_ARG, "response '%s' is already stored", id);
            else if (rc != STORE_ROW)
                st = store_sql_error(c, "store a response");
        }
        if (st == NURI_OK) st = insert_items(c, seq, in);
        if (st == NURI_OK && conv) st = store_conv_append(c, conv_seq, in);
        if (st == NURI_OK && conv) st = store_conv_append(c, conv_seq, out);
        st = store_end(s, c, true, st);
    }
    store_conn_put(s, c);
done:
    free(text);
    json_decref(out);
    json_decref(in);
    return st;
}

/* ======================================================================== get, delete */

nuri_status nuri_store_response_get(nuri_store *s, const char *owner, const char *id,
                                    json_t **response)
{
    *response = NULL;
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) {
        st = resp_find(c, owner, id, NULL, response, NULL);
        st = store_end(s, c, false, st); // autocommit: only resets the statements
    }
    store_conn_put(s, c);
    if (st != NURI_OK) {
        json_decref(*response);
        *response = NULL;
    }
    return st;
}

nuri_status nuri_store_response_delete(nuri_store *s, const char *owner, const char *id)
{
    if (!store_id_ok(id)) return nuri_error(NURI_ERR_NOT_FOUND, "no response with this id");
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, true);
    if (st == NURI_OK) {
        store_q *q = store_stmt(c, ST_RESP_DELETE);
        store_bind_text(q, 1, id);
        store_bind_text(q, 2, owner);
        int rc = store_step_one(q, NULL);
        st = rc == STORE_ROW    ? NURI_OK
             : rc == STORE_DONE ? nuri_error(NURI_ERR_NOT_FOUND, "no response '%s'", id)
                                : store_sql_error(c, "delete a response");
        st = store_end(s, c, true, st);
    }
    store_conn_put(s, c);
    return st;
}

/* ======================================================================== input items */

nuri_status nuri_store_response_input_items(nuri_store *s, const char *owner, const char *id,
                                            const nuri_store_page *page, json_t **list)
{
    *list = NULL;
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, false);
    if (st == NURI_OK) {
        int64_t seq = 0;
        st = resp_find(c, owner, id, &seq, NULL, NULL);
        if (st == NURI_OK)
            st = store_page(c, ST_RESP_ITEM_POS, ST_RESP_ITEMS_ASC, ST_RESP_ITEMS_DESC, NULL, seq,
                            page, store_item_row, list);
        st = store_end(s, c, false, st);
    }
    store_conn_put(s, c);
    if (st != NURI_OK) {
        json_decref(*list);
        *list = NULL;
    }
    return st;
}

/* ======================================================================== chain */

typedef struct chain_link {
    int64_t seq;
    json_t *body;
    char id[NURI_STORE_ID_MAX];
} chain_link;

/* Appends the input items of response seq, then its output items, to items. */
static nuri_status chain_append(store_conn *c, const chain_link *l, json_t *items)
{
    store_q *q = store_stmt(c, ST_RESP_ITEMS_ALL);
    store_bind_int64(q, 1, l->seq);
    int rc;
    while ((rc = store_step(q)) == STORE_ROW) {
        json_t *item = store_json_parse(c, store_col_text(q, 0), "an item");
        if (!item) return NURI_ERR_FORMAT;
        if (json_array_append_new(items, item))
            return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    }
    store_reset(q);
    if (rc != STORE_DONE) return store_sql_error(c, "read input items");
    json_t *output = json_object_get(l->body, "output");
    if (!json_is_array(output))
        return nuri_error(NURI_ERR_FORMAT, "store %s: response '%s' has no output array", c->path,
                          l->id);
    if (json_array_extend(items, output)) return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    return NURI_OK;
}

static nuri_status chain_walk(store_conn *c, const char *owner, const char *id, int max_depth,
                              chain_link *links, int *n_links)
{
    char cur[NURI_STORE_ID_MAX];
    if (!store_id_ok(id)) return nuri_error(NURI_ERR_NOT_FOUND, "no response with this id");
    strcpy(cur, id);
    *n_links = 0;
    while (cur[0]) {
        for (int i = 0; i < *n_links; i++)
            if (strcmp(links[i].id, cur) == 0)
                return nuri_error(NURI_ERR_FORMAT,
                                  "store %s: the chain of previous responses of '%s' loops "
                                  "(the file is corrupt)",
                                  c->path, id);
        if (*n_links == max_depth)
            return nuri_error(NURI_ERR_LIMIT,
                              "response '%s' continues a chain of more than %d responses", id,
                              max_depth);
        chain_link *l = &links[*n_links];
        char prev[NURI_STORE_ID_MAX];
        nuri_status st = resp_find(c, owner, cur, &l->seq, &l->body, prev);
        if (st == NURI_ERR_NOT_FOUND && *n_links > 0) break; // deleted: the chain starts after it
        if (st != NURI_OK) return st;
        strcpy(l->id, cur);
        (*n_links)++;
        strcpy(cur, prev);
    }
    return NURI_OK;
}

nuri_status nuri_store_response_chain(nuri_store *s, const char *owner, const char *id,
                                      int max_depth, json_t **items)
{
    *items = NULL;
    if (max_depth < 1) return nuri_error(NURI_ERR_INVALID_ARG, "store: max_depth must be >= 1");
    chain_link *links = calloc((size_t)max_depth, sizeof *links);
    json_t *all = json_array();
    if (!links || !all) {
        free(links);
        json_decref(all);
        return nuri_error(NURI_ERR_NOMEM, "store: out of memory");
    }
    int n = 0;
    store_conn *c = NULL;
    nuri_status st = store_conn_get(s, &c);
    if (st == NURI_OK) st = store_begin(s, c, false); // one snapshot for the whole walk
    if (st == NURI_OK) {
        st = chain_walk(c, owner, id, max_depth, links, &n);
        for (int i = n - 1; i >= 0 && st == NURI_OK; i--) st = chain_append(c, &links[i], all);
        st = store_end(s, c, false, st);
    }
    store_conn_put(s, c);
    for (int i = 0; i < max_depth; i++) json_decref(links[i].body);
    free(links);
    if (st != NURI_OK) {
        json_decref(all);
        return st;
    }
    *items = all;
    return NURI_OK;
}
