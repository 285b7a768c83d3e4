/* staging: local files, part bookkeeping and uploads.
 *
 * Locking: f->lock guards a file's state and is never held across a
 * request or disk I/O of size; f->flush_lock serialises the uploads of one
 * file (flushes, renames, discards), so a flush sees one consistent plan.
 * Writes may go on during a flush: every write bumps the file's
 * generation once its bytes are in the staging file (never before: a
 * flush that saw the new generation must also see the bytes), and a flush
 * only marks the file clean when the generation it uploaded is still the
 * current one.
 *
 * A discarded file (its name was unlinked or replaced) stays usable for
 * the descriptors that hold it, as an unlinked local file does, but is
 * never uploaded again: writes reach only the staging file.
 *
 * Crashes: a manifest names the machine's boot it was written in. After
 * the daemon dies the kernel still holds every byte it wrote, so a mount
 * in the same boot uploads what it finds. After a power loss the staged
 * file may be cut short or hold zeros, so recovery then uploads a file
 * only if its manifest says its current size was synced to disk, which
 * happens when an upload fails and the data must wait (never on the
 * normal path, where the bytes go to the gateway instead).
 *
 * Parts: a sequential writer's parts are uploaded by jobs on the work
 * queue as soon as the writer has moved past them. A later write into an
 * uploaded part bumps that part's generation, so the final flush sends it
 * again; part numbers make a re-sent part replace the old one.
 *
 * Page cache: a streamed part that is stored is rarely read again, so its
 * pages are written back once it is up and advised out of the cache a few
 * parts later (let_go). A large write then holds about its parts in
 * flight in memory, not its whole size, and the kernel reuses the same
 * pages for the next parts (on a VM whose host reclaims freed memory, a
 * never-used page costs about four times a reused one to fill). Only
 * hints: a dirty page is never dropped, and the bytes stay in the file
 * for reads, re-sent parts and recovery. The price is the disk write of
 * each streamed byte, asynchronous, which the kernel's own writeback would
 * have done for a file that outgrows its dirty limits anyway.
 */
#include "lakefuse/staging.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "lakefuse/buf.h"
#include "lakefuse/hash.h"
#include "lakefuse/log.h"

#define MAX_PARTS 10000
#define MIN_PART (5u << 20)
#define MANIFEST_MAGIC "lakefuse-staged 1\n"
#define BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"
#define LOAD_CHUNK (8u << 20)
/* Stored parts whose pages stay cached behind the highest stored one:
 * their writeback, started when each was stored, is then done. */
#define LET_GO_LAG 2

struct part {
    unsigned gen;      /* bumped by writes into the part */
    unsigned sent_gen; /* the generation the stored part has */
    bool done;         /* uploaded (etag valid) */
    bool inflight;
    char etag[LF_ETAG_MAX];
};

#define OWN_MAX 1024

struct lf_staging {
    struct lf_store *store;
    struct lf_workq *wq;
    char *dir;
    uint64_t max_bytes;
    size_t part_size;
    unsigned max_files;
    uint64_t (*make_room)(void *arg, uint64_t bytes);
    void *make_room_arg;

    pthread_mutex_t lock; /* the fields below and the file list */
    uint64_t used;
    unsigned nfiles;
    struct lf_sfile *files;
    uint64_t puts, parts, completes, aborts, failures;
    void (*hook)(void *arg, const char *point, struct lf_sfile *f); /* tests only */
    void *hook_arg;
    /* The versions this mount stored or copied last (see own_version):
     * a create that finds one of them at its key met our own object. */
    struct own { uint64_t key; char etag[LF_ETAG_MAX]; } own[OWN_MAX];
    unsigned own_next;
};

struct lf_sfile {
    struct lf_staging *s;
    struct lf_sfile *prev, *next; /* s->files */
    unsigned refs;                /* under s->lock */

    pthread_mutex_t lock;
    pthread_cond_t cond;          /* inflight part jobs finished */
    pthread_mutex_t flush_lock;
    pthread_mutex_t manifest_lock; /* write_manifest, one at a time */
    /* Writes hold it shared from their bytes to their size update, a
     * truncate alone: a truncate never lands between the two (it would
     * leave the size of bytes it removed). Taken before f->lock. */
    pthread_rwlock_t io;

    char *bucket, *key;
    char *path, *manifest;        /* data file and its manifest */
    int fd;
    struct lf_obj_attr base;      /* the object we started from */
    bool has_base;
    bool loaded;                  /* the staging file holds the content */
    bool dirty;
    bool bytes_changed;           /* the bytes differ from the object at key (base) */
    bool discarded;               /* unlinked or replaced: never upload */
    /* Created by this mount under this key and never stored: an upload to
     * it may only create the object (If-None-Match: *), so a name another
     * client created meanwhile is never overwritten. Under another key (a
     * rename, which replaces its target by definition) uploads replace;
     * renamed back, the condition holds again. NULL once stored. */
    char *created_key;
    bool manifest_written;
    unsigned stores;              /* uploads that succeeded (a rename asks what landed) */
    unsigned gen;                 /* bumped by every change */
    unsigned writing;             /* writes whose bytes may be in before their gen bump */
    uint64_t size;
    uint64_t charged;             /* bytes counted against s->used */
    bool sequential;              /* every write so far at the end */
    struct lf_put_meta meta;

    char *upload_id;              /* an open multipart upload, or NULL */
    struct lf_put_meta up_meta;   /* the metadata it was created with */
    size_t ps;                    /* its part size */
    struct part *parts;
    size_t nparts_cap;
    unsigned inflight;
    int job_err;                  /* first error of a background part */
    size_t let_go_below;          /* streamed parts [0, this) left the page cache */
    size_t top_streamed;          /* 1 + the highest streamed part stored */
};

/* ---- space accounting ----------------------------------------------------- */

/* Grows the file's charge to `size`; -ENOSPC past the limit. f->lock held. */
static int charge(struct lf_sfile *f, uint64_t size)
{
    if (size <= f->charged)
        return 0;
    struct lf_staging *s = f->s;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (s->used + (size - f->charged) > s->max_bytes) {
        rc = -ENOSPC;
    } else {
        s->used += size - f->charged;
        f->charged = size;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc)
        lf_warn("staging full (%" PRIu64 " MiB): cannot grow %s/%s to %" PRIu64 " bytes",
                s->max_bytes >> 20, f->bucket, f->key, size);
    return rc;
}

static void uncharge(struct lf_sfile *f, uint64_t size)
{
    if (size >= f->charged)
        return;
    pthread_mutex_lock(&f->s->lock);
    f->s->used -= f->charged - size;
    pthread_mutex_unlock(&f->s->lock);
    f->charged = size;
}

static void count(struct lf_staging *s, uint64_t *counter)
{
    pthread_mutex_lock(&s->lock);
    (*counter)++;
    pthread_mutex_unlock(&s->lock);
}

static uint64_t own_hash(const char *bucket, const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = bucket; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

void lf_staging_note_own(struct lf_staging *s, const char *bucket, const char *key,
                         const char *etag)
{
    if (!etag || !etag[0])
        return;
    pthread_mutex_lock(&s->lock);
    struct own *o = &s->own[s->own_next++ % OWN_MAX];
    o->key = own_hash(bucket, key);
    lf_etag_copy(o->etag, etag);
    pthread_mutex_unlock(&s->lock);
}

/* Whether key holds a version this mount stored or copied lately: a
 * create of ours that met it (412) raced our own rename, unlink or
 * earlier upload of the name, not another client. */
static bool own_version(struct lf_staging *s, const char *bucket, const char *key)
{
    struct lf_obj_attr a;
    if (s->store->ops->head(s->store->ctx, bucket, key, &a) != 0 || !a.etag[0])
        return false;
    uint64_t h = own_hash(bucket, key);
    bool found = false;
    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < OWN_MAX && !found; i++)
        found = s->own[i].key == h && s->own[i].etag[0] && lf_etag_same(s->own[i].etag, a.etag);
    pthread_mutex_unlock(&s->lock);
    return found;
}

/* The disk is full: whether others sharing it gave some back, worth one
 * more try. */
static bool make_room(struct lf_staging *s, uint64_t bytes)
{
    return s->make_room && s->make_room(s->make_room_arg, bytes ? bytes : 1) > 0;
}

/* pwrite of all of buf, once more after make_room if the disk filled.
 * Returns the bytes written (short when it stayed full part way), or -1
 * with errno set when none were. */
