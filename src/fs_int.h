/* fs_int: what the parts of fs (FUSE low-level operations over the store)
 * share: the mount's state, the handles, and the rules they all follow.
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
 *     staged file, and, if it may write, a writer count (fs_wstate_get ...
 *     wstate_put) that keeps the state on its node. The state leaves the
 *     node only when no writer counts and nothing is left to upload, and
 *     a node never gets a second state while it has one.
 *   - A staged file's key is its node's path for as long as it may be
 *     uploaded: a rename re-keys it (lf_sfile_rename), an unlink or a
 *     replacement discards it (lf_sfile_discard: never uploaded again;
 *     descriptors keep it as their anonymous file). While an unlink or a
 *     rename talks to the gateway, its nodes are marked `changing` and no
 *     write state is made below them (fs_wstate_get waits on fs->changed).
 *   - Operations that compute keys and change names (create, mkdir,
 *     unlink, rmdir, rename, chmod's copy) hold fs->ns shared from the
 *     key to the answer; a directory rename holds it alone, so no key it
 *     is moving is in anybody's hands meanwhile.
 */
#ifndef LAKEFUSE_FS_INT_H
#define LAKEFUSE_FS_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "lakefuse/fs.h"
#include "lakefuse/meta.h"
#include "lakefuse/readahead.h"
#include "lakefuse/staging.h"

/* "Forever" for the kernel: a year, refreshed by any later lookup. */
#define FOREVER (365.0 * 24 * 3600)
/* How long the kernel keeps a listing's attributes of a file whose stored
 * mode and times we have not read (long enough for `ls -l` of a big
 * directory to need no HEAD). */
#define LISTING_ATTR_MAX 10.0

/* The pipe a spliced read goes through holds a whole read even in small
 * fragments (fs_io.c); lf_fs_new checks the system allows one that big. */
#define PIPE_ROOM (4 << 20)

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
    /* Objects from this size on are opened FOPEN_DIRECT_IO (UINT64_MAX:
     * none), with --direct-io always, else once INIT set dio_mmap: the
     * kernel then keeps their shared mmaps coherent, as with the cache. */
    uint64_t direct_min;
    bool dio_mmap;            /* atomic: written by the thread answering INIT */
    uid_t uid;
    gid_t gid;
    struct timespec started;
    pthread_cond_t changed; /* a node's `changing` went to 0 */
    /* Name-space changes hold it shared; a directory rename, which moves
     * every key below it, holds it alone (fs_ns_enter). */
    pthread_rwlock_t ns;
    /* Every open file and directory handle: an unmount can overtake the
     * kernel's last releases, and lf_fs_free lets go of what is left. */
    pthread_mutex_t handles_lock;
    struct fileh *files;
    struct dirh *dirs;
    /* lf_fs_free lets go of those: what they left staged stays staged
     * (unmount already tried it and said how that went), for recovery. */
    bool tearing_down;
    char *subdir;           /* "a/b/" of a mounted lakefs://REPO/REF/a/b, else "" */
    struct lf_api *api;     /* the REST client (versioning verbs, xattrs); may be NULL */
    struct fs_ctl *ctl;     /* the verbs' control channel (fs_ctl.c) */
    struct fuse_session *se; /* for the kernel cache notifications of reset */
    struct fs_ahead *ahead;  /* reading ahead across a directory's files (fs_ahead.c) */
    uint64_t open_files[2];  /* handles open for reading, for writing (atomic; fs_stats.c) */
    struct lf_metrics_writer *metrics; /* --metrics-file */
};

struct fileh {
    struct fileh *prev, *next; /* fs->files, once tracked */
    bool tracked;
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
    bool counted;             /* in fs->open_files (fs_count_open) */
};

struct retired {
    struct lf_reader *r;
    struct retired *next;
};

/* A file's write state, hung on its node (node->priv) while it is staged.
 * The node stays pinned while the staged content is not uploaded, so a
 * failed upload can be retried by the next open's flush or fsync. */
struct wstate {
    struct lf_sfile *sf;
    unsigned writers; /* open handles that may write */
    bool pinned;
    /* The generation the last close() or fsync() of a handle saw: a file
     * still open for writing holds no unsaved change when it is current
     * (the upload barrier of commit takes it then). */
    bool synced;
    unsigned synced_gen;
};

struct dirh {
    struct dirh *prev, *next; /* fs->dirs */
    pthread_mutex_t lock;
    struct lf_node *node;
    struct lf_listing *listing;
    char *prefix;  /* the directory's full key prefix */
    char *token;   /* next page; NULL before the first */
    bool done;
    int err;          /* a failed page ends the listing for this handle */
    unsigned changes; /* the node's own-change count when listing began */
    /* Files staged here and not stored yet when the handle opened: served
     * after the gateway's entries, unless those have them by then. */
    char **extra;
    size_t nextra;
};

/* fs.c: small helpers */
double fs_now(void); /* monotonic */
struct lf_fs *fs_of(fuse_req_t req);
int fs_reply_errno(int rc);
void fs_now_realtime(struct timespec *ts);

/* fs_names.c: the name space and the change machinery. fs_node_key,
 * fs_check_writable, fs_listing_note and fs_wait_no_change: metadata lock held. */
