/* lakefuse: the command line.
 *
 *   lakefuse mount [OPTIONS] [lakefs://REPO[/REF[/PATH]]] MOUNTPOINT
 *   lakefuse unmount [-z] MOUNTPOINT
 *   lakefuse VERB PATH ...   (commit, status, ..., stats: src/verbs.c)
 *   lakefuse lakefs://REPO[/REF[/PATH]] MOUNTPOINT -o OPTS   (mount(8)'s helper form)
 *
 * `mount` checks everything it can before mounting (the gateway answers,
 * the credentials are accepted, the repository and ref exist), so a
 * mistake ends with a message and a non-zero status instead of a mount
 * that fails every access. It mounts before it forks into the background,
 * so when the command returns the mount is live. Threads start only after
 * the fork.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lakefuse/api.h"
#include "lakefuse/config.h"
#include "lakefuse/fs.h"
#include "lakefuse/http.h"
#include "lakefuse/lockdir.h"
#include "lakefuse/log.h"
#include "lakefuse/metrics.h"
#include "lakefuse/mounts.h"
#include "lakefuse/presign.h"
#include "lakefuse/s3.h"
#include "lakefuse/uri.h"
#include "lakefuse/verbs.h"

/* A key rotated under a running mount: the lakectl file it came from is
 * read again when the gateway refuses the old one (lf_s3_opts.reload). */
static int reread_credentials(void *arg, char **ak, char **sk)
{
    return lf_config_read_credentials(arg, ak, sk);
}

static struct lf_store *open_store(const struct lf_config *cfg, unsigned retries)
{
    char source[PATH_MAX + 32];
    if (cfg->cred_file)
        snprintf(source, sizeof(source), "the lakectl file %s", cfg->cred_file);
    else
        snprintf(source, sizeof(source), "the environment");
    struct lf_s3_opts o = {
        .endpoint = cfg->endpoint,
        .access_key = cfg->access_key,
        .secret_key = cfg->secret_key,
        .region = cfg->region,
        .max_conns = cfg->max_requests + 8,
        .connect_timeout_ms = cfg->timeout_ms < 10000 ? cfg->timeout_ms : 10000,
        .stall_timeout_ms = cfg->timeout_ms,
        .retries = retries,
        .ca_bundle = cfg->ca_bundle,
        .insecure = cfg->insecure,
        .reload = cfg->cred_file ? reread_credentials : NULL,
        .reload_arg = cfg->cred_file,
        .cred_source = source,
    };
    return lf_s3_store_new(&o);
}

/* The REST API, for the versioning verbs and --pin: same endpoint and
 * credentials as the gateway. */
static struct lf_api *open_api(const struct lf_config *cfg)
{
    struct lf_api_opts o = {
        .endpoint = cfg->endpoint,
        .access_key = cfg->access_key,
        .secret_key = cfg->secret_key,
        .ca_bundle = cfg->ca_bundle,
        .insecure = cfg->insecure,
        .connect_timeout_ms = cfg->timeout_ms < 10000 ? cfg->timeout_ms : 10000,
        .stall_timeout_ms = cfg->timeout_ms,
        .retries = cfg->retries,
        .backoff_ms = 100,
        .reload = cfg->cred_file ? reread_credentials : NULL,
        .reload_arg = cfg->cred_file,
    };
    return lf_api_new(&o);
}

/* --presign: whether object bytes take presigned URLs, from what the
 * server's storage configuration says. 1 yes, 0 no, or -errno after a
 * message (on, and the server cannot). */
static int want_presign(const struct lf_config *cfg, struct lf_api *api,
                        struct lf_api_storage *caps)
{
    struct lf_api_err e = {0};
    memset(caps, 0, sizeof(*caps));
    if (cfg->presign == LF_PRESIGN_OFF)
        return 0;
    int rc = api ? lf_api_storage_config(api, caps, &e) : -ENOMEM;
    if (rc) {
        if (cfg->presign == LF_PRESIGN_ON) {
            fprintf(stderr, "lakefuse: --presign on: cannot ask the lakeFS server at %s "
                            "whether its storage supports presigned URLs: %s\n",
                    cfg->endpoint, e.message[0] ? e.message : strerror(-rc));
            return rc;
        }
        lf_warn("cannot read the server's storage configuration (%s): data goes through the "
                "gateway", e.message[0] ? e.message : strerror(-rc));
        return 0;
    }
    if (caps->presign)
        return 1;
    if (cfg->presign == LF_PRESIGN_ON) {
        fprintf(stderr, "lakefuse: --presign on: the lakeFS server at %s does not support "
                        "presigned URLs (its storage configuration says pre_sign_support: "
                        "false, blockstore '%s'); mount with --presign auto or off to move "
                        "data through the gateway\n", cfg->endpoint, caps->blockstore_type);
        return -EOPNOTSUPP;
    }
    lf_info("the server's storage (%s) does not support presigned URLs: data goes through "
            "the gateway", caps->blockstore_type);
    return 0;
}

