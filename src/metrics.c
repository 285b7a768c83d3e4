/* metrics: three renderings of one snapshot, and the file writer.
 *
 * The Prometheus rendering lists every label value of op and kind, zero or
 * not: a series that appears only once it is non-zero makes rate() and
 * increase() miss its first events. */
#include "lakefuse/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lakefuse/log.h"

/* ---- Prometheus ------------------------------------------------------------ */

struct prom {
    struct lf_buf *out;
    const char *mp;
    int rc;
};

/* s with the escapes of the exposition format: backslash and newline
 * always, the double quote inside label values. */
static void prom_escaped(struct prom *p, const char *s, bool label)
{
    for (; *s && !p->rc; s++) {
        if (*s == '\\')
            p->rc = lf_buf_puts(p->out, "\\\\");
        else if (*s == '\n')
            p->rc = lf_buf_puts(p->out, "\\n");
        else if (*s == '"' && label)
            p->rc = lf_buf_puts(p->out, "\\\"");
        else
            p->rc = lf_buf_append(p->out, s, 1);
    }
}

static void prom_puts(struct prom *p, const char *s)
{
    if (!p->rc)
        p->rc = lf_buf_puts(p->out, s);
}

static void family(struct prom *p, const char *name, const char *type, const char *help)
{
    prom_puts(p, "# HELP ");
    prom_puts(p, name);
    prom_puts(p, " ");
    prom_escaped(p, help, false);
    prom_puts(p, "\n# TYPE ");
    prom_puts(p, name);
    prom_puts(p, " ");
    prom_puts(p, type);
    prom_puts(p, "\n");
}

/* name{mountpoint="...",label="value"} as far as the value. */
static void series(struct prom *p, const char *name, const char *label, const char *value)
{
    prom_puts(p, name);
    if (!p->mp && !label)
        return;
    prom_puts(p, "{");
    if (p->mp) {
        prom_puts(p, "mountpoint=\"");
        prom_escaped(p, p->mp, true);
        prom_puts(p, label ? "\"," : "\"");
    }
    if (label) {
        prom_puts(p, label);
        prom_puts(p, "=\"");
        prom_escaped(p, value, true);
        prom_puts(p, "\"");
    }
    prom_puts(p, "}");
}

static void sample(struct prom *p, const char *name, const char *label, const char *value,
                   uint64_t v)
{
    char num[32];
    series(p, name, label, value);
    snprintf(num, sizeof(num), " %" PRIu64 "\n", v);
    prom_puts(p, num);
}

/* A family of one sample. */
static void single(struct prom *p, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    family(p, name, type, help);
    sample(p, name, NULL, NULL, v);
}

