/* readahead: the window logic plus fetch jobs that fill runs of cache
 * blocks with one ranged GET each.
 *
 * A fetch job owns pins on the PENDING blocks it fills, and a reference on
 * the reader's shared identity (bucket, key, ETag), so the reader may be
 * freed while its jobs still run: lf_reader_free waits for them anyway, to
 * keep request accounting exact when a file is closed.
 */
#include "lakefuse/readahead.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lakefuse/log.h"

#define MAX_RUN 64 /* blocks per GET, an upper bound for the iovec */

struct lf_reader {
    struct lf_bcache *cache;
    struct lf_store *store;
    struct lf_workq *wq;
    char *bucket, *key;
    char etag[LF_ETAG_MAX];
    uint64_t size;
    size_t bs;
    struct lf_ra_opts o;

    pthread_mutex_t lock;
    pthread_cond_t idle;
    uint64_t last_end;  /* end of the previous read */
    uint64_t ra_end;    /* prefetch issued up to here */
    uint64_t trigger;   /* passing this opens the next window */
    size_t window;
    unsigned inflight;  /* fetch jobs running */
    bool closing;       /* freed: prefetches still running stop early */
    struct lf_ra_stats st;
};

struct fetch {
    struct lf_reader *r;
    uint64_t first;     /* block index */
    unsigned n;
    struct lf_block *blocks[MAX_RUN];
};

static uint64_t block_len(const struct lf_reader *r, uint64_t idx)
{
    uint64_t start = idx * r->bs;
    uint64_t left = r->size > start ? r->size - start : 0;
    return left < r->bs ? left : r->bs;
}

/* One ranged GET into the run's blocks; completes every block. */
static int fetch_run(struct fetch *f, const struct lf_read_ctl *ctl)
{
    struct lf_reader *r = f->r;
    struct iovec iov[MAX_RUN];
    size_t want = 0, got = 0;
    for (unsigned i = 0; i < f->n; i++) {
        iov[i].iov_base = lf_block_data(f->blocks[i]);
        iov[i].iov_len = block_len(r, f->first + i);
        want += iov[i].iov_len;
    }
    int rc = r->store->ops->get(r->store->ctx, r->bucket, r->key, f->first * r->bs,
                                iov, (int)f->n, r->etag, &got, ctl);
    if (rc == 0 && got != want) {
        lf_err("read %s/%s: got %zu of %zu bytes at offset %llu: object changed size",
               r->bucket, r->key, got, want, (unsigned long long)(f->first * r->bs));
        rc = -ESTALE;
    }
    if (rc == -ESTALE)
        lf_err("read %s/%s: object replaced while open (ETag no longer %s)",
               r->bucket, r->key, r->etag);
    for (unsigned i = 0; i < f->n; i++)
        lf_bcache_complete(r->cache, f->blocks[i], iov[i].iov_len, rc);
    pthread_mutex_lock(&r->lock);
    r->st.gets++;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* A prefetch nobody will read any more (the file was closed) is not
 * worth waiting for: closing and unmounting stay quick on a slow gateway. */
static int reader_closing(void *arg)
{
    struct lf_reader *r = arg;
    pthread_mutex_lock(&r->lock);
    bool v = r->closing;
    pthread_mutex_unlock(&r->lock);
    return v;
}

static void fetch_job(void *arg)
{
    struct fetch *f = arg;
    struct lf_reader *r = f->r;
    struct lf_read_ctl ctl = {.cancelled = reader_closing, .arg = r};
    fetch_run(f, &ctl);
    for (unsigned i = 0; i < f->n; i++)
        lf_bcache_release(r->cache, f->blocks[i], false);
    free(f);
    pthread_mutex_lock(&r->lock);
    if (--r->inflight == 0)
        pthread_cond_broadcast(&r->idle);
    pthread_mutex_unlock(&r->lock);
}

struct lf_reader *lf_reader_new(struct lf_bcache *cache, struct lf_store *store,
                                struct lf_workq *wq, const char *bucket,
                                const char *key, const char *etag,
                                uint64_t size, const struct lf_ra_opts *opts)
{
    struct lf_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->bucket = strdup(bucket);
    r->key = strdup(key);
    if (!r->bucket || !r->key) {
        free(r->bucket);
        free(r->key);
        free(r);
        return NULL;
    }
    snprintf(r->etag, sizeof(r->etag), "%s", etag ? etag : "");
    r->cache = cache;
    r->store = store;
    r->wq = wq;
    r->size = size;
    r->bs = lf_bcache_block_size(cache);
    r->o.initial_window = opts && opts->initial_window ? opts->initial_window : 1u << 20;
    r->o.max_window = opts && opts->max_window ? opts->max_window : 64u << 20;
    r->o.request_size = opts && opts->request_size ? opts->request_size : 8u << 20;
    if (r->o.request_size > MAX_RUN * r->bs)
        r->o.request_size = MAX_RUN * r->bs;
    if (r->o.request_size < r->bs)
        r->o.request_size = r->bs;
    r->window = r->o.initial_window;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->idle, NULL);
    return r;
}

