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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1024u * 1024u)

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
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
    int ok;
};

static void *par_reader(void *arg)
{
    struct par *p = arg;
    struct lf_reader *r = open_reader(p->e, p->key);
    unsigned char *buf = malloc(128 * 1024);
    p->ok = 1;
    for (size_t off = 0; off < p->size; off += 128 * 1024) {
        ssize_t n = lf_reader_read(r, buf, 128 * 1024, off, NULL);
        p->ok &= n == 128 * 1024 && memcmp(buf, p->data + off, 128 * 1024) == 0;
    }
    lf_reader_free(r);
    free(buf);
    return NULL;
}

static void test_budget_with_parallel_readers(void)
{
    struct env e;
    size_t budget = 24 * MiB;
    env_init(&e, budget);
    struct par p[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        p[i].e = &e;
        snprintf(p[i].key, sizeof(p[i].key), "main/f%d", i);
        p[i].size = 32 * MiB;
        p[i].data = pattern(p[i].size, 10 + (unsigned)i);
        lf_mem_store_put(e.mem, "repo", p[i].key, p[i].data, p[i].size);
    }
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, par_reader, &p[i]);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
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
    /* the small file, a window and the GET in flight; never the budget */
    CHECK(peak <= small + 2 * 8 * MiB + 8 * MiB);

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

/* ---- streams ------------------------------------------------------------ */

