/* The block cache's disk tier: evicted blocks come back byte-exact without
 * a fetch, the size limit holds, damaged or foreign files are misses, file
 * and directory modes, leftovers, and many threads at once. */
#include "check.h"
#include "lakefuse/bcache.h"
#include "lakefuse/log.h"
#include "lakefuse/readahead.h"
#include "lakefuse/store.h"
#include "lakefuse/workq.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KiB 1024u
#define MiB (1024u * 1024u)
#define BS (64 * KiB)

static char base[] = "/tmp/lf-bcache-disk-XXXXXX";

/* The bytes of block `index` of the object with this ETag. */
static void pattern(unsigned char *p, size_t n, const char *etag, uint64_t index)
{
    uint32_t x = (uint32_t)(index * 2654435761u) ^ 0x9e3779b9u;
    for (const char *e = etag; *e; e++)
        x = x * 31 + (unsigned char)*e;
    x |= 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
    }
}

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", base, name);
}

struct listing {
    unsigned blocks, others;
    uint64_t bytes;
    char names[256][64];
};

/* Block files (*.blk) in dir and their total size; anything else counts
 * in others (a leftover temporary file would). */
static void list_dir(const char *dir, struct listing *l)
{
    memset(l, 0, sizeof(*l));
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[512];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        CHECK_INT(stat(p, &st), 0);
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".blk") == 0) {
            if (l->blocks < 256)
                snprintf(l->names[l->blocks], sizeof(l->names[0]), "%s", de->d_name);
            l->blocks++;
            l->bytes += (uint64_t)st.st_size;
        } else {
            l->others++;
        }
    }
    closedir(d);
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        if (unlink(p) != 0)
            rm_dir(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Creates block `index` as a fetch would; the caller must get created. */
static void fill(struct lf_bcache *c, const char *etag, uint64_t objsize, uint64_t index)
{
    struct lf_bkey k = {.etag = etag, .objsize = objsize, .index = index};
    struct lf_block *b;
    bool created = false;
    CHECK_INT(lf_bcache_acquire(c, &k, LF_BC_DEMAND, &b, &created), 0);
    CHECK(created);
    if (created) {
        pattern(lf_block_data(b), BS, etag, index);
        lf_bcache_complete(c, b, BS, 0);
    }
    lf_bcache_release(c, b, false);
}

/* Gets block `index` expecting it cached (memory or disk): 1 when it was
 * and its bytes are right. A miss is failed and dropped. */
static int get_cached(struct lf_bcache *c, const char *etag, uint64_t objsize,
                      uint64_t index, enum lf_bcache_mode mode, bool consumed)
{
    static unsigned char want[BS];
    struct lf_bkey k = {.etag = etag, .objsize = objsize, .index = index};
    struct lf_block *b;
    bool created = true;
    int ok = 0;
    if (lf_bcache_acquire(c, &k, mode, &b, &created) != 0)
        return 0;
    if (created) {
        lf_bcache_complete(c, b, 0, -EIO);
    } else if (lf_bcache_wait(c, b, NULL) == 0 && lf_block_len(b) == BS) {
        pattern(want, BS, etag, index);
        ok = memcmp(lf_block_data(b), want, BS) == 0;
    }
    lf_bcache_release(c, b, consumed);
    return ok;
}

/* Gets block `index` expecting a miss: 1 when acquire asked for a fetch
 * (the block is then failed, so it is not cached). */
static int get_missing(struct lf_bcache *c, const char *etag, uint64_t objsize, uint64_t index)
{
    struct lf_bkey k = {.etag = etag, .objsize = objsize, .index = index};
    struct lf_block *b;
    bool created = false;
    if (lf_bcache_acquire(c, &k, LF_BC_DEMAND, &b, &created) != 0)
        return 0;
    if (created)
        lf_bcache_complete(c, b, 0, -EIO);
    lf_bcache_release(c, b, false);
    return created;
}

static void test_evicted_blocks_come_back(void)
{
    char dir[256];
    path_in(dir, sizeof(dir), "t1");
    struct lf_bcache *c = lf_bcache_new(4 * BS, BS);
    CHECK_INT(lf_bcache_enable_disk(c, dir, 64 * MiB), 0);
    const uint64_t n = 32, objsize = n * BS;
    for (uint64_t i = 0; i < n; i++)
        fill(c, "etag-1", objsize, i);
    struct lf_bcache_stats st;
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.misses, n);
    CHECK_INT(st.disk_writes, n - 4); /* all but what memory holds */
    CHECK(st.used_bytes <= 4 * BS);
    struct listing l;
    list_dir(dir, &l);
    CHECK_INT(l.blocks, n - 4);
    CHECK_INT(l.others, 0);
    CHECK_INT(st.disk_bytes, l.bytes);

    /* LOOKUP does not read the disk. */
    struct lf_bkey k = {.etag = "etag-1", .objsize = objsize, .index = 0};
    struct lf_block *b;
    bool created;
    CHECK_INT(lf_bcache_acquire(c, &k, LF_BC_LOOKUP, &b, &created), -ENOENT);

    /* In order, each load pushes out one of the four still in memory, so
     * every block comes from disk, and none needs a fetch. */
    int ok = 1;
    for (uint64_t i = 0; i < n; i++)
        ok &= get_cached(c, "etag-1", objsize, i, LF_BC_DEMAND, false);
    CHECK(ok);
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.misses, n);
    CHECK_INT(st.disk_hits, n);
    CHECK_INT(st.disk_writes, n); /* only the last four were new to disk */
    CHECK(st.used_bytes <= 4 * BS);

    /* Prefetches are served from disk too. */
    ok = 1;
    for (uint64_t i = 0; i < n; i++)
        ok &= get_cached(c, "etag-1", objsize, i, LF_BC_PREFETCH, true);
    CHECK(ok);
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.misses, n);
    CHECK(st.disk_hits >= n + n - 4);

    /* Same index and ETag, another object size: another block. */
    CHECK(get_missing(c, "etag-1", objsize + 1, 0));
    lf_bcache_free(c);
    list_dir(dir, &l);
    CHECK_INT(l.blocks, 0); /* freeing the cache removes its files */
    rmdir(dir);
}

