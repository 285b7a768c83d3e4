/* s3: one generic exchange (build URL, sign, send, classify, retry) and a
 * thin function per S3 operation on top of it. */
#include "lakefuse/s3.h"

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
#include "lakefuse/sigv4.h"
#include "lakefuse/uri.h"
#include "lakefuse/xml.h"

#include <openssl/crypto.h>

#define MAX_QUERY 8
#define MAX_HEADERS 16

/* Kinds of refusal, each logged on its own (auth_refused): our keys (a
 * HEAD's refusal has no body to tell SignatureDoesNotMatch from
 * AccessDenied, so they are one kind), our clock; and the line saying
 * requests are accepted again. */
enum refusal { REF_KEYS, REF_CLOCK, REF_ACCEPTED, REF_KINDS };

struct s3 {
    struct lf_store store;
    struct lf_store_ops ops; /* S3_OPS, less what this endpoint cannot do */
    struct lf_http *http;
    /* The signer is replaced when the credentials are (auth_reload):
     * requests sign under the read lock; signer_gen counts replacements,
     * so a refused request knows whether it was signed with the old keys. */
    pthread_rwlock_t signer_lock;
    struct lf_sigv4 *signer;
    unsigned signer_gen;
    char *region;
    int (*reload)(void *arg, char **ak, char **sk);
    void *reload_arg;
    char *cred_source;
    pthread_mutex_t auth_lock;       /* the fields below */
    unsigned char cred_digest[LF_SHA256_LEN]; /* of "ak\0sk" in force */
    double next_reload;              /* monotonic s */
    double logged[REF_KINDS];        /* when each kind was last logged */
    atomic_bool refused;             /* a refusal since the last accepted request */
    atomic_llong clock_offset;       /* s: the gateway's clock minus ours */
    atomic_uint_fast64_t refusals, reloads;
    char *origin;     /* scheme://host[:port] */
    char *host;       /* host[:port], for the Host header */
    char *base_path;  /* "" or "/base" */
    unsigned retries, backoff_ms;
    atomic_uint_fast64_t requests, nretries, failures, bytes_in, bytes_out;
    /* lf_store_stats's breakdowns (no lock: counted on every attempt). */
    atomic_uint_fast64_t by_op[LF_OP_COUNT], errs[LF_ERR_COUNT], retried[LF_ERR_COUNT];
};

/* One S3 call as the operations describe it. */
struct call {
    const char *op;          /* operation name, for logs */
    const char *method;
    const char *bucket;      /* NULL: the service (ListBuckets) */
    const char *key;         /* NULL: the bucket itself */
    struct lf_sigv4_kv query[MAX_QUERY];
    size_t nquery;
    struct lf_sigv4_kv hdr[MAX_HEADERS];
    size_t nhdr;
    const struct lf_body *body;
    void (*body_tap)(void *arg, const void *p, size_t n, uint64_t at); /* as in lf_http_req */
    void *body_tap_arg;
    bool retry_ok;           /* safe to send again after a lost answer */
    bool own_failures;       /* the caller retries too, and counts a failed operation */
    /* Response sinks, as in lf_http_req. */
    const struct iovec *outv;
    int outvcnt;
    struct lf_buf *out_buf;
    struct lf_http_body **open_body; /* leave a 2xx body on its connection */
    const struct lf_read_ctl *ctl;
};

static void add_query(struct call *c, const char *name, const char *value)
{
    c->query[c->nquery++] = (struct lf_sigv4_kv){name, value};
}

static void add_header(struct call *c, const char *name, const char *value)
{
    c->hdr[c->nhdr++] = (struct lf_sigv4_kv){name, value};
}

static bool retryable_status(long status, const char *code)
{
    if (status == 500 || status == 502 || status == 503 || status == 504 || status == 429)
        return true;
    return code && (strcmp(code, "SlowDown") == 0 || strcmp(code, "InternalError") == 0 ||
                    strcmp(code, "RequestTimeout") == 0);
}

static bool retryable_errno(int rc)
{
    /* A failed TLS handshake is retried as a reset is: an overloaded
     * server drops connections mid-handshake too. */
    return rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -EPROTO ||
           rc == -EIO || rc == -EHOSTUNREACH || rc == LF_HTTP_ETLS;
}

/* What an attempt's failure was, from its errno and the answer's status
 * (0 when none came; a 2xx whose body or checks failed is the
 * transport's fault or the answer's). */
static enum lf_store_err failure_kind(int rc, long status, const char *code)
{
    if (status == 429 || status == 503 || (code && strcmp(code, "SlowDown") == 0))
        return LF_ERR_THROTTLED;
    if (status >= 500)
        return LF_ERR_SERVER;
    if (status >= 400)
        return LF_ERR_CLIENT;
    switch (rc) {
    case -ETIMEDOUT:
        return LF_ERR_TIMEOUT;
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -EHOSTUNREACH:
        return LF_ERR_CONNECT;
    case LF_HTTP_ETLS:
    case -EKEYREJECTED:
        return LF_ERR_TLS;
    case -EPROTO:
    case -EIO:
        return LF_ERR_PROTOCOL;
    default:
        return LF_ERR_OTHER;
    }
}

static void count_error(struct s3 *s, enum lf_store_err kind)
{
    atomic_fetch_add(&s->errs[kind], 1);
}

static void count_retry(struct s3 *s, enum lf_store_err kind)
{
    atomic_fetch_add(&s->nretries, 1);
    atomic_fetch_add(&s->retried[kind], 1);
}

/* Sleeps for the attempt's backoff (full jitter), in slices so a
 * cancelled caller is not kept waiting. Returns -EINTR when cancelled. */
static int backoff(const struct s3 *s, unsigned attempt, const struct lf_read_ctl *ctl)
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

/* Builds "/base/bucket/key" raw (unencoded), as the signer wants it. */
static int build_path(const struct s3 *s, const struct call *c, struct lf_buf *out)
{
    int rc = lf_buf_puts(out, s->base_path);
    if (!rc)
        rc = lf_buf_puts(out, "/");
    if (!rc && c->bucket)
        rc = lf_buf_puts(out, c->bucket);
    if (!rc && c->bucket && c->key)
        rc = lf_buf_printf(out, "/%s", c->key);
    return rc;
}

static int build_url(const struct s3 *s, const struct call *c, const char *path,
                     struct lf_buf *url)
{
    int rc = lf_buf_puts(url, s->origin);
    if (!rc)
        rc = lf_uri_encode(url, path, strlen(path), true);
    for (size_t i = 0; !rc && i < c->nquery; i++) {
        const char *v = c->query[i].value;
        rc = lf_buf_puts(url, i == 0 ? "?" : "&");
        if (!rc)
            rc = lf_uri_encode(url, c->query[i].name, strlen(c->query[i].name), false);
        if (!rc && v) {
            rc = lf_buf_puts(url, "=");
            if (!rc)
                rc = lf_uri_encode(url, v, strlen(v), false);
        }
    }
    return rc;
}

/* Maps an error answer to an errno and logs it (a refusal, 403, is
 * logged by auth_refused, once per kind). */
