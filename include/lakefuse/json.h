/* json: lakeFS REST answers parsed defensively, and request bodies built.
 *
 * Server answers are untrusted input. A document is refused (-EPROTO)
 * when it is larger than the caller's limit, nests deeper than
 * LF_JSON_MAX_DEPTH, repeats a key in one object, holds a string that is
 * not UTF-8 or contains a NUL (\u0000), or has anything after its value.
 * Only an object or an array is a document.
 *
 * Values are borrowed from the document's root and live until
 * lf_json_free(root). The typed getters never crash on a wrong type: a
 * member that is missing or of another type is -EPROTO and a log line
 * naming it.
 */
#ifndef LAKEFUSE_JSON_H
#define LAKEFUSE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lakefuse/buf.h"

/* An answer body: a page of 1000 diff entries with long paths is well
 * under 2 MiB. */
#define LF_JSON_MAX (8u * 1024 * 1024)
/* lakeFS answers nest three levels; jansson's own limit is 2048. */
#define LF_JSON_MAX_DEPTH 32

struct lf_json;

/* Where and why a document was refused, for a log line. */
struct lf_json_error {
    size_t position; /* byte offset, when the parser knows it */
    char text[160];
};

/* Parses data[0..len) (no NUL needed) into *root, which the caller frees.
 * -EPROTO when refused (why says where and why; may be NULL), -ENOMEM. */
int lf_json_parse(const char *data, size_t len, size_t max, struct lf_json **root,
                  struct lf_json_error *why);
/* Releases a root from lf_json_parse or lf_json_new_object; NULL is fine. */
void lf_json_free(struct lf_json *root);

enum lf_json_type {
    LF_JSON_OBJECT,
    LF_JSON_ARRAY,
    LF_JSON_STRING,
    LF_JSON_INTEGER,
    LF_JSON_REAL,
    LF_JSON_BOOL,
    LF_JSON_NULL,
};
enum lf_json_type lf_json_type(const struct lf_json *v);

/* True when obj is an object holding key with a value other than null:
 * for optional members, before their getter. */
bool lf_json_has(const struct lf_json *obj, const char *key);

/* Members of an object: 0, or -EPROTO (logged) when obj is no object or
 * the member is missing or of another type. */
int lf_json_get_str(const struct lf_json *obj, const char *key, const char **out);
int lf_json_get_int(const struct lf_json *obj, const char *key, int64_t *out);
int lf_json_get_bool(const struct lf_json *obj, const char *key, bool *out);
int lf_json_get_obj(const struct lf_json *obj, const char *key, const struct lf_json **out);
int lf_json_get_array(const struct lf_json *obj, const char *key, const struct lf_json **arr,
                      size_t *n);
/* A string member copied into dst[cap]: -EPROTO (logged) when it does not
 * fit, since a cut identifier would name something else. */
int lf_json_copy_str(const struct lf_json *obj, const char *key, char *dst, size_t cap);

/* Array elements: NULL when arr is no array or i is out of range. */
const struct lf_json *lf_json_at(const struct lf_json *arr, size_t i);
/* A string value, or NULL when v is not a string. */
const char *lf_json_str(const struct lf_json *v);

/* Calls fn for each member of obj in document order; a nonzero return
 * stops and is returned. -EPROTO (logged, with `what`) when obj is no
 * object. */
typedef int (*lf_json_member_fn)(void *arg, const char *key, const struct lf_json *value);
int lf_json_each(const struct lf_json *obj, const char *what, lf_json_member_fn fn, void *arg);

/* Request bodies. Setters return 0, -EINVAL (a string that is not UTF-8
 * or a non-object target) or -ENOMEM. lf_json_set takes value over,
 * whatever it returns. */
struct lf_json *lf_json_new_object(void);
int lf_json_set_str(struct lf_json *obj, const char *key, const char *value);
int lf_json_set(struct lf_json *obj, const char *key, struct lf_json *value);
int lf_json_set_int(struct lf_json *obj, const char *key, int64_t value);
/* An empty array, and appending to one (takes value over, as lf_json_set
 * does; -EINVAL when arr is no array). */
struct lf_json *lf_json_new_array(void);
int lf_json_push(struct lf_json *arr, struct lf_json *value);
/* Appends the compact encoding of v to out. */
int lf_json_dump(const struct lf_json *v, struct lf_buf *out);

#endif
