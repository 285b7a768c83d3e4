/* http: a bounded pool of connections, with libcurl for every exchange
 * but one kind.
 *
 * libcurl handles are reset (not destroyed) between uses: curl_easy_reset
 * keeps the live connection and the DNS cache, which is the whole point of
 * the pool. libcurl hands a body over from a buffer of its own, which costs
 * a copy into the caller's sink; for the data of a stream that copy is a
 * large share of the daemon's CPU. So a GET over plain HTTP whose body goes
 * into an iovec (the ranged GETs of readahead) takes a direct path: the
 * request is written and the answer parsed here, and the body is read with
 * readv straight into the caller's buffers. HTTPS, uploads and listings
 * stay with libcurl, and so does any answer the direct path cannot take
 * (no Content-Length, chunked): it is asked again through libcurl, and the
 * direct path is not used again.
 */
#include "lakefuse/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lakefuse/log.h"

#define ERR_BODY_MAX (64 * 1024)

/* One slot of the pool: whichever of the two transports it has used. */
struct conn {
    CURL *curl; /* NULL until an exchange needs libcurl */
    int fd;     /* a kept-alive connection of the direct path, or -1 */
};

struct lf_http {
    struct lf_http_opts opts;
    char *ca_bundle;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    struct conn **idle; /* stack of idle slots */
    unsigned nidle;
    unsigned created;
    int direct_off;     /* the server gave an answer the direct path cannot read */
    unsigned held;      /* slots kept by open bodies (lf_http_open) */
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
    for (unsigned i = 0; i < h->nidle; i++) {
        if (h->idle[i]->curl)
            curl_easy_cleanup(h->idle[i]->curl);
        if (h->idle[i]->fd >= 0)
            close(h->idle[i]->fd);
        free(h->idle[i]);
    }
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->freed);
    free(h->idle);
    free(h->ca_bundle);
    free(h);
}

static struct conn *pool_get(struct lf_http *h)
{
    struct conn *c = NULL;
    pthread_mutex_lock(&h->lock);
    while (h->nidle == 0 && h->created >= h->opts.max_conns)
        pthread_cond_wait(&h->freed, &h->lock);
    if (h->nidle > 0) {
        c = h->idle[--h->nidle];
    } else if ((c = calloc(1, sizeof(*c)))) {
        c->fd = -1;
        h->created++;
    }
    pthread_mutex_unlock(&h->lock);
    return c;
}

static void pool_put(struct lf_http *h, struct conn *c)
{
    pthread_mutex_lock(&h->lock);
    h->idle[h->nidle++] = c;
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
    } else if (header_is(line, n, "date", &vo)) {
        copy_value(tmp, sizeof(tmp), line + vo, n - vo);
        time_t t = curl_getdate(tmp, NULL);
        r->date = t < 0 ? 0 : t;
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
    if (q->body_tap)
        q->body_tap(q->body_tap_arg, dst, want, x->sent);
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
        return LF_HTTP_ETLS;
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
        /* A DELETE with a body (lakeFS's abort of a presigned multipart
         * upload takes JSON): sent as a POST would be, under its name. */
        if (q->body_len > 0) {
            curl_easy_setopt(c, CURLOPT_POST, 1L);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
        }
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m);
    }
}

/* ------------------------------------------------------------ direct path */

#define DIRECT_FALLBACK 1   /* not an errno: ask again through libcurl */
#define HEAD_MAX (16 * 1024)
#define LOWAT_MAX (1 << 20) /* a FUSE read's largest; SO_RCVLOWAT is capped at half the buffer */
#define SLICE_MS 100        /* how often a wait looks at cancel and clocks */
#define WHY_LEN 256         /* the size of lf_http_resp.errmsg */

_Static_assert(sizeof(((struct lf_http_resp *)0)->errmsg) == WHY_LEN, "errmsg size");

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Clocks of one exchange: the whole-request deadline, and the stall rule
 * libcurl applies on the other path (under 1 KiB/s over the stall window
 * fails, which also covers a server that sends nothing). `why` receives
 * the reason of a failure, for the log line. */
