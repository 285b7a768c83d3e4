/* lakefs:// URIs, ref spelling and percent-coding: never crash, and
 * decoding what was encoded gives the input back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lakefuse/uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct lf_lakefs_uri u;
    if (lf_lakefs_uri_parse(s, &u) == 0) {
        if (!lf_repo_name_is_valid(u.repo, strlen(u.repo)))
            abort(); /* a parsed URI names a valid repository */
        if (u.ref[0] && !lf_ref_is_valid(u.ref, strlen(u.ref)))
            abort();
        size_t pl = strlen(u.path);
        if (pl && (!u.ref[0] || u.path[0] == '/' || u.path[pl - 1] == '/' ||
                   strstr(u.path, "//")))
            abort(); /* a path is relative, under a ref, with no empty segment */
    }
    size_t n = strlen(s);
    lf_ref_is_valid(s, n);
    lf_ref_is_full_commit_id(s);
    lf_ref_is_branch_name(s);
    lf_ref_has_modifier(s);
    lf_name_is_valid_segment(s, n);

    struct lf_buf enc = LF_BUF_INIT, dec = LF_BUF_INIT;
    for (int keep = 0; keep < 2; keep++) {
        lf_buf_reset(&enc);
        lf_buf_reset(&dec);
        if (lf_uri_encode(&enc, (const char *)data, size, keep) == 0 &&
            lf_uri_decode(&dec, enc.data ? enc.data : "", enc.len) == 0 &&
            (dec.len != size || (size && memcmp(dec.data, data, size) != 0)))
            abort(); /* encoding is reversible */
    }
    lf_buf_reset(&dec);
    lf_uri_decode(&dec, (const char *)data, size);
    lf_buf_free(&enc);
    lf_buf_free(&dec);
    free(s);
    return 0;
}