/* The gateway's store, wrapped in the presigned data path when asked. */
static struct lf_store *open_data_store(const struct lf_config *cfg, struct lf_api *api,
                                        const struct lf_api_storage *caps, bool presign)
{
    struct lf_store *gw = open_store(cfg, cfg->retries);
    if (!gw || !presign)
        return gw;
    struct lf_presign_opts o = {
        .gateway = gw,
        .api = api,
        .multipart = caps->presign_multipart,
        .max_conns = cfg->max_requests + 8,
        .connect_timeout_ms = cfg->timeout_ms < 10000 ? cfg->timeout_ms : 10000,
        .stall_timeout_ms = cfg->timeout_ms,
        .retries = cfg->retries,
        .ca_bundle = cfg->ca_bundle,
        .insecure = cfg->insecure,
    };
    lf_info("data path: presigned URLs of the server's storage (%s)%s; metadata through the "
            "gateway", caps->blockstore_type,
            caps->presign_multipart ? ", presigned multipart uploads"
                                    : "; multipart uploads through the gateway");
    return lf_presign_store_new(&o);
}

/* --pin: the ref becomes the commit it points to now, for the life of the
 * mount. */
static int pin_ref(struct lf_config *cfg, struct lf_api *api)
{
    enum lf_ref_type type;
    char commit[LF_COMMIT_ID_MAX];
    struct lf_api_err e = {0};
    if (!cfg->repo || !cfg->ref) {
        fprintf(stderr, "lakefuse: --pin needs a ref to pin: lakefs://REPO/REF\n");
        return -EINVAL;
    }
    int rc = api ? lf_api_resolve(api, cfg->repo, cfg->ref, &type, commit, &e) : -ENOMEM;
    if (rc) {
        fprintf(stderr, "lakefuse: --pin: cannot resolve '%s' in repository '%s': %s\n",
                cfg->ref, cfg->repo, e.message[0] ? e.message : strerror(-rc));
        return rc;
    }
    char *pinned = strdup(commit);
    if (!pinned)
        return -ENOMEM;
    lf_info("pinned %s/%s to commit %s", cfg->repo, cfg->ref, commit);
    free(cfg->ref);
    cfg->ref = pinned;
    return 0;
}

static const char *explain(int rc)
{
    switch (rc) {
    case -ECONNREFUSED:
        return "connection refused (is the server running, and is the port right?)";
    case -EHOSTUNREACH:
        return "host not found or unreachable";
    case -ETIMEDOUT:
        return "timed out";
    case -EACCES:
        return "access denied: the gateway rejected the credentials "
               "(check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)";
    case -EKEYREJECTED:
        return "TLS certificate verification failed (see --ca-bundle)";
    case LF_HTTP_ETLS:
        return "the TLS handshake failed; the server may speak plain HTTP on that port "
               "(then use an http:// endpoint)";
    case -EPROTO:
    case -EIO:
        return "the server's answer was not an S3 answer (is this a lakeFS endpoint?)";
    default:
        return strerror(-rc);
    }
}

/* Is `name` among the repository's branches? 1 yes, 0 no, or -errno. */
static int is_branch(struct lf_store *st, const char *repo, const char *name)
{
    struct lf_list_page page;
    char *token = NULL;
    int found = 0, rc;
    do {
        rc = st->ops->list(st->ctx, repo, name, "/", token, 1000, &page);
        free(token);
        token = NULL;
        if (rc)
            return rc;
        for (size_t i = 0; i < page.nprefixes; i++) {
            size_t n = strlen(name);
            if (strncmp(page.prefixes[i], name, n) == 0 && strcmp(page.prefixes[i] + n, "/") == 0)
                found = 1;
        }
        if (page.truncated && page.next_token) {
            token = page.next_token;
            page.next_token = NULL;
        }
        lf_list_page_free(&page);
    } while (token && !found);
    free(token);
    return found;
}

/* A mounted prefix must be a directory of the ref. On a branch it may not
 * exist yet (writing there makes it); elsewhere nothing could appear. */
static int check_subdir(struct lf_store *st, const struct lf_config *cfg, bool branch)
{
    struct lf_list_page page;
    char key[LF_REF_MAX + LF_PATH_MAX + 4];
    struct lf_obj_attr a;
    snprintf(key, sizeof(key), "%s/%s/", cfg->ref, cfg->path);
    int rc = st->ops->list(st->ctx, cfg->repo, key, "/", NULL, 1, &page);
    if (rc) {
        fprintf(stderr, "lakefuse: cannot check lakefs://%s/%s/%s: %s\n", cfg->repo, cfg->ref,
                cfg->path, explain(rc));
        return rc;
    }
    bool dir = page.nentries + page.nprefixes > 0;
    lf_list_page_free(&page);
    if (dir)
        return 0;
    key[strlen(key) - 1] = '\0';
    rc = st->ops->head(st->ctx, cfg->repo, key, &a);
    if (rc == 0) {
        fprintf(stderr, "lakefuse: lakefs://%s/%s/%s is a file, not a directory: mount the "
                        "directory it is in\n", cfg->repo, cfg->ref, cfg->path);
        return -ENOTDIR;
    }
    if (!branch) {
        fprintf(stderr, "lakefuse: nothing under '%s' in ref '%s' of repository '%s'\n",
                cfg->path, cfg->ref, cfg->repo);
        return -ENOENT;
    }
    lf_warn("nothing under '%s' on branch '%s' yet: files written to the mount create it",
            cfg->path, cfg->ref);
    return 0;
}

