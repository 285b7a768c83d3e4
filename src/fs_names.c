/* fs_names: the name space. Lookup (with what it costs, fs_int.h), the
 * kernel's forgets, and every operation that makes, removes or moves a
 * name on the gateway (create, mknod, mkdir, unlink, rmdir, rename), with
 * the machinery they share: the parent and key of a change (change_begin),
 * the name-space lock fs->ns, and the `changing` marks that keep write
 * state away from a name while the gateway changes it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lakefuse/buf.h"
#include "lakefuse/log.h"
#include "lakefuse/meta.h"
#include "lakefuse/staging.h"
#include "lakefuse/uri.h"
#include "lakefuse/workq.h"

#include "fs_int.h"

/* The ETag of a directory marker (an empty object), the version an rmdir
 * means to delete. */
#define EMPTY_MD5 "d41d8cd98f00b204e9800998ecf8427e"

/* ---- small helpers ------------------------------------------------------ */

void fs_ns_enter(struct lf_fs *fs, bool alone)
{
    if (alone)
        pthread_rwlock_wrlock(&fs->ns);
    else
        pthread_rwlock_rdlock(&fs->ns);
}

void fs_ns_leave(struct lf_fs *fs) { pthread_rwlock_unlock(&fs->ns); }

static void reply_entry_or_err(fuse_req_t req, int rc, const struct fuse_entry_param *e)
{
    if (rc)
        fuse_reply_err(req, fs_reply_errno(rc));
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

/* The full key of a node below its ref ("<ref>/a/b"), or of a directory's
 * listing prefix ("<ref>/a/b/") when as_dir. Every key is built here, so a
 * mounted subdirectory (fs->subdir) is joined in once for all operations. */
int fs_node_key(struct lf_fs *fs, struct lf_node *n, bool as_dir, struct lf_buf *out)
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

/* ---- lookup -------------------------------------------------------------- */

struct lf_refinfo *fs_new_ref(struct lf_fs *fs, const char *repo, const char *name,
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
    rc = fs_node_key(fs, parent, true, &key);
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
        /* A refusal is the gateway's verdict on our keys, said once by
         * the store, not once per name. */
        if (rc == -EACCES)
            lf_dbg("lookup of '%s' in %s failed: %s", name, repo, strerror(-rc));
        else
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

void fs_op_lookup(fuse_req_t req, fuse_ino_t parent_ino, const char *name)
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
        if (own && own->kind == LF_FILE && fs_wstate_of(own) &&
            lf_sfile_has_data(fs_wstate_of(own)->sf)) {
            fs_make_entry(fs, own, &e);
            lf_meta_unlock(fs->meta);
            fuse_reply_entry(req, &e);
            return;
        }
        /* On the second pass the listing was just loaded: use it even
         * with a zero TTL. */
        bool usable = fs_listing_fresh(p) || (pass == 1 && p->listing && p->listing->complete);
        if (usable) {
            const struct lf_dent *d = lf_listing_find(p->listing, name);
            if (d) {
                struct lf_node *c = fs_child_from_dent(fs, p, p->listing, d);
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
                    rc = fs_refresh_file(fs, c, true);
                    lf_meta_lock(fs->meta);
                    if (!rc)
                        fs_make_entry(fs, c, &e);
                    lf_meta_unpin(fs->meta, c);
                    lf_meta_unlock(fs->meta);
                    if (rc == -ENOENT)
                        reply_negative(req, 0);
                    else if (rc)
                        fuse_reply_err(req, fs_reply_errno(rc));
                    else
                        fuse_reply_entry(req, &e);
                    return;
                }
                fs_make_entry(fs, c, &e);
                lf_meta_unlock(fs->meta);
                fuse_reply_entry(req, &e);
                return;
            }
            if (p->kind != LF_REPO) {
                double ttl = fs_ttl_of(fs, p);
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
            rc = fs_load_listing(fs, p);
            if (rc == 0)
                continue;
            if (rc != -ENOENT)
                break;
        }

        if (pk == LF_ROOT || (pk == LF_REPO && !fresh)) {
            /* Repositories and branches: one listing answers every name. */
            free(repo);
            rc = pass == 0 ? fs_load_listing(fs, p) : -ENOENT;
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
                struct lf_refinfo *r = fs_new_ref(fs, repo, name, false);
                lf_meta_lock(fs->meta);
                struct lf_node *c = r ? lf_meta_child_get(fs->meta, p, name, LF_REF, r) : NULL;
                lf_refinfo_put(r);
                if (c)
                    fs_make_entry(fs, c, &e);
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
            fs_set_file_attr(fs, c, &attr, true);
        if (c)
            fs_make_entry(fs, c, &e);
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
        double ttl = p ? fs_ttl_of(fs, p) : 0;
        lf_meta_unlock(fs->meta);
        reply_negative(req, ttl);
        return;
    }
    fuse_reply_err(req, fs_reply_errno(rc));
}

void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    struct lf_fs *fs = fs_of(req);
    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_get(fs->meta, ino);
    if (n)
        lf_meta_forget(fs->meta, n, nlookup);
    lf_meta_unlock(fs->meta);
    fuse_reply_none(req);
}

