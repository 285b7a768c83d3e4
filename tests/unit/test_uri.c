/* test_uri: percent-encoding over every byte value, decoding errors,
 * lakefs:// parsing edge cases, ref classification and name segments. */
#include "check.h"
#include "lakefuse/uri.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct lf_buf enc_out;  /* enc()'s result; freed at the end of main */

static const char *enc(const char *s, bool keep_slash)
{
    lf_buf_reset(&enc_out);
    if (lf_uri_encode(&enc_out, s, strlen(s), keep_slash))
        return NULL;
    return enc_out.data;
}

static void test_encode(void)
{
    CHECK_STR(enc("", true), "");
    CHECK_STR(enc("AZaz09-._~", false), "AZaz09-._~");
    CHECK_STR(enc("/my-repo/main/dir/a b+c.txt", true), "/my-repo/main/dir/a%20b%2Bc.txt");
    CHECK_STR(enc("/my-repo/main/dir/a b+c.txt", false),
              "%2Fmy-repo%2Fmain%2Fdir%2Fa%20b%2Bc.txt");
    CHECK_STR(enc("\xe1\x88\xb4", false), "%E1%88%B4");
    CHECK_STR(enc("test$file.text", true), "test%24file.text");
    CHECK_STR(enc("%2F", true), "%252F");  /* encoded once, never decoded */
    CHECK_STR(enc("a=b&c;d", false), "a%3Db%26c%3Bd");
    /* Appends to what the buffer holds. */
    struct lf_buf b = LF_BUF_INIT;
    lf_buf_puts(&b, "/x/");
    CHECK_INT(lf_uri_encode(&b, "a b", 3, true), 0);
    CHECK_STR(b.data, "/x/a%20b");
    lf_buf_free(&b);
}

