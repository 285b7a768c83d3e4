/* Readahead and block cache against the in-memory store: bytes, request
 * counts, content identity, ETag pinning and the memory budget. */
#include "check.h"
#include "lakefuse/bcache.h"
#include "lakefuse/readahead.h"
#include "lakefuse/store.h"
#include "lakefuse/workq.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1024u * 1024u)

static unsigned char *pattern(size_t n, unsigned seed)
{
    /* Word stores: under ThreadSanitizer every store is a call, and the
     * tests make a few GiB of this. */
    unsigned char *p = malloc(n);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1, w;
    size_t i = 0;
    for (; i < n; i += sizeof(w)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w = x;
        memcpy(p + i, &w, n - i < sizeof(w) ? n - i : sizeof(w));
    }
    return p;
}

struct env {
    struct lf_mem_store *mem;
    struct lf_store *st;
    struct lf_bcache *cache;
    struct lf_workq *wq;
};

static void env_init(struct env *e, size_t budget)
{
    e->mem = lf_mem_store_new();
    e->st = lf_mem_store_view(e->mem);
    lf_mem_store_add_bucket(e->mem, "repo");
    e->cache = lf_bcache_new(budget, MiB);
    e->wq = lf_workq_new(8, "test");
}

static void env_fini(struct env *e)
{
    lf_workq_free(e->wq);
    lf_bcache_free(e->cache);
    lf_mem_store_free(e->mem);
}

static struct lf_reader *open_reader(struct env *e, const char *key)
{
    struct lf_obj_attr a;
    CHECK_INT(e->st->ops->head(e->st->ctx, "repo", key, &a), 0);
    return lf_reader_new(e->cache, e->st, e->wq, "repo", key, a.etag, a.size, NULL);
}

static void test_sequential(void)
{
    struct env e;
    env_init(&e, 128 * MiB);
    size_t size = 40 * MiB + 12345;
    unsigned char *data = pattern(size, 1), *out = malloc(size);
    lf_mem_store_put(e.mem, "repo", "main/big.bin", data, size);
    struct lf_reader *r = open_reader(&e, "main/big.bin");
    for (size_t off = 0; off < size; off += 128 * 1024) {
        ssize_t n = lf_reader_read(r, out + off, 128 * 1024, off, NULL);
        CHECK_INT(n, size - off < 128 * 1024 ? size - off : 128 * 1024);
    }
    CHECK(memcmp(out, data, size) == 0);
    struct lf_ra_stats st;
    lf_reader_get_stats(r, &st);
    lf_reader_free(r);
    /* Large GETs, each byte fetched once. */
    CHECK_INT(lf_mem_store_bytes_out(e.mem), size);
    CHECK(lf_mem_store_calls(e.mem, LF_MEM_GET) <= 2 * (size / (8 * MiB)) + 4);
    CHECK_INT(st.window, 64 * MiB);
    /* Reading EOF and beyond. */
    r = open_reader(&e, "main/big.bin");
    CHECK_INT(lf_reader_read(r, out, 4096, size, NULL), 0);
    CHECK_INT(lf_reader_read(r, out, 4096, size - 10, NULL), 10);
    lf_reader_free(r);
    free(data);
    free(out);
    env_fini(&e);
}

/* Through the blocks too: a read that waited for its blocks as long as a
 * distant server takes to answer (10 ms here) makes the window jump to
 * its maximum at the next read instead of doubling. */
static void test_window_after_a_slow_read(void)
{
    struct env e;
    env_init(&e, 128 * MiB);
    size_t size = 48 * MiB;
    unsigned char *data = pattern(size, 42), *out = malloc(size);
    lf_mem_store_put(e.mem, "repo", "main/slow.bin", data, size);
    lf_mem_store_set_delay_us(e.mem, 10 * 1000);
    struct lf_reader *r = open_reader(&e, "main/slow.bin");
    CHECK_INT(lf_reader_read(r, out, MiB, 0, NULL), MiB);
    struct lf_ra_stats st;
    lf_reader_get_stats(r, &st);
    CHECK_INT(st.window, MiB);
    CHECK_INT(lf_reader_read(r, out + MiB, MiB, MiB, NULL), MiB);
    lf_reader_get_stats(r, &st);
    CHECK_INT(st.window, 64 * MiB); /* the default maximum */
    bool ok = true;
    for (size_t off = 2 * MiB; off < size; off += MiB)
        ok &= lf_reader_read(r, out + off, MiB, off, NULL) == (ssize_t)MiB;
    CHECK(ok);
    CHECK(memcmp(out, data, size) == 0);
    lf_reader_free(r);
    CHECK_INT(lf_mem_store_bytes_out(e.mem), size); /* each byte once */
    free(data);
    free(out);
    env_fini(&e);
}

/* A window the cache cannot hold beside the block being read pushes
 * that block out: a slow first answer (the jump to the maximum) over a
 * cache of 8 MiB must not make the reader fetch its own block again. */
