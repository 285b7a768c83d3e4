/* fs_dir: directories. Listings fetched page by page and cached on the
 * directory's node (lookups answer from them), the nodes made from their
 * entries, and opendir, readdir(plus) and releasedir, which hand out a
 * listing's attributes so `ls -l` needs no request per entry.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lakefuse/buf.h"
#include "lakefuse/log.h"
#include "lakefuse/meta.h"

#include "fs_int.h"

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
        rc = fs_node_key(fs, n, true, &b);
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

/* Staged files of the directory that the gateway cannot list yet (see
 * lf_staging_pending_names); none above a ref. */
static void pending_names(struct lf_fs *fs, enum lf_kind kind, const char *repo,
                          const char *prefix, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    if (fs->staging && (kind == LF_REF || kind == LF_DIR) &&
        lf_staging_pending_names(fs->staging, repo, prefix, names, n) != 0)
        lf_warn("listing %s/%s: cannot tell which staged files it lacks (out of memory)", repo,
                prefix);
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Puts the staged names a published listing lacks into it. Lock held. */
static void listing_add_pending(struct lf_node *n, char **names, size_t nn)
{
    for (size_t i = 0; i < nn && n->listing; i++) {
        if (lf_listing_find(n->listing, names[i]))
            continue;
        if (lf_listing_upsert(&n->listing, names[i], false, NULL) != 0) {
            lf_listing_put(n->listing); /* cannot keep it true: the next access lists again */
            n->listing = NULL;
        }
    }
}

/* Lists a whole directory and caches it on the node. */
int fs_load_listing(struct lf_fs *fs, struct lf_node *n)
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
        l->started = fs_now();
        l->changes = changes;
    }
    while (!rc) {
        rc = fetch_page(fs, kind, repo, prefix, &token, l);
        if (!token)
            break;
    }
    if (!rc) {
        char **pend;
        size_t npend;
        pending_names(fs, kind, repo, prefix, &pend, &npend);
        l->complete = true;
        lf_meta_lock(fs->meta);
        if (n->changes == changes || !n->listing) {
            l->expiry = fs_now() + fs_ttl_of(fs, n);
            lf_listing_put(n->listing);
            n->listing = l;
            l = NULL;
            listing_add_pending(n, pend, npend);
        }
        names_free(pend, npend);
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

bool fs_listing_fresh(const struct lf_node *n)
{
    return n->listing && n->listing->complete && n->listing->expiry > fs_now();
}

/* Creates (or finds) the child for an entry of listing l. Lock held. */
struct lf_node *fs_child_from_dent(struct lf_fs *fs, struct lf_node *parent,
                                   const struct lf_listing *l, const struct lf_dent *d)
{
    struct lf_node *c;
    if (parent->kind == LF_ROOT)
        return lf_meta_child_get(fs->meta, parent, d->name, LF_REPO, NULL);
    if (parent->kind == LF_REPO) {
        c = lf_meta_child(fs->meta, parent, d->name);
        if (c && c->kind == LF_REF && c->ref->writable == !fs->cfg->read_only)
            return c;
        struct lf_refinfo *r = fs_new_ref(fs, parent->name, d->name, true);
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
        fs_set_file_attr(fs, c, &d->attr, false);
    return c;
}

/* ---- directories ------------------------------------------------------------ */

static void dirh_free(struct dirh *d)
{
    if (!d)
        return;
    lf_listing_put(d->listing);
    names_free(d->extra, d->nextra);
    free(d->prefix);
    free(d->token);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
        if (fs_listing_fresh(n)) {
            d->listing = n->listing;
            lf_listing_get(d->listing);
            d->done = true;
        } else {
            d->listing = lf_listing_new();
            if (d->listing) {
                d->listing->started = fs_now();
                d->listing->changes = n->changes;
            }
            d->changes = n->changes;
            rc = d->listing ? dir_location(fs, n, &repo, &d->prefix) : -ENOMEM;
        }
    }
    enum lf_kind kind = n ? n->kind : LF_ROOT;
    lf_meta_unlock(fs->meta);
    if (!rc && d->prefix)
        pending_names(fs, kind, repo, d->prefix, &d->extra, &d->nextra);
    free(repo);
    if (rc) {
        if (d && d->node) {
            lf_meta_lock(fs->meta);
            lf_meta_unpin(fs->meta, d->node);
            lf_meta_unlock(fs->meta);
        }
        dirh_free(d);
        fuse_reply_err(req, fs_reply_errno(rc));
        return;
    }
    fi->fh = (uintptr_t)d;
    /* Commit trees never change: let the kernel cache their listings. */
    fi->cache_readdir = n->ref && n->ref->immutable;
    fi->keep_cache = fi->cache_readdir;
    pthread_mutex_lock(&fs->handles_lock);
    d->next = fs->dirs;
    if (fs->dirs)
        fs->dirs->prev = d;
    fs->dirs = d;
    pthread_mutex_unlock(&fs->handles_lock);
    if (fuse_reply_open(req, fi) != 0) /* the caller went away: no releasedir */
        fs_dir_release(fs, d);
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
                d->listing->expiry = fs_now() + fs_ttl_of(fs, d->node);
                lf_listing_put(d->node->listing);
                d->node->listing = d->listing;
                lf_listing_get(d->listing);
                listing_add_pending(d->node, d->extra, d->nextra);
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
            fs_fill_stat(fs, n, &e.attr);
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
        if ((rc = dir_fill(fs, d, idx)))
            break;
        struct lf_node *c;
        if (idx < d->listing->n) {
            const struct lf_dent *de = &d->listing->v[idx];
            name = de->name;
            lf_meta_lock(fs->meta);
            c = fs_child_from_dent(fs, d->node, d->listing, de);
            if (!c) {
                lf_meta_unlock(fs->meta);
                rc = -ENOMEM;
                break;
            }
        } else if (idx - d->listing->n < d->nextra) {
            /* A staged file the gateway's pages lacked: its own node
             * (its offset stays its own, whether served or skipped). */
            name = d->extra[idx - d->listing->n];
            if (lf_listing_find(d->listing, name))
                continue;
            lf_meta_lock(fs->meta);
            c = lf_meta_child(fs->meta, d->node, name);
            if (!c || c->kind != LF_FILE || !lf_meta_attached(c)) {
                lf_meta_unlock(fs->meta);
                continue;
            }
        } else {
            break;
        }
        memset(&e, 0, sizeof(e));
        e.ino = c->ino;
        /* A detached node (see fs_child_from_dent) is asked about again; a
         * file whose stored mode and times are not known yet is asked
         * about after LISTING_ATTR_MAX even under a commit, where the
         * listing's defaults would otherwise stay for good. */
        e.attr_timeout = e.entry_timeout = lf_meta_attached(c) ? fs_ttl_of(fs, c) : 0;
        if (c->kind == LF_FILE && !c->meta_known && e.attr_timeout > LISTING_ATTR_MAX)
            e.attr_timeout = LISTING_ATTR_MAX;
        fs_fill_stat(fs, c, &e.attr);
        need = plus ? fuse_add_direntry_plus(req, buf + pos, size - pos, name, &e, o + 1)
                    : fuse_add_direntry(req, buf + pos, size - pos, name, &e.attr, o + 1);
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
        fuse_reply_err(req, fs_reply_errno(rc));
    else
        fuse_reply_buf(req, buf, pos);
    free(buf);
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, false);
}

void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, true);
}

void fs_dir_release(struct lf_fs *fs, struct dirh *d)
{
    pthread_mutex_lock(&fs->handles_lock);
    if (d->prev)
        d->prev->next = d->next;
    else
        fs->dirs = d->next;
    if (d->next)
        d->next->prev = d->prev;
    pthread_mutex_unlock(&fs->handles_lock);
    lf_meta_lock(fs->meta);
    lf_meta_unpin(fs->meta, d->node);
    lf_meta_unlock(fs->meta);
    dirh_free(d);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fs_dir_release(fs_of(req), (struct dirh *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}
