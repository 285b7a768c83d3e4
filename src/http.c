/* http: libcurl easy handles in a bounded pool.
 *
 * Handles are reset (not destroyed) between uses: curl_easy_reset keeps the
 * live connection and the DNS cache, which is the whole point of the pool.
 * Callbacks write straight into the caller's sink, so a ranged GET costs one
 * copy (socket -> destination buffer) inside this layer.
 */
#include "lakefuse/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lakefuse/log.h"

#define ERR_BODY_MAX (64 * 1024)

struct lf_http {
    struct lf_http_opts opts;
    char *ca_bundle;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    CURL **idle;        /* stack of idle handles */
    unsigned nidle;
    unsigned created;
};

/* Per-exchange state seen by the callbacks. */
struct xfer {
    const struct lf_http_req *req;
    struct lf_http_resp *resp;
    uint64_t sent;
    int overflow;
};

int lf_http_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void lf_http_global_cleanup(void) { curl_global_cleanup(); }

struct lf_http *lf_http_new(const struct lf_http_opts *opts)
{
    struct lf_http *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->opts = *opts;
    if (h->opts.max_conns == 0)
        h->opts.max_conns = 1;
    if (opts->ca_bundle) {
        h->ca_bundle = strdup(opts->ca_bundle);
        if (!h->ca_bundle)
            goto fail;
    }
    h->opts.ca_bundle = h->ca_bundle;
    h->idle = calloc(h->opts.max_conns, sizeof(*h->idle));
    if (!h->idle)
        goto fail;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->freed, NULL);
    return h;
fail:
    free(h->ca_bundle);
    free(h);
    return NULL;
}

void lf_http_free(struct lf_http *h)
{
    if (!h)
        return;
    for (unsigned i = 0; i < h->nidle; i++)
        curl_easy_cleanup(h->idle[i]);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->freed);
    free(h->idle);
    free(h->ca_bundle);
    free(h);
}

static CURL *pool_get(struct lf_http *h)
{
    CURL *c = NULL;
    pthread_mutex_lock(&h->lock);
    while (h->nidle == 0 && h->created >= h->opts.max_conns)
        pthread_cond_wait(&h->freed, &h->lock);
    if (h->nidle > 0) {
        c = h->idle[--h->nidle];
    } else {
        c = curl_easy_init();
        if (c)
            h->created++;
    }
    pthread_mutex_unlock(&h->lock);
    return c;
}

static void pool_put(struct lf_http *h, CURL *c, int broken)
{
    pthread_mutex_lock(&h->lock);
    if (broken) {
        /* A handle whose transfer died mid-way may hold a connection in an
         * unknown state; a fresh one costs a handshake and nothing else. */
        curl_easy_cleanup(c);
        h->created--;
    } else {
        h->idle[h->nidle++] = c;
    }
    pthread_cond_signal(&h->freed);
    pthread_mutex_unlock(&h->lock);
}

void lf_http_resp_init(struct lf_http_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->content_length = -1;
}

void lf_http_resp_reset(struct lf_http_resp *resp)
{
    struct lf_buf keep = resp->err_body;
    lf_buf_reset(&keep);
    lf_http_resp_init(resp);
    resp->err_body = keep;
}

void lf_http_resp_free(struct lf_http_resp *resp) { lf_buf_free(&resp->err_body); }

const char *lf_http_resp_meta(const struct lf_http_resp *resp, const char *name)
{
    for (unsigned i = 0; i < resp->nmeta; i++)
        if (strcasecmp(resp->meta[i].name, name) == 0)
            return resp->meta[i].value;
    return NULL;
}

/* Copies a header value without surrounding white space, truncating to
 * the destination. */