int lf_metrics_prometheus(const struct lf_metrics *m, struct lf_buf *out)
{
    struct prom p = {.out = out, .mp = m->mountpoint};
    const struct lf_store_stats *s = &m->store;
    char num[64];

    family(&p, "lakefuse_start_time_seconds", "gauge", "Unix time the mount started.");
    series(&p, "lakefuse_start_time_seconds", NULL, NULL);
    snprintf(num, sizeof(num), " %.3f\n", m->start_time);
    prom_puts(&p, num);

    family(&p, "lakefuse_requests_total", "counter",
           "Requests sent to the lakeFS S3 gateway, by operation, retries included.");
    for (unsigned i = 0; i < LF_OP_COUNT; i++)
        if (i != LF_OP_OTHER || s->requests[i])
            sample(&p, "lakefuse_requests_total", "op", lf_store_op_name(i), s->requests[i]);
    family(&p, "lakefuse_request_errors_total", "counter",
           "Requests that failed, by kind (a missing object is not an error).");
    for (unsigned i = 0; i < LF_ERR_COUNT; i++)
        sample(&p, "lakefuse_request_errors_total", "kind", lf_store_err_name(i), s->errors[i]);
    family(&p, "lakefuse_request_retries_total", "counter",
           "Requests sent again, by the kind of failure that made them necessary.");
    for (unsigned i = 0; i < LF_ERR_COUNT; i++)
        sample(&p, "lakefuse_request_retries_total", "kind", lf_store_err_name(i),
               s->retries[i]);
    single(&p, "lakefuse_failed_operations_total", "counter",
           "Operations that still failed after their retries.", s->failures);
    single(&p, "lakefuse_received_bytes_total", "counter",
           "Bytes of response bodies received from the gateway.", s->bytes_in);
    single(&p, "lakefuse_sent_bytes_total", "counter",
           "Bytes of request bodies sent to the gateway.", s->bytes_out);
    if (s->storage.on) { /* presigned URLs: the data's own counters */
        single(&p, "lakefuse_storage_requests_total", "counter",
               "Requests sent to the object store by presigned URL, retries included.",
               s->storage.requests);
        single(&p, "lakefuse_storage_retries_total", "counter",
               "Requests to the object store sent again.", s->storage.retries);
        single(&p, "lakefuse_storage_url_renewals_total", "counter",
               "Presigned URLs asked for again (expired or refused).", s->storage.refreshes);
        single(&p, "lakefuse_storage_failed_operations_total", "counter",
               "Object store operations that still failed after their retries.",
               s->storage.failures);
        single(&p, "lakefuse_storage_api_calls_total", "counter",
               "lakeFS API calls for presigned URLs, links and completions.",
               s->storage.api_calls);
        single(&p, "lakefuse_storage_received_bytes_total", "counter",
               "Bytes received from the object store.", s->storage.bytes_in);
        single(&p, "lakefuse_storage_sent_bytes_total", "counter",
               "Bytes sent to the object store.", s->storage.bytes_out);
    }

    family(&p, "lakefuse_cache_hits_total", "counter",
           "Data blocks found in the cache, by tier.");
    sample(&p, "lakefuse_cache_hits_total", "tier", "memory", m->mem.hits);
    sample(&p, "lakefuse_cache_hits_total", "tier", "disk", m->disk.hits);
    single(&p, "lakefuse_cache_misses_total", "counter",
           "Data blocks that had to be fetched from the gateway.", m->mem.misses);
    single(&p, "lakefuse_cache_evictions_total", "counter",
           "Data blocks evicted from memory.", m->mem.evictions);
    single(&p, "lakefuse_cache_disk_writes_total", "counter",
           "Evicted blocks written to the disk cache.", m->disk.writes);
    family(&p, "lakefuse_cache_bytes", "gauge", "Bytes the cache holds, by tier.");
    sample(&p, "lakefuse_cache_bytes", "tier", "memory", m->mem.bytes);
    sample(&p, "lakefuse_cache_bytes", "tier", "disk", m->disk.bytes);
    family(&p, "lakefuse_cache_limit_bytes", "gauge",
           "Bytes the cache may hold, by tier (disk 0: no disk cache).");
    sample(&p, "lakefuse_cache_limit_bytes", "tier", "memory", m->mem.limit_bytes);
    sample(&p, "lakefuse_cache_limit_bytes", "tier", "disk", m->disk.limit_bytes);
    single(&p, "lakefuse_cache_blocks", "gauge", "Data blocks in memory.", m->mem.blocks);

    single(&p, "lakefuse_readahead_blocks_total", "counter",
           "Data blocks fetched ahead of a reader.", m->ra_blocks);
    single(&p, "lakefuse_readahead_wasted_blocks_total", "counter",
           "Blocks fetched ahead that left memory before anything read them.", m->ra_wasted);
    single(&p, "lakefuse_readahead_refused_total", "counter",
           "Blocks not fetched ahead because the memory budget was taken.", m->ra_refused);

    single(&p, "lakefuse_staged_files", "gauge", "Files held in the staging area.",
           m->staged_files);
    single(&p, "lakefuse_staged_bytes", "gauge", "Bytes held in the staging area.",
           m->staged_bytes);
    single(&p, "lakefuse_staging_limit_bytes", "gauge", "Bytes the staging area may hold.",
           m->staging_limit_bytes);
    single(&p, "lakefuse_uploads_waiting_files", "gauge",
           "Staged files whose upload is pending.", m->waiting_files);
    single(&p, "lakefuse_uploads_waiting_bytes", "gauge",
           "Bytes of the staged files whose upload is pending.", m->waiting_bytes);
    single(&p, "lakefuse_uploads_total", "counter",
           "Objects uploaded (single PUTs and completed multipart uploads).", m->uploads);
    single(&p, "lakefuse_upload_parts_total", "counter", "Multipart upload parts sent.",
           m->upload_parts);
    single(&p, "lakefuse_upload_failures_total", "counter",
           "Uploads that failed (the file stays staged for the next try).",
           m->upload_failures);

    family(&p, "lakefuse_open_files", "gauge", "Files open through the mount, by access mode.");
    sample(&p, "lakefuse_open_files", "mode", "read", m->open_read);
    sample(&p, "lakefuse_open_files", "mode", "write", m->open_write);
    return p.rc;
}