static ssize_t pwrite_room(struct lf_staging *s, int fd, const void *buf, size_t len, off_t off)
{
    size_t done = 0;
    bool asked = false;
    while (done < len) {
        ssize_t w = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        int err = w < 0 ? errno : ENOSPC;
        bool again = err == ENOSPC && !asked && make_room(s, len - done);
        asked = true;
        if (!again) {
            if (done)
                return (ssize_t)done;
            errno = err;
            return -1;
        }
    }
    return (ssize_t)done;
}

/* ---- manifests ---------------------------------------------------------------- */

static char boot[64];
static pthread_once_t boot_once = PTHREAD_ONCE_INIT;

static void boot_read(void)
{
    FILE *fp = fopen(BOOT_ID_PATH, "re");
    if (fp && fgets(boot, sizeof(boot), fp))
        boot[strcspn(boot, "\n")] = '\0';
    else
        boot[0] = '\0';
    if (fp)
        fclose(fp);
}

/* This boot's id ("" if the kernel does not say). */
static const char *boot_id(void)
{
    pthread_once(&boot_once, boot_read);
    return boot;
}

static int sync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Records bucket and key beside the data, atomically (temp + rename), so a
 * later mount can upload what a killed daemon left; with synced, the data
 * file was fdatasync'ed at that size and the manifest is made durable. */
static int write_manifest_ex(struct lf_sfile *f, bool synced)
{
    struct lf_buf b = LF_BUF_INIT, tmp = LF_BUF_INIT;
    int rc = 0;
    if (f->s->hook)
        f->s->hook(f->s->hook_arg, "manifest", f);
    /* One at a time, each with what the file is now: a rename and a first
     * write may both write it, and the last one must name the new key. */
    pthread_mutex_lock(&f->manifest_lock);
    pthread_mutex_lock(&f->lock);
    /* Discarded (unlinked) since the caller decided to write it: a
     * manifest now would have recovery upload a removed file. */
    if (f->discarded) {
        pthread_mutex_unlock(&f->lock);
        goto out;
    }
    /* The base ETag lets recovery tell our stale bytes from a newer
     * object someone else wrote since. */
    const char *base = f->has_base ? f->base.etag : "";
    char synced_size[24] = "";
    if (synced)
        snprintf(synced_size, sizeof(synced_size), "%" PRIu64, f->size);
    const char *bid = boot_id();
    rc = lf_buf_printf(&b, MANIFEST_MAGIC "%zu %s\n%zu %s\n%zu %s\n%zu %s\n%zu %s\n",
                       strlen(f->bucket), f->bucket, strlen(f->key), f->key, strlen(base),
                       base, strlen(bid), bid, strlen(synced_size), synced_size);
    pthread_mutex_unlock(&f->lock);
    if (!rc)
        rc = lf_buf_printf(&tmp, "%s.tmp", f->manifest);
    if (rc)
        goto out;
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    ssize_t w = pwrite_room(f->s, fd, b.data, b.len, 0);
    if (w != (ssize_t)b.len)
        rc = w < 0 ? -errno : -ENOSPC;
    if (synced && !rc && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp.data, f->manifest) != 0)
        rc = -errno;
    if (synced && !rc)
        rc = sync_dir_of(f->manifest);
    if (rc) {
        unlink(tmp.data);
        lf_err("staging %s: cannot write its manifest %s: %s", f->path, f->manifest,
               strerror(-rc));
    }
out:
    pthread_mutex_unlock(&f->manifest_lock);
    lf_buf_free(&b);
    lf_buf_free(&tmp);
    return rc;
}

static int write_manifest(struct lf_sfile *f) { return write_manifest_ex(f, false); }

/* The data must wait on this disk (an upload failed): make it and its
 * manifest survive a power loss, so recovery may trust them. */
static void make_durable(struct lf_sfile *f)
{
    int rc = fdatasync(f->fd) == 0 ? 0 : -errno;
    if (!rc)
        rc = write_manifest_ex(f, true);
    if (rc)
        lf_warn("staging %s: cannot sync it to disk (%s): a power loss now would leave it "
                "for a person to check", f->path, strerror(-rc));
}

/* Marks the file changed. f->lock held. */
static void touch(struct lf_sfile *f)
{
    f->gen++;
    f->dirty = !f->discarded;
}

/* ---- the area ------------------------------------------------------------------- */

struct lf_staging *lf_staging_new(struct lf_store *store, struct lf_workq *wq,
                                  const struct lf_staging_opts *o)
{
    struct lf_staging *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->store = store;
    s->wq = wq;
    s->dir = strdup(o->dir);
    s->part_size = o->part_size >= MIN_PART ? o->part_size : MIN_PART;
    s->max_files = o->max_files ? o->max_files : 1024;
    s->max_bytes = o->max_bytes;
    s->make_room = o->make_room;
    s->make_room_arg = o->make_room_arg;
    pthread_mutex_init(&s->lock, NULL);
    if (!s->dir || (mkdir(s->dir, 0700) != 0 && errno != EEXIST)) {
        lf_err("staging directory %s: %s", o->dir, s->dir ? strerror(errno) : "no memory");
        lf_staging_free(s);
        return NULL;
    }
    if (!s->max_bytes) {
        struct statvfs v;
        s->max_bytes = statvfs(s->dir, &v) == 0 ? (uint64_t)v.f_bavail * v.f_frsize / 4
                                                : (uint64_t)1 << 30;
        if (s->max_bytes < s->part_size * 4)
            s->max_bytes = s->part_size * 4;
    }
    return s;
}

void lf_staging_free(struct lf_staging *s)
{
    if (!s)
        return;
    /* Files still referenced belong to their holders; the area goes away
     * only at unmount, after every holder let go. */
    pthread_mutex_destroy(&s->lock);
    free(s->dir);
    free(s);
}

void lf_staging_set_hook(struct lf_staging *s,
                         void (*fn)(void *arg, const char *point, struct lf_sfile *f), void *arg)
{
    s->hook = fn;
    s->hook_arg = arg;
}

static int collect(struct lf_staging *s, const char *bucket, const char *prefix,
                   struct lf_sfile ***out, size_t *n);

void lf_staging_get_stats(struct lf_staging *s, struct lf_staging_stats *st)
{
    struct lf_sfile **v;
    size_t n;
    memset(st, 0, sizeof(*st));
    /* A file's state is under its own lock, which is never taken inside
     * s->lock (charge nests them the other way). */
    if (collect(s, NULL, NULL, &v, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            pthread_mutex_lock(&v[i]->lock);
            if (v[i]->dirty) {
                st->dirty++;
                st->dirty_bytes += v[i]->size;
            }
            pthread_mutex_unlock(&v[i]->lock);
            lf_sfile_unref(v[i]);
        }
        free(v);
    }
    pthread_mutex_lock(&s->lock);
    st->used_bytes = s->used;
    st->max_bytes = s->max_bytes;
    st->files = s->nfiles;
    st->puts = s->puts;
    st->parts = s->parts;
    st->completes = s->completes;
    st->aborts = s->aborts;
    st->failures = s->failures;
    pthread_mutex_unlock(&s->lock);
}

/* ---- files ------------------------------------------------------------------------ */

/* Adds a file to the area's list (flush_all and renames walk it). */
static void link_file(struct lf_staging *s, struct lf_sfile *f)
{
    pthread_mutex_lock(&s->lock);
    f->next = s->files;
    if (s->files)
        s->files->prev = f;
    s->files = f;
    pthread_mutex_unlock(&s->lock);
}

static void init_locks(struct lf_sfile *f)
{
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    pthread_mutex_init(&f->flush_lock, NULL);
    pthread_mutex_init(&f->manifest_lock, NULL);
    pthread_rwlock_init(&f->io, NULL);
}