static void test_disk_limit(void)
{
    char dir[256];
    path_in(dir, sizeof(dir), "t2");
    /* Room for ten files, not eleven: a file's header is well under 1 KiB. */
    uint64_t limit = 10 * BS + 10 * KiB;
    struct lf_bcache *c = lf_bcache_new(4 * BS, BS);
    CHECK_INT(lf_bcache_enable_disk(c, dir, limit), 0);
    const uint64_t n = 64, objsize = n * BS;
    for (uint64_t i = 0; i < n; i++)
        fill(c, "etag-2", objsize, i);
    struct lf_bcache_stats st;
    lf_bcache_get_stats(c, &st);
    struct listing l;
    list_dir(dir, &l);
    CHECK_INT(st.disk_writes, n - 4);
    CHECK_INT(l.blocks, 10);
    CHECK_INT(l.others, 0);
    CHECK(l.bytes <= limit);
    CHECK_INT(st.disk_bytes, l.bytes);
    CHECK(st.disk_bytes <= limit);
    /* The ten most recently evicted (n-14 .. n-5) stayed; the oldest went.
     * Loading n-5 evicts n-4 from memory, whose file pushes out n-14. */
    CHECK(get_cached(c, "etag-2", objsize, n - 5, LF_BC_DEMAND, false));
    CHECK(get_missing(c, "etag-2", objsize, n - 14));
    CHECK(get_cached(c, "etag-2", objsize, n - 13, LF_BC_DEMAND, false));
    CHECK(get_missing(c, "etag-2", objsize, 0));
    CHECK(get_missing(c, "etag-2", objsize, n - 16));
    list_dir(dir, &l);
    CHECK(l.bytes <= limit);
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.disk_hits, 2);
    CHECK_INT(st.disk_bytes, l.bytes);

    /* A limit below one file keeps nothing, and breaks nothing. */
    struct lf_bcache *c2 = lf_bcache_new(2 * BS, BS);
    char dir2[256];
    path_in(dir2, sizeof(dir2), "t2-tiny");
    CHECK_INT(lf_bcache_enable_disk(c2, dir2, BS / 2), 0);
    for (uint64_t i = 0; i < 8; i++)
        fill(c2, "etag-2", objsize, i);
    CHECK(get_missing(c2, "etag-2", objsize, 0));
    lf_bcache_get_stats(c2, &st);
    CHECK_INT(st.disk_writes, 0);
    CHECK_INT(st.disk_bytes, 0);
    lf_bcache_free(c2);
    rmdir(dir2);
    lf_bcache_free(c);
    rmdir(dir);
}