struct dclock {
    const struct lf_http *h;
    lf_http_cancel_fn cancel;
    void *cancel_arg;
    char *why;
    int64_t deadline;   /* 0: none */
    int64_t win_start;
    uint64_t win_bytes, bytes;
};

static void dclock_start(struct dclock *k, const struct lf_http *h, lf_http_cancel_fn cancel,
                         void *cancel_arg, bool whole_request, char *why)
{
    *k = (struct dclock){.h = h, .cancel = cancel, .cancel_arg = cancel_arg, .why = why,
                         .win_start = now_ms()};
    if (whole_request && h->opts.request_timeout_ms > 0)
        k->deadline = k->win_start + h->opts.request_timeout_ms;
}

static int dclock_check(struct dclock *k)
{
    int64_t now = now_ms();
    if (k->cancel && k->cancel(k->cancel_arg))
        return -EINTR;
    if (k->deadline && now >= k->deadline) {
        snprintf(k->why, WHY_LEN, "request took longer than %ld ms",
                 k->h->opts.request_timeout_ms);
        return -ETIMEDOUT;
    }
    long stall = k->h->opts.stall_timeout_ms;
    if (stall > 0 && now - k->win_start >= stall) {
        if (k->bytes - k->win_bytes < 1024u * (uint64_t)((stall + 999) / 1000)) {
            snprintf(k->why, WHY_LEN, "under 1 KiB/s for %ld ms (%llu bytes in)", stall,
                     (unsigned long long)(k->bytes - k->win_bytes));
            return -ETIMEDOUT;
        }
        k->win_start = now;
        k->win_bytes = k->bytes;
    }
    return 0;
}

/* Waits until fd is ready for `events`, a slice at a time. */
static int dwait(int fd, short events, struct dclock *k)
{
    struct pollfd p = {.fd = fd, .events = events};
    int rc;
    while ((rc = poll(&p, 1, SLICE_MS)) == 0 || (rc < 0 && errno == EINTR)) {
        int e = dclock_check(k);
        if (e)
            return e;
    }
    if (rc < 0)
        return -errno;
    return dclock_check(k);
}

static int sock_errno(int e)
{
    switch (e) {
    case ECONNREFUSED:
    case ETIMEDOUT:
    case EHOSTUNREACH:
        return -e;
    case ENETUNREACH:
        return -EHOSTUNREACH;
    case EPIPE:
    case ECONNRESET:
    case ECONNABORTED:
        return -ECONNRESET;
    default:
        return -EIO;
    }
}

/* "http://authority/path" -> host, port, authority and the path. */
static int split_url(const char *url, char *host, size_t hcap, char *port, size_t pcap,
                     char *auth, size_t acap, const char **path)
{
    if (strncmp(url, "http://", 7) != 0)
        return -EINVAL;
    const char *a = url + 7, *slash = strchr(a, '/');
    size_t alen = slash ? (size_t)(slash - a) : strlen(a);
    if (alen == 0 || alen >= acap)
        return -EINVAL;
    memcpy(auth, a, alen);
    auth[alen] = '\0';
    *path = slash ? slash : "/";
    const char *hs = auth, *he, *colon;
    if (*auth == '[') { /* [v6]:port */
        hs = auth + 1;
        if (!(he = strchr(hs, ']')))
            return -EINVAL;
        colon = he[1] == ':' ? he + 1 : NULL;
    } else {
        colon = strrchr(auth, ':');
        he = colon ? colon : auth + alen;
    }
    if ((size_t)(he - hs) >= hcap || he == hs)
        return -EINVAL;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    snprintf(port, pcap, "%s", colon && colon[1] ? colon + 1 : "80");
    return 0;
}