int lf_sfile_new(struct lf_staging *s, const char *bucket, const char *key,
                 const struct lf_obj_attr *base, struct lf_sfile **out)
{
    struct lf_buf path = LF_BUF_INIT;
    struct lf_sfile *f = NULL;
    int rc;

    *out = NULL;
    pthread_mutex_lock(&s->lock);
    rc = s->nfiles >= s->max_files ? -ENFILE : 0;
    if (!rc)
        s->nfiles++;
    pthread_mutex_unlock(&s->lock);
    if (rc) {
        lf_warn("staging: %u files are being written already; refusing %s/%s", s->max_files,
                bucket, key);
        return rc;
    }
    if ((rc = lf_buf_printf(&path, "%s/f-XXXXXX", s->dir)))
        goto fail;
    f = calloc(1, sizeof(*f));
    if (!f) {
        rc = -ENOMEM;
        goto fail;
    }
    f->fd = mkostemp(path.data, O_CLOEXEC);
    if (f->fd < 0) {
        rc = -errno;
        lf_err("staging %s/%s: cannot create a file in %s: %s", bucket, key, s->dir,
               strerror(errno));
        goto fail;
    }
    fchmod(f->fd, 0600);
    f->s = s;
    f->refs = 1;
    f->bucket = strdup(bucket);
    f->key = strdup(key);
    f->path = lf_buf_steal(&path);
    if (f->path && asprintf(&f->manifest, "%s.m", f->path) < 0)
        f->manifest = NULL;
    if (!base)
        f->created_key = strdup(key);
    if (!f->bucket || !f->key || !f->path || !f->manifest || (!base && !f->created_key)) {
        rc = -ENOMEM;
        goto fail;
    }
    init_locks(f);
    f->sequential = true;
    if (base) {
        f->base = *base;
        f->has_base = true;
        f->size = base->size;
    } else {
        f->loaded = true;
        f->dirty = true; /* a new file exists once flushed, even empty */
        f->bytes_changed = true;
        f->gen = 1;
    }
    link_file(s, f);
    *out = f;
    return 0;
fail:
    if (f) {
        if (f->fd > 0) {
            close(f->fd);
            unlink(f->path ? f->path : path.data);
        }
        free(f->bucket);
        free(f->key);
        free(f->created_key);
        free(f->path);
        free(f->manifest);
        free(f);
    }
    lf_buf_free(&path);
    pthread_mutex_lock(&s->lock);
    s->nfiles--;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void lf_sfile_ref(struct lf_sfile *f)
{
    pthread_mutex_lock(&f->s->lock);
    f->refs++;
    pthread_mutex_unlock(&f->s->lock);
}

static void destroy(struct lf_sfile *f)
{
    struct lf_staging *s = f->s;
    close(f->fd);
    if (f->dirty) {
        lf_err("staging: %s/%s was never uploaded; its data stays in %s", f->bucket, f->key,
               f->path);
    } else {
        unlink(f->path);
        unlink(f->manifest);
    }
    uncharge(f, 0);
    pthread_mutex_lock(&s->lock);
    s->nfiles--;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->flush_lock);
    pthread_mutex_destroy(&f->manifest_lock);
    pthread_rwlock_destroy(&f->io);
    free(f->upload_id);
    free(f->parts);
    free(f->bucket);
    free(f->key);
    free(f->created_key);
    free(f->path);
    free(f->manifest);
    free(f);
}

void lf_sfile_unref(struct lf_sfile *f)
{
    if (!f)
        return;
    struct lf_staging *s = f->s;
    pthread_mutex_lock(&s->lock);
    bool last = --f->refs == 0;
    if (last) {
        if (f->prev)
            f->prev->next = f->next;
        else
            s->files = f->next;
        if (f->next)
            f->next->prev = f->prev;
    }
    pthread_mutex_unlock(&s->lock);
    if (last)
        destroy(f);
}

bool lf_sfile_has_data(struct lf_sfile *f)
{
    pthread_mutex_lock(&f->lock);
    bool v = f->loaded;
    pthread_mutex_unlock(&f->lock);
    return v;
}

bool lf_sfile_dirty(struct lf_sfile *f)
{
    pthread_mutex_lock(&f->lock);
    bool v = f->dirty;
    pthread_mutex_unlock(&f->lock);
    return v;
}

uint64_t lf_sfile_size(struct lf_sfile *f)
{
    pthread_mutex_lock(&f->lock);
    uint64_t v = f->size;
    pthread_mutex_unlock(&f->lock);
    return v;
}

/* Brings the object's bytes into the staging file before the first
 * change. Runs under flush_lock, so it never races an upload. */
static int load(struct lf_sfile *f)
{
    pthread_mutex_lock(&f->lock);
    bool need = !f->loaded;
    uint64_t size = f->base.size;
    pthread_mutex_unlock(&f->lock);
    if (!need)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&f->lock);
    rc = charge(f, size);
    pthread_mutex_unlock(&f->lock);
    char *buf = rc ? NULL : malloc(size < LOAD_CHUNK ? (size ? size : 1) : LOAD_CHUNK);
    if (!rc && !buf)
        rc = -ENOMEM;
    for (uint64_t off = 0; !rc && off < size;) {
        size_t want = size - off < LOAD_CHUNK ? (size_t)(size - off) : LOAD_CHUNK, got = 0;
        struct iovec iov = {buf, want};
        rc = f->s->store->ops->get(f->s->store->ctx, f->bucket, f->key, off, &iov, 1,
                                   f->base.etag, &got, NULL);
        if (!rc && got != want)
            rc = -ESTALE;
        ssize_t w = rc ? 0 : pwrite_room(f->s, f->fd, buf, want, (off_t)off);
        if (!rc && w != (ssize_t)want)
            rc = w >= 0 || errno == ENOSPC ? -ENOSPC : -EIO;
        off += want;
    }
    free(buf);
    if (rc) {
        lf_err("staging %s/%s: cannot fetch its current content to modify it: %s", f->bucket,
               f->key, strerror(-rc));
        return rc == -ESTALE || rc == -ERANGE ? -EIO : rc;
    }
    pthread_mutex_lock(&f->lock);
    f->loaded = true;
    pthread_mutex_unlock(&f->lock);
    return 0;
}

/* Parts cover [k*ps, (k+1)*ps); marks those overlapping [a, b) changed.
 * f->lock held. */
static void parts_changed(struct lf_sfile *f, uint64_t a, uint64_t b)
{
    if (!f->upload_id || !f->ps || b <= a)
        return;
    for (uint64_t k = a / f->ps; k < f->nparts_cap && k * f->ps < b; k++)
        f->parts[k].gen++;
}

static int ensure_manifest(struct lf_sfile *f)
{
    pthread_mutex_lock(&f->lock);
    bool need = !f->manifest_written && !f->discarded;
    f->manifest_written |= need;
    pthread_mutex_unlock(&f->lock);
    int rc = need ? write_manifest(f) : 0;
    if (rc) { /* none on disk: the next write tries again */
        pthread_mutex_lock(&f->lock);
        f->manifest_written = false;
        pthread_mutex_unlock(&f->lock);
    }
    return rc;
}

static void start_streaming_parts(struct lf_sfile *f);

ssize_t lf_sfile_write(struct lf_sfile *f, const void *buf, size_t len, uint64_t off)
{
    int rc = 0;
    if (!lf_sfile_has_data(f)) {
        pthread_mutex_lock(&f->flush_lock);
        rc = load(f);
        pthread_mutex_unlock(&f->flush_lock);
    }
    if (rc)
        return rc;
    if ((rc = ensure_manifest(f)))
        return rc;
    if (len == 0)
        return 0;
    pthread_mutex_lock(&f->lock);
    rc = charge(f, off + len);
    if (!rc)
        f->writing++;
    pthread_mutex_unlock(&f->lock);
    if (rc)
        return rc;
    if (f->s->hook)
        f->s->hook(f->s->hook_arg, "write", f);
    /* The bytes first, the generation after: see the top of the file. */
    pthread_rwlock_rdlock(&f->io);
    ssize_t w = pwrite_room(f->s, f->fd, buf, len, (off_t)off);
    int err = errno;
    pthread_mutex_lock(&f->lock);
    f->writing--;
    if (w > 0) {
        uint64_t end = off + (uint64_t)w;
        if (off != f->size)
            f->sequential = false;
        parts_changed(f, off, end);
        touch(f);
        f->bytes_changed = true;
        if (end > f->size)
            f->size = end;
    }
    if (w != (ssize_t)len)
        uncharge(f, f->size); /* what the failed part reserved */
    pthread_mutex_unlock(&f->lock);
    pthread_rwlock_unlock(&f->io);
    if (w < 0) {
        pthread_mutex_lock(&f->lock); /* the key is a rename's to change */
        lf_err("staging %s/%s: write to %s failed: %s", f->bucket, f->key, f->path,
               strerror(err));
        pthread_mutex_unlock(&f->lock);
        return err == ENOSPC ? -ENOSPC : -EIO;
    }
    start_streaming_parts(f);
    return w;
}

ssize_t lf_sfile_read(struct lf_sfile *f, void *buf, size_t len, uint64_t off)
{
    pthread_mutex_lock(&f->lock);
    uint64_t size = f->size;
    pthread_mutex_unlock(&f->lock);
    if (off >= size)
        return 0;
    if (len > size - off)
        len = (size_t)(size - off);
    ssize_t r = pread(f->fd, buf, len, (off_t)off);
    if (r < 0)
        return -EIO;
    /* A sparse tail the file system has not allocated reads as zeros. */
    if ((size_t)r < len)
        memset((char *)buf + r, 0, len - (size_t)r);
    return (ssize_t)len;
}

