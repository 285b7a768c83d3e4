/* http's direct path (plain-HTTP GETs read straight into an iovec) against
 * a scripted server on 127.0.0.1 in this process: bytes, statuses, kept
 * and closed connections, the fallback to libcurl, every way an answer
 * can go wrong (short, too long, stalled, cancelled, refused), and open
 * bodies spliced into a pipe. */
#include "check.h"
#include "scripted.h"
#include "lakefuse/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY_LEN (300 * 1024 + 17)

enum mode {
    M_RANGE,        /* 206 with Content-Length, header and first bytes in one write */
    M_CLOSE,        /* the same with Connection: close */
    M_NOT_FOUND,    /* 404 with an S3 error document */
    M_CHUNKED,      /* chunked body: the direct path hands over to libcurl */
    M_SHORT,        /* closes half way through the body */
    M_LONG,         /* a body longer than asked for */
    M_STALL,        /* headers, then silence until the client leaves */
    M_IDLE_CLOSE,   /* answers one request per connection without saying so */
    M_NOT_TLS,      /* a plain-HTTP server meeting a TLS handshake: 400 and close */
    M_HALVES,       /* 206, half the body, the rest once the client has waited */
};

static struct {
    enum mode mode;
    int conns, reqs;
    bool rest_asked;        /* M_HALVES: the client waited for the rest */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned char body[BODY_LEN];
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
static struct scripted server;

/* Reads one request head; false at EOF. */
static bool get_request(int fd)
{
    char buf[8192];
    size_t n = 0;
    while (n < sizeof(buf) - 1) {
        ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);
        if (r <= 0)
            return false;
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            return true;
    }
    return false;
}

/* Answers one request; false when the connection ends here. */
static bool answer(int fd, enum mode m)
{
    char head[512];
    int n;
    switch (m) {
    case M_RANGE:
    case M_CLOSE:
    case M_IDLE_CLOSE: {
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 206 Partial Content\r\nETag: \"abc\"\r\n"
                     "Content-Range: bytes 0-%d/%d\r\nContent-Length: %d\r\n%s\r\n",
                     BODY_LEN - 1, BODY_LEN * 2, BODY_LEN,
                     m == M_CLOSE ? "Connection: close\r\n" : "");
        char *first = malloc((size_t)n + 1000);
        memcpy(first, head, (size_t)n);
        memcpy(first + n, srv.body, 1000);
        scripted_put_all(fd, first, (size_t)n + 1000);
        free(first);
        scripted_put_all(fd, srv.body + 1000, BODY_LEN - 1000);
        return m == M_RANGE;
    }
    case M_NOT_FOUND: {
        const char *doc = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>";
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\n"
                     "Content-Length: %zu\r\n\r\n%s", strlen(doc), doc);
        scripted_put_all(fd, head, (size_t)n);
        return true;
    }
    case M_CHUNKED: {
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", BODY_LEN);
        scripted_put_all(fd, head, (size_t)n);
        scripted_put_all(fd, srv.body, BODY_LEN);
        scripted_put_all(fd, "\r\n0\r\n\r\n", 7);
        return true;
    }
    case M_SHORT:
        n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                     BODY_LEN);
        scripted_put_all(fd, head, (size_t)n);
        scripted_put_all(fd, srv.body, BODY_LEN / 2);
        return false;
    case M_LONG:
        n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                     BODY_LEN + 1);
        scripted_put_all(fd, head, (size_t)n);
        scripted_put_all(fd, srv.body, BODY_LEN);
        scripted_put_all(fd, "x", 1);
        return true;
    case M_HALVES: {
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-%d/%d\r\n"
                     "Content-Length: %d\r\n\r\n", BODY_LEN - 1, BODY_LEN, BODY_LEN);
        scripted_put_all(fd, head, (size_t)n);
        scripted_put_all(fd, srv.body, BODY_LEN / 2);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 60; /* a bound for a broken client, not a timing */
        pthread_mutex_lock(&srv.lock);
        while (!srv.rest_asked && pthread_cond_timedwait(&srv.cond, &srv.lock, &until) == 0)
            ;
        pthread_mutex_unlock(&srv.lock);
        scripted_put_all(fd, srv.body + BODY_LEN / 2, BODY_LEN - BODY_LEN / 2);
        return true;
    }
    case M_NOT_TLS:
        return false;
    case M_STALL:
        n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                     BODY_LEN);
        scripted_put_all(fd, head, (size_t)n);
        /* Only the client's own timeout or cancel can end the wait: the
         * connection stays silent until the client closes it (60 s bound,
         * then a short body: EPROTO, which no check expects). */
        poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, 60000);
        return false;
    }
    return false;
}

