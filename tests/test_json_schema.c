/*
 * test_json_schema.c: JSON Schema -> grammar (grammar/json_schema.h), checked by what the grammar
 * accepts: for each supported keyword, instances that must pass and instances that must not; every
 * integer of a range against minimum/maximum; every unsupported keyword refused with its path.
 * (Generation with a random-weight model, validated by Python's jsonschema, is in
 * test_json_schema_generate.c.)
 */
#include "grammar/json_schema.h"
#include "test.h"

static nuri_grammar *schema_grammar(const char *schema)
{
    nuri_grammar *g = NULL;
    char path[256];
    if (nuri_json_schema_grammar_text(schema, strlen(schema), &g, path, sizeof path) != NURI_OK)
        fprintf(stderr, "  %s: %s\n", schema, nuri_last_error());
    return g;
}

/* Whether the matcher, from the start, accepts all of s as a complete text. */
static bool accepts_m(nuri_grammar_matcher *m, const char *s)
{
    nuri_grammar_matcher_reset(m);
    return nuri_grammar_matcher_accept(m, s, strlen(s)) == NURI_OK &&
           nuri_grammar_matcher_can_end(m);
}

static bool accepts(nuri_grammar *g, const char *s)
{
    nuri_grammar_matcher *m;
    if (nuri_grammar_matcher_new(g, NULL, NULL, &m) != NURI_OK) return false;
    bool ok = accepts_m(m, s);
    nuri_grammar_matcher_free(m);
    return ok;
}

/* Checks a schema against lists of instances, NULL-terminated: good ones accepted, bad refused. */
static void check_schema(const char *schema, const char *const *good, const char *const *bad)
{
    nuri_grammar *g = schema_grammar(schema);
    CHECKF(g != NULL, "%s", schema);
    if (!g) return;
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, NULL, NULL, &m) == NURI_OK);
    for (; *good; good++) CHECKF(accepts_m(m, *good), "%s refused %s", schema, *good);
    for (; *bad; bad++) CHECKF(!accepts_m(m, *bad), "%s accepted %s", schema, *bad);
    nuri_grammar_matcher_free(m);
    nuri_grammar_free(g);
}

#define LIST(...)                                                                                  \
    (const char *const[])                                                                          \
    {                                                                                              \
        __VA_ARGS__, NULL                                                                          \
    }

TEST(types)
{
    check_schema("{\"type\": \"string\"}", LIST("\"\"", "\"a b\"", "\"\\u00e9\\n\""),
                 LIST("1", "null", "\"\\ud83d\""));
    check_schema("{\"type\": \"integer\"}", LIST("0", "-12", "9999999999999999"),
                 LIST("1.5", "01", "\"1\"", "99999999999999999"));
    check_schema("{\"type\": \"number\"}", LIST("0", "-1.25", "3e10", "2E-07"),
                 LIST("1e999", ".5", "NaN"));
    check_schema("{\"type\": \"boolean\"}", LIST("true", "false"), LIST("1", "null"));
    check_schema("{\"type\": \"null\"}", LIST("null"), LIST("0", "\"null\""));
    check_schema("{\"type\": [\"string\", \"null\"], \"maxLength\": 2}", LIST("null", "\"ab\""),
                 LIST("\"abc\"", "1"));
    // OpenAPI's nullable means nothing in JSON Schema (validators ignore it): no null
    check_schema("{\"type\": \"integer\", \"nullable\": true}", LIST("3"), LIST("null"));
    check_schema("{}", LIST("{\"a\": [1, {\"b\": null}]}", "\"x\"", "-2.5"), LIST("{", "nul"));
    check_schema("true", LIST("[]", "{}"), LIST("]"));
}

