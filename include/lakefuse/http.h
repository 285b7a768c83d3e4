/* http: one HTTP exchange at a time per caller, over a bounded pool of
 * persistent libcurl connections.
 *
 * The pool holds at most max_conns easy handles; each keeps its connection
 * alive between requests, so a steady stream of ranged GETs pays the TCP
 * (and TLS) handshake once per handle. A caller that finds every handle busy
 * waits: the pool size is the ceiling on requests in flight to the gateway.
 *
 * This layer makes exactly one attempt. Retrying belongs to the S3 client
 * because every attempt must be signed again with a fresh date.
 */
#ifndef LAKEFUSE_HTTP_H
#define LAKEFUSE_HTTP_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "lakefuse/buf.h"

struct lf_http;

struct lf_http_opts {
    unsigned max_conns;         /* handles in the pool; >= 1 */
    long connect_timeout_ms;    /* TCP+TLS connect */
    long stall_timeout_ms;      /* no byte moved for this long: give up */
    long request_timeout_ms;    /* whole exchange; 0 = no limit */
    const char *ca_bundle;      /* NULL: the system's trust store */
    bool insecure;              /* skip certificate verification */
};

/* x-amz-meta-* headers of an answer, names lowercased without the prefix. */
#define LF_HTTP_MAX_META 16
struct lf_http_meta {
    char name[64];
    char value[256];
};

struct lf_http_resp {
    long status;                /* 0 when no answer arrived */
    char etag[136];             /* as sent, quotes included */
    char content_type[128];
    char content_range[96];
    char request_id[96];
    int64_t content_length;     /* -1 when absent */
    time_t last_modified;       /* 0 when absent */
    time_t date;                /* the server's clock (Date header); 0 when absent */
    unsigned nmeta;
    struct lf_http_meta meta[LF_HTTP_MAX_META];
    size_t body_len;            /* bytes stored in the body sink */
    char errmsg[256];           /* transport failure, for log lines */
    /* The body of an error answer (status >= 300), kept small, for the
     * S3 error document. */
    struct lf_buf err_body;
};

/* Returns nonzero when the caller no longer wants the answer (e.g. the
 * FUSE request was interrupted); the exchange then ends with -EINTR. */
typedef int (*lf_http_cancel_fn)(void *arg);

struct lf_http_req {
    const char *method;         /* GET, HEAD, PUT, POST, DELETE */
    const char *url;
    const char *const *headers; /* "Name: value" lines */
    size_t nheaders;

    /* Request body: from memory, or from a file region read with pread. */
    const void *body;
    int body_fd;                /* used when body == NULL and body_len > 0 */
    off_t body_off;
    uint64_t body_len;
    /* Sees every body byte as it goes out, with its offset in the body
     * (a rewind starts over at 0), so the bytes sent can be hashed in the
     * same pass that reads them. Optional. */
    void (*body_tap)(void *arg, const void *p, size_t n, uint64_t at);
    void *body_tap_arg;

    /* Response body (for status < 300): into a caller buffer of fixed
     * size or an iovec (ranged reads land where they are needed, no extra
     * copy), or into a growable buffer bounded by out_max. A body longer than the sink is
     * an error (-EIO): the server sent more than was asked for. */
    void *out;
    size_t out_cap;
    const struct iovec *outv;   /* or scattered over these buffers */
    int outvcnt;
    struct lf_buf *out_buf;
    size_t out_max;

    lf_http_cancel_fn cancel;
    void *cancel_arg;

    /* A request that must not be sent twice goes on a new connection:
     * libcurl sends a request again by itself when a reused connection
     * turns out to be closed before any answer, which for a request the
     * server already carried out is a second one. */
    bool fresh_connect;
};

struct lf_http *lf_http_new(const struct lf_http_opts *opts);
void lf_http_free(struct lf_http *h);

/* No errno says "TLS handshake failed"; this one is otherwise unused here. */
#define LF_HTTP_ETLS (-EPROTONOSUPPORT)

/* Performs the exchange. Returns 0 when an HTTP answer arrived (whatever
 * its status: see resp->status), or a negative errno when none did:
 * -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH, -EINTR (cancelled),
 * -EPROTO (truncated or malformed answer), LF_HTTP_ETLS (the TLS handshake
 * failed: often an https:// URL for a plain-HTTP port), -EIO (body larger
 * than the sink or another transport failure). resp must be initialised with
 * lf_http_resp_init and released with lf_http_resp_free. */
int lf_http_perform(struct lf_http *h, const struct lf_http_req *req,
                    struct lf_http_resp *resp);

/* An answer whose body is still on its connection, for readers that move
 * it with splice: the bytes go from the socket to a pipe without passing
 * through our memory. */
struct lf_http_body;

/* Sends a plain-HTTP GET and returns once the answer's head is in: with
 * a 2xx status, *body holds the connection and the unread body
 * (resp->content_length bytes); with any other status the error document
 * is in resp->err_body as after lf_http_perform, and *body is NULL.
 * Errors as lf_http_perform, and -EOPNOTSUPP when the request cannot go
 * this way (HTTPS, or a server whose answers need libcurl), -EBUSY when
 * open bodies already hold half the pool's connections (they are held as
 * long as their readers take, so the rest is kept for other requests). */
int lf_http_open(struct lf_http *h, const struct lf_http_req *req, struct lf_http_resp *resp,
                 struct lf_http_body **body);
/* Moves exactly n more bytes of the body into pipe_fd, the write end of a
 * pipe with room for them. Returns 0, or -ETIMEDOUT (stalled), -EPROTO
 * (closed early), -ECONNRESET, -EINTR (cancel said so), -ENOBUFS (the
 * pipe filled first), -EINVAL (fewer than n bytes left); *moved tells how
 * many bytes went into the pipe either way. */
int lf_http_body_splice(struct lf_http_body *b, int pipe_fd, size_t n, lf_http_cancel_fn cancel,
                        void *cancel_arg, size_t *moved);
uint64_t lf_http_body_left(const struct lf_http_body *b);
/* Why the last lf_http_body_splice failed, for a log line. */
const char *lf_http_body_why(const struct lf_http_body *b);
/* Gives the connection back: kept alive when the body was read to its
 * end, closed otherwise. */
void lf_http_body_close(struct lf_http_body *b);

void lf_http_resp_init(struct lf_http_resp *resp);
void lf_http_resp_reset(struct lf_http_resp *resp);
void lf_http_resp_free(struct lf_http_resp *resp);
/* The value of x-amz-meta-<name>, or NULL. */
const char *lf_http_resp_meta(const struct lf_http_resp *resp, const char *name);

/* Process-wide libcurl setup; call once before any thread starts. */
int lf_http_global_init(void);
void lf_http_global_cleanup(void);

#endif
