/* sigv4: AWS Signature Version 4 for S3 requests (header and presigned).
 *
 * The caller describes a request with raw, unencoded values; the signer
 * applies S3's encoding rules itself (see uri.h), with no dot-segment
 * normalisation and no double encoding, so a key such as "a/./b c" is
 * signed exactly as it will be sent. Every header handed in is signed:
 * the caller chooses the set (at least host and x-amz-date, whose value
 * must be lf_sigv4_amz_date(req->time)).
 *
 * The signer owns copies of the credentials. The secret key leaves it only
 * as HMAC output, is wiped when the signer is freed, and appears in no
 * string this module produces or logs.
 */
#ifndef LAKEFUSE_SIGV4_H
#define LAKEFUSE_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "lakefuse/buf.h"

#define LF_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define LF_SIGV4_AMZ_DATE_SIZE 17     /* YYYYMMDDTHHMMSSZ + NUL */
#define LF_SIGV4_SIGNATURE_SIZE 65    /* 64 hex digits + NUL */
#define LF_SIGV4_MAX_EXPIRES 604800   /* presigned URLs: seven days */

struct lf_sigv4_kv {
    const char *name;
    const char *value;   /* NULL is the same as "" */
};

struct lf_sigv4_req {
    const char *method;                 /* "GET", "PUT", ... */
    const char *path;                   /* raw, starts with '/'; NULL = "/" */
    const struct lf_sigv4_kv *query;    /* raw names and values */
    size_t nquery;
    const struct lf_sigv4_kv *headers;  /* any case; values as sent */
    size_t nheaders;
    const char *payload_hash;           /* hex SHA-256 or UNSIGNED-PAYLOAD */
    time_t time;                        /* signing time, UTC */
};

/* What the signer built on the way, for tests and debugging. Both buffers
 * belong to the caller; a call replaces what they held. Neither ever holds
 * key material. */
struct lf_sigv4_trace {
    struct lf_buf creq;   /* canonical request */
    struct lf_buf sts;    /* string to sign */
};

struct lf_sigv4;

/* NULL on bad arguments (any NULL or empty string) or out of memory.
 * Thread-safe once made: one signer serves every worker thread. */
struct lf_sigv4 *lf_sigv4_new(const char *access_key, const char *secret_key,
                              const char *region, const char *service);
void lf_sigv4_free(struct lf_sigv4 *s);

/* The x-amz-date form of t. -EINVAL if t is outside years 1970..9999. */
int lf_sigv4_amz_date(time_t t, char out[LF_SIGV4_AMZ_DATE_SIZE]);

/* Each appends to out and returns 0 or a negative errno: -EINVAL for a
 * malformed request (no method or payload hash, a path without a leading
 * '/', a header name that is not a token, CR or LF in a header value),
 * -ENOMEM. */
int lf_sigv4_canonical_request(const struct lf_sigv4_req *req, struct lf_buf *out);
int lf_sigv4_string_to_sign(const struct lf_sigv4 *s, const struct lf_sigv4_req *req,
                            struct lf_buf *out);
int lf_sigv4_signature(struct lf_sigv4 *s, const struct lf_sigv4_req *req,
                       char out[LF_SIGV4_SIGNATURE_SIZE]);
/* The Authorization header value, "AWS4-HMAC-SHA256 Credential=...". */
int lf_sigv4_authorization(struct lf_sigv4 *s, const struct lf_sigv4_req *req,
                           struct lf_buf *out);

/* Appends the query string of a presigned URL for req: req's own query
 * parameters plus X-Amz-Algorithm, -Credential, -Date, -Expires,
 * -SignedHeaders=host, all encoded and sorted, then X-Amz-Signature.
 * Only req's host header is signed (it must have one) and the payload is
 * UNSIGNED-PAYLOAD whatever req says. expires: 1..LF_SIGV4_MAX_EXPIRES
 * seconds. trace may be NULL. */
int lf_sigv4_presign(struct lf_sigv4 *s, const struct lf_sigv4_req *req,
                     unsigned expires, struct lf_buf *out,
                     struct lf_sigv4_trace *trace);

#endif
