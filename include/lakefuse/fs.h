/* fs: the FUSE low-level operations, mapping the namespace
 *
 *     /<repo>/<ref>/<path>
 *
 * onto store requests. The low-level API is used for the control it gives:
 * explicit inode lifetimes, per-entry timeouts (forever under a commit ID,
 * short on branches), readdirplus so `ls -l` needs no request per entry,
 * and FOPEN_KEEP_CACHE so immutable data stays in the page cache.
 */
#ifndef LAKEFUSE_FS_H
#define LAKEFUSE_FS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdbool.h>

#include "lakefuse/config.h"
#include "lakefuse/store.h"

struct lf_fs;

/* What the mount's root is: decided (and checked) by the caller. */
struct lf_fs_root {
    const char *repo;      /* NULL: all repositories */
    const char *ref;       /* NULL: the repository's branches */
    const char *path;      /* "a/b": the root is that directory of ref; NULL: ref's root */
    bool ref_is_branch;
};

/* The store stays owned by the caller and must outlive the fs. No thread
 * starts until lf_fs_start, so the daemon can fork in between. */
struct lf_fs *lf_fs_new(const struct lf_config *cfg, struct lf_store *store,
                        const struct lf_fs_root *root);
int lf_fs_start(struct lf_fs *fs);
/* Call once the session is mounted: installs what spliced reads need. */
void lf_fs_attach(struct lf_fs *fs, struct fuse_session *se);
void lf_fs_free(struct lf_fs *fs);
/* The REST client for the versioning verbs and lakeFS's xattrs; stays the
 * caller's and must outlive the fs. NULL: those answer that it is missing. */
struct lf_api;
void lf_fs_set_api(struct lf_fs *fs, struct lf_api *api);
const struct fuse_lowlevel_ops *lf_fs_ops(void);

#endif