void lf_reader_free(struct lf_reader *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->closing = true;
    while (r->inflight > 0)
        pthread_cond_wait(&r->idle, &r->lock);
    pthread_mutex_unlock(&r->lock);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->idle);
    free(r->bucket);
    free(r->key);
    free(r);
}

static void submit_fetch(struct lf_reader *r, struct fetch *f)
{
    pthread_mutex_lock(&r->lock);
    r->inflight++;
    r->st.prefetched += (uint64_t)f->n * r->bs;
    pthread_mutex_unlock(&r->lock);
    if (lf_workq_submit(r->wq, fetch_job, f) != 0)
        fetch_job(f); /* no memory to queue it: do it here */
}

/* Queues GETs for blocks [from, to) not yet cached, in runs of at most
 * request_size. Returns the block index up to which prefetch was issued
 * (less than `to` when the budget refused). */
static uint64_t prefetch(struct lf_reader *r, uint64_t from, uint64_t to)
{
    struct lf_bkey k = {.etag = r->etag, .objsize = r->size};
    unsigned per_run = (unsigned)(r->o.request_size / r->bs);
    struct fetch *f = NULL;
    uint64_t idx;

    for (idx = from; idx < to; idx++) {
        struct lf_block *b;
        bool created;
        k.index = idx;
        if (lf_bcache_acquire(r->cache, &k, LF_BC_PREFETCH, &b, &created) != 0)
            break;
        if (!created) {
            /* Cached or in flight already: the run before it ends here. */
            lf_bcache_release(r->cache, b, false);
            if (f)
                submit_fetch(r, f);
            f = NULL;
            continue;
        }
        if (!f && !(f = calloc(1, sizeof(*f)))) {
            lf_bcache_complete(r->cache, b, 0, -ENOMEM);
            lf_bcache_release(r->cache, b, false);
            break;
        }
        if (f->n == 0) {
            f->r = r;
            f->first = idx;
        }
        f->blocks[f->n++] = b;
        if (f->n == per_run) {
            submit_fetch(r, f);
            f = NULL;
        }
    }
    if (f)
        submit_fetch(r, f);
    return idx;
}

/* Decides the prefetch for a read at [off, end) and updates the window.
 *
 * As in the kernel's own readahead, the window doubles once per window
 * the reader consumes, not once per read: a new window is opened when the
 * reader passes the start of the previous one (the trigger), so the next
 * GETs are in flight while it reads the current ones, and a reader that
 * stops early has not pulled the whole maximum window for a few reads. */
