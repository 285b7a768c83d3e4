/* presign: the gateway's store with its data moved to presigned URLs.
 *
 * Three parts: a small cache of read URLs (one per object, LRU, copied
 * out under the lock so an entry may be replaced while a request uses
 * its URL), one exchange with the storage (send, classify, retry, count;
 * a 403 asks the caller for a new URL), and the store operations on top.
 * Open presigned multipart uploads are kept in a list under handles of
 * our own, since the staging layer sees upload IDs only.
 */
#include "lakefuse/presign.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lakefuse/buf.h"
#include "lakefuse/hash.h"
#include "lakefuse/http.h"
#include "lakefuse/log.h"
#include "lakefuse/uri.h"
#include "lakefuse/xml.h"

#define CACHE_SLOTS 256
#define REFRESH_MAX 3       /* new URLs for one request before giving up */
#define URL_TTL_UNSAID 60.0 /* seconds, for a URL whose expiry the server did not say */
#define MARGIN_MAX 60.0     /* a URL is renewed this long before it expires, at most */
/* A URL of an object on a ref that moves (a branch, a tag, main~1) is
 * used for this long after the stat that gave it, then asked for again:
 * each request thus sees the version current when it starts, as a GET
 * from the gateway does (so an object replaced while open gives ESTALE,
 * not its old bytes), while the lanes a stream opens at once share one
 * stat. Objects under a commit ID never change: their URL serves until
 * it expires. */
#define REVALIDATE 0.1      /* seconds */
#define UPLOAD_PREFIX "lakefuse-presigned-"
/* Smaller bodies go through the gateway: one request there, where a
 * presigned upload takes three, two of them to the server (staging
 * location and link), for bytes that cost the server less than the
 * extra request. */
#define PUT_MIN (128u << 10)

struct url_entry {
    char *name;         /* "bucket/key"; NULL: free slot */
    char *url;
    char checksum[LF_ETAG_MAX];
    uint64_t size;
    double good_until;  /* wall clock, margin taken off */
    double stated;      /* wall clock of the stat that gave it */
    bool frozen;        /* under a commit ID: the version never changes */
    uint64_t used;      /* LRU tick */
};

struct upload {
    struct upload *next;
    char *id;           /* what the staging layer holds */
    char *bucket, *key;
    struct lf_api_pmpu pmpu;
    char *content_type;
    struct lf_put_meta meta;
};

struct ps {
    struct lf_store store;
    struct lf_store_ops ops;
    struct lf_store *gw;
    struct lf_api *api;
    struct lf_http *http;
    unsigned retries, backoff_ms;
    atomic_bool multipart;  /* off for good once the server lacks per-part URLs */
    atomic_bool part_urls;  /* the server gave a part URL: no more probing */
    atomic_bool warned_get, warned_put;

    pthread_mutex_t lock;   /* cache, tick, uploads, next_upload */
    struct url_entry cache[CACHE_SLOTS];
    uint64_t tick;
    struct upload *uploads;
    uint64_t next_upload;

    atomic_uint_fast64_t requests, nretries, refreshes, failures, api_calls, fallbacks;
    atomic_uint_fast64_t bytes_in, bytes_out;
};

/* ---- small helpers -------------------------------------------------------- */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "<ref>/<path>" split in place into a copy: 0, or -EINVAL for a key
 * that names no object path (nothing to presign). */
static int split_key(const char *key, char **ref, const char **path)
{
    const char *slash = strchr(key, '/');
    if (!slash || slash == key || !slash[1])
        return -EINVAL;
    if (!(*ref = strndup(key, (size_t)(slash - key))))
        return -ENOMEM;
    *path = slash + 1;
    return 0;
}

/* "bucket/key" (and a part number) as log lines name an upload. */
#define NAME_LEN 1200

/* The path of a URL, without scheme, authority or query: all a log line
 * may show of a presigned URL. */
static const char *url_shown(const char *url, char *buf, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    size_t n = p ? strcspn(p, "?#") : 0;
    snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), p ? p : "");
    return buf;
}

/* Whether an ETag looks like S3's MD5 forms ("<32 hex>" or "<32 hex>-N"):
 * other stores' ETags (Azure's) say nothing about the content. */
static bool md5_shaped(const char *etag)
{
    size_t n = strspn(etag, "0123456789abcdefABCDEF");
    return n == 32 && (etag[32] == '\0' || etag[32] == '-');
}

static bool retryable_status(long status)
{
    return status == 500 || status == 502 || status == 503 || status == 504 || status == 429 ||
           status == 408;
}

static bool retryable_errno(int rc)
{
    return rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -EPROTO ||
           rc == -EIO || rc == -EHOSTUNREACH || rc == LF_HTTP_ETLS;
}

/* Full jitter under a cap that doubles per attempt; in slices, so that a
 * cancelled reader is not kept. -EINTR when cancelled. */
static int backoff(const struct ps *s, unsigned attempt, const struct lf_read_ctl *ctl)
{
    uint64_t cap = (uint64_t)s->backoff_ms << (attempt < 8 ? attempt : 8);
    if (cap > 5000)
        cap = 5000;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)&attempt ^ attempt;
    uint64_t ms = cap / 2 + (uint64_t)rand_r(&seed) % (cap / 2 + 1);
    while (ms > 0) {
        if (ctl && ctl->cancelled && ctl->cancelled(ctl->arg))
            return -EINTR;
        uint64_t slice = ms < 50 ? ms : 50;
        usleep((useconds_t)(slice * 1000));
        ms -= slice;
    }
    return 0;
}

/* MD5 of a body (memory or a file region) as Content-MD5 and hex. */
static int body_md5(const struct lf_body *b, char b64[LF_MD5_B64_SIZE],
                    char hex[LF_MD5_HEX_SIZE])
{
    if (b->mem) {
        int rc = lf_md5_base64(b->mem, (size_t)b->len, b64);
        return rc ? rc : lf_md5_hex(b->mem, (size_t)b->len, hex);
    }
    struct lf_hash *h = lf_hash_new(LF_HASH_MD5);
    struct lf_hash_result res;
    struct lf_buf enc = LF_BUF_INIT;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    int rc = (h && buf) ? 0 : -ENOMEM;
    for (uint64_t done = 0; !rc && done < b->len;) {
        size_t want = b->len - done < cap ? (size_t)(b->len - done) : cap;
        ssize_t got = pread(b->fd, buf, want, b->off + (off_t)done);
        if (got <= 0)
            rc = got < 0 ? -errno : -EIO;
        else
            rc = lf_hash_update(h, buf, (size_t)got), done += (uint64_t)got;
    }
    if (!rc)
        rc = lf_hash_final(h, &res);
    if (!rc)
        rc = lf_base64_encode(&enc, res.md5, LF_MD5_LEN);
    if (!rc) {
        snprintf(b64, LF_MD5_B64_SIZE, "%s", enc.data);
        lf_hex_fill(hex, res.md5, LF_MD5_LEN);
    }
    lf_buf_free(&enc);
    lf_hash_free(h);
    free(buf);
    return rc;
}

