/* store: the object store as the filesystem logic sees it.
 *
 * One small vtable between the filesystem (caches, readahead, staging) and
 * the S3 client, so that everything above it is tested in-process against
 * an in-memory store (lf_store_mem_new) and a fault-injecting wrapper,
 * while the daemon runs the same code over HTTP (lf_s3_store_new).
 *
 * Names: `bucket` is the lakeFS repository, `key` is "<ref>/<path>".
 * Every operation returns 0 or a negative errno; transient failures have
 * already been retried by the implementation when it can retry.
 */
#ifndef LAKEFUSE_STORE_H
#define LAKEFUSE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#define LF_ETAG_MAX 80 /* 32 hex digits of MD5, "-" and a part count */

/* Which optional POSIX fields an attribute carries (from x-amz-meta-*). */
enum {
    LF_ATTR_MODE = 1u << 0,
    LF_ATTR_UID = 1u << 1,
    LF_ATTR_GID = 1u << 2,
    LF_ATTR_MTIME = 1u << 3,
};

struct lf_obj_attr {
    uint64_t size;
    char etag[LF_ETAG_MAX]; /* without quotes */
    time_t last_modified;   /* the store's own date */
    unsigned has;           /* LF_ATTR_* flags for the fields below */
    uint32_t mode, uid, gid;
    struct timespec mtime;  /* x-amz-meta-mtime, when present */
};

struct lf_list_entry {
    char *key;
    struct lf_obj_attr attr;
};

/* One page of a ListObjectsV2 answer (or, at the repository root, the
 * branches as prefixes). Keys and prefixes are full keys ("<ref>/..."),
 * already URL-decoded. */
struct lf_list_page {
    struct lf_list_entry *entries;
    size_t nentries;
    char **prefixes;
    size_t nprefixes;
    bool truncated;
    char *next_token; /* pass back verbatim; NULL when not truncated */
};

void lf_list_page_free(struct lf_list_page *page);

/* A request body: memory, or a region of a file. */
struct lf_body {
    const void *mem;
    int fd;
    off_t off;
    uint64_t len;
};

/* Metadata written with an object. */
struct lf_put_meta {
    unsigned has;           /* LF_ATTR_* */
    uint32_t mode, uid, gid;
    struct timespec mtime;
    const char *content_type;
    /* Of has: the fields that only say when the last write happened (a
     * write's mtime), which the object's own time at completion says as
     * well; a multipart upload may leave them out rather than copy the
     * object onto itself to bring them up to date. */
    unsigned implicit;
};

struct lf_part {
    int number;
    char etag[LF_ETAG_MAX];
};

/* Conditions on a write (PutObject, CompleteMultipartUpload); lakeFS's
 * gateway honours both. */
enum lf_put_cond {
    LF_PUT_ANY = 0,
    LF_PUT_IF_ABSENT, /* If-None-Match: * */
};

struct lf_read_ctl {
    /* Polled during the transfer; nonzero aborts it with -EINTR. */
    int (*cancelled)(void *arg);
    void *arg;
};

/* A ranged GET whose answer has been checked (status, Content-Range,
 * ETag) and whose body is still on its connection: a reader moves it into
 * a pipe with splice, a piece at a time, and from there to the kernel, so
 * the bytes of a stream never enter our memory. */
struct lf_stream;
struct lf_stream_ops {
    /* Moves exactly n more bytes into pipe_fd, the write end of a pipe
     * with room for them. Returns 0 or a negative errno: -ETIMEDOUT,
     * -ECONNRESET, -EPROTO (the answer ended early), -EINTR (ctl said
     * so), -ENOBUFS (the pipe filled first); *moved tells how many bytes
     * went into the pipe either way. Not retried: the caller fetches the
     * bytes another way. */
    int (*splice)(struct lf_stream *s, int pipe_fd, size_t n, const struct lf_read_ctl *ctl,
                  size_t *moved);
    /* Ends the stream, read to its end or not. */
    void (*close)(struct lf_stream *s);
};
struct lf_stream {
    const struct lf_stream_ops *ops;
};

/* Counters a store may keep. Operations are named as the S3 API names
 * them (lf_store_op_name: "GetObject"), whatever carries them. */