/* A pipe as fs gives a reader: nonblocking, room for one read. */
static void stream_pipe(int p[2], size_t room)
{
    CHECK_INT(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    CHECK(fcntl(p[0], F_SETPIPE_SZ, (int)room) >= (int)room);
}

static size_t pipe_take(int fd, unsigned char *dst, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, dst + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
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
        return (ssize_t)pipe_take(p[0], dst, (size_t)n) == n ? n : -EIO;
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

/* Sequential reads of odd sizes (crossing every lane boundary) come from
 * the stream, byte-exact, with a few large GETs, nothing through the
 * blocks, and no cache memory. */
static void test_stream_sequential(void)
{
    struct env e;
    env_init(&e, 16 * MiB);
    size_t size = 70 * MiB + 4321, step = 300 * 1000;
    unsigned char *data = pattern(size, 30), *out = calloc(1, size);
    lf_mem_store_put(e.mem, "repo", "main/s.bin", data, size);
    int p[2];
    stream_pipe(p, MiB);
    struct lf_reader *r = open_streaming(&e, "main/s.bin", &STREAM_OPTS);
    struct sread s = {0};
    int ok = 1;
    for (size_t off = 0; off < size; off += step) {
        size_t want = size - off < step ? size - off : step;
        ok &= read_either(r, p, out + off, step, off, NULL, &s) == (ssize_t)want;
    }
    CHECK(ok);
    CHECK_INT(read_either(r, p, out, step, size, NULL, &s), 0); /* end of object */
    CHECK(memcmp(out, data, size) == 0);
    struct lf_ra_stats st;
    lf_reader_get_stats(r, &st);
    struct lf_bcache_stats cs;
    lf_bcache_get_stats(e.cache, &cs);
    lf_reader_free(r);
    CHECK_INT(s.copied, 0);
    CHECK_INT(lf_mem_store_calls(e.mem, LF_MEM_GET), 0);
    CHECK_INT(st.spliced, size);
    CHECK_INT(lf_mem_store_bytes_out(e.mem), size); /* each byte fetched once */
    /* windows of 1, 2, 4, 8 MiB, then 8 MiB GETs */
    CHECK(st.streams >= size / (8 * MiB) && st.streams <= size / (8 * MiB) + 6);
    CHECK_INT(st.streams, lf_mem_store_calls(e.mem, LF_MEM_GET_STREAM));
    CHECK_INT(cs.used_bytes, 0);
    close(p[0]);
    close(p[1]);
    free(data);
    free(out);
    env_fini(&e);
}

/* Objects under stream_min, random reads and re-reads go through blocks;
 * reading on sequentially from a random place streams again. */
static void test_stream_only_for_sequential_reads(void)
{
    struct env e;
    env_init(&e, 64 * MiB);
    size_t size = 40 * MiB;
    unsigned char *data = pattern(size, 31), *out = calloc(1, size);
    lf_mem_store_put(e.mem, "repo", "main/r.bin", data, size);
    int p[2];
    stream_pipe(p, MiB);
    struct sread s = {0};

    struct lf_ra_opts big_min = {.stream_min = size + 1};
    struct lf_reader *r = open_streaming(&e, "main/r.bin", &big_min);
    CHECK_INT(read_either(r, p, out, MiB, 0, NULL, &s), MiB);
    CHECK_INT(s.copied, 1);
    lf_reader_free(r);

    lf_bcache_free(e.cache); /* forget those blocks */
    e.cache = lf_bcache_new(64 * MiB, MiB);
    s = (struct sread){0};
    r = open_streaming(&e, "main/r.bin", &STREAM_OPTS);
    uint64_t offs[] = {17 * MiB + 5, 3 * MiB, 29 * MiB};
    for (int i = 0; i < 3; i++) {
        CHECK_INT(read_either(r, p, out, 4096, offs[i], NULL, &s), 4096);
        CHECK(memcmp(out, data + offs[i], 4096) == 0);
    }
    CHECK_INT(s.copied, 3);
    CHECK_INT(lf_mem_store_calls(e.mem, LF_MEM_GET_STREAM), 0);
    CHECK(lf_mem_store_bytes_out(e.mem) <= 3 * 2 * MiB); /* no readahead of blocks */
    /* On from the last random read: the seven reads left in its block,
     * which is cached, through blocks; from the one that leaves it, a
     * stream. */
    uint64_t at = 29 * MiB + 4096;
    int ok = 1;
    for (int i = 0; i < 16; i++, at += 128 * 1024)
        ok &= read_either(r, p, out + at, 128 * 1024, at, NULL, &s) == 128 * 1024 &&
              memcmp(out + at, data + at, 128 * 1024) == 0;
    CHECK(ok);
    CHECK_INT(s.spliced, 9);
    /* back to a part the stream gave already: blocks */
    unsigned copied = s.copied;
    CHECK_INT(read_either(r, p, out, 4096, 30 * MiB + 8192, NULL, &s), 4096);
    CHECK(memcmp(out, data + 30 * MiB + 8192, 4096) == 0);
    CHECK_INT(s.copied, copied + 1);
    lf_reader_free(r);
    close(p[0]);
    close(p[1]);
    free(data);
    free(out);
    env_fini(&e);
}

/* A connection lost mid-answer costs that read a trip through the blocks
 * (which fetch again); the stream carries on after it. */
static void test_stream_broken_connection(void)
{
    struct env e;
    env_init(&e, 16 * MiB);
    size_t size = 48 * MiB, step = 512 * 1024;
    unsigned char *data = pattern(size, 32), *out = calloc(1, size);
    lf_mem_store_put(e.mem, "repo", "main/b.bin", data, size);
    int p[2];
    stream_pipe(p, MiB);
    struct sread s = {0};
    struct lf_reader *r = open_streaming(&e, "main/b.bin", &STREAM_OPTS);
    lf_mem_store_break_streams(e.mem, 300 * 1024, -ECONNRESET, 3);
    int ok = 1;
    for (size_t off = 0; off < size; off += step)
        ok &= read_either(r, p, out + off, step, off, NULL, &s) == (ssize_t)step;
    lf_reader_free(r);
    CHECK(ok);
    CHECK(memcmp(out, data, size) == 0);
    CHECK(s.copied >= 3);
    CHECK(s.spliced > s.copied * 10);
    close(p[0]);
    close(p[1]);
    free(data);
    free(out);
    env_fini(&e);
}

/* Lanes opened before the object was replaced give the version seen at
 * open; the first one opened after it says -ESTALE. Never a mix. */
static void test_stream_replaced_object(void)
{
    struct env e;
    env_init(&e, 16 * MiB);
    size_t size = 64 * MiB, step = MiB;
    unsigned char *v1 = pattern(size, 33), *v2 = pattern(size, 34), *out = calloc(1, size);
    lf_mem_store_put(e.mem, "repo", "main/x.bin", v1, size);
    int p[2];
    stream_pipe(p, MiB);
    struct sread s = {0};
    struct lf_reader *r = open_streaming(&e, "main/x.bin", &STREAM_OPTS);
    size_t off = 0;
    ssize_t n = 0;
    for (; off < 4 * MiB; off += step)
        n = read_either(r, p, out + off, step, off, NULL, &s);
    CHECK_INT(n, step);
    lf_mem_store_put(e.mem, "repo", "main/x.bin", v2, size);
    for (; off < size; off += step)
        if ((n = read_either(r, p, out + off, step, off, NULL, &s)) != (ssize_t)step)
            break;
    CHECK_INT(n, -ESTALE);
    CHECK(off < size);
    CHECK(memcmp(out, v1, off) == 0);
    lf_reader_free(r);
    close(p[0]);
    close(p[1]);
    free(v1);
    free(v2);
    free(out);
    env_fini(&e);
}

/* When open streams hold all the connections they may (-EBUSY), the
 * reader reads through the blocks and their readahead instead. */
static void test_stream_refused(void)
{
    struct env e;
    env_init(&e, 64 * MiB);
    size_t size = 32 * MiB, step = MiB;
    unsigned char *data = pattern(size, 35), *out = calloc(1, size);
    lf_mem_store_put(e.mem, "repo", "main/f.bin", data, size);
    int p[2];
    stream_pipe(p, MiB);
    struct sread s = {0};
    lf_mem_store_fail(e.mem, LF_MEM_GET_STREAM, -EBUSY, 100);
    struct lf_reader *r = open_streaming(&e, "main/f.bin", &STREAM_OPTS);
    int ok = 1;
    for (size_t off = 0; off < size; off += step)
        ok &= read_either(r, p, out + off, step, off, NULL, &s) == (ssize_t)step;
    lf_reader_free(r);
    CHECK(ok);
    CHECK(memcmp(out, data, size) == 0);
    CHECK_INT(s.spliced, 0);
    CHECK_INT(lf_mem_store_calls(e.mem, LF_MEM_GET_STREAM), 1); /* tried once */
    /* readahead of blocks took over: far fewer GETs than reads */
    CHECK(lf_mem_store_calls(e.mem, LF_MEM_GET) < size / step / 2);
    close(p[0]);
    close(p[1]);
    free(data);
    free(out);
    env_fini(&e);
}

static int always(void *arg) { return 1; }

/* A read waiting for a slow GET ends with -EINTR when its caller gives up. */
static void test_stream_cancelled(void)
{
    struct env e;
    env_init(&e, 16 * MiB);
    size_t size = 16 * MiB;
    unsigned char *data = pattern(size, 36), *out = calloc(1, size);
    lf_mem_store_put(e.mem, "repo", "main/c.bin", data, size);
    int p[2];
    stream_pipe(p, MiB);
    struct sread s = {0};
    struct lf_reader *r = open_streaming(&e, "main/c.bin", &STREAM_OPTS);
    lf_mem_store_set_delay_us(e.mem, 300 * 1000);
    struct lf_read_ctl ctl = {.cancelled = always};
    CHECK_INT(read_either(r, p, out, MiB, 0, &ctl, &s), -EINTR);
    CHECK(pipe_empty(p[0]));
    lf_reader_free(r); /* waits for the GET, closes what it opened */
    close(p[0]);
    close(p[1]);
    free(data);
    free(out);
    env_fini(&e);
}

/* Readahead sent in parallel: two threads take alternate reads of one
 * reader, each with its own pipe, arriving in any order. */
struct alt {
    struct lf_reader *r;
    unsigned char *out, *data;
    size_t size, step;
    int phase, ok;
    struct sread s;
};

static void *alt_reader(void *arg)
{
    struct alt *a = arg;
    int p[2];
    stream_pipe(p, MiB);
    a->ok = 1;
    for (size_t off = (size_t)a->phase * a->step; off < a->size; off += 2 * a->step)
        a->ok &= read_either(a->r, p, a->out + off, a->step, off, NULL, &a->s) ==
                 (ssize_t)a->step;
    close(p[0]);
    close(p[1]);
    return NULL;
}

static void test_stream_parallel_reads(void)
{
    struct env e;
    env_init(&e, 16 * MiB);
    size_t size = 48 * MiB, step = 256 * 1024;
    unsigned char *data = pattern(size, 37), *out = calloc(1, size);
    lf_mem_store_put(e.mem, "repo", "main/p.bin", data, size);
    struct lf_reader *r = open_streaming(&e, "main/p.bin", &STREAM_OPTS);
    struct alt a[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        a[i] = (struct alt){.r = r, .out = out, .data = data, .size = size, .step = step,
                            .phase = i};
        pthread_create(&t[i], NULL, alt_reader, &a[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    lf_reader_free(r);
    CHECK(a[0].ok && a[1].ok);
    CHECK(memcmp(out, data, size) == 0);
    CHECK(a[0].s.spliced + a[1].s.spliced > 0);
    free(data);
    free(out);
    env_fini(&e);
}

/* A head (a reply header) goes in first, after any bytes a lane had to
 * drop to reach the read: the pipe then holds exactly head + data. */
static void test_stream_head_and_gap(void)
{
    struct env e;
    env_init(&e, 16 * MiB);
    size_t size = 16 * MiB, half = MiB / 2;
    unsigned char *data = pattern(size, 38), *out = malloc(half + 4);
    lf_mem_store_put(e.mem, "repo", "main/g.bin", data, size);
    int p[2];
    stream_pipe(p, MiB);
    struct lf_reader *r = open_streaming(&e, "main/g.bin", &STREAM_OPTS);
    CHECK_INT(lf_reader_size(r), size);
    CHECK_INT(lf_reader_splice(r, half, 0, "HEAD", 4, p, NULL), half);
    CHECK_INT(pipe_take(p[0], out, half + 4), half + 4);
    CHECK(memcmp(out, "HEAD", 4) == 0 && memcmp(out + 4, data, half) == 0);
    /* the kernel had [512 KiB, 576 KiB) already: the lane drops it */
    uint64_t at = half + 64 * 1024;
    CHECK_INT(lf_reader_splice(r, 128 * 1024, at, "HD", 2, p, NULL), 128 * 1024);
    CHECK_INT(pipe_take(p[0], out, 128 * 1024 + 2), 128 * 1024 + 2);
    CHECK(memcmp(out, "HD", 2) == 0 && memcmp(out + 2, data + at, 128 * 1024) == 0);
    CHECK(pipe_empty(p[0]));
    /* the end of the object: nothing, not even the head */
    CHECK_INT(lf_reader_splice(r, 4096, size, "HD", 2, p, NULL), 0);
    CHECK(pipe_empty(p[0]));
    struct lf_ra_stats st;
    lf_reader_get_stats(r, &st);
    CHECK_INT(st.spliced, half + 128 * 1024);
    lf_reader_free(r);
    close(p[0]);
    close(p[1]);
    free(data);
    free(out);
    env_fini(&e);
}

int main(void)
{
    test_sequential();
    test_random_fetches_only_touched_blocks();
    test_content_identity();
    test_replaced_object_is_estale();
    test_failure_is_not_cached();
    test_budget_with_parallel_readers();
    test_stream_keeps_the_cache();
    test_stream_sequential();
    test_stream_only_for_sequential_reads();
    test_stream_broken_connection();
    test_stream_replaced_object();
    test_stream_refused();
    test_stream_cancelled();
    test_stream_parallel_reads();
    test_stream_head_and_gap();
    return check_summary("test_readahead");
}
