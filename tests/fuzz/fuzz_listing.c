/* Listing pages to directory entries: whatever keys a server sends, an
 * entry is never empty, ".", "..", longer than 255 bytes or holding a
 * '/', and entries stay in key order. Keys come from the input split at
 * newlines; a leading '>' makes a key a common prefix. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lakefuse/meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lf_list_entry ents[64];
    char *prefixes[64];
    struct lf_list_page page = {.entries = ents, .prefixes = prefixes};
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (char *p = copy, *nl; p && *p && page.nentries < 64 && page.nprefixes < 64; p = nl) {
        nl = strchr(p, '\n');
        if (nl)
            *nl++ = '\0';
        if (*p == '>') {
            prefixes[page.nprefixes++] = p + 1;
        } else {
            memset(&ents[page.nentries], 0, sizeof(ents[0]));
            ents[page.nentries++].key = p;
        }
    }
    struct lf_listing *l = lf_listing_new();
    if (l && lf_listing_add_page(l, "main/", &page) == 0) {
        for (size_t i = 0; i < l->n; i++) {
            const char *n = l->v[i].name;
            size_t len = strlen(n);
            if (len == 0 || len > 255 || strchr(n, '/') || strcmp(n, ".") == 0 ||
                strcmp(n, "..") == 0)
                abort();
            lf_listing_find(l, n);
        }
    }
    lf_listing_put(l);
    free(copy);
    return 0;
}
