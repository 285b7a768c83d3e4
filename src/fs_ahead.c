/* fs_ahead: reading ahead across the files of a directory.
 *
 * cp -r, tar, grep -r and rsync open a directory's files one after the
 * other in listing order (key order, which is also the order of the inode
 * numbers readdir hands out), and each small file costs a round trip or
 * two (its stored attributes, then its bytes) that no readahead within a
 * file can hide: at 20 ms of latency that is most of a tree copy's time.
 *
 * So when a directory's files are opened in that order, the next ones are
 * fetched ahead, in parallel on the data work queue: a HEAD for the stored
 * attributes a node lacks (published on the node, as a lookup would) and,
 * beside it rather than after it, a GET of the bytes (at the ETag the
 * listing gave) into the block cache, whose blocks are taken within the
 * budget only (lf_reader_warm). The reader's own opens and reads then
 * find both there. A program that opens files in any other order starts
 * nothing: until three opens in a row came in listing order, an open only
 * notes where the reader is.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lakefuse/buf.h"
#include "lakefuse/log.h"
#include "lakefuse/meta.h"
#include "lakefuse/readahead.h"
#include "lakefuse/workq.h"

#include "fs_int.h"

#define WALKS 8              /* directories followed at once */
#define AHEAD_FILES 32       /* files fetched ahead of the reader, at most */
#define AHEAD_BYTES (16u << 20)

struct walk {
    uint64_t dir;    /* the directory's inode; 0: free */
    size_t last;     /* listing index of the last file opened */
    size_t issued;   /* fetched ahead up to this index */
    unsigned streak; /* opens in listing order in a row */
    uint64_t used;   /* for replacing the least recent */
};

struct fs_ahead {
    pthread_mutex_t lock;
    struct walk w[WALKS];
    uint64_t clock;
};

struct ahead_job {
    struct lf_fs *fs;
    struct lf_node *node; /* a HEAD's, pinned; NULL for a GET */
    char *repo, *key;
    char etag[LF_ETAG_MAX];
    uint64_t size;
    double started;
};

struct fs_ahead *fs_ahead_new(void)
{
    struct fs_ahead *a = calloc(1, sizeof(*a));
    if (a)
        pthread_mutex_init(&a->lock, NULL);
    return a;
}

