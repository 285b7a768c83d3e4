/* fs_io: file I/O. A file's write state (the staged file hung on its
 * node while it is written or not yet uploaded, fs_int.h), open, read
 * (from staging, the block cache, or spliced from a GET's socket: the
 * gateway's, or the storage's with presigned URLs), write, and the flush,
 * fsync and release that store what was written.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/fuse.h>

#include "lakefuse/buf.h"
#include "lakefuse/log.h"
#include "lakefuse/meta.h"
#include "lakefuse/readahead.h"
#include "lakefuse/staging.h"
#include "lakefuse/uri.h"

#include "fs_int.h"

static struct lf_reader *fh_reader(struct fileh *fh)
{
    return __atomic_load_n(&fh->reader, __ATOMIC_ACQUIRE);
}

static struct lf_sfile *fh_sf(struct fileh *fh)
{
    return __atomic_load_n(&fh->sf, __ATOMIC_ACQUIRE);
}

static int req_cancelled(void *arg) { return fuse_req_interrupted((fuse_req_t)arg); }

/* ---- write state -------------------------------------------------------- */

struct wstate *fs_wstate_of(const struct lf_node *n) { return n->priv; }

void fs_release_node(struct lf_node *n)
{
    struct wstate *w = n->priv;
    n->priv = NULL;
    if (w) {
        lf_sfile_unref(w->sf);
        free(w);
    }
}

/* Whether reads of the node come from staging, and its staged size. Lock held. */
bool fs_staged_size(const struct lf_node *n, uint64_t *size)
{
    struct wstate *w = fs_wstate_of(n);
    if (!w || !lf_sfile_has_data(w->sf))
        return false;
    *size = lf_sfile_size(w->sf);
    return true;
}

/* Makes the node's write state (from the object as it is now) if it has
 * none, and counts the caller as a writer: *sfp gets a reference to the
 * staged file, and the state stays until wstate_put. A node no longer
 * reachable by its name (unlinked or replaced before its state could be
 * made) gets none: -ENOENT, as an open that came after the unlink. */
int fs_wstate_get(struct lf_fs *fs, struct lf_node *n, struct lf_sfile **sfp)
{
    struct lf_buf key = LF_BUF_INIT, now_key = LF_BUF_INIT;
    struct lf_sfile *sf = NULL;
    char *repo = NULL;
    int rc = 0;
    *sfp = NULL;
    for (;;) {
        lf_meta_lock(fs->meta);
        fs_wait_no_change(fs, n);
        struct wstate *w = fs_wstate_of(n);
        if (!w && sf && lf_meta_attached(n)) {
            /* Our file is right only if no rename moved the node since. */
            rc = fs_node_key(fs, n, false, &now_key);
            if (!rc && strcmp(now_key.data, key.data) != 0) {
                lf_meta_unlock(fs->meta);
                lf_sfile_unref(sf);
                sf = NULL;
                continue;
            }
        }
        if (!w && sf && !lf_meta_attached(n))
            rc = -ENOENT;
        if (!w && !rc && sf && !(w = calloc(1, sizeof(*w))))
            rc = -ENOMEM;
        if (!rc && w && !fs_wstate_of(n)) {
            w->sf = sf;
            sf = NULL;
            n->priv = w;
        }
        if (!rc && w) {
            w->writers++;
            lf_sfile_ref(w->sf);
            *sfp = w->sf;
        }
        lf_meta_unlock(fs->meta);
        if (rc || w)
            break;
        /* None yet: make one, outside the lock (a HEAD, a file). */
        rc = fs_refresh_file(fs, n, true);
        lf_meta_lock(fs->meta);
        struct lf_obj_attr base = n->attr;
        struct lf_put_meta meta = fs_meta_of(fs, n);
        if (!rc)
            rc = fs_node_key(fs, n, false, &key);
        free(repo);
        repo = NULL;
        if (!rc && !(repo = strdup(n->ref->repo)))
            rc = -ENOMEM;
        lf_meta_unlock(fs->meta);
        if (!rc)
            rc = lf_sfile_new(fs->staging, repo, key.data, &base, &sf);
        if (rc)
            break;
        lf_sfile_set_meta(sf, &meta, false);
    }
    lf_sfile_unref(sf); /* another thread was quicker */
    free(repo);
    lf_buf_free(&key);
    lf_buf_free(&now_key);
    return rc;
}