static void test_window_within_the_cache(void)
{
    struct env e;
    env_init(&e, 8 * MiB);
    size_t size = 24 * MiB, step = 256 * 1024;
    unsigned char *data = pattern(size, 43), *out = malloc(size);
    lf_mem_store_put(e.mem, "repo", "main/slow.bin", data, size);
    lf_mem_store_set_delay_us(e.mem, 5 * 1000);
    struct lf_reader *r = open_reader(&e, "main/slow.bin");
    bool ok = true;
    size_t widest = 0;
    struct lf_ra_stats st;
    for (size_t off = 0; off < size; off += step) {
        ok &= lf_reader_read(r, out + off, step, off, NULL) == (ssize_t)step;
        lf_reader_get_stats(r, &st);
        if (st.window > widest)
            widest = st.window;
    }
    CHECK(ok);
    CHECK(memcmp(out, data, size) == 0);
    CHECK(widest <= 4 * MiB); /* half the cache */
    lf_reader_free(r);
    CHECK_INT(lf_mem_store_bytes_out(e.mem), size); /* each byte once */
    free(data);
    free(out);
    env_fini(&e);
}

static void test_random_fetches_only_touched_blocks(void)
{
    struct env e;
    env_init(&e, 256 * MiB);
    size_t size = 64 * MiB;
    unsigned char *data = pattern(size, 2), buf[8192];
    lf_mem_store_put(e.mem, "repo", "main/r.bin", data, size);
    struct lf_reader *r = open_reader(&e, "main/r.bin");
    srand(7);
    int ok = 1;
    for (int i = 0; i < 200; i++) {
        uint64_t off = ((uint64_t)rand() * 7919) % (size - sizeof(buf));
        ssize_t n = lf_reader_read(r, buf, sizeof(buf), off, NULL);
        ok &= n == (ssize_t)sizeof(buf) && memcmp(buf, data + off, sizeof(buf)) == 0;
    }
    CHECK(ok);
    lf_reader_free(r);
    /* At most two blocks per read, never a readahead window. */
    CHECK(lf_mem_store_bytes_out(e.mem) <= 200u * 2 * MiB);
    CHECK(lf_mem_store_calls(e.mem, LF_MEM_GET) <= 400);
    free(data);
    env_fini(&e);
}

static void test_content_identity(void)
{
    struct env e;
    env_init(&e, 64 * MiB);
    size_t size = 3 * MiB;
    unsigned char *data = pattern(size, 3), *out = malloc(size);
    lf_mem_store_put(e.mem, "repo", "main/a.bin", data, size);
    lf_mem_store_put(e.mem, "repo", "v1/a-copy.bin", data, size);
    struct lf_reader *r1 = open_reader(&e, "main/a.bin");
    CHECK_INT(lf_reader_read(r1, out, size, 0, NULL), size);
    lf_reader_free(r1);
    unsigned long gets = lf_mem_store_calls(e.mem, LF_MEM_GET);
    struct lf_reader *r2 = open_reader(&e, "v1/a-copy.bin");
    memset(out, 0, size);
    CHECK_INT(lf_reader_read(r2, out, size, 0, NULL), size);
    lf_reader_free(r2);
    CHECK(memcmp(out, data, size) == 0);
    CHECK_INT(lf_mem_store_calls(e.mem, LF_MEM_GET), gets); /* served from cache */
    free(data);
    free(out);
    env_fini(&e);
}

static void test_replaced_object_is_estale(void)
{
    struct env e;
    env_init(&e, 64 * MiB);
    size_t size = 4 * MiB;
    unsigned char *v1 = pattern(size, 4), *v2 = pattern(size, 5), *out = malloc(size);
    lf_mem_store_put(e.mem, "repo", "main/f", v1, size);
    struct lf_reader *r = open_reader(&e, "main/f");
    lf_mem_store_put(e.mem, "repo", "main/f", v2, size);
    CHECK_INT(lf_reader_read(r, out, 4096, 2 * MiB, NULL), -ESTALE);
    lf_reader_free(r);
    free(v1);
    free(v2);
    free(out);
    env_fini(&e);
}

static void test_failure_is_not_cached(void)
{
    struct env e;
    env_init(&e, 64 * MiB);
    size_t size = 2 * MiB;
    unsigned char *data = pattern(size, 6), out[4096];
    lf_mem_store_put(e.mem, "repo", "main/f", data, size);
    struct lf_reader *r = open_reader(&e, "main/f");
    lf_mem_store_fail(e.mem, LF_MEM_GET, -EIO, 1);
    CHECK_INT(lf_reader_read(r, out, sizeof(out), MiB + 5, NULL), -EIO);
    CHECK_INT(lf_reader_read(r, out, sizeof(out), MiB + 5, NULL), sizeof(out));
    CHECK(memcmp(out, data + MiB + 5, sizeof(out)) == 0);
    lf_reader_free(r);
    free(data);
    env_fini(&e);
}