int lf_sfile_truncate(struct lf_sfile *f, uint64_t size)
{
    int rc = 0;
    pthread_mutex_lock(&f->flush_lock);
    pthread_mutex_lock(&f->lock);
    /* O_TRUNC: nothing of the old content is needed. The file counts as
     * loaded only below, with its new size: a flush in between must not
     * see the old size over an empty file. */
    bool skip_load = !f->loaded && size == 0;
    pthread_mutex_unlock(&f->lock);
    if (!skip_load)
        rc = load(f);
    pthread_mutex_unlock(&f->flush_lock);
    if (!rc)
        rc = ensure_manifest(f);
    if (rc)
        return rc;
    if (f->s->hook)
        f->s->hook(f->s->hook_arg, "truncate", f);
    pthread_rwlock_wrlock(&f->io);
    pthread_mutex_lock(&f->lock);
    uint64_t old = f->size;
    if (size > old)
        rc = charge(f, size);
    if (!rc && ftruncate(f->fd, (off_t)size) != 0)
        rc = -errno;
    if (!rc) {
        parts_changed(f, size < old ? size : old, size < old ? old : size);
        f->size = size;
        f->loaded = true;
        if (size < old)
            f->sequential = false;
        touch(f);
        f->bytes_changed = true;
        uncharge(f, size);
    }
    pthread_mutex_unlock(&f->lock);
    pthread_rwlock_unlock(&f->io);
    return rc;
}

void lf_sfile_set_meta(struct lf_sfile *f, const struct lf_put_meta *m, bool mark_dirty)
{
    pthread_mutex_lock(&f->lock);
    unsigned has = f->meta.has | m->has;
    if (m->has & LF_ATTR_MODE)
        f->meta.mode = m->mode;
    if (m->has & LF_ATTR_UID)
        f->meta.uid = m->uid;
    if (m->has & LF_ATTR_GID)
        f->meta.gid = m->gid;
    if (m->has & LF_ATTR_MTIME)
        f->meta.mtime = m->mtime;
    f->meta.has = has;
    f->meta.implicit = (f->meta.implicit & ~m->has) | (m->implicit & m->has);
    if (mark_dirty)
        touch(f);
    pthread_mutex_unlock(&f->lock);
}

/* ---- uploads -------------------------------------------------------------------------- */

static int abort_upload(struct lf_sfile *f)
{
    pthread_mutex_lock(&f->lock);
    while (f->inflight)
        pthread_cond_wait(&f->cond, &f->lock);
    char *id = f->upload_id;
    char *key = strdup(f->key);
    f->upload_id = NULL;
    free(f->parts);
    f->parts = NULL;
    f->nparts_cap = 0;
    f->job_err = 0;
    pthread_mutex_unlock(&f->lock);
    int rc = 0;
    if (id && key) {
        rc = f->s->store->ops->mpu_abort(f->s->store->ctx, f->bucket, key, id);
        count(f->s, &f->s->aborts);
        if (rc && rc != -ENOENT)
            lf_warn("AbortMultipartUpload %s/%s failed (%s): the gateway keeps its parts "
                    "until it expires them", f->bucket, key, strerror(-rc));
    }
    free(id);
    free(key);
    return rc;
}

static bool meta_same(const struct lf_put_meta *a, const struct lf_put_meta *b)
{
    unsigned h = a->has;
    return h == b->has && (!(h & LF_ATTR_MODE) || a->mode == b->mode) &&
           (!(h & LF_ATTR_UID) || a->uid == b->uid) && (!(h & LF_ATTR_GID) || a->gid == b->gid) &&
           (!(h & LF_ATTR_MTIME) || (a->mtime.tv_sec == b->mtime.tv_sec &&
                                     a->mtime.tv_nsec == b->mtime.tv_nsec));
}

/* What a multipart upload must carry of meta: a write's own time is left
 * to the object's (it is completed after the last write), so a plain
 * streamed write needs no copy onto itself to bring it up to date. */
static struct lf_put_meta explicit_meta(const struct lf_put_meta *m)
{
    struct lf_put_meta e = *m;
    e.has &= ~m->implicit;
    e.implicit = 0;
    return e;
}

/* Opens the multipart upload with part size ps. Called with flush_lock. */
static int begin_upload(struct lf_sfile *f, size_t ps)
{
    pthread_mutex_lock(&f->lock);
    struct lf_put_meta meta = explicit_meta(&f->meta);
    char *key = strdup(f->key);
    pthread_mutex_unlock(&f->lock);
    char *id = NULL;
    int rc = key ? f->s->store->ops->mpu_create(f->s->store->ctx, f->bucket, key, &meta, &id)
                 : -ENOMEM;
    free(key);
    if (rc) {
        lf_err("CreateMultipartUpload %s/%s failed: %s", f->bucket, f->key, strerror(-rc));
        return rc;
    }
    struct part *parts = calloc(MAX_PARTS, sizeof(*parts));
    if (!parts) {
        f->s->store->ops->mpu_abort(f->s->store->ctx, f->bucket, f->key, id);
        free(id);
        return -ENOMEM;
    }
    pthread_mutex_lock(&f->lock);
    f->upload_id = id;
    f->up_meta = meta;
    f->ps = ps;
    f->parts = parts;
    f->nparts_cap = MAX_PARTS;
    f->job_err = 0;
    f->let_go_below = f->top_streamed = 0;
    pthread_mutex_unlock(&f->lock);
    return 0;
}

struct part_job {
    struct lf_sfile *f;
    size_t k;
    uint64_t off, len;
    unsigned gen;
    char *upload_id, *key;
    struct lf_latch *latch; /* a flush waiting for it, or NULL */
    int *err;               /* where the flush wants the result */
};

/* The stored streamed parts LET_GO_LAG behind the highest one, not yet let
 * go and unchanged since they were sent: [*from, *to) in bytes, empty when
 * none. Advancing the mark stops at a part that is not ready (out of
 * order, or written again), which a later part's job picks up. The range
 * starts a part early: the kernel drops only the folios wholly inside an
 * advice, so a large folio across the mark was left by the advice before
 * and is inside this one (folios are smaller than a part). f->lock held. */
static void let_go_range(struct lf_sfile *f, uint64_t *from, uint64_t *to)
{
    size_t k = f->let_go_below;
    while (k + LET_GO_LAG < f->top_streamed && f->parts[k].done &&
           f->parts[k].sent_gen == f->parts[k].gen)
        k++;
    *from = (uint64_t)(f->let_go_below ? f->let_go_below - 1 : 0) * f->ps;
    *to = k > f->let_go_below ? (uint64_t)k * f->ps : *from;
    f->let_go_below = k;
}

static void part_job_run(void *arg)
{
    struct part_job *j = arg;
    struct lf_sfile *f = j->f;
    char etag[LF_ETAG_MAX] = "";
    struct lf_body body = {.fd = f->fd, .off = (off_t)j->off, .len = j->len};
    int rc = f->s->store->ops->mpu_part(f->s->store->ctx, f->bucket, j->key, j->upload_id,
                                        (int)j->k + 1, &body, etag);
    count(f->s, &f->s->parts);
    /* A streamed part's bytes start for the disk now, so that by the time
     * let_go reaches them they are clean and can leave the cache. A flush's
     * parts do not: the file is usually removed right after. */
    bool streamed = !rc && !j->latch;
    if (streamed)
        sync_file_range(f->fd, (off_t)j->off, (off_t)j->len, SYNC_FILE_RANGE_WRITE);
    uint64_t drop_from = 0, drop_to = 0;
    pthread_mutex_lock(&f->lock);
    struct part *p = f->parts && f->upload_id && strcmp(f->upload_id, j->upload_id) == 0
                         ? &f->parts[j->k] : NULL;
    if (p) {
        p->inflight = false;
        if (!rc) {
            p->done = true;
            p->sent_gen = j->gen;
            memcpy(p->etag, etag, LF_ETAG_MAX);
            if (streamed && j->k + 1 > f->top_streamed)
                f->top_streamed = j->k + 1;
            let_go_range(f, &drop_from, &drop_to);
        } else if (!f->job_err) {
            f->job_err = rc;
        }
    }
    pthread_mutex_unlock(&f->lock);
    if (drop_to > drop_from) {
        if (f->s->hook)
            f->s->hook(f->s->hook_arg, "let-go", f);
        posix_fadvise(f->fd, (off_t)drop_from, (off_t)(drop_to - drop_from),
                      POSIX_FADV_DONTNEED);
    }
    pthread_mutex_lock(&f->lock);
    if (--f->inflight == 0)
        pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    if (rc)
        lf_warn("UploadPart %d of %s/%s failed: %s", (int)j->k + 1, f->bucket, j->key,
                strerror(-rc));
    if (j->err && rc)
        __atomic_compare_exchange_n(j->err, &(int){0}, rc, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST);
    if (j->latch)
        lf_latch_done(j->latch);
    lf_sfile_unref(f);
    free(j->upload_id);
    free(j->key);
    free(j);
}

