/* hash: SHA-256, MD5, HMAC-SHA256, hex and base64 over libcrypto's EVP API.
 *
 * The EVP interface is used rather than the low-level SHA256_* calls, which
 * OpenSSL 3 deprecates. One-shot helpers fill fixed-size arrays because
 * their callers (the signer, the uploader) want digests on the stack, not on
 * the heap. The incremental context can run SHA-256 and MD5 side by side so
 * an upload costs one pass over its bytes for both the payload hash and
 * Content-MD5. Reading a file region goes through a 1 MiB heap buffer: big
 * enough that syscalls don't dominate, small enough to run on many threads.
 */
#include "lakefuse/hash.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <unistd.h>

#define FD_CHUNK (1024 * 1024)

void lf_hex_fill(char *out, const void *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0xf];
    }
    out[2 * n] = '\0';
}

static int digest(const EVP_MD *md, const void *p, size_t n, unsigned char *out)
{
    return EVP_Digest(p, n, out, NULL, md, NULL) == 1 ? 0 : -EIO;
}

int lf_sha256(const void *p, size_t n, unsigned char out[LF_SHA256_LEN])
{
    return digest(EVP_sha256(), p, n, out);
}

int lf_sha256_hex(const void *p, size_t n, char out[LF_SHA256_HEX_SIZE])
{
    unsigned char md[LF_SHA256_LEN];
    int rc = lf_sha256(p, n, md);
    if (rc == 0)
        lf_hex_fill(out, md, sizeof(md));
    return rc;
}

int lf_md5(const void *p, size_t n, unsigned char out[LF_MD5_LEN])
{
    return digest(EVP_md5(), p, n, out);
}

int lf_md5_hex(const void *p, size_t n, char out[LF_MD5_HEX_SIZE])
{
    unsigned char md[LF_MD5_LEN];
    int rc = lf_md5(p, n, md);
    if (rc == 0)
        lf_hex_fill(out, md, sizeof(md));
    return rc;
}

int lf_md5_base64(const void *p, size_t n, char out[LF_MD5_B64_SIZE])
{
    unsigned char md[LF_MD5_LEN];
    int rc = lf_md5(p, n, md);
    if (rc == 0)
        EVP_EncodeBlock((unsigned char *)out, md, sizeof(md));
    return rc;
}

int lf_hmac_sha256(const void *key, size_t keylen, const void *msg,
                   size_t msglen, unsigned char out[LF_SHA256_LEN])
{
    if (keylen > INT_MAX)
        return -EINVAL;
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &len))
        return -EIO;
    return len == LF_SHA256_LEN ? 0 : -EIO;
}

int lf_hex_encode(struct lf_buf *out, const void *p, size_t n)
{
    if (n > (SIZE_MAX - 1) / 2)
        return -ENOMEM;
    int rc = lf_buf_reserve(out, 2 * n);
    if (rc)
        return rc;
    lf_hex_fill(out->data + out->len, p, n);
    out->len += 2 * n;
    return 0;
}

int lf_base64_encode(struct lf_buf *out, const void *p, size_t n)
{
    /* EVP_EncodeBlock takes an int length; feed it whole 3-byte groups so
     * the pieces concatenate into one valid encoding. */
    const size_t step = 3 * 1024 * 1024;
    const unsigned char *in = p;
    int rc = lf_buf_append(out, "", 0);  /* "" for n == 0, p maybe NULL */
    for (size_t done = 0; rc == 0 && done < n;) {
        size_t k = n - done < step ? n - done : step;
        size_t enc = 4 * ((k + 2) / 3);
        if ((rc = lf_buf_reserve(out, enc)) != 0)
            break;
        EVP_EncodeBlock((unsigned char *)out->data + out->len, in + done, (int)k);
        out->len += enc;
        done += k;
    }
    return rc;
}

