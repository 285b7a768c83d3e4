/* api_parse: lakeFS REST answers into lf_api's structs.
 *
 * Field names and types follow lakeFS's api/swagger.yml. Required fields
 * are required here too; optional ones (size_bytes, content_type,
 * metadata) may be missing or null. Nothing here trusts a length: every
 * copy into a fixed array is checked or cut on purpose.
 */
#include "api_parse.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lakefuse/log.h"

/* Copies at most cap-1 bytes of s, backing off to the start of a UTF-8
 * character so that the cut leaves valid text. */
static void copy_cut(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Control bytes would split a log line. */
static void flatten(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

int lf_api_parse_message(const char *data, size_t len, char *msg, size_t cap)
{
    if (cap == 0)
        return -EPROTO;
    msg[0] = '\0';
    if (!data || len == 0)
        return -EPROTO;
    struct lf_json *root = NULL;
    const char *m;
    int rc = lf_json_parse(data, len, LF_JSON_MAX, &root, NULL);
    if (!rc && lf_json_type(root) == LF_JSON_OBJECT && lf_json_has(root, "message") &&
        lf_json_get_str(root, "message", &m) == 0) {
        copy_cut(msg, cap, m);
        flatten(msg);
        lf_json_free(root);
        return 0;
    }
    lf_json_free(root);
    /* Not lakeFS's error document: keep the start of what came, as text. */
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap && n < 200; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == '\0')
            break;
        msg[n++] = (c < 0x20 || c >= 0x7f) ? ' ' : (char)c;
    }
    while (n > 0 && msg[n - 1] == ' ')
        n--;
    msg[n] = '\0';
    return -EPROTO;
}

int lf_api_parse_doc(const char *data, size_t len, struct lf_json **root)
{
    struct lf_json_error why;
    int rc = lf_json_parse(data, len, LF_JSON_MAX, root, &why);
    if (rc == -EPROTO)
        lf_warn("lakeFS API: answer is not acceptable JSON: %s (at byte %zu)", why.text,
                why.position);
    if (!rc && lf_json_type(*root) != LF_JSON_OBJECT) {
        lf_warn("lakeFS API: answer is a JSON array, not an object");
        lf_json_free(*root);
        *root = NULL;
        rc = -EPROTO;
    }
    return rc;
}

void lf_api_page_free(struct lf_api_page *page)
{
    lf_json_free(page->root);
    memset(page, 0, sizeof(*page));
}

int lf_api_parse_page(const char *data, size_t len, struct lf_api_page *page)
{
    const struct lf_json *pag;
    memset(page, 0, sizeof(*page));
    int rc = lf_api_parse_doc(data, len, &page->root);
    if (rc)
        return rc;
    if ((rc = lf_json_get_obj(page->root, "pagination", &pag)) ||
        (rc = lf_json_get_bool(pag, "has_more", &page->has_more)) ||
        (rc = lf_json_get_array(page->root, "results", &page->results, &page->n)))
        goto out;
    page->next_offset = "";
    if (page->has_more) {
        if ((rc = lf_json_get_str(pag, "next_offset", &page->next_offset)))
            goto out;
        if (!page->next_offset[0]) {
            lf_warn("lakeFS API: a page with more to come has an empty next_offset");
            rc = -EPROTO;
        }
    }
out:
    if (rc)
        lf_api_page_free(page);
    return rc;
}

int lf_api_parse_commit(const struct lf_json *v, struct lf_api_commit *out)
{
    const char *committer, *message;
    int64_t created;
    memset(out, 0, sizeof(*out));
    int rc;
    if ((rc = lf_json_copy_str(v, "id", out->id, sizeof(out->id))) ||
        (rc = lf_json_get_str(v, "committer", &committer)) ||
        (rc = lf_json_get_str(v, "message", &message)) ||
        (rc = lf_json_get_int(v, "creation_date", &created)))
        return rc;
    if (!out->id[0]) {
        lf_warn("JSON: commit with an empty 'id'");
        return -EPROTO;
    }
    copy_cut(out->committer, sizeof(out->committer), committer);
    copy_cut(out->message, sizeof(out->message), message);
    out->created = (time_t)created;
    return 0;
}

int lf_api_parse_ref(const struct lf_json *v, const char **name, const char **commit_id)
{
    int rc;
    if ((rc = lf_json_get_str(v, "id", name)) || (rc = lf_json_get_str(v, "commit_id", commit_id)))
        return rc;
    size_t cl = strlen(*commit_id);
    if (!(*name)[0] || cl == 0 || cl >= LF_COMMIT_ID_MAX) {
        lf_warn("JSON: ref '%.64s' with %s", *name,
                !(*name)[0] ? "an empty 'id'" : "a 'commit_id' of a wrong length");
        return -EPROTO;
    }
    return 0;
}