static void copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int header_is(const char *line, size_t n, const char *name, size_t *vo)
{
    size_t len = strlen(name);
    if (n <= len || line[len] != ':' || strncasecmp(line, name, len) != 0)
        return 0;
    *vo = len + 1;
    return 1;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *arg)
{
    struct xfer *x = arg;
    struct lf_http_resp *r = x->resp;
    size_t n = size * nitems, vo;
    char tmp[64];

    if (n > 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new status line (after "100 Continue" or a redirect) starts a
         * new set of headers. */
        struct lf_buf keep = r->err_body;
        lf_http_resp_init(r);
        r->err_body = keep;
        const char *sp = memchr(line, ' ', n);
        if (sp)
            r->status = strtol(sp + 1, NULL, 10);
    } else if (header_is(line, n, "etag", &vo)) {
        copy_value(r->etag, sizeof(r->etag), line + vo, n - vo);
    } else if (header_is(line, n, "content-type", &vo)) {
        copy_value(r->content_type, sizeof(r->content_type), line + vo, n - vo);
    } else if (header_is(line, n, "content-range", &vo)) {
        copy_value(r->content_range, sizeof(r->content_range), line + vo, n - vo);
    } else if (header_is(line, n, "x-amz-request-id", &vo)) {
        copy_value(r->request_id, sizeof(r->request_id), line + vo, n - vo);
    } else if (header_is(line, n, "content-length", &vo)) {
        copy_value(tmp, sizeof(tmp), line + vo, n - vo);
        char *end;
        long long v = strtoll(tmp, &end, 10);
        r->content_length = (*end || v < 0) ? -1 : v;
    } else if (header_is(line, n, "last-modified", &vo)) {
        copy_value(tmp, sizeof(tmp), line + vo, n - vo);
        time_t t = curl_getdate(tmp, NULL);
        r->last_modified = t < 0 ? 0 : t;
    } else if (n > 11 && strncasecmp(line, "x-amz-meta-", 11) == 0 &&
               r->nmeta < LF_HTTP_MAX_META) {
        const char *colon = memchr(line, ':', n);
        size_t nl = colon ? (size_t)(colon - line) - 11 : 0;
        if (colon && nl > 0 && nl < sizeof(r->meta[0].name)) {
            struct lf_http_meta *m = &r->meta[r->nmeta++];
            for (size_t i = 0; i < nl; i++) {
                char c = line[11 + i];
                m->name[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
            }
            m->name[nl] = '\0';
            copy_value(m->value, sizeof(m->value), colon + 1,
                       n - (size_t)(colon + 1 - line));
        }
    }
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    struct lf_http_resp *r = x->resp;
    const struct lf_http_req *q = x->req;
    size_t n = size * nmemb;

    if (r->status >= 300) {
        size_t room = r->err_body.len < ERR_BODY_MAX ? ERR_BODY_MAX - r->err_body.len : 0;
        if (lf_buf_append(&r->err_body, data, n < room ? n : room))
            return 0;
        return n;
    }
    if (q->outv) {
        size_t pos = r->body_len, done = 0;
        for (int i = 0; i < q->outvcnt && done < n; i++) {
            if (pos >= q->outv[i].iov_len) {
                pos -= q->outv[i].iov_len;
                continue;
            }
            size_t k = q->outv[i].iov_len - pos;
            if (k > n - done)
                k = n - done;
            memcpy((char *)q->outv[i].iov_base + pos, data + done, k);
            done += k;
            pos = 0;
        }
        if (done < n) {
            x->overflow = 1;
            return 0;
        }
    } else if (q->out) {
        if (n > q->out_cap - r->body_len) {
            x->overflow = 1;
            return 0;
        }
        memcpy((char *)q->out + r->body_len, data, n);
    } else if (q->out_buf) {
        if (q->out_buf->len + n > q->out_max) {
            x->overflow = 1;
            return 0;
        }
        if (lf_buf_append(q->out_buf, data, n))
            return 0;
    }
    r->body_len += n;
    return n;
}

static size_t on_read(char *dst, size_t size, size_t nitems, void *arg)
{
    struct xfer *x = arg;
    const struct lf_http_req *q = x->req;
    size_t want = size * nitems;
    uint64_t left = q->body_len - x->sent;

    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (q->body) {
        memcpy(dst, (const char *)q->body + x->sent, want);
    } else {
        ssize_t got;
        do {
            got = pread(q->body_fd, dst, want, q->body_off + (off_t)x->sent);
        } while (got < 0 && errno == EINTR);
        if (got <= 0) {
            lf_err("http: reading upload body failed: %s",
                   got < 0 ? strerror(errno) : "file shrank during upload");
            return CURL_READFUNC_ABORT;
        }
        want = (size_t)got;
    }
    x->sent += want;
    return want;
}

static int on_seek(void *arg, curl_off_t offset, int origin)
{
    struct xfer *x = arg;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->req->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    x->sent = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                       curl_off_t un)
{
    struct xfer *x = arg;
    return x->req->cancel(x->req->cancel_arg) ? 1 : 0;
}

static int map_curl_error(CURLcode rc, const struct xfer *x)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return -ECONNRESET;
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
        return -EPROTO;
    case CURLE_ABORTED_BY_CALLBACK:
        return -EINTR;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        return -EKEYREJECTED;
    case CURLE_SSL_CONNECT_ERROR:
        return -ECONNRESET;
    case CURLE_WRITE_ERROR:
        return x->overflow ? -EIO : -ENOMEM;
    default:
        return -EIO;
    }
}

