/* staging: written data waiting for upload, one local file per object.
 *
 * A written file lives in a staging file under the cache directory (0600
 * in a 0700 directory) until flush uploads it: one PutObject (with
 * Content-MD5 and an ETag check) below the part size, a multipart upload
 * above it. A sequential writer's full parts are uploaded while it is
 * still writing, so the final flush waits only for the tail.
 *
 * Nothing is lost silently: a staged file stays dirty until an upload of
 * its current content succeeded; a failed flush returns the error and the
 * next flush tries again. Each dirty file has a small manifest beside it
 * (bucket and key), so a later mount on the same cache directory can find
 * what a killed daemon left behind.
 *
 * An existing object opened for writing is downloaded into staging only
 * when the first write or truncate arrives (lf_sfile_has_data says
 * whether reads must come from staging).
 */
#ifndef LAKEFUSE_STAGING_H
#define LAKEFUSE_STAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lakefuse/store.h"
#include "lakefuse/workq.h"

struct lf_staging;
struct lf_sfile;

struct lf_staging_opts {
    const char *dir;     /* created 0700 if missing */
    uint64_t max_bytes;  /* staged bytes allowed; 0: a quarter of free space */
    size_t part_size;    /* multipart part size, >= 5 MiB */
    unsigned max_files;  /* staged files at once; 0: 1024 */
    /* The disk is full under a write: others sharing it (the disk cache)
     * free what they can, at least `bytes` if they have it; returns the
     * bytes freed. The write is tried once more if any were. May be NULL. */
    uint64_t (*make_room)(void *arg, uint64_t bytes);
    void *make_room_arg;
};

/* files and used_bytes: everything staged; dirty and dirty_bytes: the
 * files whose upload is pending, and their sizes. */
struct lf_staging_stats {
    uint64_t used_bytes, max_bytes;
    unsigned files, dirty;
    uint64_t dirty_bytes;
    uint64_t puts, parts, completes, aborts, failures;
};

/* The store and work queue must outlive the staging area. */
struct lf_staging *lf_staging_new(struct lf_store *store, struct lf_workq *wq,
                                  const struct lf_staging_opts *o);
/* Frees the area; staged files that are still dirty stay on disk. */
void lf_staging_free(struct lf_staging *s);
void lf_staging_get_stats(struct lf_staging *s, struct lf_staging_stats *st);
/* For tests that drive an interleaving: fn runs at named points, no lock
 * held ("write": a write's bytes are about to reach the staging file;
 * "truncate": a truncate is about to apply its new size). */
void lf_staging_set_hook(struct lf_staging *s,
                         void (*fn)(void *arg, const char *point, struct lf_sfile *f), void *arg);

/* A staged file for bucket/key. base: the object as it is now (its bytes
 * are fetched on the first write or truncate), or NULL for a new empty
 * file, which is dirty at once (flush creates the object). Returns 0 with
 * a reference in *out; -ENFILE when too many files are staged. */
int lf_sfile_new(struct lf_staging *s, const char *bucket, const char *key,
                 const struct lf_obj_attr *base, struct lf_sfile **out);
void lf_sfile_ref(struct lf_sfile *f);
/* Drops a reference. A dirty file stays staged until it is uploaded or
 * discarded, whoever holds it. */
void lf_sfile_unref(struct lf_sfile *f);

/* Whether reads must be served from staging (written, truncated, new). */
bool lf_sfile_has_data(struct lf_sfile *f);
bool lf_sfile_dirty(struct lf_sfile *f);
uint64_t lf_sfile_size(struct lf_sfile *f);

/* Local-disk semantics: writes past the end leave zeros; -ENOSPC when the
 * staging limit would be exceeded or the disk is full (after asking
 * make_room); a short count when it filled part way. */
ssize_t lf_sfile_write(struct lf_sfile *f, const void *buf, size_t len, uint64_t off);
ssize_t lf_sfile_read(struct lf_sfile *f, void *buf, size_t len, uint64_t off);
int lf_sfile_truncate(struct lf_sfile *f, uint64_t size);
/* POSIX metadata sent with the next upload (mode, uid, gid, mtime). A
 * change of metadata alone marks the file dirty when mark_dirty. */
void lf_sfile_set_meta(struct lf_sfile *f, const struct lf_put_meta *m, bool mark_dirty);

/* Uploads the current content if dirty. 0 once it is stored (out, if
 * given, gets the stored attributes); else a negative errno, the file
 * staying dirty for the next try. */
int lf_sfile_flush(struct lf_sfile *f, struct lf_obj_attr *out);
/* The file's name was unlinked or replaced: nothing of it is uploaded
 * from now on (an upload under way finishes first, then this returns).
 * Descriptors that hold it keep reading and writing it locally. Returns
 * whether an upload was pending. */