static int answer_error(const struct call *c, const struct lf_http_resp *r, char *code,
                        size_t codecap, char *message, size_t msgcap)
{
    message[0] = '\0';
    code[0] = '\0';
    if (r->err_body.len > 0)
        lf_xml_parse_error(r->err_body.data, r->err_body.len, code, codecap, message, msgcap);
    if (!code[0]) {
        /* HEAD answers carry no body: the status says it all. */
        snprintf(code, codecap, "%s",
                 r->status == 404 ? (c->key ? "NoSuchKey" : "NoSuchBucket")
                 : r->status == 403 ? "AccessDenied"
                 : r->status == 412 ? "PreconditionFailed"
                 : r->status == 416 ? "InvalidRange"
                 : r->status == 400 ? "BadRequest"
                 : r->status == 503 ? "ServiceUnavailable"
                 : r->status >= 500 ? "InternalError" : "Unknown");
    }
    int err = lf_s3_code_errno(code);
    if (r->status == 400 && err == -EIO)
        err = -EINVAL;
    /* A missing key is an everyday answer (lookups); a retryable one is
     * logged by the retry loop; a failed condition by the caller, who
     * knows what it means; anything else is a failure worth a line. */
    bool unknown_ref = r->status == 400 && strcmp(c->op, "ListObjectsV2") == 0;
    if (r->status == 404 || r->status == 412 || r->status == 403 || unknown_ref ||
        retryable_status(r->status, code))
        lf_dbg("%s %s/%s: HTTP %ld %s%s%s", c->op, c->bucket ? c->bucket : "",
               c->key ? c->key : "", r->status, code, message[0] ? ": " : "", message);
    else
        lf_err("%s %s/%s: HTTP %ld %s%s%s", c->op, c->bucket ? c->bucket : "",
               c->key ? c->key : "", r->status, code, message[0] ? ": " : "", message);
    return err;
}

/* ---- refusals: credentials and clock --------------------------------- */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A digest of the key pair, to tell new credentials from the ones in
 * force without keeping a second copy of the secret. */
static int cred_digest(const char *ak, const char *sk, unsigned char out[LF_SHA256_LEN])
{
    struct lf_buf b = LF_BUF_INIT;
    int rc = lf_buf_append(&b, ak, strlen(ak) + 1);
    if (!rc)
        rc = lf_buf_puts(&b, sk);
    if (!rc)
        rc = lf_sha256(b.data, b.len, out);
    if (b.data)
        OPENSSL_cleanse(b.data, b.cap);
    lf_buf_free(&b);
    return rc;
}

static void free_secret(char *sk)
{
    if (sk) {
        OPENSSL_cleanse(sk, strlen(sk));
        free(sk);
    }
}

/* Whether a line of this kind is due (one per LF_S3_AUTH_LOG_EVERY). */
static bool auth_log_due(struct s3 *s, enum refusal kind)
{
    pthread_mutex_lock(&s->auth_lock);
    double now = mono_now();
    bool due = s->logged[kind] == 0 || now - s->logged[kind] >= LF_S3_AUTH_LOG_EVERY;
    if (due)
        s->logged[kind] = now;
    pthread_mutex_unlock(&s->auth_lock);
    return due;
}

/* Asks for fresh credentials (at most every LF_S3_RELOAD_EVERY s) and
 * signs with them if they differ. True when a request signed under
 * generation gen should be sent again: new credentials are in force. */
static bool auth_reload(struct s3 *s, unsigned gen)
{
    pthread_rwlock_rdlock(&s->signer_lock);
    bool newer = s->signer_gen != gen;
    pthread_rwlock_unlock(&s->signer_lock);
    if (newer)
        return true;
    if (!s->reload)
        return false;
    pthread_mutex_lock(&s->auth_lock);
    double now = mono_now();
    if (now < s->next_reload) {
        pthread_mutex_unlock(&s->auth_lock);
        return false;
    }
    s->next_reload = now + LF_S3_RELOAD_EVERY;
    char *ak = NULL, *sk = NULL;
    unsigned char d[LF_SHA256_LEN];
    bool changed = false;
    int rc = s->reload(s->reload_arg, &ak, &sk);
    if (!rc && (!ak || !sk || !ak[0] || !sk[0]))
        rc = -ENOKEY;
    if (!rc)
        rc = cred_digest(ak, sk, d);
    if (!rc && memcmp(d, s->cred_digest, sizeof(d)) != 0) {
        struct lf_sigv4 *fresh = lf_sigv4_new(ak, sk, s->region, "s3");
        if (fresh) {
            pthread_rwlock_wrlock(&s->signer_lock);
            struct lf_sigv4 *old = s->signer;
            s->signer = fresh;
            s->signer_gen++;
            pthread_rwlock_unlock(&s->signer_lock);
            lf_sigv4_free(old);
            memcpy(s->cred_digest, d, sizeof(d));
            atomic_fetch_add(&s->reloads, 1);
            changed = true;
        } else {
            rc = -ENOMEM;
        }
    }
    pthread_mutex_unlock(&s->auth_lock);
    if (changed)
        lf_warn("the gateway refused our credentials; took new ones from %s (access key %s) "
                "and sending again", s->cred_source, ak);
    else if (rc)
        lf_dbg("credentials from %s: cannot read them again: %s", s->cred_source,
               strerror(-rc));
    else
        lf_dbg("credentials from %s: unchanged", s->cred_source);
    free(ak);
    free_secret(sk);
    return changed;
}

/* A 403: our keys or our clock are refused. Corrects the clock by the
 * answer's Date or takes new credentials when it can, and says so once
 * per kind. True when the request should be sent again at once. */
