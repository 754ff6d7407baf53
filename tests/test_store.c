/*
 * test_store.c: the conversation store (src/store/) on real SQLite files in a temporary
 * directory: round trips, chains of previous responses, ownership, pagination, cascading deletes,
 * schema migrations and refusals, corrupt files, concurrent writers, and durability under kill -9.
 *
 * With NURI_TEST_PG set to a PostgreSQL URL (tests/store_pg.test.sh starts a private server and
 * sets it), the same tests of the store's behaviour run on PostgreSQL instead, each on an empty
 * schema, followed by PostgreSQL's own: its schema table, refusals, an unreachable server, and
 * connections the server dropped. The tests that are about SQLite files run only on SQLite.
 *
 * Some tests open the same database directly (SQLite or libpq), to look at what the store wrote
 * or to build what an older nuri (or a corrupt disk) would have left there.
 */
#include "store/store.h"
#include "store/store_internal.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmp_dir[512];
static int n_files;
static const char *pg_url; // NURI_TEST_PG: the tests run on this PostgreSQL database

/* Runs sql on the PostgreSQL database directly; the first column of its first row, or -1. */
static int64_t pg_sql(const char *sql, bool *ok)
{
    PGconn *pg = PQconnectdb(pg_url);
    int64_t v = -1;
    *ok = false;
    if (PQstatus(pg) == CONNECTION_OK) {
        PGresult *res = PQexec(pg, sql);
        ExecStatusType es = PQresultStatus(res);
        *ok = es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK;
        if (!*ok) fprintf(stderr, "  pg: %s", PQresultErrorMessage(res));
        if (es == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
            v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    } else {
        fprintf(stderr, "  pg: %s", PQerrorMessage(pg));
    }
    PQfinish(pg);
    return v;
}

/* A fresh store: a file name in the temporary directory, or on PostgreSQL the URL of the test
 * database with its tables gone. */
static void new_path(char *out, size_t n)
{
    if (pg_url) {
        bool ok;
        pg_sql("SET client_min_messages = warning; DROP SCHEMA IF EXISTS public CASCADE; "
               "CREATE SCHEMA public;",
               &ok);
        if (!ok) fprintf(stderr, "  could not empty the test database\n");
        snprintf(out, n, "%s", pg_url);
        return;
    }
    snprintf(out, n, "%s/t%d.db", tmp_dir, n_files++);
}

static nuri_store *open_new(char *path, size_t n)
{
    new_path(path, n);
    nuri_store *s = NULL;
    nuri_status st = nuri_store_open(path, NULL, &s);
    if (st != NURI_OK) fprintf(stderr, "  open %s: %s\n", path, nuri_last_error());
    return s;
}

/* The first column of the first row of sql, run on path with SQLite directly; -1 on error. */
static int64_t sql_int(const char *path, const char *sql)
{
    if (pg_url) {
        bool ok;
        return pg_sql(sql, &ok);
    }
    sqlite3 *db = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

static int sql_exec(const char *path, const char *sql)
{
    if (pg_url) {
        bool ok;
        pg_sql(sql, &ok);
        return ok ? 0 : 1;
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/* ======================================================================== fixtures */

static json_t *user_msg(const char *text)
{
    return json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "type", "message", "role", "user", "content",
                     "type", "input_text", "text", text);
}

static json_t *assistant_msg(const char *id, const char *text)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:[]}]}", "type", "message", "id", id,
                     "status", "completed", "role", "assistant", "content", "type", "output_text",
                     "text", text, "annotations");
}

/* A completed Response object answering with text, as the server would return it. */
static json_t *make_response(const char *id, const char *prev, const char *conv, const char *text)
{
    char msg_id[NURI_STORE_ID_MAX];
    nuri_store_new_id("msg", msg_id);
    json_t *r = json_object();
    json_object_set_new(r, "id", json_string(id));
    json_object_set_new(r, "object", json_string("response"));
    json_object_set_new(r, "created_at", json_integer(1733200000));
    json_object_set_new(r, "status", json_string("completed"));
    json_object_set_new(r, "model", json_string("tiny-1b"));
    json_object_set_new(r, "error", json_null());
    json_object_set_new(r, "instructions", json_string("be brief"));
    json_object_set_new(r, "output", json_pack("[o]", assistant_msg(msg_id, text)));
    json_object_set_new(r, "temperature", json_real(0.7));
    json_object_set_new(r, "top_p", json_real(1.0));
    json_object_set_new(
        r, "usage",
        json_pack("{s:i, s:i, s:i}", "input_tokens", 12, "output_tokens", 5, "total_tokens", 17));
    json_object_set_new(r, "previous_response_id", prev ? json_string(prev) : json_null());
    if (conv) json_object_set_new(r, "conversation", json_pack("{s:s}", "id", conv));
    return r;
}

/* Stores a response with one user message (input) and one answer; its id in id. */
static nuri_status put_turn(nuri_store *s, const char *owner, const char *prev, const char *conv,
                            const char *question, const char *answer, char id[NURI_STORE_ID_MAX])
{
    nuri_store_new_id("resp", id);
    json_t *r = make_response(id, prev, conv, answer);
    json_t *in = json_pack("[o]", user_msg(question));
    nuri_status st = nuri_store_response_put(s, owner, r, in);
    json_decref(r);
    json_decref(in);
    return st;
}

/* The text of a message item (its first content part). */
static const char *item_text(const json_t *item)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(item, "content"), 0), "text"));
}

/* ======================================================================== basics */

TEST(new_ids_are_prefixed_random_hex)
{
    char a[NURI_STORE_ID_MAX], b[NURI_STORE_ID_MAX];
    REQUIRE(nuri_store_new_id("resp", a) == NURI_OK && nuri_store_new_id("resp", b) == NURI_OK);
    CHECK(strncmp(a, "resp_", 5) == 0 && strlen(a) == 5 + 48);
    CHECK(strspn(a + 5, "0123456789abcdef") == 48);
    CHECK(strcmp(a, b) != 0);
    CHECK(nuri_store_new_id("", a) == NURI_ERR_INVALID_ARG);
}