/* Ends what fs_wstate_get began. Lock held. */
static void wstate_put(struct lf_fs *fs, struct lf_node *n, struct lf_sfile *sf)
{
    struct wstate *w = fs_wstate_of(n);
    if (w && w->sf == sf && w->writers > 0)
        w->writers--;
    lf_sfile_unref(sf);
    fs_wstate_settle(fs, n);
}

/* Ends a writer's count (wstate_put) from outside the lock; the last
 * writer of a file with changes pending stores them first. The kernel
 * sends a handle's release some time after close() has flushed: a chmod,
 * utimens or rename in between (rsync does all three) rides along with
 * the staged file while the handle still counts, and no flush follows;
 * and a rename or truncate may hold the last count when that release
 * comes. Whoever lets go last stores it. */
void fs_writer_done(struct lf_fs *fs, struct lf_node *n, struct lf_sfile *sf)
{
    unsigned gen = 0, flushed_gen = 0;
    bool flushed = false;
    for (;;) {
        lf_meta_lock(fs->meta);
        struct wstate *w = fs_wstate_of(n);
        bool last = w && w->sf == sf && w->writers == 1 && lf_sfile_dirty_gen(sf, &gen) &&
                    !fs->tearing_down;
        lf_meta_unlock(fs->meta);
        /* Once more only if the file changed during our flush: a rename
         * that came meanwhile saw us still counted and left the new name
         * to us (the flush it waited for went to the old one); a flush
         * that failed on an unchanged file stays staged. */
        if (!last || (flushed && gen == flushed_gen))
            break;
        flushed = true;
        flushed_gen = gen;
        fs_flush_node(fs, n, sf); /* a failure stays staged; fs_flush_node says so */
    }
    lf_meta_lock(fs->meta);
    wstate_put(fs, n, sf);
    lf_meta_unlock(fs->meta);
}

/* Keeps the node alive while its staged content is not uploaded. Lock held. */
void fs_wstate_settle(struct lf_fs *fs, struct lf_node *n)
{
    struct wstate *w = fs_wstate_of(n);
    if (!w)
        return;
    bool dirty = lf_sfile_dirty(w->sf);
    if (dirty && !w->pinned) {
        w->pinned = true;
        lf_meta_pin(n);
    }
    if (!dirty && w->writers == 0 && !n->changing) {
        /* Uploaded and closed: the object is the truth again, and the
         * staging space goes back. Readers hold their own reference.
         * (Not while an unlink or rename may still restore it.) What the
         * file's last upload stored is the node's from now on, whoever
         * uploaded it (a close, a directory rename, a retry). */
        struct lf_obj_attr a;
        if (lf_sfile_stored(w->sf, &a) && !lf_etag_same(a.etag, n->attr.etag)) {
            a.last_modified = n->attr.last_modified;
            n->attr = a;
            n->meta_known = true;
            n->attr_expiry = fs_now() + fs_ttl_of(fs, n);
            n->attr_own = fs_now();
        }
        bool pinned = w->pinned;
        fs_release_node(n);
        if (pinned)
            lf_meta_unpin(fs->meta, n);
    } else if (!dirty && w->pinned) {
        w->pinned = false;
        lf_meta_unpin(fs->meta, n);
    }
}

/* Uploads a node's staged content; on success its attributes and its
 * parent's listing show what is stored. */
int fs_flush_node(struct lf_fs *fs, struct lf_node *n, struct lf_sfile *sf)
{
    struct lf_obj_attr a;
    int rc = lf_sfile_flush(sf, &a);
    lf_meta_lock(fs->meta);
    if (rc)
        n->attr_expiry = 0; /* what the gateway holds now is unknown: ask again */
    if (!rc && fs_wstate_of(n) && fs_wstate_of(n)->sf == sf) {
        n->attr = a;
        n->meta_known = true;
        n->attr_own = fs_now();
        n->attr_expiry = fs_now() + fs_ttl_of(fs, n);
        /* The page cache holds what was written: keep it at the next open. */
        snprintf(n->cached_etag, sizeof(n->cached_etag), "%s", a.etag);
        if (n->parent && lf_meta_child(fs->meta, n->parent, n->name) == n)
            fs_listing_note(n->parent, n->name, false, &a, false);
    }
    fs_wstate_settle(fs, n);
    lf_meta_unlock(fs->meta);
    return rc;
}