/* ---- JSON ------------------------------------------------------------------ */

static int json_string(struct lf_buf *out, const char *s)
{
    int rc = lf_buf_puts(out, "\"");
    for (; *s && !rc; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            rc = lf_buf_printf(out, "\\%c", c);
        else if (c < 0x20)
            rc = lf_buf_printf(out, "\\u%04x", c);
        else
            rc = lf_buf_append(out, s, 1);
    }
    return rc ? rc : lf_buf_puts(out, "\"");
}

/* "key":{"total":N,"by_<by>":{"name":value,...}}; the last entry (the
 * "Other" operation) only when it is not zero, with skip_zero_last. */
static int json_counts(struct lf_buf *out, const char *key, const char *by, const uint64_t *v,
                       unsigned n, const char *(*name)(unsigned), bool skip_zero_last)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += v[i];
    int rc = lf_buf_printf(out, "\"%s\":{\"total\":%" PRIu64 ",\"by_%s\":{", key, total, by);
    bool first = true;
    for (unsigned i = 0; i < n && !rc; i++) {
        if (skip_zero_last && i == n - 1 && v[i] == 0)
            continue;
        rc = lf_buf_printf(out, "%s\"%s\":%" PRIu64, first ? "" : ",", name(i), v[i]);
        first = false;
    }
    return rc ? rc : lf_buf_puts(out, "}}");
}

static const char *op_name(unsigned i) { return lf_store_op_name((enum lf_store_op)i); }
static const char *err_name(unsigned i) { return lf_store_err_name((enum lf_store_err)i); }

