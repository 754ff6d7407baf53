/*
 * test_hub.c: the parts of `nuri pull` that need no network: SHA-256 against the FIPS 180-2
 * example vectors, hub names parsed or left to be local paths, the quant-name matcher, split file
 * names, and which files hub_pick chooses from a repository's list (or which error it gives).
 * tests/pull.test.sh drives the network side against tests/tools/fake_hub.py.
 */
#include "base/sha256.h"
#include "hub/hub.h"
#include "hub/hub_parse.h"
#include "test.h"

/* ---- SHA-256 -------------------------------------------------------------------------------- */

static void sha_hex(const void *data, size_t n, char hex[65])
{
    nuri_sha256 s;
    uint8_t d[32];
    nuri_sha256_init(&s);
    nuri_sha256_update(&s, data, n);
    nuri_sha256_final(&s, d);
    nuri_sha256_hex(d, hex);
}

// FIPS 180-2, Appendix B (and the empty message, from its NIST example set)
TEST(sha256_fips_one_block)
{
    char h[65];
    sha_hex("abc", 3, h);
    CHECKF(!strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "%s", h);
}

TEST(sha256_fips_two_blocks)
{
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    char h[65];
    sha_hex(m, strlen(m), h);
    CHECKF(!strcmp(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "%s", h);
}

TEST(sha256_fips_million_a)
{
    // fed in uneven pieces, so the partial-block path is exercised too
    char a[997];
    memset(a, 'a', sizeof a);
    nuri_sha256 s;
    uint8_t d[32];
    char h[65];
    nuri_sha256_init(&s);
    size_t left = 1000000;
    for (size_t k = 1; left; k = k % 900 + 13) { // pieces of 1..912 bytes
        size_t n = k < left ? k : left;
        nuri_sha256_update(&s, a, n);
        left -= n;
    }
    nuri_sha256_final(&s, d);
    nuri_sha256_hex(d, h);
    CHECKF(!strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "%s", h);
}

TEST(sha256_empty_message)
{
    char h[65];
    sha_hex("", 0, h);
    CHECKF(!strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "%s", h);
}

TEST(sha256_896_bit_message)
{
    const char *m =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqkl"
        "mnopqrlmnopqrsmnopqrstnopqrstu";
    char h[65];
    sha_hex(m, strlen(m), h);
    CHECKF(!strcmp(h, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"), "%s", h);
}

// lengths around the padding boundary (55 fits the length in the same block, 56 does not);
// expected digests computed by Python's hashlib over bytes (7 * i + 3) mod 256
TEST(sha256_padding_boundaries)
{
    static const struct {
        size_t n;
        const char *hex;
    } cases[] = {
        {55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
        {56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
        {63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
        {64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
        {65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
        {119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
        {120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"},
    };
    uint8_t buf[120];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(7 * i + 3);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char h[65];
        sha_hex(buf, cases[c].n, h);
        CHECKF(!strcmp(h, cases[c].hex), "%zu bytes: %s", cases[c].n, h);
    }
}

// a whole model file against tests/data/SHA256SUMS (made by sha256sum)
TEST(sha256_model_file_matches_sha256sums)
{
    size_t n;
    uint8_t *p = test_read_file("tests/data/models/llama-tiny-Q8_0.gguf", &n);
    REQUIRE(p != NULL);
    char h[65], line[256], want[80] = "";
    sha_hex(p, n, h);
    free(p);
    FILE *fp = fopen("tests/data/SHA256SUMS", "r");
    REQUIRE(fp != NULL);
    while (fgets(line, sizeof line, fp))
        if (strstr(line, " ./models/llama-tiny-Q8_0.gguf\n")) memcpy(want, line, 64);
    fclose(fp);
    CHECKF(!strcmp(h, want), "got %s, SHA256SUMS says %s", h, want);
}

/* ---- names ---------------------------------------------------------------------------------- */

TEST(ref_org_repo_quant)
{
    hub_ref r;
    REQUIRE(hub_ref_parse("Qwen/Qwen2.5-0.5B-Instruct-GGUF:q4_k_m", &r) == NURI_OK);
    CHECK(!strcmp(r.org, "Qwen"));
    CHECK(!strcmp(r.repo, "Qwen2.5-0.5B-Instruct-GGUF"));
    CHECK(!strcmp(r.quant, "q4_k_m"));
    CHECK(!r.file[0]);
    REQUIRE(hub_ref_parse("bartowski/Llama-3.2-1B-Instruct-GGUF", &r) == NURI_OK);
    CHECK(!r.quant[0]);
}

TEST(ref_hf_url_with_file)
{
    hub_ref r;
    REQUIRE(hub_ref_parse("hf://org/repo/sub/dir/m-Q8_0.gguf", &r) == NURI_OK);
    CHECK(!strcmp(r.org, "org") && !strcmp(r.repo, "repo"));
    CHECK(!strcmp(r.file, "sub/dir/m-Q8_0.gguf"));
    REQUIRE(hub_ref_parse("hf://org/repo:Q8_0", &r) == NURI_OK);
    CHECK(!strcmp(r.quant, "Q8_0") && !r.file[0]);
}

TEST(ref_local_paths_are_not_hub_names)
{
    hub_ref r;
    const char *local[] = {"model.gguf", "models/m.gguf", "/abs/path/m.gguf",
                           "./a/b",      "../a/b",        "a/b/c",
                           "a/b:Q4_K:x", "a/b:",          "a",
                           "a/ b",       "-a/b",          "a/b:Q 4"};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        CHECKF(hub_ref_parse(local[i], &r) == NURI_ERR_NOT_FOUND, "%s", local[i]);
}

TEST(ref_malformed_hf_url_is_an_error)
{
    hub_ref r;
    const char *bad[] = {"hf://",
                         "hf://org",
                         "hf://org/",
                         "hf://org/repo/",
                         "hf://org/repo/../x",
                         "hf://o..x/repo",
                         "hf://org/repo//x.gguf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(hub_ref_parse(bad[i], &r) == NURI_ERR_INVALID_ARG, "%s", bad[i]);
        CHECKF(strstr(nuri_last_error(), "hf://ORG/REPO") != NULL, "%s", nuri_last_error());
    }
}

TEST(quant_match_is_a_name_component)
{
    CHECK(hub_quant_match("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "Q4_K_M"));
    CHECK(hub_quant_match("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M")); // case-insensitive
    CHECK(hub_quant_match("llama-2-7b.Q4_K_M.gguf", "q4_k_m"));            // '.' separated
    CHECK(hub_quant_match("Q8_0/m-Q8_0-00001-of-00002.gguf", "Q8_0"));     // split parts
    CHECK(hub_quant_match("Q8_0/readme.md", "Q8_0"));                      // a folder
    CHECK(!hub_quant_match("m-Q4_K_M.gguf", "Q4_K"));  // a prefix of a longer quant
    CHECK(!hub_quant_match("m-IQ4_XS.gguf", "Q4_XS")); // a suffix of another
    CHECK(!hub_quant_match("m-BF16.gguf", "F16"));
    CHECK(hub_quant_match("m-BF16.gguf", "bf16"));
    CHECK(!hub_quant_match("m-Q8_0.gguf", ""));
    CHECK(!hub_quant_match("Q8", "Q8_0"));
}

TEST(quant_of_a_file_name)
{
    char q[32];
    CHECK(hub_quant_of("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", q, sizeof q) && !strcmp(q, "Q4_K_M"));
    CHECK(hub_quant_of("qwen2.5-0.5b-instruct-q8_0.gguf", q, sizeof q) && !strcmp(q, "Q8_0"));
    CHECK(hub_quant_of("x/m-IQ4_XS-00001-of-00003.gguf", q, sizeof q) && !strcmp(q, "IQ4_XS"));
    CHECK(hub_quant_of("llama-2-7b.Q5_K_S.gguf", q, sizeof q) && !strcmp(q, "Q5_K_S"));
    CHECK(hub_quant_of("m-bf16.gguf", q, sizeof q) && !strcmp(q, "BF16"));
    CHECK(!hub_quant_of("model.gguf", q, sizeof q));
}

TEST(split_names)
{
    int part, count;
    size_t stem;
    REQUIRE(hub_split_parse("d/m-Q8_0-00002-of-00003.gguf", &part, &count, &stem));
    CHECK(part == 2 && count == 3 && stem == strlen("d/m-Q8_0"));
    CHECK(!hub_split_parse("m-Q8_0.gguf", &part, &count, &stem));
    CHECK(!hub_split_parse("m-00004-of-00003.gguf", &part, &count, &stem)); // part > count
    CHECK(!hub_split_parse("m-00000-of-00003.gguf", &part, &count, &stem));
    CHECK(!hub_split_parse("m-0001-of-0003.gguf", &part, &count, &stem));
    CHECK(hub_same_model("m-00001-of-00002.gguf", "m-00002-of-00002.gguf"));
    CHECK(!hub_same_model("m-00001-of-00002.gguf", "n-00002-of-00002.gguf"));
    CHECK(!hub_same_model("m-00001-of-00002.gguf", "m-00002-of-00003.gguf"));
}

/* ---- choosing files ------------------------------------------------------------------------- */

#define F(p)                                                                                       \
    {                                                                                              \
        (char *)(p), 1, ""                                                                         \
    }

static const hub_file repo_files[] = {
    F(".gitattributes"),
    F("README.md"),
    F("tiny-Q4_K_M.gguf"),
    F("tiny-Q8_0.gguf"),
    F("tiny-F16.gguf"),
    F("mmproj-tiny-F16.gguf"),
    F("big/big-Q6_K-00002-of-00002.gguf"),
    F("big/big-Q6_K-00001-of-00002.gguf"),
};
#define N_REPO (sizeof repo_files / sizeof repo_files[0])

static const char *pick1(const char *name, nuri_status *st, const hub_file *files, size_t n)
{
    hub_ref r;
    static char got[256];
    got[0] = 0;
    if (hub_ref_parse(name, &r) != NURI_OK) return "(no ref)";
    size_t *idx, n_idx;
    *st = hub_pick(&r, files, n, &idx, &n_idx);
    if (*st != NURI_OK) return "";
    for (size_t i = 0; i < n_idx; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "",
                 files[idx[i]].path);
    free(idx);
    return got;
}

TEST(pick_by_quant_case_insensitive)
{
    nuri_status st;
    CHECK(!strcmp(pick1("o/r:q8_0", &st, repo_files, N_REPO), "tiny-Q8_0.gguf"));
    CHECK(!strcmp(pick1("o/r:F16", &st, repo_files, N_REPO), "tiny-F16.gguf")); // not mmproj
}

TEST(pick_default_is_q4_k_m)
{
    nuri_status st;
    CHECK(!strcmp(pick1("o/r", &st, repo_files, N_REPO), "tiny-Q4_K_M.gguf"));
}

TEST(pick_split_set_in_part_order)
{
    nuri_status st;
    CHECK(!strcmp(pick1("o/r:Q6_K", &st, repo_files, N_REPO),
                  "big/big-Q6_K-00001-of-00002.gguf,big/big-Q6_K-00002-of-00002.gguf"));
    CHECK(!strcmp(pick1("hf://o/r/big/big-Q6_K-00002-of-00002.gguf", &st, repo_files, N_REPO),
                  "big/big-Q6_K-00001-of-00002.gguf,big/big-Q6_K-00002-of-00002.gguf"));
}

TEST(pick_by_file_name)
{
    nuri_status st;
    CHECK(!strcmp(pick1("hf://o/r/mmproj-tiny-F16.gguf", &st, repo_files, N_REPO),
                  "mmproj-tiny-F16.gguf"));
    pick1("hf://o/r/nope.gguf", &st, repo_files, N_REPO);
    CHECK(st == NURI_ERR_NOT_FOUND);
    CHECKF(strstr(nuri_last_error(), "o/r has no file 'nope.gguf'") != NULL, "%s",
           nuri_last_error());
}

TEST(pick_unknown_quant_lists_the_quants)
{
    nuri_status st;
    pick1("o/r:Q3_K_S", &st, repo_files, N_REPO);
    CHECK(st == NURI_ERR_NOT_FOUND);
    CHECKF(
        strstr(nuri_last_error(), "o/r has no Q3_K_S file (quants there: Q4_K_M, Q8_0, F16, Q6_K)"),
        "%s", nuri_last_error());
}

TEST(pick_without_q4_k_m_takes_the_only_model)
{
    static const hub_file files[] = {F("README.md"), F("m-Q8_0.gguf"), F("mmproj-m-F16.gguf")};
    nuri_status st;
    CHECK(!strcmp(pick1("o/r", &st, files, 3), "m-Q8_0.gguf"));
}

TEST(pick_without_q4_k_m_among_several_asks_for_a_quant)
{
    static const hub_file files[] = {F("m-Q8_0.gguf"), F("m-Q6_K.gguf")};
    nuri_status st;
    pick1("o/r", &st, files, 2);
    CHECK(st == NURI_ERR_INVALID_ARG);
    CHECKF(strstr(nuri_last_error(), "choose one as o/r:QUANT (quants there: Q8_0, Q6_K)"), "%s",
           nuri_last_error());
}

TEST(pick_ambiguous_quant_names_the_files)
{
    static const hub_file files[] = {F("a-Q8_0.gguf"), F("b-Q8_0.gguf")};
    nuri_status st;
    pick1("o/r:Q8_0", &st, files, 2);
    CHECK(st == NURI_ERR_INVALID_ARG);
    CHECKF(strstr(nuri_last_error(), "(a-Q8_0.gguf, b-Q8_0.gguf)"), "%s", nuri_last_error());
}

TEST(pick_incomplete_split_is_an_error)
{
    static const hub_file files[] = {F("m-Q8_0-00001-of-00003.gguf"),
                                     F("m-Q8_0-00003-of-00003.gguf")};
    nuri_status st;
    pick1("o/r:Q8_0", &st, files, 2);
    CHECK(st == NURI_ERR_NOT_FOUND);
    CHECKF(strstr(nuri_last_error(), "part 2 of 3 is missing"), "%s", nuri_last_error());
}

TEST(pick_no_gguf_files)
{
    static const hub_file files[] = {F("README.md")};
    nuri_status st;
    pick1("o/r", &st, files, 1);
    CHECK(st == NURI_ERR_NOT_FOUND);
    CHECKF(strstr(nuri_last_error(), "o/r has no .gguf files"), "%s", nuri_last_error());
}

/* ---- what the hub sends back ---------------------------------------------------------------- */

static void head_lines(hub_head *h, const char *text)
{
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) + 1 : strlen(p);
        hub_head_line(h, p, n);
        p += n;
    }
}

TEST(head_redirect_then_partial_content)
{
    hub_head h = {0};
    head_lines(
        &h,
        "HTTP/1.1 302 Found\r\n"
        "X-Repo-Commit: 0123abcd\r\n"
        "x-linked-etag: \"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\"\r\n"
        "X-Linked-Size: 2875584\r\n"
        "\r\n"
        "HTTP/1.1 206 Partial Content\r\n"
        "X-Linked-Etag: \"later\"\r\n"
        "Content-Range: bytes 1437792-2875583/2875584\r\n");
    CHECK(h.status == 206);
    CHECK(!strcmp(h.commit, "0123abcd"));
    CHECK(h.linked_size == 2875584);
    CHECK(h.has_range && h.range_start == 1437792);
    char sha[65];
    CHECK(hub_etag_sha256(h.linked_etag, sha)); // the first response's etag is kept
    CHECK(!strcmp(sha, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"));
}

TEST(head_error_code_belongs_to_the_last_response)
{
    hub_head h = {0};
    head_lines(&h, "HTTP/1.1 401 Unauthorized\r\nX-Error-Code: GatedRepo\r\n"
                   "X-Error-Message: Access to model o/r is restricted.\r\n\r\n");
    CHECK(h.status == 401 && !strcmp(h.error_code, "GatedRepo"));
    CHECK(!strcmp(h.error_message, "Access to model o/r is restricted."));
    head_lines(&h, "HTTP/2 200\r\n");
    CHECK(h.status == 200 && !h.error_code[0] && !h.error_message[0]);
}

TEST(head_link_next)
{
    hub_head h = {0};
    head_lines(&h, "HTTP/1.1 200 OK\r\nLink: <https://h/prev>; rel=\"prev\", "
                   "<https://h/api/models/o/r/tree/main?cursor=x>; rel=\"next\"\r\n");
    CHECK(!strcmp(h.next, "https://h/api/models/o/r/tree/main?cursor=x"));
    head_lines(&h, "HTTP/1.1 200 OK\r\n");
    CHECK(!h.next[0]); // the last page has none
}

TEST(head_values_are_bounded)
{
    hub_head h = {0};
    char line[6000];
    memset(line, 'm', sizeof line);
    memcpy(line, "X-Error-Message: ", 17);
    hub_head_line(&h, line, sizeof line); // not NUL-terminated, longer than any field
    CHECK(strlen(h.error_message) == sizeof h.error_message - 1);
    hub_head_line(&h, "X-Linked-Size: 99999999999999999999999", 39);
    CHECK(h.linked_size == UINT64_MAX);
    hub_head_line(&h, "HTTP/1.1 99999999999 X", 22);
    CHECK(h.status == 0);
}

TEST(etag_forms)
{
    const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char q[80], sha[65];
    snprintf(q, sizeof q, "\"%s\"", hex);
    CHECK(hub_etag_sha256(q, sha) && !strcmp(sha, hex));
    snprintf(q, sizeof q, "W/\"%s\"", hex);
    CHECK(hub_etag_sha256(q, sha) && !strcmp(sha, hex));
    CHECK(hub_etag_sha256(hex, sha));
    CHECK(!hub_etag_sha256("\"abc\"", sha) && !sha[0]);
    snprintf(q, sizeof q, "\"%s0\"", hex);
    CHECK(!hub_etag_sha256(q, sha)); // 65 digits
    CHECK(!hub_etag_sha256("", sha));
}

TEST(paths_that_would_leave_the_repository_are_unsafe)
{
    CHECK(hub_path_safe("m-Q8_0.gguf"));
    CHECK(hub_path_safe("Q8_0/m-Q8_0-00001-of-00002.gguf"));
    CHECK(hub_path_safe("a..b/c.gguf"));
    const char *bad[] = {"",          "/etc/x.gguf", "../x.gguf", "a/../../x.gguf",
                         "a/..",      "./x.gguf",    "a//b.gguf", "a/",
                         "a\\b.gguf", "a\x01.gguf",  ".."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(!hub_path_safe(bad[i]), "'%s'", bad[i]);
}

TEST(tree_listing_files_sizes_and_sha256)
{
    const char *json =
        "[{\"type\": \"directory\", \"oid\": \"d\", \"size\": 0, \"path\": \"Q8_0\"},"
        " {\"type\": \"file\", \"oid\": \"x\", \"size\": 12, \"path\": \"README.md\"},"
        " {\"type\": \"file\", \"oid\": \"y\", \"size\": 134, \"path\": \"m-Q8_0.gguf\","
        "  \"lfs\": {\"oid\": \"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\","
        "          \"size\": 2875584, \"pointerSize\": 134}},"
        " {\"type\": \"file\", \"size\": 5, \"path\": \"../../evil-Q8_0.gguf\"}]";
    hub_file_list l = {0};
    REQUIRE(hub_tree_parse(json, strlen(json), "u", &l) == NURI_OK);
    CHECK(l.n == 2); // the directory and the path outside the repository are dropped
    CHECK(!strcmp(l.f[0].path, "README.md") && l.f[0].size == 12 && !l.f[0].sha256[0]);
    CHECK(!strcmp(l.f[1].path, "m-Q8_0.gguf") && l.f[1].size == 2875584);
    CHECK(
        !strcmp(l.f[1].sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"));
    hub_file_list_free(&l);
}

TEST(tree_listing_that_is_not_an_array)
{
    hub_file_list l = {0};
    const char *json = "{\"error\": \"Repository not found\"}";
    CHECK(hub_tree_parse(json, strlen(json), "U", &l) == NURI_ERR_FORMAT);
    CHECKF(strstr(nuri_last_error(), "U: not a file list (a JSON array)"), "%s", nuri_last_error());
    CHECK(hub_tree_parse("[{", 2, "U", &l) == NURI_ERR_FORMAT);
    CHECK(l.n == 0);
    hub_file_list_free(&l);
}

int main(void)
{
    RUN(sha256_fips_one_block);
    RUN(sha256_fips_two_blocks);
    RUN(sha256_fips_million_a);
    RUN(sha256_empty_message);
    RUN(sha256_896_bit_message);
    RUN(sha256_padding_boundaries);
    RUN(sha256_model_file_matches_sha256sums);
    RUN(ref_org_repo_quant);
    RUN(ref_hf_url_with_file);
    RUN(ref_local_paths_are_not_hub_names);
    RUN(ref_malformed_hf_url_is_an_error);
    RUN(quant_match_is_a_name_component);
    RUN(quant_of_a_file_name);
    RUN(split_names);
    RUN(pick_by_quant_case_insensitive);
    RUN(pick_default_is_q4_k_m);
    RUN(pick_split_set_in_part_order);
    RUN(pick_by_file_name);
    RUN(pick_unknown_quant_lists_the_quants);
    RUN(pick_without_q4_k_m_takes_the_only_model);
    RUN(pick_without_q4_k_m_among_several_asks_for_a_quant);
    RUN(pick_ambiguous_quant_names_the_files);
    RUN(pick_incomplete_split_is_an_error);
    RUN(pick_no_gguf_files);
    RUN(head_redirect_then_partial_content);
    RUN(head_error_code_belongs_to_the_last_response);
    RUN(head_link_next);
    RUN(head_values_are_bounded);
    RUN(etag_forms);
    RUN(paths_that_would_leave_the_repository_are_unsafe);
    RUN(tree_listing_files_sizes_and_sha256);
    RUN(tree_listing_that_is_not_an_array);
    TEST_DONE();
}