static void flip_byte(const char *path, off_t off_from_end)
{
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    struct stat st;
    CHECK_INT(fstat(fd, &st), 0);
    off_t off = off_from_end < 0 ? -off_from_end - 1 : st.st_size - 1 - off_from_end;
    unsigned char ch = 0;
    CHECK_INT(pread(fd, &ch, 1, off), 1);
    ch ^= 0x5a;
    CHECK_INT(pwrite(fd, &ch, 1, off), 1);
    close(fd);
}

static void copy_file(const char *from, const char *to)
{
    static unsigned char buf[2 * BS];
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_TRUNC);
    CHECK(in >= 0 && out >= 0);
    ssize_t n = read(in, buf, sizeof(buf));
    CHECK(n > 0);
    CHECK_INT(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
}

static void test_damaged_files_are_misses(void)
{
    char dir[256], p[4][512];
    path_in(dir, sizeof(dir), "t3");
    struct lf_bcache *c = lf_bcache_new(4 * BS, BS);
    CHECK_INT(lf_bcache_enable_disk(c, dir, 64 * MiB), 0);
    const uint64_t objsize = 8 * BS;
    for (uint64_t i = 0; i < 8; i++)
        fill(c, "etag-3", objsize, i);
    struct listing l;
    list_dir(dir, &l);
    CHECK_INT(l.blocks, 4); /* blocks 0-3, in some order */
    if (l.blocks != 4) {
        lf_bcache_free(c);
        return;
    }
    for (int i = 0; i < 4; i++)
        snprintf(p[i], sizeof(p[i]), "%s/%s", dir, l.names[i]);
    flip_byte(p[0], 0);                              /* the last data byte */
    CHECK_INT(truncate(p[1], BS), 0);                /* torn */
    copy_file(p[3], p[2]); /* intact, but another block's: a name collision */
    flip_byte(p[3], -1);                             /* the header's first byte */

    /* Not one of them may come back as data. Blocks 4-7 stay in memory:
     * the misses are failed, so nothing is evicted or written. */
    int all_missed = 1;
    for (uint64_t i = 0; i < 4; i++)
        all_missed &= get_missing(c, "etag-3", objsize, i);
    CHECK(all_missed);
    struct lf_bcache_stats st;
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.disk_hits, 0);
    CHECK_INT(st.disk_bytes, 0); /* each damaged file was dropped... */
    list_dir(dir, &l);
    CHECK_INT(l.blocks, 0); /* ...and removed */

    /* Files removed behind the cache's back are misses as well. Filling
     * eight more blocks writes out etag-3's 4-7 and etag-3b's 0-3. */
    for (uint64_t i = 0; i < 8; i++)
        fill(c, "etag-3b", objsize, i);
    list_dir(dir, &l);
    CHECK_INT(l.blocks, 8);
    for (unsigned i = 0; i < l.blocks && i < 256; i++) {
        char q[512];
        snprintf(q, sizeof(q), "%s/%s", dir, l.names[i]);
        CHECK_INT(unlink(q), 0);
    }
    all_missed = 1;
    for (uint64_t i = 0; i < 4; i++) {
        all_missed &= get_missing(c, "etag-3b", objsize, i);
        all_missed &= get_missing(c, "etag-3", objsize, 4 + i);
    }
    CHECK(all_missed);
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.disk_hits, 0);
    CHECK_INT(st.disk_bytes, 0);
    lf_bcache_free(c);
    rmdir(dir);
}