int lf_metrics_json(const struct lf_metrics *m, struct lf_buf *out)
{
    const struct lf_store_stats *s = &m->store;
    int rc = lf_buf_puts(out, "{\"mountpoint\":");
    if (!rc)
        rc = m->mountpoint ? json_string(out, m->mountpoint) : lf_buf_puts(out, "null");
    if (!rc)
        rc = lf_buf_printf(out, ",\"start_time\":%.3f,\"uptime_seconds\":%.3f,", m->start_time,
                           m->uptime);
    if (!rc)
        rc = json_counts(out, "requests", "op", s->requests, LF_OP_COUNT, op_name, true);
    if (!rc && !(rc = lf_buf_puts(out, ",")))
        rc = json_counts(out, "errors", "kind", s->errors, LF_ERR_COUNT, err_name, false);
    if (!rc && !(rc = lf_buf_puts(out, ",")))
        rc = json_counts(out, "retries", "kind", s->retries, LF_ERR_COUNT, err_name, false);
    if (!rc)
        rc = lf_buf_printf(
            out,
            ",\"failed_operations\":%" PRIu64 ",\"bytes\":{\"received\":%" PRIu64
            ",\"sent\":%" PRIu64 "},"
            "\"cache\":{\"memory\":{\"hits\":%" PRIu64 ",\"misses\":%" PRIu64
            ",\"evictions\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"limit_bytes\":%" PRIu64
            ",\"blocks\":%" PRIu64 "},\"disk\":{\"hits\":%" PRIu64 ",\"writes\":%" PRIu64
            ",\"bytes\":%" PRIu64 ",\"limit_bytes\":%" PRIu64 "}},"
            "\"readahead\":{\"blocks\":%" PRIu64 ",\"wasted_blocks\":%" PRIu64
            ",\"refused\":%" PRIu64 "},"
            "\"staging\":{\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"limit_bytes\":%" PRIu64
            "},\"uploads\":{\"waiting_files\":%" PRIu64 ",\"waiting_bytes\":%" PRIu64
            ",\"done\":%" PRIu64 ",\"parts\":%" PRIu64 ",\"failed\":%" PRIu64 "},"
            "\"open_files\":{\"read\":%" PRIu64 ",\"write\":%" PRIu64 "}",
            s->failures, s->bytes_in, s->bytes_out, m->mem.hits, m->mem.misses,
            m->mem.evictions, m->mem.bytes, m->mem.limit_bytes, m->mem.blocks, m->disk.hits,
            m->disk.writes, m->disk.bytes, m->disk.limit_bytes, m->ra_blocks, m->ra_wasted,
            m->ra_refused, m->staged_files, m->staged_bytes, m->staging_limit_bytes,
            m->waiting_files, m->waiting_bytes, m->uploads, m->upload_parts,
            m->upload_failures, m->open_read, m->open_write);
    if (!rc && s->storage.on)
        rc = lf_buf_printf(out,
                           ",\"storage\":{\"requests\":%" PRIu64 ",\"retries\":%" PRIu64
                           ",\"url_renewals\":%" PRIu64 ",\"failed_operations\":%" PRIu64
                           ",\"api_calls\":%" PRIu64 ",\"bytes\":{\"received\":%" PRIu64
                           ",\"sent\":%" PRIu64 "}}",
                           s->storage.requests, s->storage.retries, s->storage.refreshes,
                           s->storage.failures, s->storage.api_calls, s->storage.bytes_in,
                           s->storage.bytes_out);
    if (!rc)
        rc = lf_buf_puts(out, "}\n");
    return rc;
}

/* ---- text ------------------------------------------------------------------ */

const char *lf_human_bytes(uint64_t v, char *buf, size_t cap)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    if (v < 1024) {
        snprintf(buf, cap, "%" PRIu64 " B", v);
        return buf;
    }
    double d = (double)v / 1024;
    unsigned u = 0;
    while (d >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        d /= 1024;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", d, units[u]);
    return buf;
}

