/* test_hash: digests against published vectors (FIPS 180 examples, RFC
 * 1321, RFC 4231, RFC 4648), incremental and file-region hashing against
 * the one-shot results, and the S3 multipart ETag. */
#include "check.h"
#include "lakefuse/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_sha256(void)
{
    char hex[LF_SHA256_HEX_SIZE];
    CHECK_INT(lf_sha256_hex("", 0, hex), 0);
    CHECK_STR(hex, LF_SHA256_EMPTY_HEX);
    CHECK_INT(lf_sha256_hex("abc", 3, hex), 0);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_INT(lf_sha256_hex("Welcome to Amazon S3.", 21, hex), 0);
    CHECK_STR(hex, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    unsigned char raw[LF_SHA256_LEN];
    CHECK_INT(lf_sha256("abc", 3, raw), 0);
    CHECK_INT(raw[0], 0xba);
    CHECK_INT(raw[31], 0xad);
}

static void test_md5(void)
{
    char hex[LF_MD5_HEX_SIZE], b64[LF_MD5_B64_SIZE];
    CHECK_INT(lf_md5_hex("", 0, hex), 0);
    CHECK_STR(hex, "d41d8cd98f00b204e9800998ecf8427e");
    CHECK_INT(lf_md5_hex("abc", 3, hex), 0);
    CHECK_STR(hex, "900150983cd24fb0d6963f7d28e17f72");
    CHECK_INT(lf_md5_base64("", 0, b64), 0);
    CHECK_STR(b64, "1B2M2Y8AsgTpgAmY7PhCfg==");
    CHECK_INT(lf_md5_base64("Welcome to Amazon S3.", 21, b64), 0);
    CHECK_STR(b64, "1EfQ6PKJ8WoS/2AnznfCWA==");
    unsigned char raw[LF_MD5_LEN];
    CHECK_INT(lf_md5("abc", 3, raw), 0);
    CHECK_INT(raw[0], 0x90);
}

static void test_hmac(void)
{
    /* RFC 4231 test cases 1 and 2. */
    unsigned char key[20], mac[LF_SHA256_LEN];
    memset(key, 0x0b, sizeof(key));
    struct lf_buf b = LF_BUF_INIT;
    CHECK_INT(lf_hmac_sha256(key, sizeof(key), "Hi There", 8, mac), 0);
    CHECK_INT(lf_hex_encode(&b, mac, sizeof(mac)), 0);
    CHECK_STR(b.data, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    lf_buf_reset(&b);
    const char *msg = "what do ya want for nothing?";
    CHECK_INT(lf_hmac_sha256("Jefe", 4, msg, strlen(msg), mac), 0);
    CHECK_INT(lf_hex_encode(&b, mac, sizeof(mac)), 0);
    CHECK_STR(b.data, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    lf_buf_free(&b);
}

static void test_encodings(void)
{
    static const char *const b64[][2] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    struct lf_buf b = LF_BUF_INIT;
    for (size_t i = 0; i < sizeof(b64) / sizeof(b64[0]); i++) {
        lf_buf_reset(&b);
        CHECK_INT(lf_base64_encode(&b, b64[i][0], strlen(b64[i][0])), 0);
        CHECK_STR(b.data, b64[i][1]);
    }
    lf_buf_reset(&b);
    CHECK_INT(lf_base64_encode(&b, NULL, 0), 0);
    CHECK_STR(b.data, "");
    /* Appends, and hex covers every byte value. */
    lf_buf_reset(&b);
    lf_buf_puts(&b, "x=");
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    CHECK_INT(lf_hex_encode(&b, all, sizeof(all)), 0);
    CHECK_INT(b.len, 2 + 512);
    CHECK(strncmp(b.data, "x=000102", 8) == 0);
    CHECK_STR(b.data + b.len - 6, "fdfeff");
    char fixed[7];
    lf_hex_fill(fixed, "\x01\xab\xff", 3);
    CHECK_STR(fixed, "01abff");
    lf_buf_free(&b);
}

/* Past the 3 MiB step lf_base64_encode feeds libcrypto in: the pieces must
 * join into the encoding of the whole. */
static void test_base64_large(void)
{
    size_t n = 3 * 1024 * 1024 + 5;
    unsigned char *in = malloc(n);
    for (size_t i = 0; i < n; i++)
        in[i] = (unsigned char)(i * 131 + 7);
    struct lf_buf b = LF_BUF_INIT;
    CHECK_INT(lf_base64_encode(&b, in, n), 0);
    CHECK_INT(b.len, 4 * ((n + 2) / 3));
    CHECK_INT(strlen(b.data), b.len);
    /* Around the seam every group decodes back to its bytes. */
    struct lf_buf tail = LF_BUF_INIT;
    CHECK_INT(lf_base64_encode(&tail, in + 3 * 1024 * 1024 - 3, 8), 0);
    size_t seam = 4 * (1024 * 1024 - 1);
    CHECK(memcmp(b.data + seam, tail.data, tail.len) == 0);
    free(in);
    lf_buf_free(&b);
    lf_buf_free(&tail);
}

static void test_incremental(void)
{
    struct lf_hash *h = lf_hash_new(LF_HASH_SHA256 | LF_HASH_MD5);
    CHECK(h != NULL);
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    /* Uneven chunks, including empty ones. */
    size_t off = 0, step = 1;
    while (off < 1000000) {
        size_t n = step < 1000000 - off ? step : 1000000 - off;
        CHECK_INT(lf_hash_update(h, a + off, n), 0);
        CHECK_INT(lf_hash_update(h, a, 0), 0);
        off += n;
        step = step * 3 + 1;
    }
    struct lf_hash_result r;
    CHECK_INT(lf_hash_final(h, &r), 0);
    char hex[LF_SHA256_HEX_SIZE], md5[LF_MD5_HEX_SIZE];
    lf_hex_fill(hex, r.sha256, sizeof(r.sha256));
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    unsigned char want_md5[LF_MD5_LEN];
    CHECK_INT(lf_md5(a, 1000000, want_md5), 0);
    CHECK(memcmp(r.md5, want_md5, LF_MD5_LEN) == 0);
    /* final starts over: the next stream is independent of the first. */
    CHECK_INT(lf_hash_update(h, "abc", 3), 0);
    CHECK_INT(lf_hash_final(h, &r), 0);
    lf_hex_fill(md5, r.md5, sizeof(r.md5));
    CHECK_STR(md5, "900150983cd24fb0d6963f7d28e17f72");
    lf_hash_free(h);

    CHECK(lf_hash_new(0) == NULL);
    CHECK(lf_hash_new(1u << 7) == NULL);
    h = lf_hash_new(LF_HASH_MD5);
    CHECK_INT(lf_hash_final(h, &r), 0);
    lf_hex_fill(md5, r.md5, sizeof(r.md5));
    CHECK_STR(md5, "d41d8cd98f00b204e9800998ecf8427e");
    lf_hash_free(h);
    lf_hash_free(NULL);
    free(a);
}

static void test_fd_region(void)
{
    char path[] = "/tmp/lf_test_hash_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    size_t n = 3 * 1024 * 1024 + 17;
    unsigned char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i ^ (i >> 8) ^ (i >> 16));
    CHECK_INT(write(fd, data, n), n);
    char got[LF_SHA256_HEX_SIZE], want[LF_SHA256_HEX_SIZE];
    /* Regions that fit one chunk, span several, and end on a boundary. */
    static const size_t regions[][2] = {
        {0, 0}, {0, 1}, {5, 1024 * 1024}, {5, 2621440}, {0, 3 * 1024 * 1024 + 17},
        {1024 * 1024, 2 * 1024 * 1024}, {3 * 1024 * 1024 + 17, 0},
    };
    for (size_t i = 0; i < sizeof(regions) / sizeof(regions[0]); i++) {
        size_t off = regions[i][0], len = regions[i][1];
        CHECK_INT(lf_sha256_fd_hex(fd, (off_t)off, len, got), 0);
        CHECK_INT(lf_sha256_hex(data + off, len, want), 0);
        CHECK_STR(got, want);
    }
    CHECK_INT(lf_sha256_fd_hex(fd, 10, n, got), -EIO);       /* past EOF */
    CHECK_INT(lf_sha256_fd_hex(fd, -1, 1, got), -EINVAL);
    CHECK_INT(lf_sha256_fd_hex(-1, 0, 1, got), -EBADF);
    close(fd);
    free(data);
}

static void test_multipart_etag(void)
{
    unsigned char md5s[3 * LF_MD5_LEN];  /* as an uploader collects them */
    lf_md5("part one", 8, md5s);
    lf_md5("part two", 8, md5s + LF_MD5_LEN);
    char hundred[100];
    memset(hundred, 'x', sizeof(hundred));
    lf_md5(hundred, sizeof(hundred), md5s + 2 * LF_MD5_LEN);
    struct lf_buf b = LF_BUF_INIT;
    CHECK_INT(lf_multipart_etag(&b, md5s, 3), 0);
    CHECK_STR(b.data, "04ff936753e907e83d47c9feb0811384-3");
    lf_buf_reset(&b);
    lf_md5("only", 4, md5s);
    CHECK_INT(lf_multipart_etag(&b, md5s, 1), 0);
    CHECK_STR(b.data, "ea62d57755f34c46eea7035b29d5fc46-1");
    CHECK_INT(lf_multipart_etag(&b, md5s, 0), -EINVAL);
    lf_buf_free(&b);
}

int main(void)
{
    test_sha256();
    test_md5();
    test_hmac();
    test_encodings();
    test_base64_large();
    test_incremental();
    test_fd_region();
    test_multipart_etag();
    return check_summary("test_hash");
}