TEST(objects_keep_the_schema_order_and_may_leave_out_optional_members)
{
    const char *s = "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, "
                    "\"b\": {\"type\": \"string\"}, \"c\": {\"type\": \"boolean\"}}, "
                    "\"required\": [\"b\"]}";
    check_schema(s,
                 LIST("{\"b\": \"x\"}", "{\"a\": 1, \"b\": \"x\"}", "{\"b\": \"x\", \"c\": true}",
                      "{\"a\":1,\"b\":\"\",\"c\":false}", "{\n  \"b\": \"x\"\n}"),
                 LIST("{}", "{\"a\": 1}", "{\"b\": \"x\", \"a\": 1}", "{\"b\": \"x\",}",
                      "{\"b\": \"x\", \"d\": 1}", "{\"b\": \"x\", \"b\": \"y\"}",
                      "{\"a\": 1 \"b\": \"x\"}"));
    // no properties required: the first member present has no comma before it
    check_schema("{\"properties\": {\"a\": {\"const\": 1}, \"b\": {\"const\": 2}}}",
                 LIST("{}", "{\"a\": 1}", "{\"b\": 2}", "{\"a\": 1, \"b\": 2}"),
                 LIST("{, \"b\": 2}", "{\"b\": 2, \"a\": 1}", "{\"a\": 1,}"));
    // required names that are not in properties come last, with any value
    check_schema("{\"properties\": {\"a\": {\"const\": 1}}, \"required\": [\"z\", \"a\"]}",
                 LIST("{\"a\": 1, \"z\": [null]}"), LIST("{\"z\": 0, \"a\": 1}", "{\"a\": 1}"));
    // names with characters that need escaping
    check_schema("{\"properties\": {\"q\\\"\\\\\\u00e9\": {\"const\": 1}}, \"required\": "
                 "[\"q\\\"\\\\\\u00e9\"]}",
                 LIST("{\"q\\\"\\\\\xc3\xa9\": 1}"), LIST("{\"q\": 1}"));
}

TEST(additional_properties_never_repeat_a_declared_name)
{
    const char *s = "{\"properties\": {\"ab\": {\"type\": \"integer\"}, \"b\": {\"type\": "
                    "\"integer\"}}, \"additionalProperties\": true}";
    check_schema(s,
                 LIST("{}", "{\"ab\": 1}", "{\"ab\": 1, \"x\": \"y\"}", "{\"a\": 1}",
                      "{\"abc\": 1}", "{\"\": 1}", "{\"ab\": 1, \"bb\": [], \"\xed\x95\x9c\": {}}"),
                 LIST("{\"ab\": 1, \"ab\": 2}", "{\"x\": 1, \"b\": 2}", "{\"b\": 1, \"ab\": 2}",
                      "{\"x\\\"\": 1}"));
    check_schema("{\"type\": \"object\", \"additionalProperties\": {\"type\": \"integer\"}}",
                 LIST("{\"x\": 1, \"y\": 2}", "{}"), LIST("{\"x\": \"1\"}"));
    check_schema("{\"type\": \"object\"}", LIST("{}"), LIST("{\"x\": 1}")); // none by default
}

TEST(arrays)
{
    check_schema("{\"type\": \"array\", \"items\": {\"type\": \"integer\"}, \"minItems\": 2, "
                 "\"maxItems\": 3}",
                 LIST("[1, 2]", "[1,2,3]", "[\n 1,\n 2\n]"),
                 LIST("[]", "[1]", "[1,2,3,4]", "[1,\"2\"]"));
    check_schema("{\"type\": \"array\", \"maxItems\": 0}", LIST("[]", "[ ]"), LIST("[1]"));
    check_schema("{\"items\": {\"type\": \"null\"}}", LIST("[]", "[null, null]"), LIST("[1]"));
    check_schema("{\"type\": \"array\"}", LIST("[]", "[1, \"a\", [{}]]"), LIST("[,]"));
    check_schema("{\"prefixItems\": [{\"type\": \"string\"}, {\"type\": \"integer\"}], "
                 "\"minItems\": 1}",
                 LIST("[\"a\"]", "[\"a\", 1]"), LIST("[]", "[1]", "[\"a\", 1, 2]"));
    check_schema("{\"prefixItems\": [{\"const\": 0}], \"items\": {\"type\": \"boolean\"}, "
                 "\"maxItems\": 3}",
                 LIST("[]", "[0]", "[0, true, false]"), LIST("[0, true, false, true]", "[true]"));
}

