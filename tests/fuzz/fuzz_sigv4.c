/* SigV4 canonicalisation of fuzzed methods, paths, query parameters and
 * headers: never crash, and signing the same request twice agrees. The
 * input is split at NUL bytes into fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lakefuse/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXF 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *f[MAXF];
    size_t nf = 0;
    for (char *p = copy; nf < MAXF && p <= copy + size; p += strlen(p) + 1)
        f[nf++] = p;
    const char *method = nf > 0 ? f[0] : "GET";
    const char *path = nf > 1 ? f[1] : "/";
    struct lf_sigv4_kv q[4], h[6];
    size_t nq = 0, nh = 0;
    for (size_t i = 2; i + 1 < nf && nq < 4 && i < 10; i += 2)
        q[nq++] = (struct lf_sigv4_kv){f[i], f[i + 1]};
    h[nh++] = (struct lf_sigv4_kv){"host", "127.0.0.1:8000"};
    for (size_t i = 10; i + 1 < nf && nh < 6; i += 2)
        h[nh++] = (struct lf_sigv4_kv){f[i], f[i + 1]};
    struct lf_sigv4_req req = {.method = method, .path = path, .query = q, .nquery = nq,
                               .headers = h, .nheaders = nh,
                               .payload_hash = LF_SIGV4_UNSIGNED_PAYLOAD, .time = 1700000000};
    struct lf_sigv4 *s = lf_sigv4_new("AKIDEXAMPLE", "secret", "us-east-1", "s3");
    struct lf_buf a = LF_BUF_INIT, b = LF_BUF_INIT, c = LF_BUF_INIT;
    if (s) {
        int ra = lf_sigv4_authorization(s, &req, &a);
        int rb = lf_sigv4_authorization(s, &req, &b);
        if (ra != rb || (ra == 0 && strcmp(a.data, b.data) != 0))
            abort();
        lf_sigv4_canonical_request(&req, &c);
        lf_buf_reset(&c);
        lf_sigv4_presign(s, &req, 60, &c, NULL);
        lf_sigv4_free(s);
    }
    lf_buf_free(&a);
    lf_buf_free(&b);
    lf_buf_free(&c);
    free(copy);
    return 0;
}
