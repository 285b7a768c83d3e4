/* meta: the inode table and the listing snapshots behind it.
 *
 * A node is one name the kernel knows: the root, a repository, a ref (the
 * top of a branch, tag, commit or expression), a directory or a file under
 * a ref. Nodes live while the kernel holds lookups on them (nlookup) or
 * while something inside lakefuse pins them (children, open handles).
 *
 * A listing is one directory's entries in key order, exactly as the
 * gateway's ListObjectsV2 pages returned them (files and sub-directories
 * merged), shared by reference between the node's cache and open
 * directory handles. Key order makes lookups a binary search without
 * re-sorting: a directory "x" sorts as "x/", a file as "x".
 *
 * Locking: the caller holds the table's mutex (lf_meta_lock) around every
 * call here except listing building, which works on a private listing.
 */
#ifndef LAKEFUSE_META_H
#define LAKEFUSE_META_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lakefuse/buf.h"
#include "lakefuse/store.h"

enum lf_kind { LF_ROOT, LF_REPO, LF_REF, LF_DIR, LF_FILE };

/* What a ref is, shared by every node under it. */
struct lf_refinfo {
    unsigned refs;
    char *repo;
    char *name;
    bool immutable; /* a full commit ID: cache everything forever */
    bool writable;  /* a branch, and the mount is not read-only */
};

struct lf_dent {
    char *name;
    bool is_dir;
    struct lf_obj_attr attr; /* files only */
};

struct lf_listing {
    unsigned refs;
    struct lf_dent *v;
    size_t n, cap;
    bool complete;
    double expiry;  /* monotonic seconds; INFINITY for commits */
    double started; /* when its first page was asked for (monotonic) */
    unsigned changes; /* its directory's own-change count it reflects */
};

struct lf_node {
    uint64_t ino;
    uint64_t nlookup;  /* the kernel's references */
    unsigned pins;     /* ours: children, open handles */
    struct lf_node *parent;
    char *name;
    enum lf_kind kind;
    struct lf_refinfo *ref; /* LF_REF, LF_DIR, LF_FILE */

    struct lf_obj_attr attr;  /* files */
    double attr_expiry;
    double attr_own;          /* when our own change last set attr (monotonic) */
    /* attr holds the object's stored POSIX metadata (from a HEAD or our
     * own write), not the defaults a listing gives. */
    bool meta_known;
    unsigned changing;        /* an unlink or rename of this name is under way */
    /* The ETag whose bytes the kernel's page cache holds for this file, so
     * an open can keep the cache when nothing changed. */
    char cached_etag[LF_ETAG_MAX];

    struct lf_listing *listing; /* directories: cached entries, or NULL */
    unsigned changes;           /* our own changes to the entries, counted */
    void *priv;                 /* the filesystem's (staged writes) */

    struct lf_node *next_ino, *next_name; /* hash chains */
    uint64_t name_hash;
};

struct lf_meta;

/* The root node (ino 1) is created with the table and never freed. */
struct lf_meta *lf_meta_new(enum lf_kind root_kind, const char *root_name,
                            struct lf_refinfo *root_ref);
void lf_meta_free(struct lf_meta *m);
void lf_meta_lock(struct lf_meta *m);
void lf_meta_unlock(struct lf_meta *m);

struct lf_node *lf_meta_root(struct lf_meta *m);
struct lf_node *lf_meta_get(struct lf_meta *m, uint64_t ino);
struct lf_node *lf_meta_child(struct lf_meta *m, struct lf_node *parent,
                              const char *name);
/* Finds or creates the child; a kind change (file replaced by a directory
 * of the same name) gives a fresh node so stale inodes never alias. */
struct lf_node *lf_meta_child_get(struct lf_meta *m, struct lf_node *parent,
                                  const char *name, enum lf_kind kind,
                                  struct lf_refinfo *ref);
/* A node for a name that is not (or no longer) the parent's: reachable
 * by inode number only, as a detached one (a listing older than our own
 * change of the name hands it out). */
struct lf_node *lf_meta_child_detached(struct lf_meta *m, struct lf_node *parent,
                                       const char *name, enum lf_kind kind,
                                       struct lf_refinfo *ref);
/* Drops n kernel lookups; frees the node (and unpins its parent) when
 * nothing refers to it any more. */
void lf_meta_forget(struct lf_meta *m, struct lf_node *n, uint64_t count);
void lf_meta_pin(struct lf_node *n);
void lf_meta_unpin(struct lf_meta *m, struct lf_node *n);
/* Removes the node from its parent's name table (it was deleted or
 * replaced) without freeing it: open handles and kernel references stay
 * valid. */
void lf_meta_detach(struct lf_meta *m, struct lf_node *n);
/* Calls fn on every node (lock held; fn must not add or free nodes). */
void lf_meta_for_each(struct lf_meta *m, void (*fn)(struct lf_node *n, void *arg), void *arg);
/* Whether the node is still reachable by its name (not detached). */
bool lf_meta_attached(const struct lf_node *n);
/* Waits on c with the table's mutex (held by the caller). */
void lf_meta_wait(struct lf_meta *m, pthread_cond_t *c);
size_t lf_meta_count(struct lf_meta *m);
/* Called when a node with priv set is freed (also by lf_meta_free). */
void lf_meta_set_release(struct lf_meta *m, void (*fn)(struct lf_node *n));
/* Rename: n becomes newparent/newname; a node already there is detached.
 * Descendants follow, since paths are computed through parents. */
int lf_meta_move(struct lf_meta *m, struct lf_node *n, struct lf_node *newparent,
                 const char *newname);

/* The node's path below its ref ("" for the ref itself, "a/b" below). */
int lf_meta_path(const struct lf_node *n, struct lf_buf *out);

struct lf_refinfo *lf_refinfo_new(const char *repo, const char *name,
                                  bool immutable, bool writable);
void lf_refinfo_get(struct lf_refinfo *r);
void lf_refinfo_put(struct lf_refinfo *r);

struct lf_listing *lf_listing_new(void);
void lf_listing_get(struct lf_listing *l);
void lf_listing_put(struct lf_listing *l);
/* Appends one ListObjectsV2 page for the directory whose full prefix is
 * dir_prefix ("<ref>/a/b/" or "" at a repository root), merging files
 * and sub-directories in key order and skipping the directory's own
 * marker and names that cannot be file names (logged once each). */
int lf_listing_add_page(struct lf_listing *l, const char *dir_prefix,
                        const struct lf_list_page *page);
/* Binary search: a directory of that name first, then a file. */
const struct lf_dent *lf_listing_find(const struct lf_listing *l, const char *name);
/* Adds, updates or removes a name after our own write, so a cached
 * listing stays true without a new LIST. A listing shared with an open
 * directory handle is copied first (*lp changes), so the handle's offsets
 * never shift under it. */
int lf_listing_upsert(struct lf_listing **lp, const char *name, bool is_dir,
                      const struct lf_obj_attr *attr);
int lf_listing_remove(struct lf_listing **lp, const char *name, bool is_dir);

#endif