/* Queues part k at its current generation. f->lock held. */
static int queue_part(struct lf_sfile *f, size_t k, uint64_t len, struct lf_latch *latch,
                      int *err)
{
    struct part_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->f = f;
    j->k = k;
    j->off = (uint64_t)k * f->ps;
    j->len = len;
    j->gen = f->parts[k].gen;
    j->upload_id = strdup(f->upload_id);
    j->key = strdup(f->key);
    j->latch = latch;
    j->err = err;
    if (!j->upload_id || !j->key) {
        free(j->upload_id);
        free(j->key);
        free(j);
        return -ENOMEM;
    }
    f->parts[k].inflight = true;
    f->inflight++;
    pthread_mutex_lock(&f->s->lock);
    f->refs++;
    pthread_mutex_unlock(&f->s->lock);
    if (lf_workq_submit(f->s->wq, part_job_run, j) != 0) {
        pthread_mutex_unlock(&f->lock);
        part_job_run(j);
        pthread_mutex_lock(&f->lock);
    }
    return 0;
}

/* A sequential writer's full parts go up while it writes on. The upload
 * is opened once the file holds two parts, so a file that ends up small
 * is one PUT, never a multipart upload. */
static void start_streaming_parts(struct lf_sfile *f)
{
    size_t ps = f->s->part_size;
    pthread_mutex_lock(&f->lock);
    bool want = f->sequential && f->size >= 2 * (uint64_t)ps && !f->job_err &&
                f->size <= (uint64_t)ps * MAX_PARTS;
    bool open = f->upload_id != NULL;
    pthread_mutex_unlock(&f->lock);
    if (!want)
        return;
    if (!open) {
        /* flush_lock keeps a flush from planning while the upload opens;
         * a writer that cannot take it now simply tries at its next write. */
        if (pthread_mutex_trylock(&f->flush_lock) != 0)
            return;
        pthread_mutex_lock(&f->lock);
        open = f->upload_id != NULL;
        pthread_mutex_unlock(&f->lock);
        int rc = open ? 0 : begin_upload(f, ps);
        pthread_mutex_unlock(&f->flush_lock);
        if (rc) {
            pthread_mutex_lock(&f->lock);
            f->sequential = false; /* the final flush will try again */
            pthread_mutex_unlock(&f->lock);
            return;
        }
    }
    pthread_mutex_lock(&f->lock);
    /* Parts strictly below the writer's position are complete. */
    for (size_t k = 0; f->upload_id && (k + 1) * (uint64_t)f->ps <= f->size &&
                       k < f->nparts_cap;
         k++) {
        struct part *p = &f->parts[k];
        if (!p->inflight && !(p->done && p->sent_gen == p->gen) &&
            (k + 1) * (uint64_t)f->ps < f->size)
            if (queue_part(f, k, f->ps, NULL, NULL) != 0)
                break;
    }
    pthread_mutex_unlock(&f->lock);
}

/* The part size for a file of `size` bytes: the configured one, larger
 * when needed to stay within 10,000 parts (rounded up to a MiB). */
