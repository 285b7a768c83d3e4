/* fs: FUSE low-level operations over the store.
 *
 * Requests are never made with the metadata lock held: an operation reads
 * what it needs under the lock, unlocks, talks to the store, and locks
 * again to publish what it learnt. Two threads may then fetch the same
 * thing at once; both results are valid and the later one wins, which is
 * cheaper than serialising every lookup behind the network.
 *
 * Cost model (tests hold us to it):
 *   readdir of N entries   ceil(N/1000) LIST, no HEAD (attributes come
 *                          from the listing, handed out by readdirplus)
 *   lookup, listing cached 0 requests (negative, or a file whose stored
 *                          mode and times are known), else one HEAD
 *   lookup, cold           HEAD + LIST(prefix "name/", max-keys 1), in
 *                          parallel
 *   getattr of a file      0 within its TTL, else one HEAD
 *
 * Lifetimes, the one rule every operation follows:
 *   - A node is used outside the metadata lock only by whoever pinned it
 *     under the lock (open handles, operations in flight); the unpin, under
 *     the lock, may free it, so nothing touches it afterwards.
 *   - A node's write state (node->priv) is read and changed under the lock
 *     only. Outside it, a user holds what it needs: a reference to the
 *     staged file, and, if it may write, a writer count (wstate_get ...
 *     wstate_put) that keeps the state on its node. The state leaves the
 *     node only when no writer counts and nothing is left to upload, and
 *     a node never gets a second state while it has one.
 *   - A staged file's key is its node's path for as long as it may be
 *     uploaded: a rename re-keys it (lf_sfile_rename), an unlink or a
 *     replacement discards it (lf_sfile_discard: never uploaded again;
 *     descriptors keep it as their anonymous file). While an unlink or a
 *     rename talks to the gateway, its nodes are marked `changing` and no
 *     write state is made below them (wstate_get waits on fs->changed).
 *   - Operations that compute keys and change names (create, mkdir,
 *     unlink, rmdir, rename, chmod's copy) hold fs->ns shared from the
 *     key to the answer; a directory rename holds it alone, so no key it
 *     is moving is in anybody's hands meanwhile.
 */
#include "lakefuse/fs.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <linux/fuse.h>

#include "lakefuse/bcache.h"
#include "lakefuse/buf.h"
#include "lakefuse/log.h"
#include "lakefuse/meta.h"
#include "lakefuse/readahead.h"
#include "lakefuse/recovery.h"
#include "lakefuse/staging.h"
#include "lakefuse/uri.h"
#include "lakefuse/workq.h"

/* "Forever" for the kernel: a year, refreshed by any later lookup. */
#define FOREVER (365.0 * 24 * 3600)
/* How long the kernel keeps a listing's attributes of a file whose stored
 * mode and times we have not read (long enough for `ls -l` of a big
 * directory to need no HEAD). */
#define LISTING_ATTR_MAX 10.0

struct lf_fs {
    const struct lf_config *cfg;
    struct lf_store *store;
    struct lf_bcache *cache;
    struct lf_workq *data_wq; /* readahead GETs */
    struct lf_workq *meta_wq; /* the second request of cold lookups */
    struct lf_workq *up_wq;   /* multipart part uploads */
    struct lf_staging *staging;
    struct lf_recovery *recovery;
    struct lf_meta *meta;
    struct lf_ra_opts ra;
    bool splice;              /* big sequential reads are spliced (lf_reader_splice) */
    uid_t uid;
    gid_t gid;
    struct timespec started;
    pthread_cond_t changed; /* a node's `changing` went to 0 */
    /* Name-space changes hold it shared; a directory rename, which moves
     * every key below it, holds it alone (ns_enter). */
    pthread_rwlock_t ns;
    char *subdir;           /* "a/b/" of a mounted lakefs://REPO/REF/a/b, else "" */
};

struct fileh {
    struct lf_node *node;
    /* reader and sf can change under concurrent reads (fh_follow): read
     * them with fh_reader and fh_sf. */
    struct lf_reader *reader; /* the object as it was at open */
    struct lf_sfile *sf;      /* staged content, when the node has one */
    bool write;
    double opened;            /* monotonic */
    pthread_mutex_t lock;     /* fh_follow's changes */
    char *rkey;               /* the reader's key and ETag (fh_follow's) */
    char retag[LF_ETAG_MAX];
    struct retired *retired;  /* readers replaced by fh_follow, freed with fh */
    uint64_t reads, read_bytes; /* for the debug line at close */
};

struct retired {
    struct lf_reader *r;
    struct retired *next;
};

static struct lf_reader *fh_reader(struct fileh *fh)
{
    return __atomic_load_n(&fh->reader, __ATOMIC_ACQUIRE);
}

static struct lf_sfile *fh_sf(struct fileh *fh)
{
    return __atomic_load_n(&fh->sf, __ATOMIC_ACQUIRE);
}

/* A file's write state, hung on its node (node->priv) while it is staged.
 * The node stays pinned while the staged content is not uploaded, so a
 * failed upload can be retried by the next open's flush or fsync. */
struct wstate {
    struct lf_sfile *sf;
    unsigned writers; /* open handles that may write */
    bool pinned;
};

struct dirh {
    pthread_mutex_t lock;
    struct lf_node *node;
    struct lf_listing *listing;
    char *prefix;  /* the directory's full key prefix */
    char *token;   /* next page; NULL before the first */
    bool done;
    int err;          /* a failed page ends the listing for this handle */
    unsigned changes; /* the node's own-change count when listing began */
};

/* ---- small helpers ------------------------------------------------------ */

static void ns_enter(struct lf_fs *fs, bool alone)
{
    if (alone)
        pthread_rwlock_wrlock(&fs->ns);
    else
        pthread_rwlock_rdlock(&fs->ns);
}

static void ns_leave(struct lf_fs *fs) { pthread_rwlock_unlock(&fs->ns); }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct lf_fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

static int req_cancelled(void *arg) { return fuse_req_interrupted((fuse_req_t)arg); }

/* Errors the kernel should see: transport trouble is EIO to a caller. */
static int reply_errno(int rc)
{
    switch (rc) {
    case -ENOENT:
    case -EACCES:
    case -EPERM:
    case -EROFS:
    case -EINTR:
    case -ENOMEM:
    case -ENOTDIR:
    case -EISDIR:
    case -ENAMETOOLONG:
    case -ENOTEMPTY:
    case -EEXIST:
    case -EINVAL:
    case -ENOSPC:
    case -EFBIG:
    case -ENOTSUP:
        return -rc;
    default:
        return EIO;
    }
}

static struct wstate *wstate_of(const struct lf_node *n);
static int refresh_file(struct lf_fs *fs, struct lf_node *n, bool need_meta);
struct fileh;
static struct fileh *fileh_alloc(void);
static void fileh_free(struct lf_fs *fs, struct fileh *fh);

static double ttl_of(const struct lf_fs *fs, const struct lf_node *n)
{
    if (!n->ref)
        return fs->cfg->repo_ttl;
    if (n->ref->immutable)
        return FOREVER;
    return n->ref->writable ? fs->cfg->branch_ttl : fs->cfg->ref_ttl;
}

static bool is_dir_kind(enum lf_kind k) { return k != LF_FILE; }

static bool staged_size(const struct lf_node *n, uint64_t *size);

static void fill_stat(const struct lf_fs *fs, const struct lf_node *n, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = n->ino;
    st->st_uid = fs->uid;
    st->st_gid = fs->gid;
    st->st_blksize = (blksize_t)fs->cfg->block_size;
    bool ro = !n->ref || !n->ref->writable;
    if (is_dir_kind(n->kind)) {
        st->st_mode = S_IFDIR | (ro ? 0555 : 0755);
        st->st_nlink = 2;
        st->st_size = 4096;
        st->st_mtim = fs->started;
    } else {
        const struct lf_obj_attr *a = &n->attr;
        uint64_t size = a->size;
        staged_size(n, &size);
        /* Anyone who may write to the branch chose the stored mode: no
         * setuid, setgid or sticky bit unless the mount asked for them. */
        mode_t perm = (a->has & LF_ATTR_MODE) ? (a->mode & 07777) : 0644;
        if (!fs->cfg->setuid_bits)
            perm &= 0777;
        /* Under a tag or commit the stored mode shows as it is (cp -r out
         * of it keeps it); writes there are EROFS, not a mode. */
        st->st_mode = S_IFREG | perm;
        st->st_nlink = 1;
        st->st_size = (off_t)size;
        st->st_blocks = (blkcnt_t)((size + 511) / 512);
        if (a->has & LF_ATTR_UID)
            st->st_uid = a->uid;
        if (a->has & LF_ATTR_GID)
            st->st_gid = a->gid;
        if (a->has & LF_ATTR_MTIME)
            st->st_mtim = a->mtime;
        else
            st->st_mtim.tv_sec = a->last_modified;
    }
    st->st_atim = st->st_mtim;
    st->st_ctim = st->st_mtim;
}

/* Counts a kernel lookup and fills the entry for the reply. Lock held. */
static void make_entry(struct lf_fs *fs, struct lf_node *n, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    n->nlookup++;
    e->ino = n->ino;
    e->attr_timeout = ttl_of(fs, n);
    e->entry_timeout = e->attr_timeout;
    fill_stat(fs, n, &e->attr);
}

static void reply_entry_or_err(fuse_req_t req, int rc, const struct fuse_entry_param *e)
{
    if (rc)
        fuse_reply_err(req, reply_errno(rc));
    else
        fuse_reply_entry(req, e);
}

static void reply_negative(fuse_req_t req, double ttl)
{
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.entry_timeout = ttl; /* ino 0: the kernel caches the absence */
    fuse_reply_entry(req, &e);
}

/* Records a file's attributes: from a HEAD (stored), or from a listing,
 * which carries no POSIX metadata, so a listing of the same content keeps
 * what a HEAD told. */
static void set_file_attr(struct lf_fs *fs, struct lf_node *n, const struct lf_obj_attr *a,
                          bool stored)
{
    if (!stored && n->meta_known && lf_etag_same(n->attr.etag, a->etag)) {
        /* keep n->attr: same bytes, richer metadata */
    } else {
        n->attr = *a;
        n->meta_known = stored;
    }
    n->attr_expiry = now() + ttl_of(fs, n);
}

/* The full key of a node below its ref ("<ref>/a/b"), or of a directory's
 * listing prefix ("<ref>/a/b/") when as_dir. Every key is built here, so a
 * mounted subdirectory (fs->subdir) is joined in once for all operations. */
static int node_key(struct lf_fs *fs, struct lf_node *n, bool as_dir, struct lf_buf *out)
{
    struct lf_buf path = LF_BUF_INIT;
    int rc = lf_meta_path(n, &path);
    if (!rc) {
        lf_buf_reset(out);
        rc = lf_buf_printf(out, "%s/%s%s%s", n->ref->name, fs->subdir, path.data,
                           (as_dir && path.len) ? "/" : "");
    }
    lf_buf_free(&path);
    return rc;
}

/* ---- listing pages ------------------------------------------------------ */

/* Fetches the next page of a directory listing into l; sets *token to the
 * next token (NULL when done). */