enum lf_store_op {
    LF_OP_LIST_BUCKETS,
    LF_OP_LIST_OBJECTS,
    LF_OP_HEAD,
    LF_OP_GET,
    LF_OP_PUT,
    LF_OP_COPY,
    LF_OP_DELETE,
    LF_OP_MPU_CREATE,
    LF_OP_MPU_PART,
    LF_OP_MPU_COMPLETE,
    LF_OP_MPU_ABORT,
    LF_OP_OTHER,
    LF_OP_COUNT
};

/* Why one attempt failed (lf_store_err_name: "timeout"). A missing key
 * (404) is an answer, not an error. */
enum lf_store_err {
    LF_ERR_TIMEOUT,   /* no progress within the stall timeout */
    LF_ERR_CONNECT,   /* refused, reset or unreachable */
    LF_ERR_TLS,       /* the TLS handshake failed */
    LF_ERR_PROTOCOL,  /* a truncated or malformed answer, or not the bytes asked for */
    LF_ERR_THROTTLED, /* 429, 503 or SlowDown */
    LF_ERR_SERVER,    /* any other 5xx */
    LF_ERR_CLIENT,    /* a 4xx other than 404 */
    LF_ERR_OTHER,
    LF_ERR_COUNT
};

struct lf_store_stats {
    uint64_t requests[LF_OP_COUNT]; /* attempts sent, retries included */
    uint64_t errors[LF_ERR_COUNT];  /* attempts that failed */
    uint64_t retries[LF_ERR_COUNT]; /* attempts sent again, by why the last one failed */
    uint64_t failures;              /* operations that failed after their retries */
    uint64_t bytes_in, bytes_out;   /* bodies received and sent */
    /* The object store behind presigned URLs (lakefuse/presign.h), when
     * the mount uses them (on): data moves there, apart from the above. */
    struct {
        bool on;
        uint64_t requests, retries, refreshes, failures, api_calls, fallbacks;
        uint64_t bytes_in, bytes_out;
    } storage;
};

const char *lf_store_op_name(enum lf_store_op op);
/* The operation an S3 API name stands for; LF_OP_OTHER when none. */
enum lf_store_op lf_store_op_of(const char *name);
const char *lf_store_err_name(enum lf_store_err kind);

struct lf_store_ops {
    int (*list_buckets)(void *ctx, char ***names, size_t *n);
    int (*list)(void *ctx, const char *bucket, const char *prefix,
                const char *delimiter, const char *token, unsigned max_keys,
                struct lf_list_page *out);
    int (*head)(void *ctx, const char *bucket, const char *key,
                struct lf_obj_attr *out);
    /* Reads [off, off + total length of iov) into the iovec (so a ranged
     * GET lands straight in cache blocks). When etag is non-empty the
     * answer must carry the same ETag, else -ESTALE: the object was
     * replaced. The answer is checked for exactly the bytes asked for
     * (Content-Range and length); a range that runs past the end yields
     * what exists (*got < asked); a start past the end is -ERANGE. */
    int (*get)(void *ctx, const char *bucket, const char *key, uint64_t off,
               const struct iovec *iov, int iovcnt, const char *etag,
               size_t *got, const struct lf_read_ctl *ctl);
    /* Optional (NULL: the store cannot). Opens a GET of exactly
     * [off, off + len), which must lie within the object; the answer is
     * checked as for get (-ESTALE when the ETag differs) and retried until
     * its head is right. -EOPNOTSUPP: not for this request (HTTPS, say);
     * -EBUSY: open streams already hold as many connections as they may. */
    int (*get_stream)(void *ctx, const char *bucket, const char *key, uint64_t off,
                      uint64_t len, const char *etag, const struct lf_read_ctl *ctl,
                      struct lf_stream **out);
    /* -EBADMSG: stored, but not the bytes the body had when it was hashed
     * (they changed while they went): the key holds this client's object
     * now, whatever cond asked. */
    int (*put)(void *ctx, const char *bucket, const char *key,
               const struct lf_body *body, const struct lf_put_meta *meta,
               enum lf_put_cond cond, char etag_out[LF_ETAG_MAX]);
    /* meta NULL: copy the source's metadata; else replace it. */
    int (*copy)(void *ctx, const char *bucket, const char *src_key,
                const char *dst_key, const struct lf_put_meta *meta,
                char etag_out[LF_ETAG_MAX]);
    /* etag: the version the caller means to delete, or NULL. Only for a
     * lost answer: the DELETE goes again if the key still holds exactly
     * that version, never over another. */
    int (*remove)(void *ctx, const char *bucket, const char *key, const char *etag);
    int (*mpu_create)(void *ctx, const char *bucket, const char *key,
                      const struct lf_put_meta *meta, char **upload_id);
    int (*mpu_part)(void *ctx, const char *bucket, const char *key,
                    const char *upload_id, int number,
                    const struct lf_body *body, char etag_out[LF_ETAG_MAX]);
    /* cond as for put: LF_PUT_IF_ABSENT completes only if the key holds
     * nothing (-EEXIST otherwise). meta: the object's metadata as of now
     * (NULL: the create's). A store whose completion can set metadata
     * (lakeFS's presigned completion) does and returns 1; one that cannot
     * (S3's) returns 0 and the object has the create's. */
    int (*mpu_complete)(void *ctx, const char *bucket, const char *key,
                        const char *upload_id, const struct lf_part *parts,
                        size_t nparts, enum lf_put_cond cond,
                        const struct lf_put_meta *meta, char etag_out[LF_ETAG_MAX]);
    int (*mpu_abort)(void *ctx, const char *bucket, const char *key,
                     const char *upload_id);
    void (*destroy)(void *ctx);
    /* Optional (NULL: the store keeps no counters). Its counters since it
     * was made; safe to call from any thread at any time. A store that
     * wraps another may add the inner one's. */
    void (*stats)(void *ctx, struct lf_store_stats *out);
};

