/* mounts: what is mounted at a path, and which processes hold it.
 *
 * `lakefuse unmount` must tell "not mounted" from "another file system"
 * from "busy", and name who keeps a busy mount busy. Both answers come
 * from /proc without touching the mount itself: a hung or dead daemon
 * would make any stat under the mount point hang or fail.
 *
 * The /proc root is a parameter so tests can point these at fixtures.
 */
#ifndef LAKEFUSE_MOUNTS_H
#define LAKEFUSE_MOUNTS_H

#include <stddef.h>
#include <sys/types.h>

/* The absolute spelling of path without resolving its last component
 * (which may be a dead mount): realpath of the parent plus the name.
 * Caller frees; NULL with errno set. */
char *lf_mount_abspath(const char *path);

/* The file system mounted at exactly dir (absolute, as lf_mount_abspath
 * gives it), the topmost one when mounts are stacked, from a mountinfo
 * file (normally /proc/self/mountinfo). 0 with *fstype ("fuse.lakefuse")
 * and *source (its fsname) set, caller frees both; -ENOENT when nothing
 * is mounted there; -errno when the file cannot be read. */
int lf_mount_find(const char *mountinfo, const char *dir, char **fstype, char **source);

struct lf_holder {
    pid_t pid;
    char comm[32];   /* its command name */
    char what[160];  /* "current directory", "open file a/b.csv", ... */
};

/* Every process under proc_root (normally "/proc") other than the caller
 * whose current or root directory, open files or mapped files are dir or
 * below it. *holders (caller frees) has *n entries, at most one per
 * process; *hidden counts processes that could not be inspected (other
 * users' processes, without privilege). 0 or -ENOMEM/-errno. */
int lf_mount_holders(const char *proc_root, const char *dir, struct lf_holder **holders,
                     size_t *n, size_t *hidden);

#endif