TEST(strings_lengths_formats_and_patterns)
{
    check_schema("{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 3}",
                 LIST("\"ab\"", "\"\xed\x95\x9c\xea\xb8\x80\"", "\"a\\nb\"", "\"\\u0041bc\""),
                 LIST("\"a\"", "\"abcd\"", "\"\xed\x95\x9c\""));
    check_schema("{\"format\": \"date\"}",
                 LIST("\"2024-02-28\"", "\"1999-12-31\"", "\"2024-04-30\""),
                 LIST("\"2024-02-30\"", "\"2024-04-31\"", "\"2024-13-01\"", "\"2024-1-01\"",
                      "\"2024-02-29\""));
    check_schema("{\"format\": \"time\"}", LIST("\"23:59:59Z\"", "\"00:00:00.123+09:00\""),
                 LIST("\"24:00:00Z\"", "\"12:00:00\"", "\"12:60:00Z\""));
    check_schema("{\"format\": \"date-time\"}", LIST("\"2024-01-31T08:30:00-05:00\""),
                 LIST("\"2024-01-31 08:30:00Z\""));
    check_schema(
        "{\"format\": \"uuid\"}", LIST("\"123e4567-e89b-12d3-a456-426614174000\""),
        LIST("\"123e4567e89b12d3a456426614174000\"", "\"123e4567-e89b-12d3-a456-42661417400\""));
    check_schema("{\"pattern\": \"^[A-Z]{2}-\\\\d{3,4}$\"}", LIST("\"AB-123\"", "\"ZZ-0000\""),
                 LIST("\"ab-123\"", "\"AB-12\"", "\"AB-12345\"", "\"xAB-123\""));
    check_schema("{\"pattern\": \"cat|dog\"}", LIST("\"cat\"", "\"hotdogs\"", "\"a cat!\""),
                 LIST("\"cow\"", "\"\""));
    check_schema("{\"pattern\": \"^(?:a|b(?P<x>c)?)+\\\\.$\"}", LIST("\"a.\"", "\"abcba.\""),
                 LIST("\"a\"", "\"c.\""));
    // characters that JSON escapes: the regex speaks of the decoded string
    check_schema("{\"pattern\": \"^[\\\"\\\\\\\\\\\\n]+$\"}", LIST("\"\\\"\\\\\\n\""),
                 LIST("\"\\u0022\"", "\"a\""));
    check_schema("{\"pattern\": \"^\\\\D\\\\W\\\\S.$\"}", LIST("\"a!ab\""),
                 LIST("\"1!ab\"", "\"a_ab\"", "\"a! b\"", "\"a!a\\n\""));
    check_schema("{\"pattern\": \"^a{2}{$\"}", LIST("\"aa{\""), LIST("\"aa\"")); // '{' literal
}

TEST(integer_ranges_are_exact)
{
    static const long long ranges[][2] = {{0, 0},      {-5, 5},       {7, 1234}, {-1200, -13},
                                          {10, 99},    {100, 100},    {-1, 0},   {19, 1001},
                                          {990, 1009}, {-1009, -990}, {0, 1199}};
    for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++) {
        char schema[200];
        snprintf(schema, sizeof schema,
                 "{\"type\": \"integer\", \"minimum\": %lld, \"maximum\": %lld}", ranges[r][0],
                 ranges[r][1]);
        nuri_grammar *g = schema_grammar(schema);
        REQUIRE(g != NULL);
        nuri_grammar_matcher *m;
        REQUIRE(nuri_grammar_matcher_new(g, NULL, NULL, &m) == NURI_OK);
        int wrong = 0;
        for (long long v = -1300; v <= 1300; v++) {
            char num[32];
            snprintf(num, sizeof num, "%lld", v);
            bool want = v >= ranges[r][0] && v <= ranges[r][1];
            if (accepts_m(m, num) != want && wrong++ < 3)
                fprintf(stderr, "  [%lld, %lld]: %lld %s\n", ranges[r][0], ranges[r][1], v,
                        want ? "refused" : "accepted");
        }
        CHECK(wrong == 0);
        CHECK(!accepts_m(m, "-0"));
        nuri_grammar_matcher_free(m);
        nuri_grammar_free(g);
    }
    check_schema("{\"type\": \"integer\", \"exclusiveMinimum\": 2, \"exclusiveMaximum\": 5.5}",
                 LIST("3", "5"), LIST("2", "6"));
    check_schema("{\"type\": \"integer\", \"minimum\": 2, \"exclusiveMinimum\": true}", LIST("3"),
                 LIST("2"));
    check_schema("{\"type\": \"integer\", \"minimum\": 9999999999999990}",
                 LIST("9999999999999990", "9999999999999999"), LIST("999999999999999", "1"));
}

