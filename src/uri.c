/* uri: percent-encoding, lakefs:// parsing and ref classification.
 *
 * Character classes are spelled out byte by byte instead of using
 * <ctype.h>: isalnum and friends follow the locale, and a name that is a
 * valid branch under one locale but not another would make writability
 * depend on the environment. Parsing writes into fixed arrays in the
 * caller's struct, so a rejected URI leaves nothing to free.
 */
#include "lakefuse/uri.h"

#include <errno.h>
#include <string.h>

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bool is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }

static bool is_alnum(unsigned char c)
{
    return is_digit(c) || is_lower(c) || (c >= 'A' && c <= 'Z');
}

static bool is_unreserved(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

/* The hex value of c, or -1. */
static int hex_value(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int lf_uri_encode(struct lf_buf *out, const char *s, size_t n, bool keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    /* Worst case triples the input; reserve once so the loop can't fail. */
    if (n > (((size_t)-1) - 1) / 3)
        return -ENOMEM;
    int rc = lf_buf_reserve(out, 3 * n);
    if (rc)
        return rc;
    char *dst = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            *dst++ = (char)c;
        } else {
            *dst++ = '%';
            *dst++ = digits[c >> 4];
            *dst++ = digits[c & 0xf];
        }
    }
    *dst = '\0';
    out->len = (size_t)(dst - out->data);
    return 0;
}

int lf_uri_decode(struct lf_buf *out, const char *s, size_t n)
{
    int rc = lf_buf_reserve(out, n);
    if (rc)
        return rc;
    char *dst = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *dst++ = s[i];
            continue;
        }
        int hi = i + 2 < n ? hex_value((unsigned char)s[i + 1]) : -1;
        int lo = i + 2 < n ? hex_value((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            rc = -EINVAL;
            break;
        }
        *dst++ = (char)(hi << 4 | lo);
        i += 2;
    }
    *dst = '\0';
    out->len = (size_t)(dst - out->data);
    return rc;
}

bool lf_repo_name_is_valid(const char *s, size_t n)
{
    if (n < 3 || n > LF_REPO_NAME_MAX)
        return false;
    if (!is_digit((unsigned char)s[0]) && !is_lower((unsigned char)s[0]))
        return false;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_digit(c) && !is_lower(c) && c != '-')
            return false;
    }
    return true;
}

bool lf_ref_is_valid(const char *s, size_t n)
{
    if (n == 0 || n > LF_REF_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || is_control((unsigned char)s[i]))
            return false;
    return true;
}

/* The path after the ref: segments that are usable file names, joined by
 * single slashes, with one optional trailing slash that is dropped. */
static int parse_path(const char *p, char *out)
{
    size_t n = strlen(p);
    if (n > 0 && p[n - 1] == '/')
        n--;
    /* An empty segment ("main//", "a//b", "a//") is no file name. */
    if ((n > 0 && p[n - 1] == '/') || p[0] == '/')
        return -EINVAL;
    if (n > LF_PATH_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n;) {
        size_t seg = strcspn(p + i, "/");
        if (seg > n - i)
            seg = n - i;
        if (!lf_name_is_valid_segment(p + i, seg))
            return -EINVAL;
        for (size_t k = i; k < i + seg; k++)
            if (is_control((unsigned char)p[k]))
                return -EINVAL;
        i += seg + 1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

int lf_lakefs_uri_parse(const char *uri, struct lf_lakefs_uri *out)
{
    static const char scheme[] = "lakefs://";
    if (strncmp(uri, scheme, sizeof(scheme) - 1) != 0)
        return -EINVAL;
    const char *repo = uri + sizeof(scheme) - 1;
    size_t repo_len = strcspn(repo, "/");
    if (!lf_repo_name_is_valid(repo, repo_len))
        return -EINVAL;
    const char *ref = repo + repo_len;
    size_t ref_len = 0;
    out->path[0] = '\0';
    if (*ref == '/') {
        ref++;
        ref_len = strcspn(ref, "/");
        /* After the repository a slash alone is a trailing slash; after
         * the ref comes an optional path. */
        const char *rest = ref + ref_len;
        if (ref_len == 0 && *rest != '\0')
            return -EINVAL;
        if (ref_len > 0 && !lf_ref_is_valid(ref, ref_len))
            return -EINVAL;
        if (*rest == '/' && parse_path(rest + 1, out->path) != 0)
            return -EINVAL;
    }
    memcpy(out->repo, repo, repo_len);
    out->repo[repo_len] = '\0';
    memcpy(out->ref, ref, ref_len);
    out->ref[ref_len] = '\0';
    return 0;
}

bool lf_ref_is_full_commit_id(const char *ref)
{
    size_t i = 0;
    for (; ref[i]; i++)
        if (i >= 64 || !(is_digit((unsigned char)ref[i]) ||
                         (ref[i] >= 'a' && ref[i] <= 'f')))
            return false;
    return i == 64;
}

static bool is_word(unsigned char c) { return is_alnum(c) || c == '_'; }

bool lf_ref_is_branch_name(const char *ref)
{
    if (!is_word((unsigned char)ref[0]))
        return false;
    for (size_t i = 1; ref[i]; i++)
        if (!is_word((unsigned char)ref[i]) && ref[i] != '-')
            return false;
    return true;
}

bool lf_ref_has_modifier(const char *ref) { return strpbrk(ref, "~^@$") != NULL; }

bool lf_name_is_valid_segment(const char *s, size_t n)
{
    if (n == 0 || n > LF_NAME_MAX)
        return false;
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    return memchr(s, '/', n) == NULL && memchr(s, '\0', n) == NULL;
}