static bool auth_refused(struct s3 *s, const struct call *c, const struct lf_http_resp *r,
                         const char *code, const char *message, unsigned gen, time_t signed_at)
{
    atomic_fetch_add(&s->refusals, 1);
    atomic_store(&s->refused, true);
    enum refusal kind = strcmp(code, "RequestTimeTooSkewed") == 0 ? REF_CLOCK : REF_KEYS;
    /* The answer's Date is the gateway's clock: minutes away from the
     * time we signed with means the clock is why (lakeFS answers
     * RequestTimeTooSkewed for a request dated in its past, AccessDenied
     * "not valid yet" for one in its future). */
    long long apart = r->date ? (long long)r->date - (long long)signed_at : 0;
    if (apart > LF_S3_SKEW_MIN || apart < -LF_S3_SKEW_MIN) {
        long long off = (long long)r->date - (long long)time(NULL);
        if (off >= -LF_S3_SKEW_MIN / 2 && off <= LF_S3_SKEW_MIN / 2)
            off = 0; /* Date has whole seconds: near enough is ours */
        long long was = atomic_exchange(&s->clock_offset, off);
        if (off == 0 && was != 0)
            lf_warn("the gateway's clock agrees with this machine's again (it refused %s %s/%s "
                    "signed with its former time); signing with our own time, and sending again",
                    c->op, c->bucket ? c->bucket : "", c->key ? c->key : "");
        else if (llabs(off - was) > LF_S3_SKEW_MIN / 2)
            lf_warn("the gateway's clock is %lld s %s this machine's: it refused %s %s/%s "
                    "(HTTP 403 %s%s%s). Signing with the gateway's time from now on and "
                    "sending again; set this machine's clock right (NTP)",
                    llabs(off), off > 0 ? "ahead of" : "behind", c->op,
                    c->bucket ? c->bucket : "", c->key ? c->key : "", code,
                    message[0] ? ": " : "", message);
        return true;
    }
    if (kind == REF_CLOCK) {
        if (auth_log_due(s, kind))
            lf_err("the gateway refuses our request time (HTTP 403 %s%s%s on %s %s/%s): this "
                   "machine's clock is off from the gateway's by more than it allows, and the "
                   "answer carries no Date to correct by; set the clock right (NTP)", code,
                   message[0] ? ": " : "", message, c->op, c->bucket ? c->bucket : "",
                   c->key ? c->key : "");
        return false;
    }
    if (auth_reload(s, gen))
        return true;
    if (!auth_log_due(s, kind)) {
        lf_dbg("%s %s/%s: HTTP 403 %s%s%s", c->op, c->bucket ? c->bucket : "",
               c->key ? c->key : "", code, message[0] ? ": " : "", message);
        return false;
    }
    const char *what = strcmp(code, "SignatureDoesNotMatch") == 0
                           ? "our secret key is not the access key's (rotated?)"
                       : strcmp(code, "InvalidAccessKeyId") == 0
                           ? "our access key is unknown to it"
                           : "access denied: the key may be revoked or rotated, or lack "
                             "permission for this";
    if (s->reload)
        lf_err("the gateway refuses our requests (HTTP 403 %s%s%s, first on %s %s/%s): %s. "
               "They fail with EACCES (staged writes stay staged) until valid credentials "
               "are in %s, which is read again at most every %d s while refusals last. "
               "Further refusals of this kind are logged only at debug level for %d s",
               code, message[0] ? ": " : "", message, c->op, c->bucket ? c->bucket : "",
               c->key ? c->key : "", what, s->cred_source, LF_S3_RELOAD_EVERY,
               LF_S3_AUTH_LOG_EVERY);
    else
        lf_err("the gateway refuses our requests (HTTP 403 %s%s%s, first on %s %s/%s): %s. "
               "They fail with EACCES (staged writes stay staged). The credentials came from "
               "%s, which cannot change under a running process: remount with valid ones, "
               "or keep them in a lakectl file named by --config, which a running mount "
               "reads again when refused. Further refusals of this kind are logged only at "
               "debug level for %d s", code, message[0] ? ": " : "", message, c->op,
               c->bucket ? c->bucket : "", c->key ? c->key : "", what, s->cred_source,
               LF_S3_AUTH_LOG_EVERY);
    return false;
}

/* An accepted request after refusals: said once (per LF_S3_AUTH_LOG_EVERY). */
static void auth_accepted(struct s3 *s)
{
    if (atomic_load(&s->refused) && atomic_exchange(&s->refused, false) &&
        auth_log_due(s, REF_ACCEPTED))
        lf_info("the gateway accepts our requests again");
}

/* Runs the call with retries. On success (2xx) returns 0 with resp filled.
 * A call that is not retry_ok is sent again only when it surely did not
 * take effect (the connection was refused, the server throttled it);
 * when it may have (its answer was lost, or a 500/502/504 says nothing),
 * *unknown is set, for the caller to find out by asking. */