TEST(enum_const_any_of_one_of)
{
    check_schema("{\"enum\": [\"a\", 1, null, true, {\"k\": [1, 2]}, 2.5]}",
                 LIST("\"a\"", "1", "null", "true", "{\"k\":[1,2]}", "2.5"),
                 LIST("\"b\"", "false", "{\"k\": [1, 2]}"));
    check_schema("{\"type\": \"string\", \"enum\": [\"a\", 1]}", LIST("\"a\""), LIST("1"));
    check_schema("{\"const\": \"caf\\u00e9\"}", LIST("\"caf\xc3\xa9\""), LIST("\"cafe\""));
    check_schema("{\"anyOf\": [{\"type\": \"integer\"}, {\"type\": \"string\", \"maxLength\": "
                 "1}]}",
                 LIST("1", "\"a\""), LIST("\"ab\"", "null"));
    check_schema("{\"oneOf\": [{\"type\": \"object\", \"properties\": {\"kind\": {\"const\": "
                 "\"a\"}, \"x\": {\"type\": \"integer\"}}, \"required\": [\"kind\", \"x\"]}, "
                 "{\"type\": \"object\", \"properties\": {\"kind\": {\"const\": \"b\"}}, "
                 "\"required\": [\"kind\"]}]}",
                 LIST("{\"kind\": \"a\", \"x\": 1}", "{\"kind\": \"b\"}"),
                 LIST("{\"kind\": \"a\"}", "{\"kind\": \"c\"}"));
    check_schema("{\"allOf\": [{\"type\": \"boolean\"}], \"title\": \"t\"}", LIST("true"),
                 LIST("1"));
}

TEST(refs_and_recursion)
{
    const char *tree = "{\"$defs\": {\"node\": {\"type\": \"object\", \"properties\": {\"v\": "
                       "{\"type\": \"integer\"}, \"kids\": {\"type\": \"array\", \"items\": "
                       "{\"$ref\": \"#/$defs/node\"}}}, \"required\": [\"v\"]}}, \"$ref\": "
                       "\"#/$defs/node\"}";
    check_schema(tree,
                 LIST("{\"v\": 1}", "{\"v\": 1, \"kids\": [{\"v\": 2, \"kids\": [{\"v\": 3}]}]}"),
                 LIST("{\"v\": 1, \"kids\": [{}]}"));
    const char *root_ref = "{\"type\": \"array\", \"items\": {\"anyOf\": [{\"type\": \"integer\"}, "
                           "{\"$ref\": \"#\"}]}}";
    check_schema(root_ref, LIST("[]", "[1, [2, [[]]]]"), LIST("[[1]"));
    check_schema("{\"definitions\": {\"a~b/c\": {\"const\": 1}}, \"$ref\": "
                 "\"#/definitions/a~0b~1c\"}",
                 LIST("1"), LIST("2"));
}

/* A schema nuri does not enforce must fail, naming the keyword and where it is. */
static void expect_refused(const char *schema, nuri_status want, const char *path, const char *word)
{
    nuri_grammar *g = NULL;
    char got[256] = "(unset)";
    nuri_status st = nuri_json_schema_grammar_text(schema, strlen(schema), &g, got, sizeof got);
    CHECKF(st == want, "%s: status %d, want %d (%s)", schema, st, want, nuri_last_error());
    CHECK(g == NULL);
    CHECKF(!strcmp(got, path), "%s: path '%s', want '%s'", schema, got, path);
    CHECKF(strstr(nuri_last_error(), word) != NULL, "%s: message '%s' lacks '%s'", schema,
           nuri_last_error(), word);
    nuri_grammar_free(g);
}

