/* api: the lakeFS REST API (/api/v1) for what the S3 gateway cannot say:
 * commits, branch diffs, logs, branch creation, resets, ref resolution,
 * object metadata, and the presigned URLs of the direct-to-storage data
 * path (src/presign.c).
 *
 * Same endpoint and credentials as the gateway, HTTP basic auth, JSON
 * bodies (lf_json: size and depth limits). Reads are retried like the
 * gateway's; calls that change the repository (commit, branch, reset) are
 * sent once, on a fresh connection, since a lost answer may belong to a
 * change the server made.
 *
 * Errors: 401/403 -EACCES, 404 -ENOENT, 409 -EEXIST (conflict), 412
 * -EBUSY (precondition failed), 400 -EINVAL, 405 and 501 -EOPNOTSUPP
 * (the server has no such call), 429 after retries -EAGAIN,
 * 5xx after retries and any other status -EIO, no answer: the
 * transport's errno, a 2xx answer of the wrong shape -EPROTO. The message
 * lakeFS sent ("commit: no changes", ...) is copied into the caller's
 * lf_api_err and logged. A change whose answer was lost (status 0) may
 * have been made: ask (log, resolve) before doing it again.
 *
 * Every err argument may be NULL. Paths and messages are sent as given;
 * a commit message or metadata that is not UTF-8 is -EINVAL, unsent.
 */
#ifndef LAKEFUSE_API_H
#define LAKEFUSE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct lf_api;

struct lf_api_opts {
    const char *endpoint; /* http(s)://host[:port][/base], as for the gateway */
    const char *access_key;
    const char *secret_key;
    const char *ca_bundle;
    bool insecure;
    long connect_timeout_ms;
    long stall_timeout_ms;
    unsigned retries;     /* extra attempts for reads */
    unsigned backoff_ms;
    /* Fresh credentials after a 401 (a rotated key), as lf_s3_opts.reload:
     * asked at most every LF_API_RELOAD_EVERY s; if they differ, the call
     * is sent again with them. NULL: they cannot change. */
    int (*reload)(void *arg, char **access_key, char **secret_key);
    void *reload_arg;
};

#define LF_API_RELOAD_EVERY 5

/* What went wrong, for the user: the HTTP status (0: no answer) and the
 * server's message, or a description of the transport failure. */
struct lf_api_err {
    long status;
    char message[512];
};

struct lf_api *lf_api_new(const struct lf_api_opts *opts);
void lf_api_free(struct lf_api *api);

#define LF_COMMIT_ID_MAX 65 /* 64 hex digits and a NUL */

struct lf_api_kv {
    const char *key;
    const char *value;
};

struct lf_api_commit {
    char id[LF_COMMIT_ID_MAX];
    char committer[128];
    char message[1024];  /* truncated if longer */
    time_t created;
};

/* POST /repositories/{repo}/branches/{branch}/commits; out may be NULL. */
int lf_api_commit(struct lf_api *api, const char *repo, const char *branch, const char *message,
                  const struct lf_api_kv *meta, size_t nmeta, struct lf_api_commit *out,
                  struct lf_api_err *err);

enum lf_api_change { LF_CHANGE_ADDED, LF_CHANGE_CHANGED, LF_CHANGE_REMOVED, LF_CHANGE_CONFLICT };

/* Called once per entry; a nonzero return stops the walk and is returned. */
typedef int (*lf_api_diff_fn)(void *arg, enum lf_api_change kind, const char *path, bool is_prefix);

/* GET /repositories/{repo}/branches/{branch}/diff?prefix=..., every page:
 * the branch's uncommitted changes under prefix ("" for all). */
int lf_api_diff_branch(struct lf_api *api, const char *repo, const char *branch,
                       const char *prefix, lf_api_diff_fn fn, void *arg, struct lf_api_err *err);

typedef int (*lf_api_commit_fn)(void *arg, const struct lf_api_commit *c);