static int perform_ex(struct s3 *s, const struct call *c, struct lf_http_resp *resp,
                      bool *unknown)
{
    struct lf_buf path = LF_BUF_INIT, url = LF_BUF_INIT, auth = LF_BUF_INIT;
    struct lf_buf lines = LF_BUF_INIT;
    const char *hdr_lines[MAX_HEADERS + 4];
    struct lf_sigv4_kv hdrs[MAX_HEADERS + 3];
    char date[LF_SIGV4_AMZ_DATE_SIZE], code[64] = "", message[256] = "";
    bool ambiguous = false;
    enum lf_store_op op = lf_store_op_of(c->op);
    int rc = build_path(s, c, &path);
    if (!rc)
        rc = build_url(s, c, path.data, &url);
    if (rc)
        goto out;

    for (unsigned attempt = 0;; attempt++) {
        time_t t = time(NULL) + (time_t)atomic_load(&s->clock_offset);
        size_t nh = 0;
        lf_sigv4_amz_date(t, date);
        hdrs[nh++] = (struct lf_sigv4_kv){"host", s->host};
        hdrs[nh++] = (struct lf_sigv4_kv){"x-amz-date", date};
        hdrs[nh++] = (struct lf_sigv4_kv){"x-amz-content-sha256", LF_SIGV4_UNSIGNED_PAYLOAD};
        for (size_t i = 0; i < c->nhdr; i++)
            hdrs[nh++] = c->hdr[i];
        struct lf_sigv4_req sr = {.method = c->method, .path = path.data, .query = c->query,
                                  .nquery = c->nquery, .headers = hdrs, .nheaders = nh,
                                  .payload_hash = LF_SIGV4_UNSIGNED_PAYLOAD, .time = t};
        lf_buf_reset(&auth);
        lf_buf_reset(&lines);
        if ((rc = lf_buf_puts(&auth, "Authorization: ")))
            goto out;
        pthread_rwlock_rdlock(&s->signer_lock);
        unsigned gen = s->signer_gen;
        rc = lf_sigv4_authorization(s->signer, &sr, &auth);
        pthread_rwlock_unlock(&s->signer_lock);
        if (rc)
            goto out;
        /* "Name: value" lines for curl, all in one buffer: offsets first,
         * pointers after, since the buffer may move while it grows. */
        size_t offs[MAX_HEADERS + 3];
        for (size_t i = 1; i < nh; i++) { /* curl writes Host itself */
            offs[i] = lines.len;
            if ((rc = lf_buf_printf(&lines, "%s: %s", hdrs[i].name,
                                    hdrs[i].value ? hdrs[i].value : "")) ||
                (rc = lf_buf_append(&lines, "", 1)))
                goto out;
        }
        size_t nl = 0;
        for (size_t i = 1; i < nh; i++)
            hdr_lines[nl++] = lines.data + offs[i];
        hdr_lines[nl++] = auth.data;

        struct lf_http_req hr = {.method = c->method, .url = url.data, .headers = hdr_lines,
                                 .nheaders = nl, .outv = c->outv, .outvcnt = c->outvcnt,
                                 .out_buf = c->out_buf, .out_max = LF_XML_MAX,
                                 .fresh_connect = !c->retry_ok};
        if (c->body) {
            hr.body = c->body->mem;
            hr.body_fd = c->body->fd;
            hr.body_off = c->body->off;
            hr.body_len = c->body->len;
            hr.body_tap = c->body_tap;
            hr.body_tap_arg = c->body_tap_arg;
        }
        if (c->ctl && c->ctl->cancelled) {
            hr.cancel = c->ctl->cancelled;
            hr.cancel_arg = c->ctl->arg;
        }
        if (c->out_buf)
            lf_buf_reset(c->out_buf);
        atomic_fetch_add(&s->requests, 1);
        atomic_fetch_add(&s->by_op[op], 1);
        if (c->body)
            atomic_fetch_add(&s->bytes_out, c->body->len);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = c->open_body ? lf_http_open(s->http, &hr, resp, c->open_body)
                          : lf_http_perform(s->http, &hr, resp);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        atomic_fetch_add(&s->bytes_in, resp->body_len);
        lf_dbg("%s %s %s: HTTP %ld, %" PRIu64 " bytes, %.1f ms", c->op, c->method,
               url.data + strlen(s->origin), resp->status,
               (uint64_t)resp->body_len,
               (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);

        bool again, unsent;
        enum lf_store_err kind = LF_ERR_OTHER;
        if (rc) {
            kind = failure_kind(rc, resp->status, NULL);
            unsent = rc == -ECONNREFUSED || rc == -EHOSTUNREACH || rc == -EINTR;
            again = (c->retry_ok || unsent) && retryable_errno(rc);
            ambiguous = !unsent;
            if (rc != -EINTR)
                lf_warn("%s %s/%s: %s (attempt %u)", c->op, c->bucket ? c->bucket : "",
                        c->key ? c->key : "", resp->errmsg[0] ? resp->errmsg : strerror(-rc),
                        attempt + 1);
        } else if (resp->status >= 200 && resp->status < 300) {
            auth_accepted(s);
            break;
        } else if (resp->status == 403) {
            rc = answer_error(c, resp, code, sizeof(code), message, sizeof(message));
            ambiguous = false; /* refused before any work */
            /* With a cause mended (new credentials, the clock) any call
             * may go again, at once. */
            if (auth_refused(s, c, resp, code, message, gen, t) && attempt < s->retries) {
                atomic_fetch_add(&s->nretries, 1);
                continue;
            }
            again = false;
        } else {
            rc = answer_error(c, resp, code, sizeof(code), message, sizeof(message));
            kind = failure_kind(rc, resp->status, code);
            unsent = resp->status == 429 || resp->status == 503 || strcmp(code, "SlowDown") == 0;
            again = retryable_status(resp->status, code) && (c->retry_ok || unsent);
            ambiguous = resp->status >= 500 && !unsent;
            if (again)
                lf_warn("%s %s/%s: HTTP %ld %s (attempt %u)", c->op,
                        c->bucket ? c->bucket : "", c->key ? c->key : "", resp->status, code,
                        attempt + 1);
        }
        if (rc != -EINTR && resp->status != 404)
            count_error(s, kind);
        if (!again || attempt >= s->retries)
            break;
        count_retry(s, kind);
        if ((rc = backoff(s, attempt, c->ctl)))
            break;
    }
    if (unknown)
        *unknown = rc && ambiguous && !c->retry_ok;
    if (rc && rc != -ENOENT && rc != -EINTR && !(unknown && *unknown) && !c->own_failures)
        atomic_fetch_add(&s->failures, 1);
out:
    lf_buf_free(&path);
    lf_buf_free(&url);
    lf_buf_free(&auth);
    lf_buf_free(&lines);
    return rc;
}

static int perform(struct s3 *s, const struct call *c, struct lf_http_resp *resp)
{
    return perform_ex(s, c, resp, NULL);
}

/* ---- attributes from headers ------------------------------------------- */

static bool parse_u64(const char *s, uint64_t *v)
{
    char *end;
    if (!s || !*s)
        return false;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *v = x;
    return true;
}

/* x-amz-meta-mtime: seconds, optionally with a fraction (s3fs writes
 * whole seconds; we accept both). */
static bool parse_mtime(const char *s, struct timespec *ts)
{
    char *end;
    if (!s || !*s)
        return false;
    errno = 0;
    long long sec = strtoll(s, &end, 10);
    long nsec = 0;
    if (errno)
        return false;
    if (*end == '.') {
        long scale = 100000000;
        for (end++; *end >= '0' && *end <= '9'; end++, scale /= 10)
            nsec += scale > 0 ? (*end - '0') * scale : 0;
    }
    if (*end)
        return false;
    ts->tv_sec = (time_t)sec;
    ts->tv_nsec = nsec;
    return true;
}

static void attr_from_resp(const struct lf_http_resp *r, struct lf_obj_attr *a)
{
    uint64_t v;
    memset(a, 0, sizeof(*a));
    a->size = r->content_length > 0 ? (uint64_t)r->content_length : 0;
    lf_etag_copy(a->etag, r->etag);
    a->last_modified = r->last_modified;
    if (parse_u64(lf_http_resp_meta(r, "mode"), &v)) {
        a->mode = (uint32_t)v;
        a->has |= LF_ATTR_MODE;
    }
    if (parse_u64(lf_http_resp_meta(r, "uid"), &v)) {
        a->uid = (uint32_t)v;
        a->has |= LF_ATTR_UID;
    }
    if (parse_u64(lf_http_resp_meta(r, "gid"), &v)) {
        a->gid = (uint32_t)v;
        a->has |= LF_ATTR_GID;
    }
    if (parse_mtime(lf_http_resp_meta(r, "mtime"), &a->mtime)) {
        a->has |= LF_ATTR_MTIME;
        if (parse_u64(lf_http_resp_meta(r, "mtime-nsec"), &v) && v < 1000000000)
            a->mtime.tv_nsec = (long)v;
    }
}

/* Adds the x-amz-meta-* headers for meta; strings live in `store`. */
struct meta_hdrs {
    char mode[24], uid[24], gid[24], mtime[48], nsec[16];
};

static void add_meta(struct call *c, const struct lf_put_meta *m, struct meta_hdrs *h)
{
    if (!m)
        return;
    if (m->has & LF_ATTR_MODE) {
        snprintf(h->mode, sizeof(h->mode), "%" PRIu32, m->mode);
        add_header(c, "x-amz-meta-mode", h->mode);
    }
    if (m->has & LF_ATTR_UID) {
        snprintf(h->uid, sizeof(h->uid), "%" PRIu32, m->uid);
        add_header(c, "x-amz-meta-uid", h->uid);
    }
    if (m->has & LF_ATTR_GID) {
        snprintf(h->gid, sizeof(h->gid), "%" PRIu32, m->gid);
        add_header(c, "x-amz-meta-gid", h->gid);
    }
    if (m->has & LF_ATTR_MTIME) {
        /* Whole seconds in s3fs's header, so either tool reads the other's
         * files; the nanoseconds beside it, so rsync's comparison holds. */
        snprintf(h->mtime, sizeof(h->mtime), "%lld", (long long)m->mtime.tv_sec);
        add_header(c, "x-amz-meta-mtime", h->mtime);
        if (m->mtime.tv_nsec) {
            snprintf(h->nsec, sizeof(h->nsec), "%ld", m->mtime.tv_nsec);
            add_header(c, "x-amz-meta-mtime-nsec", h->nsec);
        }
    }
    if (m->content_type)
        add_header(c, "content-type", m->content_type);
}

/* Content-MD5 of a body, read from memory or from the file region, and
 * its hex form: lakeFS does not check Content-MD5, so the ETag it answers
 * (the MD5 of what it stored) is compared with the hex digest instead. */
static int body_md5(const struct lf_body *b, char out[LF_MD5_B64_SIZE],
                    char hex[LF_MD5_HEX_SIZE])
{
    if (b->mem || b->len == 0) {
        const void *p = b->mem ? b->mem : "";
        int rc = lf_md5_base64(p, (size_t)b->len, out);
        return rc ? rc : lf_md5_hex(p, (size_t)b->len, hex);
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
        snprintf(out, LF_MD5_B64_SIZE, "%s", enc.data);
        for (int i = 0; i < LF_MD5_LEN; i++)
            snprintf(hex + 2 * i, 3, "%02x", res.md5[i]);
    }
    lf_buf_free(&enc);
    lf_hash_free(h);
    free(buf);
    return rc;
}

/* A stored body whose ETag is not our MD5 was damaged on the way. */
static int check_etag(const char *op, const char *key, const char *etag,
                      const char *hex)
{
    if (!etag[0] || strcasecmp(etag, hex) == 0)
        return 0;
    lf_err("%s %s: the gateway stored different bytes (ETag %s, MD5 %s)", op, key, etag, hex);
    return -EIO;
}

/* ---- operations -------------------------------------------------------- */

static int s3_list_buckets(void *ctx, char ***names, size_t *n)
{
    struct s3 *s = ctx;
    struct lf_buf body = LF_BUF_INIT;
    struct lf_http_resp r;
    struct call c = {.op = "ListBuckets", .method = "GET", .retry_ok = true, .out_buf = &body};
    lf_http_resp_init(&r);
    int rc = perform(s, &c, &r);
    if (!rc)
        rc = lf_xml_parse_buckets(body.data, body.len, names, n);
    lf_http_resp_free(&r);
    lf_buf_free(&body);
    return rc;
}

static int s3_list(void *ctx, const char *bucket, const char *prefix, const char *delimiter,
                   const char *token, unsigned max_keys, struct lf_list_page *out)
{
    struct s3 *s = ctx;
    struct lf_buf body = LF_BUF_INIT;
    struct lf_http_resp r;
    char mk[16];
    struct call c = {.op = "ListObjectsV2", .method = "GET", .bucket = bucket,
                     .retry_ok = true, .own_failures = true, .out_buf = &body};
    snprintf(mk, sizeof(mk), "%u", max_keys ? max_keys : 1000);
    add_query(&c, "list-type", "2");
    add_query(&c, "prefix", prefix);
    if (delimiter && *delimiter)
        add_query(&c, "delimiter", delimiter);
    add_query(&c, "max-keys", mk);
    add_query(&c, "encoding-type", "url");
    if (token && *token)
        add_query(&c, "continuation-token", token);
    memset(out, 0, sizeof(*out));
    int rc;
    /* lakeFS answers 400 for every failed listing, an unknown ref and a
     * passing failure of its own alike: one more try tells them apart
     * often enough, and an unknown ref costs one request more. */
    for (unsigned attempt = 0;; attempt++) {
        lf_http_resp_init(&r);
        rc = perform(s, &c, &r);
        if (rc != -EINVAL || r.status != 400 || attempt >= 1 || attempt >= s->retries)
            break;
        lf_http_resp_free(&r);
        count_retry(s, LF_ERR_CLIENT);
        (void)backoff(s, attempt, NULL); /* not cancellable: always 0 */
    }
    if (rc && rc != -ENOENT)
        atomic_fetch_add(&s->failures, 1);
    if (!rc)
        rc = lf_xml_parse_list_page(body.data, body.len, out);
    if (rc == -EIO)
        lf_err("ListObjectsV2 %s prefix '%s': the answer is not a listing (%zu bytes)", bucket,
               prefix, body.len);
    lf_http_resp_free(&r);
    lf_buf_free(&body);
    return rc;
}

static int s3_head(void *ctx, const char *bucket, const char *key, struct lf_obj_attr *out)
{
    struct s3 *s = ctx;
    struct lf_http_resp r;
    struct call c = {.op = "HeadObject", .method = "HEAD", .bucket = bucket, .key = key,
                     .retry_ok = true};
    lf_http_resp_init(&r);
    int rc = perform(s, &c, &r);
    if (!rc)
        attr_from_resp(&r, out);
    lf_http_resp_free(&r);
    return rc;
}

/* Parses "bytes a-b/total". */
static bool parse_content_range(const char *v, uint64_t *a, uint64_t *b, uint64_t *total)
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

/* Whether an answer to "bytes=off-(off+want-1)" is exactly those bytes
 * (or what exists of them at the end of the object) of the version with
 * the pinned ETag: 0 with *got set, -ESTALE or -EPROTO. body is the
 * answer's body length (read, or announced for a body not read yet). */
static int check_range(const struct lf_http_resp *r, uint64_t off, uint64_t want, uint64_t body,
                       const char *etag, const char *bucket, const char *key, uint64_t *got)
{
    uint64_t a = 0, b = 0, total = 0;
    char tag[LF_ETAG_MAX];
    lf_etag_copy(tag, r->etag);
    if (etag && *etag && !lf_etag_same(tag, etag))
        return -ESTALE;
    if (r->status == 206 && parse_content_range(r->content_range, &a, &b, &total) &&
        a == off && (b == off + want - 1 || (b == total - 1 && b < off + want - 1)) &&
        body == b - a + 1) {
        *got = body;
        return 0;
    }
    if (r->status == 200 && off == 0 && r->content_length >= 0 &&
        body == (uint64_t)r->content_length && body <= want) {
        *got = body; /* the whole (small) object */
        return 0;
    }
    lf_warn("GetObject %s/%s: answer does not match range bytes=%" PRIu64 "-%" PRIu64
            " (HTTP %ld, Content-Range '%s', %" PRIu64 " bytes)", bucket, key, off,
            off + want - 1, r->status, r->content_range, body);
    return -EPROTO;
}

static int s3_get(void *ctx, const char *bucket, const char *key, uint64_t off,
                  const struct iovec *iov, int iovcnt, const char *etag, size_t *got,
                  const struct lf_read_ctl *ctl)
{
    struct s3 *s = ctx;
    struct lf_http_resp r;
    char range[64];
    size_t want = 0;
    for (int i = 0; i < iovcnt; i++)
        want += iov[i].iov_len;
    if (want == 0) {
        *got = 0;
        return 0;
    }
    snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off, off + want - 1);
    struct call c = {.op = "GetObject", .method = "GET", .bucket = bucket, .key = key,
                     .retry_ok = true, .outv = iov, .outvcnt = iovcnt, .ctl = ctl};
    add_header(&c, "range", range);
    lf_http_resp_init(&r);
    int rc;
    for (unsigned attempt = 0;; attempt++) {
        uint64_t n = 0;
        if ((rc = perform(s, &c, &r))) /* retried in there already */
            break;
        if (!(rc = check_range(&r, off, want, r.body_len, etag, bucket, key, &n))) {
            *got = (size_t)n;
            break;
        }
        if (rc == -EPROTO)
            count_error(s, LF_ERR_PROTOCOL);
        if (rc != -EPROTO || attempt >= s->retries)
            break;
        count_retry(s, LF_ERR_PROTOCOL);
        if ((rc = backoff(s, attempt, ctl)))
            break;
    }
    lf_http_resp_free(&r);
    return rc;
}