static void set_method(CURL *c, const struct lf_http_req *q)
{
    const char *m = q->method;
    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
    } else if (strcmp(m, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    } else if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m);
    }
}

int lf_http_perform(struct lf_http *h, const struct lf_http_req *req,
                    struct lf_http_resp *resp)
{
    struct curl_slist *hdrs = NULL, *tmp;
    struct xfer x = {.req = req, .resp = resp};
    char errbuf[CURL_ERROR_SIZE] = "";
    int rc = 0;

    lf_http_resp_reset(resp);
    CURL *c = pool_get(h);
    if (!c)
        return -ENOMEM;
    curl_easy_reset(c);

    for (size_t i = 0; i < req->nheaders; i++) {
        tmp = curl_slist_append(hdrs, req->headers[i]);
        if (!tmp) {
            rc = -ENOMEM;
            goto out;
        }
        hdrs = tmp;
    }
    /* The gateway answers fast; waiting for "100 Continue" only adds a
     * round trip to every upload. */
    static const char *const fixed[] = {"Expect:", "Accept:"};
    for (size_t i = 0; i < 2; i++) {
        tmp = curl_slist_append(hdrs, fixed[i]);
        if (!tmp) {
            rc = -ENOMEM;
            goto out;
        }
        hdrs = tmp;
    }

    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &x);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, &x);
    if (req->cancel) {
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    if (h->opts.connect_timeout_ms > 0)
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->opts.connect_timeout_ms);
    if (h->opts.stall_timeout_ms > 0) {
        long secs = (h->opts.stall_timeout_ms + 999) / 1000;
        /* Under 1 KiB/s for the whole window is a stall too: a server that
         * trickles a byte at a time must not hold a request forever. */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, secs);
    }
    if (h->opts.request_timeout_ms > 0)
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->opts.request_timeout_ms);
    if (h->opts.ca_bundle)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->opts.ca_bundle);
    if (h->opts.insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    set_method(c, req);

    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        rc = map_curl_error(cc, &x);
        snprintf(resp->errmsg, sizeof(resp->errmsg), "%s",
                 errbuf[0] ? errbuf : curl_easy_strerror(cc));
        if (x.overflow)
            snprintf(resp->errmsg, sizeof(resp->errmsg),
                     "answer body larger than the %zu bytes asked for",
                     req->out ? req->out_cap : req->out_max);
    }
out:
    curl_slist_free_all(hdrs);
    pool_put(h, c, rc != 0);
    return rc;
}
