/* sigv4: AWS Signature Version 4, the S3 flavour.
 *
 * Canonicalisation copies every name and value, encoded or trimmed, into
 * one scratch buffer, NUL after each, then sorts an index over it: one
 * allocation per part of the request instead of one per string, and the
 * caller's arrays stay untouched. Sorts are made stable with the input
 * position, because repeated headers must keep the caller's order.
 *
 * The signing key depends only on the date, so it is derived once a day
 * and cached under a mutex; the four HMACs it replaces cost more than an
 * uncontended lock. Intermediate keys are wiped from the stack after use.
 */
#include "lakefuse/sigv4.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lakefuse/hash.h"
#include "lakefuse/uri.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define DATE_SIZE 9  /* YYYYMMDD + NUL */

struct lf_sigv4 {
    char *access_key;
    char *ksecret;          /* "AWS4" + secret key, the first HMAC's key */
    size_t ksecret_len;
    char *region;
    char *service;
    pthread_mutex_t lock;   /* guards the cached key below */
    char key_date[DATE_SIZE];
    unsigned char key[LF_SHA256_LEN];
};

/* One name/value pair of the canonical form, pointing into scratch. */
struct item {
    size_t name_off, value_off;
    const char *name, *value;
    size_t order;
};

struct lf_sigv4 *lf_sigv4_new(const char *access_key, const char *secret_key,
                              const char *region, const char *service)
{
    if (!access_key || !*access_key || !secret_key || !*secret_key || !region ||
        !*region || !service || !*service)
        return NULL;
    struct lf_sigv4 *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    s->ksecret_len = 4 + strlen(secret_key);
    s->ksecret = malloc(s->ksecret_len + 1);
    s->access_key = strdup(access_key);
    s->region = strdup(region);
    s->service = strdup(service);
    if (!s->ksecret || !s->access_key || !s->region || !s->service) {
        lf_sigv4_free(s);
        return NULL;
    }
    memcpy(s->ksecret, "AWS4", 4);
    memcpy(s->ksecret + 4, secret_key, s->ksecret_len - 4 + 1);
    return s;
}

void lf_sigv4_free(struct lf_sigv4 *s)
{
    if (!s)
        return;
    if (s->ksecret)
        OPENSSL_cleanse(s->ksecret, s->ksecret_len);
    OPENSSL_cleanse(s->key, sizeof(s->key));
    free(s->ksecret);
    free(s->access_key);
    free(s->region);
    free(s->service);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int lf_sigv4_amz_date(time_t t, char out[LF_SIGV4_AMZ_DATE_SIZE])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year < 70 || tm.tm_year > 9999 - 1900)
        return -EINVAL;
    if (strftime(out, LF_SIGV4_AMZ_DATE_SIZE, "%Y%m%dT%H%M%SZ", &tm) !=
        LF_SIGV4_AMZ_DATE_SIZE - 1)
        return -EINVAL;
    return 0;
}

/* Appends s + NUL to scratch and returns where it starts, or (size_t)-1. */
static size_t stash_encoded(struct lf_buf *scratch, const char *s)
{
    size_t off = scratch->len;
    if (lf_uri_encode(scratch, s ? s : "", s ? strlen(s) : 0, false) ||
        lf_buf_append(scratch, "", 1))
        return (size_t)-1;
    return off;
}

static bool is_tchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* Lowercased name + NUL; -EINVAL unless the name is an HTTP token. */
static int stash_header_name(struct lf_buf *scratch, const char *name, size_t *off)
{
    size_t n = strlen(name);
    if (n == 0)
        return -EINVAL;
    *off = scratch->len;
    int rc = lf_buf_reserve(scratch, n + 1);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!is_tchar(c))
            return -EINVAL;
        scratch->data[scratch->len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    scratch->data[scratch->len++] = '\0';
    return 0;
}

/* Value trimmed, inner runs of blanks as one space, + NUL. CR, LF and
 * other control bytes are refused: they could only smuggle a line into
 * the request. */
static int stash_header_value(struct lf_buf *scratch, const char *v, size_t *off)
{
    v = v ? v : "";
    *off = scratch->len;
    int rc = lf_buf_reserve(scratch, strlen(v) + 1);
    if (rc)
        return rc;
    bool gap = false;
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return -EINVAL;
        if (is_blank(*v)) {
            gap = true;
            continue;
        }
        if (gap && scratch->len > *off)
            scratch->data[scratch->len++] = ' ';
        gap = false;
        scratch->data[scratch->len++] = *v;
    }
    scratch->data[scratch->len++] = '\0';
    return 0;
}