/* Checks the gateway, credentials, repository and ref; fills root. */
static int preflight(const struct lf_config *cfg, struct lf_fs_root *root)
{
    struct lf_store *st = open_store(cfg, 1);
    char **names = NULL;
    size_t n = 0;
    int rc = st ? 0 : -ENOMEM;

    if (!rc)
        rc = st->ops->list_buckets(st->ctx, &names, &n);
    if (rc) {
        fprintf(stderr, "lakefuse: cannot use the lakeFS gateway at %s: %s\n", cfg->endpoint,
                explain(rc));
        goto out;
    }
    root->repo = cfg->repo;
    root->ref = cfg->ref;
    if (cfg->repo) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= strcmp(names[i], cfg->repo) == 0;
        if (!found) {
            fprintf(stderr, "lakefuse: repository '%s' not found at %s\n", cfg->repo,
                    cfg->endpoint);
            rc = -ENOENT;
            goto out;
        }
    }
    if (cfg->ref) {
        rc = is_branch(st, cfg->repo, cfg->ref); /* even a name of 64 hex digits */
        if (rc < 0)
            goto ref_error;
        root->ref_is_branch = rc == 1;
        if (!root->ref_is_branch) {
            /* A tag, commit or expression: it must resolve. */
            struct lf_list_page page;
            char prefix[LF_REF_MAX + 2];
            snprintf(prefix, sizeof(prefix), "%s/", cfg->ref);
            rc = st->ops->list(st->ctx, cfg->repo, prefix, "/", NULL, 1, &page);
            if (rc)
                goto ref_error;
            lf_list_page_free(&page);
        }
        rc = cfg->path ? check_subdir(st, cfg, root->ref_is_branch) : 0;
        root->path = cfg->path;
    }
    goto out;
ref_error:
    if (rc == -ENOENT || rc == -EINVAL)
        fprintf(stderr, "lakefuse: ref '%s' not found in repository '%s'\n", cfg->ref,
                cfg->repo);
    else
        fprintf(stderr, "lakefuse: cannot check ref '%s': %s\n", cfg->ref, explain(rc));
    if (rc == -EINVAL)
        rc = -ENOENT;
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (st)
        lf_store_free(st);
    return rc;
}

static int prepare_cache_dir(struct lf_config *cfg, struct lf_lockdir **own)
{
    const char *dir = cfg->cache_dir;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "lakefuse: cannot create cache directory %s: %s\n", dir, strerror(errno));
        return -errno;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "lakefuse: cache directory %s is not a directory\n", dir);
        return -ENOTDIR;
    }
    if ((st.st_mode & 077) != 0 && chmod(dir, 0700) != 0) {
        fprintf(stderr, "lakefuse: cache directory %s is open to other users and cannot be "
                        "made private: %s\n", dir, strerror(errno));
        return -EACCES;
    }
    /* The daemon runs from "/": keep the directory's absolute name. */
    char *abs = realpath(dir, NULL);
    if (!abs) {
        fprintf(stderr, "lakefuse: cache directory %s: %s\n", dir, strerror(errno));
        return -errno;
    }
    free(cfg->cache_dir);
    cfg->cache_dir = abs;
    char staging[PATH_MAX + 16];
    snprintf(staging, sizeof(staging), "%s/staging", abs);
    /* This mount's own area, locked for the daemon's life: another mount
     * on the same cache directory never takes what it stages. */
    int rc = lf_lockdir_create(staging, own);
    if (rc == 0 && !(cfg->staging_dir = strdup(lf_lockdir_path(*own))))
        rc = -ENOMEM;
    if (rc) {
        fprintf(stderr, "lakefuse: cannot create a staging area in %s: %s\n", staging,
                strerror(-rc));
        return rc;
    }
    return 0;
}

