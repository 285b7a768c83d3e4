/* json: jansson behind a small typed interface, with the doors shut.
 *
 * Why jansson (Debian's libjansson, 2.14): it parses a length-bounded
 * buffer (json_loadb: no NUL terminator needed, so an answer body is
 * parsed where it lies), says where a document went wrong, rejects
 * duplicate keys on request, refuses \u0000 in strings unless asked,
 * checks UTF-8, and its refcounted values give each document one owner.
 * It is small, has no dependencies and has been maintained for a decade.
 *
 * What makes it safe is what happens before the parse: the size limit
 * and our own nesting limit, found by a scan that costs one pass over
 * the bytes, so a hostile answer never reaches the parser's recursion.
 *
 * struct lf_json is never defined: a pointer to one is a json_t inside
 * jansson, which keeps jansson's header out of everyone else's.
 */
#include "lakefuse/json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "lakefuse/log.h"

static json_t *J(const struct lf_json *v) { return (json_t *)(uintptr_t)v; }

static struct lf_json *L(json_t *v) { return (struct lf_json *)(void *)v; }

static void set_why(struct lf_json_error *why, size_t pos, const char *text)
{
    if (!why)
        return;
    why->position = pos;
    snprintf(why->text, sizeof(why->text), "%s", text);
}

/* The deepest nesting of arrays and objects, counted outside strings;
 * stops counting once past max. Malformed input is left to the parser. */
static bool too_deep(const char *p, size_t len, unsigned max, size_t *where)
{
    unsigned depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (in_string) {
            if (c == '\\')
                i++; /* the escaped byte cannot end the string */
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) {
                *where = i;
                return true;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return false;
}

int lf_json_parse(const char *data, size_t len, size_t max, struct lf_json **root,
                  struct lf_json_error *why)
{
    *root = NULL;
    set_why(why, 0, "");
    if (!data || len == 0) {
        set_why(why, 0, "empty document");
        return -EPROTO;
    }
    if (len > max) {
        char t[64];
        snprintf(t, sizeof(t), "document over %zu bytes", max);
        set_why(why, max, t);
        return -EPROTO;
    }
    size_t at;
    if (too_deep(data, len, LF_JSON_MAX_DEPTH, &at)) {
        char t[64];
        snprintf(t, sizeof(t), "nested deeper than %d levels", LF_JSON_MAX_DEPTH);
        set_why(why, at, t);
        return -EPROTO;
    }
    json_error_t e;
    /* Without JSON_ALLOW_NUL a \u0000 is refused; without
     * JSON_DECODE_ANY only an object or an array is a document. */
    json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES, &e);
    if (!v) {
        set_why(why, e.position > 0 ? (size_t)e.position : 0, e.text);
        return json_error_code(&e) == json_error_out_of_memory ? -ENOMEM : -EPROTO;
    }
    *root = L(v);
    return 0;
}

void lf_json_free(struct lf_json *root) { json_decref(J(root)); }

enum lf_json_type lf_json_type(const struct lf_json *v)
{
    switch (json_typeof(J(v))) {
    case JSON_OBJECT:
        return LF_JSON_OBJECT;
    case JSON_ARRAY:
        return LF_JSON_ARRAY;
    case JSON_STRING:
        return LF_JSON_STRING;
    case JSON_INTEGER:
        return LF_JSON_INTEGER;
    case JSON_REAL:
        return LF_JSON_REAL;
    case JSON_TRUE:
    case JSON_FALSE:
        return LF_JSON_BOOL;
    case JSON_NULL:
        break;
    }
    return LF_JSON_NULL;
}

static const char *type_name(const json_t *v)
{
    static const char *const names[] = {"an object", "an array", "a string", "an integer",
                                        "a number", "a boolean", "a boolean", "null"};
    int t = v ? (int)json_typeof(v) : -1;
    return t >= 0 && t < (int)(sizeof(names) / sizeof(names[0])) ? names[t] : "nothing";
}

/* The member key of obj when it has type `type`; NULL (and a log line)
 * otherwise. */
static json_t *member(const struct lf_json *obj, const char *key, json_type type,
                      const char *want)
{
    json_t *o = J(obj);
    if (!json_is_object(o)) {
        lf_warn("JSON: '%s' looked up in %s, not an object", key, type_name(o));
        return NULL;
    }
    json_t *v = json_object_get(o, key);
    if (!v) {
        lf_warn("JSON: member '%s' is missing", key);
        return NULL;
    }
    /* true and false are two jansson types and one JSON type. */
    bool ok = json_typeof(v) == type || (type == JSON_TRUE && json_is_boolean(v));
    if (!ok) {
        lf_warn("JSON: member '%s' is %s, not %s", key, type_name(v), want);
        return NULL;
    }
    return v;
}

