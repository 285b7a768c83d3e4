/* json: the limits (size, depth, duplicate keys, NUL and bad UTF-8 in
 * strings, trailing bytes), typed getters on wrong types and missing
 * members, and request bodies that survive a round trip. */
#include "check.h"
#include "lakefuse/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *s, struct lf_json **root)
{
    return lf_json_parse(s, strlen(s), LF_JSON_MAX, root, NULL);
}

/* Refused documents leave no root behind. */
static void refused(const char *s)
{
    struct lf_json *root = (struct lf_json *)1;
    int rc = parse(s, &root);
    CHECK_INT(rc, -EPROTO);
    CHECK(root == NULL);
    if (rc != -EPROTO)
        fprintf(stderr, "    document: %.80s\n", s);
}

static char *nested(unsigned depth)
{
    char *s = malloc(2 * depth + 1);
    for (unsigned i = 0; i < depth; i++) {
        s[i] = '[';
        s[2 * depth - 1 - i] = ']';
    }
    s[2 * depth] = '\0';
    return s;
}

static int count_members(void *arg, const char *key, const struct lf_json *v)
{
    (void)key;
    (void)v;
    (*(int *)arg)++;
    return 0;
}

static int stop_at_b(void *arg, const char *key, const struct lf_json *v)
{
    (void)v;
    (*(int *)arg)++;
    return strcmp(key, "b") == 0 ? 7 : 0;
}