static int run_fusermount(const char *flags, const char *mountpoint)
{
    pid_t pid = fork();
    if (pid == 0) {
        execlp("fusermount3", "fusermount3", flags, mountpoint, (char *)NULL);
        fprintf(stderr, "lakefuse: cannot run fusermount3: %s\n", strerror(errno));
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return 1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* Refuses a mount point that is already mounted (FUSE would stack a
 * second mount over it), and clears one left behind by a killed daemon,
 * which every access would answer with "Transport endpoint is not
 * connected". */
static int check_mountpoint(const char *mp)
{
    struct stat st, parent;
    struct statfs sf;
    char up[4096];
    /* statfs always reaches a FUSE daemon (stat may be answered from the
     * kernel's attribute cache), so it tells a dead mount apart. */
    if (statfs(mp, &sf) != 0 && errno == ENOTCONN) {
        fprintf(stderr, "lakefuse: %s is a stale mount of a daemon that is gone; "
                        "unmounting it first\n", mp);
        if (run_fusermount("-uz", mp) != 0 || stat(mp, &st) != 0) {
            fprintf(stderr, "lakefuse: cannot clear the stale mount on %s: run "
                            "`fusermount3 -uz %s`\n", mp, mp);
            return -EBUSY;
        }
    }
    if (stat(mp, &st) != 0) {
        fprintf(stderr, "lakefuse: mount point %s: %s\n", mp, strerror(errno));
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "lakefuse: mount point %s is not a directory\n", mp);
        return -ENOTDIR;
    }
    snprintf(up, sizeof(up), "%s/..", mp);
    if (stat(up, &parent) == 0 && (parent.st_dev != st.st_dev || parent.st_ino == st.st_ino)) {
        fprintf(stderr, "lakefuse: %s is busy: something is already mounted there "
                        "(unmount it first with `lakefuse unmount %s`)\n", mp, mp);
        return -EBUSY;
    }
    return 0;
}

/* Files in the mount point are not lost, only hidden by the mount: say
 * so, since they seem to vanish. */
static void warn_if_not_empty(const char *mp)
{
    DIR *d = opendir(mp);
    struct dirent *e;
    size_t n = 0;
    while (d && (e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    if (n)
        fprintf(stderr, "lakefuse: warning: %s is not empty: its %zu entr%s stay%s hidden "
                        "while lakefuse is mounted there\n", mp, n, n == 1 ? "y" : "ies",
                n == 1 ? "s" : "");
}

/* The one line a successful mount prints: what, where, how, and where
 * its staged writes live. */
static void announce(const struct lf_config *cfg, const struct lf_fs_root *root)
{
    const char *how = cfg->read_only                      ? "read-only"
                      : !cfg->ref                         ? "branches read-write, other refs read-only"
                      : root->ref_is_branch && !lf_ref_is_full_commit_id(cfg->ref) ? "read-write"
                                                          : "read-only";
    if (cfg->repo)
        printf("mounted lakefs://%s%s%s%s%s on %s (%s; cache %s)\n", cfg->repo,
               cfg->ref ? "/" : "", cfg->ref ? cfg->ref : "", cfg->path ? "/" : "",
               cfg->path ? cfg->path : "", cfg->mountpoint, how, cfg->cache_dir);
    else
        printf("mounted all repositories of %s on %s (%s; cache %s)\n", cfg->endpoint,
               cfg->mountpoint, how, cfg->cache_dir);
    fflush(stdout);
}

/* The daemon holds a secret: no core dumps, no ptrace by the same user,
 * and no copy in the environment that children (fusermount3) inherit or
 * /proc/PID/environ shows. */
static void protect_secrets(void)
{
    static const char *const vars[] = {"AWS_SECRET_ACCESS_KEY",
                                       "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY",
                                       "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID",
                                       "LAKECTL_CREDENTIALS_ACCESS_KEY_ID"};
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        char *v = getenv(vars[i]);
        if (v)
            OPENSSL_cleanse(v, strlen(v)); /* the original bytes, not a copy */
        unsetenv(vars[i]);
    }
}

/* Forks into the background. Returns 0 in the child, with the write end
 * of a pipe in *ready on which it reports once whether it started (see
 * daemon_ready); the parent waits for that report and exits with it, so
 * `mount` fails when the daemon cannot start. */
static int daemonize(int *ready)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -errno;
    }
    if (pid > 0) {
        unsigned char st = 1;
        ssize_t n;
        close(p[1]);
        while ((n = read(p[0], &st, 1)) < 0 && errno == EINTR)
            ;
        if (n != 1)
            fprintf(stderr, "lakefuse: the daemon ended before the mount was ready\n");
        _exit(n == 1 ? st : 1); /* the child owns everything from here */
    }
    close(p[0]);
    setsid();
    if (chdir("/") != 0)
        lf_warn("cannot change to /: %s", strerror(errno));
    int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nullfd >= 0) {
        dup2(nullfd, STDIN_FILENO);
        close(nullfd);
    }
    *ready = p[1];
    return 0;
}

/* Tells the waiting `mount` command how the start went (0: ready); the
 * daemon's stdout and stderr then stop pointing at its terminal. */
