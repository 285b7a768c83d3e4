/* bcache's readahead counters: blocks fetched ahead, and those that left
 * memory before anything read them (what `lakefuse stats` calls wasted). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "lakefuse/bcache.h"

#define BS (4u << 20) /* big blocks: the demand slack (32 MiB) is 8 of them */

static struct lf_block *get(struct lf_bcache *c, uint64_t index, enum lf_bcache_mode mode,
                            bool *created)
{
    struct lf_bkey k = {.etag = "e", .objsize = 1u << 30, .index = index};
    struct lf_block *b = NULL;
    CHECK_INT(lf_bcache_acquire(c, &k, mode, &b, created), 0);
    return b;
}

/* A fetched block, unpinned: prefetched (ahead) or read on demand. */
static void fetched(struct lf_bcache *c, uint64_t index, enum lf_bcache_mode mode)
{
    bool created;
    struct lf_block *b = get(c, index, mode, &created);
    CHECK(created);
    lf_bcache_complete(c, b, BS, 0);
    lf_bcache_release(c, b, false);
}

int main(void)
{
    struct lf_bcache *c = lf_bcache_new(2 * BS, BS);
    struct lf_bcache_stats st;
    struct lf_block *held[16];
    bool created;
    CHECK(c != NULL);
    fetched(c, 0, LF_BC_PREFETCH);
    fetched(c, 1, LF_BC_PREFETCH);
    /* Block 1 is read: no longer waste once evicted. */
    lf_bcache_release(c, get(c, 1, LF_BC_DEMAND, &created), true);
    CHECK(!created);
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.prefetched, 2);
    CHECK_INT(st.misses, 2);
    CHECK_INT(st.prefetch_wasted, 0);

    /* Readers pin new blocks past the budget and the slack (10 blocks):
     * memory is taken back from the prefetched blocks, the one read first,
     * then the one nobody read. */
    unsigned n = 0;
    for (uint64_t i = 10; n < 10; i++) {
        held[n] = get(c, i, LF_BC_DEMAND, &created);
        CHECK(created);
        lf_bcache_complete(c, held[n++], BS, 0);
    }
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.evictions, 2);
    CHECK_INT(st.prefetch_wasted, 1);
    CHECK_INT(st.prefetched, 2);
    /* Block 0 went unread: fetching it again is a new miss. */
    for (unsigned i = 0; i < n; i++)
        lf_bcache_release(c, held[i], false);
    fetched(c, 0, LF_BC_DEMAND);
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.prefetched, 2);
    CHECK_INT(st.prefetch_wasted, 1);
    lf_bcache_free(c);
    return check_summary("test_bcache");
}