int main(void)
{
    struct lf_json *root;
    struct lf_json_error why;

    /* A document's size limit is the caller's. */
    const char *small = "{\"a\": \"0123456789\"}";
    CHECK_INT(lf_json_parse(small, strlen(small), strlen(small) - 1, &root, &why), -EPROTO);
    CHECK(strstr(why.text, "over") != NULL);
    CHECK_INT(lf_json_parse(small, strlen(small), strlen(small), &root, NULL), 0);
    lf_json_free(root);
    CHECK_INT(lf_json_parse("", 0, LF_JSON_MAX, &root, NULL), -EPROTO);
    CHECK_INT(lf_json_parse(NULL, 0, LF_JSON_MAX, &root, NULL), -EPROTO);

    /* Nesting: 32 levels pass, 33 are refused before jansson sees them,
     * and so is a depth that would exhaust a naive recursive parser. */
    char *ok = nested(LF_JSON_MAX_DEPTH), *deep = nested(LF_JSON_MAX_DEPTH + 1);
    CHECK_INT(parse(ok, &root), 0);
    lf_json_free(root);
    CHECK_INT(lf_json_parse(deep, strlen(deep), LF_JSON_MAX, &root, &why), -EPROTO);
    CHECK_INT(why.position, LF_JSON_MAX_DEPTH);
    CHECK(strstr(why.text, "deeper") != NULL);
    free(ok);
    free(deep);
    char *bomb = nested(100000);
    refused(bomb);
    free(bomb);
    /* Brackets inside strings are text, not nesting (escaped quotes too). */
    struct lf_buf b = LF_BUF_INIT;
    lf_buf_puts(&b, "{\"s\": \"\\\"");
    for (int i = 0; i < 100; i++)
        lf_buf_puts(&b, "[{");
    lf_buf_puts(&b, "\"}");
    CHECK_INT(parse(b.data, &root), 0);
    lf_json_free(root);
    lf_buf_free(&b);

    /* Duplicate keys, NUL, bad UTF-8, trailing bytes, bare scalars. */
    refused("{\"a\": 1, \"a\": 2}");
    refused("{\"o\": {\"k\": \"x\", \"k\": \"y\"}}");
    refused("{\"a\": \"x\\u0000y\"}");
    refused("{\"a\\u0000\": 1}");
    refused("{\"a\": \"\xff\xfe\"}");
    refused("{\"a\": \"\xc3\"}");
    refused("{\"a\": 1} x");
    refused("{\"a\": 1}{}");
    refused("\"just a string\"");
    refused("42");
    refused("{\"a\": 1");
    refused("{\"a\": 99999999999999999999999}");
    const char raw_nul[] = "{\"a\": \"x\0y\"}";
    CHECK_INT(lf_json_parse(raw_nul, sizeof(raw_nul) - 1, LF_JSON_MAX, &root, &why), -EPROTO);
    /* No NUL terminator is needed: the length bounds the parse. */
    const char unterminated[] = {'{', '"', 'a', '"', ':', '1', '}', 'G', 'A', 'R'};
    CHECK_INT(lf_json_parse(unterminated, 7, LF_JSON_MAX, &root, NULL), 0);
    lf_json_free(root);
    /* jansson says where a document went wrong. */
    const char *bad = "{\"a\": [1, 2,, 3]}";
    CHECK_INT(lf_json_parse(bad, strlen(bad), LF_JSON_MAX, &root, &why), -EPROTO);
    CHECK(why.position >= 11 && why.position <= 13);
    CHECK(why.text[0] != '\0');

    /* Getters: right types, wrong types, missing members, non-objects. */
    const char *doc = "{\"s\": \"text\", \"i\": -42, \"big\": 9007199254740993, \"t\": true,"
                      " \"f\": false, \"r\": 1.5, \"n\": null, \"o\": {\"k\": \"v\"},"
                      " \"a\": [1, \"two\", {\"x\": 3}], \"u\": \"caf\xc3\xa9\"}";
    CHECK_INT(parse(doc, &root), 0);
    CHECK_INT(lf_json_type(root), LF_JSON_OBJECT);
    const char *s = NULL;
    int64_t i = 0;
    bool t = false;
    const struct lf_json *o = NULL, *a = NULL;
    size_t n = 0;
    CHECK_INT(lf_json_get_str(root, "s", &s), 0);
    CHECK_STR(s, "text");
    CHECK_INT(lf_json_get_int(root, "i", &i), 0);
    CHECK_INT(i, -42);
    CHECK_INT(lf_json_get_int(root, "big", &i), 0);
    CHECK(i == 9007199254740993LL);
    CHECK_INT(lf_json_get_bool(root, "t", &t), 0);
    CHECK(t);
    CHECK_INT(lf_json_get_bool(root, "f", &t), 0);
    CHECK(!t);
    CHECK_INT(lf_json_get_obj(root, "o", &o), 0);
    CHECK_INT(lf_json_get_str(o, "k", &s), 0);
    CHECK_STR(s, "v");
    CHECK_INT(lf_json_get_array(root, "a", &a, &n), 0);
    CHECK_INT(n, 3);
    CHECK_INT(lf_json_type(lf_json_at(a, 0)), LF_JSON_INTEGER);
    CHECK_STR(lf_json_str(lf_json_at(a, 1)), "two");
    CHECK(lf_json_str(lf_json_at(a, 0)) == NULL);
    CHECK(lf_json_at(a, 3) == NULL);
    CHECK(lf_json_at(o, 0) == NULL); /* an object is no array */
    CHECK_INT(lf_json_get_int(lf_json_at(a, 2), "x", &i), 0);
    CHECK_INT(i, 3);
    CHECK_INT(lf_json_type(lf_json_at(a, 2)), LF_JSON_OBJECT);

    s = "unchanged";
    CHECK_INT(lf_json_get_str(root, "i", &s), -EPROTO);
    CHECK_STR(s, "unchanged");
    CHECK_INT(lf_json_get_str(root, "n", &s), -EPROTO);
    CHECK_INT(lf_json_get_str(root, "missing", &s), -EPROTO);
    CHECK_INT(lf_json_get_int(root, "r", &i), -EPROTO); /* a real is no integer */
    CHECK_INT(lf_json_get_int(root, "s", &i), -EPROTO);
    CHECK_INT(lf_json_get_int(root, "t", &i), -EPROTO);
    CHECK_INT(lf_json_get_bool(root, "i", &t), -EPROTO);
    CHECK_INT(lf_json_get_bool(root, "s", &t), -EPROTO);
    CHECK_INT(lf_json_get_obj(root, "a", &o), -EPROTO);
    CHECK_INT(lf_json_get_array(root, "o", &a, &n), -EPROTO);
    CHECK_INT(lf_json_get_str(a, "s", &s), -EPROTO);   /* an array has no members */
    CHECK_INT(lf_json_get_str(lf_json_at(a, 0), "s", &s), -EPROTO);
    CHECK_INT(lf_json_get_str(NULL, "s", &s), -EPROTO);
    CHECK(lf_json_has(root, "s"));
    CHECK(!lf_json_has(root, "n"));
    CHECK(!lf_json_has(root, "missing"));
    CHECK(!lf_json_has(a, "s"));
    CHECK(!lf_json_has(NULL, "s"));

    char small_dst[5];
    CHECK_INT(lf_json_copy_str(root, "s", small_dst, sizeof(small_dst)), 0);
    CHECK_STR(small_dst, "text");
    CHECK_INT(lf_json_copy_str(root, "s", small_dst, 4), -EPROTO);
    CHECK_INT(lf_json_copy_str(root, "i", small_dst, sizeof(small_dst)), -EPROTO);
    char u[8];
    CHECK_INT(lf_json_copy_str(root, "u", u, sizeof(u)), 0);
    CHECK_STR(u, "caf\xc3\xa9");

    int count = 0;
    CHECK_INT(lf_json_each(root, "root", count_members, &count), 0);
    CHECK_INT(count, 10);
    count = 0;
    const char *order = "{\"a\": 1, \"b\": 2, \"c\": 3}";
    struct lf_json *r2;
    CHECK_INT(parse(order, &r2), 0);
    CHECK_INT(lf_json_each(r2, "r2", stop_at_b, &count), 7);
    CHECK_INT(count, 2); /* document order, stopped at b */
    lf_json_free(r2);
    CHECK_INT(lf_json_each(a, "a", count_members, &count), -EPROTO);
    lf_json_free(root);

    /* Building: strings escaped, UTF-8 checked, values taken over. */
    struct lf_json *req = lf_json_new_object(), *md = lf_json_new_object();
    CHECK_INT(lf_json_set_str(req, "message", "line \"one\"\nline two\\"), 0);
    CHECK_INT(lf_json_set_str(md, "k\xc3\xa9y", "v"), 0);
    CHECK_INT(lf_json_set_str(md, "bad", "\xff"), -EINVAL);
    CHECK_INT(lf_json_set_str(md, "\xff", "v"), -EINVAL);
    CHECK_INT(lf_json_set_str(md, "k", NULL), -EINVAL);
    CHECK_INT(lf_json_set(req, "metadata", md), 0);
    CHECK_INT(lf_json_set(req, "x", NULL), -ENOMEM);
    CHECK_INT(lf_json_set(NULL, "x", lf_json_new_object()), -EINVAL); /* freed, not leaked */
    struct lf_buf out = LF_BUF_INIT;
    lf_buf_puts(&out, "prefix:");
    CHECK_INT(lf_json_dump(req, &out), 0);
    CHECK_STR(out.data,
              "prefix:{\"message\":\"line \\\"one\\\"\\nline two\\\\\","
              "\"metadata\":{\"k\xc3\xa9y\":\"v\"}}");
    CHECK_INT(out.len, strlen(out.data));
    CHECK_INT(lf_json_parse(out.data + 7, out.len - 7, LF_JSON_MAX, &root, NULL), 0);
    CHECK_INT(lf_json_get_obj(root, "metadata", &o), 0);
    CHECK_INT(lf_json_get_str(o, "k\xc3\xa9y", &s), 0);
    CHECK_STR(s, "v");
    lf_json_free(root);
    lf_json_free(req);
    lf_buf_free(&out);
    lf_json_free(NULL);

    return check_summary("test_json");
}