/* ---- read URLs ---------------------------------------------------------- */

/* A read URL as the stat gave it, copied out of the cache. */
struct target {
    char *url;
    char checksum[LF_ETAG_MAX];
    uint64_t size;
};

static void target_free(struct target *t)
{
    free(t->url);
    t->url = NULL;
}

static struct url_entry *cache_find(struct ps *s, const char *name)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        if (s->cache[i].name && strcmp(s->cache[i].name, name) == 0)
            return &s->cache[i];
    return NULL;
}

static void entry_clear(struct url_entry *e)
{
    free(e->name);
    free(e->url);
    memset(e, 0, sizeof(*e));
}

/* When a URL that lives from `fetched` to `expiry` should be renewed: a
 * quarter of its life early (a minute at most), and at least a second or
 * half its life (whichever is less) early, so that a request sent just
 * before then still arrives in time over a slow link. */
static double good_until(double fetched, time_t expiry)
{
    if (!expiry)
        return fetched + URL_TTL_UNSAID;
    double life = (double)expiry - fetched, margin = life / 4;
    if (margin > MARGIN_MAX)
        margin = MARGIN_MAX;
    double floor = life / 2 < 1.0 ? life / 2 : 1.0;
    if (margin < floor)
        margin = floor;
    return (double)expiry - (margin > 0 ? margin : 0);
}

static void cache_put(struct ps *s, const char *name, const struct lf_api_stat *st,
                      double fetched, bool frozen)
{
    char *n = strdup(name), *u = strdup(st->physical_address);
    if (!n || !u) {
        free(n);
        free(u);
        return; /* not cached: the next read asks again */
    }
    pthread_mutex_lock(&s->lock);
    struct url_entry *e = cache_find(s, name), *lru = &s->cache[0];
    for (size_t i = 0; !e && i < CACHE_SLOTS; i++) {
        if (!s->cache[i].name) {
            e = &s->cache[i];
            break;
        }
        if (s->cache[i].used < lru->used)
            lru = &s->cache[i];
    }
    if (!e)
        e = lru;
    entry_clear(e);
    e->name = n;
    e->url = u;
    lf_etag_copy(e->checksum, st->checksum);
    e->size = st->size;
    e->good_until = good_until(fetched, st->physical_address_expiry);
    e->stated = fetched;
    e->frozen = frozen;
    e->used = ++s->tick;
    pthread_mutex_unlock(&s->lock);
}

/* The read URL of bucket/key: from the cache while it is good, recent
 * (REVALIDATE) and of the pinned version, else from a stat. -ESTALE when
 * the object is no longer the version with ETag etag; the stat's errors
 * otherwise (-ENOENT: gone). */
static int read_target(struct ps *s, const char *bucket, const char *key, const char *etag,
                       bool renew, struct target *t)
{
    char name[4608];
    char *ref = NULL;
    const char *path;
    int rc;
    memset(t, 0, sizeof(*t));
    if (snprintf(name, sizeof(name), "%s/%s", bucket, key) >= (int)sizeof(name))
        return -ENAMETOOLONG;
    if (!renew) {
        pthread_mutex_lock(&s->lock);
        struct url_entry *e = cache_find(s, name);
        double now = wall_now();
        if (e && e->good_until > now && (e->frozen || now - e->stated < REVALIDATE) &&
            (!etag || !*etag || lf_etag_same(e->checksum, etag))) {
            e->used = ++s->tick;
            t->url = strdup(e->url);
            memcpy(t->checksum, e->checksum, LF_ETAG_MAX);
            t->size = e->size;
        }
        pthread_mutex_unlock(&s->lock);
        if (t->url)
            return 0;
    }
    struct lf_api_stat *st = malloc(sizeof(*st));
    struct lf_api_err err;
    if (!st)
        return -ENOMEM;
    if ((rc = split_key(key, &ref, &path)))
        goto out;
    double fetched = wall_now();
    atomic_fetch_add(&s->api_calls, 1);
    if ((rc = lf_api_stat_presign(s->api, bucket, ref, path, st, &err)))
        goto out;
    if (strncmp(st->physical_address, "http://", 7) != 0 &&
        strncmp(st->physical_address, "https://", 8) != 0) {
        lf_warn("presign: stat of %s/%s gave no presigned URL (address scheme '%.*s')", bucket,
                key, (int)strcspn(st->physical_address, ":"), st->physical_address);
        rc = -EOPNOTSUPP;
        goto out;
    }
    cache_put(s, name, st, fetched, lf_ref_is_full_commit_id(ref));
    lf_etag_copy(t->checksum, st->checksum);
    t->size = st->size;
    if (etag && *etag && !lf_etag_same(t->checksum, etag)) {
        lf_info("read %s/%s: the object is now ETag %s, not %s: replaced", bucket, key,
                t->checksum, etag);
        rc = -ESTALE;
        goto out;
    }
    if (!(t->url = strdup(st->physical_address)))
        rc = -ENOMEM;
out:
    free(ref);
    free(st);
    return rc;
}

/* ---- one storage exchange ------------------------------------------------- */

/* What became of one attempt. */
enum verdict { V_OK, V_RETRY, V_RENEW, V_FAIL };

/* Classifies an exchange: V_RENEW for a refused or expired URL (a new one
 * may work), V_RETRY for what may pass; *rc the errno of a failure. */
