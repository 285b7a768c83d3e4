/* config: getopt_long over one table of options; the same table prints
 * --help with each default, so documentation follows the code. */
#include "lakefuse/config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <pwd.h>
#include <sys/stat.h>

#include "lakefuse/buf.h"
#include "lakefuse/log.h"
#include "lakefuse/verbs.h"
#include "lakefuse/uri.h"

#define MiB (1024.0 * 1024.0)

enum kind { K_FLAG, K_STR, K_SECONDS, K_MIB, K_UINT, K_LEVEL, K_PRESIGN, K_FUSE };

struct opt {
    const char *name;
    int short_name;
    enum kind kind;
    size_t off;          /* field in struct lf_config */
    const char *arg;     /* argument name for --help */
    const char *def;     /* default, as --help shows it */
    const char *help;
};

#define F(field) offsetof(struct lf_config, field)

static const struct opt OPTS[] = {
    {"endpoint", 0, K_STR, F(endpoint), "URL", "$LAKECTL_SERVER_ENDPOINT_URL",
     "lakeFS server; a trailing /api/v1 is removed to reach the S3 gateway"},
    {"region", 0, K_STR, F(region), "NAME", "us-east-1", "region used in request signatures"},
    {"foreground", 'f', K_FLAG, F(foreground), NULL, "off", "stay attached to the terminal"},
    {"read-only", 0, K_FLAG, F(read_only), NULL, "off", "refuse every write (EROFS), also on branches"},
    {"pin", 0, K_FLAG, F(pin), NULL, "off",
     "resolve REF (branch, tag or expression) to its commit once, at mount time, and mount "
     "that commit: read-only and cached forever, even while the branch moves"},
    {"cache-dir", 0, K_STR, F(cache_dir), "DIR", "$XDG_CACHE_HOME/lakefuse or /var/cache/lakefuse",
     "directory for staged writes and the disk cache (created 0700)"},
    {"log-level", 0, K_LEVEL, F(log_level), "LEVEL", "info", "error, warn, info or debug"},
    {"log-file", 0, K_STR, F(log_file), "FILE", "stderr; syslog when in the background",
     "append log lines to FILE"},
    {"metrics-file", 0, K_STR, F(metrics_file), "FILE", "none",
     "write the mount's counters (as `lakefuse stats` shows them) to FILE in Prometheus's text "
     "format, replaced atomically every --metrics-interval: for node_exporter's textfile "
     "collector; removed at unmount"},
    {"metrics-interval", 0, K_SECONDS, F(metrics_interval), "SEC", "5",
     "how often --metrics-file is written"},
    {"cache-size", 0, K_MIB, F(cache_size), "MIB", "256", "memory for cached data and readahead"},
    {"disk-cache-size", 0, K_MIB, F(disk_cache_size), "MIB", "0 (off)",
     "data blocks evicted from memory kept in the cache directory (blocks/), emptied at start"},
    {"readahead-max", 0, K_MIB, F(readahead_max), "MIB", "64", "largest readahead window per file"},
    {"request-size", 0, K_MIB, F(request_size), "MIB", "8", "size of one ranged GET"},
    {"direct-io", 0, K_FLAG, F(direct_io), NULL, "off",
     "every file opened for reading bypasses the kernel page cache, not only objects over half "
     "--cache-size: every read is a request, nothing is kept between opens (and shared mmap "
     "needs Linux 6.6 or later)"},
    {"page-cache", 0, K_FLAG, F(page_cache), NULL, "off",
     "every file opened for reading goes through the kernel page cache; by default objects "
     "over half --cache-size bypass it as with --direct-io, where the kernel keeps shared "
     "mmap of such files coherent (Linux 6.6 on)"},
    {"async-read", 0, K_FLAG, F(async_read), NULL, "off",
     "let the kernel send readahead in parallel: faster streams, but Ctrl-C no longer "
     "interrupts a read stalled on the gateway (it waits for --timeout)"},
    {"no-splice", 0, K_FLAG, F(no_splice), NULL, "off",
     "copy every read through the block cache; by default sequential reads of objects over "
     "half --cache-size go from the gateway's socket to the kernel with splice (plain HTTP, "
     "no --disk-cache-size or --async-read)"},
    {"max-requests", 0, K_UINT, F(max_requests), "N", "16", "HTTP requests in flight"},
    {"branch-ttl", 0, K_SECONDS, F(branch_ttl), "SEC", "1",
     "how long attributes and listings of a branch are trusted"},
    {"ref-ttl", 0, K_SECONDS, F(ref_ttl), "SEC", "1",
     "the same for tags and ref expressions (commit IDs: forever)"},
    {"repo-ttl", 0, K_SECONDS, F(repo_ttl), "SEC", "5", "lists of repositories and branches"},
    {"timeout", 0, K_SECONDS, F(timeout_ms), "SEC", "30", "a request with no progress fails after this"},
    {"retries", 0, K_UINT, F(retries), "N", "5", "retries of a failed idempotent request"},
    {"staging-max", 0, K_MIB, F(staging_max), "MIB", "25% of the cache directory's free space",
     "bytes of written data waiting for upload"},
    {"keep-staged", 0, K_FLAG, F(keep_staged), NULL, "off",
     "leave files a killed daemon staged in the cache directory instead of uploading them"},
    {"part-size", 0, K_MIB, F(part_size), "MIB", "8", "multipart upload part size (grows for huge files)"},
    {"presign", 0, K_PRESIGN, F(presign), "MODE", "auto",
     "object bytes go straight to and from lakeFS's object store through presigned URLs, "
     "the server carrying metadata only: auto (when the server's storage supports it), on "
     "(the mount fails when it does not) or off (everything through the gateway)"},
    {"config", 0, K_STR, F(config_file), "FILE", "~/.lakectl.yaml",
     "lakectl configuration to take credentials and endpoint from; given, it wins over the "
     "environment, while ~/.lakectl.yaml only fills in what the environment lacks"},
    {"ca-bundle", 0, K_STR, F(ca_bundle), "FILE", "system store", "CA certificates for HTTPS"},
    {"insecure", 0, K_FLAG, F(insecure), NULL, "off", "do not verify the server's certificate"},
    {"setuid-bits", 0, K_FLAG, F(setuid_bits), NULL, "off",
     "serve the setuid, setgid and sticky bits of stored modes, and let -o suid take effect "
     "(by default the bits are cleared and the mount is nosuid: anyone who may write to a "
     "branch chooses its objects' modes)"},
    {"option", 'o', K_FUSE, 0, "OPT[,OPT]", "",
     "mount options: any long option above with _ for - (cache_dir=DIR, read_only), ro, and "
     "FUSE's own (allow_other, default_permissions, ...)"},
};
#define NOPTS (sizeof(OPTS) / sizeof(OPTS[0]))