static bool unreserved(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* Each byte alone: kept or %XX with uppercase hex, and back again; then
 * all 256 in one string, NUL included, in both slash modes. */
static void test_all_bytes(void)
{
    struct lf_buf e = LF_BUF_INIT, d = LF_BUF_INIT;
    for (int c = 0; c < 256; c++) {
        char in = (char)c, want[4];
        for (int keep = 0; keep < 2; keep++) {
            lf_buf_reset(&e);
            CHECK_INT(lf_uri_encode(&e, &in, 1, keep), 0);
            if (unreserved(c) || (keep && c == '/'))
                snprintf(want, sizeof(want), "%c", c);
            else
                snprintf(want, sizeof(want), "%%%02X", c);
            CHECK_STR(e.data, want);
            lf_buf_reset(&d);
            CHECK_INT(lf_uri_decode(&d, e.data, e.len), 0);
            CHECK_INT(d.len, 1);
            CHECK_INT((unsigned char)d.data[0], c);
        }
    }
    char all[256];
    for (int c = 0; c < 256; c++)
        all[c] = (char)c;
    for (int keep = 0; keep < 2; keep++) {
        lf_buf_reset(&e);
        lf_buf_reset(&d);
        CHECK_INT(lf_uri_encode(&e, all, sizeof(all), keep), 0);
        CHECK_INT(e.len, 66 + 3 * (256 - 66) - 2 * keep);
        CHECK_INT(lf_uri_decode(&d, e.data, e.len), 0);
        CHECK_INT(d.len, 256);
        CHECK(memcmp(d.data, all, 256) == 0);
    }
    /* Lowercase hex decodes too, as listings may send it. */
    lf_buf_reset(&d);
    CHECK_INT(lf_uri_decode(&d, "%e1%88%b4", 9), 0);
    CHECK_STR(d.data, "\xe1\x88\xb4");
    lf_buf_free(&e);
    lf_buf_free(&d);
}

static int dec(const char *s, struct lf_buf *out)
{
    lf_buf_reset(out);
    return lf_uri_decode(out, s, strlen(s));
}

static void test_decode(void)
{
    struct lf_buf b = LF_BUF_INIT;
    CHECK_INT(dec("a+b%20c", &b), 0);
    CHECK_STR(b.data, "a+b c");  /* '+' is not a space */
    CHECK_INT(dec("", &b), 0);
    CHECK_STR(b.data, "");
    CHECK_INT(dec("%00", &b), 0);
    CHECK_INT(b.len, 1);
    CHECK_INT(b.data[0], 0);
    CHECK_INT(dec("dir%2Fsub/%41", &b), 0);
    CHECK_STR(b.data, "dir/sub/A");
    CHECK_INT(dec("%2541", &b), 0);
    CHECK_STR(b.data, "%41");  /* one level only */
    static const char *const bad[] = {"%", "%4", "%G1", "%4G", "abc%", "ab%2",
                                      "%%41", "% 41", "%-1", "%\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = dec(bad[i], &b);
        if (rc != -EINVAL)
            fprintf(stderr, "decoding \"%s\" gave %d\n", bad[i], rc);
        CHECK_INT(rc, -EINVAL);
        CHECK_INT(strlen(b.data), b.len);  /* still a terminated string */
    }
    /* Length-bounded: a '%' at the edge of n is bad even if bytes follow. */
    lf_buf_reset(&b);
    CHECK_INT(lf_uri_decode(&b, "ab%41", 4), -EINVAL);
    lf_buf_reset(&b);
    CHECK_INT(lf_uri_decode(&b, "ab%41", 5), 0);
    CHECK_STR(b.data, "abA");
    lf_buf_free(&b);
}

static void check_uri_path(const char *uri, int want_rc, const char *repo, const char *ref,
                           const char *path)
{
    struct lf_lakefs_uri u;
    memset(&u, 0x55, sizeof(u));
    int rc = lf_lakefs_uri_parse(uri, &u);
    if (rc != want_rc)
        fprintf(stderr, "parsing \"%s\" gave %d\n", uri, rc);
    CHECK_INT(rc, want_rc);
    if (rc == 0 && want_rc == 0) {
        CHECK_STR(u.repo, repo);
        CHECK_STR(u.ref, ref);
        CHECK_STR(u.path, path);
    }
}

static void check_uri(const char *uri, int want_rc, const char *repo, const char *ref)
{
    check_uri_path(uri, want_rc, repo, ref, "");
}

static void test_lakefs_uri(void)
{
    check_uri("lakefs://my-repo", 0, "my-repo", "");
    check_uri("lakefs://my-repo/", 0, "my-repo", "");
    check_uri("lakefs://my-repo/main", 0, "my-repo", "main");
    check_uri("lakefs://my-repo/main/", 0, "my-repo", "main");
    check_uri("lakefs://abc/main~1", 0, "abc", "main~1");
    check_uri("lakefs://abc/main@", 0, "abc", "main@");
    check_uri("lakefs://0ab/ma in", 0, "0ab", "ma in");
    check_uri("lakefs://repo/\xe1\x88\xb4", 0, "repo", "\xe1\x88\xb4");

    /* Length limits: 63-byte repository, 255-byte ref. */
    char uri[300];
    for (int len = 63; len <= 64; len++) {
        int n = snprintf(uri, sizeof(uri), "lakefs://");
        memset(uri + n, 'r', (size_t)len);
        uri[n + len] = '\0';
        check_uri(uri, len == 63 ? 0 : -EINVAL, uri + n, "");
    }
    for (int len = 255; len <= 256; len++) {
        int n = snprintf(uri, sizeof(uri), "lakefs://repo/");
        memset(uri + n, 'b', (size_t)len);
        uri[n + len] = '\0';
        check_uri(uri, len == 255 ? 0 : -EINVAL, "repo", uri + n);
    }

    static const char *const bad[] = {
        "", "lakefs:", "lakefs:/", "lakefs://", "lakefs:///", "lakefs:///main",
        "lakefs:/repo/main", "s3://repo/main", "LAKEFS://repo", "lakefs:repo",
        " lakefs://repo", "lakefs://ab", "lakefs://Repo", "lakefs://-repo",
        "lakefs://re_po", "lakefs://re.po", "lakefs://repo//", "lakefs://repo//main",
        "lakefs://repo/main//", "lakefs://repo/main//x", "lakefs://repo/main/x//",
        "lakefs://repo/main/x//y", "lakefs://repo/main/.", "lakefs://repo/main/..",
        "lakefs://repo/main/a/../b", "lakefs://repo/main/./a", "lakefs://repo/main/a\tb",
        "lakefs://repo/main/a\n",
        "lakefs://repo/ma\tin", "lakefs://repo/ma\x7fin", "lakefs://repo/main\n",
        "lakefs://rep\xc3\xa9/main", "lakefs://repo /main",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        check_uri(bad[i], -EINVAL, NULL, NULL);
}

/* lakefs://REPO/REF/PATH mounts a prefix. */
static void test_lakefs_uri_path(void)
{
    check_uri_path("lakefs://demo/main/data", 0, "demo", "main", "data");
    check_uri_path("lakefs://demo/main/data/", 0, "demo", "main", "data");
    check_uri_path("lakefs://demo/main/data/raw/2024", 0, "demo", "main", "data/raw/2024");
    check_uri_path("lakefs://demo/v1.0/a b/..c/.d", 0, "demo", "v1.0", "a b/..c/.d");
    check_uri_path("lakefs://demo/main/\xe1\x88\xb4/", 0, "demo", "main", "\xe1\x88\xb4");

    /* A segment may be 255 bytes, the path 1024. */
    char uri[1200], want[1100];
    int n = snprintf(uri, sizeof(uri), "lakefs://demo/main/");
    for (int len = 255; len <= 256; len++) {
        memset(uri + n, 's', (size_t)len);
        uri[n + len] = '\0';
        check_uri_path(uri, len == 255 ? 0 : -EINVAL, "demo", "main", uri + n);
    }
    for (int len = 1024; len <= 1025; len++) {
        /* segments of 9 bytes and a slash, whatever is left at the end */
        for (int i = 0; i < len; i++)
            want[i] = (i % 10 == 9) ? '/' : 'p';
        want[len - 1] = 'p';
        want[len] = '\0';
        snprintf(uri + n, sizeof(uri) - (size_t)n, "%s/", want);
        check_uri_path(uri, len == 1024 ? 0 : -EINVAL, "demo", "main", want);
    }
}

static void test_repo_and_ref_names(void)
{
    CHECK(lf_repo_name_is_valid("abc", 3));
    CHECK(lf_repo_name_is_valid("0-9", 3));
    CHECK(lf_repo_name_is_valid("a--", 3));
    CHECK(!lf_repo_name_is_valid("ab", 2));
    CHECK(!lf_repo_name_is_valid("abc", 0));
    CHECK(!lf_repo_name_is_valid("aBc", 3));
    CHECK(lf_ref_is_valid("x", 1));
    CHECK(!lf_ref_is_valid("", 0));
    CHECK(!lf_ref_is_valid("a/b", 3));
    CHECK(!lf_ref_is_valid("a\0b", 3));
}

static void test_ref_classes(void)
{
    const char *commit = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    CHECK_INT(strlen(commit), 64);
    CHECK(lf_ref_is_full_commit_id(commit));
    CHECK(!lf_ref_is_full_commit_id("a1b2c3d4e5f6"));  /* short IDs may be branches */
    CHECK(!lf_ref_is_full_commit_id(""));
    char buf[70];
    snprintf(buf, sizeof(buf), "%s0", commit);
    CHECK(!lf_ref_is_full_commit_id(buf));
    snprintf(buf, sizeof(buf), "%.63sA", commit);
    CHECK(!lf_ref_is_full_commit_id(buf));  /* uppercase */
    snprintf(buf, sizeof(buf), "%.63sg", commit);
    CHECK(!lf_ref_is_full_commit_id(buf));

    const char *const branches[] = {"main", "_x", "9", "feature-1", "a_b-c-",
                                    "Dev", commit};
    for (size_t i = 0; i < sizeof(branches) / sizeof(branches[0]); i++)
        CHECK(lf_ref_is_branch_name(branches[i]));
    static const char *const not_branches[] = {"", "-main", "ma in", "a.b", "a/b",
                                               "main~1", "main@", "x^", "caf\xc3\xa9",
                                               "a\tb"};
    for (size_t i = 0; i < sizeof(not_branches) / sizeof(not_branches[0]); i++)
        CHECK(!lf_ref_is_branch_name(not_branches[i]));

    static const char *const modified[] = {"main~1", "main^", "main^2", "main@",
                                           "$", "a~b^c"};
    for (size_t i = 0; i < sizeof(modified) / sizeof(modified[0]); i++)
        CHECK(lf_ref_has_modifier(modified[i]));
    CHECK(!lf_ref_has_modifier("main"));
    CHECK(!lf_ref_has_modifier(commit));
    CHECK(!lf_ref_has_modifier("v1.0-rc"));
}

static void test_segments(void)
{
    CHECK(lf_name_is_valid_segment("a", 1));
    CHECK(lf_name_is_valid_segment("...", 3));
    CHECK(lf_name_is_valid_segment(".hidden", 7));
    CHECK(lf_name_is_valid_segment("a b\\c", 5));
    CHECK(!lf_name_is_valid_segment("", 0));
    CHECK(!lf_name_is_valid_segment(".", 1));
    CHECK(!lf_name_is_valid_segment("..", 2));
    CHECK(!lf_name_is_valid_segment("a/b", 3));
    CHECK(!lf_name_is_valid_segment("a\0b", 3));
    char name[257];
    memset(name, 'n', sizeof(name));
    CHECK(lf_name_is_valid_segment(name, 255));
    CHECK(!lf_name_is_valid_segment(name, 256));
    /* n, not a NUL, ends the name: "a/" cut to one byte is fine. */
    CHECK(lf_name_is_valid_segment("a/", 1));
}

int main(void)
{
    test_encode();
    test_all_bytes();
    test_decode();
    test_lakefs_uri();
    test_lakefs_uri_path();
    test_repo_and_ref_names();
    test_ref_classes();
    test_segments();
    lf_buf_free(&enc_out);
    return check_summary("test_uri");
}