/* Turns offsets into pointers once scratch has stopped moving. */
static void resolve(struct item *it, size_t n, const struct lf_buf *scratch)
{
    for (size_t i = 0; i < n; i++) {
        it[i].name = scratch->data + it[i].name_off;
        it[i].value = scratch->data + it[i].value_off;
    }
}

static int cmp_order(const struct item *a, const struct item *b)
{
    return (a->order > b->order) - (a->order < b->order);
}

static int cmp_query(const void *pa, const void *pb)
{
    const struct item *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);
    if (c == 0)
        c = strcmp(a->value, b->value);
    return c ? c : cmp_order(a, b);
}

static int cmp_header(const void *pa, const void *pb)
{
    const struct item *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);
    return c ? c : cmp_order(a, b);
}

/* Appends name=value&... encoded and sorted; the form both the canonical
 * request and a presigned URL use. */
static int canonical_query(const struct lf_sigv4_kv *kv, size_t n, struct lf_buf *out)
{
    struct lf_buf scratch = LF_BUF_INIT;
    struct item *it = n ? calloc(n, sizeof(*it)) : NULL;
    int rc = -ENOMEM;
    if (n && !it)
        goto out;
    for (size_t i = 0; i < n; i++) {
        it[i].order = i;
        it[i].name_off = stash_encoded(&scratch, kv[i].name);
        it[i].value_off = stash_encoded(&scratch, kv[i].value);
        if (it[i].name_off == (size_t)-1 || it[i].value_off == (size_t)-1)
            goto out;
    }
    resolve(it, n, &scratch);
    if (n)
        qsort(it, n, sizeof(*it), cmp_query);
    rc = lf_buf_append(out, "", 0);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = lf_buf_printf(out, "%s%s=%s", i ? "&" : "", it[i].name, it[i].value);
out:
    free(it);
    lf_buf_free(&scratch);
    return rc;
}

/* Appends the canonical header lines (each "name:value\n") to out and the
 * signed-header list ("a;b;c") to names. */
static int canonical_headers(const struct lf_sigv4_kv *kv, size_t n,
                             struct lf_buf *out, struct lf_buf *names)
{
    struct lf_buf scratch = LF_BUF_INIT;
    struct item *it = n ? calloc(n, sizeof(*it)) : NULL;
    int rc = -ENOMEM;
    if (n && !it)
        goto out;
    for (size_t i = 0; i < n; i++) {
        it[i].order = i;
        if (!kv[i].name) {
            rc = -EINVAL;
            goto out;
        }
        if ((rc = stash_header_name(&scratch, kv[i].name, &it[i].name_off)) ||
            (rc = stash_header_value(&scratch, kv[i].value, &it[i].value_off)))
            goto out;
    }
    resolve(it, n, &scratch);
    if (n)
        qsort(it, n, sizeof(*it), cmp_header);
    rc = lf_buf_append(names, "", 0);  /* a valid "" even with no headers */
    for (size_t i = 0; i < n && rc == 0; i++) {
        bool repeat = i > 0 && strcmp(it[i].name, it[i - 1].name) == 0;
        bool last = i + 1 == n || strcmp(it[i].name, it[i + 1].name) != 0;
        if (repeat)
            rc = lf_buf_printf(out, ",%s", it[i].value);
        else
            rc = lf_buf_printf(out, "%s:%s", it[i].name, it[i].value);
        if (rc == 0 && last)
            rc = lf_buf_append(out, "\n", 1);
        if (rc == 0 && !repeat)
            rc = lf_buf_printf(names, "%s%s", i ? ";" : "", it[i].name);
    }
out:
    free(it);
    lf_buf_free(&scratch);
    return rc;
}

/* The canonical request into out, the signed-header list into names. */
static int canonical_request(const struct lf_sigv4_req *req, struct lf_buf *out,
                             struct lf_buf *names)
{
    const char *path = req->path && *req->path ? req->path : "/";
    if (!req->method || !*req->method || !req->payload_hash || path[0] != '/')
        return -EINVAL;
    int rc;
    if ((rc = lf_buf_printf(out, "%s\n", req->method)) ||
        (rc = lf_uri_encode(out, path, strlen(path), true)) ||
        (rc = lf_buf_append(out, "\n", 1)) ||
        (rc = canonical_query(req->query, req->nquery, out)) ||
        (rc = lf_buf_append(out, "\n", 1)) ||
        (rc = canonical_headers(req->headers, req->nheaders, out, names)))
        return rc;
    return lf_buf_printf(out, "\n%s\n%s", names->data, req->payload_hash);
}

