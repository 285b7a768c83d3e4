/* scripted: the loopback server that HTTP client tests script. It accepts
 * on 127.0.0.1 (an ephemeral port) and gives each connection a thread of
 * its own, so a stalled answer never holds up the next connection; what a
 * connection reads and answers is the test's conn function. */
#ifndef LAKEFUSE_TEST_SCRIPTED_H
#define LAKEFUSE_TEST_SCRIPTED_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct scripted {
    int lfd, port;
    void (*conn)(int fd); /* serves one connection; the fd is closed after */
    pthread_t acceptor;
};

static inline void scripted_put_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
}

struct scripted_job {
    struct scripted *s;
    int fd;
};

static inline void *scripted_conn_main(void *arg)
{
    struct scripted_job j = *(struct scripted_job *)arg;
    free(arg);
    j.s->conn(j.fd);
    close(j.fd);
    return NULL;
}

static inline void *scripted_accept_main(void *arg)
{
    struct scripted *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            return NULL; /* scripted_stop shut the socket down */
        struct scripted_job *j = malloc(sizeof(*j));
        pthread_t t;
        if (j) {
            j->s = s;
            j->fd = fd;
        }
        if (j && pthread_create(&t, NULL, scripted_conn_main, j) == 0) {
            pthread_detach(t);
        } else {
            free(j);
            close(fd);
        }
    }
}

/* Listens and starts accepting; exits the test on failure. */
static inline void scripted_start(struct scripted *s, void (*conn)(int fd))
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    s->conn = conn;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(s->lfd, 16) ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al)) {
        perror("scripted server");
        exit(1);
    }
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->acceptor, NULL, scripted_accept_main, s) != 0) {
        perror("scripted server thread");
        exit(1);
    }
}

/* Stops accepting (connections under way finish on their own). */
static inline void scripted_stop(struct scripted *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->acceptor, NULL);
    close(s->lfd);
}

#endif
