/* bcache: a chained hash table of blocks plus one LRU list, under one
 * mutex. Block data is copied in and out outside the lock: a pinned block
 * is never evicted or recycled, and a PENDING block is written only by the
 * thread that created it. */
#include "lakefuse/bcache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdio.h>
#include <time.h>

/* Demand reads may exceed the budget by this much rather than wait: the
 * FUSE threads' in-progress reads are few and short, and waiting for a
 * prefetch to drain would stall a random reader behind a sequential one. */
#define DEMAND_SLACK (32u * 1024 * 1024)

enum { PENDING, READY, FAILED };

struct lf_block {
    struct lf_block *hnext;
    struct lf_block *prev, *next; /* LRU; head = most recent */
    char etag[LF_ETAG_MAX];
    uint64_t objsize, index;
    uint32_t hash;
    int state, err;
    unsigned pins;
    bool linked;
    bool ahead; /* prefetched and not read yet: a reader is counting on it */
    size_t len;
    char *data;
};

struct lf_bcache {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    size_t block_size, budget, used;
    struct lf_block **table;
    size_t nbuckets, nblocks;
    struct lf_block lru; /* sentinel */
    void **spare;        /* recycled buffers */
    size_t nspare, capspare;
    /* Every buffer comes from one reserved arena, touched only as it is
     * handed out: RSS grows with use, and the kernel can back it with huge
     * pages (fewer faults on a cold mount's first gigabytes). */
    char *arena;
    size_t arena_size, arena_used;
    struct lf_bcache_stats st;
};

static uint32_t key_hash(const struct lf_bkey *k)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = k->etag; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h ^= k->objsize * 0x9e3779b97f4a7c15ull;
    h ^= (k->index + 0x632be59bd9b4e019ull) * 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(h ^ (h >> 32));
}

static void lru_unlink(struct lf_block *b)
{
    b->prev->next = b->next;
    b->next->prev = b->prev;
    b->prev = b->next = b;
}

static void lru_push_front(struct lf_bcache *c, struct lf_block *b)
{
    b->next = c->lru.next;
    b->prev = &c->lru;
    c->lru.next->prev = b;
    c->lru.next = b;
}

static void lru_push_back(struct lf_bcache *c, struct lf_block *b)
{
    b->prev = c->lru.prev;
    b->next = &c->lru;
    c->lru.prev->next = b;
    c->lru.prev = b;
}

struct lf_bcache *lf_bcache_new(size_t budget_bytes, size_t block_size)
{
    struct lf_bcache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->block_size = block_size;
    c->budget = budget_bytes < block_size ? block_size : budget_bytes;
    c->nbuckets = 1024;
    while (c->nbuckets < 4 * (c->budget / block_size))
        c->nbuckets *= 2;
    c->table = calloc(c->nbuckets, sizeof(*c->table));
    c->capspare = c->budget / block_size + DEMAND_SLACK / block_size + 1;
    c->spare = calloc(c->capspare, sizeof(*c->spare));
    c->arena_size = c->capspare * block_size;
    c->arena = mmap(NULL, c->arena_size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (c->arena == MAP_FAILED)
        c->arena = NULL;
    else
        madvise(c->arena, c->arena_size, MADV_HUGEPAGE);
    if (!c->table || !c->spare || !c->arena) {
        if (c->arena)
            munmap(c->arena, c->arena_size);
        free(c->table);
        free(c->spare);
        free(c);
        return NULL;
    }
    c->lru.prev = c->lru.next = &c->lru;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    return c;
}

static void buffer_release(struct lf_bcache *c, char *data)
{
    c->spare[c->nspare++] = data; /* room for every arena block */
    c->used -= c->block_size;
}

static void block_destroy(struct lf_bcache *c, struct lf_block *b)
{
    buffer_release(c, b->data);
    c->nblocks--;
    free(b);
}

static void table_unlink(struct lf_bcache *c, struct lf_block *b)
{
    struct lf_block **pp = &c->table[b->hash & (c->nbuckets - 1)];
    while (*pp && *pp != b)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = b->hnext;
    b->linked = false;
}

void lf_bcache_free(struct lf_bcache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct lf_block *b = c->table[i];
        while (b) {
            struct lf_block *n = b->hnext;
            free(b);
            b = n;
        }
    }
    munmap(c->arena, c->arena_size);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->changed);
    free(c->spare);
    free(c->table);
    free(c);
}

size_t lf_bcache_block_size(const struct lf_bcache *c) { return c->block_size; }

/* Evicts least recently used unpinned READY blocks until `need` more bytes
 * fit under `limit`. Blocks prefetched for a reader that has not reached
 * them yet are spared unless spare_ahead is false: evicting them to make
 * room for another reader's prefetch only makes both fetch twice. */