TEST(unsupported_keywords_are_errors_that_name_them)
{
    const nuri_status U = NURI_ERR_UNSUPPORTED, F = NURI_ERR_FORMAT;
    expect_refused("{\"type\": \"array\", \"uniqueItems\": true}", U, "uniqueItems", "uniqueItems");
    expect_refused("{\"properties\": {\"tags\": {\"type\": \"array\", \"contains\": {}}}}", U,
                   "properties.tags.contains", "contains");
    expect_refused("{\"type\": \"number\", \"multipleOf\": 2}", U, "multipleOf", "multipleOf");
    expect_refused("{\"patternProperties\": {}}", U, "patternProperties", "patternProperties");
    expect_refused("{\"not\": {}}", U, "not", "not");
    expect_refused("{\"if\": {}, \"then\": {}}", U, "if", "if");
    expect_refused("{\"type\": \"object\", \"minProperties\": 1}", U, "minProperties",
                   "minProperties");
    expect_refused("{\"anyOf\": [{\"type\": \"string\", \"format\": \"email\"}]}", U,
                   "anyOf[0].format", "email");
    expect_refused("{\"type\": \"number\", \"minimum\": 0}", U, "minimum", "integers only");
    expect_refused("{\"pattern\": \"^(a)\\\\1$\"}", U, "pattern", "back-references");
    expect_refused("{\"pattern\": \"(?=a)\"}", U, "pattern", "look-around");
    expect_refused("{\"pattern\": \"a^b\"}", U, "pattern", "anchors");
    expect_refused("{\"pattern\": \"\\\\bword\"}", U, "pattern", "\\b");
    expect_refused("{\"oneOf\": [{\"type\": \"number\"}, {\"type\": \"integer\"}]}", U, "oneOf",
                   "anyOf");
    expect_refused("{\"allOf\": [{}, {}]}", U, "allOf", "exactly one");
    expect_refused("{\"$ref\": \"other.json#/x\"}", U, "$ref", "another document");
    expect_refused("{\"$ref\": \"#/$defs/missing\"}", F, "$ref", "points to nothing");
    expect_refused("{\"$ref\": \"#/$defs/a\", \"minLength\": 1, \"$defs\": {\"a\": {}}}", U,
                   "minLength", "next to '$ref'");
    expect_refused("{\"enum\": [1], \"minimum\": 0}", U, "minimum", "next to 'enum'");
    expect_refused("{\"type\": \"string\", \"enum\": [1, 2]}", U, "enum", "no value");
    expect_refused("{\"type\": \"strin\"}", F, "type", "unknown type");
    expect_refused("{\"type\": \"string\", \"maxLength\": 20000}", U, "maxLength", "above");
    expect_refused("{\"type\": \"array\", \"minItems\": 3, \"maxItems\": 2}", U, "maxItems",
                   "below");
    expect_refused("{\"type\": \"integer\", \"minimum\": 5, \"maximum\": 4}", U, "minimum",
                   "no integer");
    expect_refused("{\"properties\": {\"a\": false}}", U, "properties.a", "false");
    expect_refused("{\"properties\": {\"a\": 3}}", F, "properties.a", "object or a boolean");
    expect_refused("{\"$ref\": \"#\"}", U, "", "refers to itself");
    expect_refused("{\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"string\", "
                   "\"format\": \"date\", \"maxLength\": 3}}}",
                   U, "properties.x.minLength", "format");
    nuri_grammar *g;
    char path[8];
    CHECK(nuri_json_schema_grammar_text("{\"type\": ", 9, &g, path, sizeof path) ==
          NURI_ERR_FORMAT);
    CHECK(strstr(nuri_last_error(), "line 1") != NULL);
}

TEST(annotations_are_ignored)
{
    check_schema("{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", \"$id\": \"x\", "
                 "\"title\": \"T\", \"description\": \"d\", \"default\": 1, \"examples\": [1], "
                 "\"$comment\": \"c\", \"deprecated\": false, \"readOnly\": true, \"type\": "
                 "\"integer\"}",
                 LIST("1"), LIST("\"1\""));
}

TEST(json_object_mode_is_any_object)
{
    nuri_grammar *g;
    REQUIRE(nuri_json_object_grammar(&g) == NURI_OK);
    CHECK(accepts(g, "{}"));
    CHECK(accepts(g, "{\"a\": [1, {\"b\": \"c\"}], \"d\": null}"));
    CHECK(!accepts(g, "[]"));
    CHECK(!accepts(g, "\"x\""));
    CHECK(!accepts(g, "{} "));
    nuri_grammar_free(g);
}