/* ---- streamed GETs -------------------------------------------------------- */

struct s3_stream {
    struct lf_stream base;
    struct s3 *s;
    struct lf_http_body *body;
    char *name; /* "bucket/key", for log lines */
};

static int s3_stream_splice(struct lf_stream *st, int pipe_fd, size_t n,
                            const struct lf_read_ctl *ctl, size_t *moved)
{
    struct s3_stream *x = (struct s3_stream *)st;
    int rc = lf_http_body_splice(x->body, pipe_fd, n, ctl ? ctl->cancelled : NULL,
                                 ctl ? ctl->arg : NULL, moved);
    atomic_fetch_add(&x->s->bytes_in, *moved);
    if (rc && rc != -EINTR)
        lf_warn("GetObject %s: %s (the read goes another way)", x->name,
                lf_http_body_why(x->body));
    return rc;
}

static void s3_stream_close(struct lf_stream *st)
{
    struct s3_stream *x = (struct s3_stream *)st;
    if (!x)
        return;
    lf_http_body_close(x->body);
    free(x->name);
    free(x);
}

static const struct lf_stream_ops S3_STREAM_OPS = {
    .splice = s3_stream_splice,
    .close = s3_stream_close,
};

static int s3_get_stream(void *ctx, const char *bucket, const char *key, uint64_t off,
                         uint64_t len, const char *etag, const struct lf_read_ctl *ctl,
                         struct lf_stream **out)
{
    struct s3 *s = ctx;
    struct lf_http_resp r;
    struct lf_http_body *body = NULL;
    struct s3_stream *x = NULL;
    char range[64];
    *out = NULL;
    if (len == 0)
        return -EINVAL;
    snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
    struct call c = {.op = "GetObject", .method = "GET", .bucket = bucket, .key = key,
                     .retry_ok = true, .open_body = &body, .ctl = ctl};
    add_header(&c, "range", range);
    lf_http_resp_init(&r);
    int rc;
    for (unsigned attempt = 0;; attempt++) {
        uint64_t n = 0;
        if ((rc = perform(s, &c, &r)))
            break;
        rc = check_range(&r, off, len, (uint64_t)r.content_length, etag, bucket, key, &n);
        if (!rc && n != len) {
            lf_warn("GetObject %s/%s: %" PRIu64 " of the %" PRIu64 " bytes asked for: "
                    "object changed size", bucket, key, n, len);
            rc = -ESTALE;
        }
        if (!rc)
            break;
        lf_http_body_close(body);
        body = NULL;
        if (rc == -EPROTO)
            count_error(s, LF_ERR_PROTOCOL);
        if (rc != -EPROTO || attempt >= s->retries)
            break;
        count_retry(s, LF_ERR_PROTOCOL);
        if ((rc = backoff(s, attempt, ctl)))
            break;
    }
    lf_http_resp_free(&r);
    if (rc)
        return rc;
    if (!(x = calloc(1, sizeof(*x))) || asprintf(&x->name, "%s/%s", bucket, key) < 0) {
        free(x);
        lf_http_body_close(body);
        return -ENOMEM;
    }
    x->base.ops = &S3_STREAM_OPS;
    x->s = s;
    x->body = body;
    *out = &x->base;
    return 0;
}

