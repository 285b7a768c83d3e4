/* bcache: object data in fixed-size blocks, keyed by content identity.
 *
 * A block is named by (ETag, object size, block index), not by path: the
 * same object reached through a branch, a tag and a commit ID is fetched
 * once. One memory budget bounds every block, ready or in flight, so
 * readahead windows of all open files compete for the same bytes.
 *
 * Buffers are recycled rather than freed: a steady reader reuses warm pages,
 * and the process's RSS for data never exceeds the budget (plus a small
 * overshoot for demand reads, see lf_bcache_acquire).
 *
 * A block is PENDING while the thread that created it fills it, then READY
 * or failed. Readers pin blocks while they copy out of them; only unpinned
 * READY blocks are evicted, least recently used first.
 */
#ifndef LAKEFUSE_BCACHE_H
#define LAKEFUSE_BCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lakefuse/store.h"

struct lf_bcache;
struct lf_block;

struct lf_bkey {
    const char *etag;
    uint64_t objsize;
    uint64_t index;
};

enum lf_bcache_mode {
    LF_BC_LOOKUP,   /* only find; never create */
    LF_BC_PREFETCH, /* create only within the budget, else -ENOBUFS */
    LF_BC_DEMAND,   /* create; may overshoot the budget by a bounded slack */
};

struct lf_bcache_stats {
    uint64_t hits, misses, evictions, prefetch_refused;
    size_t used_bytes, budget_bytes, blocks;
};

struct lf_bcache *lf_bcache_new(size_t budget_bytes, size_t block_size);
void lf_bcache_free(struct lf_bcache *c);
size_t lf_bcache_block_size(const struct lf_bcache *c);

/* Finds the block, or (mode permitting) creates it PENDING. Returns 0 with
 * *out pinned, *created telling whether the caller must fill it and call
 * lf_bcache_complete. -ENOENT (LOOKUP miss), -ENOBUFS (PREFETCH over
 * budget), -ENOMEM. */
int lf_bcache_acquire(struct lf_bcache *c, const struct lf_bkey *key,
                      enum lf_bcache_mode mode, struct lf_block **out,
                      bool *created);
/* The block's buffer (block_size bytes) and, once ready, its valid length. */
void *lf_block_data(struct lf_block *b);
size_t lf_block_len(struct lf_block *b);
/* Ends the PENDING state: err 0 with len valid bytes, or a negative errno
 * (the block is dropped from the cache; later readers fetch again). */
void lf_bcache_complete(struct lf_bcache *c, struct lf_block *b, size_t len,
                        int err);
/* Waits until the block is no longer PENDING; returns its error or 0.
 * cancelled (may be NULL) is polled every 100 ms: -EINTR when it says so. */
int lf_bcache_wait(struct lf_bcache *c, struct lf_block *b,
                   const struct lf_read_ctl *ctl);
/* Unpins. A sequential reader passes consumed=true for blocks it will not
 * read again, which makes them the first to be evicted. */
void lf_bcache_release(struct lf_bcache *c, struct lf_block *b, bool consumed);

void lf_bcache_get_stats(struct lf_bcache *c, struct lf_bcache_stats *st);

#endif
