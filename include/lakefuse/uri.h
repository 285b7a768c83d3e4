/* uri: percent-encoding, lakefs:// URIs, and what a ref's spelling says.
 *
 * Encoding follows the SigV4/S3 rule, the strictest one in play: every
 * byte outside A-Z a-z 0-9 - . _ ~ becomes %XX (uppercase hex). One rule
 * for URL paths, query strings and the string the signer hashes means the
 * bytes sent are the bytes signed.
 *
 * The ref predicates look only at the spelling; lakeFS alone knows whether
 * a ref exists. The filesystem uses them to decide what may be cached
 * forever (a full commit ID is immutable) and what may be written (only a
 * plain branch name).
 */
#ifndef LAKEFUSE_URI_H
#define LAKEFUSE_URI_H

#include <stdbool.h>
#include <stddef.h>

#include "lakefuse/buf.h"

#define LF_REPO_NAME_MAX 63
#define LF_REF_MAX 255
#define LF_NAME_MAX 255
/* S3 keys are at most 1024 bytes: a longer prefix could hold nothing. */
#define LF_PATH_MAX 1024

/* Appends s[0..n) percent-encoded to out. keep_slash leaves '/' as is
 * (paths); otherwise it becomes %2F (query names and values). */
int lf_uri_encode(struct lf_buf *out, const char *s, size_t n, bool keep_slash);
/* Appends s[0..n) with each %XX replaced by its byte; '+' stays '+'.
 * -EINVAL for '%' not followed by two hex digits (out then holds a
 * partial result). Decoded bytes may include NUL: use out->len. */
int lf_uri_decode(struct lf_buf *out, const char *s, size_t n);

/* lakefs://REPO, lakefs://REPO/REF or lakefs://REPO/REF/PATH, each with
 * one optional trailing slash. ref is "" when the URI names none; path is
 * "" or "a/b" (no leading or trailing slash), its segments usable file
 * names (see lf_name_is_valid_segment) without control characters. */
struct lf_lakefs_uri {
    char repo[LF_REPO_NAME_MAX + 1];
    char ref[LF_REF_MAX + 1];
    char path[LF_PATH_MAX + 1];
};
/* 0, or -EINVAL for anything that is not such a URI. */
int lf_lakefs_uri_parse(const char *uri, struct lf_lakefs_uri *out);

/* ^[a-z0-9][a-z0-9-]{2,62}$ */
bool lf_repo_name_is_valid(const char *s, size_t n);
/* One or more bytes, at most LF_REF_MAX, no '/', no control characters. */
bool lf_ref_is_valid(const char *s, size_t n);
/* Exactly 64 lowercase hex digits: an immutable commit. */
bool lf_ref_is_full_commit_id(const char *ref);
/* ^\w[-\w]*$ over ASCII: a name that can be a branch (and so writable).
 * A full commit ID matches too, so ask lf_ref_is_full_commit_id first. */
bool lf_ref_is_branch_name(const char *ref);
/* Contains '~', '^', '@' or '$': an expression such as main~1 or main@,
 * resolved by lakeFS to some commit, never writable. */
bool lf_ref_has_modifier(const char *ref);

/* A usable file-name component: 1..LF_NAME_MAX bytes, not "." or "..",
 * no '/' and no NUL. */
bool lf_name_is_valid_segment(const char *s, size_t n);

#endif