static void serve_conn(int fd)
{
    pthread_mutex_lock(&srv.lock);
    bool not_tls = srv.mode == M_NOT_TLS;
    srv.conns++;
    pthread_mutex_unlock(&srv.lock);
    if (not_tls) {
        char hello[512];
        const char *no = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
        if (recv(fd, hello, sizeof(hello), 0) > 0)
            scripted_put_all(fd, no, strlen(no));
        return;
    }
    while (get_request(fd)) {
        pthread_mutex_lock(&srv.lock);
        srv.reqs++;
        enum mode m = srv.mode;
        pthread_mutex_unlock(&srv.lock);
        if (!answer(fd, m))
            break;
    }
}

static void set_mode(enum mode m)
{
    pthread_mutex_lock(&srv.lock);
    srv.mode = m;
    srv.conns = srv.reqs = 0;
    srv.rest_asked = false;
    pthread_mutex_unlock(&srv.lock);
}

static int counted(int *what)
{
    pthread_mutex_lock(&srv.lock);
    int v = *what;
    pthread_mutex_unlock(&srv.lock);
    return v;
}

struct sink {
    unsigned char *a, *b, *c;
    struct iovec iov[3];
};

static void sink_init(struct sink *s, size_t extra)
{
    /* Uneven pieces, so the body crosses buffer boundaries mid-read. */
    size_t la = 1000 - 333, lb = 128 * 1024, lc = BODY_LEN - la - lb + extra;
    s->a = calloc(1, la);
    s->b = calloc(1, lb);
    s->c = calloc(1, lc);
    s->iov[0] = (struct iovec){s->a, la};
    s->iov[1] = (struct iovec){s->b, lb};
    s->iov[2] = (struct iovec){s->c, lc};
}

static bool sink_matches(const struct sink *s)
{
    size_t la = s->iov[0].iov_len, lb = s->iov[1].iov_len;
    return memcmp(s->a, srv.body, la) == 0 && memcmp(s->b, srv.body + la, lb) == 0 &&
           memcmp(s->c, srv.body + la + lb, BODY_LEN - la - lb) == 0;
}

static void sink_free(struct sink *s)
{
    free(s->a);
    free(s->b);
    free(s->c);
}

static int get(struct lf_http *h, struct sink *s, struct lf_http_resp *resp,
               lf_http_cancel_fn cancel)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/repo/main/obj?x=1", server.port);
    const char *hdrs[] = {"Range: bytes=0-307216", "x-amz-date: 20260101T000000Z"};
    struct lf_http_req q = {.method = "GET", .url = url, .headers = hdrs, .nheaders = 2,
                            .outv = s->iov, .outvcnt = 3, .cancel = cancel};
    return lf_http_perform(h, &q, resp);
}

static int open_body(struct lf_http *h, struct lf_http_resp *resp, struct lf_http_body **b,
                     const char *url_or_null)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/repo/main/obj", server.port);
    const char *hdrs[] = {"Range: bytes=0-307216"};
    struct lf_http_req q = {.method = "GET", .url = url_or_null ? url_or_null : url,
                            .headers = hdrs, .nheaders = 1};
    return lf_http_open(h, &q, resp, b);
}

static struct timespec t_start;

static int cancel_after_300ms(void *arg)
{
    (void)arg;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t_start.tv_sec) * 1000 + (t.tv_nsec - t_start.tv_nsec) / 1000000 > 300;
}

