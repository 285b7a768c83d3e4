/* ctl: an abstract Unix socket, a thread per request, framed answers. */
#include "lakefuse/ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "lakefuse/log.h"

/* Requests at once: verbs are rare, and a commit holds its thread while
 * uploads finish. More connections wait in the listen backlog. */
#define MAX_ACTIVE 4
/* A client that sends its request this slowly, or stops reading its
 * answer for this long, is dropped: a handler never waits on it forever. */
#define RECV_TIMEOUT_S 10
#define SEND_TIMEOUT_S 30

struct lf_ctl {
    int fd;
    char address[64]; /* "@lakefuse-<pid>-<hex>" */
    lf_ctl_handler fn;
    void *arg;
    pthread_t acceptor;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned active;
    bool stopping;
};

struct lf_ctl_out {
    int fd;
    bool gone;
};

struct conn {
    struct lf_ctl *ctl;
    int fd;
};

static socklen_t make_addr(const char *address, struct sockaddr_un *sa)
{
    size_t len = strlen(address);
    if (len < 2 || address[0] != '@' || len > sizeof(sa->sun_path))
        return 0;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path + 1, address + 1, len - 1); /* sun_path[0] = '\0': abstract */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

static int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EPIPE;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int recv_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t r = recv(fd, p, len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        if (r == 0)
            return -EPROTO;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int send_frame(int fd, char type, const void *data, size_t len)
{
    unsigned char head[5];
    head[0] = (unsigned char)type;
    put_u32(head + 1, (uint32_t)len);
    int rc = send_all(fd, head, sizeof(head));
    return rc ? rc : send_all(fd, data, len);
}

int lf_ctl_printf(struct lf_ctl_out *o, int fd, const char *fmt, ...)
{
    if (o->gone)
        return -EPIPE;
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    int rc = send_frame(o->fd, fd == 2 ? '2' : '1', s, (size_t)n);
    free(s);
    if (rc)
        o->gone = true;
    return rc ? -EPIPE : 0;
}

/* Splits the request into its strings; the last one must end the buffer. */
static int parse_request(char *buf, size_t len, char **argv, int *argc)
{
    int n = 0;
    size_t i = 0;
    if (len == 0 || buf[len - 1] != '\0')
        return -EPROTO;
    while (i < len) {
        if (n == LF_CTL_MAX_ARGS)
            return -E2BIG;
        argv[n++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    *argc = n;
    return n >= 2 ? 0 : -EPROTO; /* a ticket and a verb at least */
}

static void serve(struct lf_ctl *c, int fd)
{
    unsigned char head[4];
    char *buf = NULL;
    char **argv = NULL;
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    struct timeval rt = {.tv_sec = RECV_TIMEOUT_S}, st = {.tv_sec = SEND_TIMEOUT_S};
    int argc = 0, rc;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof(rt));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof(st));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
        lf_warn("control request: cannot tell who sent it: %s", strerror(errno));
        goto out;
    }
    if (recv(fd, head, 1, MSG_PEEK) == 0)
        goto out; /* closed before a byte: asked who listens (lf_ctl_peer_pid) */
    if ((rc = recv_all(fd, head, sizeof(head))) != 0)
        goto bad;
    uint32_t len = get_u32(head);
    if (len == 0 || len > LF_CTL_MAX_REQUEST) {
        rc = -E2BIG;
        goto bad;
    }
    buf = malloc(len);
    argv = calloc(LF_CTL_MAX_ARGS, sizeof(*argv));
    if (!buf || !argv) {
        rc = -ENOMEM;
        goto bad;
    }
    if ((rc = recv_all(fd, buf, len)) != 0 || (rc = parse_request(buf, len, argv, &argc)) != 0)
        goto bad;

    struct lf_ctl_req req = {.uid = cred.uid, .gid = cred.gid, .pid = cred.pid,
                             .ticket = argv[0], .argc = argc - 1, .argv = argv + 1};
    struct lf_ctl_out o = {.fd = fd};
    int code = c->fn(c->arg, &req, &o);
    unsigned char x = (unsigned char)(code < 0 ? 1 : code > 255 ? 255 : code);
    if (!o.gone)
        send_frame(fd, 'x', &x, 1);
    goto out;
bad:
    lf_warn("control request from pid %d: %s", (int)cred.pid, strerror(-rc));
out:
    free(argv);
    free(buf);
    close(fd);
}

