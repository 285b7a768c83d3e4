/* store: helpers shared by every lf_store implementation. */
#include "lakefuse/store.h"

#include <stdlib.h>
#include <string.h>

void lf_list_page_free(struct lf_list_page *page)
{
    if (!page)
        return;
    for (size_t i = 0; i < page->nentries; i++)
        free(page->entries[i].key);
    for (size_t i = 0; i < page->nprefixes; i++)
        free(page->prefixes[i]);
    free(page->entries);
    free(page->prefixes);
    free(page->next_token);
    memset(page, 0, sizeof(*page));
}

void lf_etag_copy(char dst[LF_ETAG_MAX], const char *src)
{
    size_t n = strlen(src);
    if (n >= 2 && src[0] == '"' && src[n - 1] == '"') {
        src++;
        n -= 2;
    }
    if (n >= LF_ETAG_MAX)
        n = LF_ETAG_MAX - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* lakeFS answers a completed multipart upload with "<hex>-<parts>" but
 * reports the object's ETag as "<hex>" afterwards (S3 keeps the suffix):
 * both name the same content. */
bool lf_etag_same(const char *a, const char *b)
{
    size_t la = strcspn(a, "-"), lb = strcspn(b, "-");
    if (strcmp(a, b) == 0)
        return true;
    return la == lb && la > 0 && strncmp(a, b, la) == 0 && (a[la] == '\0' || b[lb] == '\0');
}

static const char *const OP_NAMES[LF_OP_COUNT] = {
    [LF_OP_LIST_BUCKETS] = "ListBuckets",
    [LF_OP_LIST_OBJECTS] = "ListObjectsV2",
    [LF_OP_HEAD] = "HeadObject",
    [LF_OP_GET] = "GetObject",
    [LF_OP_PUT] = "PutObject",
    [LF_OP_COPY] = "CopyObject",
    [LF_OP_DELETE] = "DeleteObject",
    [LF_OP_MPU_CREATE] = "CreateMultipartUpload",
    [LF_OP_MPU_PART] = "UploadPart",
    [LF_OP_MPU_COMPLETE] = "CompleteMultipartUpload",
    [LF_OP_MPU_ABORT] = "AbortMultipartUpload",
    [LF_OP_OTHER] = "Other",
};

static const char *const ERR_NAMES[LF_ERR_COUNT] = {
    [LF_ERR_TIMEOUT] = "timeout",   [LF_ERR_CONNECT] = "connection",
    [LF_ERR_TLS] = "tls",           [LF_ERR_PROTOCOL] = "protocol",
    [LF_ERR_THROTTLED] = "throttled", [LF_ERR_SERVER] = "server",
    [LF_ERR_CLIENT] = "client",     [LF_ERR_OTHER] = "other",
};

const char *lf_store_op_name(enum lf_store_op op)
{
    return (unsigned)op < LF_OP_COUNT ? OP_NAMES[op] : "Other";
}

enum lf_store_op lf_store_op_of(const char *name)
{
    for (unsigned i = 0; i < LF_OP_OTHER; i++)
        if (strcmp(OP_NAMES[i], name) == 0)
            return (enum lf_store_op)i;
    return LF_OP_OTHER;
}

const char *lf_store_err_name(enum lf_store_err kind)
{
    return (unsigned)kind < LF_ERR_COUNT ? ERR_NAMES[kind] : "other";
}