static void plan_readahead(struct lf_reader *r, uint64_t off, uint64_t end)
{
    uint64_t from = 0, to = 0;
    pthread_mutex_lock(&r->lock);
    /* The kernel issues readahead asynchronously from several threads, so
     * "sequential" tolerates reads that arrive a little out of order. */
    bool seq = off <= r->last_end + r->window &&
               off + r->o.request_size >= r->last_end && r->last_end > 0;
    bool first = off == 0 && r->last_end == 0;
    if (seq || first) {
        uint64_t start = 0, target = 0;
        if (r->ra_end < end) {
            /* Nothing ahead of the reader (first read, or it caught up):
             * open a window right after this read. */
            if (!first && r->window < r->o.max_window)
                r->window *= 2;
            start = end;
        } else if (end > r->trigger) {
            if (r->window < r->o.max_window)
                r->window *= 2;
            start = r->ra_end;
        }
        if (r->window > r->o.max_window)
            r->window = r->o.max_window;
        if (start) {
            target = start + r->window;
            if (target > r->size)
                target = r->size;
            r->trigger = start;
        }
        if (target > start) {
            from = start / r->bs;
            to = (target + r->bs - 1) / r->bs;
        }
    } else {
        r->window = r->o.initial_window;
        r->ra_end = 0;
        r->trigger = 0;
    }
    seq = seq || first;
    if (end > r->last_end || !seq)
        r->last_end = end;
    pthread_mutex_unlock(&r->lock);

    if (to > from) {
        uint64_t done = prefetch(r, from, to);
        pthread_mutex_lock(&r->lock);
        uint64_t reached = done * r->bs;
        if (reached > r->ra_end)
            r->ra_end = reached;
        if (done < to && r->window > r->o.initial_window)
            r->window /= 2; /* memory pressure: share the budget */
        pthread_mutex_unlock(&r->lock);
    }
}

/* Pins the blocks covering [off, off + len) once they are READY, fetching
 * what is missing; fills held[] (at most MAX_RUN + 1). len has been
 * clipped to the object and spans at most MAX_RUN blocks. */
/* Unpins; a block read to its end is one a sequential reader is done with. */
static void unpin_range(struct lf_bcache *cache, size_t bs, uint64_t off, size_t len,
                        struct lf_block **held, unsigned nheld)
{
    uint64_t first = off / bs, end = off + len;
    for (unsigned i = 0; i < nheld; i++) {
        uint64_t bend = (first + i + 1) * bs;
        lf_bcache_release(cache, held[i], bend <= end);
    }
}

static int pin_range_once(struct lf_reader *r, uint64_t off, size_t len,
                          const struct lf_read_ctl *ctl, struct lf_block **held,
                          unsigned *nheld);

static bool cancelled(const struct lf_read_ctl *ctl)
{
    return ctl && ctl->cancelled && ctl->cancelled(ctl->arg);
}

/* A block can fail with -EINTR because another reader of the same content
 * gave up on the prefetch it had started (its file was closed): that is
 * not our interruption, so fetch again. */
static int pin_range(struct lf_reader *r, uint64_t off, size_t len,
                     const struct lf_read_ctl *ctl, struct lf_block **held, unsigned *nheld)
{
    int rc = -EINTR;
    for (int attempt = 0; attempt < 3 && rc == -EINTR && !cancelled(ctl); attempt++) {
        if (attempt > 0)
            unpin_range(r->cache, r->bs, off, len, held, *nheld);
        rc = pin_range_once(r, off, len, ctl, held, nheld);
    }
    return rc;
}

static int pin_range_once(struct lf_reader *r, uint64_t off, size_t len,
                          const struct lf_read_ctl *ctl, struct lf_block **held,
                          unsigned *nheld)
{
    uint64_t end = off + len;
    uint64_t first = off / r->bs, last = (end - 1) / r->bs;
    int rc = 0;
    *nheld = 0;

    plan_readahead(r, off, end);

    /* Demand blocks: pin what is cached or in flight, fetch the rest here
     * in one GET per contiguous run. */
    struct fetch run = {.r = r};
    struct lf_bkey k = {.etag = r->etag, .objsize = r->size};
    for (uint64_t idx = first; idx <= last; idx++) {
        struct lf_block *b;
        bool created;
        k.index = idx;
        rc = lf_bcache_acquire(r->cache, &k, LF_BC_DEMAND, &b, &created);
        if (rc)
            break;
        held[(*nheld)++] = b;
        if (created) {
            if (run.n == 0)
                run.first = idx;
            run.blocks[run.n++] = b;
        }
        if (run.n && (!created || idx == last)) {
            rc = fetch_run(&run, ctl);
            run.n = 0;
            if (rc)
                break;
        }
    }
    if (rc) {
        /* Blocks we created but never fetched must not stay PENDING. */
        for (unsigned i = 0; i < run.n; i++)
            lf_bcache_complete(r->cache, run.blocks[i], 0, rc);
        return rc;
    }
    for (unsigned i = 0; i < *nheld; i++) {
        if ((rc = lf_bcache_wait(r->cache, held[i], ctl)))
            return rc;
        uint64_t bstart = (first + i) * r->bs;
        uint64_t to = end - bstart < r->bs ? end - bstart : r->bs;
        if (to > lf_block_len(held[i]))
            return -EIO; /* a short block in the middle: cannot happen */
    }
    return 0;
}