static int dconnect(const char *host, const char *port, struct dclock *k)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0) {
        snprintf(k->why, WHY_LEN, "cannot resolve %.100s: %s", host, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int fd = -1, rc = -ECONNREFUSED;
    long cto = k->h->opts.connect_timeout_ms > 0 ? k->h->opts.connect_timeout_ms : 300000;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, p->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        if (connect(fd, p->ai_addr, p->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            int64_t end = now_ms() + cto;
            int pr = 0;
            while (now_ms() < end && (pr = poll(&pf, 1, SLICE_MS)) <= 0) {
                if (pr < 0 && errno != EINTR)
                    break;
                if (k->cancel && k->cancel(k->cancel_arg)) {
                    close(fd);
                    freeaddrinfo(ai);
                    return -EINTR;
                }
            }
            int err = 0;
            socklen_t el = sizeof(err);
            if (pr > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
                break;
            rc = pr > 0 ? sock_errno(err) : -ETIMEDOUT;
        } else {
            rc = sock_errno(errno);
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        snprintf(k->why, WHY_LEN, "cannot connect to %.100s port %.15s: %s", host, port,
                 strerror(-rc));
    return fd >= 0 ? fd : rc;
}

static int send_all(int fd, const char *p, size_t n, struct dclock *k)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            int rc = dwait(fd, POLLOUT, k);
            if (rc)
                return rc;
        } else {
            snprintf(k->why, WHY_LEN, "sending the request: %s", strerror(errno));
            return sock_errno(errno);
        }
    }
    return 0;
}

/* After a receive that got nothing: waits for more, or says why not. */
static int recv_wait(int fd, struct dclock *k)
{
    if (errno != EAGAIN && errno != EINTR) {
        snprintf(k->why, WHY_LEN, "receiving: %s", strerror(errno));
        return sock_errno(errno);
    }
    return dwait(fd, POLLIN, k);
}

/* Reads into the iovec [pos, pos + n) of the sink (or into `scratch` when
 * vec is NULL), retrying until n bytes arrived. */
static int recv_into(int fd, const struct iovec *vec, int cnt, size_t pos, size_t n,
                     char *scratch, size_t scap, struct dclock *k, size_t *done)
{
    *done = 0;
    while (*done < n) {
        struct iovec iov[64];
        int ni = 0;
        size_t want = n - *done, at = pos + *done;
        if (!vec) {
            iov[ni].iov_base = scratch;
            iov[ni++].iov_len = want < scap ? want : scap;
        }
        for (int i = 0; vec && i < cnt && ni < 64 && want > 0; i++) {
            if (at >= vec[i].iov_len) {
                at -= vec[i].iov_len;
                continue;
            }
            size_t len = vec[i].iov_len - at;
            if (len > want)
                len = want;
            iov[ni].iov_base = (char *)vec[i].iov_base + at;
            iov[ni++].iov_len = len;
            want -= len;
            at = 0;
        }
        ssize_t r = readv(fd, iov, ni);
        if (r > 0) {
            *done += (size_t)r;
            k->bytes += (uint64_t)r;
            continue;
        }
        if (r == 0) {
            snprintf(k->why, WHY_LEN, "connection closed after %zu of %zu body bytes", *done, n);
            return -EPROTO;
        }
        int rc = recv_wait(fd, k);
        if (rc)
            return rc;
    }
    return 0;
}

/* Reads the status line and headers into hb (NUL-terminated); *hlen is
 * where the body starts, *have how much of hb holds data. */
static int recv_head(int fd, char *hb, size_t *hlen, size_t *have, struct dclock *k)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, hb + n, HEAD_MAX - 1 - n, 0);
        if (r > 0) {
            size_t from = n > 3 ? n - 3 : 0;
            n += (size_t)r;
            k->bytes += (uint64_t)r;
            hb[n] = '\0';
            char *end = strstr(hb + from, "\r\n\r\n");
            if (end) {
                *hlen = (size_t)(end + 4 - hb);
                *have = n;
                return 0;
            }
            if (n >= HEAD_MAX - 1) {
                snprintf(k->why, WHY_LEN, "answer headers over %d bytes", HEAD_MAX);
                return -EPROTO;
            }
            continue;
        }
        if (r == 0) {
            snprintf(k->why, WHY_LEN, "connection closed %s",
                     n ? "in the middle of the headers" : "before an answer");
            return n ? -EPROTO : -ECONNRESET;
        }
        int rc = recv_wait(fd, k);
        if (rc)
            return rc;
    }
}

