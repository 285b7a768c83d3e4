/* Readahead and block cache against the in-memory store: bytes, request
 * counts, content identity, ETag pinning and the memory budget. */
#include "check.h"
#include "lakefuse/bcache.h"
#include "lakefuse/readahead.h"
#include "lakefuse/store.h"
#include "lakefuse/workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    test_sequential();
    test_random_fetches_only_touched_blocks();
    test_content_identity();
    test_replaced_object_is_estale();
    test_failure_is_not_cached();
    test_budget_with_parallel_readers();
    test_stream_keeps_the_cache();
    return check_summary("test_readahead");
}
