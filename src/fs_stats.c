/* fs_stats: the mount's counters in one snapshot (lakefuse/metrics.h),
 * for the stats verb and the --metrics-file writer.
 *
 * Each module keeps its own counters; this only copies them out, taking
 * each module's lock in turn and never two at once, so a snapshot costs
 * the hot paths nothing but a short wait. Open handles are counted here
 * with atomics, as the kernel gets and returns them. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_int.h"
#include "lakefuse/bcache.h"
#include "lakefuse/log.h"
#include "lakefuse/metrics.h"
#include "lakefuse/staging.h"

void fs_count_open(struct lf_fs *fs, struct fileh *fh)
{
    fh->counted = true;
    __atomic_add_fetch(&fs->open_files[fh->write], 1, __ATOMIC_RELAXED);
}

void fs_count_close(struct lf_fs *fs, struct fileh *fh)
{
    if (fh->counted)
        __atomic_sub_fetch(&fs->open_files[fh->write], 1, __ATOMIC_RELAXED);
    fh->counted = false;
}

void fs_metrics(struct lf_fs *fs, struct lf_metrics *m)
{
    struct lf_bcache_stats cs;
    struct timespec now;
    memset(m, 0, sizeof(*m));
    m->mountpoint = fs->cfg->mountpoint;
    m->start_time = (double)fs->started.tv_sec + fs->started.tv_nsec / 1e9;
    clock_gettime(CLOCK_REALTIME, &now);
    m->uptime = (double)now.tv_sec + now.tv_nsec / 1e9 - m->start_time;
    if (fs->store->ops->stats)
        fs->store->ops->stats(fs->store->ctx, &m->store);
    lf_bcache_get_stats(fs->cache, &cs);
    m->mem.hits = cs.hits;
    m->mem.misses = cs.misses;
    m->mem.evictions = cs.evictions;
    m->mem.bytes = cs.used_bytes;
    m->mem.limit_bytes = cs.budget_bytes;
    m->mem.blocks = cs.blocks;
    m->disk.hits = cs.disk_hits;
    m->disk.writes = cs.disk_writes;
    m->disk.bytes = cs.disk_bytes;
    m->disk.limit_bytes = fs->cfg->disk_cache_size;
    m->ra_blocks = cs.prefetched;
    m->ra_wasted = cs.prefetch_wasted;
    m->ra_refused = cs.prefetch_refused;
    if (fs->staging) {
        struct lf_staging_stats ss;
        lf_staging_get_stats(fs->staging, &ss);
        m->staged_files = ss.files;
        m->staged_bytes = ss.used_bytes;
        m->staging_limit_bytes = ss.max_bytes;
        m->waiting_files = ss.dirty;
        m->waiting_bytes = ss.dirty_bytes;
        m->uploads = ss.puts + ss.completes;
        m->upload_parts = ss.parts;
        m->upload_failures = ss.failures;
    }
    m->open_read = __atomic_load_n(&fs->open_files[0], __ATOMIC_RELAXED);
    m->open_write = __atomic_load_n(&fs->open_files[1], __ATOMIC_RELAXED);
}

static void snapshot(void *arg, struct lf_metrics *m) { fs_metrics(arg, m); }

void fs_metrics_start(struct lf_fs *fs)
{
    const struct lf_config *cfg = fs->cfg;
    if (!cfg->metrics_file)
        return;
    fs->metrics = lf_metrics_writer_start(cfg->metrics_file, cfg->metrics_interval, snapshot, fs);
    if (!fs->metrics)
        lf_warn("metrics file %s: cannot start its writer; no metrics", cfg->metrics_file);
}

void fs_metrics_stop(struct lf_fs *fs)
{
    lf_metrics_writer_stop(fs->metrics);
    fs->metrics = NULL;
}