static bool completed(struct s3 *s, const char *bucket, const char *key, const char *want,
                      char etag_out[LF_ETAG_MAX]);

static int s3_put(void *ctx, const char *bucket, const char *key, const struct lf_body *body,
                  const struct lf_put_meta *meta, enum lf_put_cond cond,
                  char etag_out[LF_ETAG_MAX])
{
    struct s3 *s = ctx;
    struct lf_http_resp r;
    struct meta_hdrs mh;
    char md5[LF_MD5_B64_SIZE], hex[LF_MD5_HEX_SIZE], etag[LF_ETAG_MAX];
    struct call c = {.op = "PutObject", .method = "PUT", .bucket = bucket, .key = key,
                     .body = body, .retry_ok = cond == LF_PUT_ANY};
    int rc = body_md5(body, md5, hex);
    if (rc)
        return rc;
    add_header(&c, "content-md5", md5);
    if (!meta || !meta->content_type)
        add_header(&c, "content-type", "application/octet-stream");
    add_meta(&c, meta, &mh);
    if (cond == LF_PUT_IF_ABSENT)
        add_header(&c, "if-none-match", "*");
    /* A conditional PUT sent again after it took effect fails its own
     * condition (412): a lost answer is resolved by a HEAD whose ETag is
     * our MD5, and the PUT is sent again only when that is not so. */
    bool lost = false, unresolved = false;
    for (unsigned attempt = 0;; attempt++) {
        bool unknown = false;
        lf_http_resp_init(&r);
        rc = perform_ex(s, &c, &r, &unknown);
        if (!rc) {
            lf_etag_copy(etag, r.etag);
            rc = check_etag("PutObject", key, etag, hex);
            if (rc) /* but stored: see store.h */
                rc = -EBADMSG;
        }
        enum lf_store_err why = failure_kind(rc, r.status, NULL);
        lf_http_resp_free(&r);
        lost |= unknown;
        if (rc && (unknown || (lost && rc == -EEXIST)) && completed(s, bucket, key, hex, etag)) {
            lf_info("PutObject %s/%s: the answer was lost; the object is stored", bucket, key);
            rc = 0;
        }
        if (!rc || !unknown || attempt >= s->retries) {
            unresolved = rc && unknown;
            break;
        }
        count_retry(s, why);
        (void)backoff(s, attempt, NULL); /* not cancellable: always 0 */
    }
    /* perform_ex leaves an operation whose outcome it could not know to
     * us: failed in the end, it is a failed operation like any other. */
    if (unresolved)
        atomic_fetch_add(&s->failures, 1);
    if (!rc && etag_out)
        memcpy(etag_out, etag, LF_ETAG_MAX);
    return rc;
}

static int s3_copy(void *ctx, const char *bucket, const char *src_key, const char *dst_key,
                   const struct lf_put_meta *meta, char etag_out[LF_ETAG_MAX])
{
    struct s3 *s = ctx;
    struct lf_buf src = LF_BUF_INIT, raw = LF_BUF_INIT, body = LF_BUF_INIT;
    struct lf_http_resp r;
    struct meta_hdrs mh;
    struct lf_body empty = {.mem = "", .len = 0};
    struct call c = {.op = "CopyObject", .method = "PUT", .bucket = bucket, .key = dst_key,
                     .body = &empty, .retry_ok = true, .out_buf = &body};
    int rc = lf_buf_printf(&raw, "/%s/%s", bucket, src_key);
    if (!rc)
        rc = lf_uri_encode(&src, raw.data, raw.len, true);
    if (rc)
        goto out;
    add_header(&c, "x-amz-copy-source", src.data);
    if (meta) {
        add_header(&c, "x-amz-metadata-directive", "REPLACE");
        add_meta(&c, meta, &mh);
    }
    lf_http_resp_init(&r);
    rc = perform(s, &c, &r);
    /* S3 may report a failed copy inside a 200 answer. */
    if (!rc)
        rc = lf_xml_parse_copy_result(body.data, body.len, etag_out);
    lf_http_resp_free(&r);
out:
    lf_buf_free(&src);
    lf_buf_free(&raw);
    lf_buf_free(&body);
    return rc;
}

/* A DELETE sent again after a backoff could remove a version written in
 * between (another client's create, made after our first DELETE took
 * effect), so a lost answer is resolved by a HEAD instead: gone is what
 * was asked for; the very version the caller meant to delete still there
 * means the DELETE did not take effect, and it goes again; anything else
 * fails rather than guess. */