struct par {
    struct env *e;
    char key[32];
    unsigned char *data;
    size_t size;
    pthread_barrier_t *halfway;
    int ok;
};

static void *par_reader(void *arg)
{
    struct par *p = arg;
    struct lf_reader *r = open_reader(p->e, p->key);
    unsigned char *buf = malloc(128 * 1024);
    p->ok = 1;
    for (size_t off = 0; off < p->size; off += 128 * 1024) {
        if (off == 8 * MiB)
            pthread_barrier_wait(p->halfway);
        ssize_t n = lf_reader_read(r, buf, 128 * 1024, off, NULL);
        p->ok &= n == 128 * 1024 && memcmp(buf, p->data + off, 128 * 1024) == 0;
    }
    lf_reader_free(r);
    free(buf);
    return NULL;
}

/* Eight sequential readers share a budget smaller than their windows.
 * Whether the budget binds must not depend on how the threads happen to
 * run (one after another, each alone fits), so they meet at 8 MiB: each
 * has asked for blocks [8, 16) ahead by then, 64 MiB in all. Blocks read
 * ahead are evicted only past budget + demand slack, which the others
 * (one partly read block per reader) never reach, so the prefetches
 * cannot all have fitted in 24 MiB. */
static void test_budget_with_parallel_readers(void)
{
    struct env e;
    size_t budget = 24 * MiB;
    env_init(&e, budget);
    struct par p[8];
    pthread_t t[8];
    pthread_barrier_t halfway;
    pthread_barrier_init(&halfway, NULL, 8);
    for (int i = 0; i < 8; i++) {
        p[i].e = &e;
        snprintf(p[i].key, sizeof(p[i].key), "main/f%d", i);
        p[i].size = 16 * MiB; /* ends where the asks at the meeting point do */
        p[i].data = pattern(p[i].size, 10 + (unsigned)i);
        p[i].halfway = &halfway;
        lf_mem_store_put(e.mem, "repo", p[i].key, p[i].data, p[i].size);
    }
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, par_reader, &p[i]);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&halfway);
    int ok = 1;
    for (int i = 0; i < 8; i++) {
        ok &= p[i].ok;
        free(p[i].data);
    }
    CHECK(ok);
    struct lf_bcache_stats st;
    lf_bcache_get_stats(e.cache, &st);
    CHECK(st.used_bytes <= budget);
    CHECK(st.prefetch_refused > 0); /* the budget did bind */
    env_fini(&e);
}

/* A stream through an object larger than half the cache gives each block
 * back as soon as it is consumed: it stays within about a readahead window
 * of memory (reusing the same buffers rather than faulting in new ones)
 * and a small file read before is still served without a GET. */
static void test_stream_keeps_the_cache(void)
{
    struct env e;
    size_t budget = 32 * MiB, small = 3 * MiB, big = 96 * MiB;
    env_init(&e, budget);
    unsigned char *sdata = pattern(small, 20), *bdata = pattern(big, 21);
    unsigned char *out = malloc(small), *buf = malloc(MiB);
    lf_mem_store_put(e.mem, "repo", "main/small.bin", sdata, small);
    lf_mem_store_put(e.mem, "repo", "main/big.bin", bdata, big);
    struct lf_reader *r = open_reader(&e, "main/small.bin");
    CHECK_INT(lf_reader_read(r, out, small, 0, NULL), small);
    lf_reader_free(r);

    struct lf_ra_opts o = {.max_window = 8 * MiB};
    struct lf_obj_attr a;
    CHECK_INT(e.st->ops->head(e.st->ctx, "repo", "main/big.bin", &a), 0);
    r = lf_reader_new(e.cache, e.st, e.wq, "repo", "main/big.bin", a.etag, a.size, &o);
    int ok = 1;
    size_t peak = 0;
    struct lf_bcache_stats st;
    for (size_t off = 0; off < big; off += MiB) {
        ok &= lf_reader_read(r, buf, MiB, off, NULL) == (ssize_t)MiB &&
              memcmp(buf, bdata + off, MiB) == 0;
        lf_bcache_get_stats(e.cache, &st);
        peak = st.used_bytes > peak ? st.used_bytes : peak;
    }
    lf_reader_free(r);
    CHECK(ok);
    /* The small file and at most two windows: the rest of the one being
     * read and the next. A prefetch lets go of its blocks as it completes
     * them, so a consumed block leaves at once whichever thread runs
     * first: the budget is never reached, and the small file stays. */
    CHECK(peak <= small + 2 * 8 * MiB);

    unsigned long gets = lf_mem_store_calls(e.mem, LF_MEM_GET);
    r = open_reader(&e, "main/small.bin");
    memset(out, 0, small);
    CHECK_INT(lf_reader_read(r, out, small, 0, NULL), small);
    lf_reader_free(r);
    CHECK(memcmp(out, sdata, small) == 0);
    CHECK_INT(lf_mem_store_calls(e.mem, LF_MEM_GET), gets);
    free(sdata);
    free(bdata);
    free(out);
    free(buf);
    env_fini(&e);
}