static void make_room(struct lf_bcache *c, size_t need, size_t limit, bool spare_ahead)
{
    struct lf_block *b = c->lru.prev;
    while (c->used + need > limit && b != &c->lru) {
        struct lf_block *prev = b->prev;
        if (b->pins == 0 && b->state == READY && !(spare_ahead && b->ahead)) {
            lru_unlink(b);
            table_unlink(c, b);
            block_destroy(c, b);
            c->st.evictions++;
        }
        b = prev;
    }
}

static char *buffer_get(struct lf_bcache *c)
{
    char *p = NULL;
    if (c->nspare > 0) {
        p = c->spare[--c->nspare];
    } else if (c->arena_used + c->block_size <= c->arena_size) {
        p = c->arena + c->arena_used;
        c->arena_used += c->block_size;
    }
    if (p)
        c->used += c->block_size;
    return p;
}

int lf_bcache_acquire(struct lf_bcache *c, const struct lf_bkey *key,
                      enum lf_bcache_mode mode, struct lf_block **out,
                      bool *created)
{
    uint32_t h = key_hash(key);
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    for (struct lf_block *b = c->table[h & (c->nbuckets - 1)]; b; b = b->hnext) {
        if (b->hash == h && b->index == key->index && b->objsize == key->objsize &&
            strcmp(b->etag, key->etag) == 0) {
            b->pins++;
            if (mode != LF_BC_PREFETCH)
                b->ahead = false;
            lru_unlink(b);
            lru_push_front(c, b);
            c->st.hits++;
            *out = b;
            *created = false;
            goto out;
        }
    }
    if (mode == LF_BC_LOOKUP) {
        rc = -ENOENT;
        goto out;
    }
    size_t limit = c->budget + (mode == LF_BC_DEMAND ? DEMAND_SLACK : 0);
    make_room(c, c->block_size, limit, true);
    if (c->used + c->block_size > limit && mode == LF_BC_DEMAND)
        make_room(c, c->block_size, limit, false); /* a reader waits: take anything */
    if (c->used + c->block_size > limit) {
        if (mode == LF_BC_PREFETCH)
            c->st.prefetch_refused++;
        rc = mode == LF_BC_PREFETCH ? -ENOBUFS : -ENOMEM;
        goto out;
    }
    struct lf_block *b = calloc(1, sizeof(*b));
    if (!b) {
        rc = -ENOMEM;
        goto out;
    }
    b->data = buffer_get(c);
    if (!b->data) {
        free(b);
        rc = -ENOMEM;
        goto out;
    }
    snprintf(b->etag, sizeof(b->etag), "%s", key->etag);
    b->objsize = key->objsize;
    b->index = key->index;
    b->hash = h;
    b->state = PENDING;
    b->ahead = mode == LF_BC_PREFETCH;
    b->pins = 1;
    b->linked = true;
    b->hnext = c->table[h & (c->nbuckets - 1)];
    c->table[h & (c->nbuckets - 1)] = b;
    lru_push_front(c, b);
    c->nblocks++;
    c->st.misses++;
    *out = b;
    *created = true;
out:
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void *lf_block_data(struct lf_block *b) { return b->data; }

size_t lf_block_len(struct lf_block *b) { return b->len; }

void lf_bcache_complete(struct lf_bcache *c, struct lf_block *b, size_t len, int err)
{
    pthread_mutex_lock(&c->lock);
    b->len = len;
    b->err = err;
    b->state = err ? FAILED : READY;
    if (err && b->linked) {
        /* Drop it now so the next reader tries again; pinned holders still
         * see the error through their pointer. */
        table_unlink(c, b);
        lru_unlink(b);
    }
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

int lf_bcache_wait(struct lf_bcache *c, struct lf_block *b, const struct lf_read_ctl *ctl)
{
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    while (b->state == PENDING) {
        if (ctl && ctl->cancelled && ctl->cancelled(ctl->arg)) {
            rc = -EINTR;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&c->changed, &c->lock, &ts);
    }
    if (!rc && b->state == FAILED)
        rc = b->err;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void lf_bcache_release(struct lf_bcache *c, struct lf_block *b, bool consumed)
{
    pthread_mutex_lock(&c->lock);
    if (--b->pins == 0) {
        if (!b->linked) {
            block_destroy(c, b);
        } else if (consumed && b->state == READY) {
            b->ahead = false;
            lru_unlink(b);
            lru_push_back(c, b);
        }
        /* Demand reads may have overshot: give the slack back now. */
        if (c->used > c->budget)
            make_room(c, 0, c->budget, true);
    }
    pthread_mutex_unlock(&c->lock);
}

void lf_bcache_get_stats(struct lf_bcache *c, struct lf_bcache_stats *st)
{
    pthread_mutex_lock(&c->lock);
    *st = c->st;
    st->used_bytes = c->used;
    st->budget_bytes = c->budget;
    st->blocks = c->nblocks;
    pthread_mutex_unlock(&c->lock);
}