/* ---- files ------------------------------------------------------------------ */

struct fileh *fs_fileh_alloc(void)
{
    struct fileh *fh = calloc(1, sizeof(*fh));
    if (fh) {
        pthread_mutex_init(&fh->lock, NULL);
        fh->opened = fs_now();
    }
    return fh;
}

void fs_fileh_track(struct lf_fs *fs, struct fileh *fh)
{
    pthread_mutex_lock(&fs->handles_lock);
    fh->tracked = true;
    fh->next = fs->files;
    if (fs->files)
        fs->files->prev = fh;
    fs->files = fh;
    pthread_mutex_unlock(&fs->handles_lock);
}

/* The file's name for a log line: a rename may replace it meanwhile. */
static const char *name_of(struct lf_fs *fs, const struct lf_node *n, char *buf, size_t len)
{
    lf_meta_lock(fs->meta);
    snprintf(buf, len, "%s", n->name);
    lf_meta_unlock(fs->meta);
    return buf;
}

void fs_fileh_free(struct lf_fs *fs, struct fileh *fh)
{
    char name[LF_NAME_MAX + 1];
    pthread_mutex_lock(&fs->handles_lock);
    if (fh->tracked) {
        if (fh->prev)
            fh->prev->next = fh->next;
        else
            fs->files = fh->next;
        if (fh->next)
            fh->next->prev = fh->prev;
    }
    pthread_mutex_unlock(&fs->handles_lock);
    fs_count_close(fs, fh);
    if (fh->reads) {
        struct lf_ra_stats st = {0};
        if (fh->reader)
            lf_reader_get_stats(fh->reader, &st);
        lf_dbg("closed %s after %" PRIu64 " reads of %" PRIu64 " bytes (%" PRIu64
               " KiB each), %" PRIu64 " bytes spliced, %" PRIu64 " GETs",
               name_of(fs, fh->node, name, sizeof(name)), fh->reads, fh->read_bytes,
               fh->read_bytes / fh->reads / 1024,
               st.spliced, st.gets);
    }
    lf_reader_free(fh->reader);
    for (struct retired *x = fh->retired, *next; x; x = next) {
        next = x->next;
        lf_reader_free(x->r);
        free(x);
    }
    pthread_mutex_destroy(&fh->lock);
    free(fh->rkey);
    if (fh->write && fh->sf) {
        fs_writer_done(fs, fh->node, fh->sf); /* also drops the handle's reference */
    } else {
        lf_meta_lock(fs->meta);
        lf_sfile_unref(fh->sf);
        lf_meta_unlock(fs->meta);
    }
    lf_meta_lock(fs->meta);
    lf_meta_unpin(fs->meta, fh->node);
    lf_meta_unlock(fs->meta);
    free(fh);
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    struct lf_buf key = LF_BUF_INIT;
    struct fileh *fh = NULL;
    char *repo = NULL;
    int rc = 0;
    bool write = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);

    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_get(fs->meta, ino);
    if (n)
        lf_meta_pin(n);
    if (n && write)
        rc = fs_check_writable(fs, n);
    lf_meta_unlock(fs->meta);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!rc && n->kind != LF_FILE)
        rc = -EISDIR;
    if (rc)
        goto out;
    if (!(fh = fs_fileh_alloc())) {
        rc = -ENOMEM;
        goto out;
    }
    fh->node = n;
    fh->write = write;
    if (write) {
        /* The handle counts as a writer until fs_fileh_free. */
        if ((rc = fs_wstate_get(fs, n, &fh->sf)))
            goto out;
        if ((fi->flags & O_TRUNC) && (rc = lf_sfile_truncate(fh->sf, 0)))
            goto out;
    } else {
        lf_meta_lock(fs->meta);
        struct wstate *w = fs_wstate_of(n);
        if (w) { /* read what is being written, not the old object */
            lf_sfile_ref(w->sf);
            fh->sf = w->sf;
        }
        lf_meta_unlock(fs->meta);
    }
    if (!fh->sf || !lf_sfile_has_data(fh->sf)) {
        if ((rc = fs_refresh_file(fs, n, false)))
            goto out;
        lf_meta_lock(fs->meta);
        struct lf_obj_attr a = n->attr;
        rc = fs_node_key(fs, n, false, &key);
        if (!rc && !(repo = strdup(n->ref->repo)))
            rc = -ENOMEM;
        /* Keep the kernel's cached pages when they hold these very bytes. */
        fi->keep_cache = n->ref->immutable || (a.etag[0] && lf_etag_same(n->cached_etag, a.etag));
        /* Direct I/O: the kernel hands each read to us and copies our
         * answer straight into the reader's buffer, with no page cache in
         * between; our own readahead and block cache do that job. */
        fi->direct_io = !write && a.size >= fs->direct_min &&
                        (fs->cfg->direct_io || __atomic_load_n(&fs->dio_mmap, __ATOMIC_ACQUIRE));
        snprintf(n->cached_etag, sizeof(n->cached_etag), "%s", a.etag);
        lf_meta_unlock(fs->meta);
        if (!rc)
            fh->reader = lf_reader_new(fs->cache, fs->store, fs->data_wq, repo, key.data, a.etag,
                                       a.size, &fs->ra);
        if (!rc && (!fh->reader || !(fh->rkey = strdup(key.data))))
            rc = -ENOMEM;
        snprintf(fh->retag, sizeof(fh->retag), "%s", a.etag);
        if (rc)
            goto out;
        if (!write)
            fs_ahead_opened(fs, n);
    }
    fi->fh = (uintptr_t)fh;
    fs_count_open(fs, fh);
    fs_fileh_track(fs, fh);
    if (fuse_reply_open(req, fi) != 0)
        fs_fileh_free(fs, fh); /* the opener is gone: no release will come */
    fh = NULL;
    n = NULL;
