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