void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
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

/* ---- changes -------------------------------------------------------------- */

/* Where a change may happen: a branch of a writable mount. Lock held. */
int fs_check_writable(const struct lf_fs *fs, const struct lf_node *n)
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
 * ns, holds the name space shared until change_end (see fs_int.h). */
static int change_begin_ns(struct lf_fs *fs, fuse_ino_t parent_ino, const char *name,
                           struct change *c, bool ns)
{
    memset(c, 0, sizeof(*c));
    if (ns)
        fs_ns_enter(fs, false);
    c->ns = ns;
    if (strlen(name) > LF_NAME_MAX)
        return -ENAMETOOLONG;
    lf_meta_lock(fs->meta);
    struct lf_node *p = lf_meta_get(fs->meta, parent_ino);
    int rc = fs_check_writable(fs, p);
    if (!rc && p->kind == LF_FILE)
        rc = -ENOTDIR;
    if (!rc)
        rc = fs_node_key(fs, p, true, &c->key);
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
        fs_ns_leave(fs);
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
void fs_listing_note(struct lf_node *parent, const char *name, bool is_dir,
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

/* Is an unlink or rename of n, or of a directory above it, under way? Lock held. */
static bool under_change(const struct lf_node *n)
{
    for (; n; n = n->parent)
        if (n->changing)
            return true;
    return false;
}

/* Marks a name as changing on the gateway (unlink, rename); see the top of
 * fs_int.h. Lock held; the node must be pinned by the caller. */
void fs_change_mark(struct lf_node *n)
{
    if (n)
        n->changing++;
}

void fs_change_unmark(struct lf_fs *fs, struct lf_node *n)
{
    if (n && --n->changing == 0)
        pthread_cond_broadcast(&fs->changed);
}

void fs_wait_no_change(struct lf_fs *fs, const struct lf_node *n)
{
    while (under_change(n))
        lf_meta_wait(fs->meta, &fs->changed);
}

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                  struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    struct fuse_entry_param e;
    struct change c = {0};
    struct lf_sfile *sf = NULL;
    struct fileh *fh = fs_fileh_alloc();
    struct wstate *w = calloc(1, sizeof(*w));
    int rc = fh && w ? change_begin(fs, parent, name, &c) : -ENOMEM;
    if (!rc)
        rc = lf_sfile_new(fs->staging, c.repo, c.key.data, NULL, &sf);
    if (rc)
        goto out;
    struct lf_put_meta meta = {.has = LF_ATTR_MODE | LF_ATTR_UID | LF_ATTR_GID | LF_ATTR_MTIME,
                               .mode = S_IFREG | (mode & 07777), .uid = ctx->uid,
                               .gid = ctx->gid};
    fs_now_realtime(&meta.mtime);
    lf_sfile_set_meta(sf, &meta, false);

    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_child(fs->meta, c.parent, name);
    struct lf_sfile *old = NULL;
    if (n && fs_wstate_of(n)) {
        /* The kernel thought the name free while we still stage a file
         * under it: that file is replaced, and keeps its own node for
         * the descriptors that hold it (a new file created over it, as
         * O_CREAT without O_EXCL after our listing said it was gone). */
        old = fs_wstate_of(n)->sf;
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
    n->attr_expiry = fs_now() + fs_ttl_of(fs, n);
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
    fs_wstate_settle(fs, n);
    fs_listing_note(c.parent, name, false, &n->attr, false);
    fs_make_entry(fs, n, &e);
    lf_meta_unlock(fs->meta);
    if (old) {
        /* Before the new file can be uploaded: an upload of the old one
         * under way lands first. If the old one was stored, the name
         * holds our own object, which the new file replaces. */
        lf_sfile_discard(old);
        if (!lf_sfile_created_here(old))
            lf_sfile_replaces(fh->sf);
        lf_sfile_unref(old);
    }
    fi->fh = (uintptr_t)fh;
    fs_count_open(fs, fh);
    fs_fileh_track(fs, fh);
    if (fuse_reply_create(req, &e, fi) != 0) {
        /* The caller went away: no release will come for this handle.
         * The name was visible meanwhile, so the (empty) file is stored
         * as if created and closed. */
        lf_warn("create of %s: the caller went away", c.key.data);
        lf_meta_lock(fs->meta);
        if (n->nlookup) /* fs_make_entry's, which the kernel never got; fh pins n */
            n->nlookup--;
        lf_meta_unlock(fs->meta);
        fs_fileh_free(fs, fh);
    }
    fh = NULL;
out:
    if (rc)
        fuse_reply_err(req, fs_reply_errno(rc));
    lf_sfile_unref(sf);
    free(w);
    free(fh);
    change_end(fs, &c);
}

void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
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
    fs_now_realtime(&meta.mtime);
    int rc = change_begin(fs, parent, name, &c);
    if (!rc)
        rc = fs->store->ops->put(fs->store->ctx, c.repo, c.key.data, &empty, &meta,
                                 LF_PUT_IF_ABSENT, a.etag);
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
            fs_set_file_attr(fs, n, &a, true);
            fs_listing_note(c.parent, name, false, &a, false);
            fs_make_entry(fs, n, &e);
        }
        lf_meta_unlock(fs->meta);
        rc = n ? 0 : -ENOMEM;
    }
    reply_entry_or_err(req, rc, &e);
    change_end(fs, &c);
}