bool lf_json_has(const struct lf_json *obj, const char *key)
{
    json_t *v = json_is_object(J(obj)) ? json_object_get(J(obj), key) : NULL;
    return v && !json_is_null(v);
}

int lf_json_get_str(const struct lf_json *obj, const char *key, const char **out)
{
    json_t *v = member(obj, key, JSON_STRING, "a string");
    if (!v)
        return -EPROTO;
    *out = json_string_value(v);
    return 0;
}

int lf_json_get_int(const struct lf_json *obj, const char *key, int64_t *out)
{
    json_t *v = member(obj, key, JSON_INTEGER, "an integer");
    if (!v)
        return -EPROTO;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

int lf_json_get_bool(const struct lf_json *obj, const char *key, bool *out)
{
    json_t *v = member(obj, key, JSON_TRUE, "a boolean");
    if (!v)
        return -EPROTO;
    *out = json_is_true(v);
    return 0;
}

int lf_json_get_obj(const struct lf_json *obj, const char *key, const struct lf_json **out)
{
    json_t *v = member(obj, key, JSON_OBJECT, "an object");
    if (!v)
        return -EPROTO;
    *out = L(v);
    return 0;
}

int lf_json_get_array(const struct lf_json *obj, const char *key, const struct lf_json **arr,
                      size_t *n)
{
    json_t *v = member(obj, key, JSON_ARRAY, "an array");
    if (!v)
        return -EPROTO;
    *arr = L(v);
    *n = json_array_size(v);
    return 0;
}

int lf_json_copy_str(const struct lf_json *obj, const char *key, char *dst, size_t cap)
{
    json_t *v = member(obj, key, JSON_STRING, "a string");
    if (!v)
        return -EPROTO;
    size_t n = json_string_length(v);
    if (n >= cap) {
        lf_warn("JSON: member '%s' is %zu bytes, over the %zu this field holds", key, n,
                cap ? cap - 1 : 0);
        return -EPROTO;
    }
    memcpy(dst, json_string_value(v), n + 1);
    return 0;
}

const struct lf_json *lf_json_at(const struct lf_json *arr, size_t i)
{
    return L(json_array_get(J(arr), i)); /* NULL for a non-array or out of range */
}

const char *lf_json_str(const struct lf_json *v) { return json_string_value(J(v)); }

int lf_json_each(const struct lf_json *obj, const char *what, lf_json_member_fn fn, void *arg)
{
    json_t *o = J(obj);
    if (!json_is_object(o)) {
        lf_warn("JSON: '%s' is %s, not an object", what, type_name(o));
        return -EPROTO;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        int rc = fn(arg, k, L(v));
        if (rc)
            return rc;
    }
    return 0;
}

struct lf_json *lf_json_new_object(void) { return L(json_object()); }

int lf_json_set(struct lf_json *obj, const char *key, struct lf_json *value)
{
    if (!json_is_object(J(obj)) || !key) {
        json_decref(J(value));
        return -EINVAL;
    }
    if (!value)
        return -ENOMEM;
    /* json_object_set_new checks the key's UTF-8 and consumes value. */
    return json_object_set_new(J(obj), key, J(value)) ? -EINVAL : 0;
}

int lf_json_set_str(struct lf_json *obj, const char *key, const char *value)
{
    if (!value || !json_is_object(J(obj)))
        return -EINVAL;
    json_t *s = json_string(value); /* NULL for invalid UTF-8 (or no memory) */
    if (!s)
        return -EINVAL;
    return lf_json_set(obj, key, L(s));
}

int lf_json_set_int(struct lf_json *obj, const char *key, int64_t value)
{
    if (!json_is_object(J(obj)))
        return -EINVAL;
    return lf_json_set(obj, key, L(json_integer((json_int_t)value)));
}

struct lf_json *lf_json_new_array(void) { return L(json_array()); }

int lf_json_push(struct lf_json *arr, struct lf_json *value)
{
    if (!json_is_array(J(arr))) {
        json_decref(J(value));
        return -EINVAL;
    }
    if (!value)
        return -ENOMEM;
    return json_array_append_new(J(arr), J(value)) ? -ENOMEM : 0;
}

int lf_json_dump(const struct lf_json *v, struct lf_buf *out)
{
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    size_t n = json_dumpb(J(v), NULL, 0, flags);
    if (n == 0)
        return -EINVAL;
    int rc = lf_buf_reserve(out, n);
    if (rc)
        return rc;
    if (json_dumpb(J(v), out->data + out->len, n, flags) != n)
        return -EIO;
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}
