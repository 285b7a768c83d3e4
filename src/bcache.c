/* bcache: a chained hash table of blocks plus one LRU list, under one
 * mutex. Block data is copied in and out outside the lock: a pinned block
 * is never evicted or recycled, and a PENDING block is written only by the
 * thread that created it.
 *
 * The disk tier has an index of its own (hash table, LRU, byte count)
 * under a second mutex. The two locks are never held together, and no
 * file I/O happens under the memory lock: an evicted block is "spilled"
 * by the thread that evicted it, which keeps it pinned (still readable,
 * still counted in the budget) while it writes, then frees it; a block
 * found on disk is created PENDING and filled from its file by the thread
 * that asked, like a fetch.
 */
#include "lakefuse/bcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "lakefuse/hash.h"
#include "lakefuse/log.h"

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
    bool spilling; /* out of the LRU, pinned, while its evictor writes it */
    bool consumed; /* its reader is done with it; the last unpin acts on that */
    struct lf_block *snext; /* the evictor's list of blocks to write */
    size_t len;
    char *data;
};

struct disk;

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
    size_t spilling; /* bytes of blocks being written out: room to come */
    struct disk *disk; /* NULL without a disk tier; set before sharing */
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

/* ---- Disk tier ----
 *
 * One file per block, named by a digest of its key (ID_LEN bytes of the
 * SHA-256 of ETag, object size and index) in hex. A file is a fixed header
 * then the block's bytes:
 *
 *   0   magic "LFBLK\0\0\1"
 *   8   object size, block index, length (u64 little-endian each)
 *   32  SHA-256 of the bytes
 *   64  ETag, NUL-padded to LF_ETAG_MAX
 *
 * The key in the header catches a digest collision and the SHA-256 a
 * damaged file; either is a miss and the file goes. A file is written
 * under a temporary name and renamed, so a reader never sees a partial
 * one. Nothing is fsynced: the tier is emptied at every start, so what a
 * crash leaves behind is never read.
 *
 * A name's entry in the index moves WRITING -> PRESENT -> gone. The bytes
 * of a file being written are counted from the start, so the files never
 * exceed the limit; only PRESENT entries are in the LRU, and only they are
 * evicted (unlinked). There is one entry per name at a time, so one writer
 * per name, and unlinks happen under the index lock when the entry is
 * removed: a file can vanish under a reader (a miss) but never be replaced
 * by anything but a complete file for the same key.
 */

#define ID_LEN 16                        /* 128 bits name a block */
#define NAME_SIZE (2 * ID_LEN + 32)      /* hex, ".<gen>.tmp", NUL */
#define HDR_SIZE (64 + LF_ETAG_MAX)
static const unsigned char MAGIC[8] = {'L', 'F', 'B', 'L', 'K', 0, 0, 1};

/* The index costs ~64 bytes an entry. Tiny files could make it large, so
 * the number of entries is capped: each entry stands for at least this
 * much of the limit, and there are never more than MAX_ENTRIES. */
#define ENTRY_MIN_BYTES (16u * 1024)
#define MAX_ENTRIES (256u * 1024)

/* How many times an acquire writes victims out and finds no room after
 * all: spilled blocks another thread pinned meanwhile stay in memory, and
 * a caller should not chase hot blocks for ever. Past this a prefetch
 * gives up (it is only a guess) and a demand read evicts without writing.
 * Waiting for others' spills is not counted: that always ends. */
#define MAX_SPILL_ROUNDS 4

struct dent {
    struct dent *hnext;
    struct dent *prev, *next; /* LRU of PRESENT entries; head = recent */
    unsigned char id[ID_LEN];
    uint64_t gen;             /* which incarnation of this name */
    uint64_t size;            /* file bytes, header included */
    bool present;
};

struct disk {
    pthread_mutex_t lock;
    int dirfd;                /* also holds the directory's flock */
    uint64_t limit, bytes, gen, writes;
    size_t nentries, max_entries, nbuckets;
    struct dent **table;
    struct dent lru;          /* sentinel */
    bool warned;              /* one warning per run for write failures */
};

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* etag is the NUL-padded LF_ETAG_MAX form, the same one a block holds. */
static int key_id(const char etag[LF_ETAG_MAX], uint64_t objsize, uint64_t index,
                  unsigned char id[ID_LEN])
{
    unsigned char in[LF_ETAG_MAX + 16], md[LF_SHA256_LEN];
    memcpy(in, etag, LF_ETAG_MAX);
    put_u64(in + LF_ETAG_MAX, objsize);
    put_u64(in + LF_ETAG_MAX + 8, index);
    int rc = lf_sha256(in, sizeof(in), md);
    if (rc == 0)
        memcpy(id, md, ID_LEN);
    return rc;
}

