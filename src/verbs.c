/* verbs: argument checks on our side, the work on the daemon's. */
#include "lakefuse/verbs.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "lakefuse/ctl.h"
#include "lakefuse/json.h"

struct verb {
    const char *name;
    const char *synopsis;
    const char *help;
};

static const struct verb VERBS[] = {
    {"commit", "PATH -m MESSAGE [--meta KEY=VALUE]...",
     "Upload every closed write of PATH's branch, then commit the branch; prints the commit ID."},
    {"status", "PATH", "Uncommitted changes of PATH's branch under PATH (added, changed, removed), "
                       "and this mount's pending uploads and files open for writing."},
    {"log", "PATH [-n N]", "The commits of PATH's ref, newest first."},
    {"branch", "PATH NEW_BRANCH", "Create NEW_BRANCH from the commit PATH's ref points to."},
    {"reset", "PATH [-y]", "Discard uncommitted changes under PATH (a file, a directory or the "
                           "branch root); asks first on a terminal unless -y."},
    {"flush", "PATH", "Upload every closed write under PATH now; names the files that failed."},
    {"refs", "PATH", "The repository's branches and tags and the commit each points to."},
    {"stats", "PATH [--json] [--watch]",
     "The mount's counters: requests by operation, errors and retries by kind, bytes in and "
     "out, cache hits and misses and bytes held, readahead, staged files and uploads waiting "
     "or failed, open files. --json prints one JSON object per line for scripts; --watch "
     "prints them every second (on a terminal, redrawn in place) until interrupted."},
};
#define NVERBS (sizeof(VERBS) / sizeof(VERBS[0]))

static const struct verb *find_verb(const char *name)
{
    for (size_t i = 0; i < NVERBS; i++)
        if (strcmp(VERBS[i].name, name) == 0)
            return &VERBS[i];
    return NULL;
}

bool lf_verb_known(const char *name) { return find_verb(name) != NULL; }

void lf_verbs_usage(FILE *out)
{
    for (size_t i = 0; i < NVERBS; i++)
        fprintf(out, "  lakefuse %s %s\n", VERBS[i].name, VERBS[i].synopsis);
}

static void verb_usage(const struct verb *v, FILE *out)
{
    fprintf(out, "usage: lakefuse %s %s\n  %s\n", v->name, v->synopsis, v->help);
    if (strcmp(v->name, "stats") == 0)
        fprintf(out, "PATH is the mount point or any path inside the mount.\n");
    else
        fprintf(out, "PATH is any path inside a lakefuse mount of a branch or ref; the mount's "
                     "daemon does the work with its own credentials.\n");
}

static int usage_error(const struct verb *v, const char *why)
{
    fprintf(stderr, "lakefuse %s: %s\n", v->name, why);
    fprintf(stderr, "usage: lakefuse %s %s\n", v->name, v->synopsis);
    return 2;
}

/* A ticket for PATH from the daemon that serves it. verb NULL: quietly. */
static int get_ticket(const char *verb, const char *path, char *address, size_t alen,
                      char *ticket, size_t tlen)
{
    char buf[256];
    ssize_t n = getxattr(path, LF_CTL_XATTR, buf, sizeof(buf) - 1);
    if (n < 0 && !verb)
        return 1;
    if (n < 0) {
        int e = errno;
        if (e == ENOTSUP || e == ENODATA || e == ENOSYS)
            fprintf(stderr, "lakefuse %s: %s is not inside a lakefuse mount\n", verb, path);
        else if (e == ENOTCONN)
            fprintf(stderr, "lakefuse %s: the mount holding %s has lost its daemon (`lakefuse "
                            "unmount` it and mount again)\n", verb, path);
        else
            fprintf(stderr, "lakefuse %s: %s: %s\n", verb, path, strerror(e));
        return 1;
    }
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    char *nl2 = nl ? strchr(nl + 1, '\n') : NULL;
    if (!nl || !nl2 || (size_t)(nl - buf) >= alen || (size_t)(nl2 - nl - 1) >= tlen) {
        if (!verb)
            return 1;
        fprintf(stderr, "lakefuse %s: the mount of %s answered oddly (another lakefuse "
                        "version?)\n", verb, path);
        return 1;
    }
    memcpy(address, buf, (size_t)(nl - buf));
    address[nl - buf] = '\0';
    memcpy(ticket, nl + 1, (size_t)(nl2 - nl - 1));
    ticket[nl2 - nl - 1] = '\0';
    return 0;
}