void fs_ahead_free(struct fs_ahead *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static void job_free(struct ahead_job *j)
{
    free(j->repo);
    free(j->key);
    free(j);
}

/* A HEAD job publishes what it learns on its node; a GET job warms the
 * cache with the object as the listing (or node) knew it. */
static void ahead_job(void *arg)
{
    struct ahead_job *j = arg;
    struct lf_fs *fs = j->fs;
    struct lf_obj_attr a;
    struct lf_node *n = j->node;
    if (n) {
        int rc = fs->store->ops->head(fs->store->ctx, j->repo, j->key, &a);
        lf_meta_lock(fs->meta);
        /* Unless the name changed hands meanwhile, or we changed it. */
        if (!rc && lf_meta_attached(n) && !fs_wstate_of(n) && n->attr_own < j->started &&
            !n->changing)
            fs_set_file_attr(fs, n, &a, true);
        lf_meta_unpin(fs->meta, n);
        lf_meta_unlock(fs->meta);
    } else {
        struct lf_reader *r = lf_reader_new(fs->cache, fs->store, fs->data_wq, j->repo, j->key,
                                            j->etag, j->size, &fs->ra);
        if (r) {
            lf_reader_warm(r, NULL); /* a failure is the reader's to meet, with retries */
            lf_reader_free(r);
        }
    }
    job_free(j);
}

/* The walk of directory `dir`, or a free or least recent one made its. */
static struct walk *walk_of(struct fs_ahead *a, uint64_t dir, size_t idx)
{
    struct walk *w = NULL, *old = &a->w[0];
    for (int i = 0; i < WALKS && !w; i++) {
        if (a->w[i].dir == dir)
            w = &a->w[i];
        else if (a->w[i].used < old->used)
            old = &a->w[i];
    }
    if (!w) {
        w = old;
        *w = (struct walk){.dir = dir, .last = idx, .issued = idx};
    }
    w->used = ++a->clock;
    return w;
}

/* Whether idx follows last in the listing: later, with at most one file
 * (and any directories) between them. */
static bool follows(const struct lf_listing *l, size_t last, size_t idx)
{
    if (idx <= last)
        return false;
    unsigned files = 0;
    for (size_t i = last + 1; i < idx; i++)
        files += !l->v[i].is_dir;
    return files <= 1;
}

static struct ahead_job *job_new(struct lf_fs *fs, const struct lf_node *dir,
                                 const struct lf_buf *pkey, const char *name,
                                 const struct lf_obj_attr *a)
{
    struct ahead_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->fs = fs;
    j->repo = strdup(dir->ref->repo);
    size_t kl = pkey->len + strlen(name) + 1;
    if ((j->key = malloc(kl)))
        snprintf(j->key, kl, "%s%s", pkey->data, name);
    if (!j->repo || !j->key) {
        job_free(j);
        return NULL;
    }
    snprintf(j->etag, sizeof(j->etag), "%s", a->etag);
    j->size = a->size;
    j->started = fs_now();
    return j;
}

/* With the metadata lock held: the jobs for a listing entry (a GET, and a
 * HEAD when its node lacks fresh stored attributes) into todo; how many. */
static unsigned jobs_for(struct lf_fs *fs, struct lf_node *dir, const struct lf_buf *pkey,
                         const struct lf_dent *d, struct ahead_job **todo)
{
    if (d->is_dir || d->attr.size == 0 || d->attr.size > LF_WARM_MAX)
        return 0;
    struct lf_node *c = lf_meta_child(fs->meta, dir, d->name);
    if (c && (c->kind != LF_FILE || fs_wstate_of(c)))
        return 0; /* staged: reads come from the staged file */
    unsigned n = 0;
    if ((todo[n] = job_new(fs, dir, pkey, d->name, c ? &c->attr : &d->attr)))
        n++;
    if (c && (!c->meta_known || c->attr_expiry <= fs_now()) &&
        (todo[n] = job_new(fs, dir, pkey, d->name, &c->attr))) {
        lf_meta_pin(c);
        todo[n++]->node = c;
    }
    return n;
}

void fs_ahead_opened(struct lf_fs *fs, struct lf_node *n)
{
    struct ahead_job *todo[2 * AHEAD_FILES];
    unsigned ntodo = 0;
    struct lf_buf pkey = LF_BUF_INIT;
    if (!fs->ahead)
        return;
    lf_meta_lock(fs->meta);
    struct lf_node *dir = n->parent;
    const struct lf_listing *l = dir ? dir->listing : NULL;
    const struct lf_dent *d = l && lf_meta_attached(n) ? lf_listing_find(l, n->name) : NULL;
    if (!d || d->is_dir) {
        lf_meta_unlock(fs->meta);
        return;
    }
    size_t idx = (size_t)(d - l->v);
    pthread_mutex_lock(&fs->ahead->lock);
    struct walk *w = walk_of(fs->ahead, dir->ino, idx);
    w->streak = follows(l, w->last, idx) ? w->streak + 1 : 0;
    w->last = idx;
    if (w->streak < 2) {
        w->issued = idx;
    } else if (fs_node_key(fs, dir, true, &pkey) == 0) {
        /* Three opens in order: a walk, not chance (a reader picking a
         * quarter of the files at random meets two in a row now and then).
         * Keep 4, 8, 16, then AHEAD_FILES files fetched ahead of it. */
        size_t ahead = (size_t)4 << (w->streak - 2 < 3 ? w->streak - 2 : 3);
        ahead = ahead < AHEAD_FILES ? ahead : AHEAD_FILES;
        size_t i = (w->issued > idx ? w->issued : idx) + 1;
        size_t to = idx + 1 + ahead < l->n ? idx + 1 + ahead : l->n;
        uint64_t bytes = 0;
        for (; i < to && bytes < AHEAD_BYTES; i++) {
            unsigned k = jobs_for(fs, dir, &pkey, &l->v[i], todo + ntodo);
            bytes += k ? todo[ntodo]->size : 0;
            ntodo += k;
        }
        if (i > idx + 1)
            w->issued = i - 1; /* the next open goes on from there */
    }
    pthread_mutex_unlock(&fs->ahead->lock);
    lf_meta_unlock(fs->meta);
    lf_buf_free(&pkey);
    for (unsigned i = 0; i < ntodo; i++) {
        if (lf_workq_submit(fs->data_wq, ahead_job, todo[i]) == 0)
            continue;
        /* No memory to queue it: it was only a guess. */
        if (todo[i]->node) {
            lf_meta_lock(fs->meta);
            lf_meta_unpin(fs->meta, todo[i]->node);
            lf_meta_unlock(fs->meta);
        }
        job_free(todo[i]);
    }
}