static size_t part_size_for(const struct lf_staging *s, uint64_t size)
{
    uint64_t ps = s->part_size;
    if (size > ps * MAX_PARTS) {
        ps = (size + MAX_PARTS - 1) / MAX_PARTS;
        ps = (ps + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
    }
    return (size_t)ps;
}

static int upload_single(struct lf_sfile *f, uint64_t size, const struct lf_put_meta *meta,
                         const char *key, enum lf_put_cond cond, char etag[LF_ETAG_MAX])
{
    struct lf_body body = {.fd = f->fd, .off = 0, .len = size};
    if (size == 0)
        body.mem = "";
    int rc = f->s->store->ops->put(f->s->store->ctx, f->bucket, key, &body, meta, cond, etag);
    count(f->s, &f->s->puts);
    return rc;
}

static int upload_multipart(struct lf_sfile *f, uint64_t size, const char *key,
                            const struct lf_put_meta *meta, enum lf_put_cond cond,
                            char etag[LF_ETAG_MAX])
{
    size_t ps = part_size_for(f->s, size);
    pthread_mutex_lock(&f->lock);
    bool reuse = f->upload_id && f->ps == ps && !f->job_err && strcmp(key, f->key) == 0;
    bool stale = f->upload_id && !reuse;
    pthread_mutex_unlock(&f->lock);
    if (stale)
        abort_upload(f);
    int rc = reuse ? 0 : begin_upload(f, ps);
    if (rc)
        return rc;

    size_t n = (size_t)((size + ps - 1) / ps);
    struct lf_latch *latch = lf_latch_new((unsigned)n + 1);
    int err = 0;
    if (!latch)
        return -ENOMEM;
    pthread_mutex_lock(&f->lock);
    /* Let background parts land first, then send whatever is missing or
     * changed since it was sent. */
    while (f->inflight)
        pthread_cond_wait(&f->cond, &f->lock);
    for (size_t k = 0; k < n; k++) {
        struct part *p = &f->parts[k];
        uint64_t len = k + 1 < n ? ps : size - (uint64_t)k * ps;
        if (p->done && p->sent_gen == p->gen && len == ps) {
            lf_latch_done(latch);
            continue;
        }
        p->done = false;
        if (queue_part(f, k, len, latch, &err) != 0) {
            /* Parts queued before may be setting it from their threads. */
            __atomic_compare_exchange_n(&err, &(int){0}, -ENOMEM, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST);
            for (size_t r = k; r < n; r++)
                lf_latch_done(latch);
            break;
        }
    }
    pthread_mutex_unlock(&f->lock);
    lf_latch_done(latch);
    lf_latch_wait(latch);
    lf_latch_free(latch);
    rc = __atomic_load_n(&err, __ATOMIC_SEQ_CST);

    struct lf_part *list = rc ? NULL : calloc(n, sizeof(*list));
    char *id = NULL;
    if (!rc && !list)
        rc = -ENOMEM;
    pthread_mutex_lock(&f->lock);
    for (size_t k = 0; !rc && k < n; k++) {
        if (!f->parts[k].done) {
            rc = -EIO;
            break;
        }
        list[k].number = (int)k + 1;
        memcpy(list[k].etag, f->parts[k].etag, LF_ETAG_MAX);
    }
    if (!rc && !(id = strdup(f->upload_id)))
        rc = -ENOMEM;
    struct lf_put_meta created = f->up_meta;
    pthread_mutex_unlock(&f->lock);
    bool meta_set = false;
    if (!rc) {
        rc = f->s->store->ops->mpu_complete(f->s->store->ctx, f->bucket, key, id, list, n, cond,
                                            meta, etag);
        count(f->s, &f->s->completes);
        meta_set = rc == 1;
        rc = rc > 0 ? 0 : rc;
        if (rc && rc != -EEXIST) /* a lost create: lf_sfile_flush says it */
            lf_err("CompleteMultipartUpload %s/%s (%zu parts) failed: %s", f->bucket, key, n,
                   strerror(-rc));
    }
    struct lf_put_meta want = explicit_meta(meta);
    if (!rc && !meta_set && !meta_same(&created, &want)) {
        /* The upload streamed before the writer set the mode or times
         * (cp -p does so after its last write), and the completion could
         * not carry them: the object gets them by a copy onto itself (on
         * lakeFS a copy of every byte, so only when the caller asked). */
        rc = f->s->store->ops->copy(f->s->store->ctx, f->bucket, key, key, meta, etag);
        if (rc)
            lf_err("%s/%s: setting its metadata after the upload failed: %s", f->bucket, key,
                   strerror(-rc));
    }
    free(id);
    free(list);
    if (rc) {
        abort_upload(f); /* a failed upload is aborted; the next flush starts over */
    } else {
        pthread_mutex_lock(&f->lock);
        free(f->upload_id);
        f->upload_id = NULL;
        free(f->parts);
        f->parts = NULL;
        f->nparts_cap = 0;
        pthread_mutex_unlock(&f->lock);
    }
    return rc;
}

int lf_sfile_flush(struct lf_sfile *f, struct lf_obj_attr *out)
{
    int rc = 0;
    unsigned tries = 0;
    pthread_mutex_lock(&f->flush_lock);
again:
    rc = 0;
    pthread_mutex_lock(&f->lock);
    bool dirty = f->dirty; /* never set once discarded */
    unsigned gen = f->gen;
    uint64_t size = f->size;
    struct lf_put_meta meta = f->meta;
    char *key = dirty ? strdup(f->key) : NULL;
    pthread_mutex_unlock(&f->lock);
    if (!dirty)
        goto done;
    if (!key) {
        rc = -ENOMEM;
        goto done;
    }
    pthread_mutex_lock(&f->lock);
    bool meta_only = !f->bytes_changed && f->has_base;
    enum lf_put_cond cond = f->created_key && strcmp(f->created_key, key) == 0
                                ? LF_PUT_IF_ABSENT : LF_PUT_ANY;
    char etag[LF_ETAG_MAX] = "";
    pthread_mutex_unlock(&f->lock);
    /* Only the mode, owner or times changed since the object was stored
     * (rsync's chmod and utimens after close): a copy onto itself carries
     * them, no bytes sent. A file never loaded has nothing else. */
    if (meta_only) {
        abort_upload(f);
        rc = f->s->store->ops->copy(f->s->store->ctx, f->bucket, key, key, &meta, etag);
        if (rc != -ENOENT)
            goto stored;
    }
    if ((rc = load(f)))
        goto done;
    if (size < f->s->part_size) {
        pthread_mutex_lock(&f->lock);
        bool open = f->upload_id != NULL;
        pthread_mutex_unlock(&f->lock);
        if (open)
            abort_upload(f);
        rc = upload_single(f, size, &meta, key, cond, etag);
    } else {
        rc = upload_multipart(f, size, key, &meta, cond, etag);
    }
stored:
    pthread_mutex_lock(&f->lock);
    /* A write under way may have put bytes in that its gen bump will
     * announce only later: it counts as a change already. */
    bool changed = f->gen != gen || f->writing > 0;
    if (rc == -EBADMSG) {
        /* Stored, but not the bytes hashed: the key holds our object now,
         * which the next upload replaces (a create's condition would
         * find it there and call it another client's). */
        free(f->created_key);
        f->created_key = NULL;
        rc = -EIO;
    }
    pthread_mutex_unlock(&f->lock);
    if (rc == -EEXIST && cond == LF_PUT_IF_ABSENT && ++tries < 3 &&
        own_version(f->s, f->bucket, key)) {
        lf_info("%s/%s: the object there is one this mount stored; replacing it", f->bucket,
                key);
        pthread_mutex_lock(&f->lock);
        free(f->created_key);
        f->created_key = NULL;
        pthread_mutex_unlock(&f->lock);
        free(key);
        key = NULL;
        goto again;
    }
    if (rc == -EEXIST && cond == LF_PUT_IF_ABSENT) {
        count(f->s, &f->s->failures);
        lf_err("%s/%s: another client created it while this mount was writing it; theirs is "
               "kept (a new file is created only where nothing is). Ours (%" PRIu64 " bytes) "
               "stays staged in %s: rename it to store it under another name, or remove it",
               f->bucket, key, size, f->path);
        make_durable(f);
        goto done;
    }
    if (rc && changed) {
        /* Written while it went up (another descriptor): what was hashed
         * is not what was sent. Send the current content; if it keeps
         * changing, its writers are still at work, and the last of them
         * to close stores it and hears how that went. */
        free(key);
        key = NULL;
        if (++tries < 3) {
            lf_info("%s/%s changed while it was uploaded; sending it again", f->bucket, f->path);
            goto again;
        }
        lf_info("%s changes faster than it uploads; its last writer's close stores it", f->path);
        rc = 0;
        goto done;
    }
    if (rc) {
        count(f->s, &f->s->failures);
        lf_err("upload of %s/%s (%" PRIu64 " bytes) failed: %s; the data stays staged in %s "
               "and the next flush or fsync retries", f->bucket, key, size, strerror(-rc),
               f->path);
        make_durable(f);
        goto done;
    }
    pthread_mutex_lock(&f->lock);
    if (f->gen == gen) {
        f->dirty = false; /* else written during the upload: stays dirty */
        f->bytes_changed = false;
    }
    bool clean = !f->dirty;
    f->base.size = size;
    memcpy(f->base.etag, etag, LF_ETAG_MAX);
    f->has_base = true;
    f->stores++;
    free(f->created_key); /* stored: later uploads replace, wherever it goes */
    f->created_key = NULL;
    if (clean)
        f->manifest_written = false;
    pthread_mutex_unlock(&f->lock);
    lf_staging_note_own(f->s, f->bucket, key, etag);
    if (clean)
        unlink(f->manifest);
done:
    if (!rc && out) {
        pthread_mutex_lock(&f->lock);
        memset(out, 0, sizeof(*out));
        out->size = f->base.size;
        memcpy(out->etag, f->base.etag, LF_ETAG_MAX);
        out->last_modified = time(NULL);
        out->has = f->meta.has;
        out->mode = f->meta.mode;
        out->uid = f->meta.uid;
        out->gid = f->meta.gid;
        out->mtime = f->meta.mtime;
        pthread_mutex_unlock(&f->lock);
    }
    free(key);
    pthread_mutex_unlock(&f->flush_lock);
    return rc;
}

bool lf_sfile_discard(struct lf_sfile *f)
{
    /* Marked first, so a flush that starts from now on finds nothing to
     * send; one already sending finishes before flush_lock is ours, so
     * the caller's delete on the gateway comes after its upload. */
    pthread_mutex_lock(&f->lock);
    bool was_dirty = f->dirty;
    f->discarded = true;
    f->dirty = false;
    f->gen++;
    pthread_mutex_unlock(&f->lock);
    pthread_mutex_lock(&f->flush_lock);
    abort_upload(f);
    pthread_mutex_lock(&f->lock);
    f->manifest_written = false;
    pthread_mutex_unlock(&f->lock);
    /* After a manifest being written lands (it saw the file before the
     * discard); any later one sees the discard and is not written. */
    pthread_mutex_lock(&f->manifest_lock);
    unlink(f->manifest);
    pthread_mutex_unlock(&f->manifest_lock);
    pthread_mutex_unlock(&f->flush_lock);
    return was_dirty;
}

void lf_sfile_restore(struct lf_sfile *f, bool dirty)
{
    pthread_mutex_lock(&f->lock);
    f->discarded = false;
    if (dirty) {
        touch(f);
        f->bytes_changed = true;
    }
    pthread_mutex_unlock(&f->lock);
    if (dirty && ensure_manifest(f) != 0) {
        pthread_mutex_lock(&f->lock);
        lf_err("staging %s/%s: its manifest is lost; a crash now would lose it", f->bucket,
               f->key);
        pthread_mutex_unlock(&f->lock);
    }
}

int lf_sfile_load(struct lf_sfile *f)
{
    pthread_mutex_lock(&f->flush_lock);
    int rc = load(f);
    pthread_mutex_unlock(&f->flush_lock);
    return rc;
}

bool lf_sfile_stored(struct lf_sfile *f, struct lf_obj_attr *out)
{
    pthread_mutex_lock(&f->lock);
    bool v = f->has_base && !f->dirty && !f->discarded;
    if (v) {
        *out = f->base;
        out->has |= f->meta.has;
        out->mode = f->meta.mode;
        out->uid = f->meta.uid;
        out->gid = f->meta.gid;
        out->mtime = f->meta.mtime;
    }
    pthread_mutex_unlock(&f->lock);
    return v;
}

bool lf_sfile_meta_only(struct lf_sfile *f, unsigned *gen, struct lf_put_meta *meta)
{
    pthread_mutex_lock(&f->lock);
    bool v = f->dirty && !f->bytes_changed && f->has_base;
    *gen = f->gen;
    *meta = f->meta;
    pthread_mutex_unlock(&f->lock);
    return v;
}

bool lf_sfile_created_here(struct lf_sfile *f)
{
    return lf_sfile_created_at(f, NULL);
}

bool lf_sfile_created_at(struct lf_sfile *f, const char *key)
{
    pthread_mutex_lock(&f->lock);
    if (!key)
        key = f->key;
    /* Without its create condition (lf_sfile_replaces, an upload the
     * gateway stored with other bytes), the key may hold ours; under
     * another key (a rename, which replaced whatever was there) it may
     * hold the replaced file's object, ours to delete. */
    bool v = !f->has_base && f->created_key && strcmp(f->created_key, key) == 0;
    pthread_mutex_unlock(&f->lock);
    return v;
}

void lf_sfile_replaces(struct lf_sfile *f)
{
    pthread_mutex_lock(&f->lock);
    free(f->created_key);
    f->created_key = NULL;
    pthread_mutex_unlock(&f->lock);
}

bool lf_sfile_dirty_gen(struct lf_sfile *f, unsigned *gen)
{
    pthread_mutex_lock(&f->lock);
    bool v = f->dirty;
    *gen = f->gen;
    pthread_mutex_unlock(&f->lock);
    return v;
}

int lf_sfile_rename(struct lf_sfile *f, const char *new_key, const unsigned *stored_gen)
{
    char *k = strdup(new_key);
    if (!k)
        return -ENOMEM;
    pthread_mutex_lock(&f->flush_lock);
    /* Parts already sent belong to the old key's upload. */
    abort_upload(f);
    pthread_mutex_lock(&f->lock);
    free(f->key);
    f->key = k;
    /* The new key has none of it (even if the old one got it all in an
     * upload that ended while the rename waited for it), unless the
     * caller copied generation *stored_gen there (bytes and metadata) and
     * nothing changed since. */
    bool had_manifest = f->manifest_written;
    if (!stored_gen) {
        touch(f);
        f->bytes_changed = true;
    } else if (f->gen != *stored_gen) {
        touch(f);
    } else {
        f->dirty = false;
    }
    bool dirty = f->dirty;
    f->manifest_written = dirty;
    pthread_mutex_unlock(&f->lock);
    int rc = dirty ? write_manifest(f) : 0;
    if (!dirty && had_manifest)
        unlink(f->manifest);
    pthread_mutex_unlock(&f->flush_lock);
    return rc ? rc : dirty;
}

/* Every staged file of bucket under prefix, referenced, in an array. The
 * key is a rename's to change under f->lock, which is taken before s->lock
 * (charge), so it is compared after the list is taken, not while. */
static int collect(struct lf_staging *s, const char *bucket, const char *prefix,
                   struct lf_sfile ***out, size_t *n)
{
    size_t cap = 0, plen = prefix ? strlen(prefix) : 0, all = 0;
    struct lf_sfile **v = NULL;
    *n = 0;
    pthread_mutex_lock(&s->lock);
    for (struct lf_sfile *f = s->files; f; f = f->next)
        cap++;
    v = calloc(cap ? cap : 1, sizeof(*v));
    for (struct lf_sfile *f = s->files; v && f; f = f->next) {
        if (bucket && strcmp(f->bucket, bucket) != 0)
            continue;
        f->refs++;
        v[all++] = f;
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < all; i++) {
        pthread_mutex_lock(&v[i]->lock);
        bool under = !prefix || strncmp(v[i]->key, prefix, plen) == 0;
        pthread_mutex_unlock(&v[i]->lock);
        if (under)
            v[(*n)++] = v[i];
        else
            lf_sfile_unref(v[i]);
    }
    *out = v;
    return v ? 0 : -ENOMEM;
}

bool lf_staging_pending_under(struct lf_staging *s, const char *bucket, const char *prefix)
{
    struct lf_sfile **v;
    size_t n, plen = strlen(prefix);
    bool found = false;
    /* f->lock is taken after s->lock elsewhere (charge): never inside it. */
    if (collect(s, bucket, NULL, &v, &n) != 0)
        return true; /* cannot tell: not empty, the safe answer */
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&v[i]->lock);
        found |= v[i]->dirty && strncmp(v[i]->key, prefix, plen) == 0;
        pthread_mutex_unlock(&v[i]->lock);
        lf_sfile_unref(v[i]);
    }
    free(v);
    return found;
}

