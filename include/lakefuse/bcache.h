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
 *
 * An optional disk tier (lf_bcache_enable_disk) keeps what memory evicts:
 * an evicted block is written to a file of its own, and a later miss in
 * memory loads it back instead of fetching it again. Every file carries its
 * key and a SHA-256 of its bytes, so a damaged file or a name collision is
 * a miss, never wrong data. The tier starts empty on every run.
 *
 * The tier shares its filesystem with staged writes, which must never fail
 * for its sake: it writes no block that would leave less free than
 * LF_BCACHE_DISK_RESERVE allows, and gives its files back on request
 * (lf_bcache_disk_trim) when a write finds the disk full anyway.
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

/* hits: found in memory; disk_hits: loaded from the disk tier; misses: the
 * caller had to fetch (acquire returned created). evictions counts blocks
 * leaving memory, whether or not they were written to disk. disk_bytes is
 * the size of the tier's files, including those being written.
 * prefetched: misses in PREFETCH mode (blocks fetched ahead of a reader);
 * prefetch_wasted: blocks evicted while nothing had read them since their
 * prefetch. */
struct lf_bcache_stats {
    uint64_t hits, misses, evictions, prefetch_refused;
    uint64_t prefetched, prefetch_wasted;
    uint64_t disk_hits, disk_writes, disk_bytes;
    size_t used_bytes, budget_bytes, blocks;
};

struct lf_bcache *lf_bcache_new(size_t budget_bytes, size_t block_size);
void lf_bcache_free(struct lf_bcache *c);
size_t lf_bcache_block_size(const struct lf_bcache *c);

/* Adds the disk tier in dir, holding at most limit_bytes of files (0: no
 * tier, returns 0). Call once, right after lf_bcache_new and before the
 * cache is shared between threads.
 *
 * dir is created 0700 if missing (its parent must exist) and made 0700 if
 * it is open to others; block files are 0600. The directory is locked
 * (flock) for the cache's lifetime, so two daemons never share it: -EBUSY
 * when another one holds it. Block files an earlier run left are removed,
 * and lf_bcache_free removes this run's; other files in dir are left
 * alone, but a directory of its own is best. Errors: -EEXIST (a tier is
 * already on), -ENOTDIR, -EACCES, -EBUSY, -ENOMEM, or the errno of a
 * failed mkdir/open. On error the cache works on in memory only. */
int lf_bcache_enable_disk(struct lf_bcache *c, const char *dir, uint64_t limit_bytes);

/* Finds the block, or (mode permitting) creates it PENDING. Returns 0 with
 * *out pinned, *created telling whether the caller must fill it and call
 * lf_bcache_complete. -ENOENT (LOOKUP miss), -ENOBUFS (PREFETCH over
 * budget), -ENOMEM.
 *
 * With a disk tier, a memory miss in PREFETCH or DEMAND mode first looks
 * on disk: found, the block is read in this call and returned READY with
 * *created false. LOOKUP never reads the disk. Making room in memory may
 * also write evicted blocks to disk in this call (as may
 * lf_bcache_release). */
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
/* lf_bcache_complete then lf_bcache_release(consumed=false), as one step,
 * for a creator that pinned the block only to fill it (a prefetch): no
 * reader can see the block READY while that pin remains, so a reader that
 * consumes it is its last holder and its release frees it, on every
 * schedule. */
void lf_bcache_complete_release(struct lf_bcache *c, struct lf_block *b, size_t len,
                                int err);

void lf_bcache_get_stats(struct lf_bcache *c, struct lf_bcache_stats *st);

/* Free space the disk tier leaves on its filesystem: an eighth of it, at
 * most this many bytes. */
#define LF_BCACHE_DISK_RESERVE ((uint64_t)1 << 30)

/* Removes disk-tier files, least recent first, until at least `bytes` are
 * freed or none is left; returns the bytes freed (0 without a tier). For
 * a writer that found the disk full. Thread-safe. */
uint64_t lf_bcache_disk_trim(struct lf_bcache *c, uint64_t bytes);

#endif