static int call(const char *verb, const char *address, const char *ticket, int argc,
                const char *const *argv, FILE *out)
{
    int rc = lf_ctl_call(address, ticket, argc, argv, out, stderr);
    if (rc < 0) {
        fprintf(stderr, "lakefuse %s: cannot reach the mount's daemon: %s\n", verb,
                strerror(-rc));
        return 1;
    }
    return rc;
}

/* reset without -y on a terminal: say what goes, and ask. */
static bool confirm_reset(const char *address, const char *ticket)
{
    char *where = NULL;
    size_t wlen = 0;
    FILE *w = open_memstream(&where, &wlen);
    const char *argv[] = {"where"};
    int rc = w ? call("reset", address, ticket, 1, argv, w) : 1;
    if (w)
        fclose(w);
    bool yes = false;
    if (rc == 0) {
        where[strcspn(where, "\n")] = '\0';
        fprintf(stderr, "Discard every uncommitted change under %s? [y/N] ", where);
        char line[16];
        yes = fgets(line, sizeof(line), stdin) && (line[0] == 'y' || line[0] == 'Y');
    }
    free(where);
    return yes;
}

/* The daemon's answer to argv, caught: its stdout in *text (the
 * caller's to free). Returns the exit code, or 1 when the daemon could
 * not be asked (quiet: verb NULL). */
static int call_caught(const char *verb, const char *path, int argc, const char *const *argv,
                       char **text)
{
    char address[128], ticket[128], *err = NULL;
    size_t tlen = 0, elen = 0;
    *text = NULL;
    if (get_ticket(verb, path, address, sizeof(address), ticket, sizeof(ticket)))
        return 1;
    FILE *o = open_memstream(text, &tlen), *e = open_memstream(&err, &elen);
    int rc = o && e ? lf_ctl_call(address, ticket, argc, argv, o, e) : -ENOMEM;
    if (o)
        fclose(o);
    if (e)
        fclose(e);
    if (verb && rc < 0)
        fprintf(stderr, "lakefuse %s: cannot reach the mount's daemon: %s\n", verb,
                strerror(-rc));
    else if (verb && rc > 0 && err)
        fputs(err, stderr);
    free(err);
    if (rc != 0) {
        free(*text);
        *text = NULL;
    }
    return rc < 0 ? 1 : rc;
}

/* stats --watch: a block every second until interrupted or the mount
 * goes. On a terminal each block replaces the last, as top does; else
 * they follow each other (a blank line between text blocks, one JSON
 * object per line), for a log or a pipe. */
static int watch_stats(const char *path, const char *form)
{
    const char *fwd[] = {"stats", form};
    bool tty = isatty(STDOUT_FILENO);
    for (bool first = true;; first = false) {
        char *text;
        int rc = call_caught("stats", path, 2, fwd, &text);
        if (rc)
            return rc;
        if (tty)
            fputs("\033[H\033[2J", stdout); /* home, clear: the whole block at once */
        else if (!first && strcmp(form, "text") == 0)
            fputc('\n', stdout);
        fputs(text, stdout);
        free(text);
        if (fflush(stdout) != 0)
            return 1;
        struct timespec second = {1, 0};
        nanosleep(&second, NULL);
    }
}

int lf_stats_pending(const char *path, uint64_t *files, uint64_t *bytes)
{
    const char *fwd[] = {"stats", "json"};
    char *text;
    struct lf_json *root = NULL;
    const struct lf_json *up;
    int64_t f = 0, b = 0;
    int rc = call_caught(NULL, path, 2, fwd, &text) ? -EIO : 0;
    if (!rc)
        rc = lf_json_parse(text, strlen(text), LF_JSON_MAX, &root, NULL);
    if (!rc && !(rc = lf_json_get_obj(root, "uploads", &up)) &&
        !(rc = lf_json_get_int(up, "waiting_files", &f)))
        rc = lf_json_get_int(up, "waiting_bytes", &b);
    if (!rc) {
        *files = (uint64_t)f;
        *bytes = (uint64_t)b;
    }
    lf_json_free(root);
    free(text);
    return rc;
}