TEST(the_gbnf_text_is_there_to_read)
{
    json_t *s = json_loads("{\"type\": \"object\", \"properties\": {\"n\": {\"type\": "
                           "\"integer\"}}, \"required\": [\"n\"]}",
                           0, NULL);
    REQUIRE(s != NULL);
    char *text;
    size_t len;
    REQUIRE(nuri_json_schema_to_gbnf(s, &text, &len, NULL, 0) == NURI_OK);
    CHECK(strlen(text) == len);
    CHECK(strstr(text, "root ::= ") != NULL);
    CHECK(strstr(text, "\"\\\"n\\\"\" ws \":\" ws") != NULL);
    free(text);
    json_decref(s);
}

TEST(a_schema_can_be_a_rule_of_a_larger_grammar)
{
    // a tool call in a chat template's wrapper, two tools told apart by their names
    json_t *s = json_loads(
        "{\"anyOf\": [{\"type\": \"object\", \"properties\": {\"name\": {\"const\": "
        "\"get_weather\"}, \"arguments\": {\"type\": \"object\", \"properties\": {\"city\": "
        "{\"type\": \"string\"}}, \"required\": [\"city\"]}}, \"required\": [\"name\", "
        "\"arguments\"]}, {\"type\": \"object\", \"properties\": {\"name\": {\"const\": "
        "\"now\"}, \"arguments\": {\"type\": \"object\"}}, \"required\": [\"name\", "
        "\"arguments\"]}, {\"$ref\": \"#/anyOf/1\"}]}",
        0, NULL);
    REQUIRE(s != NULL);
    char *text;
    size_t len;
    REQUIRE(nuri_json_schema_to_gbnf_rule(s, "tool-call", &text, &len, NULL, 0) == NURI_OK);
    CHECK(strstr(text, "root ::=") == NULL);
    const char *wrap = "root ::= \"<tool_call>\\n\" tool-call \"\\n</tool_call>\"\n";
    char *full = malloc(len + strlen(wrap) + 1);
    REQUIRE(full != NULL);
    memcpy(full, text, len);
    strcpy(full + len, wrap);
    nuri_grammar *g;
    REQUIRE(nuri_grammar_parse(full, strlen(full), &g) == NURI_OK);
    nuri_grammar_matcher *m;
    REQUIRE(nuri_grammar_matcher_new(g, NULL, NULL, &m) == NURI_OK);
    CHECK(accepts_m(m, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                       "\"Seoul\"}}\n</tool_call>"));
    CHECK(accepts_m(m, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
    CHECK(!accepts_m(m, "<tool_call>\n{\"name\": \"now\", \"arguments\": {\"city\": "
                        "\"x\"}}\n</tool_call>"));
    CHECK(!accepts_m(m, "{\"name\": \"now\", \"arguments\": {}}"));
    nuri_grammar_matcher_free(m);
    nuri_grammar_free(g);
    free(full);
    free(text);
    char *t2;
    CHECK(nuri_json_schema_to_gbnf_rule(s, "value", &t2, &len, NULL, 0) == NURI_ERR_INVALID_ARG);
    CHECK(nuri_json_schema_to_gbnf_rule(s, "call-2", &t2, &len, NULL, 0) == NURI_ERR_INVALID_ARG);
    CHECK(nuri_json_schema_to_gbnf_rule(s, "a b", &t2, &len, NULL, 0) == NURI_ERR_INVALID_ARG);
    json_decref(s);
}

int main(void)
{
    RUN(types);
    RUN(objects_keep_the_schema_order_and_may_leave_out_optional_members);
    RUN(additional_properties_never_repeat_a_declared_name);
    RUN(arrays);
    RUN(strings_lengths_formats_and_patterns);
    RUN(integer_ranges_are_exact);
    RUN(enum_const_any_of_one_of);
    RUN(refs_and_recursion);
    RUN(unsupported_keywords_are_errors_that_name_them);
    RUN(annotations_are_ignored);
    RUN(json_object_mode_is_any_object);
    RUN(the_gbnf_text_is_there_to_read);
    RUN(a_schema_can_be_a_rule_of_a_larger_grammar);
    TEST_DONE();
}