/* Two blocks alike but for the ETag or the object size (another version
 * of the object): a file holding one under the other's name, as a digest
 * collision would leave it, must not be taken for the other. */
static void collide(const char *name, const char *etag_a, uint64_t size_a, const char *etag_b,
                    uint64_t size_b)
{
    char dir[256], a[512], b[512];
    path_in(dir, sizeof(dir), name);
    struct lf_bcache *c = lf_bcache_new(BS, BS);
    CHECK_INT(lf_bcache_enable_disk(c, dir, 64 * MiB), 0);
    struct listing l;
    fill(c, etag_a, size_a, 0);
    fill(c, etag_b, size_b, 0); /* writes A out */
    list_dir(dir, &l);
    CHECK_INT(l.blocks, 1);
    snprintf(a, sizeof(a), "%s/%s", dir, l.names[0]);
    fill(c, "etag-other", size_a, 0); /* writes B out */
    list_dir(dir, &l);
    CHECK_INT(l.blocks, 2);
    for (unsigned i = 0; i < l.blocks && i < 2; i++) {
        snprintf(b, sizeof(b), "%s/%s", dir, l.names[i]);
        if (strcmp(a, b) != 0)
            break;
    }
    CHECK(strcmp(a, b) != 0);
    copy_file(a, b);
    CHECK(get_missing(c, etag_b, size_b, 0));
    CHECK(get_cached(c, etag_a, size_a, 0, LF_BC_DEMAND, false));
    struct lf_bcache_stats st;
    lf_bcache_get_stats(c, &st);
    CHECK_INT(st.disk_hits, 1);
    lf_bcache_free(c);
    rmdir(dir);
}

static void test_collision_is_a_miss(void)
{
    collide("t3c", "etag-A", 4 * BS, "etag-B", 4 * BS);
    collide("t3d", "etag-A", 4 * BS, "etag-A", 5 * BS);
}

static void touch(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_INT(write(fd, "x", 1), 1);
    close(fd);
}