static enum verdict classify(const char *op, const char *what, int trc,
                             const struct lf_http_resp *r, unsigned attempt, int *rc)
{
    char code[64] = "", msg[256] = "";
    if (trc) {
        *rc = trc;
        if (trc != -EINTR)
            lf_warn("%s %s: %s (attempt %u)", op, what, r->errmsg[0] ? r->errmsg : strerror(-trc),
                    attempt + 1);
        return trc != -EINTR && retryable_errno(trc) ? V_RETRY : V_FAIL;
    }
    if (r->status >= 200 && r->status < 300) {
        *rc = 0;
        return V_OK;
    }
    if (r->err_body.len > 0)
        lf_xml_parse_error(r->err_body.data, r->err_body.len, code, sizeof(code), msg,
                           sizeof(msg));
    if (r->status == 403 || (r->status == 400 && strcasestr(msg, "expired"))) {
        lf_info("%s %s: HTTP %ld %s%s%s: asking lakeFS for a new URL", op, what, r->status,
                code, msg[0] ? ": " : "", msg);
        *rc = -EACCES;
        return V_RENEW;
    }
    if (retryable_status(r->status) || strcmp(code, "SlowDown") == 0 ||
        strcmp(code, "InternalError") == 0 || strcmp(code, "RequestTimeout") == 0) {
        lf_warn("%s %s: HTTP %ld %s (attempt %u)", op, what, r->status, code, attempt + 1);
        *rc = -EIO;
        return V_RETRY;
    }
    *rc = code[0] ? lf_s3_code_errno(code) : r->status == 404 ? -ENOENT
                                           : r->status == 416 ? -ERANGE : -EIO;
    if (*rc == -EIO && r->status == 400)
        *rc = -EINVAL;
    lf_err("%s %s: HTTP %ld %s%s%s", op, what, r->status, code, msg[0] ? ": " : "", msg);
    return V_FAIL;
}

/* ---- reads -------------------------------------------------------------- */

/* Parses "bytes a-b/total". */
static bool content_range(const char *v, uint64_t *a, uint64_t *b, uint64_t *total)
{
    unsigned long long x, y, t;
    int used = 0;
    if (sscanf(v, "bytes %llu-%llu/%llu%n", &x, &y, &t, &used) != 3 || v[used] != '\0' ||
        y < x || y >= t)
        return false;
    *a = x;
    *b = y;
    *total = t;
    return true;
}

/* Whether an answer is exactly bytes [off, off+len) of an object of size
 * bytes: 0, -ESTALE (another size: not the object the stat described) or
 * -EPROTO. body: the body's length. The store's ETag is not compared with
 * lakeFS's checksum: they differ for good reasons (a copy lakeFS made of
 * a multipart object, encryption, Azure), and a presigned URL names one
 * physical object, which lakeFS never rewrites; the version is settled
 * when the stat's checksum is checked against the pinned ETag. */
static int check_answer(const struct lf_http_resp *r, uint64_t off, uint64_t len, uint64_t size,
                        uint64_t body)
{
    uint64_t a, b, total;
    if (r->status == 206 && content_range(r->content_range, &a, &b, &total)) {
        if (total != size)
            return -ESTALE;
        return a == off && b == off + len - 1 && body == len ? 0 : -EPROTO;
    }
    if (r->status == 200 && off == 0 && len == size && body == size)
        return 0;
    return -EPROTO;
}

/* After a storage GET that did not end its loop: whether to try again
 * (with *renew, under a URL asked anew), else the loop ends with *rc. */
static bool read_again(struct ps *s, enum verdict v, const char *what, int *rc,
                       unsigned *attempt, unsigned *renewals, bool *renew,
                       const struct lf_read_ctl *ctl)
{
    if (v == V_RENEW && (*renewals)++ < REFRESH_MAX) {
        atomic_fetch_add(&s->refreshes, 1);
        *renew = true;
        return true;
    }
    if (v == V_FAIL && *rc == -ENOENT && (*renewals)++ < 1) {
        /* The bytes are gone from the storage: the object may have been
         * replaced and its old data collected; a stat says. */
        *renew = true;
        return true;
    }
    if (v == V_FAIL && *rc == -ENOENT) {
        lf_err("storage GET %s: lakeFS lists it, but its storage has no bytes for it", what);
        *rc = -EIO;
    }
    if (v != V_RETRY || *attempt >= s->retries)
        return false;
    atomic_fetch_add(&s->nretries, 1);
    *renew = false;
    return (*rc = backoff(s, (*attempt)++, ctl)) == 0;
}

static int ps_get(void *ctx, const char *bucket, const char *key, uint64_t off,
                  const struct iovec *iov, int iovcnt, const char *etag, size_t *got,
                  const struct lf_read_ctl *ctl)
{
    struct ps *s = ctx;
    struct target t = {0};
    struct lf_http_resp r;
    char range[64], shown[512], what[600];
    uint64_t want = 0;
    int rc = 0;
    unsigned attempt = 0, renewals = 0;
    bool renew = false;
    for (int i = 0; i < iovcnt; i++)
        want += iov[i].iov_len;
    *got = 0;
    if (want == 0)
        return 0;
    lf_http_resp_init(&r);
    for (;;) {
        target_free(&t);
        rc = read_target(s, bucket, key, etag, renew, &t);
        if (rc == -EINVAL || rc == -EOPNOTSUPP) {
            if (!atomic_exchange(&s->warned_get, true))
                lf_warn("presign: lakeFS gives no read URL for %s/%s (%s): reads go through "
                        "the gateway where it does not", bucket, key, strerror(-rc));
            atomic_fetch_add(&s->fallbacks, 1);
            rc = s->gw->ops->get(s->gw->ctx, bucket, key, off, iov, iovcnt, etag, got, ctl);
            break;
        }
        if (rc)
            break;
        if (t.size == 0 && off == 0)
            break; /* nothing to fetch */
        if (off >= t.size) {
            rc = -ERANGE;
            break;
        }
        uint64_t len = t.size - off < want ? t.size - off : want;
        snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
        snprintf(what, sizeof(what), "%s/%s (%s)", bucket, key,
                 url_shown(t.url, shown, sizeof(shown)));
        const char *hdrs[1] = {range};
        struct lf_http_req hr = {.method = "GET", .url = t.url, .headers = hdrs, .nheaders = 1,
                                 .outv = iov, .outvcnt = iovcnt};
        if (ctl && ctl->cancelled) {
            hr.cancel = ctl->cancelled;
            hr.cancel_arg = ctl->arg;
        }
        atomic_fetch_add(&s->requests, 1);
        int trc = lf_http_perform(s->http, &hr, &r);
        atomic_fetch_add(&s->bytes_in, r.body_len);
        lf_dbg("storage GET %s: HTTP %ld, %zu bytes", what, r.status, r.body_len);
        enum verdict v = classify("storage GET", what, trc, &r, attempt, &rc);
        if (v == V_OK) {
            rc = check_answer(&r, off, len, t.size, r.body_len);
            if (!rc) {
                *got = (size_t)len;
                break;
            }
            if (rc == -ESTALE) {
                lf_err("read %s/%s: the storage answered another version of it", bucket, key);
                break;
            }
            lf_warn("storage GET %s: answer does not match bytes=%" PRIu64 "-%" PRIu64
                    " (HTTP %ld, Content-Range '%s', %zu bytes; attempt %u)", what, off,
                    off + len - 1, r.status, r.content_range, r.body_len, attempt + 1);
            v = V_RETRY;
        }
        if (!read_again(s, v, what, &rc, &attempt, &renewals, &renew, ctl))
            break;
    }
    if (rc && rc != -ENOENT && rc != -EINTR && rc != -ESTALE)
        atomic_fetch_add(&s->failures, 1);
    target_free(&t);
    lf_http_resp_free(&r);
    return rc;
}