out:
    free(repo);
    lf_buf_free(&key);
    if (fh) {
        fs_fileh_free(fs, fh); /* unpins n */
        n = NULL;
    }
    if (n) {
        lf_meta_lock(fs->meta);
        lf_meta_unpin(fs->meta, n);
        lf_meta_unlock(fs->meta);
    }
    if (rc)
        fuse_reply_err(req, fs_reply_errno(rc));
}

static void count_read(struct fileh *fh, size_t n)
{
    __atomic_add_fetch(&fh->reads, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&fh->read_bytes, (uint64_t)n, __ATOMIC_RELAXED);
}

/* ---- spliced reads -------------------------------------------------------
 *
 * A streamed read goes from the gateway's socket into the worker thread's
 * pipe behind a reply header, and from the pipe to /dev/fuse: one copy,
 * in the kernel, into the reader's pages. The reply is written here and
 * not by fuse_reply_data, because libfuse 3.14 passes spliced data
 * through a pipe of its own sized for page-sized pieces: the fragments a
 * network hands over are often smaller, and then it falls back to copying
 * through memory. Our pipe holds a whole read (1 MiB) even in fragments
 * of a quarter page, which needs root (or fs.pipe-max-size >= 4 MiB).
 *
 * To answer a request ourselves we need its unique id, which libfuse does
 * not show: its custom-io read hook sees every request, and the thread
 * that reads a request is the one that handles it, so the hook notes each
 * READ for its thread. fs_op_read checks the note against its arguments and
 * afterwards frees libfuse's request with fuse_reply_none.
 *
 * The same hooks give direct-I/O files shared mmap: the kernel (6.6 on)
 * keeps such mappings coherent once the INIT answer has
 * FUSE_DIRECT_IO_ALLOW_MMAP, a flag this libfuse does not know; the answer
 * gets it on its way out. Without it only --direct-io opens files that way
 * (big objects go through the page cache, where mmap always works). */
#define DIRECT_IO_ALLOW_MMAP (1ull << 36) /* INIT flag; newer than our headers */

struct pending_read {
    bool valid;
    int fd;
    uint64_t unique, fh, off;
    uint32_t size;
};
static __thread struct pending_read pending;

/* The INIT this thread is answering, if the kernel offered mmap of
 * direct-io files: libfuse answers INIT in the thread that read it. */