/* As a cancel check, called only once a splice has waited: lets the
 * M_HALVES server send the rest. */
static int ask_rest(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&srv.lock);
    srv.rest_asked = true;
    pthread_cond_broadcast(&srv.cond);
    pthread_mutex_unlock(&srv.lock);
    return 0;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

int main(void)
{
    for (size_t i = 0; i < BODY_LEN; i++)
        srv.body[i] = (unsigned char)(i * 7 + (i >> 10));
    scripted_start(&server, serve_conn);
    lf_http_global_init();
    struct lf_http_opts o = {.max_conns = 1, .connect_timeout_ms = 2000,
                             .stall_timeout_ms = 1000};
    struct lf_http *h = lf_http_new(&o);
    /* For cancels: a stall window no schedule reaches, so EINTR can only
     * come from the cancel callback. */
    struct lf_http_opts oc = {.max_conns = 2, .connect_timeout_ms = 2000,
                              .stall_timeout_ms = 600000};
    struct lf_http *hc = lf_http_new(&oc);
    struct lf_http_resp resp;
    lf_http_resp_init(&resp);
    struct sink s;

    /* Two ranged GETs on one kept-alive connection, bytes exact. */
    set_mode(M_RANGE);
    for (int i = 0; i < 2; i++) {
        sink_init(&s, 0);
        CHECK_INT(get(h, &s, &resp, NULL), 0);
        CHECK_INT(resp.status, 206);
        CHECK_INT(resp.body_len, BODY_LEN);
        CHECK_INT(resp.content_length, BODY_LEN);
        CHECK_STR(resp.etag, "\"abc\"");
        CHECK(strstr(resp.content_range, "bytes 0-") == resp.content_range);
        CHECK(sink_matches(&s));
        sink_free(&s);
    }
    CHECK_INT(counted(&srv.reqs), 2);
    CHECK_INT(counted(&srv.conns), 1);

    /* Connection: close is honoured: the next request connects again. */
    set_mode(M_CLOSE);
    for (int i = 0; i < 2; i++) {
        sink_init(&s, 0);
        CHECK_INT(get(h, &s, &resp, NULL), 0);
        CHECK(sink_matches(&s));
        sink_free(&s);
    }
    /* the first went over the connection kept from before, the second
     * needed a new one */
    CHECK_INT(counted(&srv.conns), 1);

    /* A server that drops each connection after one answer, silently:
     * the second request finds it closed and asks again on a new one. */
    set_mode(M_IDLE_CLOSE);
    for (int i = 0; i < 2; i++) {
        sink_init(&s, 0);
        CHECK_INT(get(h, &s, &resp, NULL), 0);
        CHECK(sink_matches(&s));
        sink_free(&s);
    }
    CHECK_INT(counted(&srv.reqs), 2);

    /* An error answer: its status and document, the connection kept. */
    set_mode(M_NOT_FOUND);
    sink_init(&s, 0);
    CHECK_INT(get(h, &s, &resp, NULL), 0);
    CHECK_INT(resp.status, 404);
    CHECK(resp.err_body.len > 0 && strstr(resp.err_body.data, "NoSuchKey") != NULL);
    CHECK_INT(get(h, &s, &resp, NULL), 0);
    CHECK_INT(counted(&srv.conns), 1);
    sink_free(&s);

    /* A body longer than the sink: EIO, as through libcurl. */
    set_mode(M_LONG);
    sink_init(&s, 0);
    CHECK_INT(get(h, &s, &resp, NULL), -EIO);
    CHECK(strstr(resp.errmsg, "larger") != NULL);
    sink_free(&s);

    /* Cut short: EPROTO, never a short success. */
    set_mode(M_SHORT);
    sink_init(&s, 0);
    CHECK_INT(get(h, &s, &resp, NULL), -EPROTO);
    sink_free(&s);

    /* Headers, then nothing: the stall timeout ends it. */
    set_mode(M_STALL);
    sink_init(&s, 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_INT(get(h, &s, &resp, NULL), -ETIMEDOUT);
    double dt = seconds_since(&t0);
    CHECK(dt >= 0.9); /* never before the window: how late depends on the load */

    /* The caller gives up: EINTR, and not before it asked. */
    clock_gettime(CLOCK_MONOTONIC, &t_start);
    CHECK_INT(get(hc, &s, &resp, cancel_after_300ms), -EINTR);
    dt = seconds_since(&t_start);
    CHECK(dt >= 0.3);
    sink_free(&s);

    /* Open bodies: the head checked, the body spliced into a pipe in
     * pieces (its first bytes came with the head), the connection kept
     * for the next request once the body was read to its end. */
    struct lf_http_opts o2 = {.max_conns = 2, .connect_timeout_ms = 2000,
                              .stall_timeout_ms = 1000};
    struct lf_http *h2 = lf_http_new(&o2);
    struct lf_http_body *b = NULL, *b2 = NULL;
    int p[2], small[2];
    CHECK_INT(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    CHECK(fcntl(p[0], F_SETPIPE_SZ, 1 << 20) >= 1 << 20);
    CHECK_INT(pipe2(small, O_NONBLOCK | O_CLOEXEC), 0);
    unsigned char *got = malloc(BODY_LEN);
    size_t moved;
    set_mode(M_RANGE);
    CHECK_INT(open_body(h2, &resp, &b, NULL), 0);
    CHECK_INT(resp.status, 206);
    CHECK(b != NULL);
    CHECK_INT(lf_http_body_left(b), BODY_LEN);
    /* a second one would hold the last connection of the pool */
    CHECK_INT(open_body(h2, &resp, &b2, NULL), -EBUSY);
    size_t pieces[] = {500, 100000, BODY_LEN - 100500}, at = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_INT(lf_http_body_splice(b, p[1], pieces[i], NULL, NULL, &moved), 0);
        CHECK_INT(moved, pieces[i]);
        CHECK_INT(test_read_full(p[0], got + at, pieces[i]), pieces[i]);
        at += pieces[i];
    }
    CHECK(memcmp(got, srv.body, BODY_LEN) == 0);
    CHECK_INT(lf_http_body_left(b), 0);
    CHECK_INT(lf_http_body_splice(b, p[1], 1, NULL, NULL, &moved), -EINVAL);
    lf_http_body_close(b);
    CHECK_INT(open_body(h2, &resp, &b, NULL), 0);
    CHECK_INT(counted(&srv.conns), 1); /* the same connection */
    lf_http_body_close(b); /* unread: the connection cannot be reused */
    CHECK_INT(open_body(h2, &resp, &b, NULL), 0);
    CHECK_INT(counted(&srv.conns), 2);
    /* A body whose second half comes only once the splice has waited for
     * it: all of it in one call, and the connection kept for the next
     * answer, whose head must not wait for as many bytes as that wait did
     * (SO_RCVLOWAT set back). */
    lf_http_body_close(b);
    set_mode(M_HALVES);
    CHECK_INT(open_body(h2, &resp, &b, NULL), 0);
    CHECK_INT(lf_http_body_splice(b, p[1], BODY_LEN, ask_rest, NULL, &moved), 0);
    CHECK_INT(moved, BODY_LEN);
    CHECK_INT(test_read_full(p[0], got, BODY_LEN), BODY_LEN);
    CHECK(memcmp(got, srv.body, BODY_LEN) == 0);
    lf_http_body_close(b);
    set_mode(M_NOT_FOUND);
    CHECK_INT(open_body(h2, &resp, &b, NULL), 0);
    CHECK_INT(resp.status, 404);
    CHECK_INT(counted(&srv.conns), 0); /* the connection kept */
    set_mode(M_RANGE);
    CHECK_INT(open_body(h2, &resp, &b, NULL), 0);
    /* A pipe with no room for what is asked: ENOBUFS, with what fitted. */
    CHECK_INT(lf_http_body_splice(b, small[1], BODY_LEN, NULL, NULL, &moved), -ENOBUFS);
    CHECK(moved > 0 && moved < BODY_LEN);
    CHECK(strstr(lf_http_body_why(b), "pipe") != NULL);
    lf_http_body_close(b);

    /* An error answer: its document, and no body to read. */
    set_mode(M_NOT_FOUND);
    CHECK_INT(open_body(h2, &resp, &b, NULL), 0);
    CHECK_INT(resp.status, 404);
    CHECK(b == NULL);
    CHECK(resp.err_body.len > 0 && strstr(resp.err_body.data, "NoSuchKey") != NULL);

    /* Cut short: EPROTO once the bytes stop, never a short success. */
    set_mode(M_SHORT);
    CHECK_INT(open_body(h2, &resp, &b, NULL), 0);
    CHECK_INT(lf_http_body_splice(b, p[1], BODY_LEN, NULL, NULL, &moved), -EPROTO);
    CHECK_INT(moved, BODY_LEN / 2);
    CHECK_INT(test_read_full(p[0], got, moved), moved);
    lf_http_body_close(b);

    /* Stalled: the stall window ends the wait; cancelled: EINTR. */
    set_mode(M_STALL);
    CHECK_INT(open_body(h2, &resp, &b, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_INT(lf_http_body_splice(b, p[1], BODY_LEN, NULL, NULL, &moved), -ETIMEDOUT);
    dt = seconds_since(&t0);
    CHECK(dt >= 0.9);
    lf_http_body_close(b);
    CHECK_INT(open_body(hc, &resp, &b, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t_start);
    CHECK_INT(lf_http_body_splice(b, p[1], BODY_LEN, cancel_after_300ms, NULL, &moved), -EINTR);
    dt = seconds_since(&t_start);
    CHECK(dt >= 0.3);
    lf_http_body_close(b);

    /* Only plain HTTP bodies can be spliced. */
    CHECK_INT(open_body(h2, &resp, &b, "https://127.0.0.1:1/x"), -EOPNOTSUPP);
    lf_http_free(h2);
    lf_http_free(hc);
    free(got);
    close(p[0]);
    close(p[1]);
    close(small[0]);
    close(small[1]);

    /* Chunked: handed to libcurl, which reads it right; later GETs go
     * through libcurl too. */
    set_mode(M_CHUNKED);
    sink_init(&s, 0);
    CHECK_INT(get(h, &s, &resp, NULL), 0);
    CHECK_INT(resp.status, 200);
    CHECK_INT(resp.body_len, BODY_LEN);
    CHECK(sink_matches(&s));
    CHECK_INT(counted(&srv.reqs), 2); /* the direct attempt, then libcurl's */
    set_mode(M_CHUNKED);
    CHECK_INT(get(h, &s, &resp, NULL), 0);
    CHECK(sink_matches(&s));
    CHECK_INT(counted(&srv.reqs), 1);
    sink_free(&s);
    lf_http_free(h);

    /* Nobody listening. */
    int closed = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in c = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t cl = sizeof(c);
    bind(closed, (struct sockaddr *)&c, sizeof(c));
    getsockname(closed, (struct sockaddr *)&c, &cl);
    h = lf_http_new(&o);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(c.sin_port));
    sink_init(&s, 0);
    struct lf_http_req q = {.method = "GET", .url = url, .outv = s.iov, .outvcnt = 3};
    CHECK_INT(lf_http_perform(h, &q, &resp), -ECONNREFUSED);
    CHECK(strstr(resp.errmsg, "cannot connect") != NULL);
    sink_free(&s);
    close(closed);

    /* https:// to a plain-HTTP port: its own errno, so the user can be
     * told the endpoint may be http://. */
    set_mode(M_NOT_TLS);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/x", server.port);
    q = (struct lf_http_req){.method = "GET", .url = url};
    CHECK_INT(lf_http_perform(h, &q, &resp), LF_HTTP_ETLS);
    lf_http_free(h);

    lf_http_resp_free(&resp);
    scripted_stop(&server);
    lf_http_global_cleanup();
    return check_summary("test_http");
}