static int fetch_page(struct lf_fs *fs, enum lf_kind kind, const char *repo,
                      const char *prefix, char **token, struct lf_listing *l)
{
    struct lf_list_page page;
    int rc;
    memset(&page, 0, sizeof(page));
    if (kind == LF_ROOT) {
        char **names = NULL;
        size_t n = 0;
        rc = fs->store->ops->list_buckets(fs->store->ctx, &names, &n);
        if (rc)
            return rc;
        page.prefixes = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; page.prefixes && i < n; i++) {
            size_t len = strlen(names[i]);
            page.prefixes[i] = malloc(len + 2);
            if (page.prefixes[i]) {
                memcpy(page.prefixes[i], names[i], len);
                memcpy(page.prefixes[i] + len, "/", 2);
                page.nprefixes++;
            }
        }
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        rc = page.prefixes ? 0 : -ENOMEM;
    } else {
        rc = fs->store->ops->list(fs->store->ctx, repo, prefix, "/", *token, 1000, &page);
    }
    /* A server that hands back the token it was given (or a page with
     * nothing in it and more to come) would have us list forever. */
    if (!rc && page.truncated && page.next_token &&
        ((*token && strcmp(*token, page.next_token) == 0) ||
         page.nentries + page.nprefixes == 0)) {
        lf_err("listing %s/%s: the gateway's continuation token does not advance; giving up",
               repo ? repo : "", prefix);
        rc = -EIO;
    }
    if (!rc)
        rc = lf_listing_add_page(l, prefix, &page);
    free(*token);
    *token = NULL;
    if (!rc && page.truncated && page.next_token) {
        *token = page.next_token;
        page.next_token = NULL;
    }
    lf_list_page_free(&page);
    return rc;
}

/* The listing prefix and bucket of a directory node. Lock held. */
static int dir_location(struct lf_fs *fs, struct lf_node *n, char **repo, char **prefix)
{
    struct lf_buf b = LF_BUF_INIT;
    int rc = 0;
    *repo = NULL;
    *prefix = NULL;
    switch (n->kind) {
    case LF_ROOT:
        *prefix = strdup("");
        break;
    case LF_REPO:
        *repo = strdup(n->name);
        *prefix = strdup("");
        break;
    default:
        rc = node_key(fs, n, true, &b);
        if (!rc) {
            *repo = strdup(n->ref->repo);
            *prefix = lf_buf_steal(&b);
        }
        break;
    }
    lf_buf_free(&b);
    if (!rc && (!*prefix || (n->kind != LF_ROOT && !*repo)))
        rc = -ENOMEM;
    if (rc) {
        free(*repo);
        free(*prefix);
    }
    return rc;
}

/* Lists a whole directory and caches it on the node. */
static int load_listing(struct lf_fs *fs, struct lf_node *n)
{
    char *repo, *prefix, *token = NULL;
    lf_meta_lock(fs->meta);
    enum lf_kind kind = n->kind;
    unsigned changes = n->changes;
    int rc = dir_location(fs, n, &repo, &prefix);
    lf_meta_unlock(fs->meta);
    if (rc)
        return rc;
    struct lf_listing *l = lf_listing_new();
    if (!l) {
        rc = -ENOMEM;
    } else {
        l->started = now();
        l->changes = changes;
    }
    while (!rc) {
        rc = fetch_page(fs, kind, repo, prefix, &token, l);
        if (!token)
            break;
    }
    if (!rc) {
        l->complete = true;
        lf_meta_lock(fs->meta);
        if (n->changes == changes || !n->listing) {
            l->expiry = now() + ttl_of(fs, n);
            lf_listing_put(n->listing);
            n->listing = l;
            l = NULL;
        }
        /* else we changed the directory while the pages came: they may
         * lack our own files, so keep the listing our changes updated. */
        lf_meta_unlock(fs->meta);
    }
    lf_listing_put(l);
    free(token);
    free(repo);
    free(prefix);
    return rc;
}

static bool listing_fresh(const struct lf_node *n)
{
    return n->listing && n->listing->complete && n->listing->expiry > now();
}

/* ---- lookup -------------------------------------------------------------- */

static struct lf_refinfo *new_ref(struct lf_fs *fs, const char *repo, const char *name,
                                  bool is_branch)
{
    /* A branch may be named with 64 hex digits too: only a name that is no
     * branch and looks like a commit ID is taken for one (lakeFS itself
     * tries a full commit ID first; the gateway cannot tell a tag of that
     * form from a commit). */
    bool immutable = !is_branch && lf_ref_is_full_commit_id(name);
    return lf_refinfo_new(repo, name, immutable,
                          is_branch && !immutable && !fs->cfg->read_only);
}

/* Creates (or finds) the child for an entry of listing l. Lock held. */
static struct lf_node *child_from_dent(struct lf_fs *fs, struct lf_node *parent,
                                       const struct lf_listing *l, const struct lf_dent *d)
{
    struct lf_node *c;
    if (parent->kind == LF_ROOT)
        return lf_meta_child_get(fs->meta, parent, d->name, LF_REPO, NULL);
    if (parent->kind == LF_REPO) {
        c = lf_meta_child(fs->meta, parent, d->name);
        if (c && c->kind == LF_REF && c->ref->writable == !fs->cfg->read_only)
            return c;
        struct lf_refinfo *r = new_ref(fs, parent->name, d->name, true);
        if (!r)
            return NULL;
        c = lf_meta_child_get(fs->meta, parent, d->name, LF_REF, r);
        lf_refinfo_put(r);
        return c;
    }
    enum lf_kind kind = d->is_dir ? LF_DIR : LF_FILE;
    c = lf_meta_child(fs->meta, parent, d->name);
    if (l->changes != parent->changes) {
        /* A listing older than one of our own changes in this directory
         * (an open handle's snapshot): the name's current node wins, and
         * a name we removed or moved meanwhile gets a node of its own,
         * detached, so it never stands for the name again. */
        if (c)
            return c;
        c = lf_meta_child_detached(fs->meta, parent, d->name, kind, parent->ref);
    } else {
        c = lf_meta_child_get(fs->meta, parent, d->name, kind, parent->ref);
    }
    /* A listing asked for before our own last change of the file (a
     * write, a chmod) would put back what the gateway had then; a staged
     * file is the truth while it is staged. */
    if (c && !d->is_dir && !c->priv && l->started >= c->attr_own)
        set_file_attr(fs, c, &d->attr, false);
    return c;
}

struct head_job {
    struct lf_fs *fs;
    const char *repo, *key;
    struct lf_obj_attr attr;
    int rc;
    struct lf_latch *done;
};

static void head_job_run(void *arg)
{
    struct head_job *j = arg;
    j->rc = j->fs->store->ops->head(j->fs->store->ctx, j->repo, j->key, &j->attr);
    lf_latch_done(j->done);
}

/* A name under a ref with nothing cached: ask for the object and for the
 * prefix "name/" together. A directory wins over a file of the same name. */
static int lookup_cold(struct lf_fs *fs, struct lf_node *parent, const char *name,
                       enum lf_kind *kind, struct lf_obj_attr *attr)
{
    struct lf_buf key = LF_BUF_INIT, dirp = LF_BUF_INIT;
    struct lf_list_page page;
    struct head_job j = {.fs = fs};
    char *repo = NULL;
    int rc;

    memset(&page, 0, sizeof(page));
    lf_meta_lock(fs->meta);
    rc = node_key(fs, parent, true, &key);
    if (!rc && !(repo = strdup(parent->ref->repo)))
        rc = -ENOMEM;
    lf_meta_unlock(fs->meta);
    if (rc || (rc = lf_buf_puts(&key, name)) || (rc = lf_buf_printf(&dirp, "%s/", key.data)))
        goto out;

    j.repo = repo;
    j.key = key.data;
    j.done = lf_latch_new(1);
    if (!j.done) {
        rc = -ENOMEM;
        goto out;
    }
    if (lf_workq_submit(fs->meta_wq, head_job_run, &j) != 0)
        head_job_run(&j);
    int lrc = fs->store->ops->list(fs->store->ctx, repo, dirp.data, "/", NULL, 1, &page);
    lf_latch_wait(j.done);
    lf_latch_free(j.done);

    if (lrc == 0 && (page.nentries > 0 || page.nprefixes > 0)) {
        *kind = LF_DIR;
    } else if (j.rc == 0) {
        *kind = LF_FILE;
        *attr = j.attr;
    } else if (j.rc == -ENOENT && (lrc == 0 || lrc == -ENOENT)) {
        rc = -ENOENT;
    } else {
        /* A listing that failed says nothing about a directory: never
         * ENOENT (which would be cached). Under a ref that exists, the
         * gateway's 400 is its own failure, not an unknown ref. */
        rc = lrc && lrc != -ENOENT ? (lrc == -EINVAL ? -EIO : lrc) : j.rc;
        lf_warn("lookup of '%s' in %s failed: %s", name, repo, strerror(-rc));
    }
out:
    lf_list_page_free(&page);
    lf_buf_free(&key);
    lf_buf_free(&dirp);
    free(repo);
    return rc;
}

/* Does a ref that is not a listed branch exist (a tag, commit ID or
 * expression)? One LIST of "<ref>/" with max-keys 1 answers it. */