int lf_staging_pending_names(struct lf_staging *s, const char *bucket, const char *prefix,
                             char ***names, size_t *n)
{
    struct lf_sfile **v;
    size_t nv, plen = strlen(prefix);
    int rc = collect(s, bucket, prefix, &v, &nv);
    *names = NULL;
    *n = 0;
    if (rc)
        return rc;
    char **out = nv ? calloc(nv, sizeof(*out)) : NULL;
    if (nv && !out)
        rc = -ENOMEM;
    for (size_t i = 0; i < nv; i++) {
        pthread_mutex_lock(&v[i]->lock);
        /* The key may have moved since collect() (a rename): asked again. */
        bool under = strncmp(v[i]->key, prefix, plen) == 0;
        const char *rest = under ? v[i]->key + plen : "";
        bool take = out && v[i]->dirty && *rest && !strchr(rest, '/');
        char *name = take ? strdup(rest) : NULL;
        pthread_mutex_unlock(&v[i]->lock);
        if (take && !name)
            rc = -ENOMEM;
        if (name)
            out[(*n)++] = name;
        lf_sfile_unref(v[i]);
    }
    free(v);
    if (rc) {
        for (size_t i = 0; i < *n; i++)
            free(out[i]);
        free(out);
        *n = 0;
        return rc;
    }
    *names = out;
    return 0;
}

int lf_staging_flush_prefix(struct lf_staging *s, const char *bucket, const char *prefix)
{
    struct lf_sfile **v;
    size_t n;
    int rc = collect(s, bucket, prefix, &v, &n), first = 0;
    for (size_t i = 0; i < n; i++) {
        rc = lf_sfile_flush(v[i], NULL);
        if (rc && !first)
            first = rc;
        lf_sfile_unref(v[i]);
    }
    free(v);
    return first ? first : rc;
}

int lf_staging_rename_prefix(struct lf_staging *s, const char *bucket, const char *prefix,
                             const char *new_prefix, int (*copy)(void *arg), void *arg)
{
    struct lf_sfile **v;
    size_t n, plen = strlen(prefix);
    int rc = collect(s, bucket, prefix, &v, &n);
    unsigned *gens = rc ? NULL : calloc(n ? n : 1, sizeof(*gens));
    unsigned *stores = rc ? NULL : calloc(n ? n : 1, sizeof(*stores));
    bool *dirty = rc ? NULL : calloc(n ? n : 1, sizeof(*dirty));
    if (!rc && (!gens || !stores || !dirty))
        rc = -ENOMEM;
    /* Which files the gateway's copy will carry as they are: the clean
     * ones, unless they change before they are re-keyed. */
    for (size_t i = 0; !rc && i < n; i++) {
        dirty[i] = lf_sfile_dirty_gen(v[i], &gens[i]);
        pthread_mutex_lock(&v[i]->lock);
        stores[i] = v[i]->stores;
        pthread_mutex_unlock(&v[i]->lock);
    }
    if (!rc && copy)
        rc = copy(arg);
    for (size_t i = 0; !rc && i < n; i++) {
        char *nk = NULL, *old = NULL;
        pthread_mutex_lock(&v[i]->lock);
        if (asprintf(&nk, "%s%s", new_prefix, v[i]->key + plen) < 0)
            nk = NULL;
        old = strdup(v[i]->key);
        pthread_mutex_unlock(&v[i]->lock);
        int r = nk && old ? lf_sfile_rename(v[i], nk, dirty[i] ? NULL : &gens[i]) : -ENOMEM;
        free(nk);
        if (r < 0 && !rc)
            rc = r;
        /* An upload that ended while the copy ran (the re-key waited for
         * it) went to the old key, perhaps after the copy's listing: the
         * old directory must not keep it. Whatever it stored, the new key
         * gets the file's content below or from its writer's close. */
        pthread_mutex_lock(&v[i]->lock);
        bool landed = r >= 0 && v[i]->stores != stores[i];
        char etag[LF_ETAG_MAX];
        memcpy(etag, v[i]->base.etag, LF_ETAG_MAX);
        pthread_mutex_unlock(&v[i]->lock);
        if (landed) {
            int d = s->store->ops->remove(s->store->ctx, bucket, old, etag);
            /* Not the rename's failure: everything moved; this copy is
             * left behind, and said so. */
            if (d) {
                count(s, &s->failures);
                lf_err("rename of %s/%s: %s was uploaded under its old name while the "
                       "directory moved, and deleting it there failed (%s): it stays there",
                       bucket, prefix, old, strerror(-d));
            }
        }
        free(old);
        /* Pending under the new key: stored now. Its writers may have
         * closed while the copy ran (their upload went to the old key,
         * about to be deleted), and then nobody else would; an active
         * writer's close sends it again. A failure keeps it staged. */
        if (r == 1)
            lf_sfile_flush(v[i], NULL);
    }
    for (size_t i = 0; i < n; i++)
        lf_sfile_unref(v[i]);
    free(v);
    free(gens);
    free(stores);
    free(dirty);
    return rc;
}

unsigned lf_staging_flush_all(struct lf_staging *s)
{
    struct lf_sfile **v;
    size_t n;
    unsigned failed = 0;
    if (collect(s, NULL, NULL, &v, &n) != 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        if (lf_sfile_flush(v[i], NULL) != 0)
            failed++;
        lf_sfile_unref(v[i]);
    }
    free(v);
    return failed;
}

/* ---- what a killed daemon left ---------------------------------------------------------- */

