/* fs_attr: attributes. What the kernel is told of a node (fs_fill_stat,
 * fs_make_entry) and for how long (fs_ttl_of); keeping a file's attributes fresh
 * (fs_refresh_file: a HEAD); getattr, and setattr's truncate, chmod, chown
 * and utimens, which ride along with a pending upload or copy the object
 * onto itself. Also the unmount flush, asked for through an xattr.
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

#include "fs_int.h"

/* ---- what the kernel is told -------------------------------------------- */

double fs_ttl_of(const struct lf_fs *fs, const struct lf_node *n)
{
    if (!n->ref)
        return fs->cfg->repo_ttl;
    if (n->ref->immutable)
        return FOREVER;
    return n->ref->writable ? fs->cfg->branch_ttl : fs->cfg->ref_ttl;
}

static bool is_dir_kind(enum lf_kind k) { return k != LF_FILE; }

void fs_fill_stat(const struct lf_fs *fs, const struct lf_node *n, struct stat *st)
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
        fs_staged_size(n, &size);
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
void fs_make_entry(struct lf_fs *fs, struct lf_node *n, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    n->nlookup++;
    e->ino = n->ino;
    e->attr_timeout = fs_ttl_of(fs, n);
    e->entry_timeout = e->attr_timeout;
    fs_fill_stat(fs, n, &e->attr);
}

/* Records a file's attributes: from a HEAD (stored), or from a listing,
 * which carries no POSIX metadata, so a listing of the same content keeps
 * what a HEAD told. */
void fs_set_file_attr(struct lf_fs *fs, struct lf_node *n, const struct lf_obj_attr *a,
                      bool stored)
{
    if (!stored && n->meta_known && lf_etag_same(n->attr.etag, a->etag)) {
        /* keep n->attr: same bytes, richer metadata */
    } else {
        n->attr = *a;
        n->meta_known = stored;
    }
    n->attr_expiry = fs_now() + fs_ttl_of(fs, n);
}

/* ---- attributes ------------------------------------------------------------ */

/* Makes a file node's attributes fresh (one HEAD when stale); with
 * need_meta, also when its stored mode and times are not known yet (a
 * read needs only the size and ETag a listing gives). */
int fs_refresh_file(struct lf_fs *fs, struct lf_node *n, bool need_meta)
{
    struct lf_buf key = LF_BUF_INIT;
    struct lf_obj_attr a;
    lf_meta_lock(fs->meta);
    /* While the node is staged, the staged file is the truth: the object
     * may not even exist yet (a file created and not closed). Attributes
     * from a listing lack the stored mode and times: not fresh for this. */
    bool fresh = (n->attr_expiry > fs_now() && (n->meta_known || !need_meta)) || fs_wstate_of(n);
    char *repo = fresh ? NULL : strdup(n->ref->repo);
    int rc = fresh ? 0 : fs_node_key(fs, n, false, &key);
    lf_meta_unlock(fs->meta);
    if (fresh)
        return 0;
    if (!rc && !repo)
        rc = -ENOMEM;
    if (!rc)
        rc = fs->store->ops->head(fs->store->ctx, repo, key.data, &a);
    if (!rc) {
        lf_meta_lock(fs->meta);
        fs_set_file_attr(fs, n, &a, true);
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
    fs_fill_stat(fs, n, &st);
    double ttl = fs_ttl_of(fs, n);
    lf_meta_unpin(fs->meta, n);
    lf_meta_unlock(fs->meta);
    if (rc)
        fuse_reply_err(req, fs_reply_errno(rc));
    else
        fuse_reply_attr(req, &st, ttl);
}

void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
    int rc = n->kind == LF_FILE ? fs_refresh_file(fs, n, true) : 0;
    reply_attr_unpin(fs, req, n, rc);
}

struct lf_put_meta fs_meta_of(const struct lf_fs *fs, const struct lf_node *n)
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