int lf_multipart_etag(struct lf_buf *out, const unsigned char *part_md5s, size_t n)
{
    if (n == 0 || !part_md5s)
        return -EINVAL;
    if (n > SIZE_MAX / LF_MD5_LEN)
        return -ENOMEM;
    char hex[LF_MD5_HEX_SIZE];
    /* The digests sit back to back already: exactly what S3 hashes. */
    int rc = lf_md5_hex(part_md5s, n * LF_MD5_LEN, hex);
    if (rc)
        return rc;
    return lf_buf_printf(out, "%s-%zu", hex, n);
}

struct lf_hash {
    EVP_MD_CTX *sha256;  /* NULL when not asked for */
    EVP_MD_CTX *md5;
};

static int start(EVP_MD_CTX *ctx, const EVP_MD *md)
{
    if (!ctx)
        return 0;
    return EVP_DigestInit_ex(ctx, md, NULL) == 1 ? 0 : -EIO;
}

static int restart(struct lf_hash *h)
{
    int rc = start(h->sha256, EVP_sha256());
    if (rc == 0)
        rc = start(h->md5, EVP_md5());
    return rc;
}

struct lf_hash *lf_hash_new(unsigned algs)
{
    if (algs == 0 || (algs & ~(unsigned)(LF_HASH_SHA256 | LF_HASH_MD5)))
        return NULL;
    struct lf_hash *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    if ((algs & LF_HASH_SHA256) && !(h->sha256 = EVP_MD_CTX_new()))
        goto fail;
    if ((algs & LF_HASH_MD5) && !(h->md5 = EVP_MD_CTX_new()))
        goto fail;
    if (restart(h))
        goto fail;
    return h;
fail:
    lf_hash_free(h);
    return NULL;
}

int lf_hash_update(struct lf_hash *h, const void *p, size_t n)
{
    if (h->sha256 && EVP_DigestUpdate(h->sha256, p, n) != 1)
        return -EIO;
    if (h->md5 && EVP_DigestUpdate(h->md5, p, n) != 1)
        return -EIO;
    return 0;
}

int lf_hash_final(struct lf_hash *h, struct lf_hash_result *out)
{
    if (h->sha256 && EVP_DigestFinal_ex(h->sha256, out->sha256, NULL) != 1)
        return -EIO;
    if (h->md5 && EVP_DigestFinal_ex(h->md5, out->md5, NULL) != 1)
        return -EIO;
    return restart(h);
}

void lf_hash_free(struct lf_hash *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->sha256);
    EVP_MD_CTX_free(h->md5);
    free(h);
}

/* Reads exactly n bytes at off; a premature end of file is -EIO because
 * the caller asked to hash bytes that are not there. */
static int pread_full(int fd, void *p, size_t n, off_t off)
{
    char *dst = p;
    while (n > 0) {
        ssize_t r = pread(fd, dst, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EIO;
        dst += r;
        off += r;
        n -= (size_t)r;
    }
    return 0;
}

int lf_sha256_fd_hex(int fd, off_t off, uint64_t len,
                     char out[LF_SHA256_HEX_SIZE])
{
    if (off < 0)
        return -EINVAL;
    int rc = -ENOMEM;
    struct lf_hash_result res;
    struct lf_hash *h = lf_hash_new(LF_HASH_SHA256);
    char *chunk = malloc(len < FD_CHUNK ? (size_t)len + 1 : FD_CHUNK);
    if (!h || !chunk)
        goto out;
    while (len > 0) {
        size_t n = len < FD_CHUNK ? (size_t)len : FD_CHUNK;
        if ((rc = pread_full(fd, chunk, n, off)) != 0)
            goto out;
        if ((rc = lf_hash_update(h, chunk, n)) != 0)
            goto out;
        off += (off_t)n;
        len -= n;
    }
    if ((rc = lf_hash_final(h, &res)) == 0)
        lf_hex_fill(out, res.sha256, LF_SHA256_LEN);
out:
    free(chunk);
    lf_hash_free(h);
    return rc;
}