void lf_config_usage(FILE *out)
{
    fprintf(out,
            "usage: lakefuse mount [OPTIONS] [lakefs://REPO[/REF[/PATH]]] MOUNTPOINT\n"
            "       lakefuse unmount [-z] MOUNTPOINT\n"
            "       lakefuse lakefs://REPO[/REF[/PATH]] MOUNTPOINT -o OPT[,OPT]  (as mount(8) runs it)\n"
            "       lakefuse --version\n"
            "Versions, from inside a mount (`lakefuse VERB --help`):\n");
    lf_verbs_usage(out);
    fprintf(out,
            "\nMounts lakeFS: without a URI the root lists repositories, with\n"
            "lakefs://REPO the repository's branches, with lakefs://REPO/REF that\n"
            "ref's tree, with lakefs://REPO/REF/PATH the directory PATH of that ref\n"
            "(and nothing outside it). Under a repository, any commit ID, tag or expression\n"
            "(main~1, main@) opens by name and is read-only; commit IDs are cached\n"
            "for the life of the mount.\n\n"
            "Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or\n"
            "LAKECTL_CREDENTIALS_ACCESS_KEY_ID and LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY,\n"
            "else lakectl's configuration file (never on the command line); an\n"
            "/etc/fstab line names one with config=FILE, which must be private.\n"
            "See lakefuse(1) for mount(8) and /etc/fstab.\n\nOptions:\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &OPTS[i];
        char head[64];
        if (o->short_name)
            snprintf(head, sizeof(head), "-%c, --%s%s%s", o->short_name, o->name,
                     o->arg ? " " : "", o->arg ? o->arg : "");
        else
            snprintf(head, sizeof(head), "    --%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        fprintf(out, "  %-28s %s", head, o->help);
        if (o->def && *o->def)
            fprintf(out, " [default: %s]", o->def);
        fputc('\n', out);
    }
    fprintf(out, "  %-28s %s\n", "-h, --help", "show this help");
}

static void set_defaults(struct lf_config *c)
{
    c->log_level = LF_LOG_INFO;
    c->branch_ttl = 1.0;
    c->ref_ttl = 1.0;
    c->repo_ttl = 5.0;
    c->cache_size = 256 * (size_t)MiB;
    c->block_size = 1 * (size_t)MiB;
    c->readahead_init = 1 * (size_t)MiB;
    c->readahead_max = 64 * (size_t)MiB;
    c->request_size = 8 * (size_t)MiB;
    c->max_requests = 16;
    c->timeout_ms = 30000;
    c->retries = 5;
    c->part_size = 8 * (size_t)MiB;
    c->metrics_interval = 5.0;
}

static int parse_number(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    /* !(v >= 0) also refuses NaN, which every bound below would let by
     * (a NaN timeout turned the timeouts off). */
    return (errno || end == s || *end || !(*v >= 0) || isinf(*v)) ? -EINVAL : 0;
}

static int set_string(char **dst, const char *v)
{
    char *p = strdup(v);
    if (!p)
        return -ENOMEM;
    free(*dst);
    *dst = p;
    return 0;
}

static int push_fuse_arg(struct lf_config *c, const char *a)
{
    char **v = realloc(c->fuse_argv, (size_t)(c->fuse_argc + 2) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    c->fuse_argv = v;
    if (!(v[c->fuse_argc] = strdup(a)))
        return -ENOMEM;
    v[++c->fuse_argc] = NULL;
    return 0;
}

/* Whether a FUSE option list holds tok, split and unescaped as libfuse
 * does ("," separates, "\\" escapes the next byte, "\\ooo" is octal). */
static bool has_token(const char *list, const char *tok)
{
    size_t n = strlen(tok), i = 0;
    bool match = true;
    for (const char *p = list;; p++) {
        if (*p == ',' || *p == '\0') {
            if (match && i == n)
                return true;
            if (*p == '\0')
                return false;
            match = true;
            i = 0;
            continue;
        }
        char ch = *p;
        if (*p == '\\' && p[1]) {
            p++;
            ch = *p;
            if (p[0] >= '0' && p[0] <= '3' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' &&
                p[2] <= '7') {
                ch = (char)((p[0] - '0') * 64 + (p[1] - '0') * 8 + (p[2] - '0'));
                p += 2;
            }
        }
        match = match && i < n && ch == tok[i];
        i++;
    }
}

/* "fsname=lakefs://REPO/REF" with the bytes libfuse gives a meaning to
 * escaped: a ref may hold ',' (tag names do), which would otherwise end
 * the name and start options of the ref's choosing (allow_other, suid). */
static int push_fsname(struct lf_config *c)
{
    struct lf_buf b = LF_BUF_INIT;
    int rc = lf_buf_printf(&b, "fsname=lakefs://%s%s", c->repo ? c->repo : "", c->ref ? "/" : "");
    /* The ref and the path come from the user (and a tag may hold a
     * comma): escaped, so they can never add an option. */
    const char *parts[] = {c->ref, c->path ? "/" : NULL, c->path};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        for (const char *p = parts[i]; !rc && p && *p; p++)
            rc = (*p == ',' || *p == '\\') ? lf_buf_printf(&b, "\\%c", *p)
                                           : lf_buf_append(&b, p, 1);
    if (!rc)
        rc = lf_buf_puts(&b, ",subtype=lakefuse");
    if (!rc)
        rc = push_fuse_arg(c, "-o") || push_fuse_arg(c, b.data) ? -ENOMEM : 0;
    lf_buf_free(&b);
    return rc;
}

/* A path given relative to where `mount` was started, made absolute: the
 * daemon runs from "/". Nothing is resolved (the mount point may be a
 * stale mount that cannot be looked at). */
static int absolutise(char **path)
{
    if (!*path || (*path)[0] == '/')
        return 0;
    char cwd[PATH_MAX];
    char *abs;
    if (!getcwd(cwd, sizeof(cwd)))
        return -errno;
    if (asprintf(&abs, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, *path) < 0)
        return -ENOMEM;
    free(*path);
    *path = abs;
    return 0;
}

static int mount_options(struct lf_config *c, const char *list, FILE *err);

static int apply(struct lf_config *c, const struct opt *o, const char *v, FILE *err)
{
    char *base = (char *)c;
    double d;
    switch (o->kind) {
    case K_FLAG:
        *(bool *)(base + o->off) = true;
        return 0;
    case K_STR:
        return set_string((char **)(base + o->off), v);
    case K_FUSE:
        return mount_options(c, v, err);
    case K_PRESIGN:
        if (strcmp(v, "auto") == 0)
            c->presign = LF_PRESIGN_AUTO;
        else if (strcmp(v, "on") == 0)
            c->presign = LF_PRESIGN_ON;
        else if (strcmp(v, "off") == 0)
            c->presign = LF_PRESIGN_OFF;
        else {
            fprintf(err, "lakefuse: --%s: '%s' is not one of auto, on, off\n", o->name, v);
            return -EINVAL;
        }
        return 0;
    case K_LEVEL: {
        int l = lf_log_parse_level(v);
        if (l < 0) {
            fprintf(err, "lakefuse: --%s: '%s' is not one of error, warn, info, debug\n",
                    o->name, v);
            return -EINVAL;
        }
        c->log_level = l;
        return 0;
    }
    default:
        break;
    }
    if (parse_number(v, &d)) {
        fprintf(err, "lakefuse: --%s: '%s' is not a non-negative number\n", o->name, v);
        return -EINVAL;
    }
    /* Bounds come before any conversion: a double out of an integer's
     * range converts to nothing defined (found by fuzz_config). */
    switch (o->kind) {
    case K_SECONDS:
        if (d > 365.0 * 24 * 3600) {
            fprintf(err, "lakefuse: --%s: %s seconds is more than a year\n", o->name, v);
            return -EINVAL;
        }
        if (o->off == F(timeout_ms))
            c->timeout_ms = (long)(d * 1000);
        else
            *(double *)(base + o->off) = d;
        break;
    case K_MIB:
        if (d > 1e9) { /* a petabyte: far past any sensible cache or part */
            fprintf(err, "lakefuse: --%s: %s MiB is too large\n", o->name, v);
            return -EINVAL;
        }
        *(size_t *)(base + o->off) = (size_t)(d * MiB);
        break;
    case K_UINT:
        if (d > 100000 || d != (double)(unsigned)d) {
            fprintf(err, "lakefuse: --%s: '%s' is not a whole number\n", o->name, v);
            return -EINVAL;
        }
        *(unsigned *)(base + o->off) = (unsigned)d;
        break;
    default:
        break;
    }
    return 0;
}

/* -o lists: mount(8) and /etc/fstab can say only -o, so each long option
 * of the table is also a mount option, named with '_' for '-'
 * (cache_dir=DIR, read_only). Beside them come the FUSE and kernel options
 * libfuse takes, handed on as written, and the words of mount(8) and
 * fstab that mean nothing to a daemon, dropped. Anything else is refused
 * here by name: libfuse's own complaint names neither lakefuse nor the
 * option's source. */

/* Handed to libfuse ('=' at the end: with a value). */
static const char *const FUSE_OPTS[] = {
    "allow_other", "allow_root", "default_permissions", "auto_unmount", "rw", "ro",
    "suid", "nosuid", "dev", "nodev", "exec", "noexec", "sync", "async", "dirsync",
    "atime", "noatime", "max_read=", "context=", "fscontext=", "defcontext=", "rootcontext="};

/* mount(8)'s and fstab's own (mount.fuse3 drops most of them before it
 * runs lakefuse; a direct call may still carry them), and atime flags a
 * FUSE mount cannot take (lakefuse keeps no access times): no effect. */
static const char *const IGNORED_OPTS[] = {
    "_netdev", "nofail", "auto", "noauto", "user", "nouser", "users", "owner", "group",
    "defaults", "diratime", "nodiratime", "relatime", "norelatime", "strictatime",
    "nostrictatime", "lazytime", "nolazytime"};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Whether name[0..n) is the long option long_name, '_' standing for '-'. */
static bool same_name(const char *long_name, const char *name, size_t n)
{
    if (strlen(long_name) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (name[i] != long_name[i] && !(long_name[i] == '-' && name[i] == '_'))
            return false;
    return true;
}

/* One option of a -o list: raw as written (what libfuse gets, and
 * unescapes itself), plain with its escapes undone. */
static int mount_option(struct lf_config *c, const char *raw, const char *plain, FILE *err)
{
    const char *eq = strchr(plain, '=');
    size_t n = eq ? (size_t)(eq - plain) : strlen(plain);
    const char *val = eq ? eq + 1 : NULL;
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &OPTS[i];
        if (o->kind == K_FUSE || !same_name(o->name, plain, n))
            continue;
        if (o->kind == K_FLAG && val) {
            fprintf(err, "lakefuse: mount option '%.*s' takes no value\n", (int)n, plain);
            return -EINVAL;
        }
        if (o->kind != K_FLAG && (!val || !*val)) {
            fprintf(err, "lakefuse: mount option '%.*s' needs a value (%.*s=%s)\n", (int)n,
                    plain, (int)n, plain, o->arg);
            return -EINVAL;
        }
        if (o->off == F(config_file))
            c->config_private = true;
        return apply(c, o, val, err);
    }
    for (size_t i = 0; i < NELEM(FUSE_OPTS); i++) {
        size_t l = strlen(FUSE_OPTS[i]);
        bool valued = FUSE_OPTS[i][l - 1] == '=';
        if (valued ? !(val && n == l - 1 && strncmp(plain, FUSE_OPTS[i], n) == 0)
                   : strcmp(plain, FUSE_OPTS[i]) != 0)
            continue;
        /* ro is lakefuse's read_only as well: EROFS from the kernel, and
         * no staging area. */
        if (strcmp(plain, "ro") == 0)
            c->read_only = true;
        return push_fuse_arg(c, "-o") || push_fuse_arg(c, raw) ? -ENOMEM : 0;
    }
    for (size_t i = 0; i < NELEM(IGNORED_OPTS); i++)
        if (strcmp(plain, IGNORED_OPTS[i]) == 0)
            return 0;
    if (strncmp(plain, "x-", 2) == 0 || strncmp(plain, "comment=", 8) == 0)
        return 0; /* userspace notes: systemd's x-systemd.*, and others' */
    if (strcmp(plain, "fsname") == 0 || strcmp(plain, "subtype") == 0 ||
        strncmp(plain, "fsname=", 7) == 0 || strncmp(plain, "subtype=", 8) == 0) {
        fprintf(err, "lakefuse: mount option '%.*s' is lakefuse's to set (the source is the "
                     "lakefs:// URI, the type fuse.lakefuse)\n", (int)n, plain);
        return -EINVAL;
    }
    fprintf(err, "lakefuse: unknown mount option '%.*s': lakefuse takes its long options with _ "
                 "for - (cache_dir=DIR, read_only, ...: see lakefuse mount --help), ro, and "
                 "FUSE's allow_other, allow_root, default_permissions, auto_unmount, rw, "
                 "[no]suid, [no]dev, [no]exec, [no]atime, sync, async, dirsync, max_read=N\n",
            (int)n, plain);
    return -EINVAL;
}

/* Splits at the commas libfuse would split at ("\\," is no separator;
 * "\\ooo" is an octal byte) and takes each option in turn. */
static int mount_options(struct lf_config *c, const char *list, FILE *err)
{
    size_t len = strlen(list);
    char *raw = malloc(len + 1), *plain = malloc(len + 1);
    int rc = raw && plain ? 0 : -ENOMEM;
    const char *p = list;
    while (!rc) {
        size_t r = 0, k = 0;
        for (; *p && *p != ','; p++) {
            char ch = *p;
            raw[r++] = *p;
            if (*p == '\\' && p[1]) {
                ch = *++p;
                raw[r++] = *p;
                if (p[0] >= '0' && p[0] <= '3' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' &&
                    p[2] <= '7') {
                    ch = (char)((p[0] - '0') * 64 + (p[1] - '0') * 8 + (p[2] - '0'));
                    raw[r++] = p[1];
                    raw[r++] = p[2];
                    p += 2;
                }
            }
            plain[k++] = ch;
        }
        raw[r] = plain[k] = '\0';
        if (r > 0) /* ",," and a trailing ',' hold no option */
            rc = mount_option(c, raw, plain, err);
        if (!*p)
            break;
        p++;
    }
    free(raw);
    free(plain);
    return rc;
}

/* lakectl's own file (~/.lakectl.yaml): the few keys lakefuse needs,
 *
 *     credentials:
 *       access_key_id: ...
 *       secret_access_key: ...
 *     server:
 *       endpoint_url: ...
 *
 * read line by line (a section, then its keys one level in; scalars,
 * plain or quoted, "# comment" after a plain one) rather than with a YAML
 * library. Keys nested deeper belong to something else and are skipped. A
 * file others can read gets a warning: it holds a secret, which is why
 * every buffer that held its bytes is wiped. */

/* The scalar of a "key: value" line: quotes removed, or a plain value
 * ended by " #" and trailing blanks. */
static char *yaml_scalar(char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v == '"' || *v == '\'') {
        char *close = strchr(v + 1, *v);
        if (close) {
            *close = '\0';
            return v + 1;
        }
    }
    for (char *p = v; *p; p++)
        if (*p == '#' && (p == v || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    size_t vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        v[--vl] = '\0';
    return v;
}

static int lakectl_line(struct lf_config *c, char *line, char *section, size_t seccap,
                        size_t *key_indent)
{
    char *p = line, *colon;
    line[strcspn(line, "\r\n")] = '\0';
    while (*p == ' ' || *p == '\t')
        p++;
    size_t indent = (size_t)(p - line);
    if (*p == '#' || !*p || !(colon = strchr(p, ':')))
        return 0;
    *colon = '\0';
    char *v = yaml_scalar(colon + 1);
    if (indent == 0) {
        snprintf(section, seccap, "%s", p);
        *key_indent = 0;
        return 0;
    }
    if (!*key_indent)
        *key_indent = indent; /* the section's own keys sit at its first indent */
    if (indent != *key_indent)
        return 0;
    char **dst = NULL;
    if (strcmp(section, "credentials") == 0 && strcmp(p, "access_key_id") == 0)
        dst = &c->access_key;
    else if (strcmp(section, "credentials") == 0 && strcmp(p, "secret_access_key") == 0)
        dst = &c->secret_key;
    else if (strcmp(section, "server") == 0 && strcmp(p, "endpoint_url") == 0)
        dst = &c->endpoint;
    return dst && !*dst && *v ? set_string(dst, v) : 0;
}

/* A file named by -o config= (what /etc/fstab uses) is refused, not just
 * warned of, unless only its owner can read it and that owner is the user
 * mounting or root: an fstab line is read by everyone, and a file that
 * anyone else controls could point the mount at a server of their choice. */
static int check_private(const char *path, const struct stat *st, FILE *err)
{
    uid_t me = getuid();
    if (!S_ISREG(st->st_mode)) {
        fprintf(err, "lakefuse: refusing config file %s: not a regular file\n", path);
        return -EINVAL;
    }
    if (st->st_uid != me && st->st_uid != 0) {
        fprintf(err, "lakefuse: refusing config file %s: it holds credentials but belongs to "
                     "uid %u, not to the mounting user (uid %u) or root\n", path,
                (unsigned)st->st_uid, (unsigned)me);
        return -EACCES;
    }
    if (st->st_mode & 077) {
        fprintf(err, "lakefuse: refusing config file %s: it holds credentials and is open to "
                     "group or others (mode %04o); run chmod 600 %s\n", path,
                (unsigned)(st->st_mode & 07777), path);
        return -EACCES;
    }
    return 0;
}

static int from_lakectl_file(struct lf_config *c, const char *path, bool explicit, FILE *err)
{
    FILE *fp = fopen(path, "re");
    if (!fp) {
        if (!explicit && errno == ENOENT)
            return 0;
        fprintf(err, "lakefuse: cannot read %s: %s\n", path, strerror(errno));
        return -errno;
    }
    char iobuf[4096]; /* stdio's copy of the bytes, wiped below */
    setvbuf(fp, iobuf, _IOFBF, sizeof(iobuf));
    struct stat st;
    char *line = NULL, section[64] = "";
    size_t cap = 0, key_indent = 0;
    int rc = fstat(fileno(fp), &st) == 0 ? 0 : -errno;
    if (rc)
        fprintf(err, "lakefuse: cannot read %s: %s\n", path, strerror(-rc));
    else if (explicit && c->config_private)
        rc = check_private(path, &st, err);
    else if (st.st_mode & 077)
        fprintf(err, "lakefuse: warning: %s holds credentials and is readable by other users "
                     "(mode %04o); run chmod 600 %s\n", path, (unsigned)(st.st_mode & 07777),
                path);
    bool had_secret = c->secret_key != NULL;
    while (!rc && getline(&line, &cap, fp) >= 0)
        rc = lakectl_line(c, line, section, sizeof(section), &key_indent);
    /* The secret came from here: a running mount may read it again. */
    if (!rc && !had_secret && c->secret_key && !c->cred_file &&
        !(c->cred_file = realpath(path, NULL)))
        rc = -errno;
    if (line)
        OPENSSL_cleanse(line, cap);
    free(line);
    fclose(fp);
    OPENSSL_cleanse(iobuf, sizeof(iobuf));
    return rc;
}

/* The user's home: $HOME, unless it is missing or someone else's. mount(8)
 * clears the environment and mount.fuse3 then sets HOME=/root, even for a
 * user's own fstab mount; the password database knows better. */
static const char *home_dir(void)
{
    const char *home = getenv("HOME");
    struct stat st;
    if (home && *home && stat(home, &st) == 0 && st.st_uid == getuid())
        return home;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : home;
}

static int from_env_vars(struct lf_config *c)
{
    const char *ak = getenv("AWS_ACCESS_KEY_ID");
    const char *sk = getenv("AWS_SECRET_ACCESS_KEY");
    if (!ak || !*ak)
        ak = getenv("LAKECTL_CREDENTIALS_ACCESS_KEY_ID");
    if (!sk || !*sk)
        sk = getenv("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY");
    if (!c->access_key && !c->secret_key && ak && *ak && sk && *sk &&
        (set_string(&c->access_key, ak) || set_string(&c->secret_key, sk)))
        return -ENOMEM;
    return 0;
}

/* Credentials and endpoint. An explicit --config comes first (what the
 * command line names is the most specific); then the environment, the
 * AWS names before lakectl's; then ~/.lakectl.yaml for what is still
 * missing. --endpoint wins over all of them. */
static int from_env(struct lf_config *c, FILE *err)
{
    int rc;
    if (c->config_file && (rc = from_lakectl_file(c, c->config_file, true, err)))
        return rc;
    if ((rc = from_env_vars(c)))
        return rc;
    if (!c->config_file &&
        (!c->access_key || !c->secret_key || (!c->endpoint && !getenv("LAKECTL_SERVER_ENDPOINT_URL")))) {
        const char *home = home_dir();
        char def[4096];
        snprintf(def, sizeof(def), "%s/.lakectl.yaml", home ? home : "");
        if ((rc = from_lakectl_file(c, def, false, err)))
            return rc;
    }
    if (!c->access_key || !c->secret_key) {
        fprintf(err, "lakefuse: no credentials: set AWS_ACCESS_KEY_ID and "
                     "AWS_SECRET_ACCESS_KEY (or LAKECTL_CREDENTIALS_ACCESS_KEY_ID and "
                     "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY), or put them in lakectl's "
                     "~/.lakectl.yaml\n");
        return -EINVAL;
    }
    if (!c->endpoint) {
        const char *ep = getenv("LAKECTL_SERVER_ENDPOINT_URL");
        if (!ep || !*ep) {
            fprintf(err, "lakefuse: no endpoint: pass --endpoint URL or set "
                         "LAKECTL_SERVER_ENDPOINT_URL\n");
            return -EINVAL;
        }
        if (set_string(&c->endpoint, ep))
            return -ENOMEM;
    }
    return 0;
}

static int normalise_endpoint(struct lf_config *c, FILE *err)
{
    char *e = c->endpoint;
    if (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0) {
        fprintf(err, "lakefuse: endpoint '%s' must start with http:// or https://\n", e);
        return -EINVAL;
    }
    size_t n = strlen(e);
    while (n > 0 && e[n - 1] == '/')
        e[--n] = '\0';
    if (n >= 7 && strcmp(e + n - 7, "/api/v1") == 0)
        e[n - 7] = '\0';
    n = strlen(e);
    while (n > 0 && e[n - 1] == '/')
        e[--n] = '\0';
    return 0;
}

static int default_cache_dir(struct lf_config *c)
{
    char path[PATH_MAX];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = home_dir();
    if (getuid() == 0)
        snprintf(path, sizeof(path), "/var/cache/lakefuse");
    else if (xdg && *xdg)
        snprintf(path, sizeof(path), "%s/lakefuse", xdg);
    else if (home && *home)
        snprintf(path, sizeof(path), "%s/.cache/lakefuse", home);
    else
        snprintf(path, sizeof(path), "/tmp/lakefuse-%u", (unsigned)getuid());
    return set_string(&c->cache_dir, path);
}

#define MOUNT_SYNOPSIS "lakefuse mount [OPTIONS] [lakefs://REPO[/REF[/PATH]]] MOUNTPOINT"

/* Says which part of a URI that lf_lakefs_uri_parse refused is wrong. */
static void complain_uri(const char *uri, FILE *err)
{
    static const char scheme[] = "lakefs://";
    if (strncmp(uri, scheme, sizeof(scheme) - 1) != 0) {
        /* Checked first: a shorter string has no repository part to look at. */
        fprintf(err, "lakefuse: '%s' is not a lakefs:// URI\n", uri);
        fprintf(err, "usage: " MOUNT_SYNOPSIS "\n");
        return;
    }
    const char *repo = uri + sizeof(scheme) - 1;
    size_t repo_len = strcspn(repo, "/");
    const char *ref = repo + repo_len + (repo[repo_len] == '/');
    size_t ref_len = strcspn(ref, "/");
    if (!lf_repo_name_is_valid(repo, repo_len))
        fprintf(err, "lakefuse: '%s': the repository name '%.*s' is not valid (3-63 of a-z, "
                     "0-9 and '-', not starting with '-')\n", uri, (int)repo_len, repo);
    else if (ref_len == 0)
        fprintf(err, "lakefuse: '%s': no ref between the slashes\n", uri);
    else if (!lf_ref_is_valid(ref, ref_len))
        fprintf(err, "lakefuse: '%s': the ref '%.*s' is not valid (at most %d bytes, no "
                     "control characters)\n", uri, (int)ref_len, ref, LF_REF_MAX);
    else
        fprintf(err, "lakefuse: '%s': the path '%s' is not valid (no empty, '.' or '..' "
                     "parts, no control characters, at most %d bytes)\n", uri,
                ref + ref_len + 1, LF_PATH_MAX);
    fprintf(err, "usage: " MOUNT_SYNOPSIS "\n");
}

/* [URI] MOUNTPOINT, the arguments after the options. */
static int take_positionals(struct lf_config *c, int left, char **args, FILE *err)
{
    const char *uri = left >= 1 && strncmp(args[0], "lakefs://", 9) == 0 ? args[0] : NULL;
    if (left == 0 || (left == 1 && uri)) {
        fprintf(err, "lakefuse: missing MOUNTPOINT%s%s\nusage: " MOUNT_SYNOPSIS "\n",
                uri ? " after " : "", uri ? uri : "");
        return -EINVAL;
    }
    if (left > 2) {
        fprintf(err, "lakefuse: too many arguments (from '%s' on)\nusage: " MOUNT_SYNOPSIS
                     "\n", args[2]);
        return -EINVAL;
    }
    if (left == 2 && strcmp(args[0], "lakefs://") == 0) {
        /* every repository, as with no URI: the source an fstab line needs */
    } else if (left == 2) {
        struct lf_lakefs_uri u;
        if (lf_lakefs_uri_parse(args[0], &u)) {
            complain_uri(args[0], err);
            return -EINVAL;
        }
        if (set_string(&c->repo, u.repo) || (u.ref[0] && set_string(&c->ref, u.ref)) ||
            (u.path[0] && set_string(&c->path, u.path)))
            return -ENOMEM;
    }
    return set_string(&c->mountpoint, args[left - 1]);
}

int lf_config_parse(struct lf_config *c, int argc, char **argv, FILE *err)
{
    struct option longopts[NOPTS + 2];
    char shortopts[3 * NOPTS + 4] = "+h";
    int rc;

    memset(c, 0, sizeof(*c));
    set_defaults(c);
    if ((rc = push_fuse_arg(c, "lakefuse")))
        return rc;
    for (size_t i = 0; i < NOPTS; i++) {
        longopts[i] = (struct option){OPTS[i].name,
                                      OPTS[i].kind == K_FLAG ? no_argument : required_argument,
                                      NULL, 256 + (int)i};
        if (OPTS[i].short_name) {
            size_t l = strlen(shortopts);
            shortopts[l] = (char)OPTS[i].short_name;
            shortopts[l + 1] = OPTS[i].kind == K_FLAG ? '\0' : ':';
            shortopts[l + 2] = '\0';
        }
    }
    longopts[NOPTS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[NOPTS + 1] = (struct option){0};

    optind = 0; /* glibc: 0 also forgets a half-parsed "-abc" of an earlier call */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        const struct opt *o = NULL;
        if (ch == 'h') {
            lf_config_usage(stdout);
            return 1;
        }
        if (ch >= 256 && ch < 256 + (int)NOPTS) {
            o = &OPTS[ch - 256];
        } else {
            for (size_t i = 0; i < NOPTS; i++)
                if (OPTS[i].short_name && OPTS[i].short_name == ch)
                    o = &OPTS[i];
        }
        if (!o) {
            fprintf(err, "lakefuse: unknown or incomplete option '%s' (see lakefuse --help)\n",
                    argv[optind - 1]);
            return -EINVAL;
        }
        if ((rc = apply(c, o, optarg, err)))
            return rc;
    }
    if ((rc = take_positionals(c, argc - optind, argv + optind, err)))
        return rc;
    if ((rc = from_env(c, err)) || (rc = normalise_endpoint(c, err)))
        return rc;
    /* Other users let in must meet the files' permissions: the kernel
     * checks them only with default_permissions. */
    bool others = false;
    for (int i = 1; i + 1 < c->fuse_argc; i++)
        if (strcmp(c->fuse_argv[i], "-o") == 0 && has_token(c->fuse_argv[i + 1], "allow_other"))
            others = true;
    if ((others && (push_fuse_arg(c, "-o") || push_fuse_arg(c, "default_permissions"))) ||
        (!c->setuid_bits && (push_fuse_arg(c, "-o") || push_fuse_arg(c, "nosuid"))))
        return -ENOMEM;
    if ((rc = push_fsname(c)))
        return rc;
    if (!c->region && (rc = set_string(&c->region, "us-east-1")))
        return rc;
    if (!c->cache_dir && (rc = default_cache_dir(c)))
        return rc;
    char **paths[] = {&c->mountpoint, &c->cache_dir, &c->log_file, &c->ca_bundle,
                      &c->config_file, &c->metrics_file};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if ((rc = absolutise(paths[i]))) {
            fprintf(err, "lakefuse: cannot make '%s' an absolute path: %s\n", *paths[i],
                    strerror(-rc));
            return rc;
        }
    if (c->readahead_max < c->readahead_init)
        c->readahead_max = c->readahead_init;
    if (c->max_requests == 0)
        c->max_requests = 1;
    if (c->direct_io && c->page_cache) {
        fprintf(err, "lakefuse: --direct-io and --page-cache exclude each other\n");
        return -EINVAL;
    }
    if (c->cache_size < 8 * (size_t)MiB) {
        fprintf(err, "lakefuse: --cache-size must be at least 8 MiB\n");
        return -EINVAL;
    }
    if (c->part_size < 5 * (size_t)MiB) {
        fprintf(err, "lakefuse: --part-size must be at least 5 MiB (an S3 rule)\n");
        return -EINVAL;
    }
    if (c->metrics_interval < 0.1) {
        fprintf(err, "lakefuse: --metrics-interval must be at least 0.1 seconds\n");
        return -EINVAL;
    }
    return 0;
}

int lf_config_parse_helper(struct lf_config *c, int argc, char **argv, FILE *err)
{
    /* mount.fuse3 runs `lakefuse SOURCE MOUNTPOINT -o OPTS`: options last,
     * where `lakefuse mount` has them first. */
    char **args = calloc((size_t)argc + 3, sizeof(*args));
    int n = 0, rc = 0;
    if (!args) {
        memset(c, 0, sizeof(*c));
        return -ENOMEM;
    }
    args[n++] = "mount";
    for (int i = 2; i < argc && !rc; i += 2) {
        if (strcmp(argv[i], "-o") != 0 || i + 1 == argc) {
            rc = -EINVAL;
        } else {
            args[n++] = argv[i];
            args[n++] = argv[i + 1];
        }
    }
    if (argc < 2 || rc) {
        memset(c, 0, sizeof(*c));
        fprintf(err, "lakefuse: %s\nusage: lakefuse lakefs://REPO[/REF[/PATH]] MOUNTPOINT "
                     "[-o OPT[,OPT]...]   (as mount(8) runs it)\n       " MOUNT_SYNOPSIS "\n",
                argc < 2 ? "missing MOUNTPOINT" : "only -o OPTIONS may follow the mount point");
        free(args);
        return -EINVAL;
    }
    args[n++] = "--";
    args[n++] = argv[0];
    args[n++] = argv[1];
    rc = lf_config_parse(c, n, args, err);
    free(args);
    c->helper = true;
    return rc;
}

int lf_config_read_credentials(const char *path, char **access_key, char **secret_key)
{
    struct lf_config tmp;
    memset(&tmp, 0, sizeof(tmp));
    *access_key = *secret_key = NULL;
    FILE *quiet = fopen("/dev/null", "we"); /* the mode warning was given at mount */
    int rc = quiet ? from_lakectl_file(&tmp, path, true, quiet) : -errno;
    if (quiet)
        fclose(quiet);
    if (!rc && (!tmp.access_key || !tmp.secret_key))
        rc = -ENOKEY;
    if (!rc) {
        *access_key = tmp.access_key;
        *secret_key = tmp.secret_key;
        tmp.access_key = tmp.secret_key = NULL;
    }
    lf_config_free(&tmp);
    return rc;
}

void lf_config_forget_secret(struct lf_config *c)
{
    if (c->secret_key) {
        OPENSSL_cleanse(c->secret_key, strlen(c->secret_key));
        free(c->secret_key);
        c->secret_key = NULL;
    }
}

void lf_config_free(struct lf_config *c)
{
    lf_config_forget_secret(c);
    char **strs[] = {&c->endpoint, &c->access_key, &c->region, &c->repo, &c->ref, &c->path,
                     &c->mountpoint, &c->cache_dir, &c->staging_dir, &c->log_file,
                     &c->ca_bundle, &c->config_file, &c->metrics_file, &c->cred_file};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(*strs[i]);
    for (int i = 0; i < c->fuse_argc; i++)
        free(c->fuse_argv[i]);
    free(c->fuse_argv);
    memset(c, 0, sizeof(*c));
}
