/* metrics: a running mount's counters, rendered for people (`lakefuse
 * stats`), for scripts (JSON) and for Prometheus (its text exposition
 * format), and written to a file the way node_exporter's textfile
 * collector reads one.
 *
 * A snapshot is plain numbers copied out of the modules that keep them
 * (the store, the block cache, staging, the fs's open files): nothing here
 * reaches into those modules, so each rendering is tested on a snapshot
 * made up by hand, and all three renderings show the same snapshot.
 *
 * Prometheus names follow its conventions: a lakefuse_ prefix, the unit in
 * the name (_bytes, _seconds), _total on counters, labels for dimensions
 * (op, kind, tier, mode), and a mountpoint label on every sample, so the
 * files of several mounts can share one textfile directory without their
 * series colliding.
 */
#ifndef LAKEFUSE_METRICS_H
#define LAKEFUSE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "lakefuse/buf.h"
#include "lakefuse/store.h"

struct lf_metrics {
    const char *mountpoint; /* borrowed; NULL: no mountpoint label */
    double start_time;      /* Unix time the mount started, seconds */
    double uptime;          /* seconds */
    struct lf_store_stats store;
    struct {
        uint64_t hits, misses, evictions, bytes, limit_bytes, blocks;
    } mem;
    struct {
        uint64_t hits, writes, bytes, limit_bytes; /* limit_bytes 0: no disk tier */
    } disk;
    uint64_t ra_blocks, ra_wasted, ra_refused; /* readahead, in cache blocks */
    uint64_t staged_files, staged_bytes, staging_limit_bytes;
    uint64_t waiting_files, waiting_bytes; /* uploads pending */
    uint64_t uploads, upload_parts, upload_failures;
    uint64_t open_read, open_write; /* open files by access mode */
};

/* Each appends its rendering to out; 0 or -ENOMEM. */
int lf_metrics_prometheus(const struct lf_metrics *m, struct lf_buf *out);
/* One line: a JSON object, for scripts (and `--watch --json` as JSON Lines). */
int lf_metrics_json(const struct lf_metrics *m, struct lf_buf *out);
/* A few aligned lines for people. */
int lf_metrics_text(const struct lf_metrics *m, struct lf_buf *out);

/* "512 B", "1.5 MiB": for people. Returns buf. */
const char *lf_human_bytes(uint64_t v, char *buf, size_t cap);

/* Whether path can take a metrics file: its directory exists and we may
 * create files there, and path is not something other than a file.
 * 0 or a negative errno. */
int lf_metrics_check_file(const char *path);
/* Writes the Prometheus rendering to path atomically: a temporary file in
 * the same directory (not ending in .prom, so the collector skips it),
 * then a rename over path. 0 or a negative errno. */
int lf_metrics_write_file(const char *path, const struct lf_metrics *m);

/* A thread that takes a snapshot with fn and writes it to path every
 * interval seconds (at once, too). Failures are logged when they start and
 * when they end, not every time. NULL when the thread cannot start. */
typedef void (*lf_metrics_fn)(void *arg, struct lf_metrics *out);
struct lf_metrics_writer;
struct lf_metrics_writer *lf_metrics_writer_start(const char *path, double interval,
                                                  lf_metrics_fn fn, void *arg);
/* Stops the thread and removes the file: a mount that is gone has no
 * counters, and a file left behind would show frozen ones as current. */
void lf_metrics_writer_stop(struct lf_metrics_writer *w);

#endif