/* Clips a read to the object; 0 when nothing is left to read. */
static size_t clip(const struct lf_reader *r, size_t len, uint64_t off)
{
    if (off >= r->size)
        return 0;
    return len > r->size - off ? (size_t)(r->size - off) : len;
}

ssize_t lf_reader_read(struct lf_reader *r, void *dst, size_t len, uint64_t off,
                       const struct lf_read_ctl *ctl)
{
    if ((len = clip(r, len, off)) == 0)
        return 0;
    if ((len + r->bs - 1) / r->bs + 1 > MAX_RUN) {
        /* Larger than any FUSE read: split. */
        size_t half = (size_t)(MAX_RUN / 2) * r->bs;
        ssize_t a = lf_reader_read(r, dst, half, off, ctl);
        if (a < (ssize_t)half)
            return a;
        ssize_t b = lf_reader_read(r, (char *)dst + half, len - half, off + half, ctl);
        return b < 0 ? b : a + b;
    }
    struct lf_block *held[MAX_RUN + 2];
    unsigned nheld;
    int rc = pin_range(r, off, len, ctl, held, &nheld);
    if (!rc) {
        uint64_t first = off / r->bs, end = off + len;
        for (unsigned i = 0; i < nheld; i++) {
            uint64_t bstart = (first + i) * r->bs;
            uint64_t from = off > bstart ? off - bstart : 0;
            uint64_t to = end - bstart < r->bs ? end - bstart : r->bs;
            memcpy((char *)dst + (bstart + from - off), (char *)lf_block_data(held[i]) + from,
                   (size_t)(to - from));
        }
    }
    unpin_range(r->cache, r->bs, off, len, held, nheld);
    return rc ? rc : (ssize_t)len;
}

int lf_reader_pin(struct lf_reader *r, size_t len, uint64_t off, const struct lf_read_ctl *ctl,
                  struct lf_pinned *p)
{
    memset(p, 0, sizeof(*p));
    p->cache = r->cache;
    p->bs = r->bs;
    if ((len = clip(r, len, off)) == 0)
        return 0;
    if ((len + r->bs - 1) / r->bs + 1 > LF_PIN_MAX)
        return -EINVAL;
    p->off = off;
    p->len = len;
    int rc = pin_range(r, off, len, ctl, p->blocks, &p->nblocks);
    if (rc) {
        lf_reader_unpin(p);
        return rc;
    }
    uint64_t first = off / r->bs, end = off + len;
    for (unsigned i = 0; i < p->nblocks; i++) {
        uint64_t bstart = (first + i) * r->bs;
        uint64_t from = off > bstart ? off - bstart : 0;
        uint64_t to = end - bstart < r->bs ? end - bstart : r->bs;
        p->iov[i].iov_base = (char *)lf_block_data(p->blocks[i]) + from;
        p->iov[i].iov_len = (size_t)(to - from);
    }
    return 0;
}

void lf_reader_unpin(struct lf_pinned *p)
{
    unpin_range(p->cache, p->bs, p->off, p->len, p->blocks, p->nblocks);
    p->nblocks = 0;
}

void lf_reader_get_stats(struct lf_reader *r, struct lf_ra_stats *st)
{
    pthread_mutex_lock(&r->lock);
    *st = r->st;
    st->window = r->window;
    pthread_mutex_unlock(&r->lock);
}