static bool exists(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void test_modes_and_leftovers(void)
{
    char dir[256], p[512], none[256];
    struct stat st;
    path_in(dir, sizeof(dir), "t4");
    struct lf_bcache *c = lf_bcache_new(2 * BS, BS);
    CHECK_INT(lf_bcache_enable_disk(c, dir, 64 * MiB), 0);
    CHECK_INT(lf_bcache_enable_disk(c, dir, 64 * MiB), -EEXIST);
    CHECK_INT(stat(dir, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0700);
    for (uint64_t i = 0; i < 6; i++)
        fill(c, "etag-4", 6 * BS, i);
    struct listing l;
    list_dir(dir, &l);
    CHECK_INT(l.blocks, 4);
    for (unsigned i = 0; i < l.blocks && i < 256; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, l.names[i]);
        CHECK_INT(stat(p, &st), 0);
        CHECK(S_ISREG(st.st_mode));
        CHECK_INT(st.st_mode & 07777, 0600);
    }

    /* One daemon per directory. */
    struct lf_bcache *other = lf_bcache_new(2 * BS, BS);
    CHECK_INT(lf_bcache_enable_disk(other, dir, 64 * MiB), -EBUSY);
    lf_bcache_free(other);
    lf_bcache_free(c);
    list_dir(dir, &l);
    CHECK_INT(l.blocks, 0);

    /* What a killed daemon left: its block and temporary files go, other
     * files stay, and a directory opened to others is made private. */
    static const char blk[] = "0123456789abcdef0123456789abcdef.blk";
    static const char tmp[] = "0123456789abcdef0123456789abcdef.42.tmp";
    static const char keep[] = "0123456789abcdef0123456789abcdef.txt";
    touch(dir, blk);
    touch(dir, tmp);
    touch(dir, keep);
    touch(dir, "notes");
    CHECK_INT(chmod(dir, 0755), 0);
    c = lf_bcache_new(2 * BS, BS);
    CHECK_INT(lf_bcache_enable_disk(c, dir, 64 * MiB), 0);
    CHECK(!exists(dir, blk));
    CHECK(!exists(dir, tmp));
    CHECK(exists(dir, keep));
    CHECK(exists(dir, "notes"));
    CHECK_INT(stat(dir, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0700);
    lf_bcache_free(c);
    CHECK(exists(dir, "notes"));
    rm_dir(dir);

    /* Limit 0: no tier, no directory. Bad places are errors. */
    c = lf_bcache_new(2 * BS, BS);
    path_in(none, sizeof(none), "t4-none");
    CHECK_INT(lf_bcache_enable_disk(c, none, 0), 0);
    CHECK(!exists(base, "t4-none"));
    for (uint64_t i = 0; i < 4; i++)
        fill(c, "etag-4", 6 * BS, i);
    struct lf_bcache_stats bst;
    lf_bcache_get_stats(c, &bst);
    CHECK_INT(bst.evictions, 2);
    CHECK_INT(bst.disk_writes, 0);
    path_in(p, sizeof(p), "missing/blocks");
    CHECK_INT(lf_bcache_enable_disk(c, p, MiB), -ENOENT);
    touch(base, "file");
    path_in(p, sizeof(p), "file");
    CHECK_INT(lf_bcache_enable_disk(c, p, MiB), -ENOTDIR);
    unlink(p);
    lf_bcache_free(c);
}

/* Many threads on few blocks: some fill, some wait, some load from disk
 * while others write and evict. */
#define NKEYS 48
#define NTHREADS 8

struct shared {
    struct lf_bcache *c;
    atomic_uint fetches[NKEYS];
    atomic_uint bad;
    unsigned ops;
};

struct worker {
    struct shared *s;
    uint32_t seed;
};

static void *worker(void *arg)
{
    struct worker *w = arg;
    struct shared *s = w->s;
    unsigned char *want = malloc(BS);
    uint32_t x = w->seed | 1;
    for (unsigned op = 0; op < s->ops; op++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        uint64_t idx = x % NKEYS;
        enum lf_bcache_mode mode = (x >> 8) % 4 == 0 ? LF_BC_PREFETCH : LF_BC_DEMAND;
        struct lf_bkey k = {.etag = "etag-5", .objsize = NKEYS * BS, .index = idx};
        struct lf_block *b;
        bool created;
        int rc = lf_bcache_acquire(s->c, &k, mode, &b, &created);
        if (rc) {
            if (!(mode == LF_BC_PREFETCH && rc == -ENOBUFS))
                atomic_fetch_add(&s->bad, 1);
            continue;
        }
        pattern(want, BS, "etag-5", idx);
        if (created) {
            atomic_fetch_add(&s->fetches[idx], 1);
            memcpy(lf_block_data(b), want, BS);
            lf_bcache_complete(s->c, b, BS, 0);
        } else if (lf_bcache_wait(s->c, b, NULL) != 0 || lf_block_len(b) != BS ||
                   memcmp(lf_block_data(b), want, BS) != 0) {
            atomic_fetch_add(&s->bad, 1);
        }
        lf_bcache_release(s->c, b, (x >> 12) % 2 == 0);
    }
    free(want);
    return NULL;
}

static void run_threads(const char *name, uint64_t limit, bool expect_once)
{
    char dir[256];
    path_in(dir, sizeof(dir), name);
    struct shared s = {.c = lf_bcache_new(6 * BS, BS), .ops = 300};
    CHECK_INT(lf_bcache_enable_disk(s.c, dir, limit), 0);
    for (int i = 0; i < NKEYS; i++)
        atomic_init(&s.fetches[i], 0);
    atomic_init(&s.bad, 0);
    pthread_t t[NTHREADS];
    struct worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){.s = &s, .seed = 7919u * (unsigned)(i + 1)};
        pthread_create(&t[i], NULL, worker, &w[i]);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    CHECK_INT(atomic_load(&s.bad), 0);
    unsigned total = 0, most = 0;
    for (int i = 0; i < NKEYS; i++) {
        unsigned f = atomic_load(&s.fetches[i]);
        total += f;
        most = f > most ? f : most;
    }
    struct lf_bcache_stats st;
    lf_bcache_get_stats(s.c, &st);
    struct listing l;
    list_dir(dir, &l);
    CHECK_INT(st.misses, total);
    CHECK(st.used_bytes <= 6 * BS);
    CHECK(l.bytes <= limit);
    CHECK_INT(st.disk_bytes, l.bytes);
    CHECK_INT(l.others, 0); /* no temporary file left behind */
    CHECK(st.disk_hits > 0);
    if (expect_once) {
        /* Everything fits on disk: nothing is ever fetched twice. */
        CHECK_INT(most, 1);
        CHECK_INT(total, NKEYS);
    }
    lf_bcache_free(s.c);
    rmdir(dir);
}

static void test_threads(void)
{
    run_threads("t5-big", 64 * MiB, true);
    run_threads("t5-small", 12 * (BS + KiB), false);
}

/* Through readahead, as the filesystem reads: a file twice the memory
 * budget, read twice, is fetched once. */
static void test_reader_reads_once(void)
{
    char dir[256];
    path_in(dir, sizeof(dir), "t6");
    struct lf_mem_store *mem = lf_mem_store_new();
    struct lf_store *store = lf_mem_store_view(mem);
    lf_mem_store_add_bucket(mem, "repo");
    struct lf_bcache *c = lf_bcache_new(8 * MiB, MiB);
    CHECK_INT(lf_bcache_enable_disk(c, dir, 64 * MiB), 0);
    struct lf_workq *wq = lf_workq_new(4, "test");
    size_t size = 20 * MiB + 777;
    unsigned char *data = malloc(size), *out = malloc(size);
    pattern(data, size, "file", 0);
    lf_mem_store_put(mem, "repo", "main/f", data, size);
    struct lf_obj_attr a;
    CHECK_INT(store->ops->head(store->ctx, "repo", "main/f", &a), 0);
    for (int pass = 0; pass < 2; pass++) {
        struct lf_reader *r = lf_reader_new(c, store, wq, "repo", "main/f", a.etag, a.size,
                                            NULL);
        memset(out, 0, size);
        for (size_t off = 0; off < size; off += 128 * KiB) {
            size_t want = size - off < 128 * KiB ? size - off : 128 * KiB;
            CHECK_INT(lf_reader_read(r, out + off, 128 * KiB, off, NULL), want);
        }
        lf_reader_free(r);
        CHECK(memcmp(out, data, size) == 0);
    }
    CHECK_INT(lf_mem_store_bytes_out(mem), size);
    struct lf_bcache_stats st;
    lf_bcache_get_stats(c, &st);
    CHECK(st.disk_hits >= 12);
    CHECK(st.used_bytes <= 8 * MiB);
    lf_workq_free(wq);
    lf_bcache_free(c);
    lf_mem_store_free(mem);
    free(data);
    free(out);
    rmdir(dir);
}

int main(void)
{
    lf_log_set_level(LF_LOG_ERROR); /* the damaged files are on purpose */
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    test_evicted_blocks_come_back();
    test_disk_limit();
    test_damaged_files_are_misses();
    test_collision_is_a_miss();
    test_modes_and_leftovers();
    test_threads();
    test_reader_reads_once();
    rm_dir(base);
    return check_summary("test_bcache_disk");
}
