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
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "lakefuse/log.h"

#define MAX_RUN 64 /* blocks per GET, an upper bound for the iovec */
#define MAX_LANES 8
#define SKIP_MAX (1u << 20) /* bytes a lane may drop to reach a read */
#define GAP_WAIT_MS 5       /* how long a read ahead of its lane waits for the one before */
#define SLOW_ANSWER_US 4000 /* an answer this late makes the window jump */

/* A lane is one ranged GET of a stream: its answer waits on the
 * connection, and reads take its body in order. */
enum lane_state { LANE_OPENING, LANE_READY, LANE_BUSY, LANE_FAILED };

struct lane {
    struct lf_reader *r;
    uint64_t start, end; /* the GET's range */
    uint64_t pos;        /* the next byte its body gives */
    int64_t asked_us;    /* when its GET was planned */
    enum lane_state state;
    int err;             /* why it failed */
    struct lf_stream *st;
};

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

    bool streaming;     /* sequential reads may open lanes */
    struct lane *lanes[MAX_LANES]; /* ordered by start, disjoint */
    unsigned nlanes;
    unsigned splicers;  /* threads in lf_reader_splice */
    uint64_t lane_trigger; /* passing this opens the next window of lanes */
    uint64_t lane_target;  /* where the current window of lanes ends */
    size_t block_max;      /* the largest window of blocks: half the cache's budget */
    int64_t answer_us;     /* the last slow answer: a lane's first byte, or a read's wait */
    bool squeezed;         /* the budget has refused this reader a window */
    pthread_cond_t lane_cv;
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

/* One ranged GET into the run's blocks; completes every block, and with
 * handoff also drops the run's pins on them in the same step (a prefetch
 * pins its blocks only to fill them). */
static int fetch_run(struct fetch *f, const struct lf_read_ctl *ctl, bool handoff)
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
    for (unsigned i = 0; i < f->n; i++) {
        if (handoff)
            lf_bcache_complete_release(r->cache, f->blocks[i], iov[i].iov_len, rc);
        else
            lf_bcache_complete(r->cache, f->blocks[i], iov[i].iov_len, rc);
    }
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
    fetch_run(f, &ctl, true);
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
    /* A window of blocks the cache cannot hold beside the ones being read
     * would push those out, to be fetched again (lanes hold their bytes
     * in sockets, not in the cache). */
    struct lf_bcache_stats cs;
    lf_bcache_get_stats(cache, &cs);
    r->block_max = cs.budget_bytes / 2 < r->o.max_window ? cs.budget_bytes / 2 : r->o.max_window;
    if (r->block_max < r->bs)
        r->block_max = r->bs;
    r->window = r->o.initial_window;
    r->streaming = opts && opts->stream_min && size >= opts->stream_min && store->ops->get_stream;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->idle, NULL);
    pthread_cond_init(&r->lane_cv, NULL);
    return r;
}

static void lane_free(struct lane *l)
{
    if (l->st)
        l->st->ops->close(l->st);
    free(l);
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
    for (unsigned i = 0; i < r->nlanes; i++)
        lane_free(r->lanes[i]);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->idle);
    pthread_cond_destroy(&r->lane_cv);
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

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* With the lock held: the window grows as the reader goes on. Doubling
 * asks little of a server for a reader that stops early, but it plans
 * each window when the reader is half a window short of it: where an
 * answer takes longer than reading that half (a distant server: 20 ms
 * is 60 MB at loopback speed), every doubling would stop the reader for
 * a round trip. Once a lane has been that slow to its first byte, or a
 * read has waited that long for its blocks, the window goes to its
 * maximum at once, unless the cache's budget has already refused this
 * reader a window (then doubling shares it, as before). */