void fs_ns_enter(struct lf_fs *fs, bool alone);
void fs_ns_leave(struct lf_fs *fs);
int fs_node_key(struct lf_fs *fs, struct lf_node *n, bool as_dir, struct lf_buf *out);
struct lf_refinfo *fs_new_ref(struct lf_fs *fs, const char *repo, const char *name,
                              bool is_branch);
int fs_check_writable(const struct lf_fs *fs, const struct lf_node *n);
void fs_listing_note(struct lf_node *parent, const char *name, bool is_dir,
                     const struct lf_obj_attr *attr, bool removed);
void fs_wait_no_change(struct lf_fs *fs, const struct lf_node *n);
/* Marks a name as changing on the gateway (unlink, rename, reset): no
 * write state is made below it until the unmark. Lock held; n pinned. */
void fs_change_mark(struct lf_node *n);
void fs_change_unmark(struct lf_fs *fs, struct lf_node *n);
void fs_op_lookup(fuse_req_t req, fuse_ino_t parent_ino, const char *name);
void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                  struct fuse_file_info *fi);
void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                  const char *newname, unsigned int flags);
void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);

/* fs_attr.c: attributes. fs_fill_stat, fs_make_entry, fs_set_file_attr and fs_meta_of:
 * metadata lock held. */
double fs_ttl_of(const struct lf_fs *fs, const struct lf_node *n);
void fs_fill_stat(const struct lf_fs *fs, const struct lf_node *n, struct stat *st);
void fs_make_entry(struct lf_fs *fs, struct lf_node *n, struct fuse_entry_param *e);
void fs_set_file_attr(struct lf_fs *fs, struct lf_node *n, const struct lf_obj_attr *a,
                      bool stored);
int fs_refresh_file(struct lf_fs *fs, struct lf_node *n, bool need_meta);
struct lf_put_meta fs_meta_of(const struct lf_fs *fs, const struct lf_node *n);
void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                   struct fuse_file_info *fi);
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                    size_t size, int flags);

/* fs_dir.c: directories and their listings. fs_listing_fresh and
 * fs_child_from_dent: metadata lock held. */
int fs_load_listing(struct lf_fs *fs, struct lf_node *n);
bool fs_listing_fresh(const struct lf_node *n);
struct lf_node *fs_child_from_dent(struct lf_fs *fs, struct lf_node *parent,
                                   const struct lf_listing *l, const struct lf_dent *d);
void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi);
void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi);
/* Lets go of a directory handle the kernel never released. */
void fs_dir_release(struct lf_fs *fs, struct dirh *d);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* fs_io.c: write state and file I/O. fs_wstate_of, fs_staged_size and
 * fs_wstate_settle: metadata lock held. */
struct wstate *fs_wstate_of(const struct lf_node *n);
void fs_release_node(struct lf_node *n);
bool fs_staged_size(const struct lf_node *n, uint64_t *size);
int fs_wstate_get(struct lf_fs *fs, struct lf_node *n, struct lf_sfile **sfp);
void fs_wstate_settle(struct lf_fs *fs, struct lf_node *n);
void fs_writer_done(struct lf_fs *fs, struct lf_node *n, struct lf_sfile *sf);
int fs_flush_node(struct lf_fs *fs, struct lf_node *n, struct lf_sfile *sf);
struct fileh *fs_fileh_alloc(void);
/* Lists a handle the kernel is about to get, so lf_fs_free finds it if
 * its release never comes. */
void fs_fileh_track(struct lf_fs *fs, struct fileh *fh);
void fs_fileh_free(struct lf_fs *fs, struct fileh *fh);
int *fs_pipe_new(void);
void fs_pipe_close(int *p);
/* The custom-io hooks spliced reads and --direct-io's mmap need (lf_fs_attach). */
extern const struct fuse_custom_io fs_custom_io;
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

/* fs_ahead.c: a directory's files opened in listing order get the next
 * ones' attributes and bytes fetched ahead. fs_ahead_opened: n pinned,
 * opened for reading from the object, lock not held. */
struct fs_ahead *fs_ahead_new(void);
void fs_ahead_free(struct fs_ahead *a);
void fs_ahead_opened(struct lf_fs *fs, struct lf_node *n);

/* fs_stats.c: the counters of `lakefuse stats` and --metrics-file */
struct lf_metrics;
void fs_metrics(struct lf_fs *fs, struct lf_metrics *m);
/* A handle the kernel now holds (call before replying to open or create);
 * fs_fileh_free uncounts it. */
void fs_count_open(struct lf_fs *fs, struct fileh *fh);
void fs_count_close(struct lf_fs *fs, struct fileh *fh);
void fs_metrics_start(struct lf_fs *fs);
void fs_metrics_stop(struct lf_fs *fs);

/* fs_ctl.c: the versioning verbs and lakeFS's xattrs */
int fs_ctl_start(struct lf_fs *fs);
void fs_ctl_stop(struct lf_fs *fs);
/* A ticket for node n, issued to uid: "<address>\n<ticket>\n" into out;
 * returns its length or a negative errno. */
int fs_ctl_ticket(struct lf_fs *fs, struct lf_node *n, uid_t uid, char *out, size_t cap);
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);

#endif