/* An answer's head as the direct path read it. */
struct dhead {
    char buf[HEAD_MAX];
    size_t hlen, have;  /* the head's length; bytes of buf that hold data */
    size_t body;        /* Content-Length (0 for a 204 or 304) */
    bool close_after;   /* the connection cannot carry another request */
};

/* Sends the GET on connection *fd (opened here when -1) and reads the
 * answer's head into resp and d. Any failure closes the connection. */
static int direct_head(struct lf_http *h, int *fd, const struct lf_http_req *req,
                       struct lf_http_resp *resp, struct dclock *k, bool *reused,
                       struct dhead *d)
{
    char host[256], port[16], auth[300];
    const char *path;
    int rc;
    struct xfer x = {.req = req, .resp = resp};

    if (split_url(req->url, host, sizeof(host), port, sizeof(port), auth, sizeof(auth), &path)) {
        snprintf(k->why, WHY_LEN, "a URL it cannot split");
        return DIRECT_FALLBACK;
    }
    *reused = *fd >= 0;
    if (*fd < 0 && (*fd = dconnect(host, port, k)) < 0) {
        rc = *fd;
        *fd = -1;
        return rc;
    }

    /* The request: what libcurl would send, less its Accept. */
    char *head = d->buf;
    int n = snprintf(head, HEAD_MAX, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, auth);
    for (size_t i = 0; i < req->nheaders && n > 0 && n < HEAD_MAX; i++)
        n += snprintf(head + n, HEAD_MAX - (size_t)n, "%s\r\n", req->headers[i]);
    if (n < 0 || n + 3 > HEAD_MAX) {
        snprintf(k->why, WHY_LEN, "request headers over %d bytes", HEAD_MAX);
        rc = DIRECT_FALLBACK;
        goto fail;
    }
    memcpy(head + n, "\r\n", 3);
    if ((rc = send_all(*fd, head, (size_t)n + 2, k)))
        goto fail;

    if ((rc = recv_head(*fd, head, &d->hlen, &d->have, k)))
        goto fail;
    bool chunked = false;
    d->close_after = false;
    for (char *line = head; line < head + d->hlen - 2;) {
        char *eol = strstr(line, "\r\n");
        size_t len = (size_t)(eol - line);
        if (line == head && (len < 12 || strncmp(line, "HTTP/1.", 7) != 0)) {
            snprintf(k->why, WHY_LEN, "not an HTTP/1.x answer");
            rc = -EPROTO;
            goto fail;
        }
        on_header(line, 1, len + 2, &x);
        if (strncasecmp(line, "connection:", 11) == 0 && strcasestr(line + 11, "close"))
            d->close_after = true;
        if (strncasecmp(line, "transfer-encoding:", 18) == 0)
            chunked = true;
        line = eol + 2;
    }
    if (strncmp(head, "HTTP/1.0", 8) == 0)
        d->close_after = true; /* no keep-alive unless asked for; we did not ask */
    if (resp->status < 200 || chunked || (resp->content_length < 0 && resp->status != 204 &&
                                          resp->status != 304)) {
        snprintf(k->why, WHY_LEN, "an answer with %s",
                 chunked ? "a chunked body" : resp->status < 200 ? "an interim status"
                                                                : "no Content-Length");
        rc = DIRECT_FALLBACK;
        goto fail;
    }
    d->body = resp->content_length > 0 ? (size_t)resp->content_length : 0;
    if (d->have - d->hlen > d->body) {
        snprintf(k->why, WHY_LEN, "more bytes than Content-Length");
        rc = -EPROTO;
        goto fail;
    }
    return 0;
fail:
    close(*fd);
    *fd = -1;
    return rc;
}