static void grow_window(struct lf_reader *r)
{
    size_t max = r->streaming ? r->o.max_window : r->block_max;
    if ((r->answer_us >= SLOW_ANSWER_US && !r->squeezed) || r->window > max / 2)
        r->window = max;
    else
        r->window *= 2;
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
    if (r->streaming) {
        /* Lanes do the reading ahead; blocks serve what they cannot, and
         * only that (lf_reader_splice learns where the reader is). */
        if (end > r->last_end || off + r->o.request_size < r->last_end)
            r->last_end = end;
        pthread_mutex_unlock(&r->lock);
        return;
    }
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
            if (!first)
                grow_window(r);
            start = end;
        } else if (end > r->trigger) {
            grow_window(r);
            start = r->ra_end;
        }
        if (r->window > r->block_max) /* opened as a stream, or started wide */
            r->window = r->block_max;
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
        if (done < to && r->window > r->o.initial_window) {
            r->window /= 2; /* memory pressure: share the budget */
            r->squeezed = true;
        }
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
    int64_t t0 = now_us();
    *nheld = 0; /* a reader cancelled before the first attempt holds nothing */
    for (int attempt = 0; attempt < 3 && rc == -EINTR && !cancelled(ctl); attempt++) {
        if (attempt > 0)
            unpin_range(r->cache, r->bs, off, len, held, *nheld);
        rc = pin_range_once(r, off, len, ctl, held, nheld);
    }
    int64_t waited = now_us() - t0;
    if (!rc && waited >= SLOW_ANSWER_US) { /* the window did not cover the server's answer */
        pthread_mutex_lock(&r->lock);
        r->answer_us = waited;
        pthread_mutex_unlock(&r->lock);
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
            rc = fetch_run(&run, ctl, false);
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

int lf_reader_warm(struct lf_reader *r, const struct lf_read_ctl *ctl)
{
    if (r->size > LF_WARM_MAX || (r->size + r->bs - 1) / r->bs > MAX_RUN)
        return -EFBIG;
    struct fetch run = {.r = r};
    struct lf_bkey k = {.etag = r->etag, .objsize = r->size};
    uint64_t nblocks = (r->size + r->bs - 1) / r->bs;
    int rc = 0;
    for (k.index = 0; k.index < nblocks && !rc; k.index++) {
        struct lf_block *b;
        bool created;
        rc = lf_bcache_acquire(r->cache, &k, LF_BC_PREFETCH, &b, &created);
        if (!rc && created) {
            if (run.n == 0)
                run.first = k.index;
            run.blocks[run.n++] = b;
            continue;
        }
        if (!rc)
            lf_bcache_release(r->cache, b, false);
        /* A block cached or in flight (or refused) ends the run before it. */
        if (run.n) {
            int frc = fetch_run(&run, ctl, true);
            rc = rc ? rc : frc;
            run.n = 0;
        }
    }
    if (run.n) {
        int frc = fetch_run(&run, ctl, true);
        rc = rc ? rc : frc;
    }
    return rc;
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

/* ---- streams ----------------------------------------------------------------
 *
 * Lanes follow the window logic of blocks: a first window from where the
 * reader starts (or catches up), then a window twice as large each time
 * the reader passes the start of the last one, cut into GETs of at most
 * request_size, at most MAX_LANES of them open. What they hold in flight
 * sits in the kernel's socket buffers, not in our budget; how much an
 * open lane may hold back from other requests is bounded by the HTTP
 * layer (-EBUSY). */

static struct lane *lane_at(const struct lf_reader *r, uint64_t off)
{
    for (unsigned i = 0; i < r->nlanes; i++)
        if (r->lanes[i]->start <= off && off < r->lanes[i]->end)
            return r->lanes[i];
    return NULL;
}

static void lane_remove(struct lf_reader *r, struct lane *l)
{
    for (unsigned i = 0; i < r->nlanes; i++) {
        if (r->lanes[i] == l) {
            memmove(r->lanes + i, r->lanes + i + 1, (r->nlanes - i - 1) * sizeof(*r->lanes));
            r->nlanes--;
            break;
        }
    }
    lane_free(l);
}

static void lane_job(void *arg)
{
    struct lane *l = arg;
    struct lf_reader *r = l->r;
    struct lf_read_ctl ctl = {.cancelled = reader_closing, .arg = r};
    struct lf_stream *st = NULL;
    int rc = r->store->ops->get_stream(r->store->ctx, r->bucket, r->key, l->start,
                                       l->end - l->start, r->etag, &ctl, &st);
    if (rc == -ESTALE)
        lf_err("read %s/%s: object replaced while open (ETag no longer %s)", r->bucket,
               r->key, r->etag);
    pthread_mutex_lock(&r->lock);
    if (rc != -EBUSY && rc != -EOPNOTSUPP)
        r->st.gets++;
    if (rc == 0) {
        r->st.streams++;
        r->answer_us = now_us() - l->asked_us;
        l->st = st;
        l->state = LANE_READY;
    } else {
        l->state = LANE_FAILED;
        l->err = rc;
    }
    pthread_cond_broadcast(&r->lane_cv);
    if (--r->inflight == 0)
        pthread_cond_broadcast(&r->idle);
    pthread_mutex_unlock(&r->lock);
}

/* With the lock held: opens the lanes a read at [off, end) calls for,
 * returning them in todo[] to be submitted once the lock is dropped. */
static unsigned plan_lanes(struct lf_reader *r, uint64_t off, uint64_t end, struct lane **todo)
{
    uint64_t from, to;
    bool topup = false;
    if (!lane_at(r, off)) {
        /* Starting, or caught up with the lanes: this read and a window
         * after it, from where the lanes (or the reader) stopped if that
         * is a little before it: readahead sent in parallel brings the
         * reads in between soon. */
        if (r->last_end > 0)
            grow_window(r);
        uint64_t front = r->nlanes ? r->lanes[r->nlanes - 1]->end : r->last_end;
        from = front <= off && off - front <= r->window ? front : off;
        to = end + r->window;
    } else if (end > r->lane_trigger) {
        grow_window(r);
        from = r->lanes[r->nlanes - 1]->end;
        to = from + r->window;
    } else if (r->nlanes < MAX_LANES && r->lanes[r->nlanes - 1]->end < r->lane_target) {
        /* A window opens only as many lanes as there is room for: the
         * rest follow as lanes are read to their end, so the window stays
         * in flight instead of the reader catching up with it and then
         * waiting a whole round trip (at 20 ms of latency, half a
         * stream's time). */
        from = r->lanes[r->nlanes - 1]->end;
        to = r->lane_target;
        topup = true;
    } else {
        return 0;
    }
    if (!topup) {
        if (to > r->size)
            to = r->size;
        r->lane_trigger = from;
        r->lane_target = to;
    }
    /* GETs of request_size, or longer where MAX_LANES of those would not
     * cover the largest window (a --readahead-max raised for a distant
     * server would otherwise stop at MAX_LANES x request_size). */
    uint64_t lane_len = r->o.request_size;
    if (r->o.max_window / MAX_LANES > lane_len)
        lane_len = r->o.max_window / MAX_LANES;
    unsigned n = 0;
    for (uint64_t at = from; at < to && r->nlanes < MAX_LANES;) {
        struct lane *l = lane_at(r, at);
        if (l) {
            at = l->end;
            continue;
        }
        /* Up to the next lane, if one starts before the window's end. */
        uint64_t stop = to;
        unsigned i = 0;
        while (i < r->nlanes && r->lanes[i]->start < at)
            i++;
        if (i < r->nlanes && r->lanes[i]->start < stop)
            stop = r->lanes[i]->start;
        if (stop - at > lane_len)
            stop = at + lane_len;
        if (!(l = calloc(1, sizeof(*l))))
            break;
        *l = (struct lane){.r = r, .start = at, .end = stop, .pos = at, .asked_us = now_us(),
                           .state = LANE_OPENING};
        memmove(r->lanes + i + 1, r->lanes + i, (r->nlanes - i) * sizeof(*r->lanes));
        r->lanes[i] = l;
        r->nlanes++;
        r->inflight++;
        todo[n++] = l;
        at = stop;
    }
    return n;
}

/* Whether the cache holds (or is fetching) every block of [off, end). */
static bool range_cached(struct lf_reader *r, uint64_t off, uint64_t end)
{
    struct lf_bkey k = {.etag = r->etag, .objsize = r->size};
    for (k.index = off / r->bs; k.index <= (end - 1) / r->bs; k.index++) {
        struct lf_block *b;
        bool created;
        if (lf_bcache_acquire(r->cache, &k, LF_BC_LOOKUP, &b, &created) != 0)
            return false;
        lf_bcache_release(r->cache, b, false);
    }
    return true;
}

/* Waits on lane_cv for a slice; -EINTR once ctl says so. */
static int lane_wait(struct lf_reader *r, const struct lf_read_ctl *ctl, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&r->lane_cv, &r->lock, &ts);
    return cancelled(ctl) ? -EINTR : 0;
}

void lf_pipe_drain(int rfd)
{
    char buf[16 * 1024];
    int n;
    while (ioctl(rfd, FIONREAD, &n) == 0 && n > 0)
        if (read(rfd, buf, sizeof(buf)) < 0 && errno != EINTR)
            break;
}

/* With the lock held and l taken (LANE_BUSY): moves [l->pos, at) out of
 * the way, writes head, then moves [at, at + n) into the pipe, the lock
 * dropped meanwhile. */
static int lane_move(struct lf_reader *r, struct lane *l, uint64_t at, size_t n,
                     const void *head, size_t hlen, const int pipefd[2],
                     const struct lf_read_ctl *ctl)
{
    size_t gap = (size_t)(at - l->pos), moved = 0;
    pthread_mutex_unlock(&r->lock);
    int rc = 0;
    if (gap) {
        /* The pipe is empty here: a gap only opens at a read's start. */
        rc = l->st->ops->splice(l->st, pipefd[1], gap, ctl, &moved);
        lf_pipe_drain(pipefd[0]);
        l->pos += moved;
        moved = 0;
    }
    if (!rc && hlen && write(pipefd[1], head, hlen) != (ssize_t)hlen)
        rc = -ENOBUFS;
    if (!rc)
        rc = l->st->ops->splice(l->st, pipefd[1], n, ctl, &moved);
    pthread_mutex_lock(&r->lock);
    l->pos += moved;
    return rc;
}

uint64_t lf_reader_size(const struct lf_reader *r) { return r->size; }

ssize_t lf_reader_splice(struct lf_reader *r, size_t len, uint64_t off, const void *head,
                         size_t hlen, const int pipefd[2], const struct lf_read_ctl *ctl)
{
    struct lane *todo[MAX_LANES];
    unsigned ntodo = 0;
    size_t done = 0;
    int rc = 0;

    if ((len = clip(r, len, off)) == 0)
        return 0;
    uint64_t end = off + len;
    pthread_mutex_lock(&r->lock);
    /* Lanes the reader has left well behind hold connections for nothing;
     * "well behind" is more than a window, since readahead sent in
     * parallel may still bring reads for them. */
    for (unsigned i = 0; i < r->nlanes;) {
        struct lane *l = r->lanes[i];
        if ((l->state == LANE_READY || l->state == LANE_FAILED) &&
            l->end + r->window + SKIP_MAX <= off)
            lane_remove(r, l);
        else
            i++;
    }
    if (!lane_at(r, off)) {
        /* As for blocks, "sequential" tolerates reads a little out of
         * order. */
        bool seq = (off == 0 && r->last_end == 0) ||
                   (r->last_end > 0 && off <= r->last_end + r->window &&
                    off + r->o.request_size >= r->last_end);
        if (!r->streaming || !seq || range_cached(r, off, end)) {
            pthread_mutex_unlock(&r->lock);
            return -EAGAIN;
        }
    }
    if (r->streaming)
        ntodo = plan_lanes(r, off, end, todo);
    r->splicers++;
    pthread_mutex_unlock(&r->lock);
    for (unsigned i = 0; i < ntodo; i++)
        if (lf_workq_submit(r->wq, lane_job, todo[i]) != 0)
            lane_job(todo[i]);
    pthread_mutex_lock(&r->lock);

    while (done < len && !rc) {
        uint64_t at = off + done;
        struct lane *l = lane_at(r, at);
        int64_t gap_deadline = 0;
        /* Wait for the lane to open or for whoever is reading it; a read
         * that arrived ahead of the one before it (readahead sent in
         * parallel) waits a moment for it before skipping its bytes. */
        while (l && (l->state == LANE_OPENING || l->state == LANE_BUSY ||
                     (l->state == LANE_READY && l->pos < at && r->splicers > 1))) {
            if (l->state == LANE_READY) {
                int64_t now = now_us() / 1000;
                if (!gap_deadline)
                    gap_deadline = now + GAP_WAIT_MS;
                else if (now >= gap_deadline)
                    break;
            }
            if ((rc = lane_wait(r, ctl, l->state == LANE_READY ? 1 : 100)))
                break;
            l = lane_at(r, at);
        }
        if (rc)
            break;
        if (l && l->state == LANE_FAILED) {
            rc = l->err;
            lane_remove(r, l);
            break;
        }
        if (!l || l->pos > at) {
            rc = -EAGAIN; /* bytes this lane gave already: it stays for what follows */
            break;
        }
        if (at - l->pos > SKIP_MAX) {
            rc = -EAGAIN; /* the reader jumped ahead within the lane */
            lane_remove(r, l);
            break;
        }
        size_t n = (size_t)((end < l->end ? end : l->end) - at);
        l->state = LANE_BUSY;
        int e = done ? lane_move(r, l, at, n, NULL, 0, pipefd, ctl)
                     : lane_move(r, l, at, n, head, hlen, pipefd, ctl);
        if (e) {
            rc = e;
            lane_remove(r, l); /* its connection is in an unknown state */
        } else {
            done += n;
            r->st.spliced += n;
            l->state = LANE_READY;
            if (l->pos == l->end)
                lane_remove(r, l); /* read to its end: the connection goes back */
        }
        pthread_cond_broadcast(&r->lane_cv);
    }
    if (!rc && end > r->last_end)
        r->last_end = end;
    if (r->streaming && ((rc == -EBUSY && r->nlanes == 0) || rc == -EOPNOTSUPP ||
                         rc == -ENOBUFS)) {
        /* Open streams hold all the connections they may, the server
         * cannot be read this way, or the network hands its bytes over in
         * pieces too small for the pipe: this reader goes through blocks
         * (and their readahead) from now on. */
        r->streaming = false;
        lf_info("read %s/%s: %s; reading through the cache", r->bucket, r->key,
                rc == -EBUSY      ? "no connection for a stream"
                : rc == -ENOBUFS ? "the answer's pieces do not fit a pipe"
                                 : "the server's answers cannot be spliced");
    }
    r->splicers--;
    pthread_mutex_unlock(&r->lock);
    if (rc) {
        lf_pipe_drain(pipefd[0]);
        /* Whatever else went wrong, the blocks fetch these bytes again
         * (with retries); a replaced object and an interrupted read are
         * the caller's to see. */
        return rc == -ESTALE || rc == -EINTR ? rc : -EAGAIN;
    }
    return (ssize_t)len;
}

void lf_reader_get_stats(struct lf_reader *r, struct lf_ra_stats *st)
{
    pthread_mutex_lock(&r->lock);
    *st = r->st;
    st->window = r->window;
    pthread_mutex_unlock(&r->lock);
}