/* GET /repositories/{repo}/refs/{ref}/commits, newest first, at most limit
 * commits (0: all), following pages. */
int lf_api_log(struct lf_api *api, const char *repo, const char *ref, unsigned limit,
               lf_api_commit_fn fn, void *arg, struct lf_api_err *err);

typedef int (*lf_api_ref_fn)(void *arg, const char *name, const char *commit_id);

/* GET /repositories/{repo}/branches and .../tags, every page. */
int lf_api_list_branches(struct lf_api *api, const char *repo, lf_api_ref_fn fn, void *arg,
                         struct lf_api_err *err);
int lf_api_list_tags(struct lf_api *api, const char *repo, lf_api_ref_fn fn, void *arg,
                     struct lf_api_err *err);

/* POST /repositories/{repo}/branches {name, source}: source is any ref.
 * commit_id (may be NULL) receives the new branch's head. */
int lf_api_create_branch(struct lf_api *api, const char *repo, const char *name,
                         const char *source, char commit_id[LF_COMMIT_ID_MAX],
                         struct lf_api_err *err);

enum lf_api_reset { LF_RESET_OBJECT, LF_RESET_PREFIX, LF_RESET_BRANCH };

/* PUT /repositories/{repo}/branches/{branch} {type, path}: drops the
 * branch's uncommitted changes to one object, under a prefix ("a/b/"), or
 * all of them (path ignored). */
int lf_api_reset(struct lf_api *api, const char *repo, const char *branch, enum lf_api_reset type,
                 const char *path, struct lf_api_err *err);

enum lf_ref_type { LF_REF_BRANCH, LF_REF_TAG, LF_REF_COMMIT };

/* What ref is and the commit it points to now: a branch (its head), a tag,
 * or anything else lakeFS resolves (a commit ID, an expression such as
 * main~2), through the ref's log. Asked in that order (a 404 or 400 means
 * "not this kind"); an expression (~ ^ @ $) goes to the log at once.
 * -ENOENT when nothing resolves, -EINVAL when lakeFS calls the ref
 * invalid. */
int lf_api_resolve(struct lf_api *api, const char *repo, const char *ref,
                   enum lf_ref_type *type, char commit_id[LF_COMMIT_ID_MAX],
                   struct lf_api_err *err);

/* Room for a presigned URL: S3's carry a session token when the server
 * runs on temporary credentials, GCS's and Azure's signatures are long. */
#define LF_API_URL_MAX 8192

struct lf_api_stat {
    char path[1024];
    char checksum[128];      /* the ETag, no quotes */
    char content_type[128];
    char physical_address[LF_API_URL_MAX];
    time_t physical_address_expiry; /* a presigned URL's end; 0: not said */
    uint64_t size;
    time_t mtime;
    size_t nmeta;            /* user metadata, as lakeFS stores it */
    struct {
        char key[128];
        char value[512];
    } meta[32];
};

/* GET /repositories/{repo}/refs/{ref}/objects/stat?path=... (user_metadata
 * true). Metadata beyond the array's room, or with a key or value too long
 * for it, is dropped (never cut) with a log line. */
int lf_api_stat(struct lf_api *api, const char *repo, const char *ref, const char *path,
                struct lf_api_stat *out, struct lf_api_err *err);

/* ---- the direct-to-storage data path (presigned URLs) ------------------
 *
 * lakeFS can hand out presigned URLs of its underlying object store, so
 * that data moves between the client and the store while the server
 * carries metadata only. Presigned URLs are secrets (whoever holds one
 * may read or write that object until it expires): nothing here logs
 * one, and callers must not either, beyond its path. */

/* What the server's storage configuration says of presigning. */
struct lf_api_storage {
    bool presign;           /* pre_sign_support */
    bool presign_multipart; /* pre_sign_multipart_upload (absent: false) */
    char blockstore_type[32];
};

/* GET /config and its storage_config, or, from a server that has no
 * /config (404), the older GET /config/storage. A server with several
 * blockstores (storage_config_list) presigns only where all of them do. */