struct ps_stream {
    struct lf_stream base;
    struct ps *s;
    struct lf_http_body *body;
    char *what; /* bucket/key and the URL's path, for log lines */
};

static int ps_stream_splice(struct lf_stream *st, int pipe_fd, size_t n,
                            const struct lf_read_ctl *ctl, size_t *moved)
{
    struct ps_stream *x = (struct ps_stream *)st;
    int rc = lf_http_body_splice(x->body, pipe_fd, n, ctl ? ctl->cancelled : NULL,
                                 ctl ? ctl->arg : NULL, moved);
    atomic_fetch_add(&x->s->bytes_in, *moved);
    if (rc && rc != -EINTR)
        lf_warn("storage GET %s: %s (the read goes another way)", x->what,
                lf_http_body_why(x->body));
    return rc;
}

static void ps_stream_close(struct lf_stream *st)
{
    struct ps_stream *x = (struct ps_stream *)st;
    if (!x)
        return;
    lf_http_body_close(x->body);
    free(x->what);
    free(x);
}

static const struct lf_stream_ops PS_STREAM_OPS = {
    .splice = ps_stream_splice,
    .close = ps_stream_close,
};

static int ps_get_stream(void *ctx, const char *bucket, const char *key, uint64_t off,
                         uint64_t len, const char *etag, const struct lf_read_ctl *ctl,
                         struct lf_stream **out)
{
    struct ps *s = ctx;
    struct target t = {0};
    struct lf_http_resp r;
    struct lf_http_body *body = NULL;
    char range[64], shown[512], what[600] = "";
    int rc;
    unsigned attempt = 0, renewals = 0;
    bool renew = false;
    *out = NULL;
    if (len == 0)
        return -EINVAL;
    lf_http_resp_init(&r);
    for (;;) {
        target_free(&t);
        if ((rc = read_target(s, bucket, key, etag, renew, &t))) {
            if (rc == -EINVAL)
                rc = -EOPNOTSUPP; /* no read URL here: get() takes the gateway */
            break;
        }
        if (strncmp(t.url, "http://", 7) != 0) {
            rc = -EOPNOTSUPP; /* spliced from plain sockets only */
            break;
        }
        if (off + len > t.size) {
            lf_warn("storage GET %s/%s: %" PRIu64 " bytes at %" PRIu64 " asked of %" PRIu64
                    ": object changed size", bucket, key, len, off, t.size);
            rc = -ESTALE;
            break;
        }
        snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
        snprintf(what, sizeof(what), "%s/%s (%s)", bucket, key,
                 url_shown(t.url, shown, sizeof(shown)));
        const char *hdrs[1] = {range};
        struct lf_http_req hr = {.method = "GET", .url = t.url, .headers = hdrs, .nheaders = 1};
        if (ctl && ctl->cancelled) {
            hr.cancel = ctl->cancelled;
            hr.cancel_arg = ctl->arg;
        }
        atomic_fetch_add(&s->requests, 1);
        int trc = lf_http_open(s->http, &hr, &r, &body);
        if (trc == -EOPNOTSUPP || trc == -EBUSY) {
            rc = trc;
            break;
        }
        lf_dbg("storage GET %s: HTTP %ld (streamed)", what, r.status);
        enum verdict v = classify("storage GET", what, trc, &r, attempt, &rc);
        if (v == V_OK) {
            rc = check_answer(&r, off, len, t.size, (uint64_t)r.content_length);
            if (!rc)
                break;
            lf_http_body_close(body);
            body = NULL;
            if (rc == -ESTALE)
                break;
            v = V_RETRY;
        }
        if (!read_again(s, v, what, &rc, &attempt, &renewals, &renew, ctl))
            break;
    }
    lf_http_resp_free(&r);
    struct ps_stream *x = NULL;
    if (!rc && (!(x = calloc(1, sizeof(*x))) || !(x->what = strdup(what)))) {
        free(x);
        lf_http_body_close(body);
        rc = -ENOMEM;
    }
    if (!rc) {
        x->base.ops = &PS_STREAM_OPS;
        x->s = s;
        x->body = body;
        *out = &x->base;
    }
    target_free(&t);
    return rc;
}

/* ---- writes ------------------------------------------------------------- */

/* User metadata as the gateway stores what s3.c sends as x-amz-meta-*
 * (lakeFS keeps "X-Amz-Meta-" and the lower-cased name), so an object
 * written either way reads back the same through the gateway. */
struct meta_kv {
    char mode[24], uid[24], gid[24], mtime[48], nsec[16];
    struct lf_api_kv kv[5];
    size_t n;
};

static void meta_fill(struct meta_kv *m, const struct lf_put_meta *pm)
{
    m->n = 0;
    if (!pm)
        return;
    if (pm->has & LF_ATTR_MODE) {
        snprintf(m->mode, sizeof(m->mode), "%" PRIu32, pm->mode);
        m->kv[m->n++] = (struct lf_api_kv){"X-Amz-Meta-mode", m->mode};
    }
    if (pm->has & LF_ATTR_UID) {
        snprintf(m->uid, sizeof(m->uid), "%" PRIu32, pm->uid);
        m->kv[m->n++] = (struct lf_api_kv){"X-Amz-Meta-uid", m->uid};
    }
    if (pm->has & LF_ATTR_GID) {
        snprintf(m->gid, sizeof(m->gid), "%" PRIu32, pm->gid);
        m->kv[m->n++] = (struct lf_api_kv){"X-Amz-Meta-gid", m->gid};
    }
    if (pm->has & LF_ATTR_MTIME) {
        snprintf(m->mtime, sizeof(m->mtime), "%lld", (long long)pm->mtime.tv_sec);
        m->kv[m->n++] = (struct lf_api_kv){"X-Amz-Meta-mtime", m->mtime};
        if (pm->mtime.tv_nsec) {
            snprintf(m->nsec, sizeof(m->nsec), "%ld", pm->mtime.tv_nsec);
            m->kv[m->n++] = (struct lf_api_kv){"X-Amz-Meta-mtime-nsec", m->nsec};
        }
    }
}

