/* presign: the direct-to-storage data path, as an lf_store.
 *
 * Wraps the gateway's store: metadata (listings, HEAD, copies, deletes)
 * still goes to the lakeFS gateway, while object bytes move between
 * lakefuse and lakeFS's underlying object store through presigned URLs
 * the REST API hands out (lf_api): the server carries metadata only.
 *
 *   get, get_stream  stat with presign=true gives a GET URL of the
 *                    object's bytes, cached per object (under a commit
 *                    ID until shortly before it expires; on a ref that
 *                    moves, for a tenth of a second: each request sees
 *                    the version current when it starts, as a gateway GET
 *                    does); then ranged GETs to that URL.
 *                    The stat's checksum is the object's ETag: when it is
 *                    not the one the reader pinned, the object was
 *                    replaced (-ESTALE), and since lakeFS never rewrites a
 *                    physical address, one URL always gives one version.
 *                    An expired or refused URL (403) is fetched again and
 *                    the request repeated, unseen by the reader.
 *   put              staging/backing with presign=true, a PUT of the body
 *                    to that URL (Content-MD5; the answer's ETag checked
 *                    against the MD5), then a link of the address to the
 *                    path with size, checksum and user metadata (the same
 *                    x-amz-meta-* names the gateway stores, so the object
 *                    reads back alike either way). LF_PUT_IF_ABSENT is the
 *                    link's If-None-Match: *. Bodies under 128 KiB go
 *                    through the gateway: one request there against two
 *                    to the server (and one to the storage) here.
 *   mpu_*            presigned multipart uploads (staging/pmpu, a URL per
 *                    part when the part is ready) when the server offers
 *                    them, else the gateway's multipart upload.
 *   list, head, copy, remove, list_buckets: the gateway's.
 *
 * A link or a completion whose answer is lost may have been made: it is
 * found out by a stat of the path (the checksum is ours) before anything
 * is sent again, as the gateway's store does with a HEAD. Transient
 * failures of the storage (5xx, resets, stalls, cut answers) are retried
 * with jittered backoff, each logged. Presigned URLs are secrets: log
 * lines name their path, never their query.
 */
#ifndef LAKEFUSE_PRESIGN_H
#define LAKEFUSE_PRESIGN_H

#include <stdbool.h>
#include <stdint.h>

#include "lakefuse/api.h"
#include "lakefuse/store.h"

struct lf_presign_opts {
    struct lf_store *gateway; /* taken over: freed with the presign store */
    struct lf_api *api;       /* borrowed: must outlive the store */
    bool multipart;           /* the server offers presigned multipart uploads */
    unsigned max_conns;       /* connections to the storage */
    long connect_timeout_ms;
    long stall_timeout_ms;
    unsigned retries;         /* extra attempts after the first */
    unsigned backoff_ms;      /* first backoff; doubles, jittered */
    const char *ca_bundle;
    bool insecure;
};

struct lf_presign_stats {
    uint64_t requests;     /* storage requests sent, retries included */
    uint64_t retries;
    uint64_t refreshes;    /* URLs fetched again (expired, refused) */
    uint64_t failures;     /* operations that failed after retries */
    uint64_t api_calls;    /* stat, staging, link, part URLs, completions */
    uint64_t fallbacks;    /* requests sent to the gateway instead */
    uint64_t bytes_in, bytes_out;
};

/* NULL (and a log line) on failure; the gateway store is freed then too. */
struct lf_store *lf_presign_store_new(const struct lf_presign_opts *opts);
/* Counters of a store made by lf_presign_store_new. */
void lf_presign_get_stats(struct lf_store *store, struct lf_presign_stats *out);
/* The gateway store it wraps (owned by it), for its own counters. */
struct lf_store *lf_presign_gateway(struct lf_store *store);

#endif