void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
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
            l->expiry = fs_now() + fs_ttl_of(fs, n);
            lf_listing_put(n->listing);
            n->listing = l;
            fs_listing_note(c.parent, name, true, NULL, false);
            fs_make_entry(fs, n, &e);
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
    fs_listing_note(parent, name, is_dir, NULL, true);
    lf_meta_unlock(fs->meta);
}

void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct lf_fs *fs = fs_of(req);
    struct change c;
    struct lf_node *n = NULL;
    struct lf_sfile *sf = NULL;
    bool keep = false, pending = false;
    bool ours_only = false; /* nothing of it on the gateway: delete nothing there */
    char etag[LF_ETAG_MAX] = ""; /* the version we mean to delete, if known */
    int rc = change_begin(fs, parent, name, &c);
    if (!rc) {
        lf_meta_lock(fs->meta);
        n = lf_meta_child(fs->meta, c.parent, name);
        if (n && n->kind != LF_FILE)
            rc = -EISDIR;
        if (!rc && n) {
            lf_meta_pin(n);
            fs_change_mark(n);
            snprintf(etag, sizeof(etag), "%s", n->attr.etag);
            struct wstate *w = fs_wstate_of(n);
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
        /* Created here and never stored (its create lost to another
         * client's, say): what the name holds is not ours to delete. */
        ours_only = lf_sfile_created_here(sf);
    }
    if (!rc && !ours_only)
        rc = fs->store->ops->remove(fs->store->ctx, c.repo, c.key.data, etag);
    if (!rc)
        forget_name(fs, c.parent, name, false);
    else if (sf)
        lf_sfile_restore(sf, pending); /* the name stays, and so does its content */
    lf_sfile_unref(sf);
    if (n) {
        lf_meta_lock(fs->meta);
        fs_change_unmark(fs, n);
        fs_wstate_settle(fs, n);
        lf_meta_unpin(fs->meta, n);
        lf_meta_unlock(fs->meta);
    }
    fuse_reply_err(req, rc ? fs_reply_errno(rc) : 0);
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

void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct lf_fs *fs = fs_of(req);
    struct change c;
    int rc = change_begin(fs, parent, name, &c);
    if (!rc)
        rc = lf_buf_puts(&c.key, "/");
    if (!rc)
        rc = dir_is_empty(fs, c.repo, c.key.data);
    if (!rc)
        rc = fs->store->ops->remove(fs->store->ctx, c.repo, c.key.data, EMPTY_MD5);
    if (!rc)
        forget_name(fs, c.parent, name, true);
    fuse_reply_err(req, rc ? fs_reply_errno(rc) : 0);
    change_end(fs, &c);
}