int lf_api_storage_config(struct lf_api *api, struct lf_api_storage *out,
                          struct lf_api_err *err);

/* lf_api_stat with presign=true: physical_address is a presigned GET URL
 * of the object's bytes, good until physical_address_expiry (when said).
 * A server whose storage cannot presign answers 400: -EINVAL. */
int lf_api_stat_presign(struct lf_api *api, const char *repo, const char *ref, const char *path,
                        struct lf_api_stat *out, struct lf_api_err *err);

/* Where a new object's bytes go before it is linked. */
struct lf_api_staging {
    char physical_address[2048]; /* signed by the server for this branch and path */
    char url[LF_API_URL_MAX];    /* presigned PUT URL */
    time_t expiry;               /* 0: not said */
};

/* GET /repositories/{repo}/branches/{branch}/staging/backing?path=&presign=true.
 * A read for the repository (nothing changes until the link): retried. */
int lf_api_staging_location(struct lf_api *api, const char *repo, const char *branch,
                            const char *path, struct lf_api_staging *out,
                            struct lf_api_err *err);

/* What a link (or a multipart completion) records of the object. */
struct lf_api_object {
    const char *checksum;        /* what the store answered the upload with (ETag) */
    uint64_t size;
    const struct lf_api_kv *meta; /* user metadata, keys as lakeFS stores them */
    size_t nmeta;
    const char *content_type;    /* NULL: lakeFS's default */
    bool if_absent;              /* If-None-Match: *; -EBUSY (412) when path exists */
};

/* PUT .../staging/backing?path=: path becomes the bytes at
 * physical_address. A change: sent once, on a fresh connection; a lost
 * answer (status 0) may be a made link. checksum_out (may be NULL, 128
 * bytes) receives what lakeFS recorded. */
int lf_api_link(struct lf_api *api, const char *repo, const char *branch, const char *path,
                const char *physical_address, const struct lf_api_object *obj,
                char checksum_out[128], struct lf_api_err *err);

/* A presigned multipart upload (lakeFS's experimental staging/pmpu). */
struct lf_api_pmpu {
    char upload_id[1024];
    char physical_address[2048];
};

/* POST .../staging/pmpu?path=: an upload with no part URLs yet (each is
 * asked for when its part is ready, so none expires waiting). Sent once:
 * a lost answer leaves at most an upload nobody completes. 501 (the
 * server does not offer it) is -EOPNOTSUPP. */
int lf_api_pmpu_create(struct lf_api *api, const char *repo, const char *branch,
                       const char *path, struct lf_api_pmpu *out, struct lf_api_err *err);

/* PUT .../staging/pmpu/{id}/parts/{n}?path=: a presigned URL for part n
 * (lakeFS 1.55 on; older servers answer 404 or 405). Changes nothing, so
 * it is retried like a read. */
int lf_api_pmpu_part_url(struct lf_api *api, const char *repo, const char *branch,
                         const char *path, const struct lf_api_pmpu *u, int number,
                         char url[LF_API_URL_MAX], struct lf_api_err *err);

struct lf_api_part {
    int number;
    const char *etag;
};

/* PUT .../staging/pmpu/{id}?path=: assembles the parts (ascending) and
 * links the object (obj's checksum and size are ignored: the store's
 * answer is what lakeFS records; if_absent is not offered by lakeFS).
 * A change: sent once. checksum_out as for lf_api_link. */
int lf_api_pmpu_complete(struct lf_api *api, const char *repo, const char *branch,
                         const char *path, const struct lf_api_pmpu *u,
                         const struct lf_api_part *parts, size_t nparts,
                         const struct lf_api_object *obj, char checksum_out[128],
                         struct lf_api_err *err);

/* DELETE .../staging/pmpu/{id}?path=. */
int lf_api_pmpu_abort(struct lf_api *api, const char *repo, const char *branch,
                      const char *path, const struct lf_api_pmpu *u, struct lf_api_err *err);

#endif