static int probe_ref(struct lf_fs *fs, const char *repo, const char *ref)
{
    struct lf_list_page page;
    char prefix[LF_REF_MAX + 2];
    if (!lf_ref_is_valid(ref, strlen(ref)))
        return -ENOENT;
    snprintf(prefix, sizeof(prefix), "%s/", ref);
    int rc = fs->store->ops->list(fs->store->ctx, repo, prefix, "/", NULL, 1, &page);
    if (rc == 0)
        lf_list_page_free(&page);
    if (rc == -EINVAL)
        rc = -ENOENT; /* the gateway's 400 for an unknown ref */
    return rc;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent_ino, const char *name)
{
    struct lf_fs *fs = fs_of(req);
    struct fuse_entry_param e;
    struct lf_obj_attr attr;
    enum lf_kind kind = LF_FILE;
    int rc = 0;

    if (strlen(name) > LF_NAME_MAX) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        lf_meta_lock(fs->meta);
        struct lf_node *p = lf_meta_get(fs->meta, parent_ino);
        if (!p || p->kind == LF_FILE) {
            lf_meta_unlock(fs->meta);
            fuse_reply_err(req, p ? ENOTDIR : ENOENT);
            return;
        }
        /* A file being written exists here before the gateway has it. */
        struct lf_node *own = lf_meta_child(fs->meta, p, name);
        if (own && own->kind == LF_FILE && wstate_of(own) && lf_sfile_has_data(wstate_of(own)->sf)) {
            make_entry(fs, own, &e);
            lf_meta_unlock(fs->meta);
            fuse_reply_entry(req, &e);
            return;
        }
        /* On the second pass the listing was just loaded: use it even
         * with a zero TTL. */
        bool usable = listing_fresh(p) || (pass == 1 && p->listing && p->listing->complete);
        if (usable) {
            const struct lf_dent *d = lf_listing_find(p->listing, name);
            if (d) {
                struct lf_node *c = child_from_dent(fs, p, p->listing, d);
                if (!c) {
                    lf_meta_unlock(fs->meta);
                    fuse_reply_err(req, ENOMEM);
                    return;
                }
                if (c->kind == LF_FILE && !c->meta_known && !c->priv) {
                    /* A name looked up is about to be stat'ed, opened or
                     * run: its stored mode and times, not the listing's
                     * defaults (one HEAD, then known for this content). */
                    lf_meta_pin(c);
                    lf_meta_unlock(fs->meta);
                    rc = refresh_file(fs, c, true);
                    lf_meta_lock(fs->meta);
                    if (!rc)
                        make_entry(fs, c, &e);
                    lf_meta_unpin(fs->meta, c);
                    lf_meta_unlock(fs->meta);
                    if (rc == -ENOENT)
                        reply_negative(req, 0);
                    else if (rc)
                        fuse_reply_err(req, reply_errno(rc));
                    else
                        fuse_reply_entry(req, &e);
                    return;
                }
                make_entry(fs, c, &e);
                lf_meta_unlock(fs->meta);
                fuse_reply_entry(req, &e);
                return;
            }
            if (p->kind != LF_REPO) {
                double ttl = ttl_of(fs, p);
                lf_meta_unlock(fs->meta);
                reply_negative(req, ttl);
                return;
            }
        }
        enum lf_kind pk = p->kind;
        bool fresh = usable;
        /* A small directory listed before: one LIST renews all of it and
         * answers this name and the next ones, where a probe would cost a
         * HEAD and a LIST for this name alone (cp into a directory). */
        bool relist = pass == 0 && !usable && (pk == LF_REF || pk == LF_DIR) && p->listing &&
                      p->listing->complete && p->listing->n < 1000;
        char *repo = p->kind == LF_REPO ? strdup(p->name) : NULL;
        lf_meta_unlock(fs->meta);
        if (relist) {
            rc = load_listing(fs, p);
            if (rc == 0)
                continue;
            if (rc != -ENOENT)
                break;
        }

        if (pk == LF_ROOT || (pk == LF_REPO && !fresh)) {
            /* Repositories and branches: one listing answers every name. */
            free(repo);
            rc = pass == 0 ? load_listing(fs, p) : -ENOENT;
            if (rc == 0)
                continue;
            if (pk == LF_ROOT || rc != -ENOENT)
                break;
            lf_meta_lock(fs->meta);
            repo = strdup(p->name);
            lf_meta_unlock(fs->meta);
        }
        if (pk == LF_REPO) {
            /* Not a branch: perhaps a tag, a commit ID or an expression. */
            rc = repo ? probe_ref(fs, repo, name) : -ENOMEM;
            if (rc == 0) {
                struct lf_refinfo *r = new_ref(fs, repo, name, false);
                lf_meta_lock(fs->meta);
                struct lf_node *c = r ? lf_meta_child_get(fs->meta, p, name, LF_REF, r) : NULL;
                lf_refinfo_put(r);
                if (c)
                    make_entry(fs, c, &e);
                lf_meta_unlock(fs->meta);
                free(repo);
                if (!c)
                    fuse_reply_err(req, ENOMEM);
                else
                    fuse_reply_entry(req, &e);
                return;
            }
            free(repo);
            break;
        }
        rc = lookup_cold(fs, p, name, &kind, &attr);
        if (rc)
            break;
        lf_meta_lock(fs->meta);
        struct lf_node *c = lf_meta_child_get(fs->meta, p, name, kind, p->ref);
        if (c && kind == LF_FILE)
            set_file_attr(fs, c, &attr, true);
        if (c)
            make_entry(fs, c, &e);
        lf_meta_unlock(fs->meta);
        if (!c)
            fuse_reply_err(req, ENOMEM);
        else
            fuse_reply_entry(req, &e);
        return;
    }
    if (rc == -ENOENT || rc == 0) {
        lf_meta_lock(fs->meta);
        struct lf_node *p = lf_meta_get(fs->meta, parent_ino);
        double ttl = p ? ttl_of(fs, p) : 0;
        lf_meta_unlock(fs->meta);
        reply_negative(req, ttl);
        return;
    }
    fuse_reply_err(req, reply_errno(rc));
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    struct lf_fs *fs = fs_of(req);
    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_get(fs->meta, ino);
    if (n)
        lf_meta_forget(fs->meta, n, nlookup);
    lf_meta_unlock(fs->meta);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    struct lf_fs *fs = fs_of(req);
    lf_meta_lock(fs->meta);
    for (size_t i = 0; i < count; i++) {
        struct lf_node *n = lf_meta_get(fs->meta, forgets[i].ino);
        if (n)
            lf_meta_forget(fs->meta, n, forgets[i].nlookup);
    }
    lf_meta_unlock(fs->meta);
    fuse_reply_none(req);
}

/* ---- attributes ------------------------------------------------------------ */

/* Makes a file node's attributes fresh (one HEAD when stale); with
 * need_meta, also when its stored mode and times are not known yet (a
 * read needs only the size and ETag a listing gives). */
static int refresh_file(struct lf_fs *fs, struct lf_node *n, bool need_meta)
{
    struct lf_buf key = LF_BUF_INIT;
    struct lf_obj_attr a;
    lf_meta_lock(fs->meta);
    /* While the node is staged, the staged file is the truth: the object
     * may not even exist yet (a file created and not closed). Attributes
     * from a listing lack the stored mode and times: not fresh for this. */
    bool fresh = (n->attr_expiry > now() && (n->meta_known || !need_meta)) || wstate_of(n);
    char *repo = fresh ? NULL : strdup(n->ref->repo);
    int rc = fresh ? 0 : node_key(fs, n, false, &key);
    lf_meta_unlock(fs->meta);
    if (fresh)
        return 0;
    if (!rc && !repo)
        rc = -ENOMEM;
    if (!rc)
        rc = fs->store->ops->head(fs->store->ctx, repo, key.data, &a);
    if (!rc) {
        lf_meta_lock(fs->meta);
        set_file_attr(fs, n, &a, true);
        lf_meta_unlock(fs->meta);
    }
    free(repo);
    lf_buf_free(&key);
    return rc;
}

/* Answers with the node's attributes (or rc) and drops the caller's pin. */
static void reply_attr_unpin(struct lf_fs *fs, fuse_req_t req, struct lf_node *n, int rc)
{
    struct stat st;
    lf_meta_lock(fs->meta);
    fill_stat(fs, n, &st);
    double ttl = ttl_of(fs, n);
    lf_meta_unpin(fs->meta, n);
    lf_meta_unlock(fs->meta);
    if (rc)
        fuse_reply_err(req, reply_errno(rc));
    else
        fuse_reply_attr(req, &st, ttl);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_get(fs->meta, ino);
    if (n)
        lf_meta_pin(n);
    lf_meta_unlock(fs->meta);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    int rc = n->kind == LF_FILE ? refresh_file(fs, n, true) : 0;
    reply_attr_unpin(fs, req, n, rc);
}

/* ---- changes -------------------------------------------------------------- */

static struct wstate *wstate_of(const struct lf_node *n) { return n->priv; }

static void release_node(struct lf_node *n)
{
    struct wstate *w = n->priv;
    n->priv = NULL;
    if (w) {
        lf_sfile_unref(w->sf);
        free(w);
    }
}

/* Whether reads of the node come from staging, and its staged size. Lock held. */
static bool staged_size(const struct lf_node *n, uint64_t *size)
{
    struct wstate *w = wstate_of(n);
    if (!w || !lf_sfile_has_data(w->sf))
        return false;
    *size = lf_sfile_size(w->sf);
    return true;
}

/* Where a change may happen: a branch of a writable mount. Lock held. */
static int check_writable(const struct lf_fs *fs, const struct lf_node *n)
{
    if (!n)
        return -ENOENT;
    if (fs->cfg->read_only)
        return -EROFS;
    if (n->kind == LF_ROOT || n->kind == LF_REPO)
        return -EPERM; /* repositories and branches are made with lakeFS */
    return n->ref && n->ref->writable ? 0 : -EROFS;
}

struct change {
    struct lf_node *parent; /* pinned */
    char *repo;
    struct lf_buf key;      /* "<ref>/dir/name" */
    bool ns;                /* holds fs->ns shared until change_end */
};

/* Looks up a writable parent directory and builds the child's key; with
 * ns, holds the name space shared until change_end (see the top). */
static int change_begin_ns(struct lf_fs *fs, fuse_ino_t parent_ino, const char *name,
                           struct change *c, bool ns)
{
    memset(c, 0, sizeof(*c));
    if (ns)
        ns_enter(fs, false);
    c->ns = ns;
    if (strlen(name) > LF_NAME_MAX)
        return -ENAMETOOLONG;
    lf_meta_lock(fs->meta);
    struct lf_node *p = lf_meta_get(fs->meta, parent_ino);
    int rc = check_writable(fs, p);
    if (!rc && p->kind == LF_FILE)
        rc = -ENOTDIR;
    if (!rc)
        rc = node_key(fs, p, true, &c->key);
    if (!rc && !(c->repo = strdup(p->ref->repo)))
        rc = -ENOMEM;
    if (!rc) {
        lf_meta_pin(p);
        c->parent = p;
    }
    lf_meta_unlock(fs->meta);
    if (!rc)
        rc = lf_buf_puts(&c->key, name);
    return rc;
}

static int change_begin(struct lf_fs *fs, fuse_ino_t parent_ino, const char *name,
                        struct change *c)
{
    return change_begin_ns(fs, parent_ino, name, c, true);
}

static void change_end(struct lf_fs *fs, struct change *c)
{
    if (c->ns)
        ns_leave(fs);
    c->ns = false;
    if (c->parent) {
        lf_meta_lock(fs->meta);
        lf_meta_unpin(fs->meta, c->parent);
        lf_meta_unlock(fs->meta);
    }
    free(c->repo);
    lf_buf_free(&c->key);
}

/* Keeps the parent's cached listing true after our own change. Lock held. */
static void listing_note(struct lf_node *parent, const char *name, bool is_dir,
                         const struct lf_obj_attr *attr, bool removed)
{
    parent->changes++; /* a listing fetched meanwhile may predate this */
    if (!parent->listing)
        return;
    int rc = removed ? lf_listing_remove(&parent->listing, name, is_dir)
                     : lf_listing_upsert(&parent->listing, name, is_dir, attr);
    if (!rc)
        parent->listing->changes = parent->changes; /* true again */
    if (rc) {
        /* Cannot keep it true: forget it, the next access lists again. */
        lf_listing_put(parent->listing);
        parent->listing = NULL;
    }
}

static struct lf_put_meta meta_of(const struct lf_fs *fs, const struct lf_node *n)
{
    struct lf_put_meta m = {.has = LF_ATTR_MODE | LF_ATTR_UID | LF_ATTR_GID | LF_ATTR_MTIME};
    const struct lf_obj_attr *a = &n->attr;
    m.mode = (a->has & LF_ATTR_MODE) ? a->mode : (S_IFREG | 0644);
    m.uid = (a->has & LF_ATTR_UID) ? a->uid : fs->uid;
    m.gid = (a->has & LF_ATTR_GID) ? a->gid : fs->gid;
    if (a->has & LF_ATTR_MTIME)
        m.mtime = a->mtime;
    else
        m.mtime.tv_sec = a->last_modified;
    return m;
}

static void now_realtime(struct timespec *ts) { clock_gettime(CLOCK_REALTIME, ts); }

/* Is an unlink or rename of n, or of a directory above it, under way? Lock held. */
static bool under_change(const struct lf_node *n)
{
    for (; n; n = n->parent)
        if (n->changing)
            return true;
    return false;
}

/* Marks a name as changing on the gateway (unlink, rename); see the top of
 * the file. Lock held; the node must be pinned by the caller. */
static void change_mark(struct lf_node *n)
{
    if (n)
        n->changing++;
}

static void change_unmark(struct lf_fs *fs, struct lf_node *n)
{
    if (n && --n->changing == 0)
        pthread_cond_broadcast(&fs->changed);
}

static void wait_no_change(struct lf_fs *fs, const struct lf_node *n)
{
    while (under_change(n))
        lf_meta_wait(fs->meta, &fs->changed);
}