/* "<len> <bytes>\n" */
static char *read_field(FILE *fp)
{
    size_t len;
    if (fscanf(fp, "%zu", &len) != 1 || len > 4096 || fgetc(fp) != ' ')
        return NULL;
    char *v = malloc(len + 1);
    if (v && (fread(v, 1, len, fp) != len || fgetc(fp) != '\n')) {
        free(v);
        return NULL;
    }
    if (v)
        v[len] = '\0';
    return v;
}

/* A manifest a killed daemon was writing (each is written to .tmp, then
 * renamed over the last one). Where that last one is there, or its data
 * file is gone, the half-written copy says nothing more: dropped, or it
 * would keep the area from ever being empty. Otherwise it is all that is
 * left to name the data, so it stays for a person to read. */
static void drop_partial_manifest(const char *dir, const char *name, size_t l)
{
    char *tmp = NULL, *man = NULL, *data = NULL;
    struct stat st;
    if (asprintf(&tmp, "%s/%s", dir, name) < 0)
        tmp = NULL;
    if (asprintf(&man, "%s/%.*s", dir, (int)(l - 4), name) < 0)
        man = NULL;
    if (asprintf(&data, "%s/%.*s", dir, (int)(l - 6), name) < 0)
        data = NULL;
    if (tmp && man && data) {
        if (stat(man, &st) == 0 || stat(data, &st) != 0)
            unlink(tmp);
        else
            lf_warn("staging: %s has only a half-written manifest (%s): left for a person to "
                    "look at", data, tmp);
    }
    free(tmp);
    free(man);
    free(data);
}

int lf_staging_find_orphans(const char *dir, struct lf_orphan **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 6 && strcmp(e->d_name + l - 6, ".m.tmp") == 0 &&
            strncmp(e->d_name, "f-", 2) == 0) {
            drop_partial_manifest(dir, e->d_name, l);
            continue;
        }
        if (l < 3 || strcmp(e->d_name + l - 2, ".m") != 0 || strncmp(e->d_name, "f-", 2) != 0)
            continue;
        struct lf_orphan o = {0};
        char magic[sizeof(MANIFEST_MAGIC)] = "";
        struct stat st;
        if (asprintf(&o.manifest_path, "%s/%s", dir, e->d_name) < 0 ||
            asprintf(&o.data_path, "%s/%.*s", dir, (int)(l - 2), e->d_name) < 0) {
            rc = -ENOMEM;
            break;
        }
        FILE *fp = fopen(o.manifest_path, "re");
        if (fp && fread(magic, 1, strlen(MANIFEST_MAGIC), fp) == strlen(MANIFEST_MAGIC) &&
            strcmp(magic, MANIFEST_MAGIC) == 0) {
            o.bucket = read_field(fp);
            o.key = o.bucket ? read_field(fp) : NULL;
            o.base_etag = o.key ? read_field(fp) : NULL;
            /* Newer manifests: the boot they were written in, and the
             * size synced to disk (empty if none). Older ones have
             * neither and are trusted, as they always were. */
            char *bid = o.base_etag ? read_field(fp) : NULL;
            char *synced = bid ? read_field(fp) : NULL;
            o.trusted = true;
            if (bid && bid[0] && strcmp(bid, boot_id()) != 0) {
                char *end = NULL;
                unsigned long long sz = synced && synced[0] ? strtoull(synced, &end, 10) : 0;
                struct stat ds;
                o.trusted = end && *end == '\0' && stat(o.data_path, &ds) == 0 &&
                            (uint64_t)ds.st_size == sz;
            }
            free(bid);
            free(synced);
        }
        if (fp)
            fclose(fp);
        if (!o.bucket || !o.key || !o.base_etag || stat(o.data_path, &st) != 0) {
            lf_warn("staging: ignoring unreadable manifest %s", o.manifest_path);
            free(o.base_etag);
            free(o.bucket);
            free(o.key);
            free(o.data_path);
            free(o.manifest_path);
            continue;
        }
        o.size = (uint64_t)st.st_size;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            struct lf_orphan *nv = realloc(*out, cap * sizeof(*nv));
            if (!nv) {
                rc = -ENOMEM;
                free(o.base_etag);
                free(o.bucket);
                free(o.key);
                free(o.data_path);
                free(o.manifest_path);
                break;
            }
            *out = nv;
        }
        (*out)[(*n)++] = o;
    }
    closedir(d);
    if (rc) {
        lf_orphans_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

void lf_orphans_free(struct lf_orphan *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].base_etag);
        free(v[i].bucket);
        free(v[i].key);
        free(v[i].data_path);
        free(v[i].manifest_path);
    }
    free(v);
}

/* MD5 (hex) of a whole file, to recognise content already uploaded. */
static int file_md5_hex(int fd, uint64_t size, char hex[LF_ETAG_MAX])
{
    struct lf_hash *h = lf_hash_new(LF_HASH_MD5);
    struct lf_hash_result res;
    char *buf = malloc(LOAD_CHUNK);
    int rc = h && buf ? 0 : -ENOMEM;
    for (uint64_t off = 0; !rc && off < size;) {
        ssize_t got = pread(fd, buf, LOAD_CHUNK, (off_t)off);
        if (got <= 0)
            rc = -EIO;
        else
            rc = lf_hash_update(h, buf, (size_t)got), off += (uint64_t)got;
    }
    if (!rc)
        rc = lf_hash_final(h, &res);
    for (int i = 0; !rc && i < LF_MD5_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", res.md5[i]);
    free(buf);
    lf_hash_free(h);
    return rc;
}

int lf_staging_recover(struct lf_staging *s, const struct lf_orphan *o, bool upload)
{
    struct lf_obj_attr cur;
    char md5[LF_ETAG_MAX] = "";
    if (!o->trusted) {
        lf_err("staged %s/%s (%s) was written before the machine restarted and never synced "
               "to disk: it may be cut short, so it is not uploaded; check it and upload it by "
               "hand if it is whole", o->bucket, o->key, o->data_path);
        return -ESTALE;
    }
    int fd = open(o->data_path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = o->size < s->part_size ? file_md5_hex(fd, o->size, md5) : 0;
    int hrc = rc ? rc : s->store->ops->head(s->store->ctx, o->bucket, o->key, &cur);
    if (hrc && hrc != -ENOENT) {
        close(fd);
        lf_err("staged %s/%s (%s): cannot check the branch (%s); left for the next mount",
               o->bucket, o->key, o->data_path, strerror(-hrc));
        return hrc;
    }
    bool there = hrc == 0 && md5[0] && lf_etag_same(cur.etag, md5);
    bool unchanged = (hrc == -ENOENT && !o->base_etag[0]) ||
                     (hrc == 0 && o->base_etag[0] && lf_etag_same(cur.etag, o->base_etag));
    if (there) {
        close(fd);
        lf_info("staged %s/%s was uploaded before the daemon stopped; removing %s", o->bucket,
                o->key, o->data_path);
        unlink(o->manifest_path);
        unlink(o->data_path);
        return 0;
    }
    if (!unchanged || !upload) {
        close(fd);
        if (!unchanged)
            lf_warn("staged %s/%s: the object changed on the branch since it was staged; not "
                    "overwriting it. The staged bytes stay in %s", o->bucket, o->key,
                    o->data_path);
        else
            lf_warn("staged %s/%s (%" PRIu64 " bytes) left in %s, as asked", o->bucket, o->key,
                    o->size, o->data_path);
        return unchanged ? 0 : -EEXIST;
    }

    /* Adopt the file as a dirty staged file and flush it like any other. */
    struct lf_sfile *f = calloc(1, sizeof(*f));
    if (!f) {
        close(fd);
        return -ENOMEM;
    }
    pthread_mutex_lock(&s->lock);
    s->nfiles++;
    pthread_mutex_unlock(&s->lock);
    f->s = s;
    f->refs = 1;
    f->fd = fd;
    f->bucket = strdup(o->bucket);
    f->key = strdup(o->key);
    f->path = strdup(o->data_path);
    f->manifest = strdup(o->manifest_path);
    init_locks(f);
    f->loaded = f->dirty = f->manifest_written = true;
    /* Checked absent above; a client creating it since wins. */
    f->created_key = o->base_etag[0] ? NULL : strdup(o->key);
    f->gen = 1;
    f->size = o->size;
    rc = f->bucket && f->key && f->path && f->manifest && (f->created_key || o->base_etag[0])
             ? charge(f, o->size) : -ENOMEM;
    if (!rc)
        rc = lf_sfile_flush(f, NULL);
    if (!rc)
        lf_info("uploaded %s/%s (%" PRIu64 " bytes) staged by an earlier run", o->bucket, o->key,
                o->size);
    link_file(s, f);
    lf_sfile_unref(f); /* clean: removed; dirty: kept on disk, logged */
    return rc;
}