/* PUTs a body to presigned URLs, asking `renew` for a new one when the
 * storage refuses the one in hand; checks the answer's ETag against the
 * body's MD5 (when the store reports MD5s). etag_out gets the ETag. */
typedef int (*renew_fn)(struct ps *s, void *arg, char url[LF_API_URL_MAX]);

static int put_body(struct ps *s, const char *op, const char *name, char *url, renew_fn renew,
                    void *arg, const struct lf_body *body, const char *b64, const char *hex,
                    char etag_out[LF_ETAG_MAX])
{
    struct lf_http_resp r;
    char md5_hdr[64], shown[512], what[NAME_LEN + sizeof(shown) + 3];
    unsigned attempt = 0, renewals = 0;
    int rc;
    snprintf(md5_hdr, sizeof(md5_hdr), "Content-MD5: %s", b64);
    const char *hdrs[1] = {md5_hdr};
    lf_http_resp_init(&r);
    for (;;) {
        snprintf(what, sizeof(what), "%s (%s)", name, url_shown(url, shown, sizeof(shown)));
        struct lf_http_req hr = {.method = "PUT", .url = url, .headers = hdrs, .nheaders = 1,
                                 .body = body->mem, .body_fd = body->fd, .body_off = body->off,
                                 .body_len = body->len};
        atomic_fetch_add(&s->requests, 1);
        atomic_fetch_add(&s->bytes_out, body->len);
        int trc = lf_http_perform(s->http, &hr, &r);
        lf_dbg("%s %s: HTTP %ld, %" PRIu64 " bytes", op, what, r.status, body->len);
        enum verdict v = classify(op, what, trc, &r, attempt, &rc);
        if (v == V_OK) {
            char tag[LF_ETAG_MAX];
            lf_etag_copy(tag, r.etag);
            if (tag[0] && md5_shaped(tag) && strcasecmp(tag, hex) != 0) {
                lf_err("%s %s: the storage stored different bytes (ETag %s, MD5 %s)", op, what,
                       tag, hex);
                rc = -EIO;
                v = V_RETRY;
            } else {
                snprintf(etag_out, LF_ETAG_MAX, "%s", tag[0] ? tag : hex);
                break;
            }
        }
        if (v == V_RENEW && renewals++ < REFRESH_MAX) {
            atomic_fetch_add(&s->refreshes, 1);
            if ((rc = renew(s, arg, url)))
                break;
            continue;
        }
        if (v != V_RETRY || attempt >= s->retries)
            break;
        atomic_fetch_add(&s->nretries, 1);
        if ((rc = backoff(s, attempt++, NULL)))
            break;
    }
    lf_http_resp_free(&r);
    return rc;
}

struct put_ctx {
    const char *bucket, *ref, *path;
    struct lf_api_staging loc;
};

/* A new staging location: the old URL (and its address) are dropped. */
static int renew_location(struct ps *s, void *arg, char url[LF_API_URL_MAX])
{
    struct put_ctx *p = arg;
    struct lf_api_err err;
    atomic_fetch_add(&s->api_calls, 1);
    int rc = lf_api_staging_location(s->api, p->bucket, p->ref, p->path, &p->loc, &err);
    if (!rc)
        memcpy(url, p->loc.url, LF_API_URL_MAX);
    return rc;
}

/* Whether path on ref holds the object with this checksum: how a lost
 * answer to a link or a completion is resolved. */
static bool linked(struct ps *s, const char *bucket, const char *ref, const char *path,
                   const char *want, char etag_out[LF_ETAG_MAX])
{
    struct lf_api_stat *st = malloc(sizeof(*st));
    bool yes = false;
    atomic_fetch_add(&s->api_calls, 1);
    if (st && want[0] && lf_api_stat(s->api, bucket, ref, path, st, NULL) == 0 &&
        lf_etag_same(st->checksum, want)) {
        yes = true;
        lf_etag_copy(etag_out, st->checksum);
    }
    free(st);
    return yes;
}

/* A change whose answer may have been lost: no answer, or a 5xx that
 * does not say whether it was made. */
static bool ambiguous(int rc, const struct lf_api_err *err)
{
    return rc && rc != -EINTR && (err->status == 0 || err->status >= 500);
}

static int ps_put(void *ctx, const char *bucket, const char *key, const struct lf_body *body,
                  const struct lf_put_meta *meta, enum lf_put_cond cond,
                  char etag_out[LF_ETAG_MAX])
{
    struct ps *s = ctx;
    struct put_ctx p = {.bucket = bucket};
    struct meta_kv mkv;
    struct lf_api_err err = {0};
    char b64[LF_MD5_B64_SIZE], hex[LF_MD5_HEX_SIZE], etag[LF_ETAG_MAX] = "", sum[128];
    char *ref = NULL, *url = NULL, name[NAME_LEN];
    int rc;
    if (body->len < PUT_MIN || split_key(key, &ref, &p.path)) {
        free(ref);
        return s->gw->ops->put(s->gw->ctx, bucket, key, body, meta, cond, etag_out);
    }
    p.ref = ref;
    snprintf(name, sizeof(name), "%s/%s", bucket, key);
    if ((rc = body_md5(body, b64, hex)) || !(url = malloc(LF_API_URL_MAX)))
        goto out;
    atomic_fetch_add(&s->api_calls, 1);
    rc = lf_api_staging_location(s->api, bucket, ref, p.path, &p.loc, &err);
    if (rc == -EINVAL || rc == -EOPNOTSUPP ||
        (rc == -EIO && strcasestr(err.message, "not supported"))) {
        /* The server will not presign here (a repository on a storage of
         * another kind answers 400, or 500 "operation not supported"):
         * the gateway still takes the bytes. A 500 that says nothing is
         * the server's trouble, and the gateway would share it. */
        if (!atomic_exchange(&s->warned_put, true))
            lf_warn("presign: lakeFS gives no upload URL for %s (%s): writes go through the "
                    "gateway where it does not", name, err.message[0] ? err.message
                                                                       : strerror(-rc));
        atomic_fetch_add(&s->fallbacks, 1);
        rc = s->gw->ops->put(s->gw->ctx, bucket, key, body, meta, cond, etag_out);
        goto out;
    }
    if (rc)
        goto out;
    memcpy(url, p.loc.url, LF_API_URL_MAX);
    if ((rc = put_body(s, "storage PUT", name, url, renew_location, &p, body, b64, hex, etag)))
        goto out;
    meta_fill(&mkv, meta);
    struct lf_api_object obj = {.checksum = etag, .size = body->len, .meta = mkv.kv,
                                .nmeta = mkv.n,
                                .content_type = meta && meta->content_type
                                                    ? meta->content_type
                                                    : "application/octet-stream",
                                .if_absent = cond == LF_PUT_IF_ABSENT};
    for (unsigned attempt = 0;; attempt++) {
        atomic_fetch_add(&s->api_calls, 1);
        rc = lf_api_link(s->api, bucket, ref, p.path, p.loc.physical_address, &obj, sum, &err);
        if (!rc) {
            lf_etag_copy(etag, sum[0] ? sum : etag);
            break;
        }
        if (rc == -EBUSY) {
            rc = -EEXIST; /* as the gateway's 412 */
            break;
        }
        if (!ambiguous(rc, &err))
            break;
        if (linked(s, bucket, ref, p.path, etag, etag)) {
            lf_info("link %s: the answer was lost; the object is linked", name);
            rc = 0;
            break;
        }
        /* Not made (or made and replaced since, which sending it again
         * cannot make worse): the same address links again. */
        if (attempt >= s->retries)
            break;
        atomic_fetch_add(&s->nretries, 1);
        (void)backoff(s, attempt, NULL);
    }
    if (rc)
        lf_err("link %s: %s", name, err.message[0] ? err.message : strerror(-rc));
out:
    if (rc && rc != -EEXIST)
        atomic_fetch_add(&s->failures, 1);
    if (!rc && etag[0] && etag_out)
        memcpy(etag_out, etag, LF_ETAG_MAX);
    free(url);
    free(ref);
    return rc;
}