static void daemon_ready(int *ready, int status)
{
    if (*ready < 0)
        return;
    int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nullfd >= 0) {
        dup2(nullfd, STDOUT_FILENO);
        dup2(nullfd, STDERR_FILENO);
        close(nullfd);
    }
    unsigned char st = (unsigned char)status;
    if (write(*ready, &st, 1) != 1)
        lf_warn("cannot tell the mount command that the daemon is ready: %s", strerror(errno));
    close(*ready);
    *ready = -1;
}

static void log_stats(struct lf_store *st, bool presign)
{
    struct lf_s3_stats s;
    lf_s3_get_stats(presign ? lf_presign_gateway(st) : st, &s);
    lf_info("%srequests %llu, retries %llu, failed operations %llu, %llu bytes in, "
            "%llu bytes out", presign ? "gateway: " : "", (unsigned long long)s.requests,
            (unsigned long long)s.retries, (unsigned long long)s.failures,
            (unsigned long long)s.bytes_in, (unsigned long long)s.bytes_out);
    if (!presign)
        return;
    struct lf_presign_stats p;
    lf_presign_get_stats(st, &p);
    lf_info("storage: requests %llu, retries %llu, URLs renewed %llu, failed operations %llu, "
            "%llu bytes in, %llu bytes out; lakeFS API calls %llu; sent to the gateway "
            "instead %llu", (unsigned long long)p.requests, (unsigned long long)p.retries,
            (unsigned long long)p.refreshes, (unsigned long long)p.failures,
            (unsigned long long)p.bytes_in, (unsigned long long)p.bytes_out,
            (unsigned long long)p.api_calls, (unsigned long long)p.fallbacks);
}

/* mount.fuse3's drop_privileges opens /dev/fuse and mounts itself, then
 * hands lakefuse the descriptor as the mount point "/dev/fd/N". */
static bool is_fuse_fd(const char *mp)
{
    return strncmp(mp, "/dev/fd/", 8) == 0;
}

/* helper: the form mount(8) runs through mount.fuse3 (SOURCE MOUNTPOINT
 * -o OPTS), quiet on success as mount(8) is. */