/* direct_head, once more on a new connection when a kept-alive one turns
 * out to be closed: that fails before any answer and says nothing about
 * the request, so libcurl asks again too. */
static int direct_start(struct lf_http *h, struct conn *c, const struct lf_http_req *req,
                        struct lf_http_resp *resp, struct dclock *k, struct dhead *d)
{
    bool reused;
    int rc = direct_head(h, &c->fd, req, resp, k, &reused, d);
    if (reused && (rc == -ECONNRESET || rc == -EPROTO) && resp->status == 0) {
        lf_http_resp_reset(resp);
        rc = direct_head(h, &c->fd, req, resp, k, &reused, d);
    }
    if (rc == DIRECT_FALLBACK && !__atomic_exchange_n(&h->direct_off, 1, __ATOMIC_RELAXED))
        lf_info("http: data GETs go through libcurl from now on (the direct path met %s)",
                resp->errmsg);
    return rc;
}

/* The S3 error document of an answer with status >= 300: kept up to
 * ERR_BODY_MAX, the rest read and dropped so the connection stays usable. */
static int recv_err_body(int fd, const struct dhead *d, struct lf_http_resp *resp,
                         struct dclock *k)
{
    char scratch[4096];
    size_t early = d->have - d->hlen, got;
    if (lf_buf_append(&resp->err_body, d->buf + d->hlen, early))
        return -ENOMEM;
    for (size_t left = d->body - early; left > 0; left -= got) {
        size_t step = left < sizeof(scratch) ? left : sizeof(scratch);
        int rc = recv_into(fd, NULL, 0, 0, step, scratch, sizeof(scratch), k, &got);
        if (rc)
            return rc;
        size_t room = resp->err_body.len < ERR_BODY_MAX ? ERR_BODY_MAX - resp->err_body.len : 0;
        if (room && lf_buf_append(&resp->err_body, scratch, got < room ? got : room))
            return -ENOMEM;
    }
    return 0;
}

static int direct_get(struct lf_http *h, struct conn *c, const struct lf_http_req *req,
                      struct lf_http_resp *resp)
{
    struct dclock k;
    struct dhead d;
    dclock_start(&k, h, req->cancel, req->cancel_arg, true, resp->errmsg);
    int rc = direct_start(h, c, req, resp, &k, &d);
    if (rc)
        return rc;
    size_t early = d.have - d.hlen, got;
    if (resp->status >= 300) {
        rc = recv_err_body(c->fd, &d, resp, &k);
    } else {
        size_t cap = 0;
        for (int i = 0; i < req->outvcnt; i++)
            cap += req->outv[i].iov_len;
        if (d.body > cap) {
            snprintf(resp->errmsg, WHY_LEN, "answer body larger than the %zu bytes asked for",
                     cap);
            rc = -EIO;
        }
        /* The few body bytes read with the headers take one small copy;
         * the rest lands where it belongs. */
        for (size_t i = 0, off = 0; !rc && off < early; i++) {
            size_t part = req->outv[i].iov_len < early - off ? req->outv[i].iov_len : early - off;
            memcpy(req->outv[i].iov_base, d.buf + d.hlen + off, part);
            off += part;
        }
        if (!rc)
            rc = recv_into(c->fd, req->outv, req->outvcnt, early, d.body - early, NULL, 0, &k,
                           &got);
        if (!rc)
            resp->body_len = d.body;
    }
    if (rc || d.close_after) {
        close(c->fd);
        c->fd = -1;
    }
    return rc;
}

/* ------------------------------------------------------------ open bodies */