int lf_api_parse_diff(const struct lf_json *v, enum lf_api_change *kind, const char **path,
                      bool *is_prefix)
{
    static const struct {
        const char *name;
        enum lf_api_change kind;
    } kinds[] = {{"added", LF_CHANGE_ADDED},
                 {"changed", LF_CHANGE_CHANGED},
                 {"removed", LF_CHANGE_REMOVED},
                 {"conflict", LF_CHANGE_CONFLICT}};
    const char *type, *ptype;
    int rc;
    if ((rc = lf_json_get_str(v, "type", &type)) || (rc = lf_json_get_str(v, "path", path)) ||
        (rc = lf_json_get_str(v, "path_type", &ptype)))
        return rc;
    size_t i = 0;
    while (i < sizeof(kinds) / sizeof(kinds[0]) && strcmp(type, kinds[i].name) != 0)
        i++;
    if (i == sizeof(kinds) / sizeof(kinds[0])) {
        lf_warn("JSON: diff entry with an unknown 'type' '%.32s'", type);
        return -EPROTO;
    }
    *kind = kinds[i].kind;
    if (strcmp(ptype, "object") == 0) {
        *is_prefix = false;
    } else if (strcmp(ptype, "common_prefix") == 0) {
        *is_prefix = true;
    } else {
        lf_warn("JSON: diff entry with an unknown 'path_type' '%.32s'", ptype);
        return -EPROTO;
    }
    if (!(*path)[0]) {
        lf_warn("JSON: diff entry with an empty 'path'");
        return -EPROTO;
    }
    return 0;
}

/* An optional Unix time: missing, null or 0 is "not said". */
static int optional_time(const struct lf_json *v, const char *key, time_t *out)
{
    int64_t t = 0;
    int rc;
    *out = 0;
    if (lf_json_has(v, key) && (rc = lf_json_get_int(v, key, &t)))
        return rc;
    if (t < 0) {
        lf_warn("JSON: negative '%s'", key);
        return -EPROTO;
    }
    *out = (time_t)t;
    return 0;
}

struct meta_fill {
    struct lf_api_stat *st;
    size_t dropped;
};

static int stat_meta(void *arg, const char *key, const struct lf_json *value)
{
    struct meta_fill *f = arg;
    struct lf_api_stat *st = f->st;
    const char *s = lf_json_str(value);
    if (!s) {
        lf_warn("JSON: user metadata '%.64s' is not a string", key);
        return -EPROTO;
    }
    /* Past the room, or too long to keep whole (a cut key or value would
     * be a different one): left out, and said so once. */
    if (st->nmeta == sizeof(st->meta) / sizeof(st->meta[0]) ||
        strlen(key) >= sizeof(st->meta[0].key) || strlen(s) >= sizeof(st->meta[0].value)) {
        f->dropped++;
        return 0;
    }
    strcpy(st->meta[st->nmeta].key, key);
    strcpy(st->meta[st->nmeta].value, s);
    st->nmeta++;
    return 0;
}

int lf_api_parse_stat(const struct lf_json *v, struct lf_api_stat *out)
{
    char checksum[sizeof(out->checksum) + 2];
    int64_t mtime, size = 0;
    const struct lf_json *meta;
    memset(out, 0, sizeof(*out));
    int rc;
    if ((rc = lf_json_copy_str(v, "path", out->path, sizeof(out->path))) ||
        (rc = lf_json_copy_str(v, "checksum", checksum, sizeof(checksum))) ||
        (rc = lf_json_copy_str(v, "physical_address", out->physical_address,
                               sizeof(out->physical_address))) ||
        (rc = lf_json_get_int(v, "mtime", &mtime)))
        return rc;
    if (lf_json_has(v, "size_bytes") && (rc = lf_json_get_int(v, "size_bytes", &size)))
        return rc;
    if (size < 0) {
        lf_warn("JSON: negative 'size_bytes'");
        return -EPROTO;
    }
    if (lf_json_has(v, "content_type") &&
        (rc = lf_json_copy_str(v, "content_type", out->content_type,
                               sizeof(out->content_type))))
        return rc;
    /* The checksum is the object's ETag, quoted in some versions. */
    size_t cl = strlen(checksum);
    const char *c = checksum;
    if (cl >= 2 && c[0] == '"' && c[cl - 1] == '"') {
        c++;
        cl -= 2;
    }
    if (cl >= sizeof(out->checksum)) {
        lf_warn("JSON: 'checksum' is %zu bytes, over %zu", cl, sizeof(out->checksum) - 1);
        return -EPROTO;
    }
    memcpy(out->checksum, c, cl);
    out->checksum[cl] = '\0';
    out->size = (uint64_t)size;
    out->mtime = (time_t)mtime;
    if ((rc = optional_time(v, "physical_address_expiry", &out->physical_address_expiry)))
        return rc;
    if (lf_json_has(v, "metadata")) {
        struct meta_fill f = {.st = out};
        if ((rc = lf_json_get_obj(v, "metadata", &meta)) ||
            (rc = lf_json_each(meta, "metadata", stat_meta, &f)))
            return rc;
        if (f.dropped)
            lf_warn("lakeFS API: %s: %zu user metadata entries dropped (room for %zu, keys "
                    "under %zu bytes, values under %zu)", out->path, f.dropped,
                    sizeof(out->meta) / sizeof(out->meta[0]), sizeof(out->meta[0].key),
                    sizeof(out->meta[0].value));
    }
    return 0;
}