static int cmd_mount(int argc, char **argv, bool helper)
{
    struct lf_config cfg;
    struct lf_fs_root root = {0};
    struct fuse_session *se = NULL;
    struct lf_store *store = NULL;
    struct lf_fs *fs = NULL;
    struct lf_lockdir *own = NULL;
    struct lf_api *api = NULL;
    struct lf_api_storage caps;
    int log_fd = -1, ready = -1, rc, status = 1, presign = 0;
    bool mounted = false;

    rc = helper ? lf_config_parse_helper(&cfg, argc, argv, stderr)
                : lf_config_parse(&cfg, argc, argv, stderr);
    protect_secrets();
    if (rc == 1) {
        lf_config_free(&cfg);
        return 0;
    }
    if (rc)
        goto out;
    lf_log_set_level(cfg.log_level);
    if (!cfg.foreground && !cfg.log_file)
        lf_log_hold_notes(1); /* the log is syslog once in the background */
    if (cfg.log_file) {
        log_fd = open(cfg.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (log_fd < 0) {
            fprintf(stderr, "lakefuse: cannot open log file %s: %s\n", cfg.log_file,
                    strerror(errno));
            goto out;
        }
        lf_log_set_fd(log_fd);
    }
    if (cfg.insecure)
        lf_warn("--insecure: the server's TLS certificate is NOT verified");
    if ((!is_fuse_fd(cfg.mountpoint) && check_mountpoint(cfg.mountpoint)) ||
        prepare_cache_dir(&cfg, &own) || lf_http_global_init() != 0)
        goto out;
    if (cfg.metrics_file && (rc = lf_metrics_check_file(cfg.metrics_file)) != 0) {
        fprintf(stderr, "lakefuse: --metrics-file %s: %s\n", cfg.metrics_file, strerror(-rc));
        goto out;
    }
    if (!is_fuse_fd(cfg.mountpoint))
        warn_if_not_empty(cfg.mountpoint);
    api = open_api(&cfg);
    if (!api)
        lf_warn("no lakeFS API client: commit, status and the other verbs will not work");
    if (preflight(&cfg, &root))
        goto out;
    if (cfg.pin) {
        if (pin_ref(&cfg, api))
            goto out;
        root.ref = cfg.ref; /* the commit now */
        root.ref_is_branch = false;
    }
    if ((presign = want_presign(&cfg, api, &caps)) < 0)
        goto out;

    store = open_data_store(&cfg, api, &caps, presign == 1);
    lf_config_forget_secret(&cfg); /* the signer and the API client have their own copies */
    fs = store ? lf_fs_new(&cfg, store, &root) : NULL;
    if (!fs) {
        fprintf(stderr, "lakefuse: out of memory\n");
        goto out;
    }
    lf_fs_set_api(fs, api);
    struct fuse_args args = FUSE_ARGS_INIT(cfg.fuse_argc, cfg.fuse_argv);
    se = fuse_session_new(&args, lf_fs_ops(), sizeof(*lf_fs_ops()), fs);
    fuse_opt_free_args(&args); /* libfuse may have added to them */
    if (!se) {
        fprintf(stderr, "lakefuse: bad FUSE options\n");
        goto out;
    }
    if (fuse_session_mount(se, cfg.mountpoint) != 0) {
        fprintf(stderr, "lakefuse: cannot mount on %s (missing, busy, or already a mount "
                        "point?)\n", cfg.mountpoint);
        goto out;
    }
    mounted = true;
    lf_fs_attach(fs, se);
    if (fuse_set_signal_handlers(se) != 0)
        goto out;
    if (!cfg.foreground) {
        if (!cfg.log_file)
            lf_log_use_syslog(1);
        /* Returns in the child; the parent exits once the child is ready. */
        if ((rc = daemonize(&ready)) != 0) {
            fprintf(stderr, "lakefuse: cannot start the daemon: %s\n", strerror(-rc));
            goto out;
        }
        lf_log_release_notes(1);
    } else if (chdir("/") != 0) {
        lf_warn("cannot change to /: %s", strerror(errno));
    }
    if ((rc = lf_fs_start(fs)) != 0) {
        fprintf(stderr, "lakefuse: cannot start: %s\n", strerror(-rc));
        lf_err("cannot start: %s", strerror(-rc));
        goto out;
    }
    /* Only now is the mount usable: the one line says so, then `mount`
     * returns (daemon_ready). */
    if (!cfg.helper)
        announce(&cfg, &root);
    daemon_ready(&ready, 0);
    lf_info("mounted %s%s%s%s%s%s at %s (pid %d)", cfg.repo ? "lakefs://" : "all repositories",
            cfg.repo ? cfg.repo : "", cfg.ref ? "/" : "", cfg.ref ? cfg.ref : "",
            cfg.path ? "/" : "", cfg.path ? cfg.path : "", cfg.mountpoint, (int)getpid());

    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    if (!lc)
        goto out;
    fuse_loop_cfg_set_max_threads(lc, 64);
    fuse_loop_cfg_set_idle_threads(lc, 16);
    rc = fuse_session_loop_mt(se, lc);
    fuse_loop_cfg_destroy(lc);
    status = rc == 0 ? 0 : 1;
    log_stats(store, presign == 1);
    lf_info("unmounted %s", cfg.mountpoint);
out:
    lf_log_release_notes(1); /* a failed mount's notes help explain it */
    if (se) {
        fuse_remove_signal_handlers(se);
        if (mounted)
            fuse_session_unmount(se);
        fuse_session_destroy(se);
    }
    lf_fs_free(fs);
    lf_api_free(api);
    if (store)
        lf_store_free(store);
    lf_lockdir_free(own, true); /* kept when it still holds staged files */
    daemon_ready(&ready, 1);
    lf_config_free(&cfg);
    if (log_fd >= 0)
        close(log_fd);
    return status;
}

static void unmount_usage(FILE *out)
{
    fprintf(out,
            "usage: lakefuse unmount [-z] MOUNTPOINT\n\n"
            "Uploads what is still staged, saying how many files and bytes are left,\n"
            "then unmounts and waits for the daemon to exit. A mount that is in use\n"
            "(a shell's working directory, an open file) stays mounted: the message\n"
            "names the processes holding it.\n\n"
            "  -z, --lazy     detach now even if busy, and do not wait: the mount goes\n"
            "                 away when its last user leaves it\n"
            "  -h, --help     show this help\n");
}

/* fusermount3 FLAGS MP with its messages caught in msg; its exit status. */
static int fusermount_quiet(const char *flags, const char *mp, char *msg, size_t cap)
{
    int p[2];
    msg[0] = '\0';
    if (pipe(p) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], STDERR_FILENO);
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        close(p[1]);
        execlp("fusermount3", "fusermount3", flags, mp, (char *)NULL);
        fprintf(stderr, "cannot run fusermount3: %s\n", strerror(errno));
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (pid > 0 && (r = read(p[0], msg + n, cap - 1 - n)) > 0 && n + (size_t)r < cap - 1)
        n += (size_t)r;
    msg[n] = '\0';
    close(p[0]);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return 1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* Names who keeps mp busy, and the ways out. */
static void explain_busy(const char *mp)
{
    struct lf_holder *h = NULL;
    size_t n = 0, hidden = 0;
    fprintf(stderr, "lakefuse: %s is busy: still in use", mp);
    if (lf_mount_holders("/proc", mp, &h, &n, &hidden) == 0 && n > 0) {
        fprintf(stderr, " by\n");
        for (size_t i = 0; i < n && i < 20; i++)
            fprintf(stderr, "    pid %d (%s): %s\n", (int)h[i].pid, h[i].comm, h[i].what);
        if (n > 20)
            fprintf(stderr, "    ... and %zu more\n", n - 20);
    } else {
        fprintf(stderr, " (by no process this user can see)\n");
    }
    if (hidden)
        fprintf(stderr, "  (%zu other process%s could not be inspected; as root, `fuser -vm "
                        "%s` lists every user)\n", hidden, hidden == 1 ? "" : "es", mp);
    fprintf(stderr, "Close those files or leave that directory and try again, or detach it "
                    "now with `lakefuse unmount -z %s` (lazy: it goes away when the last user "
                    "leaves).\n", mp);
    free(h);
}

/* 0 when mp is a lakefuse mount; otherwise says what it is and returns 1. */
static int check_lakefuse_mount(const char *arg, const char *mp)
{
    char *type = NULL, *src = NULL;
    int rc = lf_mount_find("/proc/self/mountinfo", mp, &type, &src);
    if (rc == -ENOENT) {
        struct stat st;
        if (stat(arg, &st) != 0)
            fprintf(stderr, "lakefuse: %s: %s\n", arg, strerror(errno));
        else
            fprintf(stderr, "lakefuse: %s is not mounted\n", arg);
    } else if (rc) {
        fprintf(stderr, "lakefuse: cannot read the mount table: %s\n", strerror(-rc));
    } else if (strcmp(type, "fuse.lakefuse") != 0) {
        fprintf(stderr, "lakefuse: %s is not a lakefuse mount (it is %s, from %s): unmount it "
                        "with umount or fusermount3 -u\n", arg, type, src);
        rc = -EINVAL;
    }
    free(type);
    free(src);
    return rc ? 1 : 0;
}

/* What is left to upload, on a terminal, while the unmount flush runs:
 * one line redrawn as uploads finish. */
struct progress {
    const char *mp;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool done;
};

static void *progress_main(void *arg)
{
    struct progress *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->done) {
        pthread_mutex_unlock(&p->lock);
        uint64_t files, bytes;
        char hb[32];
        if (lf_stats_pending(p->mp, &files, &bytes) == 0)
            fprintf(stderr, "\r\033[Klakefuse: uploading before unmount: %" PRIu64
                            " file%s (%s) left", files, files == 1 ? "" : "s",
                    lf_human_bytes(bytes, hb, sizeof(hb)));
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 300 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&p->lock);
        if (!p->done)
            pthread_cond_timedwait(&p->wake, &p->lock, &until);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Uploads what mp's daemon has staged (the flush attribute blocks until it
 * is done) and says what is left: a line that counts down on a terminal,
 * one summary line otherwise, nothing when nothing waits. Returns whether
 * some uploads failed. */