static __thread uint64_t init_unique;

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
    ssize_t n = read(fd, buf, len);
    const struct fuse_in_header *h = buf;
    pending.valid = n >= (ssize_t)(sizeof(*h) + sizeof(struct fuse_read_in)) &&
                    h->opcode == FUSE_READ;
    if (pending.valid) {
        const struct fuse_read_in *in = (const void *)(h + 1);
        pending.fd = fd;
        pending.unique = h->unique;
        pending.fh = in->fh;
        pending.off = in->offset;
        pending.size = in->size;
    }
    if (n >= (ssize_t)(sizeof(*h) + sizeof(struct fuse_init_in)) && h->opcode == FUSE_INIT) {
        const struct fuse_init_in *in = (const void *)(h + 1);
        bool offered = (in->flags & FUSE_INIT_EXT) &&
                       (((uint64_t)in->flags2 << 32) & DIRECT_IO_ALLOW_MMAP);
        struct lf_fs *fs = userdata;
        init_unique = offered ? h->unique : 0;
        if (!offered && fs->cfg->direct_io)
            lf_info("--direct-io: a shared mmap of a file open for reading fails with ENODEV "
                    "(this kernel cannot keep it coherent)");
        else if (!offered && fs->direct_min != UINT64_MAX)
            lf_info("big objects are read through the page cache: this kernel cannot keep "
                    "shared mmap of direct-I/O files coherent");
    }
    return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    struct fuse_out_header *h = iov[0].iov_base;
    if (init_unique && count == 2 && iov[0].iov_len == sizeof(*h) && h->unique == init_unique &&
        h->error == 0 &&
        iov[1].iov_len >= offsetof(struct fuse_init_out, flags2) + sizeof(uint32_t)) {
        init_unique = 0;
        struct fuse_init_out *out = iov[1].iov_base;
        struct lf_fs *fs = userdata;
        if (fs->direct_min != UINT64_MAX && (out->flags & FUSE_INIT_EXT)) {
            out->flags2 |= (uint32_t)(DIRECT_IO_ALLOW_MMAP >> 32);
            __atomic_store_n(&fs->dio_mmap, true, __ATOMIC_RELEASE);
            if (fs->cfg->direct_io)
                lf_info("--direct-io: shared mmap allowed (the kernel keeps it coherent)");
            else
                lf_info("objects from %" PRIu64 " MiB on are read with direct I/O, past the "
                        "page cache (shared mmap kept coherent by the kernel)",
                        fs->direct_min >> 20);
        }
    }
    return writev(fd, iov, count);
}

const struct fuse_custom_io fs_custom_io = {.read = io_read, .writev = io_writev};

static pthread_key_t pipe_key;
static pthread_once_t pipe_once = PTHREAD_ONCE_INIT;

void fs_pipe_close(int *p)
{
    close(p[0]);
    close(p[1]);
    free(p);
}

static void pipe_key_free(void *p) { fs_pipe_close(p); }
static void pipe_key_init(void) { pthread_key_create(&pipe_key, pipe_key_free); }

int *fs_pipe_new(void)
{
    int *p = malloc(2 * sizeof(*p));
    if (!p)
        return NULL;
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(p);
        return NULL;
    }
    if (fcntl(p[0], F_SETPIPE_SZ, PIPE_ROOM) < PIPE_ROOM) {
        fs_pipe_close(p);
        return NULL;
    }
    return p;
}

/* The calling thread's pipe; closed when the thread ends. */
static int *thread_pipe(void)
{
    pthread_once(&pipe_once, pipe_key_init);
    int *p = pthread_getspecific(pipe_key);
    if (!p && (p = fs_pipe_new()) && pthread_setspecific(pipe_key, p) != 0) {
        fs_pipe_close(p);
        p = NULL;
    }
    return p;
}

/* Answers req from reader r's stream when r streams this read: 1 once
 * answered, 0 when the caller must answer it another way, or a negative
 * errno the caller answers. */