static void id_name(const unsigned char id[ID_LEN], char name[NAME_SIZE])
{
    lf_hex_fill(name, id, ID_LEN);
    memcpy(name + 2 * ID_LEN, ".blk", 5);
}

static void tmp_name(const unsigned char id[ID_LEN], uint64_t gen, char name[NAME_SIZE])
{
    lf_hex_fill(name, id, ID_LEN);
    snprintf(name + 2 * ID_LEN, NAME_SIZE - 2 * ID_LEN, ".%llu.tmp", (unsigned long long)gen);
}

/* Whether a directory entry is one of ours: "<hex>.blk" or "<hex>.<n>.tmp". */
static bool is_block_name(const char *n)
{
    for (int i = 0; i < 2 * ID_LEN; i++)
        if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
            return false;
    n += 2 * ID_LEN;
    if (strcmp(n, ".blk") == 0)
        return true;
    if (*n++ != '.' || !(*n >= '0' && *n <= '9'))
        return false;
    while (*n >= '0' && *n <= '9')
        n++;
    return strcmp(n, ".tmp") == 0;
}

static struct dent **dent_slot(struct disk *d, const unsigned char id[ID_LEN])
{
    return &d->table[get_u64(id) & (d->nbuckets - 1)];
}

static struct dent *dent_find(struct disk *d, const unsigned char id[ID_LEN])
{
    struct dent *e = *dent_slot(d, id);
    while (e && memcmp(e->id, id, ID_LEN) != 0)
        e = e->hnext;
    return e;
}

static void dent_lru_unlink(struct dent *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = e;
}

static void dent_lru_front(struct disk *d, struct dent *e)
{
    e->next = d->lru.next;
    e->prev = &d->lru;
    d->lru.next->prev = e;
    d->lru.next = e;
}

static void dent_remove(struct disk *d, struct dent *e)
{
    struct dent **pp = dent_slot(d, e->id);
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    dent_lru_unlink(e);
    d->bytes -= e->size;
    d->nentries--;
    free(e);
}