static bool flush_before_unmount(const char *mp)
{
    uint64_t files = 0, bytes = 0;
    char hb[32];
    struct progress p = {.mp = mp};
    pthread_t t;
    bool waiting = lf_stats_pending(mp, &files, &bytes) == 0 && files > 0;
    bool tty = waiting && isatty(STDERR_FILENO);
    if (waiting && !tty)
        fprintf(stderr, "lakefuse: uploading %" PRIu64 " file%s (%s) before unmounting %s\n",
                files, files == 1 ? "" : "s", lf_human_bytes(bytes, hb, sizeof(hb)), mp);
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.wake, NULL);
    bool shown = tty && pthread_create(&t, NULL, progress_main, &p) == 0;
    bool unsent = setxattr(mp, "user.lakefuse.flush", "1", 1, 0) != 0 && errno == EIO;
    if (shown) {
        pthread_mutex_lock(&p.lock);
        p.done = true;
        pthread_cond_signal(&p.wake);
        pthread_mutex_unlock(&p.lock);
        pthread_join(t, NULL);
        if (unsent)
            fputc('\n', stderr);
        else
            fprintf(stderr, "\r\033[Klakefuse: uploaded %" PRIu64 " file%s (%s) before "
                            "unmounting\n", files, files == 1 ? "" : "s",
                    lf_human_bytes(bytes, hb, sizeof(hb)));
    }
    pthread_cond_destroy(&p.wake);
    pthread_mutex_destroy(&p.lock);
    return unsent;
}

/* A pidfd of the daemon serving mp, or -1 if it cannot be known. */
static int daemon_pidfd(const char *mp)
{
    pid_t pid = lf_daemon_pid(mp);
    return pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
}

/* The daemon makes a last attempt at what is still staged as it exits,
 * after fusermount3 has returned: waiting for it makes this command's
 * word final, and lets a mount started right after on the same cache
 * directory adopt what is left (a staging area is adopted only once its
 * daemon is gone). Ctrl-C stops the wait, not the daemon. */
static void wait_daemon(int pidfd, bool unsent)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, 2000)) < 0 && errno == EINTR)
        ;
    if (n != 0)
        return;
    fprintf(stderr, "lakefuse: unmounted; waiting for the daemon to finish %s\n",
            unsent ? "its last attempt at the uploads that failed" : "exiting");
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
}