static int read_spliced(struct lf_fs *fs, fuse_req_t req, struct fileh *fh,
                        struct lf_reader *r, size_t size, off_t off,
                        const struct lf_read_ctl *ctl)
{
    struct pending_read pr = pending;
    uint64_t osize = lf_reader_size(r);
    int *p;
    if (osize < fs->ra.stream_min || (uint64_t)off >= osize || !pr.valid ||
        pr.off != (uint64_t)off || pr.size != size || pr.fh != (uintptr_t)fh ||
        !(p = thread_pipe()))
        return 0;
    size_t n = osize - (uint64_t)off < size ? (size_t)(osize - (uint64_t)off) : size;
    struct fuse_out_header h = {.len = (uint32_t)(sizeof(h) + n), .unique = pr.unique};
    ssize_t got = lf_reader_splice(r, n, (uint64_t)off, &h, sizeof(h), p, ctl);
    if (got == -EAGAIN)
        return 0;
    if (got < 0)
        return (int)got;
    count_read(fh, n);
    /* fh may be released as soon as the reply is out: it is not touched
     * after this. */
    ssize_t w = splice(p[0], NULL, pr.fd, NULL, h.len, 0);
    int err = errno;
    if (w == (ssize_t)h.len || (w < 0 && err == ENOENT)) {
        /* Answered, or the request went away (interrupted): nothing to say. */
        fuse_reply_none(req);
        return 1;
    }
    /* Any other failure leaves the request unanswered and its reader
     * waiting in D state: answer it with an error (the kernel ignores
     * the answer if it ended the request itself). */
    lf_warn("spliced reply of %zu bytes at %lld failed (%s): the read gets EIO", n,
            (long long)off, w < 0 ? strerror(err) : "short");
    lf_pipe_drain(p[0]);
    fuse_reply_err(req, EIO);
    return 1;
}

/* After a read met its object replaced or gone: the descriptor follows
 * the file as a local one's would when the change is ours (this mount
 * stored a new version, or stages one, since the descriptor was opened)
 * or only moved it (a rename of it or of a directory above it: same
 * bytes under another key). Any other change stays an error: never a mix
 * of two versions of someone else's file. */