/* ---- multipart uploads ---------------------------------------------------- */

static void upload_free(struct upload *u)
{
    if (!u)
        return;
    free(u->id);
    free(u->bucket);
    free(u->key);
    free(u->content_type);
    free(u);
}

/* A copy of the upload with handle id (the list entry may go away while
 * it is used), or NULL: not ours, the gateway's. */
static struct upload *upload_get(struct ps *s, const char *id)
{
    struct upload *copy = NULL;
    if (strncmp(id, UPLOAD_PREFIX, strlen(UPLOAD_PREFIX)) != 0)
        return NULL;
    pthread_mutex_lock(&s->lock);
    for (struct upload *u = s->uploads; u; u = u->next) {
        if (strcmp(u->id, id) != 0)
            continue;
        if ((copy = calloc(1, sizeof(*copy)))) {
            *copy = *u;
            copy->next = NULL;
            copy->id = strdup(u->id);
            copy->bucket = strdup(u->bucket);
            copy->key = strdup(u->key);
            copy->content_type = u->content_type ? strdup(u->content_type) : NULL;
            if (!copy->id || !copy->bucket || !copy->key ||
                (u->content_type && !copy->content_type)) {
                upload_free(copy);
                copy = NULL;
            }
        }
        break;
    }
    pthread_mutex_unlock(&s->lock);
    return copy;
}