struct lf_store {
    const struct lf_store_ops *ops;
    void *ctx;
};

static inline void lf_store_free(struct lf_store *s)
{
    if (s && s->ops)
        s->ops->destroy(s->ctx);
}

/* Whether two ETags name the same content (see store.c on "-N"). */
bool lf_etag_same(const char *a, const char *b);

/* Copies a store attribute's ETag, dropping surrounding quotes. */
void lf_etag_copy(char dst[LF_ETAG_MAX], const char *src);

/* The in-memory store used by unit tests. It counts calls per operation so
 * tests can assert request counts, and can be told to fail. */
enum lf_mem_op {
    LF_MEM_LIST_BUCKETS,
    LF_MEM_LIST,
    LF_MEM_HEAD,
    LF_MEM_GET,
    LF_MEM_GET_STREAM,
    LF_MEM_PUT,
    LF_MEM_COPY,
    LF_MEM_REMOVE,
    LF_MEM_MPU_CREATE,
    LF_MEM_MPU_PART,
    LF_MEM_MPU_COMPLETE,
    LF_MEM_MPU_ABORT,
    LF_MEM_NOPS
};

struct lf_mem_store;
struct lf_mem_store *lf_mem_store_new(void);
/* The store view; owned by the mem store (do not lf_store_free it). */
struct lf_store *lf_mem_store_view(struct lf_mem_store *m);
void lf_mem_store_free(struct lf_mem_store *m);
int lf_mem_store_add_bucket(struct lf_mem_store *m, const char *bucket);
int lf_mem_store_put(struct lf_mem_store *m, const char *bucket,
                     const char *key, const void *data, size_t len);
/* Current content, or NULL; *len set. The pointer stays valid until the
 * key is written or removed. */
const void *lf_mem_store_data(struct lf_mem_store *m, const char *bucket,
                              const char *key, size_t *len);
unsigned long lf_mem_store_calls(struct lf_mem_store *m, enum lf_mem_op op);
uint64_t lf_mem_store_bytes_out(struct lf_mem_store *m);
void lf_mem_store_reset_calls(struct lf_mem_store *m);
/* The next `count` calls of `op` fail with `err` (negative errno); a put
 * failing with -EBADMSG stores the object first, as a gateway does that
 * received other bytes than were hashed. */
void lf_mem_store_fail(struct lf_mem_store *m, enum lf_mem_op op, int err,
                       unsigned count);
/* The next `count` streams opened fail with `err` once `after` bytes of
 * their body have been moved (a connection lost mid-answer). */
void lf_mem_store_break_streams(struct lf_mem_store *m, uint64_t after, int err,
                                unsigned count);
/* Each call sleeps this long first (to test concurrency and overlap). */
void lf_mem_store_set_delay_us(struct lf_mem_store *m, unsigned us);
/* Number of multipart uploads begun and not yet completed or aborted. */
size_t lf_mem_store_open_uploads(struct lf_mem_store *m);

#endif