static int cmd_unmount(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"lazy", no_argument, NULL, 'z'}, {"help", no_argument, NULL, 'h'}, {0}};
    bool lazy = false;
    int ch;
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+zh", longopts, NULL)) != -1) {
        if (ch == 'h') {
            unmount_usage(stdout);
            return 0;
        }
        if (ch != 'z') {
            fprintf(stderr, "lakefuse: unknown option '%s' for unmount\n", argv[optind - 1]);
            unmount_usage(stderr);
            return 2;
        }
        lazy = true;
    }
    if (argc - optind != 1) {
        fprintf(stderr, "lakefuse: %s\nusage: lakefuse unmount [-z] MOUNTPOINT\n",
                argc == optind ? "missing MOUNTPOINT" : "unmount takes one MOUNTPOINT");
        return 2;
    }
    const char *arg = argv[optind];
    char *mp = lf_mount_abspath(arg);
    if (!mp) {
        fprintf(stderr, "lakefuse: %s: %s\n", arg, strerror(errno));
        return 1;
    }
    int rc = check_lakefuse_mount(arg, mp);
    if (rc)
        goto out;
    /* Asked now: once unmounted, the mount cannot say who served it. */
    int pidfd = lazy ? -1 : daemon_pidfd(mp);
    /* Uploads first, while the daemon can still report on them. */
    bool unsent = flush_before_unmount(mp);
    char msg[1024];
    if (fusermount_quiet(lazy ? "-uz" : "-u", mp, msg, sizeof(msg)) != 0) {
        if (unsent)
            fprintf(stderr, "lakefuse: some written files could not be uploaded (see the log)\n");
        if (strstr(msg, "busy"))
            explain_busy(mp);
        else
            fprintf(stderr, "lakefuse: cannot unmount %s: %s%s", arg, msg[0] ? msg : "fusermount3 failed",
                    msg[0] && msg[strlen(msg) - 1] == '\n' ? "" : "\n");
        rc = 1;
    } else {
        if (pidfd >= 0)
            wait_daemon(pidfd, unsent);
        if (unsent)
            fprintf(stderr, "lakefuse: some written files could not be uploaded; the daemon tries "
                            "them once more as it exits, and what it cannot upload stays staged "
                            "in the cache directory for the next mount (see the log)\n");
        rc = unsent ? 1 : 0;
    }
    if (pidfd >= 0)
        close(pidfd);
out:
    free(mp);
    return rc;
}

/* Edit distance of two short words (insert, delete, substitute). */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[32];
    if (la >= 32 || lb >= 32)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* The command a mistyped word most likely meant, or NULL. */
static const char *closest_command(const char *word)
{
    static const char *const known[] = {"mount",  "unmount", "commit", "status", "log",
                                        "branch", "reset",   "flush",  "refs",   "stats",
                                        "--help", "--version"};
    /* Words other tools use for ours, tried before spelling: "umount" is
     * one edit from both verbs, and means this one. */
    static const char *const alias[][2] = {
        {"umount", "unmount"}, {"detach", "unmount"}, {"attach", "mount"},
        {"usage", "--help"}, {"-v", "--version"}};
    for (size_t i = 0; i < sizeof(alias) / sizeof(alias[0]); i++)
        if (strcmp(word, alias[i][0]) == 0)
            return alias[i][1];
    const char *bare = word + strspn(word, "-"), *best = NULL;
    size_t best_d = 3; /* further than two edits is a guess, not a typo */
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        size_t d = distance(bare, known[i] + strspn(known[i], "-"));
        if (d < best_d) {
            best_d = d;
            best = known[i];
        }
    }
    return best;
}

/* "unknown command" and the nearest real one, in two lines. */
static int unknown_command(const char *word)
{
    const char *best = closest_command(word);
    fprintf(stderr, "lakefuse: unknown command '%s'", word);
    if (best)
        fprintf(stderr, "; did you mean `lakefuse %s`?\n", best);
    else
        fprintf(stderr, " (commands: mount, unmount, commit, status, log, branch, reset, flush, "
                        "refs, stats)\n");
    fprintf(stderr, "See `lakefuse --help`.\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        lf_config_usage(stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "mount") == 0)
        return cmd_mount(argc - 1, argv + 1, false);
    if (strncmp(verb, "lakefs://", 9) == 0) /* mount(8), through mount.fuse3 */
        return cmd_mount(argc - 1, argv + 1, true);
    if (strcmp(verb, "unmount") == 0)
        return cmd_unmount(argc - 1, argv + 1);
    if (lf_verb_known(verb))
        return lf_verb_main(argc - 1, argv + 1);
    if (strcmp(verb, "--version") == 0 || strcmp(verb, "-V") == 0) {
        printf("lakefuse %s\n", LAKEFUSE_VERSION);
        return 0;
    }
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0) {
        lf_config_usage(stdout);
        return 0;
    }
    return unknown_command(verb);
}