pid_t lf_daemon_pid(const char *path)
{
    char address[128], ticket[128];
    if (get_ticket(NULL, path, address, sizeof(address), ticket, sizeof(ticket)) != 0)
        return -1;
    pid_t pid = lf_ctl_peer_pid(address);
    return pid > 0 ? pid : -1;
}

int lf_verb_main(int argc, char **argv)
{
    const struct verb *v = find_verb(argv[0]);
    static const struct option longopts[] = {
        {"message", required_argument, NULL, 'm'}, {"meta", required_argument, NULL, 'M'},
        {"yes", no_argument, NULL, 'y'}, {"help", no_argument, NULL, 'h'},
        {"json", no_argument, NULL, 'J'}, {"watch", no_argument, NULL, 'W'}, {0}};
    const char *message = NULL, *count = NULL;
    const char *fwd[LF_CTL_MAX_ARGS];
    int nfwd = 0, ch;
    bool yes = false, json = false, watch = false;
    if (!v)
        return 2;
    fwd[nfwd++] = v->name;
    const char *metas[LF_CTL_MAX_ARGS];
    int nmeta = 0;
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "m:n:yh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            verb_usage(v, stdout);
            return 0;
        case 'm':
            if (strcmp(v->name, "commit") != 0)
                return usage_error(v, "-m is for commit");
            message = optarg;
            break;
        case 'M':
            if (strcmp(v->name, "commit") != 0)
                return usage_error(v, "--meta is for commit");
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return usage_error(v, "--meta takes KEY=VALUE");
            if (nmeta == LF_CTL_MAX_ARGS - 8)
                return usage_error(v, "too many --meta");
            metas[nmeta++] = optarg;
            break;
        case 'n':
            if (strcmp(v->name, "log") != 0)
                return usage_error(v, "-n is for log");
            count = optarg;
            break;
        case 'y':
            if (strcmp(v->name, "reset") != 0)
                return usage_error(v, "-y is for reset");
            yes = true;
            break;
        case 'J':
        case 'W':
            if (strcmp(v->name, "stats") != 0)
                return usage_error(v, ch == 'J' ? "--json is for stats" : "--watch is for stats");
            *(ch == 'J' ? &json : &watch) = true;
            break;
        default: {
            char why[128];
            snprintf(why, sizeof(why), "unknown option '%s'", argv[optind - 1]);
            if (optopt && strchr("mn", optopt))
                snprintf(why, sizeof(why), "-%c needs a value", optopt);
            return usage_error(v, why);
        }
        }
    }
    int npos = argc - optind, want = strcmp(v->name, "branch") == 0 ? 2 : 1;
    if (npos < want)
        return usage_error(v, npos == 0 ? "missing PATH" : "missing NEW_BRANCH");
    if (npos > want)
        return usage_error(v, "too many arguments");
    const char *path = argv[optind];
    if (strcmp(v->name, "commit") == 0) {
        if (!message)
            return usage_error(v, "missing -m MESSAGE");
        if (!message[0])
            return usage_error(v, "the message is empty");
        fwd[nfwd++] = message;
        for (int i = 0; i < nmeta; i++)
            fwd[nfwd++] = metas[i];
    } else if (strcmp(v->name, "log") == 0) {
        if (count) {
            char *end;
            errno = 0;
            long n = strtol(count, &end, 10);
            if (errno || *end || end == count || n <= 0 || n > INT_MAX)
                return usage_error(v, "-n takes a positive number");
        }
        fwd[nfwd++] = count ? count : "0";
    } else if (strcmp(v->name, "branch") == 0) {
        fwd[nfwd++] = argv[optind + 1];
    } else if (strcmp(v->name, "stats") == 0) {
        if (watch)
            return watch_stats(path, json ? "json" : "text");
        fwd[nfwd++] = json ? "json" : "text";
    }

    char address[128], ticket[128];
    if (get_ticket(v->name, path, address, sizeof(address), ticket, sizeof(ticket)))
        return 1;
    /* Asked on a terminal only: scripts say what they mean by running it. */
    if (strcmp(v->name, "reset") == 0 && !yes && isatty(STDIN_FILENO) && isatty(STDERR_FILENO)) {
        if (!confirm_reset(address, ticket)) {
            fprintf(stderr, "lakefuse reset: nothing changed\n");
            return 1;
        }
    }
    return call(v->name, address, ticket, nfwd, fwd, stdout);
}