static void upload_remove(struct ps *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    for (struct upload **pp = &s->uploads; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            struct upload *u = *pp;
            *pp = u->next;
            upload_free(u);
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

static bool is_ours(const char *id)
{
    return strncmp(id, UPLOAD_PREFIX, strlen(UPLOAD_PREFIX)) == 0;
}

/* Part URLs are asked for one at a time (lakeFS 1.55 on): a server
 * without that call cannot take parts we do not know the number of up
 * front, so until one has been given, an upload asks for part 1's URL at
 * once, and if the server has no such call, presigned multipart is off
 * for good. */
static int probe_part_urls(struct ps *s, const char *bucket, const char *ref, const char *path,
                           const struct lf_api_pmpu *u)
{
    if (atomic_load(&s->part_urls))
        return 0;
    char *url = malloc(LF_API_URL_MAX);
    struct lf_api_err err;
    if (!url)
        return -ENOMEM;
    atomic_fetch_add(&s->api_calls, 1);
    int rc = lf_api_pmpu_part_url(s->api, bucket, ref, path, u, 1, url, &err);
    free(url);
    if (!rc)
        atomic_store(&s->part_urls, true);
    return rc;
}

static int ps_mpu_create(void *ctx, const char *bucket, const char *key,
                         const struct lf_put_meta *meta, char **upload_id)
{
    struct ps *s = ctx;
    struct upload *u = NULL;
    struct lf_api_err err;
    char *ref = NULL;
    const char *path;
    int rc;
    *upload_id = NULL;
    if (!atomic_load(&s->multipart) || split_key(key, &ref, &path))
        goto gateway;
    if (!(u = calloc(1, sizeof(*u))))
        goto nomem;
    atomic_fetch_add(&s->api_calls, 1);
    rc = lf_api_pmpu_create(s->api, bucket, ref, path, &u->pmpu, &err);
    if (!rc && (rc = probe_part_urls(s, bucket, ref, path, &u->pmpu))) {
        struct lf_api_err ignored;
        lf_api_pmpu_abort(s->api, bucket, ref, path, &u->pmpu, &ignored);
        if (rc == -ENOENT || rc == -EOPNOTSUPP || rc == -EINVAL)
            rc = -EOPNOTSUPP;
    }
    if (rc == -EOPNOTSUPP) {
        if (atomic_exchange(&s->multipart, false))
            lf_warn("presign: lakeFS at this server cannot give presigned URLs per part of a "
                    "multipart upload: large files go through the gateway's multipart "
                    "upload from now on");
        goto gateway;
    }
    if (rc) {
        lf_err("create presigned multipart upload %s/%s: %s", bucket, key,
               err.message[0] ? err.message : strerror(-rc));
        free(ref);
        upload_free(u);
        return rc;
    }
    pthread_mutex_lock(&s->lock);
    uint64_t n = ++s->next_upload;
    pthread_mutex_unlock(&s->lock);
    char id[64];
    snprintf(id, sizeof(id), UPLOAD_PREFIX "%" PRIu64, n);
    if (!(u->id = strdup(id)) || !(u->bucket = strdup(bucket)) || !(u->key = strdup(key)) ||
        (meta && meta->content_type && !(u->content_type = strdup(meta->content_type))) ||
        !(*upload_id = strdup(id))) {
        struct lf_api_err ignored;
        lf_api_pmpu_abort(s->api, bucket, ref, path, &u->pmpu, &ignored);
        goto nomem;
    }
    if (meta)
        u->meta = *meta;
    u->meta.content_type = NULL; /* kept in u->content_type */
    pthread_mutex_lock(&s->lock);
    u->next = s->uploads;
    s->uploads = u;
    pthread_mutex_unlock(&s->lock);
    free(ref);
    return 0;
nomem:
    free(ref);
    upload_free(u);
    return -ENOMEM;
gateway:
    free(ref);
    upload_free(u);
    return s->gw->ops->mpu_create(s->gw->ctx, bucket, key, meta, upload_id);
}

struct part_ctx {
    struct upload *u;
    const char *ref, *path;
    int number;
};

static int renew_part_url(struct ps *s, void *arg, char url[LF_API_URL_MAX])
{
    struct part_ctx *p = arg;
    struct lf_api_err err;
    atomic_fetch_add(&s->api_calls, 1);
    return lf_api_pmpu_part_url(s->api, p->u->bucket, p->ref, p->path, &p->u->pmpu, p->number,
                                url, &err);
}

static int ps_mpu_part(void *ctx, const char *bucket, const char *key, const char *upload_id,
                       int number, const struct lf_body *body, char etag_out[LF_ETAG_MAX])
{
    struct ps *s = ctx;
    if (!is_ours(upload_id))
        return s->gw->ops->mpu_part(s->gw->ctx, bucket, key, upload_id, number, body, etag_out);
    struct upload *u = upload_get(s, upload_id);
    struct part_ctx p = {.u = u, .number = number};
    char b64[LF_MD5_B64_SIZE], hex[LF_MD5_HEX_SIZE], name[NAME_LEN], *ref = NULL;
    char *url = malloc(LF_API_URL_MAX);
    int rc = u && url ? 0 : -ENOMEM;
    if (!u && url)
        rc = -ENOENT; /* aborted meanwhile */
    if (!rc)
        rc = split_key(u->key, &ref, &p.path);
    p.ref = ref;
    if (!rc)
        rc = body_md5(body, b64, hex);
    if (!rc)
        rc = renew_part_url(s, &p, url);
    snprintf(name, sizeof(name), "%s/%s part %d", bucket, key, number);
    if (!rc)
        rc = put_body(s, "storage UploadPart", name, url, renew_part_url, &p, body, b64, hex,
                      etag_out);
    if (rc && rc != -ENOENT)
        atomic_fetch_add(&s->failures, 1);
    free(url);
    free(ref);
    upload_free(u);
    return rc;
}

/* The ETag S3 gives an object of these parts ("" when a part's ETag is no
 * MD5): what a completion whose answer was lost is checked against. */
static void multipart_etag(const struct lf_part *parts, size_t nparts, char out[LF_ETAG_MAX])
{
    struct lf_buf b = LF_BUF_INIT;
    unsigned char *md5s = nparts ? malloc(nparts * LF_MD5_LEN) : NULL;
    out[0] = '\0';
    for (size_t i = 0; md5s && i < nparts; i++) {
        char tag[LF_ETAG_MAX];
        lf_etag_copy(tag, parts[i].etag);
        for (int j = 0; j < LF_MD5_LEN; j++) {
            unsigned v;
            if (strlen(tag) != 2 * LF_MD5_LEN || sscanf(tag + 2 * j, "%2x", &v) != 1) {
                free(md5s);
                return;
            }
            md5s[i * LF_MD5_LEN + j] = (unsigned char)v;
        }
    }
    if (md5s && lf_multipart_etag(&b, md5s, nparts) == 0 && b.len < LF_ETAG_MAX)
        memcpy(out, b.data, b.len + 1);
    free(md5s);
    lf_buf_free(&b);
}

static int ps_mpu_complete(void *ctx, const char *bucket, const char *key,
                           const char *upload_id, const struct lf_part *parts, size_t nparts,
                           enum lf_put_cond cond, const struct lf_put_meta *meta,
                           char etag_out[LF_ETAG_MAX])
{
    struct ps *s = ctx;
    if (!is_ours(upload_id))
        return s->gw->ops->mpu_complete(s->gw->ctx, bucket, key, upload_id, parts, nparts,
                                        cond, meta, etag_out);
    /* lakeFS's presigned completion takes no condition: a create asks
     * first whether the name is taken (a window the gateway's conditional
     * complete does not have; see docs/semantics.md). */
    if (cond == LF_PUT_IF_ABSENT) {
        struct lf_obj_attr a;
        int e = s->gw->ops->head(s->gw->ctx, bucket, key, &a);
        if (e == 0)
            return -EEXIST;
        if (e != -ENOENT)
            return e;
    }
    struct upload *u = upload_get(s, upload_id);
    struct lf_api_part *list = calloc(nparts ? nparts : 1, sizeof(*list));
    struct lf_api_err err = {0};
    struct meta_kv mkv;
    char want[LF_ETAG_MAX], sum[128] = "", *ref = NULL;
    const char *path = NULL;
    int rc = u && list ? 0 : -ENOMEM;
    if (!u && list)
        rc = -ENOENT;
    if (!rc)
        rc = split_key(u->key, &ref, &path);
    if (rc)
        goto out;
    for (size_t i = 0; i < nparts; i++)
        list[i] = (struct lf_api_part){parts[i].number, parts[i].etag};
    multipart_etag(parts, nparts, want);
    /* The completion names the object's metadata: today's, which spares
     * the copy onto itself that S3's completion needs for late changes. */
    meta_fill(&mkv, meta ? meta : &u->meta);
    struct lf_api_object obj = {.meta = mkv.kv, .nmeta = mkv.n,
                                .content_type = u->content_type ? u->content_type
                                                                : "application/octet-stream"};
    bool lost = false;
    for (unsigned attempt = 0;; attempt++) {
        atomic_fetch_add(&s->api_calls, 1);
        rc = lf_api_pmpu_complete(s->api, bucket, ref, path, &u->pmpu, list, nparts, &obj, sum,
                                  &err);
        if (!rc) {
            lf_etag_copy(etag_out, sum[0] ? sum : want);
            break;
        }
        bool unknown = ambiguous(rc, &err);
        lost |= unknown;
        /* After a lost answer the upload may be gone (it was completed):
         * a 404 then says nothing either. */
        if ((unknown || (lost && rc == -ENOENT)) && linked(s, bucket, ref, path, want, etag_out)) {
            lf_info("complete presigned multipart upload %s/%s: the answer was lost; the "
                    "object is stored (ETag %s)", bucket, key, want);
            rc = 0;
            break;
        }
        if (!unknown || attempt >= s->retries)
            break;
        atomic_fetch_add(&s->nretries, 1);
        (void)backoff(s, attempt, NULL);
    }
    if (rc) {
        atomic_fetch_add(&s->failures, 1);
        lf_err("complete presigned multipart upload %s/%s (%zu parts): %s", bucket, key, nparts,
               err.message[0] ? err.message : strerror(-rc));
    } else {
        upload_remove(s, upload_id);
    }
out:
    free(ref);
    free(list);
    upload_free(u);
    return rc ? rc : meta != NULL;
}

static int ps_mpu_abort(void *ctx, const char *bucket, const char *key, const char *upload_id)
{
    struct ps *s = ctx;
    if (!is_ours(upload_id))
        return s->gw->ops->mpu_abort(s->gw->ctx, bucket, key, upload_id);
    struct upload *u = upload_get(s, upload_id);
    struct lf_api_err err;
    char *ref = NULL;
    const char *path;
    int rc = u ? split_key(u->key, &ref, &path) : -ENOENT;
    if (!rc) {
        atomic_fetch_add(&s->api_calls, 1);
        rc = lf_api_pmpu_abort(s->api, bucket, ref, path, &u->pmpu, &err);
    }
    upload_remove(s, upload_id); /* aborted or not, it is not ours to complete any more */
    free(ref);
    upload_free(u);
    return rc;
}

/* ---- metadata: the gateway's ---------------------------------------------- */

static int ps_list_buckets(void *ctx, char ***names, size_t *n)
{
    struct ps *s = ctx;
    return s->gw->ops->list_buckets(s->gw->ctx, names, n);
}

static int ps_list(void *ctx, const char *bucket, const char *prefix, const char *delimiter,
                   const char *token, unsigned max_keys, struct lf_list_page *out)
{
    struct ps *s = ctx;
    return s->gw->ops->list(s->gw->ctx, bucket, prefix, delimiter, token, max_keys, out);
}

static int ps_head(void *ctx, const char *bucket, const char *key, struct lf_obj_attr *out)
{
    struct ps *s = ctx;
    return s->gw->ops->head(s->gw->ctx, bucket, key, out);
}

/* A copy is done by the server (no bytes through us), so it stays the
 * gateway's: renames and metadata-only changes. */
static int ps_copy(void *ctx, const char *bucket, const char *src_key, const char *dst_key,
                   const struct lf_put_meta *meta, char etag_out[LF_ETAG_MAX])
{
    struct ps *s = ctx;
    return s->gw->ops->copy(s->gw->ctx, bucket, src_key, dst_key, meta, etag_out);
}

static int ps_remove(void *ctx, const char *bucket, const char *key, const char *etag)
{
    struct ps *s = ctx;
    return s->gw->ops->remove(s->gw->ctx, bucket, key, etag);
}

/* The gateway store's counters (metadata and small bodies go there), and
 * the storage's beside them. */
static void ps_stats(void *ctx, struct lf_store_stats *out)
{
    struct ps *s = ctx;
    if (s->gw->ops->stats)
        s->gw->ops->stats(s->gw->ctx, out);
    out->storage.on = true;
    out->storage.requests = atomic_load(&s->requests);
    out->storage.retries = atomic_load(&s->nretries);
    out->storage.refreshes = atomic_load(&s->refreshes);
    out->storage.failures = atomic_load(&s->failures);
    out->storage.api_calls = atomic_load(&s->api_calls);
    out->storage.fallbacks = atomic_load(&s->fallbacks);
    out->storage.bytes_in = atomic_load(&s->bytes_in);
    out->storage.bytes_out = atomic_load(&s->bytes_out);
}

static void ps_destroy(void *ctx)
{
    struct ps *s = ctx;
    if (!s)
        return;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        entry_clear(&s->cache[i]);
    while (s->uploads) {
        struct upload *u = s->uploads;
        s->uploads = u->next;
        upload_free(u);
    }
    lf_http_free(s->http);
    lf_store_free(s->gw);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static const struct lf_store_ops PS_OPS = {
    .list_buckets = ps_list_buckets,
    .list = ps_list,
    .head = ps_head,
    .get = ps_get,
    .get_stream = ps_get_stream,
    .put = ps_put,
    .copy = ps_copy,
    .remove = ps_remove,
    .mpu_create = ps_mpu_create,
    .mpu_part = ps_mpu_part,
    .mpu_complete = ps_mpu_complete,
    .mpu_abort = ps_mpu_abort,
    .destroy = ps_destroy,
    .stats = ps_stats,
};

struct lf_store *lf_presign_store_new(const struct lf_presign_opts *o)
{
    struct ps *s = calloc(1, sizeof(*s));
    if (!s) {
        lf_store_free(o->gateway);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->ops = PS_OPS;
    s->store.ops = &s->ops;
    s->store.ctx = s;
    s->gw = o->gateway;
    s->api = o->api;
    s->retries = o->retries;
    s->backoff_ms = o->backoff_ms ? o->backoff_ms : 100;
    atomic_store(&s->multipart, o->multipart);
    struct lf_http_opts ho = {.max_conns = o->max_conns ? o->max_conns : 8,
                              .connect_timeout_ms = o->connect_timeout_ms,
                              .stall_timeout_ms = o->stall_timeout_ms,
                              .ca_bundle = o->ca_bundle,
                              .insecure = o->insecure};
    if (!s->gw || !s->api || !(s->http = lf_http_new(&ho))) {
        lf_err("presign: cannot set up the storage client");
        ps_destroy(s);
        return NULL;
    }
    return &s->store;
}

void lf_presign_get_stats(struct lf_store *store, struct lf_presign_stats *out)
{
    struct lf_store_stats st;
    memset(&st, 0, sizeof(st));
    ps_stats(store->ctx, &st);
    out->requests = st.storage.requests;
    out->retries = st.storage.retries;
    out->refreshes = st.storage.refreshes;
    out->failures = st.storage.failures;
    out->api_calls = st.storage.api_calls;
    out->fallbacks = st.storage.fallbacks;
    out->bytes_in = st.storage.bytes_in;
    out->bytes_out = st.storage.bytes_out;
}

struct lf_store *lf_presign_gateway(struct lf_store *store)
{
    return ((struct ps *)store->ctx)->gw;
}