/* A holder other than the reader may still pin a block when the reader,
 * done with it, lets go (once it was the fetch that filled it, the race
 * behind test_stream_keeps_the_cache's old rare failure). The block of an
 * object over half the budget must leave memory at the last release all
 * the same, not stay to push out smaller data. A prefetch that completes
 * and lets go in one step is never that last holder. */
static void test_consumed_block_released_last_by_its_fetch(void)
{
    struct lf_bcache *c = lf_bcache_new(4 * MiB, MiB);
    struct lf_bkey k = {.etag = "\"big\"", .objsize = 64 * MiB, .index = 3};
    struct lf_block *fetcher, *reader;
    bool created;
    struct lf_bcache_stats st;
    CHECK_INT(lf_bcache_acquire(c, &k, LF_BC_PREFETCH, &fetcher, &created), 0);
    CHECK(created);
    lf_bcache_complete(c, fetcher, MiB, 0);
    CHECK_INT(lf_bcache_acquire(c, &k, LF_BC_DEMAND, &reader, &created), 0);
    CHECK(!created && reader == fetcher);
    lf_bcache_release(c, reader, true);   /* read to its end */
    lf_bcache_release(c, fetcher, false); /* the fetch job finishes last */
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.used_bytes, 0);
    /* A reader that comes back for it before the last release keeps it. */
    CHECK_INT(lf_bcache_acquire(c, &k, LF_BC_PREFETCH, &fetcher, &created), 0);
    lf_bcache_complete(c, fetcher, MiB, 0);
    CHECK_INT(lf_bcache_acquire(c, &k, LF_BC_DEMAND, &reader, &created), 0);
    lf_bcache_release(c, reader, true);
    CHECK_INT(lf_bcache_acquire(c, &k, LF_BC_DEMAND, &reader, &created), 0);
    lf_bcache_release(c, fetcher, false);
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.used_bytes, MiB);
    lf_bcache_release(c, reader, false);
    /* complete_release: a reader waiting on the PENDING block is left as
     * its only holder, and its consuming release frees it. */
    k.index = 4;
    CHECK_INT(lf_bcache_acquire(c, &k, LF_BC_PREFETCH, &fetcher, &created), 0);
    CHECK_INT(lf_bcache_acquire(c, &k, LF_BC_DEMAND, &reader, &created), 0);
    CHECK(!created && reader == fetcher);
    lf_bcache_complete_release(c, fetcher, MiB, 0);
    CHECK_INT(lf_bcache_wait(c, reader, NULL), 0);
    CHECK_INT(lf_block_len(reader), MiB);
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.used_bytes, 2 * MiB); /* index 3 and this one */
    lf_bcache_release(c, reader, true);
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.used_bytes, MiB);
    lf_bcache_free(c);
}

/* Warming a small object ahead of its reader: one GET for all its blocks,
 * then the reader's reads make none; blocks already cached are not asked
 * for again; the budget and the size limit bound it. */
static void test_warm(void)
{
    struct env e;
    env_init(&e, 8 * MiB);
    size_t size = 3 * MiB + 100;
    unsigned char *data = pattern(size, 50), *out = malloc(size);
    lf_mem_store_put(e.mem, "repo", "main/w.bin", data, size);
    struct lf_reader *r = open_reader(&e, "main/w.bin");
    CHECK_INT(lf_reader_warm(r, NULL), 0);
    lf_reader_free(r);
    CHECK_INT(lf_mem_store_calls(e.mem, LF_MEM_GET), 1);
    CHECK_INT(lf_mem_store_bytes_out(e.mem), size);
    r = open_reader(&e, "main/w.bin");
    CHECK_INT(lf_reader_warm(r, NULL), 0); /* all cached: nothing asked */
    CHECK_INT(lf_reader_read(r, out, size, 0, NULL), size);
    lf_reader_free(r);
    CHECK(memcmp(out, data, size) == 0);
    CHECK_INT(lf_mem_store_calls(e.mem, LF_MEM_GET), 1);
    /* 6 MiB cannot be warmed within 4 MiB: what fits is, no more */
    struct env small;
    env_init(&small, 4 * MiB);
    unsigned char *more = pattern(6 * MiB, 51);
    lf_mem_store_put(small.mem, "repo", "main/more.bin", more, 6 * MiB);
    r = open_reader(&small, "main/more.bin");
    CHECK_INT(lf_reader_warm(r, NULL), -ENOBUFS);
    lf_reader_free(r);
    struct lf_bcache_stats st;
    lf_bcache_get_stats(small.cache, &st);
    CHECK_INT(st.used_bytes, 4 * MiB);
    CHECK(st.prefetch_refused > 0);
    CHECK_INT(lf_mem_store_bytes_out(small.mem), 4 * MiB);
    env_fini(&small);
    /* past LF_WARM_MAX: not for warming */
    unsigned char *big = pattern(LF_WARM_MAX + 1, 52);
    lf_mem_store_put(e.mem, "repo", "main/big.bin", big, LF_WARM_MAX + 1);
    unsigned long gets = lf_mem_store_calls(e.mem, LF_MEM_GET);
    r = open_reader(&e, "main/big.bin");
    CHECK_INT(lf_reader_warm(r, NULL), -EFBIG);
    lf_reader_free(r);
    CHECK_INT(lf_mem_store_calls(e.mem, LF_MEM_GET), gets);
    free(data);
    free(out);
    free(more);
    free(big);
    env_fini(&e);
}

