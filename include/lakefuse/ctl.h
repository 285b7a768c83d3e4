/* ctl: the control channel between `lakefuse VERB PATH` and the daemon
 * that serves PATH.
 *
 * Verbs such as commit and status run inside the daemon, which holds the
 * credentials and knows what is staged and open, so a user who may use
 * the mount needs no credentials of their own (a git working tree works
 * the same way). The daemon listens on a Linux abstract Unix socket: no
 * file to create, clean up or protect. Anyone on the machine can connect
 * to it, so a connection alone grants nothing: each request carries a
 * ticket that the daemon handed out through the mount itself (a getxattr
 * on PATH, which the kernel permission-checks like any access to PATH),
 * and the ticket is honoured only for the user it was issued to, as the
 * kernel reports the peer (SO_PEERCRED). Tickets are the caller's
 * business (lf_ctl_handler); this module moves bytes.
 *
 * Wire format (both ways, over one stream connection):
 *   request:  u32 length (big-endian, <= LF_CTL_MAX_REQUEST), then that
 *             many bytes: NUL-terminated strings, ticket first, then the
 *             verb and its arguments.
 *   answer:   frames of one type byte, a u32 length and the payload:
 *             '1' text for stdout, '2' text for stderr, 'x' the exit code
 *             (one byte), which ends the answer.
 */
#ifndef LAKEFUSE_CTL_H
#define LAKEFUSE_CTL_H

#include <stdarg.h>
#include <stdio.h>
#include <sys/types.h>

#define LF_CTL_MAX_REQUEST (64 * 1024)
#define LF_CTL_MAX_ARGS 256

struct lf_ctl;
struct lf_ctl_out;

struct lf_ctl_req {
    uid_t uid; /* the peer, as the kernel saw it connect */
    gid_t gid;
    pid_t pid;
    const char *ticket;
    int argc; /* verb and arguments */
    char **argv;
};

/* Prints to the client's stdout (fd 1) or stderr (fd 2). Returns 0, or
 * -EPIPE once the client has gone (the handler may stop early). */
int lf_ctl_printf(struct lf_ctl_out *o, int fd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Runs one request; returns its exit code (0-255). Runs on the channel's
 * own threads, several at once. */
typedef int (*lf_ctl_handler)(void *arg, const struct lf_ctl_req *req, struct lf_ctl_out *out);

/* Starts listening (a thread per connection, at most a few at once).
 * NULL and a log line on failure. */
struct lf_ctl *lf_ctl_start(lf_ctl_handler fn, void *arg);
/* The socket's address as the client takes it: "@name" (abstract). */
const char *lf_ctl_address(const struct lf_ctl *c);
/* The pid of the process listening at address, as this process's pid
 * namespace sees it (the kernel's word, from a connection that sends
 * nothing), or a negative errno. */
pid_t lf_ctl_peer_pid(const char *address);
/* Stops accepting and waits for the requests under way to end. */
void lf_ctl_stop(struct lf_ctl *c);

/* The client: sends ticket and argv to address, copies the answer's text
 * to out and err as it arrives, and returns the exit code the daemon
 * sent, or a negative errno when the exchange failed (-ECONNREFUSED: no
 * daemon listens there any more; -EPROTO: a malformed answer). */
int lf_ctl_call(const char *address, const char *ticket, int argc, const char *const *argv,
                FILE *out, FILE *err);

#endif