static void *conn_main(void *arg)
{
    struct conn *cn = arg;
    struct lf_ctl *c = cn->ctl;
    serve(c, cn->fd);
    free(cn);
    pthread_mutex_lock(&c->lock);
    c->active--;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct lf_ctl *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (c->active >= MAX_ACTIVE && !c->stopping)
            pthread_cond_wait(&c->cond, &c->lock);
        bool stop = c->stopping;
        pthread_mutex_unlock(&c->lock);
        if (stop)
            break;
        int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                lf_warn("control channel: accept: %s", strerror(errno));
                sleep(1);
                continue;
            }
            break; /* shut down (EINVAL) */
        }
        struct conn *cn = malloc(sizeof(*cn));
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_mutex_lock(&c->lock);
        c->active++;
        pthread_mutex_unlock(&c->lock);
        if (cn) {
            cn->ctl = c;
            cn->fd = fd;
        }
        if (!cn || pthread_create(&t, &at, conn_main, cn) != 0) {
            lf_warn("control channel: no thread for a request");
            free(cn);
            close(fd);
            pthread_mutex_lock(&c->lock);
            c->active--;
            pthread_mutex_unlock(&c->lock);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

struct lf_ctl *lf_ctl_start(lf_ctl_handler fn, void *arg)
{
    struct lf_ctl *c = calloc(1, sizeof(*c));
    unsigned char rnd[8];
    struct sockaddr_un sa;
    if (!c)
        return NULL;
    c->fd = -1;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        lf_err("control channel: no random bytes: %s", strerror(errno));
        goto fail;
    }
    snprintf(c->address, sizeof(c->address), "@lakefuse-%d-%02x%02x%02x%02x%02x%02x%02x%02x",
             (int)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    socklen_t alen = make_addr(c->address, &sa);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&sa, alen) != 0 || listen(c->fd, 16) != 0) {
        lf_err("control channel: cannot listen on %s: %s", c->address, strerror(errno));
        goto fail;
    }
    if (pthread_create(&c->acceptor, NULL, accept_main, c) != 0) {
        lf_err("control channel: no thread");
        goto fail;
    }
    return c;
fail:
    if (c->fd >= 0)
        close(c->fd);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
    return NULL;
}

const char *lf_ctl_address(const struct lf_ctl *c) { return c->address; }

void lf_ctl_stop(struct lf_ctl *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    shutdown(c->fd, SHUT_RDWR); /* accept() returns */
    pthread_join(c->acceptor, NULL);
    pthread_mutex_lock(&c->lock);
    while (c->active)
        pthread_cond_wait(&c->cond, &c->lock);
    pthread_mutex_unlock(&c->lock);
    close(c->fd);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

pid_t lf_ctl_peer_pid(const char *address)
{
    struct sockaddr_un sa;
    socklen_t alen = make_addr(address, &sa);
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    if (!alen)
        return -EINVAL;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, alen) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0)
        rc = -errno;
    else
        rc = cred.pid > 0 ? (int)cred.pid : -ESRCH; /* 0: not in our pid namespace */
    close(fd);
    return (pid_t)rc;
}

int lf_ctl_call(const char *address, const char *ticket, int argc, const char *const *argv,
                FILE *out, FILE *err)
{
    struct sockaddr_un sa;
    socklen_t alen = make_addr(address, &sa);
    size_t len = strlen(ticket) + 1;
    char *req = NULL;
    int fd = -1, rc;
    if (!alen)
        return -EINVAL;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    if (len > LF_CTL_MAX_REQUEST || argc + 1 > LF_CTL_MAX_ARGS)
        return -E2BIG;
    req = malloc(4 + len);
    if (!req)
        return -ENOMEM;
    put_u32((unsigned char *)req, (uint32_t)len);
    char *p = req + 4;
    p = stpcpy(p, ticket) + 1;
    for (int i = 0; i < argc; i++)
        p = stpcpy(p, argv[i]) + 1;

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, alen) != 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = send_all(fd, req, 4 + len)) != 0)
        goto out;
    /* Frames until the exit code. No timeout: a commit may upload for a
     * long time, and the user can interrupt us. */
    for (;;) {
        unsigned char head[5];
        if ((rc = recv_all(fd, head, sizeof(head))) != 0)
            goto out;
        uint32_t flen = get_u32(head + 1);
        if (flen > (1u << 24)) {
            rc = -EPROTO;
            goto out;
        }
        char *data = malloc(flen ? flen : 1);
        if (!data) {
            rc = -ENOMEM;
            goto out;
        }
        if ((rc = recv_all(fd, data, flen)) != 0) {
            free(data);
            goto out;
        }
        if (head[0] == 'x') {
            rc = flen == 1 ? (unsigned char)data[0] : -EPROTO;
            free(data);
            goto out;
        }
        FILE *to = head[0] == '2' ? err : out;
        if (head[0] != '1' && head[0] != '2') {
            free(data);
            rc = -EPROTO;
            goto out;
        }
        fwrite(data, 1, flen, to);
        fflush(to);
        free(data);
    }
out:
    if (fd >= 0)
        close(fd);
    free(req);
    return rc;
}
