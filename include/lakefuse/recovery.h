/* recovery: uploads, in the background, what mounts that are gone left
 * staged in a cache directory.
 *
 * Every mount stages in its own locked area under the staging root (see
 * lockdir.h). Recovery adopts only the areas whose lock it can take, that
 * is those of daemons no longer alive, and hands their files to the
 * staging area (lf_staging_recover: never over an object that changed on
 * the branch since). It runs on a thread of its own so a new mount is
 * usable at once, whatever there is to upload. Files in the staging root
 * itself are those of versions before per-mount areas; they are adopted
 * too. Areas emptied are removed; the others stay locked until
 * lf_recovery_free and are retried by the next mount.
 */
#ifndef LAKEFUSE_RECOVERY_H
#define LAKEFUSE_RECOVERY_H

#include <stdbool.h>

#include "lakefuse/staging.h"

struct lf_recovery;

/* upload false (--keep-staged): only reports what it finds. The staging
 * area must outlive the recovery. NULL when no thread could start. */
struct lf_recovery *lf_recovery_start(struct lf_staging *s, const char *staging_root,
                                      bool upload);
/* Waits for the file in hand and stops: what is adopted from then on is
 * the staging area's to flush (unmount). Idempotent; NULL is ignored. */
void lf_recovery_stop(struct lf_recovery *r);
/* Waits for the end (or stop), removes emptied areas, drops the locks. */
void lf_recovery_free(struct lf_recovery *r);
/* Whether the thread has finished its work (for tests and logs). */
bool lf_recovery_done(struct lf_recovery *r);

#endif
