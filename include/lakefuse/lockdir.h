/* lockdir: subdirectories each owned by one live process.
 *
 * Several mounts may share one cache directory (every mount of a user
 * does by default). Each mount keeps its staged writes in a subdirectory
 * of its own and holds an flock on the lock file inside for the whole
 * life of the daemon; the kernel drops that lock when the process ends,
 * however it ends. So a subdirectory whose lock can be taken belongs to
 * no live process and may be adopted (its files recovered) by whoever
 * takes the lock; a locked one is never touched.
 *
 * A new subdirectory is prepared and locked under a name scanners skip,
 * then renamed into place, so no scanner ever sees it unlocked. The lock
 * is an flock on an open file description: it survives fork (the daemon
 * forks after taking it) and is not inherited across exec.
 */
#ifndef LAKEFUSE_LOCKDIR_H
#define LAKEFUSE_LOCKDIR_H

#include <stdbool.h>
#include <stddef.h>

struct lf_lockdir;

/* Creates a new locked subdirectory of parent (created 0700 if missing). */
int lf_lockdir_create(const char *parent, struct lf_lockdir **out);
/* Locks every subdirectory of parent that no live process holds; each
 * stays locked until freed. Those still held are left alone. */
int lf_lockdir_adopt_all(const char *parent, struct lf_lockdir ***out, size_t *n);
const char *lf_lockdir_path(const struct lf_lockdir *d);
/* Whether nothing but the lock file is left in the directory. */
bool lf_lockdir_is_empty(const struct lf_lockdir *d);
/* Drops the lock. remove: first removes the directory if nothing but its
 * lock file is left in it. NULL is ignored. */
void lf_lockdir_free(struct lf_lockdir *d, bool remove);

#endif