static bool fh_follow(struct lf_fs *fs, struct fileh *fh)
{
    struct lf_buf key = LF_BUF_INIT;
    struct lf_obj_attr a;
    char *repo = NULL;
    bool follow = false, staged = false;
    lf_meta_lock(fs->meta);
    struct lf_node *n = fh->node;
    struct wstate *w = fs_wstate_of(n);
    if (w && lf_sfile_has_data(w->sf)) {
        pthread_mutex_lock(&fh->lock);
        if (!fh->sf) {
            lf_sfile_ref(w->sf);
            __atomic_store_n(&fh->sf, w->sf, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&fh->lock);
        staged = follow = true;
    } else if (n->attr.etag[0] && lf_meta_attached(n) && fs_node_key(fs, n, false, &key) == 0) {
        a = n->attr;
        pthread_mutex_lock(&fh->lock);
        bool ours = n->attr_own > fh->opened && !lf_etag_same(a.etag, fh->retag);
        bool moved = strcmp(key.data, fh->rkey) != 0 && lf_etag_same(a.etag, fh->retag);
        pthread_mutex_unlock(&fh->lock);
        follow = (ours || moved) && (repo = strdup(n->ref->repo)) != NULL;
    }
    lf_meta_unlock(fs->meta);
    if (follow && !staged) {
        struct lf_reader *r = lf_reader_new(fs->cache, fs->store, fs->data_wq, repo, key.data,
                                            a.etag, a.size, &fs->ra);
        struct retired *x = r ? malloc(sizeof(*x)) : NULL;
        char *rkey = x ? strdup(key.data) : NULL;
        follow = rkey != NULL;
        if (follow) {
            pthread_mutex_lock(&fh->lock);
            x->r = fh->reader;
            x->next = fh->retired;
            fh->retired = x;
            free(fh->rkey);
            fh->rkey = rkey;
            snprintf(fh->retag, sizeof(fh->retag), "%s", a.etag);
            __atomic_store_n(&fh->reader, r, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&fh->lock);
        } else {
            lf_reader_free(r);
            free(x);
        }
    }
    free(repo);
    lf_buf_free(&key);
    return follow;
}

/* One try at answering a read: 0 once answered, else the errno to answer. */
static int read_once(struct lf_fs *fs, fuse_req_t req, struct fileh *fh, size_t size, off_t off,
                     const struct lf_read_ctl *ctl)
{
    struct lf_sfile *sf = fh_sf(fh);
    struct lf_reader *r = fh_reader(fh);
    bool staged = sf && lf_sfile_has_data(sf);
    if (!staged && r) {
        int s = fs->splice ? read_spliced(fs, req, fh, r, size, off, ctl) : 0;
        if (s)
            return s > 0 ? 0 : s;
        /* Straight from the cache blocks to the kernel: no copy here. */
        struct lf_pinned p;
        int rc = lf_reader_pin(r, size, (uint64_t)off, ctl, &p);
        if (rc == 0) {
            count_read(fh, p.len);
            /* fh may be released once the reply is out: touch only p. */
            fuse_reply_iov(req, p.iov, (int)p.nblocks);
            lf_reader_unpin(&p);
            return 0;
        }
        if (rc != -EINVAL)
            return rc;
    }
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return -ENOMEM;
    ssize_t n;
    if (staged)
        n = lf_sfile_read(sf, buf, size, (uint64_t)off);
    else if (r)
        n = lf_reader_read(r, buf, size, (uint64_t)off, ctl);
    else
        n = -EIO; /* opened on staged data that was since discarded */
    if (n >= 0) {
        count_read(fh, (size_t)n);
        fuse_reply_buf(req, buf, (size_t)n);
    }
    free(buf);
    return n < 0 ? (int)n : 0;
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    struct fileh *fh = (struct fileh *)(uintptr_t)fi->fh;
    struct lf_read_ctl ctl = {.cancelled = req_cancelled, .arg = req};
    int rc = read_once(fs, req, fh, size, off, &ctl);
    if ((rc == -ESTALE || rc == -ENOENT) && fh_follow(fs, fh))
        rc = read_once(fs, req, fh, size, off, &ctl);
    if (rc)
        fuse_reply_err(req, fs_reply_errno(rc));
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    struct fileh *fh = (struct fileh *)(uintptr_t)fi->fh;
    if (!fh->write || !fh->sf) {
        fuse_reply_err(req, EBADF);
        return;
    }
    /* A write changes the modification time, as on a local disk; set
     * before the bytes, so an upload that sees them sees it too. */
    struct lf_put_meta m = {.has = LF_ATTR_MTIME, .implicit = LF_ATTR_MTIME};
    fs_now_realtime(&m.mtime);
    lf_sfile_set_meta(fh->sf, &m, false);
    ssize_t n = lf_sfile_write(fh->sf, buf, size, (uint64_t)off);
    if (n < 0) {
        char name[LF_NAME_MAX + 1];
        lf_warn("write of %zu bytes at %lld to %s: %s", size, (long long)off,
                name_of(fs, fh->node, name, sizeof(name)), strerror((int)-n));
    }
    if (n >= 0) {
        lf_meta_lock(fs->meta);
        fh->node->attr.mtime = m.mtime;
        fh->node->attr.has |= LF_ATTR_MTIME;
        fs_wstate_settle(fs, fh->node);
        lf_meta_unlock(fs->meta);
    }
    if (n < 0)
        fuse_reply_err(req, fs_reply_errno((int)n));
    else
        fuse_reply_write(req, (size_t)n);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fs_fileh_free(fs_of(req), (struct fileh *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* close() and fsync() learn whether the data is on the branch: the data
 * of the handle's own file, which after an unlink or a replacement is
 * nobody's (a discarded file flushes as a no-op). */
static int sync_handle(struct lf_fs *fs, struct fileh *fh)
{
    struct lf_sfile *sf = fh_sf(fh);
    if (!sf)
        return 0;
    unsigned gen;
    lf_sfile_dirty_gen(sf, &gen);
    lf_meta_lock(fs->meta);
    struct wstate *w = fs_wstate_of(fh->node);
    if (w && w->sf == sf) {
        w->synced = true;
        w->synced_gen = gen;
    }
    lf_meta_unlock(fs->meta);
    return fs_flush_node(fs, fh->node, sf);
}

static void reply_sync(fuse_req_t req, struct fileh *fh, const char *what, int rc)
{
    char name[LF_NAME_MAX + 1];
    if (rc)
        lf_warn("%s of %s: %s (the data stays staged)", what,
                name_of(fs_of(req), fh->node, name, sizeof(name)), strerror(-rc));
    fuse_reply_err(req, rc ? fs_reply_errno(rc) : 0);
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fileh *fh = (struct fileh *)(uintptr_t)fi->fh;
    reply_sync(req, fh, "close", fh->write ? sync_handle(fs_of(req), fh) : 0);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct fileh *fh = (struct fileh *)(uintptr_t)fi->fh;
    reply_sync(req, fh, "fsync", sync_handle(fs_of(req), fh));
}