TEST(open_creates_a_private_wal_database_at_the_current_version)
{
    char path[600];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    char id[NURI_STORE_ID_MAX], side[700];
    REQUIRE(put_turn(s, "", NULL, NULL, "q", "a", id) == NURI_OK);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    snprintf(side, sizeof side, "%s-wal", path); // SQLite gives its side files the file's mode
    CHECK(stat(side, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    snprintf(side, sizeof side, "%s-shm", path);
    CHECK(stat(side, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    nuri_store_close(s);
    CHECK(sql_int(path, "PRAGMA user_version") == STORE_SCHEMA_VERSION);
    CHECK(sql_int(path, "PRAGMA application_id") == STORE_APPLICATION_ID);
    CHECK(sql_int(path, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'") ==
          1);
    // reopening an up-to-date store changes nothing
    REQUIRE(nuri_store_open(path, NULL, &s) == NURI_OK);
    nuri_store_close(s);
    CHECK(sql_int(path, "PRAGMA user_version") == STORE_SCHEMA_VERSION);
}

TEST(store_names_choose_the_backend)
{
    char path[600], name[620], id[NURI_STORE_ID_MAX];
    new_path(path, sizeof path);
    snprintf(name, sizeof name, "sqlite:%s", path);
    nuri_store *s = NULL;
    REQUIRE(nuri_store_open(name, NULL, &s) == NURI_OK); // sqlite:PATH is the file PATH
    CHECK(strcmp(nuri_store_name(s), path) == 0);
    CHECK(put_turn(s, "", NULL, NULL, "q", "a", id) == NURI_OK);
    nuri_store_close(s);
    CHECK(sql_int(path, "SELECT count(*) FROM responses") == 1);
    s = NULL;
    CHECK(nuri_store_open("sqlite:", NULL, &s) == NURI_ERR_INVALID_ARG && !s);
    CHECK(nuri_store_open("mysql://u@127.0.0.1/db", NULL, &s) == NURI_ERR_INVALID_ARG && !s);
    CHECK(strstr(nuri_last_error(), "postgresql://") != NULL);
}

TEST(open_in_a_missing_directory_is_an_io_error)
{
    char path[600];
    snprintf(path, sizeof path, "%s/no/such/dir/x.db", tmp_dir);
    nuri_store *s = NULL;
    CHECK(nuri_store_open(path, NULL, &s) == NURI_ERR_IO && !s);
    CHECK(strstr(nuri_last_error(), path) != NULL);
}

TEST(default_path_follows_xdg_data_home_and_creates_private_directories)
{
    char xdg[600], home[600], want[700];
    snprintf(xdg, sizeof xdg, "%s/xdg", tmp_dir);
    snprintf(home, sizeof home, "%s/home", tmp_dir);
    char *old_xdg = getenv("XDG_DATA_HOME") ? strdup(getenv("XDG_DATA_HOME")) : NULL;
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;

    setenv("XDG_DATA_HOME", xdg, 1);
    char *p = NULL;
    REQUIRE(nuri_store_default_path(&p) == NURI_OK);
    snprintf(want, sizeof want, "%s/nuri/nuri.db", xdg);
    CHECKF(strcmp(p, want) == 0, "%s", p);
    struct stat sb;
    snprintf(want, sizeof want, "%s/nuri", xdg);
    CHECK(stat(want, &sb) == 0 && S_ISDIR(sb.st_mode) && (sb.st_mode & 0777) == 0700);
    free(p);

    setenv("XDG_DATA_HOME", "relative/dir", 1); // the spec says: ignore it
    setenv("HOME", home, 1);
    mkdir(home, 0700);
    REQUIRE(nuri_store_default_path(&p) == NURI_OK);
    snprintf(want, sizeof want, "%s/.local/share/nuri/nuri.db", home);
    CHECKF(strcmp(p, want) == 0, "%s", p);
    // and the store opens there
    nuri_store *s = NULL;
    CHECK(nuri_store_open(p, NULL, &s) == NURI_OK);
    nuri_store_close(s);
    free(p);

    if (old_xdg)
        setenv("XDG_DATA_HOME", old_xdg, 1);
    else
        unsetenv("XDG_DATA_HOME");
    if (old_home) setenv("HOME", old_home, 1);
    free(old_xdg);
    free(old_home);
}

/* ======================================================================== responses */

TEST(response_round_trips_with_its_input_items)
{
    char path[600], id[NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    nuri_store_new_id("resp", id);
    json_t *r = make_response(id, NULL, NULL, "안녕하세요! 무엇을 도와드릴까요?");
    json_t *in =
        json_pack("[o, {s:s, s:s}, {s:s, s:s, s:s, s:s}, {s:s, s:s, s:s}]", user_msg("hello"),
                  "role", "user", "content", "easy form", "type", "function_call", "call_id",
                  "call_1", "name", "get_weather", "arguments", "{\"city\":\"Seoul\"}", "type",
                  "function_call_output", "call_id", "call_1", "output", "{\"temp\":3}");
    json_object_set_new(json_array_get(in, 0), "id", json_string("msg_given"));
    REQUIRE(nuri_store_response_put(s, "", r, in) == NURI_OK);

    json_t *got = NULL;
    REQUIRE(nuri_store_response_get(s, "", id, &got) == NURI_OK);
    CHECK(json_equal(got, r));
    json_decref(got);

    json_t *list = NULL;
    nuri_store_page page = {.limit = 20, .order = NURI_STORE_ASC};
    REQUIRE(nuri_store_response_input_items(s, "", id, &page, &list) == NURI_OK);
    json_t *data = json_object_get(list, "data");
    REQUIRE(json_array_size(data) == 4);
    CHECK(strcmp(json_string_value(json_object_get(list, "object")), "list") == 0);
    CHECK(json_is_false(json_object_get(list, "has_more")));
    // given ids are kept, missing ones are made from the item's type
    CHECK(strcmp(json_string_value(json_object_get(json_array_get(data, 0), "id")), "msg_given") ==
          0);
    CHECK(strncmp(json_string_value(json_object_get(json_array_get(data, 1), "id")), "msg_", 4) ==
          0);
    CHECK(strncmp(json_string_value(json_object_get(json_array_get(data, 2), "id")), "fc_", 3) ==
          0);
    CHECK(strncmp(json_string_value(json_object_get(json_array_get(data, 3), "id")), "fco_", 4) ==
          0);
    CHECK(strcmp(json_string_value(json_object_get(list, "first_id")), "msg_given") == 0);
    // apart from the ids, the items are what was given
    for (size_t i = 0; i < 4; i++) {
        json_t *a = json_copy(json_array_get(data, i));
        json_object_del(a, "id");
        json_t *b = json_copy(json_array_get(in, i));
        json_object_del(b, "id");
        CHECKF(json_equal(a, b), "item %zu", i);
        json_decref(a);
        json_decref(b);
    }
    // the caller's JSON was not touched
    CHECK(json_object_get(json_array_get(in, 1), "id") == NULL);
    json_decref(list);
    json_decref(r);
    json_decref(in);
    nuri_store_close(s);
}

TEST(response_put_refuses_bad_objects_and_duplicate_ids)
{
    char path[600], id[NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    REQUIRE(put_turn(s, "", NULL, NULL, "q", "a", id) == NURI_OK);
    json_t *r = make_response(id, NULL, NULL, "again");
    CHECK(nuri_store_response_put(s, "", r, NULL) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "already stored") != NULL);
    json_t *bad = json_copy(r);
    json_object_set_new(bad, "id", json_string("resp_other"));
    json_object_del(bad, "output");
    CHECK(nuri_store_response_put(s, "", bad, NULL) == NURI_ERR_INVALID_ARG);
    json_object_set_new(bad, "output", json_pack("[i]", 1)); // an item that is not an object
    CHECK(nuri_store_response_put(s, "", bad, NULL) == NURI_ERR_INVALID_ARG);
    json_object_set_new(bad, "output", json_pack("[o]", user_msg("an output item without id")));
    CHECK(nuri_store_response_put(s, "", bad, NULL) == NURI_ERR_INVALID_ARG);
    CHECK(strstr(nuri_last_error(), "output[0] has no id") != NULL);
    json_object_set_new(bad, "output", json_array());
    json_t *in = json_pack("[s]", "not an item");
    CHECK(nuri_store_response_put(s, "", bad, in) == NURI_ERR_INVALID_ARG);
    CHECK(sql_int(path, "SELECT count(*) FROM responses") == 1);
    json_decref(in);
    json_decref(bad);
    json_decref(r);
    nuri_store_close(s);
}

TEST(chain_returns_every_turn_from_the_first_in_order)
{
    char path[600], r1[NURI_STORE_ID_MAX], r2[NURI_STORE_ID_MAX], r3[NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    REQUIRE(put_turn(s, "k", NULL, NULL, "u1", "a1", r1) == NURI_OK);
    REQUIRE(put_turn(s, "k", r1, NULL, "u2", "a2", r2) == NURI_OK);
    REQUIRE(put_turn(s, "k", r2, NULL, "u3", "a3", r3) == NURI_OK);
    json_t *items = NULL;
    REQUIRE(nuri_store_response_chain(s, "k", r3, NURI_STORE_CHAIN_MAX, &items) == NURI_OK);
    const char *want[] = {"u1", "a1", "u2", "a2", "u3", "a3"};
    REQUIRE(json_array_size(items) == 6);
    for (int i = 0; i < 6; i++)
        CHECKF(strcmp(item_text(json_array_get(items, i)), want[i]) == 0, "%d", i);
    CHECK(strcmp(json_string_value(json_object_get(json_array_get(items, 1), "role")),
                 "assistant") == 0);
    json_decref(items);
    REQUIRE(nuri_store_response_chain(s, "k", r1, NURI_STORE_CHAIN_MAX, &items) == NURI_OK);
    CHECK(json_array_size(items) == 2);
    json_decref(items);
    // a chain longer than max_depth is refused, not cut
    CHECK(nuri_store_response_chain(s, "k", r3, 2, &items) == NURI_ERR_LIMIT && !items);
    CHECK(nuri_store_response_chain(s, "k", r3, 3, &items) == NURI_OK);
    json_decref(items);
    CHECK(nuri_store_response_chain(s, "k", "resp_missing", 10, &items) == NURI_ERR_NOT_FOUND);
    nuri_store_close(s);
}

TEST(chain_starts_after_a_deleted_response)
{
    char path[600], r1[NURI_STORE_ID_MAX], r2[NURI_STORE_ID_MAX], r3[NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    REQUIRE(put_turn(s, "", NULL, NULL, "u1", "a1", r1) == NURI_OK);
    REQUIRE(put_turn(s, "", r1, NULL, "u2", "a2", r2) == NURI_OK);
    REQUIRE(put_turn(s, "", r2, NULL, "u3", "a3", r3) == NURI_OK);
    REQUIRE(nuri_store_response_delete(s, "", r2) == NURI_OK);
    json_t *items = NULL;
    REQUIRE(nuri_store_response_chain(s, "", r3, 10, &items) == NURI_OK);
    CHECK(json_array_size(items) == 2 && strcmp(item_text(json_array_get(items, 0)), "u3") == 0);
    json_decref(items);
    CHECK(nuri_store_response_delete(s, "", r2) == NURI_ERR_NOT_FOUND);
    // a new turn cannot continue the deleted one
    char r4[NURI_STORE_ID_MAX];
    CHECK(put_turn(s, "", r2, NULL, "u4", "a4", r4) == NURI_ERR_NOT_FOUND);
    nuri_store_close(s);
}

TEST(chain_through_a_loop_is_a_format_error_not_a_hang)
{
    char path[600], r1[NURI_STORE_ID_MAX], r2[NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    REQUIRE(put_turn(s, "", NULL, NULL, "u1", "a1", r1) == NURI_OK);
    REQUIRE(put_turn(s, "", r1, NULL, "u2", "a2", r2) == NURI_OK);
    // only a corrupt file can hold a loop: make one behind the store's back (the ids are hex)
    char sql[400];
    snprintf(sql, sizeof sql, "UPDATE responses SET previous_response_id = '%s' WHERE id = '%s'",
             r2, r1);
    CHECK(sql_exec(path, sql) == 0);
    json_t *items = NULL;
    CHECK(nuri_store_response_chain(s, "", r2, 100, &items) == NURI_ERR_FORMAT && !items);
    CHECK(strstr(nuri_last_error(), "loops") != NULL);
    nuri_store_close(s);
}

/* ======================================================================== ownership */

TEST(another_owners_response_behaves_exactly_as_a_missing_one)
{
    char path[600], ra[NURI_STORE_ID_MAX], rb[NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    REQUIRE(put_turn(s, "key-a", NULL, NULL, "secret question", "secret answer", ra) == NURI_OK);
    json_t *got = NULL, *list = NULL, *items = NULL;
    nuri_store_page page = {.limit = 20};

    CHECK(nuri_store_response_get(s, "key-b", ra, &got) == NURI_ERR_NOT_FOUND && !got);
    char msg_b[1024];
    snprintf(msg_b, sizeof msg_b, "%s", nuri_last_error());
    CHECK(nuri_store_response_input_items(s, "key-b", ra, &page, &list) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_response_chain(s, "key-b", ra, 10, &items) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_response_delete(s, "key-b", ra) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_response_get(s, "", ra, &got) ==
          NURI_ERR_NOT_FOUND); // keyless is an owner too
    // continuing another key's response is refused as if it did not exist, and stores nothing
    CHECK(put_turn(s, "key-b", ra, NULL, "q", "a", rb) == NURI_ERR_NOT_FOUND);
    CHECK(sql_int(path, "SELECT count(*) FROM responses") == 1);

    // the owner still has it all
    REQUIRE(nuri_store_response_get(s, "key-a", ra, &got) == NURI_OK);
    json_decref(got);
    REQUIRE(nuri_store_response_delete(s, "key-a", ra) == NURI_OK);
    // and what key-b was told is exactly what anyone is told about a missing response
    CHECK(nuri_store_response_get(s, "key-a", ra, &got) == NURI_ERR_NOT_FOUND);
    CHECKF(strcmp(msg_b, nuri_last_error()) == 0, "'%s' vs '%s'", msg_b, nuri_last_error());
    nuri_store_close(s);
}

TEST(another_owners_conversation_behaves_exactly_as_a_missing_one_lists_included)
{
    char path[600];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    json_t *conv = NULL, *x = NULL;
    char a_ids[3][NURI_STORE_ID_MAX];
    for (int i = 0; i < 3; i++) {
        json_t *items = json_pack("[o]", user_msg("a's message"));
        REQUIRE(nuri_store_conversation_create(s, "key-a", NULL, items, &conv) == NURI_OK);
        snprintf(a_ids[i], sizeof a_ids[i], "%s", json_string_value(json_object_get(conv, "id")));
        json_decref(conv);
        json_decref(items);
    }
    for (int i = 0; i < 2; i++) {
        REQUIRE(nuri_store_conversation_create(s, "key-b", NULL, NULL, &conv) == NURI_OK);
        json_decref(conv);
    }
    nuri_store_page page = {.limit = 100};
    json_t *list = NULL;
    REQUIRE(nuri_store_conversation_list(s, "key-a", &page, &list) == NURI_OK);
    CHECK(json_array_size(json_object_get(list, "data")) == 3);
    json_decref(list);
    REQUIRE(nuri_store_conversation_list(s, "key-b", &page, &list) == NURI_OK);
    json_t *data = json_object_get(list, "data");
    CHECK(json_array_size(data) == 2);
    for (size_t i = 0; i < json_array_size(data); i++)
        for (int k = 0; k < 3; k++)
            CHECK(strcmp(json_string_value(json_object_get(json_array_get(data, i), "id")),
                         a_ids[k]) != 0);
    json_decref(list);
    REQUIRE(nuri_store_conversation_list(s, "", &page, &list) == NURI_OK);
    CHECK(json_array_size(json_object_get(list, "data")) == 0);
    json_decref(list);
    // a's id as a cursor in b's list is unknown there
    nuri_store_page after_a = {.after = a_ids[0], .limit = 10};
    CHECK(nuri_store_conversation_list(s, "key-b", &after_a, &list) == NURI_ERR_INVALID_ARG);

    const char *id = a_ids[1];
    json_t *meta = json_pack("{s:s}", "title", "stolen");
    json_t *more = json_pack("[o]", user_msg("injected"));
    CHECK(nuri_store_conversation_get(s, "key-b", id, &x) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_conversation_update(s, "key-b", id, meta, &x) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_conversation_items_add(s, "key-b", id, more, &x) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_conversation_items_list(s, "key-b", id, &page, &x) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_conversation_history(s, "key-b", id, 100, &x) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_conversation_delete(s, "key-b", id) == NURI_ERR_NOT_FOUND);
    // b cannot add a response to a's conversation either
    char r[NURI_STORE_ID_MAX];
    CHECK(put_turn(s, "key-b", NULL, id, "q", "a", r) == NURI_ERR_NOT_FOUND);
    // and nothing of a's changed
    REQUIRE(nuri_store_conversation_get(s, "key-a", id, &x) == NURI_OK);
    CHECK(json_object_size(json_object_get(x, "metadata")) == 0);
    json_decref(x);
    REQUIRE(nuri_store_conversation_history(s, "key-a", id, 100, &x) == NURI_OK);
    CHECK(json_array_size(x) == 1);
    const char *item_id = json_string_value(json_object_get(json_array_get(x, 0), "id"));
    json_t *item = NULL;
    CHECK(nuri_store_conversation_item_get(s, "key-b", id, item_id, &item) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_conversation_item_delete(s, "key-b", id, item_id, NULL) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_conversation_item_get(s, "key-a", id, item_id, &item) == NURI_OK);
    json_decref(item);
    json_decref(x);
    json_decref(meta);
    json_decref(more);
    nuri_store_close(s);
}

TEST(ids_and_owners_are_only_ever_data)
{
    char path[600], id[NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    REQUIRE(put_turn(s, "key-a", NULL, NULL, "q", "a", id) == NURI_OK);
    json_t *x = NULL;
    const char *hostile[] = {"' OR '1'='1", "x'; DROP TABLE responses; --", "%", "_", "*"};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        CHECK(nuri_store_response_get(s, "key-a", hostile[i], &x) == NURI_ERR_NOT_FOUND);
        CHECK(nuri_store_response_get(s, hostile[i], id, &x) == NURI_ERR_NOT_FOUND);
        CHECK(nuri_store_response_delete(s, hostile[i], id) == NURI_ERR_NOT_FOUND);
        nuri_store_page page = {.limit = 10};
        REQUIRE(nuri_store_conversation_list(s, hostile[i], &page, &x) == NURI_OK);
        CHECK(json_array_size(json_object_get(x, "data")) == 0);
        json_decref(x);
    }
    // an id longer than any the store keeps is simply not there
    char longid[300];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    CHECK(nuri_store_response_get(s, "key-a", longid, &x) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_conversation_get(s, "key-a", longid, &x) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_response_get(s, "key-a", "", &x) == NURI_ERR_NOT_FOUND);
    CHECK(sql_int(path, "SELECT count(*) FROM responses") == 1);
    REQUIRE(nuri_store_response_get(s, "key-a", id, &x) == NURI_OK);
    json_decref(x);
    nuri_store_close(s);
}

/* ======================================================================== pagination */

/* The texts of a page's items, joined: "u0,u1,u2". */
static void page_texts(const json_t *list, char *out, size_t n)
{
    out[0] = 0;
    json_t *data = json_object_get(list, "data");
    for (size_t i = 0; i < json_array_size(data); i++) {
        const char *t = item_text(json_array_get(data, i));
        size_t len = strlen(out);
        snprintf(out + len, n - len, "%s%s", i ? "," : "", t ? t : "?");
    }
}

TEST(input_items_page_forward_and_backward_like_openai_lists)
{
    char path[600], id[NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    nuri_store_new_id("resp", id);
    json_t *r = make_response(id, NULL, NULL, "answer");
    json_t *in = json_array();
    for (int i = 0; i < 7; i++) {
        char t[16];
        snprintf(t, sizeof t, "u%d", i);
        json_array_append_new(in, user_msg(t));
    }
    REQUIRE(nuri_store_response_put(s, "", r, in) == NURI_OK);

    const char *asc[] = {"u0,u1,u2", "u3,u4,u5", "u6"};
    const char *desc[] = {"u6,u5,u4", "u3,u2,u1", "u0"};
    for (int order = 0; order < 2; order++) {
        char after[NURI_STORE_ID_MAX] = "";
        for (int p = 0; p < 3; p++) {
            nuri_store_page page = {.after = after[0] ? after : NULL,
                                    .limit = 3,
                                    .order = order ? NURI_STORE_ASC : NURI_STORE_DESC};
            json_t *list = NULL;
            REQUIRE(nuri_store_response_input_items(s, "", id, &page, &list) == NURI_OK);
            char texts[64];
            page_texts(list, texts, sizeof texts);
            const char *want = order ? asc[p] : desc[p];
            CHECKF(strcmp(texts, want) == 0, "order %d page %d: %s, want %s", order, p, texts,
                   want);
            CHECK(json_is_true(json_object_get(list, "has_more")) == (p < 2));
            snprintf(after, sizeof after, "%s",
                     json_string_value(json_object_get(list, "last_id")));
            json_decref(list);
        }
    }
    json_t *list = NULL;
    nuri_store_page bad = {.limit = 0};
    CHECK(nuri_store_response_input_items(s, "", id, &bad, &list) == NURI_ERR_INVALID_ARG);
    bad.limit = NURI_STORE_LIST_MAX + 1;
    CHECK(nuri_store_response_input_items(s, "", id, &bad, &list) == NURI_ERR_INVALID_ARG);
    bad.limit = 5;
    bad.after = "msg_not_here";
    CHECK(nuri_store_response_input_items(s, "", id, &bad, &list) == NURI_ERR_INVALID_ARG);
    // an empty list has null ids
    char empty[NURI_STORE_ID_MAX];
    nuri_store_new_id("resp", empty);
    json_t *r2 = make_response(empty, NULL, NULL, "x");
    REQUIRE(nuri_store_response_put(s, "", r2, NULL) == NURI_OK);
    nuri_store_page page = {.limit = 20};
    REQUIRE(nuri_store_response_input_items(s, "", empty, &page, &list) == NURI_OK);
    CHECK(json_array_size(json_object_get(list, "data")) == 0);
    CHECK(json_is_null(json_object_get(list, "first_id")) &&
          json_is_false(json_object_get(list, "has_more")));
    json_decref(list);
    json_decref(r2);
    json_decref(r);
    json_decref(in);
    nuri_store_close(s);
}

TEST(conversation_lists_and_items_page_newest_first_by_default)
{
    char path[600];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    char ids[5][NURI_STORE_ID_MAX];
    for (int i = 0; i < 5; i++) {
        json_t *c = NULL;
        json_t *meta = json_pack("{s:i}", "n", i);
        REQUIRE(nuri_store_conversation_create(s, "", meta, NULL, &c) == NURI_OK);
        snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(c, "id")));
        json_decref(c);
        json_decref(meta);
    }
    nuri_store_page page = {.limit = 2}; // DESC
    json_t *list = NULL;
    int seen = 0, want = 4;
    for (;;) {
        REQUIRE(nuri_store_conversation_list(s, "", &page, &list) == NURI_OK);
        json_t *data = json_object_get(list, "data");
        for (size_t i = 0; i < json_array_size(data); i++, seen++, want--)
            CHECK(strcmp(json_string_value(json_object_get(json_array_get(data, i), "id")),
                         ids[want]) == 0);
        bool more = json_is_true(json_object_get(list, "has_more"));
        static char after[NURI_STORE_ID_MAX];
        snprintf(after, sizeof after, "%s", json_string_value(json_object_get(list, "last_id")));
        page.after = after;
        json_decref(list);
        if (!more) break;
    }
    CHECK(seen == 5);

    // items of one conversation, added in three calls
    json_t *a = json_pack("[o,o]", user_msg("i0"), user_msg("i1"));
    json_t *b = json_pack("[o]", user_msg("i2"));
    json_t *c = json_pack("[o,o]", user_msg("i3"), user_msg("i4"));
    REQUIRE(nuri_store_conversation_items_add(s, "", ids[0], a, NULL) == NURI_OK);
    REQUIRE(nuri_store_conversation_items_add(s, "", ids[0], b, NULL) == NURI_OK);
    REQUIRE(nuri_store_conversation_items_add(s, "", ids[0], c, &list) == NURI_OK);
    char texts[64];
    page_texts(list, texts, sizeof texts);
    CHECK(strcmp(texts, "i3,i4") == 0);
    json_decref(list);
    nuri_store_page ip = {.limit = 3};
    REQUIRE(nuri_store_conversation_items_list(s, "", ids[0], &ip, &list) == NURI_OK);
    page_texts(list, texts, sizeof texts);
    CHECKF(strcmp(texts, "i4,i3,i2") == 0, "%s", texts);
    CHECK(json_is_true(json_object_get(list, "has_more")));
    char after[NURI_STORE_ID_MAX];
    snprintf(after, sizeof after, "%s", json_string_value(json_object_get(list, "last_id")));
    json_decref(list);
    ip.after = after;
    REQUIRE(nuri_store_conversation_items_list(s, "", ids[0], &ip, &list) == NURI_OK);
    page_texts(list, texts, sizeof texts);
    CHECKF(strcmp(texts, "i1,i0") == 0, "%s", texts);
    CHECK(json_is_false(json_object_get(list, "has_more")));
    json_decref(list);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    nuri_store_close(s);
}

/* ======================================================================== conversations */

TEST(conversation_round_trip_update_and_item_delete)
{
    char path[600];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    json_t *meta = json_pack("{s:s}", "title", "저녁 메뉴");
    json_t *items = json_pack("[o]", user_msg("what's for dinner?"));
    json_t *conv = NULL;
    REQUIRE(nuri_store_conversation_create(s, "k", meta, items, &conv) == NURI_OK);
    const char *id = json_string_value(json_object_get(conv, "id"));
    CHECK(strncmp(id, "conv_", 5) == 0);
    CHECK(strcmp(json_string_value(json_object_get(conv, "object")), "conversation") == 0);
    CHECK(json_is_integer(json_object_get(conv, "created_at")));
    CHECK(json_equal(json_object_get(conv, "metadata"), meta));
    json_t *got = NULL;
    REQUIRE(nuri_store_conversation_get(s, "k", id, &got) == NURI_OK);
    CHECK(json_equal(got, conv));
    json_decref(got);

    json_t *meta2 = json_pack("{s:s}", "title", "renamed");
    REQUIRE(nuri_store_conversation_update(s, "k", id, meta2, &got) == NURI_OK);
    CHECK(json_equal(json_object_get(got, "metadata"), meta2));
    json_decref(got);

    // an id already in the conversation is refused, and nothing of that call is added
    json_t *h = NULL;
    REQUIRE(nuri_store_conversation_history(s, "k", id, 100, &h) == NURI_OK);
    const char *first = json_string_value(json_object_get(json_array_get(h, 0), "id"));
    json_t *dup = json_pack("[o,o]", user_msg("new"), user_msg("dup"));
    json_object_set_new(json_array_get(dup, 1), "id", json_string(first));
    CHECK(nuri_store_conversation_items_add(s, "k", id, dup, NULL) == NURI_ERR_INVALID_ARG);
    json_t *h2 = NULL;
    REQUIRE(nuri_store_conversation_history(s, "k", id, 100, &h2) == NURI_OK);
    CHECK(json_array_size(h2) == 1);
    json_decref(h2);

    json_t *item = NULL;
    REQUIRE(nuri_store_conversation_item_get(s, "k", id, first, &item) == NURI_OK);
    CHECK(strcmp(item_text(item), "what's for dinner?") == 0);
    json_decref(item);
    REQUIRE(nuri_store_conversation_item_delete(s, "k", id, first, &got) == NURI_OK);
    CHECK(strcmp(json_string_value(json_object_get(got, "id")), id) == 0);
    json_decref(got);
    CHECK(nuri_store_conversation_item_get(s, "k", id, first, &item) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_conversation_item_delete(s, "k", id, first, NULL) == NURI_ERR_NOT_FOUND);
    // history is bounded
    json_t *three = json_pack("[o,o,o]", user_msg("1"), user_msg("2"), user_msg("3"));
    REQUIRE(nuri_store_conversation_items_add(s, "k", id, three, NULL) == NURI_OK);
    json_decref(h);
    CHECK(nuri_store_conversation_history(s, "k", id, 2, &h) == NURI_ERR_LIMIT && !h);
    REQUIRE(nuri_store_conversation_history(s, "k", id, 3, &h) == NURI_OK);
    CHECK(json_array_size(h) == 3);
    json_decref(h);
    json_decref(three);
    json_decref(dup);
    json_decref(meta);
    json_decref(meta2);
    json_decref(items);
    json_decref(conv);
    nuri_store_close(s);
}

TEST(a_response_in_a_conversation_appends_its_input_then_its_output)
{
    char path[600], r1[NURI_STORE_ID_MAX], r2[NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    json_t *conv = NULL;
    json_t *items = json_pack("[o]", user_msg("context"));
    REQUIRE(nuri_store_conversation_create(s, "", NULL, items, &conv) == NURI_OK);
    const char *cid = json_string_value(json_object_get(conv, "id"));
    REQUIRE(put_turn(s, "", NULL, cid, "u1", "a1", r1) == NURI_OK);
    REQUIRE(put_turn(s, "", NULL, cid, "u2", "a2", r2) == NURI_OK);
    json_t *h = NULL;
    REQUIRE(nuri_store_conversation_history(s, "", cid, 100, &h) == NURI_OK);
    char texts[64];
    json_t *wrap = json_pack("{s:O}", "data", h);
    page_texts(wrap, texts, sizeof texts);
    CHECKF(strcmp(texts, "context,u1,a1,u2,a2") == 0, "%s", texts);
    // the response says which conversation it belongs to
    json_t *got = NULL;
    REQUIRE(nuri_store_response_get(s, "", r2, &got) == NURI_OK);
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(got, "conversation"), "id")),
                 cid) == 0);
    json_decref(got);
    // a missing conversation stores nothing
    char r3[NURI_STORE_ID_MAX];
    CHECK(put_turn(s, "", NULL, "conv_missing", "u", "a", r3) == NURI_ERR_NOT_FOUND);
    CHECK(nuri_store_response_get(s, "", r3, &got) == NURI_ERR_NOT_FOUND);
    json_decref(wrap);
    json_decref(h);
    json_decref(items);
    json_decref(conv);
    nuri_store_close(s);
}

TEST(deletes_cascade_to_items)
{
    char path[600], r1[NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    json_t *conv = NULL;
    json_t *items = json_pack("[o,o]", user_msg("a"), user_msg("b"));
    REQUIRE(nuri_store_conversation_create(s, "", NULL, items, &conv) == NURI_OK);
    const char *cid = json_string_value(json_object_get(conv, "id"));
    REQUIRE(put_turn(s, "", NULL, cid, "u1", "a1", r1) == NURI_OK);
    CHECK(sql_int(path, "SELECT count(*) FROM response_items") == 1);
    CHECK(sql_int(path, "SELECT count(*) FROM conversation_items") == 4);
    REQUIRE(nuri_store_response_delete(s, "", r1) == NURI_OK);
    CHECK(sql_int(path, "SELECT count(*) FROM response_items") == 0);
    CHECK(sql_int(path, "SELECT count(*) FROM conversation_items") == 4); // the conversation's own
    REQUIRE(nuri_store_conversation_delete(s, "", cid) == NURI_OK);
    CHECK(sql_int(path, "SELECT count(*) FROM conversation_items") == 0);
    CHECK(sql_int(path, "SELECT count(*) FROM conversations") == 0);
    json_t *x = NULL;
    CHECK(nuri_store_conversation_get(s, "", cid, &x) == NURI_ERR_NOT_FOUND);
    json_decref(items);
    json_decref(conv);
    nuri_store_close(s);
}

/* ======================================================================== schema and files */

TEST(a_version_1_database_is_migrated_and_keeps_its_responses)
{
    char path[600];
    new_path(path, sizeof path);
    // what nuri with schema version 1 (responses only) wrote: built with its own migration
    store_conn c = {.path = path};
    REQUIRE(sqlite3_open(path, &c.db) == SQLITE_OK);
    REQUIRE(store_migrate_to(&c, 1) == NURI_OK);
    sqlite3_close(c.db);
    CHECK(sql_int(path, "PRAGMA user_version") == 1);
    CHECK(sql_exec(path,
                   "INSERT INTO responses (seq, id, owner, created_at, model, status, "
                   "previous_response_id, body) VALUES (1, 'resp_old', 'k', 1700000000, 'm', "
                   "'completed', NULL, '{\"id\":\"resp_old\",\"object\":\"response\",\"output\":"
                   "[{\"type\":\"message\",\"id\":\"msg_o\",\"role\":\"assistant\",\"content\":"
                   "[{\"type\":\"output_text\",\"text\":\"old answer\"}]}]}');"
                   "INSERT INTO response_items VALUES (1, 0, 'msg_i', 'message', "
                   "'{\"id\":\"msg_i\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
                   "\"text\":\"old question\"}]}');") == SQLITE_OK);

    nuri_store *s = NULL;
    REQUIRE(nuri_store_open(path, NULL, &s) == NURI_OK);
    CHECK(sql_int(path, "PRAGMA user_version") == STORE_SCHEMA_VERSION);
    json_t *items = NULL;
    REQUIRE(nuri_store_response_chain(s, "k", "resp_old", 10, &items) == NURI_OK);
    CHECK(json_array_size(items) == 2 &&
          strcmp(item_text(json_array_get(items, 0)), "old question") == 0 &&
          strcmp(item_text(json_array_get(items, 1)), "old answer") == 0);
    json_decref(items);
    // and what version 2 added works on it
    char r2[NURI_STORE_ID_MAX];
    json_t *conv = NULL;
    REQUIRE(nuri_store_conversation_create(s, "k", NULL, NULL, &conv) == NURI_OK);
    CHECK(put_turn(s, "k", "resp_old", NULL, "new q", "new a", r2) == NURI_OK);
    json_decref(conv);
    nuri_store_close(s);
}

TEST(a_database_from_a_newer_nuri_is_refused_untouched)
{
    char path[600];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    nuri_store_close(s);
    REQUIRE(sql_exec(path, "PRAGMA user_version = 99") == SQLITE_OK);
    CHECK(nuri_store_open(path, NULL, &s) == NURI_ERR_UNSUPPORTED && !s);
    CHECK(strstr(nuri_last_error(), "newer nuri") != NULL);
    CHECK(strstr(nuri_last_error(), path) != NULL);
    CHECK(sql_int(path, "PRAGMA user_version") == 99);
}

TEST(files_that_are_not_nuri_stores_are_clear_errors)
{
    char path[600];
    nuri_store *s = NULL;
    // random bytes
    new_path(path, sizeof path);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    srand(7);
    for (int i = 0; i < 8192; i++) fputc(rand() & 255, f);
    fclose(f);
    CHECK(nuri_store_open(path, NULL, &s) == NURI_ERR_FORMAT && !s);
    CHECKF(strstr(nuri_last_error(), "not a nuri store") != NULL, "%s", nuri_last_error());
    // a text file
    new_path(path, sizeof path);
    f = fopen(path, "w");
    REQUIRE(f);
    fputs("[server]\nport = 8080\n", f);
    fclose(f);
    CHECK(nuri_store_open(path, NULL, &s) == NURI_ERR_FORMAT && !s);
    // another program's SQLite database is left as it was
    new_path(path, sizeof path);
    REQUIRE(sql_exec(path, "CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('mine');") ==
            SQLITE_OK);
    CHECK(nuri_store_open(path, NULL, &s) == NURI_ERR_FORMAT && !s);
    CHECK(strstr(nuri_last_error(), "another program") != NULL);
    CHECK(sql_int(path, "SELECT count(*) FROM sqlite_master") == 1);
    // an empty file is a new store
    new_path(path, sizeof path);
    f = fopen(path, "w");
    REQUIRE(f);
    fclose(f);
    CHECK(nuri_store_open(path, NULL, &s) == NURI_OK);
    nuri_store_close(s);
}

TEST(a_store_with_corrupt_pages_fails_with_errors_not_crashes)
{
    char path[600], ids[200][NURI_STORE_ID_MAX];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    for (int i = 0; i < 200; i++) REQUIRE(put_turn(s, "", NULL, NULL, big, big, ids[i]) == NURI_OK);
    nuri_store_close(s); // checkpoints: everything is in the main file now
    // overwrite pages 3.. of the file with garbage, keeping the header page
    int fd = open(path, O_WRONLY);
    REQUIRE(fd >= 0);
    struct stat sb;
    fstat(fd, &sb);
    unsigned char junk[4096];
    srand(11);
    for (off_t off = 2 * 4096; off + 4096 <= sb.st_size; off += 3 * 4096) {
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)rand();
        CHECK(pwrite(fd, junk, sizeof junk, off) == (ssize_t)sizeof junk);
    }
    close(fd);
    nuri_status st = nuri_store_open(path, NULL, &s);
    if (st == NURI_OK) {
        int ok = 0, bad = 0;
        for (int i = 0; i < 200; i++) {
            json_t *r = NULL;
            st = nuri_store_response_get(s, "", ids[i], &r);
            CHECKF(st == NURI_OK || st == NURI_ERR_FORMAT || st == NURI_ERR_NOT_FOUND, "%s",
                   nuri_last_error());
            if (st == NURI_OK)
                ok++;
            else
                bad++;
            json_decref(r);
        }
        CHECKF(bad > 0, "ok %d bad %d", ok, bad);
        nuri_store_close(s);
    } else {
        CHECKF(st == NURI_ERR_FORMAT, "%s", nuri_last_error());
    }
}

/* ======================================================================== concurrency */

#define WRITERS 8
#define TURNS 30

typedef struct writer_arg {
    nuri_store *s;
    int n;
    int failures;
    char last[NURI_STORE_ID_MAX];
} writer_arg;

static void *writer(void *p)
{
    writer_arg *a = p;
    char owner[16], prev[NURI_STORE_ID_MAX] = "";
    snprintf(owner, sizeof owner, "key-%d", a->n);
    for (int t = 0; t < TURNS; t++) {
        char q[32], ans[32], id[NURI_STORE_ID_MAX];
        snprintf(q, sizeof q, "q%d-%d", a->n, t);
        snprintf(ans, sizeof ans, "a%d-%d", a->n, t);
        if (put_turn(a->s, owner, prev[0] ? prev : NULL, NULL, q, ans, id) != NURI_OK) {
            a->failures++;
            fprintf(stderr, "  writer %d: %s\n", a->n, nuri_last_error());
            continue;
        }
        // read it back at once, and the growing chain, while the others write
        json_t *r = NULL, *items = NULL;
        if (nuri_store_response_get(a->s, owner, id, &r) != NURI_OK) a->failures++;
        if (nuri_store_response_chain(a->s, owner, id, 100, &items) != NURI_OK ||
            json_array_size(items) != 2 * (size_t)(t + 1))
            a->failures++;
        json_decref(r);
        json_decref(items);
        strcpy(prev, id);
    }
    strcpy(a->last, prev);
    return NULL;
}

TEST(concurrent_writers_and_readers_share_one_store)
{
    char path[600];
    new_path(path, sizeof path);
    nuri_store *s = NULL, *other = NULL;
    nuri_store_params params = {.n_conns = 3};
    REQUIRE(nuri_store_open(path, &params, &s) == NURI_OK);
    // a second handle on the same file stands for a second process (`nuri chat` beside the
    // server): its writers meet the first's in SQLite's lock, not in the store's mutex
    REQUIRE(nuri_store_open(path, &params, &other) == NURI_OK);
    pthread_t th[WRITERS];
    writer_arg args[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        args[i] = (writer_arg){.s = i % 4 == 3 ? other : s, .n = i};
        REQUIRE(pthread_create(&th[i], NULL, writer, &args[i]) == 0);
    }
    for (int i = 0; i < WRITERS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < WRITERS; i++) CHECKF(args[i].failures == 0, "writer %d", i);
    CHECK(sql_int(path, "SELECT count(*) FROM responses") == WRITERS * TURNS);
    // every chain is whole and in order
    for (int i = 0; i < WRITERS; i++) {
        char owner[16];
        snprintf(owner, sizeof owner, "key-%d", i);
        json_t *items = NULL;
        REQUIRE(nuri_store_response_chain(s, owner, args[i].last, 100, &items) == NURI_OK);
        CHECK(json_array_size(items) == 2 * TURNS);
        for (int t = 0; t < TURNS && (size_t)(2 * t) < json_array_size(items); t++) {
            char q[32];
            snprintf(q, sizeof q, "q%d-%d", i, t);
            CHECK(strcmp(item_text(json_array_get(items, 2 * t)), q) == 0);
        }
        json_decref(items);
    }
    nuri_store_close(other);
    nuri_store_close(s);
}

TEST(a_write_lock_held_elsewhere_lets_reads_on_and_fails_writes_after_the_busy_timeout)
{
    char path[600], id[NURI_STORE_ID_MAX], id2[NURI_STORE_ID_MAX];
    new_path(path, sizeof path);
    nuri_store *s = NULL;
    nuri_store_params params = {.n_conns = 2, .busy_timeout_ms = 300};
    REQUIRE(nuri_store_open(path, &params, &s) == NURI_OK);
    REQUIRE(put_turn(s, "", NULL, NULL, "q", "a", id) == NURI_OK);
    // another process holds the write lock (and has written, uncommitted)
    sqlite3 *db = NULL;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "BEGIN IMMEDIATE; DELETE FROM response_items;", NULL, NULL, NULL) ==
            SQLITE_OK);
    json_t *items = NULL;
    CHECK(nuri_store_response_chain(s, "", id, 10, &items) == NURI_OK); // reads go on, and
    CHECK(json_array_size(items) == 2); // see only what was committed
    json_decref(items);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(put_turn(s, "", id, NULL, "q2", "a2", id2) == NURI_ERR_IO);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    CHECKF(waited >= 0.25 && waited < 5, "waited %.3f s", waited);
    CHECKF(strstr(nuri_last_error(), "locked") != NULL, "%s", nuri_last_error());
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    // once the lock is gone, writing works again on the same store
    CHECK(put_turn(s, "", id, NULL, "q2", "a2", id2) == NURI_OK);
    nuri_store_close(s);
}

/* ======================================================================== durability */

#define KILL_THREADS 3

typedef struct durability_arg {
    nuri_store *s;
    int fd, round, thread;
} durability_arg;

/* One writer of the child: stores turns (each continuing its last) as fast as it can and writes
 * "thread turn id" to the pipe after the store acknowledged each. */
static void *durability_writer(void *p)
{
    durability_arg *a = p;
    char prev[NURI_STORE_ID_MAX] = "";
    for (int t = 0;; t++) {
        char q[64], ans[64], id[NURI_STORE_ID_MAX], line[NURI_STORE_ID_MAX + 32];
        snprintf(q, sizeof q, "round %d thread %d question %d", a->round, a->thread, t);
        snprintf(ans, sizeof ans, "round %d thread %d answer %d", a->round, a->thread, t);
        if (put_turn(a->s, "owner", prev[0] ? prev : NULL, NULL, q, ans, id) != NURI_OK) _exit(3);
        int n = snprintf(line, sizeof line, "%d %d %s\n", a->thread, t, id);
        if (write(a->fd, line, (size_t)n) != n) _exit(4); // one write under PIPE_BUF: atomic
        strcpy(prev, id);
    }
    return NULL;
}

/* The child process: KILL_THREADS writers on one store, as the server's workers. Never returns. */
static void durability_child(const char *path, int fd, int round)
{
    nuri_store *s = NULL;
    if (nuri_store_open(path, NULL, &s) != NURI_OK) _exit(2);
    pthread_t th[KILL_THREADS];
    durability_arg args[KILL_THREADS];
    for (int i = 0; i < KILL_THREADS; i++) {
        args[i] = (durability_arg){.s = s, .fd = fd, .round = round, .thread = i};
        if (pthread_create(&th[i], NULL, durability_writer, &args[i])) _exit(5);
    }
    for (;;) pause();
}

TEST(every_acknowledged_write_survives_kill_9)
{
    char path[600];
    new_path(path, sizeof path);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    for (int round = 0; round < 5; round++) {
        int fds[2];
        REQUIRE(pipe(fds) == 0);
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            durability_child(path, fds[1], round);
        }
        close(fds[1]);
        // wait for the first acknowledgement, then kill at a random moment within 300 ms
        FILE *acks = fdopen(fds[0], "r");
        REQUIRE(acks);
        int c = fgetc(acks);
        REQUIRE(c != EOF);
        ungetc(c, acks);
        struct timespec ts = {0, (long)(rand() % 300) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child ended otherwise: %d",
               status);

        // every id the child acknowledged is there, whole, and each thread's chain is complete
        nuri_store *s = NULL;
        REQUIRE(nuri_store_open(path, NULL, &s) == NURI_OK);
        int th, t, n_acked[KILL_THREADS] = {0};
        char id[NURI_STORE_ID_MAX], last[KILL_THREADS][NURI_STORE_ID_MAX];
        while (fscanf(acks, "%d %d %95s", &th, &t, id) == 3) {
            REQUIRE(th >= 0 && th < KILL_THREADS);
            CHECKF(t == n_acked[th], "thread %d: ack %d out of order", th, t);
            json_t *r = NULL;
            nuri_status st = nuri_store_response_get(s, "owner", id, &r);
            CHECKF(st == NURI_OK, "round %d (seed %u): acknowledged %s lost: %s", round, seed, id,
                   nuri_last_error());
            char ans[64];
            snprintf(ans, sizeof ans, "round %d thread %d answer %d", round, th, t);
            if (r)
                CHECK(strcmp(item_text(json_array_get(json_object_get(r, "output"), 0)), ans) == 0);
            json_decref(r);
            strcpy(last[th], id);
            n_acked[th]++;
        }
        fclose(acks);
        for (int i = 0; i < KILL_THREADS; i++) {
            if (n_acked[i] == 0) continue; // killed before this thread's first answer
            json_t *items = NULL;
            REQUIRE(nuri_store_response_chain(s, "owner", last[i], 100000, &items) == NURI_OK);
            CHECKF(json_array_size(items) == 2 * (size_t)n_acked[i], "chain %zu, acked %d",
                   json_array_size(items), n_acked[i]);
            json_decref(items);
        }
        nuri_store_close(s);
        if (test_cur_failed) break;
    }
}

/* ======================================================================== PostgreSQL */

TEST(pg_schema_table_holds_the_version_and_a_newer_one_is_refused)
{
    char path[600];
    nuri_store *s = open_new(path, sizeof path);
    REQUIRE(s);
    nuri_store_close(s);
    CHECK(sql_int(path, "SELECT version FROM nuri_schema") == STORE_SCHEMA_VERSION);
    CHECK(sql_int(path, "SELECT count(*) FROM nuri_schema") == 1);
    REQUIRE(nuri_store_open(path, NULL, &s) == NURI_OK); // up to date: nothing to do
    nuri_store_close(s);
    REQUIRE(sql_exec(path, "UPDATE nuri_schema SET version = 99") == 0);
    s = NULL;
    CHECK(nuri_store_open(path, NULL, &s) == NURI_ERR_UNSUPPORTED && !s);
    CHECK(strstr(nuri_last_error(), "newer nuri") != NULL);
    CHECK(sql_int(path, "SELECT version FROM nuri_schema") == 99);
}

TEST(pg_another_programs_tables_are_refused_untouched)
{
    char path[600];
    new_path(path, sizeof path);
    REQUIRE(sql_exec(path,
                     "CREATE TABLE responses (x integer); INSERT INTO responses VALUES (7)") == 0);
    nuri_store *s = NULL;
    CHECK(nuri_store_open(path, NULL, &s) == NURI_ERR_FORMAT && !s);
    CHECK(strstr(nuri_last_error(), "another program") != NULL);
    CHECK(sql_int(path, "SELECT x FROM responses") == 7);
}

TEST(pg_an_unreachable_server_is_unavailable_and_the_password_stays_out_of_messages)
{
    // port 1: nothing listens there
    nuri_store *s = NULL;
    const char *url = "postgresql://nuri:secret-pw@127.0.0.1:1/postgres?connect_timeout=2";
    CHECK(nuri_store_open(url, NULL, &s) == NURI_ERR_UNAVAILABLE && !s);
    CHECK(strstr(nuri_last_error(), "cannot be reached") != NULL);
    CHECK(strstr(nuri_last_error(), "postgresql://nuri@127.0.0.1:1/postgres:") != NULL);
    CHECKF(strstr(nuri_last_error(), "secret-pw") == NULL, "%s", nuri_last_error());
    url = "postgresql://nuri@127.0.0.1:1/postgres?password=secret-pw&connect_timeout=2";
    CHECK(nuri_store_open(url, NULL, &s) == NURI_ERR_UNAVAILABLE && !s);
    CHECKF(strstr(nuri_last_error(), "secret-pw") == NULL, "%s", nuri_last_error());
}

TEST(pg_connections_the_server_dropped_are_reestablished)
{
    char path[600], id[NURI_STORE_ID_MAX], id2[NURI_STORE_ID_MAX];
    nuri_store_params params = {.n_conns = 3};
    new_path(path, sizeof path);
    nuri_store *s = NULL;
    REQUIRE(nuri_store_open(path, &params, &s) == NURI_OK);
    REQUIRE(put_turn(s, "", NULL, NULL, "q", "a", id) == NURI_OK);
    // an administrator (or a database restart) ends every session of the store
    bool ok;
    int64_t ended = pg_sql("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM "
                           "pg_stat_activity WHERE application_name = 'nuri') t",
                           &ok);
    CHECKF(ended == 3, "ended %lld", (long long)ended);
    usleep(200 * 1000);
    // every pooled connection is re-established when it is next borrowed: no call fails
    for (int i = 0; i < 6; i++) {
        json_t *items = NULL;
        CHECKF(nuri_store_response_chain(s, "", id, 10, &items) == NURI_OK, "%s",
               nuri_last_error());
        json_decref(items);
    }
    CHECK(put_turn(s, "", id, NULL, "q2", "a2", id2) == NURI_OK);
    CHECK(nuri_store_check(s) == NURI_OK);
    nuri_store_close(s);
}

/* ======================================================================== main */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/nuri-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    pg_url = getenv("NURI_TEST_PG");
    if (pg_url && !*pg_url) pg_url = NULL;
    RUN(new_ids_are_prefixed_random_hex);
    if (!pg_url) {
        RUN(open_creates_a_private_wal_database_at_the_current_version);
        RUN(store_names_choose_the_backend);
        RUN(open_in_a_missing_directory_is_an_io_error);
        RUN(default_path_follows_xdg_data_home_and_creates_private_directories);
    }
    RUN(response_round_trips_with_its_input_items);
    RUN(response_put_refuses_bad_objects_and_duplicate_ids);
    RUN(chain_returns_every_turn_from_the_first_in_order);
    RUN(chain_starts_after_a_deleted_response);
    RUN(chain_through_a_loop_is_a_format_error_not_a_hang);
    RUN(another_owners_response_behaves_exactly_as_a_missing_one);
    RUN(another_owners_conversation_behaves_exactly_as_a_missing_one_lists_included);
    RUN(ids_and_owners_are_only_ever_data);
    RUN(input_items_page_forward_and_backward_like_openai_lists);
    RUN(conversation_lists_and_items_page_newest_first_by_default);
    RUN(conversation_round_trip_update_and_item_delete);
    RUN(a_response_in_a_conversation_appends_its_input_then_its_output);
    RUN(deletes_cascade_to_items);
    if (!pg_url) {
        RUN(a_version_1_database_is_migrated_and_keeps_its_responses);
        RUN(a_database_from_a_newer_nuri_is_refused_untouched);
        RUN(files_that_are_not_nuri_stores_are_clear_errors);
        RUN(a_store_with_corrupt_pages_fails_with_errors_not_crashes);
    }
    RUN(concurrent_writers_and_readers_share_one_store);
    if (!pg_url)
        RUN(a_write_lock_held_elsewhere_lets_reads_on_and_fails_writes_after_the_busy_timeout);
    RUN(every_acknowledged_write_survives_kill_9);
    if (pg_url) {
        RUN(pg_schema_table_holds_the_version_and_a_newer_one_is_refused);
        RUN(pg_another_programs_tables_are_refused_untouched);
        RUN(pg_an_unreachable_server_is_unavailable_and_the_password_stays_out_of_messages);
        RUN(pg_connections_the_server_dropped_are_reestablished);
    }
    if (!test_failed)
        nftw(tmp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else
        printf("store files kept in %s\n", tmp_dir);
    TEST_DONE();
}
