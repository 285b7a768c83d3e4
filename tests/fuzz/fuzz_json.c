/* JSON documents and every lakeFS answer parser on untrusted bytes: never
 * crash or leak; a parsed document walks with every getter on every
 * member and encodes to a document that parses again; parsed answers keep
 * their promises (IDs fit and are not empty, a page with more says where).
 * The first byte picks the parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_parse.h"
#include "lakefuse/json.h"
#include "lakefuse/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct lf_json *v, unsigned depth);

static int member(void *arg, const char *key, const struct lf_json *v)
{
    const struct lf_json *obj = arg, *o, *a;
    const char *s;
    int64_t i;
    bool b;
    size_t n;
    char small[8];
    /* Each getter on each member: all but the right one refuse. */
    int ok = !lf_json_get_str(obj, key, &s) + !lf_json_get_int(obj, key, &i) +
             !lf_json_get_bool(obj, key, &b) + !lf_json_get_obj(obj, key, &o) +
             !lf_json_get_array(obj, key, &a, &n);
    if (ok > 1 || (ok == 0 && lf_json_type(v) != LF_JSON_REAL && lf_json_type(v) != LF_JSON_NULL))
        abort();
    if (lf_json_copy_str(obj, key, small, sizeof(small)) == 0 && strlen(small) >= sizeof(small))
        abort();
    walk(v, 0);
    return 0;
}

static void walk(const struct lf_json *v, unsigned depth)
{
    if (depth > LF_JSON_MAX_DEPTH + 1)
        abort(); /* the limit held */
    if (lf_json_type(v) == LF_JSON_OBJECT) {
        lf_json_each(v, "fuzz", member, (void *)v);
    } else if (lf_json_type(v) == LF_JSON_ARRAY) {
        for (size_t i = 0; lf_json_at(v, i); i++)
            walk(lf_json_at(v, i), depth + 1);
    } else if (lf_json_type(v) == LF_JSON_STRING && !lf_json_str(v)) {
        abort();
    }
}

static void every_shape(const struct lf_json *v)
{
    struct lf_api_commit c;
    const char *name, *id, *path;
    enum lf_api_change kind;
    bool prefix;
    static struct lf_api_stat st;
    if (lf_api_parse_commit(v, &c) == 0 && (!c.id[0] || strlen(c.id) >= LF_COMMIT_ID_MAX))
        abort();
    if (lf_api_parse_ref(v, &name, &id) == 0 && (!name[0] || !id[0] ||
                                                 strlen(id) >= LF_COMMIT_ID_MAX))
        abort();
    if (lf_api_parse_diff(v, &kind, &path, &prefix) == 0 &&
        (!path[0] || kind > LF_CHANGE_CONFLICT))
        abort();
    if (lf_api_parse_stat(v, &st) == 0 && st.nmeta > sizeof(st.meta) / sizeof(st.meta[0]))
        abort();
    static struct lf_api_storage caps;
    if (lf_api_parse_storage_config(v, &caps) == 0 &&
        ((caps.presign_multipart && !caps.presign) ||
         strlen(caps.blockstore_type) >= sizeof(caps.blockstore_type)))
        abort(); /* multipart presigning implies presigning */
    static struct lf_api_staging loc;
    if (lf_api_parse_staging(v, &loc) == 0 && (!loc.physical_address[0] || !loc.url[0]))
        abort();
    static struct lf_api_pmpu up;
    if (lf_api_parse_pmpu(v, &up) == 0 && (!up.upload_id[0] || !up.physical_address[0]))
        abort();
    static char url[LF_API_URL_MAX];
    if (lf_api_parse_upload_to(v, url) == 0 && !url[0])
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet++)
        lf_log_set_level(LF_LOG_ERROR); /* field warnings are expected here */
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0: {
        struct lf_json *root, *again;
        if (lf_json_parse(p, n, LF_JSON_MAX, &root, NULL) == 0) {
            walk(root, 0);
            struct lf_buf out = LF_BUF_INIT;
            if (lf_json_dump(root, &out) != 0 ||
                lf_json_parse(out.data, out.len, LF_JSON_MAX, &again, NULL) != 0)
                abort(); /* what we accept, we can say again */
            lf_json_free(again);
            lf_buf_free(&out);
            lf_json_free(root);
        }
        break;
    }
    case 1: {
        char msg[64];
        lf_api_parse_message(p, n, msg, sizeof(msg));
        if (strlen(msg) >= sizeof(msg))
            abort();
        for (const char *m = msg; *m; m++)
            if ((unsigned char)*m < 0x20)
                abort(); /* one log line */
        break;
    }
    case 2: {
        struct lf_api_page page;
        if (lf_api_parse_page(p, n, &page) == 0) {
            if (page.has_more && (!page.next_offset || !page.next_offset[0]))
                abort();
            for (size_t i = 0; i < page.n; i++)
                every_shape(lf_json_at(page.results, i));
            lf_api_page_free(&page);
        }
        break;
    }
    case 3: {
        struct lf_json *root;
        if (lf_api_parse_doc(p, n, &root) == 0) {
            every_shape(root);
            lf_json_free(root);
        }
        break;
    }
    default: {
        char id[LF_COMMIT_ID_MAX];
        if (lf_api_parse_created(p, n, id) == 0 && (!id[0] || strlen(id) >= LF_COMMIT_ID_MAX))
            abort();
        break;
    }
    }
    return 0;
}
