/* hash: the digests and encodings the S3 protocol needs, over libcrypto.
 *
 * SHA-256 signs payloads (x-amz-content-sha256), MD5 checks uploads
 * (Content-MD5 and ETags), HMAC-SHA256 derives SigV4 keys. Fixed-size
 * results go into caller arrays sized by the constants below; results of
 * any length are appended to an lf_buf. Everything returns 0 or a negative
 * errno: -ENOMEM, -EIO when libcrypto refuses (e.g. MD5 in FIPS mode).
 */
#ifndef LAKEFUSE_HASH_H
#define LAKEFUSE_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lakefuse/buf.h"

#define LF_SHA256_LEN 32
#define LF_SHA256_HEX_SIZE 65   /* 64 hex digits + NUL */
#define LF_MD5_LEN 16
#define LF_MD5_HEX_SIZE 33      /* 32 hex digits + NUL */
#define LF_MD5_B64_SIZE 25      /* 24 base64 chars + NUL */

/* The SHA-256 of no bytes: the payload hash of every body-less request. */
#define LF_SHA256_EMPTY_HEX \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

int lf_sha256(const void *p, size_t n, unsigned char out[LF_SHA256_LEN]);
int lf_sha256_hex(const void *p, size_t n, char out[LF_SHA256_HEX_SIZE]);
/* SHA-256 of bytes [off, off+len) of fd, read with pread. A file shorter
 * than off+len gives -EIO; a read error gives its errno. */
int lf_sha256_fd_hex(int fd, off_t off, uint64_t len,
                     char out[LF_SHA256_HEX_SIZE]);

int lf_md5(const void *p, size_t n, unsigned char out[LF_MD5_LEN]);
int lf_md5_hex(const void *p, size_t n, char out[LF_MD5_HEX_SIZE]);
/* The Content-MD5 header value. */
int lf_md5_base64(const void *p, size_t n, char out[LF_MD5_B64_SIZE]);

int lf_hmac_sha256(const void *key, size_t keylen, const void *msg,
                   size_t msglen, unsigned char out[LF_SHA256_LEN]);

/* Append the encoding of p[0..n) to out. Hex is lowercase. */
int lf_hex_encode(struct lf_buf *out, const void *p, size_t n);
/* The same hex into out[0..2n], NUL included, for digests on the stack. */
void lf_hex_fill(char *out, const void *p, size_t n);
int lf_base64_encode(struct lf_buf *out, const void *p, size_t n);

/* Appends the ETag S3 gives an object uploaded in n parts (n >= 1):
 * hex MD5 of the concatenated raw part MD5s, '-', n; without quotes.
 * part_md5s holds the n raw digests back to back (n * LF_MD5_LEN bytes). */
int lf_multipart_etag(struct lf_buf *out, const unsigned char *part_md5s, size_t n);

/* Incremental hashing, so an upload is hashed chunk by chunk as it is
 * read, computing any of the digests in one pass over the data. */
enum lf_hash_alg {
    LF_HASH_SHA256 = 1u << 0,
    LF_HASH_MD5 = 1u << 1,
};

struct lf_hash_result {
    unsigned char sha256[LF_SHA256_LEN];
    unsigned char md5[LF_MD5_LEN];
};

struct lf_hash;

/* algs: a non-empty OR of enum lf_hash_alg. NULL on failure. */
struct lf_hash *lf_hash_new(unsigned algs);
int lf_hash_update(struct lf_hash *h, const void *p, size_t n);
/* Fills the digests asked for at lf_hash_new and starts the context over,
 * ready for the next stream. */
int lf_hash_final(struct lf_hash *h, struct lf_hash_result *out);
void lf_hash_free(struct lf_hash *h);

#endif