int lf_sigv4_canonical_request(const struct lf_sigv4_req *req, struct lf_buf *out)
{
    struct lf_buf names = LF_BUF_INIT;
    int rc = canonical_request(req, out, &names);
    lf_buf_free(&names);
    return rc;
}

/* date/region/service/aws4_request */
static int append_scope(const struct lf_sigv4 *s, const char *amz_date,
                        struct lf_buf *out)
{
    return lf_buf_printf(out, "%.8s/%s/%s/aws4_request", amz_date, s->region,
                         s->service);
}

static int string_to_sign(const struct lf_sigv4 *s, const char *amz_date,
                          const struct lf_buf *creq, struct lf_buf *out)
{
    char hash[LF_SHA256_HEX_SIZE];
    int rc = lf_sha256_hex(creq->data, creq->len, hash);
    if (rc == 0)
        rc = lf_buf_printf(out, ALGORITHM "\n%s\n", amz_date);
    if (rc == 0)
        rc = append_scope(s, amz_date, out);
    if (rc == 0)
        rc = lf_buf_printf(out, "\n%s", hash);
    return rc;
}

int lf_sigv4_string_to_sign(const struct lf_sigv4 *s, const struct lf_sigv4_req *req,
                            struct lf_buf *out)
{
    char amz_date[LF_SIGV4_AMZ_DATE_SIZE];
    struct lf_buf creq = LF_BUF_INIT;
    int rc = lf_sigv4_amz_date(req->time, amz_date);
    if (rc == 0)
        rc = lf_sigv4_canonical_request(req, &creq);
    if (rc == 0)
        rc = string_to_sign(s, amz_date, &creq, out);
    lf_buf_free(&creq);
    return rc;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region),
 * service), "aws4_request"). Caller holds s->lock. */
static int derive_key(struct lf_sigv4 *s, const char *date)
{
    unsigned char k1[LF_SHA256_LEN], k2[LF_SHA256_LEN], k3[LF_SHA256_LEN];
    int rc = lf_hmac_sha256(s->ksecret, s->ksecret_len, date, 8, k1);
    if (rc == 0)
        rc = lf_hmac_sha256(k1, sizeof(k1), s->region, strlen(s->region), k2);
    if (rc == 0)
        rc = lf_hmac_sha256(k2, sizeof(k2), s->service, strlen(s->service), k3);
    if (rc == 0)
        rc = lf_hmac_sha256(k3, sizeof(k3), "aws4_request", 12, s->key);
    if (rc == 0)
        memcpy(s->key_date, date, 8);
    else
        s->key_date[0] = '\0';
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    return rc;
}

/* HMAC(kSigning, sts) in hex; the key is used under the lock so a thread
 * signing across midnight never sees half of the next day's key. */
static int sign_sts(struct lf_sigv4 *s, const char *amz_date, const struct lf_buf *sts,
                    char out[LF_SIGV4_SIGNATURE_SIZE])
{
    unsigned char mac[LF_SHA256_LEN];
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (memcmp(s->key_date, amz_date, 8) != 0)
        rc = derive_key(s, amz_date);
    if (rc == 0)
        rc = lf_hmac_sha256(s->key, sizeof(s->key), sts->data, sts->len, mac);
    pthread_mutex_unlock(&s->lock);
    if (rc == 0)
        lf_hex_fill(out, mac, sizeof(mac));
    return rc;
}

/* The whole chain for req; names gets the signed-header list, t (never
 * NULL here) the intermediate strings. */
static int sign(struct lf_sigv4 *s, const struct lf_sigv4_req *req,
                struct lf_sigv4_trace *t, struct lf_buf *names,
                char sig[LF_SIGV4_SIGNATURE_SIZE])
{
    char amz_date[LF_SIGV4_AMZ_DATE_SIZE];
    int rc;
    if ((rc = lf_sigv4_amz_date(req->time, amz_date)) ||
        (rc = canonical_request(req, &t->creq, names)) ||
        (rc = string_to_sign(s, amz_date, &t->creq, &t->sts)))
        return rc;
    return sign_sts(s, amz_date, &t->sts, sig);
}

static void trace_free(struct lf_sigv4_trace *t)
{
    lf_buf_free(&t->creq);
    lf_buf_free(&t->sts);
}

int lf_sigv4_signature(struct lf_sigv4 *s, const struct lf_sigv4_req *req,
                       char out[LF_SIGV4_SIGNATURE_SIZE])
{
    struct lf_sigv4_trace t = {LF_BUF_INIT, LF_BUF_INIT};
    struct lf_buf names = LF_BUF_INIT;
    int rc = sign(s, req, &t, &names, out);
    lf_buf_free(&names);
    trace_free(&t);
    return rc;
}

