/* recovery: the files of mounts that are gone, uploaded on a thread of
 * their own (see recovery.h). */
#include "lakefuse/recovery.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lakefuse/lockdir.h"
#include "lakefuse/log.h"

struct lf_recovery {
    struct lf_staging *s;
    char *root;
    bool upload, joined;
    atomic_bool stop, done;
    pthread_t thread;
    struct lf_lockdir **areas; /* adopted and not yet removed */
    size_t nareas;
};

static void recover_dir(struct lf_recovery *r, const char *dir)
{
    struct lf_orphan *o = NULL;
    size_t n = 0;
    int rc = lf_staging_find_orphans(dir, &o, &n);
    if (rc)
        lf_warn("staging area %s: cannot look for staged files: %s", dir, strerror(-rc));
    if (n)
        lf_warn("found %zu file(s) staged by an earlier run that did not upload them; %s", n,
                r->upload ? "uploading" : "leaving them (--keep-staged)");
    for (size_t i = 0; i < n && !atomic_load(&r->stop); i++)
        lf_staging_recover(r->s, &o[i], r->upload);
    lf_orphans_free(o, n);
}

static void *run(void *arg)
{
    struct lf_recovery *r = arg;
    recover_dir(r, r->root); /* files of versions without per-mount areas */
    int rc = lf_lockdir_adopt_all(r->root, &r->areas, &r->nareas);
    if (rc)
        lf_warn("staging: cannot look for areas of earlier runs in %s: %s", r->root,
                strerror(-rc));
    for (size_t i = 0; i < r->nareas && !atomic_load(&r->stop); i++) {
        recover_dir(r, lf_lockdir_path(r->areas[i]));
        /* Emptied: gone now, not at unmount. */
        if (lf_lockdir_is_empty(r->areas[i])) {
            lf_lockdir_free(r->areas[i], true);
            r->areas[i] = NULL;
        }
    }
    /* Tests and people wait for this line rather than for time to pass. */
    lf_info("recovery: done (%zu staging area(s) of earlier runs adopted)", r->nareas);
    atomic_store(&r->done, true);
    return NULL;
}

struct lf_recovery *lf_recovery_start(struct lf_staging *s, const char *staging_root,
                                      bool upload)
{
    struct lf_recovery *r = calloc(1, sizeof(*r));
    if (!r || !(r->root = strdup(staging_root))) {
        free(r);
        return NULL;
    }
    r->s = s;
    r->upload = upload;
    if (pthread_create(&r->thread, NULL, run, r) != 0) {
        free(r->root);
        free(r);
        return NULL;
    }
    return r;
}

void lf_recovery_stop(struct lf_recovery *r)
{
    if (!r || r->joined)
        return;
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    r->joined = true;
}

bool lf_recovery_done(struct lf_recovery *r) { return atomic_load(&r->done); }

void lf_recovery_free(struct lf_recovery *r)
{
    if (!r)
        return;
    lf_recovery_stop(r);
    for (size_t i = 0; i < r->nareas; i++)
        lf_lockdir_free(r->areas[i], true);
    free(r->areas);
    free(r->root);
    free(r);
}