/* chmod, chown, utimens of a file that is not being written: the object
 * is copied onto itself with the new metadata (what S3 offers). Nothing
 * is sent when nothing changes. */
static int set_object_meta(struct lf_fs *fs, struct lf_node *n, const struct lf_put_meta *m)
{
    struct lf_buf key = LF_BUF_INIT;
    char etag[LF_ETAG_MAX];
    int rc = fs_refresh_file(fs, n, true);
    fs_ns_enter(fs, false); /* the key stays the object's until the copy is done */
    lf_meta_lock(fs->meta);
    fs_wait_no_change(fs, n);
    struct lf_put_meta cur = fs_meta_of(fs, n);
    bool same = (n->attr.has & (LF_ATTR_MODE | LF_ATTR_UID | LF_ATTR_GID | LF_ATTR_MTIME)) ==
                    (LF_ATTR_MODE | LF_ATTR_UID | LF_ATTR_GID | LF_ATTR_MTIME) &&
                cur.mode == m->mode && cur.uid == m->uid && cur.gid == m->gid &&
                cur.mtime.tv_sec == m->mtime.tv_sec && cur.mtime.tv_nsec == m->mtime.tv_nsec;
    char *repo = rc || same ? NULL : strdup(n->ref->repo);
    if (!rc && !same)
        rc = repo ? fs_node_key(fs, n, false, &key) : -ENOMEM;
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
        n->attr_expiry = fs_now() + fs_ttl_of(fs, n);
        n->attr_own = fs_now();
        n->meta_known = true;
        lf_meta_unlock(fs->meta);
    }
    fs_ns_leave(fs);
    free(repo);
    lf_buf_free(&key);
    return rc;
}

void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                   struct fuse_file_info *fi)
{
    struct lf_fs *fs = fs_of(req);
    struct lf_sfile *held = NULL; /* a writer's count while we truncate */
    int rc;
    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_get(fs->meta, ino);
    rc = fs_check_writable(fs, n);
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
        if ((rc = fs_wstate_get(fs, n, &held)) ||
            (rc = lf_sfile_truncate(held, (uint64_t)attr->st_size)))
            goto reply;
    }
    unsigned mt = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
                  FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW;
    if (to_set & mt) {
        lf_meta_lock(fs->meta);
        struct lf_put_meta m = fs_meta_of(fs, n);
        w = fs_wstate_of(n);
        if (to_set & FUSE_SET_ATTR_MODE)
            m.mode = (m.mode & ~07777u) | (attr->st_mode & 07777);
        if (to_set & FUSE_SET_ATTR_UID)
            m.uid = attr->st_uid;
        if (to_set & FUSE_SET_ATTR_GID)
            m.gid = attr->st_gid;
        if (to_set & FUSE_SET_ATTR_MTIME_NOW)
            fs_now_realtime(&m.mtime);
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
            n->attr_own = fs_now();
            lf_meta_unlock(fs->meta);
        } else {
            rc = set_object_meta(fs, n, &m);
        }
    }
    /* truncate(2) or chmod of a file nobody has open for writing: no
     * close will come, so store it now. */
    lf_meta_lock(fs->meta);
    w = fs_wstate_of(n);
    unsigned others = held ? 1 : 0;
    bool now_flush = !rc && w && w->writers == others && lf_sfile_dirty(w->sf);
    struct lf_sfile *sf = now_flush ? w->sf : NULL;
    if (sf)
        lf_sfile_ref(sf);
    lf_meta_unlock(fs->meta);
    if (sf) {
        rc = fs_flush_node(fs, n, sf);
        lf_sfile_unref(sf);
    }
reply:
    if (held)
        fs_writer_done(fs, n, held);
    reply_attr_unpin(fs, req, n, rc);
}

/* ---- the unmount flush -------------------------------------------------- */

/* `lakefuse unmount` asks for every staged file to be uploaded before it
 * unmounts, through this attribute of any directory, and learns whether
 * that worked. */
#define FLUSH_XATTR "user.lakefuse.flush"

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
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
