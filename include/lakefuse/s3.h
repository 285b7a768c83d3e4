/* s3: the S3 client for lakeFS's gateway, behind the lf_store interface.
 *
 * Path-style requests (http://host/<repo>/<ref>/<path>), signed with SigV4
 * over UNSIGNED-PAYLOAD plus Content-MD5 for bodies (never the streaming
 * or trailer modes, which older lakeFS releases reject). Every attempt is
 * signed afresh; failures that may pass (5xx, SlowDown, resets, timeouts,
 * truncated answers) are retried with jittered exponential backoff.
 *
 * Ranged GETs are checked against what was asked: status 206 (or 200 for
 * a whole object), Content-Range start, end and total, body length, and
 * the ETag pinned at open. lakeFS ignores If-Match on GET, so this check
 * is the only thing that stops a read from mixing two versions.
 *
 * Refusals (403) are the gateway's verdict on our keys or our clock, not
 * on one request, so each kind is logged once in LF_S3_AUTH_LOG_EVERY
 * seconds, not per request. An answer that refuses our signature or our
 * key makes the client ask opts->reload for fresh credentials (at most
 * every LF_S3_RELOAD_EVERY seconds) and, if they differ, sign with them
 * and send again. A refusal whose Date header is minutes from our clock
 * (RequestTimeTooSkewed, or "not valid yet" when ours is ahead) makes
 * every later request signed with the gateway's time, and is sent again.
 */
#ifndef LAKEFUSE_S3_H
#define LAKEFUSE_S3_H

#include <stdbool.h>
#include <stdint.h>

#include "lakefuse/store.h"

struct lf_s3_opts {
    const char *endpoint;  /* http(s)://host[:port][/base] */
    const char *access_key;
    const char *secret_key;
    const char *region;
    unsigned max_conns;
    long connect_timeout_ms;
    long stall_timeout_ms;
    unsigned retries;      /* extra attempts after the first */
    unsigned backoff_ms;   /* first backoff; doubles, jittered */
    const char *ca_bundle;
    bool insecure;
    /* Fresh credentials after a refusal: fills *access_key and
     * *secret_key (malloc'ed; the client wipes and frees the secret) or
     * returns a negative errno. NULL: they cannot change (the environment
     * of a running process does not). cred_source names where they come
     * from, for log lines ("the lakectl file X", "the environment"). */
    int (*reload)(void *arg, char **access_key, char **secret_key);
    void *reload_arg;
    const char *cred_source;
};

#define LF_S3_RELOAD_EVERY 5     /* s between two reloads of the credentials */
#define LF_S3_AUTH_LOG_EVERY 300 /* s between two log lines of one kind of refusal */
#define LF_S3_SKEW_MIN 300       /* s of difference from the gateway's clock worth correcting */

struct lf_s3_stats {
    uint64_t requests;     /* attempts sent, retries included */
    uint64_t retries;
    uint64_t failures;     /* operations that failed after retries */
    uint64_t bytes_in, bytes_out;
    uint64_t refusals;     /* 403 answers */
    uint64_t reloads;      /* times new credentials were taken */
    int64_t clock_offset;  /* s added to our clock to sign (the gateway's minus ours) */
};

/* Returns a store whose destroy frees the client; NULL and a log line on
 * failure. */
struct lf_store *lf_s3_store_new(const struct lf_s3_opts *opts);
void lf_s3_store_free(struct lf_store *store);
/* Counters of a store made by lf_s3_store_new. */
void lf_s3_get_stats(struct lf_store *store, struct lf_s3_stats *out);

#endif