static int parse_one_storage(const struct lf_json *v, struct lf_api_storage *out)
{
    bool mpu = false;
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = lf_json_get_bool(v, "pre_sign_support", &out->presign)))
        return rc;
    if (lf_json_has(v, "pre_sign_multipart_upload") &&
        (rc = lf_json_get_bool(v, "pre_sign_multipart_upload", &mpu)))
        return rc;
    out->presign_multipart = out->presign && mpu;
    const char *type;
    if (lf_json_has(v, "blockstore_type") && lf_json_get_str(v, "blockstore_type", &type) == 0)
        copy_cut(out->blockstore_type, sizeof(out->blockstore_type), type);
    return 0;
}

int lf_api_parse_storage_config(const struct lf_json *v, struct lf_api_storage *out)
{
    const struct lf_json *sc, *list;
    size_t n = 0;
    int rc;
    if (lf_json_has(v, "pre_sign_support"))
        return parse_one_storage(v, out);
    if (lf_json_has(v, "storage_config")) {
        if ((rc = lf_json_get_obj(v, "storage_config", &sc)))
            return rc;
        return parse_one_storage(sc, out);
    }
    if (!lf_json_has(v, "storage_config_list") ||
        (rc = lf_json_get_array(v, "storage_config_list", &list, &n)) || n == 0) {
        lf_warn("JSON: configuration without storage_config");
        return -EPROTO;
    }
    /* Several blockstores: one store for the whole mount presigns only
     * if every repository's storage can. */
    for (size_t i = 0; i < n; i++) {
        struct lf_api_storage one;
        if ((rc = parse_one_storage(lf_json_at(list, i), &one)))
            return rc;
        if (i == 0) {
            *out = one;
            continue;
        }
        out->presign &= one.presign;
        out->presign_multipart &= one.presign_multipart;
        if (strcmp(out->blockstore_type, one.blockstore_type) != 0)
            snprintf(out->blockstore_type, sizeof(out->blockstore_type), "mixed");
    }
    return 0;
}

int lf_api_parse_staging(const struct lf_json *v, struct lf_api_staging *out)
{
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = lf_json_copy_str(v, "physical_address", out->physical_address,
                               sizeof(out->physical_address))) ||
        (rc = lf_json_copy_str(v, "presigned_url", out->url, sizeof(out->url))) ||
        (rc = optional_time(v, "presigned_url_expiry", &out->expiry)))
        return rc;
    if (!out->physical_address[0] || !out->url[0]) {
        lf_warn("JSON: staging location without %s",
                out->url[0] ? "a physical address" : "a presigned URL");
        return -EPROTO;
    }
    return 0;
}

int lf_api_parse_pmpu(const struct lf_json *v, struct lf_api_pmpu *out)
{
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = lf_json_copy_str(v, "upload_id", out->upload_id, sizeof(out->upload_id))) ||
        (rc = lf_json_copy_str(v, "physical_address", out->physical_address,
                               sizeof(out->physical_address))))
        return rc;
    if (!out->upload_id[0] || !out->physical_address[0]) {
        lf_warn("JSON: presigned multipart upload without %s",
                out->upload_id[0] ? "a physical address" : "an upload ID");
        return -EPROTO;
    }
    return 0;
}

int lf_api_parse_upload_to(const struct lf_json *v, char url[LF_API_URL_MAX])
{
    int rc = lf_json_copy_str(v, "presigned_url", url, LF_API_URL_MAX);
    if (!rc && !url[0]) {
        lf_warn("JSON: an empty presigned_url");
        rc = -EPROTO;
    }
    return rc;
}

int lf_api_parse_created(const char *data, size_t len, char commit_id[LF_COMMIT_ID_MAX])
{
    commit_id[0] = '\0';
    while (len > 0 && (data[0] == ' ' || data[0] == '\t' || data[0] == '\r' || data[0] == '\n')) {
        data++;
        len--;
    }
    while (len > 0 && (data[len - 1] == ' ' || data[len - 1] == '\t' || data[len - 1] == '\r' ||
                       data[len - 1] == '\n'))
        len--;
    if (len >= 2 && data[0] == '"' && data[len - 1] == '"') {
        data++;
        len -= 2;
    }
    /* A commit ID is hex; anything else is not the answer we asked for. */
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            len = 0;
    }
    if (len == 0 || len >= LF_COMMIT_ID_MAX) {
        lf_warn("lakeFS API: branch creation answered no commit ID");
        return -EPROTO;
    }
    memcpy(commit_id, data, len);
    commit_id[len] = '\0';
    return 0;
}