/* Removes a PRESENT entry and its file. Under d->lock. */
static void dent_drop_file(struct disk *d, struct dent *e)
{
    char name[NAME_SIZE];
    id_name(e->id, name);
    if (unlinkat(d->dirfd, name, 0) != 0 && errno != ENOENT)
        lf_dbg("disk cache: cannot remove %s: %s", name, strerror(errno));
    dent_remove(d, e);
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *q = p;
    while (n > 0) {
        ssize_t w = write(fd, q, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        q += w;
        n -= (size_t)w;
    }
    return 0;
}

static int pread_all(int fd, void *p, size_t n, off_t off)
{
    char *q = p;
    while (n > 0) {
        ssize_t r = pread(fd, q, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EBADMSG; /* shorter than its header said */
        q += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

/* Whether the filesystem keeps its reserve (see bcache.h) after `size`
 * more bytes: staged writes share it and come first. Under d->lock. */
static bool room_left(struct disk *d, uint64_t size)
{
    struct statvfs v;
    if (fstatvfs(d->dirfd, &v) != 0)
        return true; /* cannot tell: the limit still holds */
    uint64_t total = (uint64_t)v.f_blocks * v.f_frsize, avail = (uint64_t)v.f_bavail * v.f_frsize;
    uint64_t reserve = total / 8 < LF_BCACHE_DISK_RESERVE ? total / 8 : LF_BCACHE_DISK_RESERVE;
    return avail >= size + reserve;
}

/* Writes a READY block to the tier, unless it is there already (then it
 * only becomes the most recent). The block is pinned by the caller and
 * its fields and bytes do not change while it is READY, so no memory lock
 * is needed. Failure only means the block is not kept. */
static void disk_store(struct disk *d, struct lf_block *b)
{
    unsigned char id[ID_LEN], hdr[HDR_SIZE];
    char tmp[NAME_SIZE], name[NAME_SIZE];
    uint64_t size = HDR_SIZE + (uint64_t)b->len, gen = 0;
    struct dent *e = NULL;
    int fd = -1, rc;

    if ((rc = key_id(b->etag, b->objsize, b->index, id)))
        goto out;
    pthread_mutex_lock(&d->lock);
    if ((e = dent_find(d, id))) {
        if (e->present) {
            dent_lru_unlink(e);
            dent_lru_front(d, e);
        }
        e = NULL; /* not ours to finish */
        pthread_mutex_unlock(&d->lock);
        goto out;
    }
    /* Reserve the bytes first, so the files never exceed the limit, even
     * while being written. Entries being written by others are not in the
     * LRU: if only they are left, this block is simply not kept. */
    while ((d->bytes + size > d->limit || d->nentries >= d->max_entries) &&
           d->lru.prev != &d->lru)
        dent_drop_file(d, d->lru.prev);
    if (d->bytes + size > d->limit || d->nentries >= d->max_entries || !room_left(d, size) ||
        !(e = calloc(1, sizeof(*e)))) {
        pthread_mutex_unlock(&d->lock);
        rc = -ENOSPC;
        goto out;
    }
    memcpy(e->id, id, ID_LEN);
    e->gen = gen = ++d->gen;
    e->size = size;
    e->prev = e->next = e;
    e->hnext = *dent_slot(d, id);
    *dent_slot(d, id) = e;
    d->nentries++;
    d->bytes += size;
    pthread_mutex_unlock(&d->lock);

    tmp_name(id, gen, tmp);
    id_name(id, name);
    memcpy(hdr, MAGIC, 8);
    put_u64(hdr + 8, b->objsize);
    put_u64(hdr + 16, b->index);
    put_u64(hdr + 24, b->len);
    memcpy(hdr + 64, b->etag, LF_ETAG_MAX);
    if ((rc = lf_sha256(b->data, b->len, hdr + 32)))
        goto out;
    fd = openat(d->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = write_all(fd, hdr, sizeof(hdr))) || (rc = write_all(fd, b->data, b->len)))
        goto out;
    if (close(fd) != 0) {
        fd = -1;
        rc = -errno;
        goto out;
    }
    fd = -1;
    if (renameat(d->dirfd, tmp, d->dirfd, name) != 0)
        rc = -errno;
out:
    if (fd >= 0)
        close(fd);
    if (!e)
        return; /* nothing reserved: nothing written */
    if (rc)
        unlinkat(d->dirfd, tmp, 0);
    pthread_mutex_lock(&d->lock);
    /* Our entry is still there: only PRESENT entries are ever removed. */
    if (rc) {
        if (!d->warned && rc != -ENOSPC) {
            d->warned = true;
            lf_warn("disk cache: cannot write a block: %s (further failures are not logged)",
                    strerror(-rc));
        }
        dent_remove(d, e);
    } else {
        e->present = true;
        dent_lru_front(d, e);
        d->writes++;
    }
    pthread_mutex_unlock(&d->lock);
}

/* Checks the file's header against the key and its bytes against their
 * digest, reading the bytes into buf (block_size long). */
static int read_verified(int fd, const char etag[LF_ETAG_MAX], const struct lf_bkey *key,
                         char *buf, size_t block_size, size_t *len)
{
    unsigned char hdr[HDR_SIZE], md[LF_SHA256_LEN];
    struct stat st;
    int rc;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size < HDR_SIZE ||
        (uint64_t)st.st_size - HDR_SIZE > block_size)
        return -EBADMSG;
    if ((rc = pread_all(fd, hdr, sizeof(hdr), 0)))
        return rc;
    uint64_t n = get_u64(hdr + 24);
    if (memcmp(hdr, MAGIC, 8) != 0 || get_u64(hdr + 8) != key->objsize ||
        get_u64(hdr + 16) != key->index || n != (uint64_t)st.st_size - HDR_SIZE ||
        memcmp(hdr + 64, etag, LF_ETAG_MAX) != 0)
        return -EBADMSG;
    if ((rc = pread_all(fd, buf, (size_t)n, HDR_SIZE)) || (rc = lf_sha256(buf, (size_t)n, md)))
        return rc;
    if (memcmp(md, hdr + 32, sizeof(md)) != 0)
        return -EBADMSG;
    *len = (size_t)n;
    return 0;
}

/* Reads the key's block from the tier into buf: 0 with *len, or -ENOENT
 * (not there) or another error (treated as not there; the file is gone). */
static int disk_load(struct disk *d, const struct lf_bkey *key, char *buf, size_t block_size,
                     size_t *len)
{
    char etag[LF_ETAG_MAX] = {0}, name[NAME_SIZE];
    unsigned char id[ID_LEN];
    uint64_t gen = 0;
    int fd = -1, rc;

    snprintf(etag, sizeof(etag), "%s", key->etag); /* as a block stores it */
    if ((rc = key_id(etag, key->objsize, key->index, id)))
        return rc;
    pthread_mutex_lock(&d->lock);
    struct dent *e = dent_find(d, id);
    if (e && e->present) {
        gen = e->gen;
        dent_lru_unlink(e);
        dent_lru_front(d, e);
    }
    pthread_mutex_unlock(&d->lock);
    if (!gen)
        return -ENOENT;
    id_name(id, name);
    fd = openat(d->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = read_verified(fd, etag, key, buf, block_size, len);
out:
    if (fd >= 0)
        close(fd);
    if (rc) {
        if (rc == -EBADMSG)
            lf_warn("disk cache: %s failed verification (damaged, or another block's); "
                    "removed", name);
        /* Drop the entry if it is still the one we read: a newer one for
         * the same name is a newer, complete file. */
        pthread_mutex_lock(&d->lock);
        if ((e = dent_find(d, id)) && e->present && e->gen == gen)
            dent_drop_file(d, e);
        pthread_mutex_unlock(&d->lock);
    }
    return rc;
}

/* Removes the block files an earlier run left in the directory. */
static int disk_sweep(int dirfd)
{
    int fd = dup(dirfd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        int rc = -errno;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    rewinddir(dir); /* the duplicate shares the original's position */
    struct dirent *de;
    while ((de = readdir(dir)))
        if (is_block_name(de->d_name))
            unlinkat(dirfd, de->d_name, 0);
    closedir(dir);
    return 0;
}

static void disk_free(struct disk *d)
{
    if (!d)
        return;
    for (size_t i = 0; d->table && i < d->nbuckets; i++) {
        while (d->table[i]) {
            struct dent *e = d->table[i];
            if (e->present)
                dent_drop_file(d, e);
            else
                dent_remove(d, e);
        }
    }
    free(d->table);
    if (d->dirfd >= 0)
        close(d->dirfd);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

int lf_bcache_enable_disk(struct lf_bcache *c, const char *dir, uint64_t limit_bytes)
{
    struct disk *d = NULL;
    struct stat st;
    int rc = 0;

    if (limit_bytes == 0)
        return 0;
    if (c->disk)
        return -EEXIST;
    if (!(d = calloc(1, sizeof(*d))))
        return -ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    d->lru.prev = d->lru.next = &d->lru;
    d->limit = limit_bytes;
    d->dirfd = -1;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        goto out;
    }
    d->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (d->dirfd < 0) {
        rc = errno == ELOOP ? -ENOTDIR : -errno;
        goto out;
    }
    if (fstat(d->dirfd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (st.st_uid != geteuid() || ((st.st_mode & 077) && fchmod(d->dirfd, 0700) != 0)) {
        rc = -EACCES; /* others could read the data, or plant files */
        goto out;
    }
    if (flock(d->dirfd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        goto out;
    }
    if ((rc = disk_sweep(d->dirfd)))
        goto out;
    uint64_t n = limit_bytes / ENTRY_MIN_BYTES;
    d->max_entries = n > MAX_ENTRIES ? MAX_ENTRIES : n < 16 ? 16 : (size_t)n;
    d->nbuckets = 64;
    while (d->nbuckets < d->max_entries / 2)
        d->nbuckets *= 2;
    if (!(d->table = calloc(d->nbuckets, sizeof(*d->table)))) {
        rc = -ENOMEM;
        goto out;
    }
    c->disk = d;
    d = NULL;
out:
    disk_free(d);
    return rc;
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
    disk_free(c->disk);
    munmap(c->arena, c->arena_size);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->changed);
    free(c->spare);
    free(c->table);
    free(c);
}

size_t lf_bcache_block_size(const struct lf_bcache *c) { return c->block_size; }

/* Takes an unpinned READY block out of memory: freed, or with `spill`
 * (and a disk tier) queued there, pinned and out of the LRU, for the
 * caller to write out and then hand to spill_finish. Its bytes count as
 * freed already: they will be soon, and every thread evicting for them
 * too would empty the cache. */
static void evict(struct lf_bcache *c, struct lf_block *b, struct lf_block **spill)
{
    lru_unlink(b);
    c->st.evictions++;
    if (spill && c->disk && b->len > 0) {
        b->spilling = true;
        b->pins++;
        c->spilling += c->block_size;
        b->snext = *spill;
        *spill = b;
    } else {
        c->st.prefetch_wasted += b->ahead;
        table_unlink(c, b);
        block_destroy(c, b);
    }
}

/* Evicts least recently used unpinned READY blocks until `need` more bytes
 * fit under `limit`. Blocks prefetched for a reader that has not reached
 * them yet are spared unless spare_ahead is false: evicting them to make
 * room for another reader's prefetch only makes both fetch twice. */
static void make_room(struct lf_bcache *c, size_t need, size_t limit, bool spare_ahead,
                      struct lf_block **spill)
{
    struct lf_block *b = c->lru.prev;
    while (c->used - c->spilling + need > limit && b != &c->lru) {
        struct lf_block *prev = b->prev;
        if (b->pins == 0 && b->state == READY && !(spare_ahead && b->ahead))
            evict(c, b, spill);
        b = prev;
    }
}

/* Writes make_room's victims to disk. Called without the lock. */
static void spill_write(struct lf_bcache *c, struct lf_block *list)
{
    for (struct lf_block *b = list; b; b = b->snext)
        disk_store(c->disk, b);
}

/* Frees the written victims. One a reader pinned while it was written
 * stays (it is in use) and goes back in the LRU. Under the lock. */
static void spill_finish(struct lf_bcache *c, struct lf_block *list)
{
    while (list) {
        struct lf_block *b = list;
        list = b->snext;
        b->snext = NULL;
        b->spilling = false;
        c->spilling -= c->block_size;
        if (--b->pins == 0) {
            c->st.prefetch_wasted += b->ahead; /* leaves memory unread */
            if (b->linked)
                table_unlink(c, b);
            block_destroy(c, b);
        } else {
            lru_push_front(c, b);
            c->st.evictions--; /* it did not leave after all */
        }
    }
    pthread_cond_broadcast(&c->changed); /* room made: see acquire */
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

static struct lf_block *table_find(struct lf_bcache *c, const struct lf_bkey *key, uint32_t h)
{
    for (struct lf_block *b = c->table[h & (c->nbuckets - 1)]; b; b = b->hnext)
        if (b->hash == h && b->index == key->index && b->objsize == key->objsize &&
            strcmp(b->etag, key->etag) == 0)
            return b;
    return NULL;
}

int lf_bcache_acquire(struct lf_bcache *c, const struct lf_bkey *key,
                      enum lf_bcache_mode mode, struct lf_block **out,
                      bool *created)
{
    uint32_t h = key_hash(key);
    size_t limit = c->budget + (mode == LF_BC_DEMAND ? DEMAND_SLACK : 0);
    struct lf_block *b;
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    /* Each pass may drop the lock (to write victims out, or to wait for
     * other threads' writes), so it starts over with the lookup. */
    for (unsigned spills = 0;;) {
        if ((b = table_find(c, key, h))) {
            b->pins++;
            if (mode != LF_BC_PREFETCH)
                b->ahead = b->consumed = false; /* wanted again */
            if (!b->spilling) { /* else spill_finish puts it back */
                lru_unlink(b);
                lru_push_front(c, b);
            }
            c->st.hits++;
            *out = b;
            *created = false;
            goto out;
        }
        if (mode == LF_BC_LOOKUP) {
            rc = -ENOENT;
            goto out;
        }
        bool tired = spills >= MAX_SPILL_ROUNDS;
        struct lf_block *spill = NULL, **sp = tired ? NULL : &spill;
        if (!tired || mode == LF_BC_DEMAND)
            make_room(c, c->block_size, limit, true, sp);
        if (c->used - c->spilling + c->block_size > limit && mode == LF_BC_DEMAND)
            make_room(c, c->block_size, limit, false, sp); /* a reader waits: take anything */
        if (spill) {
            pthread_mutex_unlock(&c->lock);
            spill_write(c, spill);
            pthread_mutex_lock(&c->lock);
            spill_finish(c, spill);
            spills++;
            continue;
        }
        if (c->used + c->block_size <= limit)
            break;
        if (c->spilling && c->used - c->spilling + c->block_size <= limit) {
            pthread_cond_wait(&c->changed, &c->lock); /* others' writes free room */
            continue;
        }
        if (mode == LF_BC_PREFETCH)
            c->st.prefetch_refused++;
        rc = mode == LF_BC_PREFETCH ? -ENOBUFS : -ENOMEM;
        goto out;
    }
    b = calloc(1, sizeof(*b));
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
    *out = b;
    if (c->disk) {
        /* The block is PENDING and ours, as for a fetch: others wait. */
        size_t len = 0;
        pthread_mutex_unlock(&c->lock);
        int lrc = disk_load(c->disk, key, b->data, c->block_size, &len);
        pthread_mutex_lock(&c->lock);
        if (lrc == 0) {
            b->len = len;
            b->state = READY;
            c->st.disk_hits++;
            pthread_cond_broadcast(&c->changed);
            *created = false;
            goto out;
        }
    }
    c->st.misses++;
    c->st.prefetched += mode == LF_BC_PREFETCH;
    *created = true;
out:
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void *lf_block_data(struct lf_block *b) { return b->data; }

size_t lf_block_len(struct lf_block *b) { return b->len; }

/* Under the lock. */
static void complete_locked(struct lf_bcache *c, struct lf_block *b, size_t len, int err)
{
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
}

void lf_bcache_complete(struct lf_bcache *c, struct lf_block *b, size_t len, int err)
{
    pthread_mutex_lock(&c->lock);
    complete_locked(c, b, len, err);
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

/* Under the lock; victims to write out go on *spill. */
static void release_locked(struct lf_bcache *c, struct lf_block *b, bool consumed,
                           struct lf_block **spill)
{
    /* The fetch that filled the block may unpin it after its reader did. */
    b->consumed = b->consumed || consumed;
    if (--b->pins > 0)
        return;
    consumed = b->consumed;
    b->consumed = false;
    if (!b->linked) {
        block_destroy(c, b);
    } else if (consumed && b->state == READY && b->objsize > c->budget / 2) {
        /* A sequential pass over an object this large would push the
         * block out before a second pass reached it (LRU flooding):
         * keeping it would only evict smaller, reusable blocks. Its
         * buffer goes back to the spare list, so a stream also keeps
         * reusing the same warm pages instead of faulting in new ones. */
        evict(c, b, spill);
    } else if (consumed && b->state == READY) {
        b->ahead = false;
        lru_unlink(b);
        lru_push_back(c, b);
    }
    /* Demand reads may have overshot: give the slack back now. */
    if (c->used - c->spilling > c->budget)
        make_room(c, 0, c->budget, true, spill);
}

/* Ends a release with the lock held: writes out its victims, if any. */
static void release_finish(struct lf_bcache *c, struct lf_block *spill)
{
    if (spill) {
        pthread_mutex_unlock(&c->lock);
        spill_write(c, spill);
        pthread_mutex_lock(&c->lock);
        spill_finish(c, spill);
    }
    pthread_mutex_unlock(&c->lock);
}

void lf_bcache_release(struct lf_bcache *c, struct lf_block *b, bool consumed)
{
    struct lf_block *spill = NULL;
    pthread_mutex_lock(&c->lock);
    release_locked(c, b, consumed, &spill);
    release_finish(c, spill);
}

void lf_bcache_complete_release(struct lf_bcache *c, struct lf_block *b, size_t len, int err)
{
    struct lf_block *spill = NULL;
    pthread_mutex_lock(&c->lock);
    complete_locked(c, b, len, err);
    release_locked(c, b, false, &spill);
    release_finish(c, spill);
}

uint64_t lf_bcache_disk_trim(struct lf_bcache *c, uint64_t bytes)
{
    struct disk *d = c->disk;
    uint64_t freed = 0;
    if (!d)
        return 0;
    pthread_mutex_lock(&d->lock);
    while (freed < bytes && d->lru.prev != &d->lru) {
        freed += d->lru.prev->size;
        dent_drop_file(d, d->lru.prev);
    }
    pthread_mutex_unlock(&d->lock);
    if (freed)
        lf_info("disk cache: gave back %llu KiB for written data (the disk is full)",
                (unsigned long long)(freed >> 10));
    return freed;
}

void lf_bcache_get_stats(struct lf_bcache *c, struct lf_bcache_stats *st)
{
    pthread_mutex_lock(&c->lock);
    *st = c->st;
    st->used_bytes = c->used;
    st->budget_bytes = c->budget;
    st->blocks = c->nblocks;
    pthread_mutex_unlock(&c->lock);
    if (c->disk) { /* the locks are never nested */
        pthread_mutex_lock(&c->disk->lock);
        st->disk_writes = c->disk->writes;
        st->disk_bytes = c->disk->bytes;
        pthread_mutex_unlock(&c->disk->lock);
    }
}
