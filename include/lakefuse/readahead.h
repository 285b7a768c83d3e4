/* readahead: reads of one open object through the block cache.
 *
 * Each open file gets a reader. Reads that continue where the last one
 * ended grow a prefetch window (initial size, doubled per window consumed,
 * up to a maximum; at once to the maximum after a read waited as long as
 * a distant server takes to answer) filled by ranged GETs of up to
 * request_size bytes, running in parallel on the work queue. Any other
 * read fetches only the blocks it touches and resets the window. When
 * the cache's budget refuses a prefetch, the window halves: many readers
 * share the memory instead of growing past it.
 *
 * A reader of a big object (opts.stream_min) streams its sequential reads
 * instead: the window is filled by GETs whose answers wait on their
 * connections, and lf_reader_splice moves each read's bytes from the
 * socket into a pipe for the kernel, never into our memory. Once one of
 * those GETs has been slow to answer (a distant server), the window goes
 * to its maximum instead of doubling, since every doubling would stop
 * the reader for a round trip. Such objects would not stay in the
 * cache anyway; what a stream cannot serve (random reads, a failed or
 * refused GET) goes through the blocks.
 *
 * Every GET is pinned to the ETag seen at open; a replaced object yields
 * -ESTALE, never a mix of two versions.
 */
#ifndef LAKEFUSE_READAHEAD_H
#define LAKEFUSE_READAHEAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "lakefuse/bcache.h"
#include "lakefuse/store.h"
#include "lakefuse/workq.h"

struct lf_reader;

struct lf_ra_opts {
    size_t initial_window; /* bytes; default 1 MiB */
    size_t max_window;     /* bytes; default 64 MiB */
    size_t request_size;   /* one ranged GET; default 8 MiB */
    uint64_t stream_min;   /* objects this large stream (if the store can); 0: none */
};

struct lf_ra_stats {
    uint64_t gets;         /* ranged GETs issued by this reader */
    uint64_t prefetched;   /* bytes requested ahead of the reader */
    size_t window;         /* current window */
    uint64_t streams;      /* of the GETs, those read as streams */
    uint64_t spliced;      /* bytes moved by lf_reader_splice */
};

/* bucket, key and etag are copied. */
struct lf_reader *lf_reader_new(struct lf_bcache *cache, struct lf_store *store,
                                struct lf_workq *wq, const char *bucket,
                                const char *key, const char *etag,
                                uint64_t size, const struct lf_ra_opts *opts);
/* Waits for this reader's prefetches still in flight, then frees it. */
void lf_reader_free(struct lf_reader *r);
/* Returns bytes read (short only at end of object) or a negative errno. */
ssize_t lf_reader_read(struct lf_reader *r, void *dst, size_t len, uint64_t off,
                       const struct lf_read_ctl *ctl);
/* Zero-copy reads: the cache blocks covering a read, pinned, as an iovec
 * (for fuse_reply_iov). Reads span at most LF_PIN_MAX - 1 blocks
 * (-EINVAL otherwise). iovcnt is 0 at the end of the object. Unpin after
 * the reply, also after an error: unpinning needs only the cache, since
 * the file (and its reader) may be closed as soon as the reply is out. */
#define LF_PIN_MAX 8
struct lf_pinned {
    struct iovec iov[LF_PIN_MAX];
    struct lf_block *blocks[LF_PIN_MAX];
    unsigned nblocks;
    uint64_t off;
    size_t len;
    struct lf_bcache *cache;
    size_t bs;
};
int lf_reader_pin(struct lf_reader *r, size_t len, uint64_t off, const struct lf_read_ctl *ctl,
                  struct lf_pinned *p);
void lf_reader_unpin(struct lf_pinned *p);

/* Streams [off, off + len) into a pipe (pipefd[1] its write end, empty,
 * nonblocking, with room for hlen + len bytes; pipefd[0] its read end),
 * the hlen bytes at head first (a reply header, say; head may be NULL).
 * Returns the bytes of the object now in the pipe (short only at the end
 * of the object; 0 there, with nothing written), -EAGAIN when this read
 * is not for a stream (use lf_reader_pin or lf_reader_read), or -ESTALE,
 * -EINTR. On any error the pipe is left empty. */
ssize_t lf_reader_splice(struct lf_reader *r, size_t len, uint64_t off, const void *head,
                         size_t hlen, const int pipefd[2], const struct lf_read_ctl *ctl);
/* Fetches the whole object (at most LF_WARM_MAX bytes: -EFBIG beyond)
 * into the cache for readers to come, on the calling thread, taking
 * blocks within the budget only (as prefetches do): blocks cached or in
 * flight already are left alone. Returns 0, -ENOBUFS when the budget
 * refused a block, or the GET's error. */
#define LF_WARM_MAX (8u << 20)
int lf_reader_warm(struct lf_reader *r, const struct lf_read_ctl *ctl);
/* The object's size as seen at open. */
uint64_t lf_reader_size(const struct lf_reader *r);
/* Empties a pipe whose read end is nonblocking. */
void lf_pipe_drain(int rfd);

void lf_reader_get_stats(struct lf_reader *r, struct lf_ra_stats *st);

#endif
