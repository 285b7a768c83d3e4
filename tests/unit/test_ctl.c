/* ctl: requests reach the handler with the peer's credentials, answers
 * come back in order with the exit code, bad requests are refused without
 * harm, asking who listens is no request, and stop waits for a request
 * under way. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "lakefuse/ctl.h"
#include "lakefuse/log.h"

static atomic_int calls;
static atomic_int slow_done;

static int handler(void *arg, const struct lf_ctl_req *req, struct lf_ctl_out *out)
{
    atomic_fetch_add(&calls, 1);
    if (strcmp(req->argv[0], "echo") == 0) {
        lf_ctl_printf(out, 1, "ticket=%s uid=%u\n", req->ticket, (unsigned)req->uid);
        for (int i = 1; i < req->argc; i++)
            lf_ctl_printf(out, i % 2 ? 1 : 2, "[%s]\n", req->argv[i]);
        return req->argc;
    }
    if (strcmp(req->argv[0], "slow") == 0) {
        usleep(300 * 1000);
        atomic_store(&slow_done, 1);
        return 0;
    }
    lf_ctl_printf(out, 2, "unknown %s\n", req->argv[0]);
    return 2;
}

static char *slurp(FILE *fp)
{
    static char buf[4096];
    rewind(fp);
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    return buf;
}

static void test_round_trip(struct lf_ctl *c)
{
    FILE *out = tmpfile(), *err = tmpfile();
    const char *argv[] = {"echo", "a b", "", "c"};
    int rc = lf_ctl_call(lf_ctl_address(c), "T1", 4, argv, out, err);
    CHECK_INT(rc, 4);
    char expect[128];
    snprintf(expect, sizeof(expect), "ticket=T1 uid=%u\n[a b]\n[c]\n", (unsigned)getuid());
    CHECK_STR(slurp(out), expect);
    CHECK_STR(slurp(err), "[]\n");
    fclose(out);
    fclose(err);
}

static void send_raw(const char *address, const void *data, size_t len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path + 1, address + 1, strlen(address) - 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(fd, (struct sockaddr *)&sa,
                  (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(address))) == 0);
    CHECK(send(fd, data, len, MSG_NOSIGNAL) == (ssize_t)len);
    shutdown(fd, SHUT_WR);
    char b[64];
    /* The server closes without an answer. */
    CHECK_INT(recv(fd, b, sizeof(b), 0), 0);
    close(fd);
}

static void test_bad_requests(struct lf_ctl *c)
{
    int before = atomic_load(&calls);
    /* Too long, unterminated, ticket without verb, truncated. */
    send_raw(lf_ctl_address(c), "\xff\xff\xff\xff", 4);
    send_raw(lf_ctl_address(c), "\0\0\0\3abc", 7);
    send_raw(lf_ctl_address(c), "\0\0\0\2t\0", 6);
    send_raw(lf_ctl_address(c), "\0\0\0\x10t\0v\0", 8);
    CHECK_INT(atomic_load(&calls), before);
    /* Still serving. */
    test_round_trip(c);
}

/* lakefuse unmount asks who serves a mount, to wait for that daemon to
 * exit: the answer is this process, the handler never runs, and the
 * server logs nothing (a probe is not a bad request). */
static void test_peer_pid(void)
{
    FILE *log = tmpfile();
    lf_log_set_fd(fileno(log));
    int before = atomic_load(&calls);
    struct lf_ctl *c = lf_ctl_start(handler, NULL);
    CHECK(c != NULL);
    if (!c)
        return;
    char address[64];
    snprintf(address, sizeof(address), "%s", lf_ctl_address(c));
    CHECK_INT(lf_ctl_peer_pid(address), getpid());
    CHECK_INT(lf_ctl_peer_pid(address), getpid());
    /* Answered only once accepted, after the probes (accepted in order):
     * then stop waits for every connection it has taken. */
    test_round_trip(c);
    lf_ctl_stop(c);
    CHECK_INT(atomic_load(&calls), before + 1);
    CHECK_STR(slurp(log), "");
    lf_log_set_fd(STDERR_FILENO);
    fclose(log);
    CHECK_INT(lf_ctl_peer_pid(address), -ECONNREFUSED);
    CHECK_INT(lf_ctl_peer_pid("not an address"), -EINVAL);
}

struct slow_arg {
    const char *address;
    int rc;
};

static void *slow_main(void *p)
{
    struct slow_arg *a = p;
    const char *argv[] = {"slow"};
    FILE *out = tmpfile(), *err = tmpfile();
    a->rc = lf_ctl_call(a->address, "t", 1, argv, out, err);
    fclose(out);
    fclose(err);
    return NULL;
}

int main(void)
{
    struct lf_ctl *c = lf_ctl_start(handler, NULL);
    CHECK(c != NULL);
    if (!c)
        return check_summary("ctl");
    CHECK(lf_ctl_address(c)[0] == '@');
    test_round_trip(c);
    test_bad_requests(c);
    test_peer_pid();

    /* Stop waits for the request under way, whose client gets its exit code. */
    char address[64];
    snprintf(address, sizeof(address), "%s", lf_ctl_address(c));
    struct slow_arg a = {.address = address, .rc = -1};
    pthread_t t;
    int base = atomic_load(&calls);
    pthread_create(&t, NULL, slow_main, &a);
    while (atomic_load(&calls) < base + 1)
        usleep(1000);
    lf_ctl_stop(c);
    CHECK_INT(atomic_load(&slow_done), 1);
    pthread_join(t, NULL);
    CHECK_INT(a.rc, 0);
    /* Nobody listens any more. */
    const char *argv[] = {"echo"};
    CHECK_INT(lf_ctl_call(address, "t", 1, argv, stdout, stderr), -ECONNREFUSED);
    return check_summary("ctl");
}