struct lf_http_body {
    struct lf_http *h;
    struct conn *slot;
    char *early;            /* body bytes that came with the head */
    size_t early_len, early_pos;
    uint64_t left;          /* body bytes not moved yet */
    bool close_after;
    int lowat;              /* SO_RCVLOWAT this body set on the socket; 0: none */
    char why[WHY_LEN];
};

int lf_http_open(struct lf_http *h, const struct lf_http_req *req, struct lf_http_resp *resp,
                 struct lf_http_body **out)
{
    *out = NULL;
    lf_http_resp_reset(resp);
    if (strcmp(req->method, "GET") != 0 || strncmp(req->url, "http://", 7) != 0 ||
        __atomic_load_n(&h->direct_off, __ATOMIC_RELAXED))
        return -EOPNOTSUPP;
    /* An open body keeps its connection for as long as its reader takes:
     * at most half the pool, so that other requests always find one. */
    pthread_mutex_lock(&h->lock);
    bool room = h->held < h->opts.max_conns / 2;
    if (room)
        h->held++;
    pthread_mutex_unlock(&h->lock);
    if (!room)
        return -EBUSY;

    struct lf_http_body *b = NULL;
    struct dhead *d = malloc(sizeof(*d));
    struct conn *slot = d ? pool_get(h) : NULL;
    struct dclock k;
    int rc = -ENOMEM;
    if (!slot)
        goto out;
    dclock_start(&k, h, req->cancel, req->cancel_arg, true, resp->errmsg);
    rc = direct_start(h, slot, req, resp, &k, d);
    if (rc == DIRECT_FALLBACK)
        rc = -EOPNOTSUPP;
    if (rc)
        goto out;
    if (resp->status >= 300) {
        if ((rc = recv_err_body(slot->fd, d, resp, &k)) || d->close_after) {
            close(slot->fd);
            slot->fd = -1;
        }
        goto out;
    }
    size_t early = d->have - d->hlen;
    if (!(b = calloc(1, sizeof(*b))) || (early && !(b->early = malloc(early)))) {
        free(b);
        b = NULL;
        close(slot->fd);
        slot->fd = -1;
        rc = -ENOMEM;
        goto out;
    }
    if (early)
        memcpy(b->early, d->buf + d->hlen, early);
    b->h = h;
    b->slot = slot;
    b->early_len = early;
    b->left = d->body;
    b->close_after = d->close_after;
    slot = NULL;
    *out = b;
out:
    free(d);
    if (slot)
        pool_put(h, slot);
    if (!*out) { /* whatever failed, the room taken above goes back */
        pthread_mutex_lock(&h->lock);
        h->held--;
        pthread_mutex_unlock(&h->lock);
    }
    return rc;
}

uint64_t lf_http_body_left(const struct lf_http_body *b) { return b->left; }

const char *lf_http_body_why(const struct lf_http_body *b) { return b->why; }