bool lf_sfile_discard(struct lf_sfile *f);
/* Undoes a discard whose delete failed: dirty is what discard returned
 * (whether an upload was pending). */
void lf_sfile_restore(struct lf_sfile *f, bool dirty);
/* Fetches the object's bytes into the staging file now (before its name
 * is deleted on the gateway, for a descriptor that still needs them). */
int lf_sfile_load(struct lf_sfile *f);
/* What its key holds on the gateway (size, ETag, metadata), when nothing
 * is pending and it was stored or loaded from there. */
bool lf_sfile_stored(struct lf_sfile *f, struct lf_obj_attr *out);
/* Whether what is pending is metadata only (the bytes are the object's at
 * its key): then *meta and *gen are what a copy of it must carry. */
bool lf_sfile_meta_only(struct lf_sfile *f, unsigned *gen, struct lf_put_meta *meta);
/* A file created through this mount under its key, never stored, and
 * replacing nothing of ours: nothing of it is on the gateway, so
 * removing or renaming it must delete nothing there
 * (the name may hold another client's object by now). Its first upload
 * only creates (If-None-Match: *): -EEXIST if another client created the
 * name first, the data staying staged. A rename lifts that condition. */
bool lf_sfile_created_here(struct lf_sfile *f);
/* The same of key, which the file may have left (a rename): whether
 * nothing of ours can be there. */
bool lf_sfile_created_at(struct lf_sfile *f, const char *key);
/* The new file takes the place of one of ours whose object may be at its
 * key already: its uploads replace (no If-None-Match). */
void lf_sfile_replaces(struct lf_sfile *f);
/* Whether an upload is pending, and the generation (bumped by every
 * change) the file is at. */
bool lf_sfile_dirty_gen(struct lf_sfile *f, unsigned *gen);
/* The staged content now belongs to new_key (a rename). With stored_gen
 * NULL the new key has none of it: the next flush uploads it there. With
 * stored_gen, the caller copied to new_key the object with the bytes and
 * metadata of that generation; the file is pending only if it changed
 * since. Returns 1 when an upload is pending, 0 when not, or a negative
 * errno. */
int lf_sfile_rename(struct lf_sfile *f, const char *new_key, const unsigned *stored_gen);

/* For every staged file of bucket whose key starts with prefix: flush
 * (returns the first error), or move to new_prefix + rest. */
int lf_staging_flush_prefix(struct lf_staging *s, const char *bucket, const char *prefix);
/* Whether a file under prefix waits for its upload (a directory that
 * looks empty on the gateway is not, then). */
bool lf_staging_pending_under(struct lf_staging *s, const char *bucket, const char *prefix);
/* A directory rename: copy(arg) copies the objects on the gateway, then
 * every staged file under prefix moves to new_prefix + rest, pending
 * exactly when it was pending before or changed while the copy ran. */
int lf_staging_rename_prefix(struct lf_staging *s, const char *bucket, const char *prefix,
                             const char *new_prefix, int (*copy)(void *arg), void *arg);
/* The names directly under prefix (keys prefix + name, no further '/')
 * of staged files whose content waits for its upload: a listing of the
 * gateway lacks a new one until it is stored. The caller frees each name
 * and the array. */
int lf_staging_pending_names(struct lf_staging *s, const char *bucket, const char *prefix,
                             char ***names, size_t *n);
/* key now holds a version this mount made (etag): a copy the caller made
 * (a rename). Uploads note their own. A create of ours that finds one of
 * the last such versions at its key replaces it instead of failing. */
void lf_staging_note_own(struct lf_staging *s, const char *bucket, const char *key,
                         const char *etag);
/* Flushes every dirty file (unmount); returns how many still failed. */
unsigned lf_staging_flush_all(struct lf_staging *s);

/* Staged files a killed daemon left in dir (their manifests). */
struct lf_orphan {
    char *bucket, *key, *base_etag, *data_path, *manifest_path;
    uint64_t size;
    /* Written in this boot (the kernel kept every byte), or synced to
     * disk at its present size: safe to upload. */
    bool trusted;
};
int lf_staging_find_orphans(const char *dir, struct lf_orphan **out, size_t *n);
void lf_orphans_free(struct lf_orphan *v, size_t n);
/* Uploads an orphan (or, upload false, leaves it and says so). Content
 * already on the branch is just removed; an object that changed on the
 * branch since staging is never overwritten (-EEXIST, file kept). */
int lf_staging_recover(struct lf_staging *s, const struct lf_orphan *o, bool upload);

#endif