/* Makes the node's write state (from the object as it is now) if it has
 * none, and counts the caller as a writer: *sfp gets a reference to the
 * staged file, and the state stays until wstate_put. A node no longer
 * reachable by its name (unlinked or replaced before its state could be
 * made) gets none: -ENOENT, as an open that came after the unlink. */
static int wstate_get(struct lf_fs *fs, struct lf_node *n, struct lf_sfile **sfp)
{
    struct lf_buf key = LF_BUF_INIT, now_key = LF_BUF_INIT;
    struct lf_sfile *sf = NULL;
    char *repo = NULL;
    int rc = 0;
    *sfp = NULL;
    for (;;) {
        lf_meta_lock(fs->meta);
        wait_no_change(fs, n);
        struct wstate *w = wstate_of(n);
        if (!w && sf && lf_meta_attached(n)) {
            /* Our file is right only if no rename moved the node since. */
            rc = node_key(fs, n, false, &now_key);
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
        if (!rc && w && !wstate_of(n)) {
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
        rc = refresh_file(fs, n, true);
        lf_meta_lock(fs->meta);
        struct lf_obj_attr base = n->attr;
        struct lf_put_meta meta = meta_of(fs, n);
        if (!rc)
            rc = node_key(fs, n, false, &key);
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

static void wstate_settle(struct lf_fs *fs, struct lf_node *n);

/* Ends what wstate_get began. Lock held. */
static void wstate_put(struct lf_fs *fs, struct lf_node *n, struct lf_sfile *sf)
{
    struct wstate *w = wstate_of(n);
    if (w && w->sf == sf && w->writers > 0)
        w->writers--;
    lf_sfile_unref(sf);
    wstate_settle(fs, n);
}

static int flush_node(struct lf_fs *fs, struct lf_node *n, struct lf_sfile *sf);

/* Ends a writer's count (wstate_put) from outside the lock; the last
 * writer of a file with changes pending stores them first. The kernel
 * sends a handle's release some time after close() has flushed: a chmod,
 * utimens or rename in between (rsync does all three) rides along with
 * the staged file while the handle still counts, and no flush follows;
 * and a rename or truncate may hold the last count when that release
 * comes. Whoever lets go last stores it. */
static void writer_done(struct lf_fs *fs, struct lf_node *n, struct lf_sfile *sf)
{
    lf_meta_lock(fs->meta);
    struct wstate *w = wstate_of(n);
    bool last = w && w->sf == sf && w->writers == 1 && lf_sfile_dirty(sf);
    lf_meta_unlock(fs->meta);
    if (last)
        flush_node(fs, n, sf); /* a failure stays staged; flush_node says so */
    lf_meta_lock(fs->meta);
    wstate_put(fs, n, sf);
    lf_meta_unlock(fs->meta);
}

/* Keeps the node alive while its staged content is not uploaded. Lock held. */
static void wstate_settle(struct lf_fs *fs, struct lf_node *n)
{
    struct wstate *w = wstate_of(n);
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
            n->attr_expiry = now() + ttl_of(fs, n);
            n->attr_own = now();
        }
        bool pinned = w->pinned;
        release_node(n);
        if (pinned)
            lf_meta_unpin(fs->meta, n);
    } else if (!dirty && w->pinned) {
        w->pinned = false;
        lf_meta_unpin(fs->meta, n);
    }
}

/* Uploads a node's staged content; on success its attributes and its
 * parent's listing show what is stored. */
static int flush_node(struct lf_fs *fs, struct lf_node *n, struct lf_sfile *sf)
{
    struct lf_obj_attr a;
    int rc = lf_sfile_flush(sf, &a);
    lf_meta_lock(fs->meta);
    if (rc)
        n->attr_expiry = 0; /* what the gateway holds now is unknown: ask again */
    if (!rc && wstate_of(n) && wstate_of(n)->sf == sf) {
        n->attr = a;
        n->meta_known = true;
        n->attr_own = now();
        n->attr_expiry = now() + ttl_of(fs, n);
        /* The page cache holds what was written: keep it at the next open. */
        snprintf(n->cached_etag, sizeof(n->cached_etag), "%s", a.etag);
        if (n->parent && lf_meta_child(fs->meta, n->parent, n->name) == n)
            listing_note(n->parent, n->name, false, &a, false);
    }
    wstate_settle(fs, n);
    lf_meta_unlock(fs->meta);
    return rc;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    struct fuse_entry_param e;
    struct change c = {0};
    struct lf_sfile *sf = NULL;
    struct fileh *fh = fileh_alloc();
    struct wstate *w = calloc(1, sizeof(*w));
    int rc = fh && w ? change_begin(fs, parent, name, &c) : -ENOMEM;
    if (!rc)
        rc = lf_sfile_new(fs->staging, c.repo, c.key.data, NULL, &sf);
    if (rc)
        goto out;
    struct lf_put_meta meta = {.has = LF_ATTR_MODE | LF_ATTR_UID | LF_ATTR_GID | LF_ATTR_MTIME,
                               .mode = S_IFREG | (mode & 07777), .uid = ctx->uid,
                               .gid = ctx->gid};
    now_realtime(&meta.mtime);
    lf_sfile_set_meta(sf, &meta, false);

    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_child(fs->meta, c.parent, name);
    struct lf_sfile *old = NULL;
    if (n && wstate_of(n)) {
        /* The kernel thought the name free while we still stage a file
         * under it: that file is replaced, and keeps its own node for
         * the descriptors that hold it (a new file created over it, as
         * O_CREAT without O_EXCL after our listing said it was gone). */
        old = wstate_of(n)->sf;
        lf_sfile_ref(old);
        lf_meta_detach(fs->meta, n);
    }
    n = lf_meta_child_get(fs->meta, c.parent, name, LF_FILE, c.parent->ref);
    if (!n) {
        lf_meta_unlock(fs->meta);
        lf_sfile_unref(old);
        rc = -ENOMEM;
        goto out;
    }
    memset(&n->attr, 0, sizeof(n->attr));
    n->attr.has = meta.has;
    n->attr.mode = meta.mode;
    n->attr.uid = meta.uid;
    n->attr.gid = meta.gid;
    n->attr.mtime = meta.mtime;
    n->attr.last_modified = meta.mtime.tv_sec;
    n->attr_expiry = now() + ttl_of(fs, n);
    n->meta_known = true;
    n->cached_etag[0] = '\0';
    w->sf = sf;
    w->writers = 1;
    n->priv = w;
    w = NULL;
    lf_sfile_ref(sf);
    fh->sf = sf;
    sf = NULL;
    fh->node = n;
    fh->write = true;
    lf_meta_pin(n);
    wstate_settle(fs, n);
    listing_note(c.parent, name, false, &n->attr, false);
    make_entry(fs, n, &e);
    lf_meta_unlock(fs->meta);
    if (old) {
        /* Before the new file can be uploaded: an upload of the old one
         * under way lands first. */
        lf_sfile_discard(old);
        lf_sfile_unref(old);
    }
    fi->fh = (uintptr_t)fh;
    if (fuse_reply_create(req, &e, fi) != 0) {
        /* The caller went away: no release will come for this handle.
         * The name was visible meanwhile, so the (empty) file is stored
         * as if created and closed. */
        lf_warn("create of %s: the caller went away", c.key.data);
        lf_meta_lock(fs->meta);
        if (n->nlookup) /* make_entry's, which the kernel never got; fh pins n */
            n->nlookup--;
        lf_meta_unlock(fs->meta);
        fileh_free(fs, fh);
    }
    fh = NULL;
out:
    if (rc)
        fuse_reply_err(req, reply_errno(rc));
    lf_sfile_unref(sf);
    free(w);
    free(fh);
    change_end(fs, &c);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev)
{
    struct lf_fs *fs = fs_of(req);
    if (!S_ISREG(mode)) {
        fuse_reply_err(req, EPERM); /* object storage holds regular files only */
        return;
    }
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    struct fuse_entry_param e;
    struct change c;
    struct lf_obj_attr a = {0};
    struct lf_body empty = {.mem = "", .len = 0};
    struct lf_put_meta meta = {.has = LF_ATTR_MODE | LF_ATTR_UID | LF_ATTR_GID | LF_ATTR_MTIME,
                               .mode = S_IFREG | (mode & 07777), .uid = ctx->uid,
                               .gid = ctx->gid};
    now_realtime(&meta.mtime);
    int rc = change_begin(fs, parent, name, &c);
    if (!rc)
        rc = fs->store->ops->put(fs->store->ctx, c.repo, c.key.data, &empty, &meta, LF_PUT_ANY,
                                 a.etag);
    if (!rc) {
        a.has = meta.has;
        a.mode = meta.mode;
        a.uid = meta.uid;
        a.gid = meta.gid;
        a.mtime = meta.mtime;
        a.last_modified = meta.mtime.tv_sec;
        lf_meta_lock(fs->meta);
        struct lf_node *n = lf_meta_child_get(fs->meta, c.parent, name, LF_FILE,
                                              c.parent->ref);
        if (n) {
            set_file_attr(fs, n, &a, true);
            listing_note(c.parent, name, false, &a, false);
            make_entry(fs, n, &e);
        }
        lf_meta_unlock(fs->meta);
        rc = n ? 0 : -ENOMEM;
    }
    reply_entry_or_err(req, rc, &e);
    change_end(fs, &c);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct lf_fs *fs = fs_of(req);
    struct fuse_entry_param e;
    struct change c;
    struct lf_body empty = {.mem = "", .len = 0};
    char etag[LF_ETAG_MAX];
    int rc = change_begin(fs, parent, name, &c);
    /* A zero-byte "name/" marker, as s3fs and goofys write, so an empty
     * directory exists for every client. */
    if (!rc)
        rc = lf_buf_puts(&c.key, "/");
    if (!rc)
        rc = fs->store->ops->put(fs->store->ctx, c.repo, c.key.data, &empty, NULL, LF_PUT_ANY,
                                 etag);
    if (!rc) {
        lf_meta_lock(fs->meta);
        struct lf_node *n = lf_meta_child_get(fs->meta, c.parent, name, LF_DIR, c.parent->ref);
        struct lf_listing *l = n ? lf_listing_new() : NULL;
        if (l) {
            /* It is empty: nothing to list until something is added. */
            l->complete = true;
            l->expiry = now() + ttl_of(fs, n);
            lf_listing_put(n->listing);
            n->listing = l;
            listing_note(c.parent, name, true, NULL, false);
            make_entry(fs, n, &e);
        }
        lf_meta_unlock(fs->meta);
        rc = l ? 0 : -ENOMEM;
    }
    reply_entry_or_err(req, rc, &e);
    change_end(fs, &c);
}

/* After a delete on the gateway: the name is gone from the inode table
 * (open handles keep their node) and from the parent's cached listing. */
static void forget_name(struct lf_fs *fs, struct lf_node *parent, const char *name, bool is_dir)
{
    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_child(fs->meta, parent, name);
    if (n)
        lf_meta_detach(fs->meta, n);
    listing_note(parent, name, is_dir, NULL, true);
    lf_meta_unlock(fs->meta);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct lf_fs *fs = fs_of(req);
    struct change c;
    struct lf_node *n = NULL;
    struct lf_sfile *sf = NULL;
    bool keep = false, pending = false;
    int rc = change_begin(fs, parent, name, &c);
    if (!rc) {
        lf_meta_lock(fs->meta);
        n = lf_meta_child(fs->meta, c.parent, name);
        if (n && n->kind != LF_FILE)
            rc = -EISDIR;
        if (!rc && n) {
            lf_meta_pin(n);
            change_mark(n);
            struct wstate *w = wstate_of(n);
            if (w) {
                sf = w->sf;
                lf_sfile_ref(sf);
                keep = w->writers > 0;
            }
        } else {
            n = NULL;
        }
        lf_meta_unlock(fs->meta);
    }
    if (sf) {
        /* A descriptor open for writing keeps the file: it needs the
         * object's bytes before they go. */
        if (keep && !lf_sfile_has_data(sf) && lf_sfile_load(sf) != 0)
            lf_warn("unlink of %s: a descriptor still open on it cannot read it any more",
                    c.key.data);
        /* Nothing staged for a deleted file is uploaded from now on, and
         * an upload under way lands before the delete below. */
        pending = lf_sfile_discard(sf);
    }
    if (!rc)
        rc = fs->store->ops->remove(fs->store->ctx, c.repo, c.key.data);
    if (!rc)
        forget_name(fs, c.parent, name, false);
    else if (sf)
        lf_sfile_restore(sf, pending); /* the name stays, and so does its content */
    lf_sfile_unref(sf);
    if (n) {
        lf_meta_lock(fs->meta);
        change_unmark(fs, n);
        wstate_settle(fs, n);
        lf_meta_unpin(fs->meta, n);
        lf_meta_unlock(fs->meta);
    }
    fuse_reply_err(req, rc ? reply_errno(rc) : 0);
    change_end(fs, &c);
}

/* Is there anything under prefix but its own marker, on the gateway or
 * staged for it? */
static int dir_is_empty(struct lf_fs *fs, const char *repo, const char *prefix)
{
    if (lf_staging_pending_under(fs->staging, repo, prefix))
        return -ENOTEMPTY;
    struct lf_list_page page;
    int rc = fs->store->ops->list(fs->store->ctx, repo, prefix, "/", NULL, 2, &page);
    if (rc)
        return rc;
    size_t plen = strlen(prefix);
    bool empty = page.nprefixes == 0;
    for (size_t i = 0; i < page.nentries; i++)
        if (strlen(page.entries[i].key) != plen)
            empty = false;
    lf_list_page_free(&page);
    return empty ? 0 : -ENOTEMPTY;
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct lf_fs *fs = fs_of(req);
    struct change c;
    int rc = change_begin(fs, parent, name, &c);
    if (!rc)
        rc = lf_buf_puts(&c.key, "/");
    if (!rc)
        rc = dir_is_empty(fs, c.repo, c.key.data);
    if (!rc)
        rc = fs->store->ops->remove(fs->store->ctx, c.repo, c.key.data);
    if (!rc)
        forget_name(fs, c.parent, name, true);
    fuse_reply_err(req, rc ? reply_errno(rc) : 0);
    change_end(fs, &c);
}

/* What is at parent/name: 0 with *kind, or -ENOENT. */
static int probe_name(struct lf_fs *fs, struct lf_node *parent, const char *name,
                      enum lf_kind *kind, struct lf_obj_attr *attr)
{
    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_child(fs->meta, parent, name);
    if (n && wstate_of(n) && lf_sfile_has_data(wstate_of(n)->sf)) {
        *kind = LF_FILE;
        *attr = n->attr;
        lf_meta_unlock(fs->meta);
        return 0;
    }
    if (listing_fresh(parent)) {
        const struct lf_dent *d = lf_listing_find(parent->listing, name);
        if (d) {
            *kind = d->is_dir ? LF_DIR : LF_FILE;
            *attr = d->attr;
        }
        lf_meta_unlock(fs->meta);
        return d ? 0 : -ENOENT;
    }
    lf_meta_unlock(fs->meta);
    return lookup_cold(fs, parent, name, kind, attr);
}

/* A directory rename on the gateway: every object under src (a "dir/"
 * prefix) is copied to dst, then the sources are deleted, so a failure
 * half way leaves the source whole. */
struct tree_move {
    struct lf_fs *fs;
    const char *repo, *src, *dst;
    char **keys;
    size_t n, copied;
};

static int tree_list(struct tree_move *t)
{
    struct lf_list_page page;
    char *token = NULL;
    size_t cap = 0;
    int rc = 0;
    do {
        rc = t->fs->store->ops->list(t->fs->store->ctx, t->repo, t->src, NULL, token, 1000,
                                     &page);
        free(token);
        token = NULL;
        if (rc)
            break;
        for (size_t i = 0; !rc && i < page.nentries; i++) {
            if (t->n == cap) {
                cap = cap ? cap * 2 : 64;
                char **nk = realloc(t->keys, cap * sizeof(*nk));
                if (!nk) {
                    rc = -ENOMEM;
                    break;
                }
                t->keys = nk;
            }
            t->keys[t->n++] = page.entries[i].key;
            page.entries[i].key = NULL; /* ownership moved */
        }
        if (page.truncated) {
            token = page.next_token;
            page.next_token = NULL;
        }
        lf_list_page_free(&page);
    } while (!rc && token);
    free(token);
    return rc;
}

/* The copy half; staging calls it between noting and re-keying the
 * staged files under src (lf_staging_rename_prefix). */
static int tree_copy(void *arg)
{
    struct tree_move *t = arg;
    struct lf_buf to = LF_BUF_INIT;
    size_t slen = strlen(t->src);
    int rc = tree_list(t);
    for (size_t i = 0; !rc && i < t->n; i++) {
        char etag[LF_ETAG_MAX];
        lf_buf_reset(&to);
        rc = lf_buf_printf(&to, "%s%s", t->dst, t->keys[i] + slen);
        if (!rc)
            rc = t->fs->store->ops->copy(t->fs->store->ctx, t->repo, t->keys[i], to.data, NULL,
                                         etag);
        if (rc == -ENOENT) { /* deleted since the listing (another client): gone either way */
            t->keys[i][0] = '\0';
            rc = 0;
        } else if (!rc) {
            t->copied++;
        }
    }
    lf_buf_free(&to);
    return rc;
}

static int rename_tree(struct lf_fs *fs, const char *repo, const char *src, const char *dst)
{
    struct tree_move t = {.fs = fs, .repo = repo, .src = src, .dst = dst};
    size_t deleted = 0;
    int rc = lf_staging_rename_prefix(fs->staging, repo, src, dst, tree_copy, &t);
    for (size_t i = 0; !rc && i < t.n; i++) {
        if (!t.keys[i][0])
            continue;
        rc = fs->store->ops->remove(fs->store->ctx, repo, t.keys[i]);
        if (!rc)
            deleted++;
    }
    if (rc)
        lf_err("rename of %s/%s to %s stopped after copying %zu and deleting %zu of %zu "
               "objects: %s", repo, src, dst, t.copied, deleted, t.n, strerror(-rc));
    else
        lf_info("renamed %s/%s to %s (%zu objects)", repo, src, dst, t.n);
    for (size_t i = 0; i < t.n; i++)
        free(t.keys[i]);
    free(t.keys);
    return rc == -ENOENT ? -EIO : rc;
}

/* Moves a file's object (and its staged content, if any) from one key to
 * another on the gateway. n is the source node (pinned, marked changing,
 * or NULL if the kernel never looked it up); *stored gets the stored
 * attributes when the staged content was uploaded here. */
static int rename_file(struct lf_fs *fs, struct lf_node *n, const char *repo, const char *src,
                       const char *dst, struct lf_obj_attr *stored, bool *flushed)
{
    struct lf_sfile *sf = NULL;
    bool writer = false;
    char etag[LF_ETAG_MAX];
    int rc;
    *flushed = false;
    lf_meta_lock(fs->meta);
    struct wstate *w = n ? wstate_of(n) : NULL;
    if (w) { /* stable: nothing makes or drops a state while n is changing */
        sf = w->sf;
        lf_sfile_ref(sf);
        w->writers++; /* ours, for the time of the rename */
        writer = w->writers > 1;
    }
    lf_meta_unlock(fs->meta);
    if (!sf) {
        rc = fs->store->ops->copy(fs->store->ctx, repo, src, dst, NULL, etag);
        return rc ? rc : fs->store->ops->remove(fs->store->ctx, repo, src);
    }
    unsigned gen;
    struct lf_put_meta pm;
    bool meta_only = lf_sfile_meta_only(sf, &gen, &pm);
    if (!meta_only && lf_sfile_dirty_gen(sf, &gen)) {
        /* Pending content goes to the new name; what the old name held on
         * the branch goes away. */
        rc = lf_sfile_rename(sf, dst, NULL);
    } else {
        /* Stored as it is (or but for its mode and times, which the copy
         * carries: rsync's chmod and utimens before its rename): the
         * gateway copies it, and the staged file follows, so the
         * descriptors' next writes reach the new name. A change that
         * slipped in between makes it pending again. */
        rc = fs->store->ops->copy(fs->store->ctx, repo, src, dst, meta_only ? &pm : NULL, etag);
        if (!rc)
            rc = lf_sfile_rename(sf, dst, &gen);
    }
    /* With no writer left (or if the last one's release settled the file
     * meanwhile, its upload done under the old name), the new name gets
     * it now, before the old one goes. A writer's close stores it later. */
    if (rc == 1 && !writer) {
        rc = lf_sfile_flush(sf, stored);
        if (rc)
            lf_sfile_rename(sf, src, NULL); /* back: staged under its old name */
        *flushed = !rc;
    }
    if (rc >= 0)
        rc = fs->store->ops->remove(fs->store->ctx, repo, src);
    writer_done(fs, n, sf); /* the handles' releases may have come meanwhile */
    return rc;
}

/* After a directory rename: what we knew of the files below it may
 * predate uploads that raced the copy; they are asked about again. */
static void expire_one(struct lf_node *n, void *arg)
{
    for (const struct lf_node *p = n->parent; p; p = p->parent)
        if (p == arg) {
            n->attr_expiry = 0;
            break;
        }
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
    struct lf_fs *fs = fs_of(req);
    struct change from, to;
    enum lf_kind kind = LF_FILE, tkind = LF_FILE;
    struct lf_obj_attr attr = {0}, tattr, stored;
    struct lf_node *n = NULL, *t = NULL;
    struct lf_sfile *tsf = NULL;
    bool flushed = false; /* the staged content was stored under the new name: `stored` */
    int rc;

    memset(&from, 0, sizeof(from));
    memset(&to, 0, sizeof(to));
    if (flags & RENAME_EXCHANGE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    for (bool alone = false;; alone = true) {
        ns_enter(fs, alone);
        rc = change_begin_ns(fs, parent, name, &from, false);
        if (!rc)
            rc = change_begin_ns(fs, newparent, newname, &to, false);
        if (!rc && strcmp(from.repo, to.repo) != 0)
            rc = -EXDEV;
        if (!rc)
            rc = probe_name(fs, from.parent, name, &kind, &attr);
        if (rc || kind != LF_DIR || alone)
            break;
        /* A directory: its keys move, nobody may hold one meanwhile. */
        change_end(fs, &from);
        change_end(fs, &to);
        ns_leave(fs);
    }
    if (rc)
        goto out;
    int trc = probe_name(fs, to.parent, newname, &tkind, &tattr);
    if (trc && trc != -ENOENT) {
        rc = trc;
        goto out;
    }
    if (trc == 0) {
        if (flags & RENAME_NOREPLACE)
            rc = -EEXIST;
        else if (kind == LF_FILE && tkind == LF_DIR)
            rc = -EISDIR;
        else if (kind == LF_DIR && tkind == LF_FILE)
            rc = -ENOTDIR;
        else if (kind == LF_DIR) {
            struct lf_buf p = LF_BUF_INIT;
            rc = lf_buf_printf(&p, "%s/", to.key.data);
            if (!rc)
                rc = dir_is_empty(fs, to.repo, p.data);
            if (!rc) /* an empty target directory is replaced */
                rc = fs->store->ops->remove(fs->store->ctx, to.repo, p.data);
            lf_buf_free(&p);
        }
        if (rc)
            goto out;
    }

    /* Both names are changing until the gateway has the result. */
    lf_meta_lock(fs->meta);
    n = lf_meta_child(fs->meta, from.parent, name);
    t = lf_meta_child(fs->meta, to.parent, newname);
    if (t == n)
        t = NULL;
    for (int i = 0; i < 2; i++) {
        struct lf_node *x = i ? t : n;
        if (x) {
            lf_meta_pin(x);
            change_mark(x);
        }
    }
    bool tkeep = false;
    if (t && wstate_of(t)) {
        tsf = wstate_of(t)->sf;
        lf_sfile_ref(tsf);
        tkeep = wstate_of(t)->writers > 0;
    }
    lf_meta_unlock(fs->meta);
    /* Descriptors open on the replaced file keep it: they need its bytes
     * before the name's object becomes the new one. */
    if (tkeep && !lf_sfile_has_data(tsf) && lf_sfile_load(tsf) != 0)
        lf_warn("rename onto %s: a descriptor still open on the old file cannot read it any "
                "more", to.key.data);
    /* The replaced file is never uploaded again; an upload of it under
     * way lands before ours. */
    bool tpending = tsf && lf_sfile_discard(tsf);

    if (kind == LF_FILE) {
        rc = rename_file(fs, n, from.repo, from.key.data, to.key.data, &stored, &flushed);
    } else {
        struct lf_buf sp = LF_BUF_INIT, dp = LF_BUF_INIT;
        rc = lf_buf_printf(&sp, "%s/", from.key.data);
        if (!rc)
            rc = lf_buf_printf(&dp, "%s/", to.key.data);
        if (!rc)
            rc = rename_tree(fs, from.repo, sp.data, dp.data);
        lf_buf_free(&sp);
        lf_buf_free(&dp);
    }
    if (rc && tsf)
        lf_sfile_restore(tsf, tpending); /* still there */
    if (rc)
        goto out;

    lf_meta_lock(fs->meta);
    if (n && lf_meta_attached(n)) {
        if (lf_meta_move(fs->meta, n, to.parent, newname) != 0)
            lf_meta_detach(fs->meta, n);
        if (kind == LF_DIR)
            lf_meta_for_each(fs->meta, expire_one, n);
        if (flushed) {
            n->attr = stored;
            n->meta_known = true;
            n->attr_expiry = now() + ttl_of(fs, n);
            n->attr_own = now();
            snprintf(n->cached_etag, sizeof(n->cached_etag), "%s", stored.etag);
        }
        if (kind == LF_FILE)
            attr = n->attr;
    } else if (t) {
        lf_meta_detach(fs->meta, t);
    }
    listing_note(from.parent, name, kind != LF_FILE, NULL, true);
    if (trc == 0 && tkind != kind)
        listing_note(to.parent, newname, tkind != LF_FILE, NULL, true);
    listing_note(to.parent, newname, kind != LF_FILE, kind == LF_FILE ? &attr : NULL, false);
    lf_meta_unlock(fs->meta);
out:
    lf_meta_lock(fs->meta);
    for (int i = 0; i < 2; i++) {
        struct lf_node *x = i ? t : n;
        if (x) {
            change_unmark(fs, x);
            wstate_settle(fs, x);
            lf_meta_unpin(fs->meta, x);
        }
    }
    lf_meta_unlock(fs->meta);
    lf_sfile_unref(tsf);
    fuse_reply_err(req, rc ? reply_errno(rc) : 0);
    change_end(fs, &from);
    change_end(fs, &to);
    ns_leave(fs);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    struct lf_fs *fs = fs_of(req);
    lf_meta_lock(fs->meta);
    int rc = check_writable(fs, lf_meta_get(fs->meta, parent));
    lf_meta_unlock(fs->meta);
    fuse_reply_err(req, rc ? -rc : EPERM); /* objects cannot be links */
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct lf_fs *fs = fs_of(req);
    lf_meta_lock(fs->meta);
    int rc = check_writable(fs, lf_meta_get(fs->meta, newparent));
    lf_meta_unlock(fs->meta);
    fuse_reply_err(req, rc ? -rc : EPERM);
}

/* chmod, chown, utimens of a file that is not being written: the object
 * is copied onto itself with the new metadata (what S3 offers). Nothing
 * is sent when nothing changes. */
static int set_object_meta(struct lf_fs *fs, struct lf_node *n, const struct lf_put_meta *m)
{
    struct lf_buf key = LF_BUF_INIT;
    char etag[LF_ETAG_MAX];
    int rc = refresh_file(fs, n, true);
    ns_enter(fs, false); /* the key stays the object's until the copy is done */
    lf_meta_lock(fs->meta);
    wait_no_change(fs, n);
    struct lf_put_meta cur = meta_of(fs, n);
    bool same = (n->attr.has & (LF_ATTR_MODE | LF_ATTR_UID | LF_ATTR_GID | LF_ATTR_MTIME)) ==
                    (LF_ATTR_MODE | LF_ATTR_UID | LF_ATTR_GID | LF_ATTR_MTIME) &&
                cur.mode == m->mode && cur.uid == m->uid && cur.gid == m->gid &&
                cur.mtime.tv_sec == m->mtime.tv_sec && cur.mtime.tv_nsec == m->mtime.tv_nsec;
    char *repo = rc || same ? NULL : strdup(n->ref->repo);
    if (!rc && !same)
        rc = repo ? node_key(fs, n, false, &key) : -ENOMEM;
    lf_meta_unlock(fs->meta);
    if (!rc && !same)
        rc = fs->store->ops->copy(fs->store->ctx, repo, key.data, key.data, m, etag);
    if (!rc && !same) {
        lf_meta_lock(fs->meta);
        n->attr.has |= m->has;
        n->attr.mode = m->mode;
        n->attr.uid = m->uid;
        n->attr.gid = m->gid;
        n->attr.mtime = m->mtime;
        if (etag[0])
            snprintf(n->attr.etag, sizeof(n->attr.etag), "%s", etag);
        n->attr_expiry = now() + ttl_of(fs, n);
        n->attr_own = now();
        n->meta_known = true;
        lf_meta_unlock(fs->meta);
    }
    ns_leave(fs);
    free(repo);
    lf_buf_free(&key);
    return rc;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    struct lf_sfile *held = NULL; /* a writer's count while we truncate */
    int rc;
    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_get(fs->meta, ino);
    rc = check_writable(fs, n);
    if (!rc)
        lf_meta_pin(n);
    lf_meta_unlock(fs->meta);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    if (n->kind != LF_FILE) {
        /* Directories are prefixes: nothing to keep their mode or times
         * in. Accept, so cp -a, rsync -a and tar x succeed. */
        if (to_set & FUSE_SET_ATTR_SIZE)
            rc = -EISDIR;
        goto reply;
    }
    struct wstate *w = NULL;
    if (to_set & FUSE_SET_ATTR_SIZE) {
        if ((rc = wstate_get(fs, n, &held)) ||
            (rc = lf_sfile_truncate(held, (uint64_t)attr->st_size)))
            goto reply;
    }
    unsigned mt = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
                  FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW;
    if (to_set & mt) {
        lf_meta_lock(fs->meta);
        struct lf_put_meta m = meta_of(fs, n);
        w = wstate_of(n);
        if (to_set & FUSE_SET_ATTR_MODE)
            m.mode = (m.mode & ~07777u) | (attr->st_mode & 07777);
        if (to_set & FUSE_SET_ATTR_UID)
            m.uid = attr->st_uid;
        if (to_set & FUSE_SET_ATTR_GID)
            m.gid = attr->st_gid;
        if (to_set & FUSE_SET_ATTR_MTIME_NOW)
            now_realtime(&m.mtime);
        else if (to_set & FUSE_SET_ATTR_MTIME)
            m.mtime = attr->st_mtim;
        struct lf_sfile *wsf = w && (lf_sfile_dirty(w->sf) || w->writers) ? w->sf : NULL;
        if (wsf)
            lf_sfile_ref(wsf);
        lf_meta_unlock(fs->meta);
        if (wsf) {
            /* Rides along with the pending upload. */
            lf_sfile_set_meta(wsf, &m, true);
            lf_sfile_unref(wsf);
            lf_meta_lock(fs->meta);
            n->attr.has |= m.has;
            n->attr.mode = m.mode;
            n->attr.uid = m.uid;
            n->attr.gid = m.gid;
            n->attr.mtime = m.mtime;
            n->attr_own = now();
            lf_meta_unlock(fs->meta);
        } else {
            rc = set_object_meta(fs, n, &m);
        }
    }
    /* truncate(2) or chmod of a file nobody has open for writing: no
     * close will come, so store it now. */
    lf_meta_lock(fs->meta);
    w = wstate_of(n);
    unsigned others = held ? 1 : 0;
    bool now_flush = !rc && w && w->writers == others && lf_sfile_dirty(w->sf);
    struct lf_sfile *sf = now_flush ? w->sf : NULL;
    if (sf)
        lf_sfile_ref(sf);
    lf_meta_unlock(fs->meta);
    if (sf) {
        rc = flush_node(fs, n, sf);
        lf_sfile_unref(sf);
    }
reply:
    if (held)
        writer_done(fs, n, held);
    reply_attr_unpin(fs, req, n, rc);
}

/* ---- files ------------------------------------------------------------------ */

static struct fileh *fileh_alloc(void)
{
    struct fileh *fh = calloc(1, sizeof(*fh));
    if (fh) {
        pthread_mutex_init(&fh->lock, NULL);
        fh->opened = now();
    }
    return fh;
}

/* The file's name for a log line: a rename may replace it meanwhile. */
static const char *name_of(struct lf_fs *fs, const struct lf_node *n, char *buf, size_t len)
{
    lf_meta_lock(fs->meta);
    snprintf(buf, len, "%s", n->name);
    lf_meta_unlock(fs->meta);
    return buf;
}

static void fileh_free(struct lf_fs *fs, struct fileh *fh)
{
    char name[LF_NAME_MAX + 1];
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
        writer_done(fs, fh->node, fh->sf); /* also drops the handle's reference */
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

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
        rc = check_writable(fs, n);
    lf_meta_unlock(fs->meta);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!rc && n->kind != LF_FILE)
        rc = -EISDIR;
    if (rc)
        goto out;
    if (!(fh = fileh_alloc())) {
        rc = -ENOMEM;
        goto out;
    }
    fh->node = n;
    fh->write = write;
    if (write) {
        /* The handle counts as a writer until fileh_free. */
        if ((rc = wstate_get(fs, n, &fh->sf)))
            goto out;
        if ((fi->flags & O_TRUNC) && (rc = lf_sfile_truncate(fh->sf, 0)))
            goto out;
    } else {
        lf_meta_lock(fs->meta);
        struct wstate *w = wstate_of(n);
        if (w) { /* read what is being written, not the old object */
            lf_sfile_ref(w->sf);
            fh->sf = w->sf;
        }
        lf_meta_unlock(fs->meta);
    }
    if (!fh->sf || !lf_sfile_has_data(fh->sf)) {
        if ((rc = refresh_file(fs, n, false)))
            goto out;
        lf_meta_lock(fs->meta);
        struct lf_obj_attr a = n->attr;
        rc = node_key(fs, n, false, &key);
        if (!rc && !(repo = strdup(n->ref->repo)))
            rc = -ENOMEM;
        /* Keep the kernel's cached pages when they hold these very bytes. */
        fi->keep_cache = n->ref->immutable || (a.etag[0] && lf_etag_same(n->cached_etag, a.etag));
        /* --direct-io: the kernel hands each read to us and copies our
         * answer straight into the reader's buffer, with no page cache in
         * between; our own readahead and block cache do that job. */
        fi->direct_io = fs->cfg->direct_io && !write;
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
    }
    fi->fh = (uintptr_t)fh;
    if (fuse_reply_open(req, fi) != 0)
        fileh_free(fs, fh); /* the opener is gone: no release will come */
    fh = NULL;
    n = NULL;
out:
    free(repo);
    lf_buf_free(&key);
    if (fh) {
        fileh_free(fs, fh); /* unpins n */
        n = NULL;
    }
    if (n) {
        lf_meta_lock(fs->meta);
        lf_meta_unpin(fs->meta, n);
        lf_meta_unlock(fs->meta);
    }
    if (rc)
        fuse_reply_err(req, reply_errno(rc));
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
 * READ for its thread. op_read checks the note against its arguments and
 * afterwards frees libfuse's request with fuse_reply_none.
 *
 * The same hooks give --direct-io shared mmap: the kernel (6.6 on) keeps
 * such mappings coherent once the INIT answer has FUSE_DIRECT_IO_ALLOW_MMAP,
 * a flag this libfuse does not know; the answer gets it on its way out. */
#define PIPE_ROOM (4 << 20)
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
        init_unique = offered ? h->unique : 0;
        if (!offered && ((struct lf_fs *)userdata)->cfg->direct_io)
            lf_info("--direct-io: a shared mmap of a file open for reading fails with ENODEV "
                    "(this kernel cannot keep it coherent)");
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
        if (((struct lf_fs *)userdata)->cfg->direct_io && (out->flags & FUSE_INIT_EXT)) {
            out->flags2 |= (uint32_t)(DIRECT_IO_ALLOW_MMAP >> 32);
            lf_info("--direct-io: shared mmap allowed (the kernel keeps it coherent)");
        }
    }
    return writev(fd, iov, count);
}

static const struct fuse_custom_io IO = {.read = io_read, .writev = io_writev};

static pthread_key_t pipe_key;
static pthread_once_t pipe_once = PTHREAD_ONCE_INIT;

static void pipe_close(int *p)
{
    close(p[0]);
    close(p[1]);
    free(p);
}

static void pipe_key_free(void *p) { pipe_close(p); }
static void pipe_key_init(void) { pthread_key_create(&pipe_key, pipe_key_free); }

static int *pipe_new(void)
{
    int *p = malloc(2 * sizeof(*p));
    if (!p)
        return NULL;
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(p);
        return NULL;
    }
    if (fcntl(p[0], F_SETPIPE_SZ, PIPE_ROOM) < PIPE_ROOM) {
        pipe_close(p);
        return NULL;
    }
    return p;
}