static int s3_remove(void *ctx, const char *bucket, const char *key, const char *etag)
{
    struct s3 *s = ctx;
    struct lf_http_resp r;
    struct lf_obj_attr a;
    struct call c = {.op = "DeleteObject", .method = "DELETE", .bucket = bucket, .key = key};
    int rc;
    for (unsigned attempt = 0;; attempt++) {
        bool unknown = false;
        lf_http_resp_init(&r);
        rc = perform_ex(s, &c, &r, &unknown);
        lf_http_resp_free(&r);
        if (!rc || !unknown)
            return rc;
        int h = s3_head(s, bucket, key, &a);
        if (h == -ENOENT) {
            lf_info("DeleteObject %s/%s: the answer was lost; the object is gone", bucket, key);
            return 0;
        }
        bool same = !h && etag && etag[0] && lf_etag_same(a.etag, etag);
        if (!same || attempt >= s->retries) {
            lf_err("DeleteObject %s/%s: the answer was lost and the object is still there%s; "
                   "not deleting again", bucket, key,
                   h ? "" : same ? " (after every retry)"
                          : " (perhaps a newer version, written since)");
            atomic_fetch_add(&s->failures, 1);
            return h ? h : -EIO;
        }
        lf_info("DeleteObject %s/%s: the answer was lost and the version to delete is still "
                "there; sending it again", bucket, key);
        atomic_fetch_add(&s->nretries, 1);
        (void)backoff(s, attempt, NULL); /* not cancellable: always 0 */
    }
}

/* Sent again after a lost answer: the first may have started an upload
 * whose ID we never learn and so cannot abort. lakeFS offers no reliable
 * ListMultipartUploads to find it, and an upload never completed stores
 * nothing on the branch, so a retry costs at most an abandoned upload,
 * where not retrying would fail the close. */
static int s3_mpu_create(void *ctx, const char *bucket, const char *key,
                         const struct lf_put_meta *meta, char **upload_id)
{
    struct s3 *s = ctx;
    struct lf_buf body = LF_BUF_INIT;
    struct lf_http_resp r;
    struct meta_hdrs mh;
    struct lf_body empty = {.mem = "", .len = 0};
    struct call c = {.op = "CreateMultipartUpload", .method = "POST", .bucket = bucket,
                     .key = key, .body = &empty, .retry_ok = true, .out_buf = &body};
    add_query(&c, "uploads", NULL);
    if (!meta || !meta->content_type)
        add_header(&c, "content-type", "application/octet-stream");
    add_meta(&c, meta, &mh);
    lf_http_resp_init(&r);
    int rc = perform(s, &c, &r);
    if (!rc)
        rc = lf_xml_parse_upload_id(body.data, body.len, upload_id);
    lf_http_resp_free(&r);
    lf_buf_free(&body);
    return rc;
}

/* The MD5 of a body taken from the bytes as they are sent: valid when
 * every byte went out once, in order, in the last attempt. */
struct md5_tap {
    struct lf_hash *h;
    uint64_t next;  /* the offset the next byte must have */
    bool broken;    /* a jump other than back to 0: hash the file instead */
};

static void md5_tap(void *arg, const void *p, size_t n, uint64_t at)
{
    struct md5_tap *t = arg;
    if (at == 0 && t->next != 0) { /* a new attempt: start over */
        struct lf_hash_result drop;
        t->broken = t->h == NULL || lf_hash_final(t->h, &drop) != 0;
        t->next = 0;
    }
    if (t->broken || at != t->next || !t->h || lf_hash_update(t->h, p, n) != 0) {
        t->broken = true;
        return;
    }
    t->next += n;
}

/* No Content-MD5 on parts: lakeFS does not check it, so the check is the
 * ETag it answers (the MD5 of what it stored) against the MD5 of the bytes
 * that went out, hashed as they were read for sending: one pass over the
 * part instead of two, and no wait before its first byte. A part never
 * counts until that check held, and only checked parts are completed. */
static int s3_mpu_part(void *ctx, const char *bucket, const char *key, const char *upload_id,
                       int number, const struct lf_body *body, char etag_out[LF_ETAG_MAX])
{
    struct s3 *s = ctx;
    struct lf_http_resp r;
    char num[16], md5[LF_MD5_B64_SIZE], hex[LF_MD5_HEX_SIZE];
    struct md5_tap tap = {.h = lf_hash_new(LF_HASH_MD5)};
    struct call c = {.op = "UploadPart", .method = "PUT", .bucket = bucket, .key = key,
                     .body = body, .body_tap = md5_tap, .body_tap_arg = &tap, .retry_ok = true};
    snprintf(num, sizeof(num), "%d", number);
    add_query(&c, "partNumber", num);
    add_query(&c, "uploadId", upload_id);
    lf_http_resp_init(&r);
    int rc = perform(s, &c, &r);
    if (!rc) {
        lf_etag_copy(etag_out, r.etag);
        struct lf_hash_result res;
        if (!tap.broken && tap.h && tap.next == body->len && lf_hash_final(tap.h, &res) == 0)
            lf_hex_fill(hex, res.md5, LF_MD5_LEN);
        else if (!(rc = body_md5(body, md5, hex)))
            lf_dbg("UploadPart %d of %s: not sent in one pass; hashed from its file", number,
                   key);
        if (!rc)
            rc = check_etag("UploadPart", key, etag_out, hex);
    }
    lf_http_resp_free(&r);
    lf_hash_free(tap.h);
    return rc;
}

/* The ETag S3 gives a multipart object: the MD5 of the parts' MD5s, then
 * "-" and the number of parts. "" when a part's ETag is not an MD5. */
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

/* Whether the object at key has the ETag want (the one a complete of our
 * parts, or a PUT of our bytes, gives). */
static bool completed(struct s3 *s, const char *bucket, const char *key, const char *want,
                      char etag_out[LF_ETAG_MAX])
{
    struct lf_obj_attr a;
    if (!want[0] || s3_head(s, bucket, key, &a) != 0 || !lf_etag_same(a.etag, want))
        return false;
    memcpy(etag_out, a.etag, LF_ETAG_MAX);
    return true;
}

/* Complete is not idempotent: once it took effect the upload is gone and
 * a second one answers NoSuchUpload. So a lost answer (connection reset,
 * stall timer on a long complete, a 500 that says nothing) is resolved by
 * asking: a HEAD whose ETag is the multipart ETag of our parts means it
 * is stored; otherwise it is sent again. */
