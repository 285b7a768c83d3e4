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
};

struct lf_s3_stats {
    uint64_t requests;     /* attempts sent, retries included */
    uint64_t retries;
    uint64_t failures;     /* operations that failed after retries */
    uint64_t bytes_in, bytes_out;
};

/* Returns a store whose destroy frees the client; NULL and a log line on
 * failure. */
struct lf_store *lf_s3_store_new(const struct lf_s3_opts *opts);
void lf_s3_store_free(struct lf_store *store);
/* Counters of a store made by lf_s3_store_new. */
void lf_s3_get_stats(struct lf_store *store, struct lf_s3_stats *out);

#endif
