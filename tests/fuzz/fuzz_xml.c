/* Every S3 answer parser on untrusted bytes: must never crash, leak or
 * return a listing with a NULL name. The first byte picks the parser. */
#include <stdint.h>
#include <stdlib.h>

#include "lakefuse/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    char code[64], msg[256], etag[LF_ETAG_MAX];
    switch (data[0] % 6) {
    case 0: {
        struct lf_list_page page;
        if (lf_xml_parse_list_page(p, n, &page) == 0) {
            for (size_t i = 0; i < page.nentries; i++)
                if (!page.entries[i].key)
                    abort();
            for (size_t i = 0; i < page.nprefixes; i++)
                if (!page.prefixes[i])
                    abort();
            if (page.truncated && !page.next_token)
                abort();
            lf_list_page_free(&page);
        }
        break;
    }
    case 1:
        lf_xml_parse_error(p, n, code, sizeof(code), msg, sizeof(msg));
        lf_s3_code_errno(code);
        break;
    case 2: {
        char **names;
        size_t count;
        if (lf_xml_parse_buckets(p, n, &names, &count) == 0) {
            for (size_t i = 0; i < count; i++)
                free(names[i]);
            free(names);
        }
        break;
    }
    case 3:
        lf_xml_parse_copy_result(p, n, etag);
        break;
    case 4: {
        char *id = NULL;
        if (lf_xml_parse_upload_id(p, n, &id) == 0 && !id)
            abort();
        free(id);
        break;
    }
    default:
        lf_xml_parse_complete_result(p, n, etag);
        break;
    }
    return 0;
}