int lf_http_body_splice(struct lf_http_body *b, int pipe_fd, size_t n, lf_http_cancel_fn cancel,
                        void *cancel_arg, size_t *moved)
{
    *moved = 0;
    if (n > b->left)
        return -EINVAL;
    struct dclock k;
    dclock_start(&k, b->h, cancel, cancel_arg, false, b->why);
    while (*moved < n && b->early_pos < b->early_len) {
        size_t m = b->early_len - b->early_pos < n - *moved ? b->early_len - b->early_pos
                                                          : n - *moved;
        ssize_t w = write(pipe_fd, b->early + b->early_pos, m);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(b->why, WHY_LEN, "the pipe took no more (%s)",
                     w < 0 ? strerror(errno) : "full");
            return w < 0 && errno != EAGAIN ? -errno : -ENOBUFS;
        }
        b->early_pos += (size_t)w;
        b->left -= (uint64_t)w;
        *moved += (size_t)w;
    }
    int fd = b->slot->fd;
    while (*moved < n) {
        ssize_t r = splice(fd, NULL, pipe_fd, NULL, n - *moved, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (r > 0) {
            b->left -= (uint64_t)r;
            *moved += (size_t)r;
            k.bytes += (uint64_t)r;
            continue;
        }
        if (r == 0) {
            snprintf(b->why, WHY_LEN, "connection closed with %llu body bytes to come",
                     (unsigned long long)b->left);
            return -EPROTO;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            snprintf(b->why, WHY_LEN, "receiving: %s", strerror(errno));
            return sock_errno(errno);
        }
        /* Nothing to read, or no room in the pipe. Only we drain the
         * pipe, so a full one will not empty by waiting. */
        struct pollfd p = {.fd = pipe_fd, .events = POLLOUT};
        if (poll(&p, 1, 0) == 0) {
            snprintf(b->why, WHY_LEN, "the pipe filled with %zu of %zu bytes", *moved, n);
            return -ENOBUFS;
        }
        /* Wake once all the caller asked for is in (or a slice has
         * passed: the clocks look, and the splice takes what came).
         * Woken at every segment instead, this thread and the sender
         * trade the CPUs 64 KiB at a time: 6% of a cold sequential read
         * at 0 ms on two CPUs (docs/benchmarks.md). */
        size_t rest = n - *moved;
        int lowat = rest > LOWAT_MAX ? LOWAT_MAX : (int)rest;
        if (lowat != b->lowat &&
            setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) == 0)
            b->lowat = lowat;
        struct pollfd s = {.fd = fd, .events = POLLIN};
        if (poll(&s, 1, SLICE_MS) < 0 && errno != EINTR)
            return -errno;
        int rc = dclock_check(&k);
        if (rc)
            return rc;
    }
    return 0;
}

void lf_http_body_close(struct lf_http_body *b)
{
    if (!b)
        return;
    struct lf_http *h = b->h;
    if (b->left > 0 || b->close_after) {
        /* Unread bytes would be taken for the next answer. */
        close(b->slot->fd);
        b->slot->fd = -1;
    } else if (b->lowat > 1 &&
               setsockopt(b->slot->fd, SOL_SOCKET, SO_RCVLOWAT, &(int){1}, sizeof(int)) != 0) {
        /* The next answer's head would wait for that many bytes. */
        close(b->slot->fd);
        b->slot->fd = -1;
    }
    pool_put(h, b->slot);
    pthread_mutex_lock(&h->lock);
    h->held--;
    pthread_mutex_unlock(&h->lock);
    free(b->early);
    free(b);
}

int lf_http_perform(struct lf_http *h, const struct lf_http_req *req,
                    struct lf_http_resp *resp)
{
    struct curl_slist *hdrs = NULL, *tmp;
    struct xfer x = {.req = req, .resp = resp};
    char errbuf[CURL_ERROR_SIZE] = "";
    int rc = 0;

    lf_http_resp_reset(resp);
    struct conn *slot = pool_get(h);
    if (!slot)
        return -ENOMEM;
    if (req->outv && strcmp(req->method, "GET") == 0 && strncmp(req->url, "http://", 7) == 0 &&
        !__atomic_load_n(&h->direct_off, __ATOMIC_RELAXED)) {
        rc = direct_get(h, slot, req, resp);
        if (rc != DIRECT_FALLBACK) {
            pool_put(h, slot);
            return rc;
        }
        lf_http_resp_reset(resp);
        rc = 0;
    }
    if (!slot->curl && !(slot->curl = curl_easy_init())) {
        pool_put(h, slot);
        return -ENOMEM;
    }
    CURL *c = slot->curl;
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
    if (req->fresh_connect)
        curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
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
    if (rc != 0) {
        /* A handle whose transfer died mid-way may hold a connection in
         * an unknown state; a fresh one costs a handshake and nothing else. */
        curl_easy_cleanup(c);
        slot->curl = NULL;
    }
    pool_put(h, slot);
    return rc;
}