/* What is at parent/name: 0 with *kind, or -ENOENT. */
static int probe_name(struct lf_fs *fs, struct lf_node *parent, const char *name,
                      enum lf_kind *kind, struct lf_obj_attr *attr)
{
    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_child(fs->meta, parent, name);
    if (n && fs_wstate_of(n) && lf_sfile_has_data(fs_wstate_of(n)->sf)) {
        *kind = LF_FILE;
        *attr = n->attr;
        lf_meta_unlock(fs->meta);
        return 0;
    }
    if (fs_listing_fresh(parent)) {
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
    char (*etags)[LF_ETAG_MAX]; /* each key's version, as listed */
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
                if (nk)
                    t->keys = nk;
                char(*ne)[LF_ETAG_MAX] = nk ? realloc(t->etags, cap * sizeof(*ne)) : NULL;
                if (!ne) {
                    rc = -ENOMEM;
                    break;
                }
                t->etags = ne;
            }
            memcpy(t->etags[t->n], page.entries[i].attr.etag, LF_ETAG_MAX);
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
        if (!rc && t->fs->staging)
            lf_staging_note_own(t->fs->staging, t->repo, to.data, etag);
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
        rc = fs->store->ops->remove(fs->store->ctx, repo, t.keys[i], t.etags[i]);
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
    free(t.etags);
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
    char etag[LF_ETAG_MAX] = ""; /* src's version (a copy carries it), for the delete */
    int rc;
    *flushed = false;
    lf_meta_lock(fs->meta);
    if (n)
        snprintf(etag, sizeof(etag), "%s", n->attr.etag);
    struct wstate *w = n ? fs_wstate_of(n) : NULL;
    if (w) { /* stable: nothing makes or drops a state while n is changing */
        sf = w->sf;
        lf_sfile_ref(sf);
        w->writers++; /* ours, for the time of the rename */
        writer = w->writers > 1;
    }
    lf_meta_unlock(fs->meta);
    if (!sf) {
        rc = fs->store->ops->copy(fs->store->ctx, repo, src, dst, NULL, etag);
        if (!rc && fs->staging)
            lf_staging_note_own(fs->staging, repo, dst, etag);
        return rc ? rc : fs->store->ops->remove(fs->store->ctx, repo, src, etag);
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
        if (!rc && fs->staging)
            lf_staging_note_own(fs->staging, repo, dst, etag);
        if (!rc)
            rc = lf_sfile_rename(sf, dst, &gen);
    }
    /* Created here and never stored: src holds nothing of ours (perhaps
     * another client's object, whose create won), so nothing is deleted
     * there. Asked only now: the re-key waited for an upload under way,
     * which may have just stored it at src. */
    bool src_ours = rc >= 0 && !lf_sfile_created_at(sf, src);
    /* With no writer left (or if the last one's release settled the file
     * meanwhile, its upload done under the old name), the new name gets
     * it now, before the old one goes. So it does when every change was
     * seen by a close or fsync (whose upload failed: a create another
     * client won) and the handle's release has not come yet: nobody
     * would store it otherwise. An active writer's close stores it. */
    bool idle = false;
    if (rc == 1 && writer) {
        lf_meta_lock(fs->meta);
        idle = w->synced && w->synced_gen == gen;
        lf_meta_unlock(fs->meta);
    }
    if (rc == 1 && (!writer || idle)) {
        rc = lf_sfile_flush(sf, stored);
        if (rc)
            lf_sfile_rename(sf, src, NULL); /* back: staged under its old name */
        *flushed = !rc;
    }
    if (rc >= 0)
        rc = src_ours ? fs->store->ops->remove(fs->store->ctx, repo, src, etag) : 0;
    fs_writer_done(fs, n, sf); /* the handles' releases may have come meanwhile */
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

void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
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
        fs_ns_enter(fs, alone);
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
        fs_ns_leave(fs);
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
                rc = fs->store->ops->remove(fs->store->ctx, to.repo, p.data, EMPTY_MD5);
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
            fs_change_mark(x);
        }
    }
    bool tkeep = false;
    if (t && fs_wstate_of(t)) {
        tsf = fs_wstate_of(t)->sf;
        lf_sfile_ref(tsf);
        tkeep = fs_wstate_of(t)->writers > 0;
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
            n->attr_expiry = fs_now() + fs_ttl_of(fs, n);
            n->attr_own = fs_now();
            snprintf(n->cached_etag, sizeof(n->cached_etag), "%s", stored.etag);
        }
        if (kind == LF_FILE)
            attr = n->attr;
    } else if (t) {
        lf_meta_detach(fs->meta, t);
    }
    fs_listing_note(from.parent, name, kind != LF_FILE, NULL, true);
    if (trc == 0 && tkind != kind)
        fs_listing_note(to.parent, newname, tkind != LF_FILE, NULL, true);
    fs_listing_note(to.parent, newname, kind != LF_FILE, kind == LF_FILE ? &attr : NULL, false);
    lf_meta_unlock(fs->meta);
out:
    lf_meta_lock(fs->meta);
    for (int i = 0; i < 2; i++) {
        struct lf_node *x = i ? t : n;
        if (x) {
            fs_change_unmark(fs, x);
            fs_wstate_settle(fs, x);
            lf_meta_unpin(fs->meta, x);
        }
    }
    lf_meta_unlock(fs->meta);
    lf_sfile_unref(tsf);
    fuse_reply_err(req, rc ? fs_reply_errno(rc) : 0);
    change_end(fs, &from);
    change_end(fs, &to);
    fs_ns_leave(fs);
}

void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    struct lf_fs *fs = fs_of(req);
    lf_meta_lock(fs->meta);
    int rc = fs_check_writable(fs, lf_meta_get(fs->meta, parent));
    lf_meta_unlock(fs->meta);
    fuse_reply_err(req, rc ? -rc : EPERM); /* objects cannot be links */
}

void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct lf_fs *fs = fs_of(req);
    lf_meta_lock(fs->meta);
    int rc = fs_check_writable(fs, lf_meta_get(fs->meta, newparent));
    lf_meta_unlock(fs->meta);
    fuse_reply_err(req, rc ? -rc : EPERM);
}
