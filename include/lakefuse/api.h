/* api: the lakeFS REST API (/api/v1) for what the S3 gateway cannot say:
 * commits, branch diffs, logs, branch creation, resets, ref resolution and
 * object metadata.
 *
 * Same endpoint and credentials as the gateway, HTTP basic auth, JSON
 * bodies (lf_json: size and depth limits). Reads are retried like the
 * gateway's; calls that change the repository (commit, branch, reset) are
 * sent once, on a fresh connection, since a lost answer may belong to a
 * change the server made.
 *
 * Errors: 401/403 -EACCES, 404 -ENOENT, 409 -EEXIST (conflict), 412
 * -EBUSY (precondition failed), 400 -EINVAL, 429 after retries -EAGAIN,
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

struct lf_api_stat {
    char path[1024];
    char checksum[128];      /* the ETag, no quotes */
    char content_type[128];
    char physical_address[2048];
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

#endif
