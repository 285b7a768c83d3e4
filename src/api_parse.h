/* api_parse: the shapes of lakeFS REST answers, read from a buffer or a
 * parsed value, apart from the exchanges that fetch them (src/api.c), so
 * that unit tests and the fuzz target reach every parser without a
 * network. Internal to lf_api.
 *
 * Each returns 0 or -EPROTO (with a log line naming the field) for an
 * answer of the wrong shape, or -ENOMEM.
 */
#ifndef LAKEFUSE_API_PARSE_H
#define LAKEFUSE_API_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "lakefuse/api.h"
#include "lakefuse/json.h"

/* The message of an error answer, {"message": "..."}, with control bytes
 * made spaces (it goes into one log line). When the body is not such a
 * document, its first printable bytes instead (a proxy's HTML page), or
 * "" for an empty body; returns 0 when the message came from JSON. */
int lf_api_parse_message(const char *data, size_t len, char *msg, size_t cap);

/* A whole answer body as a JSON document (an object). */
int lf_api_parse_doc(const char *data, size_t len, struct lf_json **root);

/* {"pagination": {"has_more", "next_offset", ...}, "results": [...]}.
 * A page that has more must say where it continues. */
struct lf_api_page {
    struct lf_json *root;          /* owns everything below */
    const struct lf_json *results; /* an array of n values */
    size_t n;
    bool has_more;
    const char *next_offset;       /* "" unless has_more */
};
int lf_api_parse_page(const char *data, size_t len, struct lf_api_page *page);
void lf_api_page_free(struct lf_api_page *page);

/* Commit {id, committer, message, creation_date}: message and committer
 * are cut to fit (on a UTF-8 character boundary); id must fit. */
int lf_api_parse_commit(const struct lf_json *v, struct lf_api_commit *out);
/* Ref {id, commit_id}: both non-empty, commit_id under LF_COMMIT_ID_MAX. */
int lf_api_parse_ref(const struct lf_json *v, const char **name, const char **commit_id);
/* Diff {type, path, path_type}. */
int lf_api_parse_diff(const struct lf_json *v, enum lf_api_change *kind, const char **path,
                      bool *is_prefix);
/* ObjectStats {path, checksum, physical_address, mtime, size_bytes?,
 * content_type?, metadata?, physical_address_expiry?}. */
int lf_api_parse_stat(const struct lf_json *v, struct lf_api_stat *out);

/* StorageConfig {pre_sign_support, pre_sign_multipart_upload?,
 * blockstore_type?}, or a Config holding one (storage_config) or a list
 * of them (storage_config_list: presigning where every one does). */
int lf_api_parse_storage_config(const struct lf_json *v, struct lf_api_storage *out);
/* StagingLocation {physical_address, presigned_url, presigned_url_expiry?}:
 * the URL must be there (we asked for presign=true). */
int lf_api_parse_staging(const struct lf_json *v, struct lf_api_staging *out);
/* PresignMultipartUpload {upload_id, physical_address, presigned_urls?}. */
int lf_api_parse_pmpu(const struct lf_json *v, struct lf_api_pmpu *out);
/* UploadTo {presigned_url}. */
int lf_api_parse_upload_to(const struct lf_json *v, char url[LF_API_URL_MAX]);

/* Branch creation's answer: the new head as text/html, bare or as a JSON
 * string, around white space. */
int lf_api_parse_created(const char *data, size_t len, char commit_id[LF_COMMIT_ID_MAX]);

#endif