static int s3_mpu_complete(void *ctx, const char *bucket, const char *key,
                           const char *upload_id, const struct lf_part *parts, size_t nparts,
                           enum lf_put_cond cond, const struct lf_put_meta *meta,
                           char etag_out[LF_ETAG_MAX])
{
    (void)meta; /* S3's completion takes no metadata: the create's stays */
    struct s3 *s = ctx;
    struct lf_buf req = LF_BUF_INIT, body = LF_BUF_INIT;
    struct lf_http_resp r;
    char want[LF_ETAG_MAX];
    int rc = lf_xml_build_complete(&req, parts, nparts);
    if (rc)
        return rc;
    multipart_etag(parts, nparts, want);
    struct lf_body b = {.mem = req.data, .len = req.len};
    struct call c = {.op = "CompleteMultipartUpload", .method = "POST", .bucket = bucket,
                     .key = key, .body = &b, .out_buf = &body};
    add_query(&c, "uploadId", upload_id);
    add_header(&c, "content-type", "application/xml");
    if (cond == LF_PUT_IF_ABSENT)
        add_header(&c, "if-none-match", "*");
    bool lost = false, unresolved = false;
    for (unsigned attempt = 0;; attempt++) {
        bool unknown = false;
        lf_http_resp_init(&r);
        rc = perform_ex(s, &c, &r, &unknown);
        if (!rc)
            rc = lf_xml_parse_complete_result(body.data, body.len, etag_out);
        enum lf_store_err why = failure_kind(rc, r.status, NULL);
        lf_http_resp_free(&r);
        lost |= unknown;
        /* After a lost answer, NoSuchUpload (or, for a conditional
         * complete, PreconditionFailed) may be our own first attempt's
         * doing. */
        if (rc && (unknown || (lost && (rc == -ENOENT || rc == -EEXIST))) &&
            completed(s, bucket, key, want, etag_out)) {
            lf_info("CompleteMultipartUpload %s/%s: the answer was lost; the object is stored "
                    "(ETag %s)", bucket, key, want);
            rc = 0;
        }
        if (!rc || !unknown || attempt >= s->retries) {
            unresolved = rc && unknown;
            break;
        }
        if (!want[0])
            lf_warn("CompleteMultipartUpload %s/%s: the answer was lost and the parts' ETags "
                    "are not MD5s to check the object against; sending it again", bucket, key);
        count_retry(s, why);
        if ((rc = backoff(s, attempt, NULL)))
            break;
    }
    if (unresolved)
        atomic_fetch_add(&s->failures, 1);
    lf_buf_free(&req);
    lf_buf_free(&body);
    return rc;
}

static int s3_mpu_abort(void *ctx, const char *bucket, const char *key, const char *upload_id)
{
    struct s3 *s = ctx;
    struct lf_http_resp r;
    struct call c = {.op = "AbortMultipartUpload", .method = "DELETE", .bucket = bucket,
                     .key = key, .retry_ok = true};
    add_query(&c, "uploadId", upload_id);
    lf_http_resp_init(&r);
    int rc = perform(s, &c, &r);
    lf_http_resp_free(&r);
    return rc;
}

static void s3_destroy(void *ctx)
{
    struct s3 *s = ctx;
    lf_http_free(s->http);
    lf_sigv4_free(s->signer);
    pthread_rwlock_destroy(&s->signer_lock);
    pthread_mutex_destroy(&s->auth_lock);
    free(s->region);
    free(s->cred_source);
    free(s->origin);
    free(s->host);
    free(s->base_path);
    free(s);
}

static void s3_stats(void *ctx, struct lf_store_stats *out)
{
    struct s3 *s = ctx;
    for (unsigned i = 0; i < LF_OP_COUNT; i++)
        out->requests[i] = atomic_load(&s->by_op[i]);
    for (unsigned i = 0; i < LF_ERR_COUNT; i++) {
        out->errors[i] = atomic_load(&s->errs[i]);
        out->retries[i] = atomic_load(&s->retried[i]);
    }
    out->failures = atomic_load(&s->failures);
    out->bytes_in = atomic_load(&s->bytes_in);
    out->bytes_out = atomic_load(&s->bytes_out);
}

static const struct lf_store_ops S3_OPS = {
    .list_buckets = s3_list_buckets,
    .list = s3_list,
    .head = s3_head,
    .get = s3_get,
    .get_stream = s3_get_stream,
    .put = s3_put,
    .copy = s3_copy,
    .remove = s3_remove,
    .mpu_create = s3_mpu_create,
    .mpu_part = s3_mpu_part,
    .mpu_complete = s3_mpu_complete,
    .mpu_abort = s3_mpu_abort,
    .destroy = s3_destroy,
    .stats = s3_stats,
};

/* Splits "scheme://host[:port][/base]". */
static int split_endpoint(struct s3 *s, const char *ep)
{
    const char *p = strstr(ep, "://");
    if (!p || p == ep)
        return -EINVAL;
    const char *host = p + 3;
    const char *slash = strchr(host, '/');
    size_t hlen = slash ? (size_t)(slash - host) : strlen(host);
    if (hlen == 0)
        return -EINVAL;
    /* curl leaves the scheme's default port out of Host (http://h:80 sends
     * "Host: h"); the signature covers Host, so it must leave it out too,
     * and so must the direct GET path, which writes Host from the URL. */
    bool https = strncmp(ep, "https://", 8) == 0;
    const char *dflt = https ? ":443" : ":80";
    size_t dl = strlen(dflt);
    if (hlen > dl && strncmp(host + hlen - dl, dflt, dl) == 0)
        hlen -= dl;
    s->origin = strndup(ep, (size_t)(host - ep) + hlen);
    s->host = strndup(host, hlen);
    s->base_path = strdup(slash ? slash : "");
    if (!s->origin || !s->host || !s->base_path)
        return -ENOMEM;
    size_t bl = strlen(s->base_path);
    while (bl > 0 && s->base_path[bl - 1] == '/')
        s->base_path[--bl] = '\0';
    return 0;
}

struct lf_store *lf_s3_store_new(const struct lf_s3_opts *o)
{
    struct s3 *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    pthread_rwlock_init(&s->signer_lock, NULL);
    pthread_mutex_init(&s->auth_lock, NULL);
    /* Bodies are spliced from plain sockets only: over TLS every byte is
     * decrypted in our memory anyway. */
    s->ops = S3_OPS;
    if (strncmp(o->endpoint, "http://", 7) != 0)
        s->ops.get_stream = NULL;
    s->store.ops = &s->ops;
    s->store.ctx = s;
    s->retries = o->retries;
    s->backoff_ms = o->backoff_ms ? o->backoff_ms : 100;
    if (split_endpoint(s, o->endpoint)) {
        lf_err("endpoint '%s' is not a URL of the form http(s)://host[:port]", o->endpoint);
        goto fail;
    }
    struct lf_http_opts ho = {.max_conns = o->max_conns,
                              .connect_timeout_ms = o->connect_timeout_ms,
                              .stall_timeout_ms = o->stall_timeout_ms,
                              .ca_bundle = o->ca_bundle,
                              .insecure = o->insecure};
    s->http = lf_http_new(&ho);
    s->signer = lf_sigv4_new(o->access_key, o->secret_key, o->region, "s3");
    s->region = o->region ? strdup(o->region) : NULL;
    s->cred_source = strdup(o->cred_source ? o->cred_source : "the environment");
    s->reload = o->reload;
    s->reload_arg = o->reload_arg;
    if (!s->http || !s->signer || !s->region || !s->cred_source ||
        cred_digest(o->access_key, o->secret_key, s->cred_digest) != 0)
        goto fail;
    return &s->store;
fail:
    s3_destroy(s);
    return NULL;
}

void lf_s3_store_free(struct lf_store *store)
{
    if (store)
        s3_destroy(store->ctx);
}

void lf_s3_get_stats(struct lf_store *store, struct lf_s3_stats *out)
{
    struct s3 *s = store->ctx;
    out->requests = atomic_load(&s->requests);
    out->retries = atomic_load(&s->nretries);
    out->failures = atomic_load(&s->failures);
    out->bytes_in = atomic_load(&s->bytes_in);
    out->bytes_out = atomic_load(&s->bytes_out);
    out->refusals = atomic_load(&s->refusals);
    out->reloads = atomic_load(&s->reloads);
    out->clock_offset = (int64_t)atomic_load(&s->clock_offset);
}