int lf_sigv4_authorization(struct lf_sigv4 *s, const struct lf_sigv4_req *req,
                           struct lf_buf *out)
{
    struct lf_sigv4_trace t = {LF_BUF_INIT, LF_BUF_INIT};
    struct lf_buf names = LF_BUF_INIT;
    char sig[LF_SIGV4_SIGNATURE_SIZE], amz_date[LF_SIGV4_AMZ_DATE_SIZE];
    int rc;
    if ((rc = sign(s, req, &t, &names, sig)) ||
        (rc = lf_sigv4_amz_date(req->time, amz_date)) ||
        (rc = lf_buf_printf(out, ALGORITHM " Credential=%s/", s->access_key)) ||
        (rc = append_scope(s, amz_date, out)))
        goto out;
    rc = lf_buf_printf(out, ", SignedHeaders=%s, Signature=%s", names.data, sig);
out:
    lf_buf_free(&names);
    trace_free(&t);
    return rc;
}

static const char *find_header(const struct lf_sigv4_req *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value ? req->headers[i].value : "";
    return NULL;
}

/* The request a presigned URL stands for, and the strings it points to. */
struct presigned {
    struct lf_sigv4_req req;
    struct lf_sigv4_kv host;
    struct lf_sigv4_kv *query;      /* req's parameters + the five X-Amz-* */
    struct lf_buf credential;
    char expires[16];
    char amz_date[LF_SIGV4_AMZ_DATE_SIZE];
};

/* Fills p from req: its query plus the X-Amz-* parameters, host as the
 * only header, UNSIGNED-PAYLOAD. */
static int presigned_init(struct presigned *p, const struct lf_sigv4 *s,
                          const struct lf_sigv4_req *req, unsigned expires)
{
    p->host = (struct lf_sigv4_kv){"host", find_header(req, "host")};
    if (!p->host.value || expires == 0 || expires > LF_SIGV4_MAX_EXPIRES)
        return -EINVAL;
    if (req->nquery > ((size_t)-1) / sizeof(*p->query) - 5 ||
        !(p->query = calloc(req->nquery + 5, sizeof(*p->query))))
        return -ENOMEM;
    int rc;
    if ((rc = lf_sigv4_amz_date(req->time, p->amz_date)) ||
        (rc = lf_buf_printf(&p->credential, "%s/", s->access_key)) ||
        (rc = append_scope(s, p->amz_date, &p->credential)))
        return rc;
    snprintf(p->expires, sizeof(p->expires), "%u", expires);
    size_t n = req->nquery;
    if (n)
        memcpy(p->query, req->query, n * sizeof(*p->query));
    p->query[n++] = (struct lf_sigv4_kv){"X-Amz-Algorithm", ALGORITHM};
    p->query[n++] = (struct lf_sigv4_kv){"X-Amz-Credential", p->credential.data};
    p->query[n++] = (struct lf_sigv4_kv){"X-Amz-Date", p->amz_date};
    p->query[n++] = (struct lf_sigv4_kv){"X-Amz-Expires", p->expires};
    p->query[n++] = (struct lf_sigv4_kv){"X-Amz-SignedHeaders", "host"};
    p->req = *req;
    p->req.query = p->query;
    p->req.nquery = n;
    p->req.headers = &p->host;
    p->req.nheaders = 1;
    p->req.payload_hash = LF_SIGV4_UNSIGNED_PAYLOAD;
    return 0;
}

int lf_sigv4_presign(struct lf_sigv4 *s, const struct lf_sigv4_req *req,
                     unsigned expires, struct lf_buf *out,
                     struct lf_sigv4_trace *trace)
{
    struct lf_sigv4_trace local = {LF_BUF_INIT, LF_BUF_INIT};
    struct lf_sigv4_trace *t = trace ? trace : &local;
    lf_buf_reset(&t->creq);  /* sign() hashes all of t->creq */
    lf_buf_reset(&t->sts);
    struct presigned p = {.credential = LF_BUF_INIT};
    struct lf_buf names = LF_BUF_INIT;
    char sig[LF_SIGV4_SIGNATURE_SIZE];
    int rc;
    if ((rc = presigned_init(&p, s, req, expires)) ||
        (rc = sign(s, &p.req, t, &names, sig)) ||
        (rc = canonical_query(p.req.query, p.req.nquery, out)))
        goto out;
    rc = lf_buf_printf(out, "&X-Amz-Signature=%s", sig);
out:
    free(p.query);
    lf_buf_free(&p.credential);
    lf_buf_free(&names);
    trace_free(&local);
    return rc;
}