/* ---- streams ------------------------------------------------------------ */

/* A pipe as fs gives a reader: nonblocking, room for one read. */
static void stream_pipe(int p[2], size_t room)
{
    CHECK_INT(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    CHECK(fcntl(p[0], F_SETPIPE_SZ, (int)room) >= (int)room);
}

static int pipe_empty(int fd)
{
    unsigned char c;
    return read(fd, &c, 1) < 0 && errno == EAGAIN;
}

struct sread {
    unsigned spliced, copied; /* reads served each way */
};

/* What fs does for a read: the stream if it takes it, else the blocks. */
static ssize_t read_either(struct lf_reader *r, const int p[2], unsigned char *dst, size_t len,
                           uint64_t off, const struct lf_read_ctl *ctl, struct sread *s)
{
    ssize_t n = lf_reader_splice(r, len, off, NULL, 0, p, ctl);
    if (n >= 0) {
        s->spliced++;
        return (ssize_t)test_read_full(p[0], dst, (size_t)n) == n ? n : -EIO;
    }
    if (n != -EAGAIN)
        return n;
    if (!pipe_empty(p[0]))
        return -EPIPE; /* a refused splice must leave nothing behind */
    s->copied++;
    return lf_reader_read(r, dst, len, off, ctl);
}

static struct lf_reader *open_streaming(struct env *e, const char *key, const struct lf_ra_opts *o)
{
    struct lf_obj_attr a;
    CHECK_INT(e->st->ops->head(e->st->ctx, "repo", key, &a), 0);
    return lf_reader_new(e->cache, e->st, e->wq, "repo", key, a.etag, a.size, o);
}

static const struct lf_ra_opts STREAM_OPTS = {.stream_min = 1};

/* One stream test's world: `size` pattern bytes at main/s.bin, a buffer
 * for what comes back, a pipe, and a reader that streams. */
struct sfix {
    struct env e;
    unsigned char *data, *out;
    size_t size;
    int p[2];
    struct lf_reader *r;
    struct sread s;
};

static void sfix_init(struct sfix *f, size_t budget, size_t size, unsigned seed)
{
    memset(f, 0, sizeof(*f));
    env_init(&f->e, budget);
    f->size = size;
    f->data = pattern(size, seed);
    f->out = calloc(1, size);
    lf_mem_store_put(f->e.mem, "repo", "main/s.bin", f->data, size);
    stream_pipe(f->p, MiB);
    f->r = open_streaming(&f->e, "main/s.bin", &STREAM_OPTS);
}

static void sfix_fini(struct sfix *f)
{
    lf_reader_free(f->r);
    close(f->p[0]);
    close(f->p[1]);
    free(f->data);
    free(f->out);
    env_fini(&f->e);
}

static ssize_t sfix_read(struct sfix *f, size_t len, uint64_t off, const struct lf_read_ctl *ctl)
{
    return read_either(f->r, f->p, f->out + off, len, off, ctl, &f->s);
}

/* Reads the whole object in steps; whether every read got what it asked. */
static bool sfix_read_all(struct sfix *f, size_t step)
{
    bool ok = true;
    for (size_t off = 0; off < f->size; off += step) {
        size_t want = f->size - off < step ? f->size - off : step;
        ok &= sfix_read(f, want, off, NULL) == (ssize_t)want;
    }
    return ok;
}

/* Sequential reads of odd sizes (crossing every lane boundary) come from
 * the stream, byte-exact, with a few large GETs, nothing through the
 * blocks, and no cache memory. */
static void test_stream_sequential(void)
{
    struct sfix f;
    sfix_init(&f, 16 * MiB, 70 * MiB + 4321, 30);
    CHECK(sfix_read_all(&f, 300 * 1000));
    CHECK_INT(sfix_read(&f, 4096, f.size, NULL), 0); /* end of object */
    CHECK(memcmp(f.out, f.data, f.size) == 0);
    struct lf_ra_stats st;
    lf_reader_get_stats(f.r, &st);
    struct lf_bcache_stats cs;
    lf_bcache_get_stats(f.e.cache, &cs);
    lf_reader_free(f.r);
    f.r = NULL;
    CHECK_INT(f.s.copied, 0);
    CHECK_INT(lf_mem_store_calls(f.e.mem, LF_MEM_GET), 0);
    CHECK_INT(st.spliced, f.size);
    CHECK_INT(lf_mem_store_bytes_out(f.e.mem), f.size); /* each byte fetched once */
    /* windows of 1, 2, 4, 8 MiB, then 8 MiB GETs */
    CHECK(st.streams >= f.size / (8 * MiB) && st.streams <= f.size / (8 * MiB) + 6);
    CHECK_INT(st.streams, lf_mem_store_calls(f.e.mem, LF_MEM_GET_STREAM));
    CHECK_INT(cs.used_bytes, 0);
    sfix_fini(&f);
}

/* A server slow to answer (here 10 ms before each first byte, as a
 * distant object store) makes the window jump to its maximum at the
 * second read instead of doubling: each doubling would stop the reader
 * for a round trip. The bytes are the object's either way. */
static void test_stream_window_after_a_slow_answer(void)
{
    struct sfix f;
    sfix_init(&f, 16 * MiB, 80 * MiB, 39);
    lf_mem_store_set_delay_us(f.e.mem, 10 * 1000);
    CHECK_INT(sfix_read(&f, MiB, 0, NULL), MiB);
    struct lf_ra_stats st;
    lf_reader_get_stats(f.r, &st);
    CHECK_INT(st.window, MiB); /* the first read knows nothing of the server yet */
    CHECK_INT(sfix_read(&f, MiB, MiB, NULL), MiB);
    lf_reader_get_stats(f.r, &st);
    CHECK_INT(st.window, 64 * MiB); /* the default maximum */
    bool ok = true;
    for (size_t off = 2 * MiB; off < f.size; off += MiB)
        ok &= sfix_read(&f, MiB, off, NULL) == (ssize_t)MiB;
    CHECK(ok);
    CHECK(memcmp(f.out, f.data, f.size) == 0);
    CHECK_INT(f.s.copied, 0);
    sfix_fini(&f);
}

/* A window larger than MAX_LANES GETs of request_size (8 x 8 MiB) is
 * covered with longer GETs, not capped: --readahead-max 256 streams in
 * 32 MiB GETs once the window has grown. */
static void test_stream_window_past_the_lanes(void)
{
    struct sfix f;
    sfix_init(&f, 16 * MiB, 40 * MiB, 41);
    lf_reader_free(f.r);
    /* --readahead-max 32M, --request-size 1M, scaled down from 256M and
     * the default 8M so that the test stays cheap under sanitizers */
    struct lf_ra_opts wide = {.stream_min = 1, .max_window = 32 * MiB, .request_size = MiB};
    f.r = open_streaming(&f.e, "main/s.bin", &wide);
    CHECK(sfix_read_all(&f, MiB));
    CHECK(memcmp(f.out, f.data, f.size) == 0);
    CHECK_INT(f.s.copied, 0);
    struct lf_ra_stats st;
    lf_reader_get_stats(f.r, &st);
    CHECK_INT(st.window, 32 * MiB);
    /* the ramp's GETs (1 MiB on) and then 4 MiB ones; 1 MiB GETs would
     * take at least 40 */
    CHECK(st.streams <= 24);
    CHECK_INT(lf_mem_store_bytes_out(f.e.mem), f.size);
    sfix_fini(&f);
}

/* Objects under stream_min, random reads and re-reads go through blocks;
 * reading on sequentially from a random place streams again. */
static void test_stream_only_for_sequential_reads(void)
{
    struct sfix f;
    sfix_init(&f, 64 * MiB, 40 * MiB, 31);
    lf_reader_free(f.r);
    struct lf_ra_opts big_min = {.stream_min = f.size + 1};
    f.r = open_streaming(&f.e, "main/s.bin", &big_min);
    CHECK_INT(sfix_read(&f, MiB, 0, NULL), MiB);
    CHECK_INT(f.s.copied, 1);
    lf_reader_free(f.r);

    lf_bcache_free(f.e.cache); /* forget those blocks */
    f.e.cache = lf_bcache_new(64 * MiB, MiB);
    f.s = (struct sread){0};
    f.r = open_streaming(&f.e, "main/s.bin", &STREAM_OPTS);
    uint64_t offs[] = {17 * MiB + 5, 3 * MiB, 29 * MiB};
    for (int i = 0; i < 3; i++) {
        CHECK_INT(sfix_read(&f, 4096, offs[i], NULL), 4096);
        CHECK(memcmp(f.out + offs[i], f.data + offs[i], 4096) == 0);
    }
    CHECK_INT(f.s.copied, 3);
    CHECK_INT(lf_mem_store_calls(f.e.mem, LF_MEM_GET_STREAM), 0);
    CHECK(lf_mem_store_bytes_out(f.e.mem) <= 3 * 2 * MiB); /* no readahead of blocks */
    /* On from the last random read: the seven reads left in its block,
     * which is cached, through blocks; from the one that leaves it, a
     * stream. */
    uint64_t at = 29 * MiB + 4096;
    bool ok = true;
    for (int i = 0; i < 16; i++, at += 128 * 1024)
        ok &= sfix_read(&f, 128 * 1024, at, NULL) == 128 * 1024 &&
              memcmp(f.out + at, f.data + at, 128 * 1024) == 0;
    CHECK(ok);
    CHECK_INT(f.s.spliced, 9);
    /* back to a part the stream gave already: blocks */
    unsigned copied = f.s.copied;
    CHECK_INT(sfix_read(&f, 4096, 30 * MiB + 8192, NULL), 4096);
    CHECK(memcmp(f.out + 30 * MiB + 8192, f.data + 30 * MiB + 8192, 4096) == 0);
    CHECK_INT(f.s.copied, copied + 1);
    sfix_fini(&f);
}

/* A connection lost mid-answer costs that read a trip through the blocks
 * (which fetch again); the stream carries on after it. */
static void test_stream_broken_connection(void)
{
    struct sfix f;
    sfix_init(&f, 16 * MiB, 48 * MiB, 32);
    lf_mem_store_break_streams(f.e.mem, 300 * 1024, -ECONNRESET, 3);
    CHECK(sfix_read_all(&f, 512 * 1024));
    CHECK(memcmp(f.out, f.data, f.size) == 0);
    CHECK(f.s.copied >= 3);
    CHECK(f.s.spliced > f.s.copied * 10);
    sfix_fini(&f);
}

/* Lanes opened before the object was replaced give the version seen at
 * open; the first one opened after it says -ESTALE. Never a mix. */
static void test_stream_replaced_object(void)
{
    struct sfix f;
    /* Larger than the lanes open at the replacement can cover (8 GETs of
     * 2 MiB: the defaults scaled down by four, to stay cheap under
     * sanitizers): a server slow to answer (5 ms here, as a loaded
     * machine's may be) opens the whole window at the second read, and
     * lanes then reach 22 MiB before the object changes. */
    sfix_init(&f, 16 * MiB, 32 * MiB, 33);
    lf_reader_free(f.r);
    struct lf_ra_opts quarter = {.stream_min = 1, .max_window = 16 * MiB,
                                 .request_size = 2 * MiB};
    f.r = open_streaming(&f.e, "main/s.bin", &quarter);
    lf_mem_store_set_delay_us(f.e.mem, 5000);
    size_t off = 0;
    ssize_t n = 0;
    for (; off < 4 * MiB; off += MiB)
        n = sfix_read(&f, MiB, off, NULL);
    CHECK_INT(n, MiB);
    unsigned char *v2 = pattern(f.size, 34);
    lf_mem_store_put(f.e.mem, "repo", "main/s.bin", v2, f.size);
    for (; off < f.size; off += MiB)
        if ((n = sfix_read(&f, MiB, off, NULL)) != (ssize_t)MiB)
            break;
    CHECK_INT(n, -ESTALE);
    CHECK(off < f.size);
    CHECK(memcmp(f.out, f.data, off) == 0);
    free(v2);
    sfix_fini(&f);
}

/* When open streams hold all the connections they may (-EBUSY), the
 * reader reads through the blocks and their readahead instead. */
static void test_stream_refused(void)
{
    struct sfix f;
    sfix_init(&f, 64 * MiB, 32 * MiB, 35);
    lf_mem_store_fail(f.e.mem, LF_MEM_GET_STREAM, -EBUSY, 100);
    CHECK(sfix_read_all(&f, MiB));
    CHECK(memcmp(f.out, f.data, f.size) == 0);
    CHECK_INT(f.s.spliced, 0);
    CHECK_INT(lf_mem_store_calls(f.e.mem, LF_MEM_GET_STREAM), 1); /* tried once */
    /* readahead of blocks took over: far fewer GETs than reads */
    CHECK(lf_mem_store_calls(f.e.mem, LF_MEM_GET) < f.size / MiB / 2);
    sfix_fini(&f);
}

static int always(void *arg) { return 1; }

/* A read waiting for a slow GET ends with -EINTR when its caller gives up. */
static void test_stream_cancelled(void)
{
    struct sfix f;
    sfix_init(&f, 16 * MiB, 16 * MiB, 36);
    lf_mem_store_set_delay_us(f.e.mem, 300 * 1000);
    struct lf_read_ctl ctl = {.cancelled = always};
    CHECK_INT(sfix_read(&f, MiB, 0, &ctl), -EINTR);
    CHECK(pipe_empty(f.p[0]));
    sfix_fini(&f); /* waits for the GET, closes what it opened */
}

/* A reader whose caller gave up before anything was pinned (a read or a
 * pin through the cache): -EINTR, and nothing released that was not held
 * (the held count was once left unset). */
static void test_cancelled_before_the_first_block(void)
{
    struct env e;
    env_init(&e, 64 * MiB);
    unsigned char *data = pattern(4 * MiB, 40), out[8192];
    lf_mem_store_put(e.mem, "repo", "main/c.bin", data, 4 * MiB);
    struct lf_reader *r = open_reader(&e, "main/c.bin");
    struct lf_read_ctl ctl = {.cancelled = always};
    CHECK_INT(lf_reader_read(r, out, sizeof(out), 0, &ctl), -EINTR);
    struct lf_pinned p;
    CHECK_INT(lf_reader_pin(r, sizeof(out), 4096, &ctl, &p), -EINTR);
    CHECK_INT(p.nblocks, 0);
    /* The reader still works for a caller who waits. */
    CHECK_INT(lf_reader_read(r, out, sizeof(out), 0, NULL), sizeof(out));
    CHECK(memcmp(out, data, sizeof(out)) == 0);
    lf_reader_free(r);
    free(data);
    env_fini(&e);
}

/* Readahead sent in parallel: two threads take alternate reads of one
 * reader, each with its own pipe, arriving in any order. */
struct alt {
    struct sfix *f;
    size_t step;
    int phase, ok;
    struct sread s;
};

static void *alt_reader(void *arg)
{
    struct alt *a = arg;
    int p[2];
    stream_pipe(p, MiB);
    a->ok = 1;
    for (size_t off = (size_t)a->phase * a->step; off < a->f->size; off += 2 * a->step)
        a->ok &= read_either(a->f->r, p, a->f->out + off, a->step, off, NULL, &a->s) ==
                 (ssize_t)a->step;
    close(p[0]);
    close(p[1]);
    return NULL;
}

static void test_stream_parallel_reads(void)
{
    struct sfix f;
    sfix_init(&f, 16 * MiB, 48 * MiB, 37);
    struct alt a[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        a[i] = (struct alt){.f = &f, .step = 256 * 1024, .phase = i};
        pthread_create(&t[i], NULL, alt_reader, &a[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(a[0].ok && a[1].ok);
    CHECK(memcmp(f.out, f.data, f.size) == 0);
    CHECK(a[0].s.spliced + a[1].s.spliced > 0);
    sfix_fini(&f);
}

/* A head (a reply header) goes in first, after any bytes a lane had to
 * drop to reach the read: the pipe then holds exactly head + data. */
static void test_stream_head_and_gap(void)
{
    struct sfix f;
    sfix_init(&f, 16 * MiB, 16 * MiB, 38);
    size_t half = MiB / 2;
    unsigned char *got = malloc(half + 4);
    CHECK_INT(lf_reader_size(f.r), f.size);
    CHECK_INT(lf_reader_splice(f.r, half, 0, "HEAD", 4, f.p, NULL), half);
    CHECK_INT(test_read_full(f.p[0], got, half + 4), half + 4);
    CHECK(memcmp(got, "HEAD", 4) == 0 && memcmp(got + 4, f.data, half) == 0);
    /* the kernel had [512 KiB, 576 KiB) already: the lane drops it */
    uint64_t at = half + 64 * 1024;
    CHECK_INT(lf_reader_splice(f.r, 128 * 1024, at, "HD", 2, f.p, NULL), 128 * 1024);
    CHECK_INT(test_read_full(f.p[0], got, 128 * 1024 + 2), 128 * 1024 + 2);
    CHECK(memcmp(got, "HD", 2) == 0 && memcmp(got + 2, f.data + at, 128 * 1024) == 0);
    CHECK(pipe_empty(f.p[0]));
    /* the end of the object: nothing, not even the head */
    CHECK_INT(lf_reader_splice(f.r, 4096, f.size, "HD", 2, f.p, NULL), 0);
    CHECK(pipe_empty(f.p[0]));
    struct lf_ra_stats st;
    lf_reader_get_stats(f.r, &st);
    CHECK_INT(st.spliced, half + 128 * 1024);
    free(got);
    sfix_fini(&f);
}

int main(void)
{
    test_sequential();
    test_window_after_a_slow_read();
    test_window_within_the_cache();
    test_random_fetches_only_touched_blocks();
    test_content_identity();
    test_replaced_object_is_estale();
    test_failure_is_not_cached();
    test_budget_with_parallel_readers();
    test_stream_keeps_the_cache();
    test_consumed_block_released_last_by_its_fetch();
    test_warm();
    test_stream_sequential();
    test_stream_window_after_a_slow_answer();
    test_stream_window_past_the_lanes();
    test_stream_only_for_sequential_reads();
    test_stream_broken_connection();
    test_stream_replaced_object();
    test_stream_refused();
    test_stream_cancelled();
    test_cancelled_before_the_first_block();
    test_stream_parallel_reads();
    test_stream_head_and_gap();
    return check_summary("test_readahead");
}