static const char *human_duration(double secs, char *buf, size_t cap)
{
    uint64_t s = secs > 0 ? (uint64_t)secs : 0;
    if (s >= 86400)
        snprintf(buf, cap, "%" PRIu64 "d %02" PRIu64 "h", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(buf, cap, "%" PRIu64 "h %02" PRIu64 "m", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(buf, cap, "%" PRIu64 "m %02" PRIu64 "s", s / 60, s % 60);
    else
        snprintf(buf, cap, "%" PRIu64 "s", s);
    return buf;
}

/* "N (a 1, b 2)" of the non-zero entries; just "N" when all are zero. */
static int text_counts(struct lf_buf *out, const uint64_t *v, unsigned n,
                       const char *(*name)(unsigned))
{
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += v[i];
    int rc = lf_buf_printf(out, "%" PRIu64, total);
    const char *sep = " (";
    for (unsigned i = 0; i < n && !rc; i++) {
        if (!v[i])
            continue;
        rc = lf_buf_printf(out, "%s%s %" PRIu64, sep, name(i), v[i]);
        sep = ", ";
    }
    return rc || total == 0 ? rc : lf_buf_puts(out, ")");
}

int lf_metrics_text(const struct lf_metrics *m, struct lf_buf *out)
{
    const struct lf_store_stats *s = &m->store;
    char a[32], b[32];
    int rc = lf_buf_printf(out, "lakefuse stats of %s, up %s\n",
                           m->mountpoint ? m->mountpoint : "the mount",
                           human_duration(m->uptime, a, sizeof(a)));
    if (!rc && !(rc = lf_buf_puts(out, "requests    ")))
        rc = text_counts(out, s->requests, LF_OP_COUNT, op_name);
    if (!rc && !(rc = lf_buf_puts(out, "\nerrors      ")))
        rc = text_counts(out, s->errors, LF_ERR_COUNT, err_name);
    if (!rc && !(rc = lf_buf_puts(out, "\nretries     ")))
        rc = text_counts(out, s->retries, LF_ERR_COUNT, err_name);
    if (!rc)
        rc = lf_buf_printf(out, "\nfailed      %" PRIu64 " operations\n"
                                "transfer    %s received, %s sent\n",
                           s->failures, lf_human_bytes(s->bytes_in, a, sizeof(a)),
                           lf_human_bytes(s->bytes_out, b, sizeof(b)));
    if (!rc && s->storage.on)
        rc = lf_buf_printf(out, "storage     %" PRIu64 " requests, %" PRIu64 " retries, %" PRIu64
                                " URLs renewed, %" PRIu64 " failed; %s received, %s sent\n",
                           s->storage.requests, s->storage.retries, s->storage.refreshes,
                           s->storage.failures,
                           lf_human_bytes(s->storage.bytes_in, a, sizeof(a)),
                           lf_human_bytes(s->storage.bytes_out, b, sizeof(b)));
    uint64_t looked = m->mem.hits + m->disk.hits + m->mem.misses;
    if (!rc)
        rc = lf_buf_printf(out, "cache       memory %s", lf_human_bytes(m->mem.bytes, a, sizeof(a)));
    if (!rc)
        rc = lf_buf_printf(out, " of %s in %" PRIu64 " blocks; %" PRIu64 " hits, %" PRIu64
                                " misses",
                           lf_human_bytes(m->mem.limit_bytes, a, sizeof(a)), m->mem.blocks,
                           m->mem.hits, m->mem.misses);
    if (!rc && looked)
        rc = lf_buf_printf(out, " (%.1f%% hits)",
                           100.0 * (double)(m->mem.hits + m->disk.hits) / (double)looked);
    if (!rc)
        rc = lf_buf_printf(out, ", %" PRIu64 " evictions\n", m->mem.evictions);
    if (!rc && m->disk.limit_bytes)
        rc = lf_buf_printf(out, "            disk %s of %s; %" PRIu64 " hits, %" PRIu64
                                " writes\n",
                           lf_human_bytes(m->disk.bytes, a, sizeof(a)),
                           lf_human_bytes(m->disk.limit_bytes, b, sizeof(b)), m->disk.hits,
                           m->disk.writes);
    else if (!rc)
        rc = lf_buf_puts(out, "            disk off\n");
    if (!rc)
        rc = lf_buf_printf(out, "readahead   %" PRIu64 " blocks fetched ahead, %" PRIu64
                                " wasted (evicted unread), %" PRIu64 " refused\n",
                           m->ra_blocks, m->ra_wasted, m->ra_refused);
    if (!rc)
        rc = lf_buf_printf(out, "staging     %" PRIu64 " file%s, %s", m->staged_files,
                           m->staged_files == 1 ? "" : "s",
                           lf_human_bytes(m->staged_bytes, a, sizeof(a)));
    if (!rc)
        rc = lf_buf_printf(out, " (limit %s)\n",
                           lf_human_bytes(m->staging_limit_bytes, a, sizeof(a)));
    if (!rc)
        rc = lf_buf_printf(out, "uploads     %" PRIu64 " waiting (%s), %" PRIu64
                                " done (%" PRIu64 " parts), %" PRIu64 " failed\n",
                           m->waiting_files, lf_human_bytes(m->waiting_bytes, a, sizeof(a)),
                           m->uploads, m->upload_parts, m->upload_failures);
    if (!rc)
        rc = lf_buf_printf(out, "open files  %" PRIu64 " (%" PRIu64 " for writing)\n",
                           m->open_read + m->open_write, m->open_write);
    return rc;
}

/* ---- the file ---------------------------------------------------------------- */

/* "<path>.<pid>.tmp": beside path (a rename never crosses file systems),
 * and not a *.prom name the collector would read half-written. */
static int temp_name(const char *path, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s.%ld.tmp", path, (long)getpid());
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int lf_metrics_check_file(const char *path)
{
    char tmp[PATH_MAX];
    struct stat st;
    int rc = temp_name(path, tmp, sizeof(tmp));
    if (rc)
        return rc;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    close(fd);
    unlink(tmp);
    return 0;
}

int lf_metrics_write_file(const char *path, const struct lf_metrics *m)
{
    char tmp[PATH_MAX];
    struct lf_buf b = LF_BUF_INIT;
    int fd = -1;
    int rc = temp_name(path, tmp, sizeof(tmp));
    if (!rc)
        rc = lf_metrics_prometheus(m, &b);
    if (rc)
        goto out;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    for (size_t done = 0; done < b.len;) {
        ssize_t w = write(fd, b.data + done, b.len - done);
        if (w < 0) {
            rc = -errno;
            break;
        }
        done += (size_t)w;
    }
    if (close(fd) != 0 && !rc)
        rc = -errno;
    fd = -1;
    if (!rc && rename(tmp, path) != 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
out:
    lf_buf_free(&b);
    return rc;
}

struct lf_metrics_writer {
    char *path;
    double interval;
    lf_metrics_fn fn;
    void *arg;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
};

static void *writer_main(void *arg)
{
    struct lf_metrics_writer *w = arg;
    int last = 0;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        pthread_mutex_unlock(&w->lock);
        struct lf_metrics m;
        memset(&m, 0, sizeof(m));
        w->fn(w->arg, &m);
        int rc = lf_metrics_write_file(w->path, &m);
        if (rc && rc != last)
            lf_warn("metrics file %s: %s (trying again every %.3g s)", w->path, strerror(-rc),
                    w->interval);
        else if (!rc && last)
            lf_info("metrics file %s: written again", w->path);
        last = rc;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        double t = (double)until.tv_sec + until.tv_nsec / 1e9 + w->interval;
        until.tv_sec = (time_t)t;
        until.tv_nsec = (long)((t - (double)until.tv_sec) * 1e9);
        pthread_mutex_lock(&w->lock);
        while (!w->stop && pthread_cond_timedwait(&w->wake, &w->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

struct lf_metrics_writer *lf_metrics_writer_start(const char *path, double interval,
                                                  lf_metrics_fn fn, void *arg)
{
    struct lf_metrics_writer *w = calloc(1, sizeof(*w));
    pthread_condattr_t ca;
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return NULL;
    }
    w->interval = interval > 0.01 ? interval : 0.01;
    w->fn = fn;
    w->arg = arg;
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* a clock step neither stalls nor floods it */
    pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w->path);
        free(w);
        return NULL;
    }
    return w;
}

void lf_metrics_writer_stop(struct lf_metrics_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    if (unlink(w->path) != 0 && errno != ENOENT)
        lf_warn("metrics file %s: cannot remove it: %s", w->path, strerror(errno));
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w->path);
    free(w);
}