/* The calling thread's pipe; closed when the thread ends. */
static int *thread_pipe(void)
{
    pthread_once(&pipe_once, pipe_key_init);
    int *p = pthread_getspecific(pipe_key);
    if (!p && (p = pipe_new()) && pthread_setspecific(pipe_key, p) != 0) {
        pipe_close(p);
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

void lf_fs_attach(struct lf_fs *fs, struct fuse_session *se)
{
    if ((fs->splice || fs->cfg->direct_io) &&
        fuse_session_custom_io(se, &IO, fuse_session_fd(se)) != 0) {
        lf_warn("libfuse refused the custom I/O hooks: reads are copied through memory%s",
                fs->cfg->direct_io ? " and shared mmap of --direct-io files fails" : "");
        fs->splice = false;
        fs->ra.stream_min = 0;
    }
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
    struct wstate *w = wstate_of(n);
    if (w && lf_sfile_has_data(w->sf)) {
        pthread_mutex_lock(&fh->lock);
        if (!fh->sf) {
            lf_sfile_ref(w->sf);
            __atomic_store_n(&fh->sf, w->sf, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&fh->lock);
        staged = follow = true;
    } else if (n->attr.etag[0] && lf_meta_attached(n) && node_key(fs, n, false, &key) == 0) {
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

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    struct fileh *fh = (struct fileh *)(uintptr_t)fi->fh;
    struct lf_read_ctl ctl = {.cancelled = req_cancelled, .arg = req};
    int rc = read_once(fs, req, fh, size, off, &ctl);
    if ((rc == -ESTALE || rc == -ENOENT) && fh_follow(fs, fh))
        rc = read_once(fs, req, fh, size, off, &ctl);
    if (rc)
        fuse_reply_err(req, reply_errno(rc));
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
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
    struct lf_put_meta m = {.has = LF_ATTR_MTIME};
    now_realtime(&m.mtime);
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
        wstate_settle(fs, fh->node);
        lf_meta_unlock(fs->meta);
    }
    if (n < 0)
        fuse_reply_err(req, reply_errno((int)n));
    else
        fuse_reply_write(req, (size_t)n);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fileh_free(fs_of(req), (struct fileh *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* close() and fsync() learn whether the data is on the branch: the data
 * of the handle's own file, which after an unlink or a replacement is
 * nobody's (a discarded file flushes as a no-op). */
static int sync_handle(struct lf_fs *fs, struct fileh *fh)
{
    struct lf_sfile *sf = fh_sf(fh);
    return sf ? flush_node(fs, fh->node, sf) : 0;
}

static void reply_sync(fuse_req_t req, struct fileh *fh, const char *what, int rc)
{
    char name[LF_NAME_MAX + 1];
    if (rc)
        lf_warn("%s of %s: %s (the data stays staged)", what,
                name_of(fs_of(req), fh->node, name, sizeof(name)), strerror(-rc));
    fuse_reply_err(req, rc ? reply_errno(rc) : 0);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fileh *fh = (struct fileh *)(uintptr_t)fi->fh;
    reply_sync(req, fh, "close", fh->write ? sync_handle(fs_of(req), fh) : 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct fileh *fh = (struct fileh *)(uintptr_t)fi->fh;
    reply_sync(req, fh, "fsync", sync_handle(fs_of(req), fh));
}

/* ---- directories ------------------------------------------------------------ */

static void dirh_free(struct dirh *d)
{
    if (!d)
        return;
    lf_listing_put(d->listing);
    free(d->prefix);
    free(d->token);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    struct dirh *d = calloc(1, sizeof(*d));
    char *repo = NULL;
    int rc = d ? 0 : -ENOMEM;

    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_get(fs->meta, ino);
    if (!rc && !n)
        rc = -ENOENT;
    if (!rc && n->kind == LF_FILE)
        rc = -ENOTDIR;
    if (!rc) {
        pthread_mutex_init(&d->lock, NULL);
        d->node = n;
        lf_meta_pin(n);
        if (listing_fresh(n)) {
            d->listing = n->listing;
            lf_listing_get(d->listing);
            d->done = true;
        } else {
            d->listing = lf_listing_new();
            if (d->listing) {
                d->listing->started = now();
                d->listing->changes = n->changes;
            }
            d->changes = n->changes;
            rc = d->listing ? dir_location(fs, n, &repo, &d->prefix) : -ENOMEM;
        }
    }
    lf_meta_unlock(fs->meta);
    free(repo);
    if (rc) {
        if (d && d->node) {
            lf_meta_lock(fs->meta);
            lf_meta_unpin(fs->meta, d->node);
            lf_meta_unlock(fs->meta);
        }
        dirh_free(d);
        fuse_reply_err(req, reply_errno(rc));
        return;
    }
    fi->fh = (uintptr_t)d;
    /* Commit trees never change: let the kernel cache their listings. */
    fi->cache_readdir = n->ref && n->ref->immutable;
    fi->keep_cache = fi->cache_readdir;
    if (fuse_reply_open(req, fi) != 0) { /* the caller went away: no releasedir */
        lf_meta_lock(fs->meta);
        lf_meta_unpin(fs->meta, d->node);
        lf_meta_unlock(fs->meta);
        dirh_free(d);
    }
}

/* Pulls pages until entry idx exists or the listing ends. d->lock held. */
static int dir_fill(struct lf_fs *fs, struct dirh *d, size_t idx)
{
    while (!d->done && d->listing->n <= idx) {
        char *repo = NULL;
        lf_meta_lock(fs->meta);
        enum lf_kind kind = d->node->kind;
        if (kind == LF_REPO)
            repo = strdup(d->node->name);
        else if (kind != LF_ROOT)
            repo = strdup(d->node->ref->repo);
        lf_meta_unlock(fs->meta);
        if (kind != LF_ROOT && !repo)
            return -ENOMEM;
        if (d->err) {
            free(repo);
            return d->err;
        }
        int rc = fetch_page(fs, kind, repo, d->prefix, &d->token, d->listing);
        free(repo);
        if (rc) {
            /* Without a token the next call would start over from the
             * first page: report the failure again instead. */
            d->err = rc;
            return rc;
        }
        if (!d->token) {
            d->done = true;
            d->listing->complete = true;
            /* Publish the whole listing for lookups and later opendirs. */
            lf_meta_lock(fs->meta);
            if (d->node->changes == d->changes || !d->node->listing) {
                d->listing->expiry = now() + ttl_of(fs, d->node);
                lf_listing_put(d->node->listing);
                d->node->listing = d->listing;
                lf_listing_get(d->listing);
            }
            lf_meta_unlock(fs->meta);
        }
    }
    return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
    struct lf_fs *fs = fs_of(req);
    struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
    char *buf = malloc(size);
    size_t pos = 0;
    int rc = 0;

    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_mutex_lock(&d->lock);
    /* Offsets: 1 after ".", 2 after "..", i + 3 after entry i. */
    for (off_t o = off; rc == 0; o++) {
        struct fuse_entry_param e;
        const char *name;
        size_t need;
        if (o < 2) {
            name = o == 0 ? "." : "..";
            memset(&e, 0, sizeof(e));
            lf_meta_lock(fs->meta);
            struct lf_node *self = d->node;
            struct lf_node *n = (o == 1 && self->parent) ? self->parent : self;
            e.ino = n->ino;
            fill_stat(fs, n, &e.attr);
            lf_meta_unlock(fs->meta);
            /* The kernel takes no lookup reference for "." and "..". */
            need = plus ? fuse_add_direntry_plus(req, buf + pos, size - pos, name, &e, o + 1)
                        : fuse_add_direntry(req, buf + pos, size - pos, name, &e.attr, o + 1);
            if (need > size - pos)
                break;
            pos += need;
            continue;
        }
        size_t idx = (size_t)(o - 2);
        if ((rc = dir_fill(fs, d, idx)) || idx >= d->listing->n)
            break;
        const struct lf_dent *de = &d->listing->v[idx];
        lf_meta_lock(fs->meta);
        struct lf_node *c = child_from_dent(fs, d->node, d->listing, de);
        if (!c) {
            lf_meta_unlock(fs->meta);
            rc = -ENOMEM;
            break;
        }
        memset(&e, 0, sizeof(e));
        e.ino = c->ino;
        /* A detached node (see child_from_dent) is asked about again; a
         * file whose stored mode and times are not known yet is asked
         * about after LISTING_ATTR_MAX even under a commit, where the
         * listing's defaults would otherwise stay for good. */
        e.attr_timeout = e.entry_timeout = lf_meta_attached(c) ? ttl_of(fs, c) : 0;
        if (c->kind == LF_FILE && !c->meta_known && e.attr_timeout > LISTING_ATTR_MAX)
            e.attr_timeout = LISTING_ATTR_MAX;
        fill_stat(fs, c, &e.attr);
        need = plus ? fuse_add_direntry_plus(req, buf + pos, size - pos, de->name, &e, o + 1)
                    : fuse_add_direntry(req, buf + pos, size - pos, de->name, &e.attr, o + 1);
        if (need <= size - pos && plus)
            c->nlookup++; /* the kernel holds the entry now */
        else if (c->nlookup == 0 && c->pins == 0)
            lf_meta_forget(fs->meta, c, 0); /* nobody refers to it: plain readdir keeps none */
        lf_meta_unlock(fs->meta);
        if (need > size - pos)
            break;
        pos += need;
    }
    pthread_mutex_unlock(&d->lock);
    if (rc && pos == 0)
        fuse_reply_err(req, reply_errno(rc));
    else
        fuse_reply_buf(req, buf, pos);
    free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
    lf_meta_lock(fs->meta);
    lf_meta_unpin(fs->meta, d->node);
    lf_meta_unlock(fs->meta);
    dirh_free(d);
    fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs st;
    memset(&st, 0, sizeof(st));
    /* Object storage has no meaningful capacity; report plenty so tools
     * that check free space before writing do not refuse. */
    st.f_bsize = st.f_frsize = 4096;
    st.f_blocks = st.f_bfree = st.f_bavail = 1ull << 34;
    st.f_files = st.f_ffree = st.f_favail = 1ull << 32;
    st.f_namemax = LF_NAME_MAX;
    fuse_reply_statfs(req, &st);
}

/* A larger readahead on the mount's own backing device makes sequential
 * reads 1 MiB FUSE requests instead of 128 KiB. Best effort: needs write
 * access to sysfs. It runs inside op_init, before the kernel has our INIT
 * answer: the kernel then keeps min(this, our max_readahead), and every
 * file opened afterwards gets it (a file takes its readahead from the
 * device when it is opened, so tuning later would miss the first ones).
 * The device is found in mountinfo: a stat of the mount point would wait
 * for this very INIT. */
static void tune_readahead(const char *mountpoint)
{
    char *real = realpath(mountpoint, NULL), line[4096], dev[32] = "";
    FILE *fp = real ? fopen("/proc/self/mountinfo", "re") : NULL;
    while (fp && fgets(line, sizeof(line), fp)) {
        char mdev[32], mnt[2048], fstype[64];
        const char *sep = strstr(line, " - "); /* after the optional fields */
        if (sep && sscanf(line, "%*s %*s %31s %*s %2047s", mdev, mnt) == 2 &&
            sscanf(sep + 3, "%63s", fstype) == 1 && strcmp(mnt, real) == 0 &&
            strncmp(fstype, "fuse", 4) == 0)
            snprintf(dev, sizeof(dev), "%s", mdev); /* the last one is ours */
    }
    if (fp)
        fclose(fp);
    free(real);
    if (!dev[0])
        return;
    char path[128];
    snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "4096", 4) != 4)
        lf_dbg("kernel readahead of the mount left as is (%s: %s)", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct lf_fs *fs = userdata;
    /* libfuse's splice would only add a vmsplice to the same copy for
     * replies from our memory (streams are spliced by read_spliced). */
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want &= ~FUSE_CAP_SPLICE_WRITE;
    conn->want |= conn->capable & (FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO |
                                   FUSE_CAP_CACHE_SYMLINKS);
    /* Synchronous reads by default: the kernel then sends reads in the
     * reader's own context, so Ctrl-C reaches a read stuck on a slow
     * gateway even in a program that catches it (async readahead requests
     * cannot be interrupted; only a fatal signal ends the wait for them).
     * The price is that the reader's copy and ours take turns instead of
     * overlapping, which caps a single stream (docs/benchmarks.md). */
    if (fs->cfg->async_read && (conn->capable & FUSE_CAP_ASYNC_READ))
        conn->want |= FUSE_CAP_ASYNC_READ;
    else
        conn->want &= ~FUSE_CAP_ASYNC_READ;
    conn->max_readahead = 4u << 20; /* the kernel keeps the smaller of this and the device's */
    conn->max_background = 64;
    /* Big writes: 1 MiB per request instead of 128 KiB. */
    conn->max_write = 1024 * 1024;
    lf_info("FUSE session ready (max_read %u, max_readahead %u)", conn->max_read,
            conn->max_readahead);
    if (fs->splice)
        lf_info("sequential reads of objects from %zu MiB on are spliced from the gateway "
                "to the kernel", (size_t)(fs->ra.stream_min >> 20));
    tune_readahead(fs->cfg->mountpoint);
}

/* `lakefuse unmount` asks for every staged file to be uploaded before it
 * unmounts, through this attribute of any directory, and learns whether
 * that worked. */
#define FLUSH_XATTR "user.lakefuse.flush"

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    struct lf_fs *fs = fs_of(req);
    if (strcmp(name, FLUSH_XATTR) != 0) {
        fuse_reply_err(req, ENOTSUP);
        return;
    }
    unsigned failed = fs->staging ? lf_staging_flush_all(fs->staging) : 0;
    if (failed)
        lf_err("flush before unmount: %u staged file(s) could not be uploaded", failed);
    fuse_reply_err(req, failed ? EIO : 0);
}

/* Unmount: what is still staged goes up before the daemon exits. */
static void op_destroy(void *userdata)
{
    struct lf_fs *fs = userdata;
    if (!fs->staging)
        return;
    lf_recovery_stop(fs->recovery); /* what it adopted is flushed below */
    unsigned failed = lf_staging_flush_all(fs->staging);
    if (failed)
        lf_err("unmount: %u staged file(s) could not be uploaded; they stay in %s/staging "
               "and the next mount on this cache directory uploads them", failed,
               fs->cfg->cache_dir);
}

static const struct fuse_lowlevel_ops OPS = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .create = op_create,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
};

const struct fuse_lowlevel_ops *lf_fs_ops(void) { return &OPS; }

struct lf_fs *lf_fs_new(const struct lf_config *cfg, struct lf_store *store,
                        const struct lf_fs_root *root)
{
    struct lf_fs *fs = calloc(1, sizeof(*fs));
    struct lf_refinfo *ref = NULL;
    if (!fs)
        return NULL;
    fs->cfg = cfg;
    fs->store = store;
    if (asprintf(&fs->subdir, "%s%s", root->path ? root->path : "", root->path ? "/" : "") < 0) {
        free(fs);
        return NULL;
    }
    pthread_cond_init(&fs->changed, NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* Writer preference: a directory rename is not starved by a stream
     * of creates. */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&fs->ns, &ra);
    pthread_rwlockattr_destroy(&ra);
    fs->uid = getuid();
    fs->gid = getgid();
    clock_gettime(CLOCK_REALTIME, &fs->started);
    fs->ra.initial_window = cfg->readahead_init;
    fs->ra.max_window = cfg->readahead_max;
    fs->ra.request_size = cfg->request_size;
    /* Streams are for objects the cache would not keep (see
     * lf_bcache_release), and only when no disk tier would keep them. */
    /* Nor with --async-read: readahead sent in parallel reaches us out of
     * order, and a stream (read in order) would have to wait for the
     * stragglers or fetch their bytes twice. */
    const char *nosplice = cfg->no_splice              ? NULL
                           : !store->ops->get_stream   ? "the endpoint is HTTPS"
                           : cfg->disk_cache_size      ? "--disk-cache-size keeps them on disk"
                           : cfg->async_read           ? "--async-read"
                                                       : NULL;
    if (nosplice)
        lf_info("big sequential reads are copied through memory, not spliced (%s)", nosplice);
    fs->splice = !cfg->no_splice && !nosplice;
    if (fs->splice) {
        int *p = pipe_new();
        if (p)
            pipe_close(p);
        else
            lf_info("big sequential reads are copied through memory, not spliced: that "
                    "needs pipes of %d MiB (CAP_SYS_RESOURCE, or sysctl fs.pipe-max-size=%d)",
                    PIPE_ROOM >> 20, PIPE_ROOM);
        fs->splice = p != NULL;
    }
    fs->ra.stream_min = fs->splice ? cfg->cache_size / 2 : 0;
    fs->cache = lf_bcache_new(cfg->cache_size, cfg->block_size);
    if (fs->cache && cfg->disk_cache_size) {
        /* A subdirectory: the cache directory also holds staging/. */
        struct lf_buf dir = LF_BUF_INIT;
        if (lf_buf_printf(&dir, "%s/blocks", cfg->cache_dir) == 0) {
            int rc = lf_bcache_enable_disk(fs->cache, dir.data, cfg->disk_cache_size);
            if (rc)
                lf_warn("disk cache in %s: %s; caching in memory only", dir.data, strerror(-rc));
        }
        lf_buf_free(&dir);
    }
    enum lf_kind kind = LF_ROOT;
    const char *name = "";
    if (root->repo && root->ref) {
        kind = LF_REF;
        name = root->ref;
        ref = new_ref(fs, root->repo, root->ref, root->ref_is_branch);
    } else if (root->repo) {
        kind = LF_REPO;
        name = root->repo;
    }
    if (kind != LF_REF || ref)
        fs->meta = lf_meta_new(kind, name, ref);
    if (fs->meta)
        lf_meta_set_release(fs->meta, release_node);
    lf_refinfo_put(ref);
    if (!fs->cache || !fs->meta) {
        lf_fs_free(fs);
        return NULL;
    }
    return fs;
}

int lf_fs_start(struct lf_fs *fs)
{
    fs->data_wq = lf_workq_new(fs->cfg->max_requests, "lf-data");
    fs->meta_wq = lf_workq_new(4, "lf-meta");
    /* Parts in flight: enough to keep a high-latency link busy. */
    fs->up_wq = lf_workq_new(8, "lf-upload");
    if (!fs->data_wq || !fs->meta_wq || !fs->up_wq)
        return -ENOMEM;
    struct lf_staging_opts so = {.dir = fs->cfg->staging_dir, .max_bytes = fs->cfg->staging_max,
                                 .part_size = fs->cfg->part_size};
    fs->staging = lf_staging_new(fs->store, fs->up_wq, &so);
    /* What daemons that are gone left staged goes up in the background; a
     * read-only mount writes nothing, so it leaves that to another mount. */
    if (fs->staging && !fs->cfg->read_only) {
        struct lf_buf root = LF_BUF_INIT;
        if (lf_buf_printf(&root, "%s/staging", fs->cfg->cache_dir) == 0)
            fs->recovery = lf_recovery_start(fs->staging, root.data, !fs->cfg->keep_staged);
        lf_buf_free(&root);
        if (!fs->recovery)
            lf_warn("cannot look for files staged by earlier runs; the next mount will");
    } else if (fs->staging) {
        lf_info("read-only: files staged by earlier runs are left for a writable mount");
    }
    return fs->staging ? 0 : -EIO;
}

void lf_fs_free(struct lf_fs *fs)
{
    if (!fs)
        return;
    lf_recovery_stop(fs->recovery);
    lf_workq_free(fs->data_wq);
    lf_workq_free(fs->meta_wq);
    lf_meta_free(fs->meta); /* drops the nodes' staged files */
    lf_workq_free(fs->up_wq);
    lf_staging_free(fs->staging);
    lf_recovery_free(fs->recovery); /* after the staged files it adopted are let go */
    lf_bcache_free(fs->cache);
    pthread_cond_destroy(&fs->changed);
    pthread_rwlock_destroy(&fs->ns);
    free(fs->subdir);
    free(fs);
}
