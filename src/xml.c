/* xml: S3 answers through libxml2's tree parser, with the doors shut.
 *
 * The documents are small and flat (a listing page is at most a few MB),
 * so a tree is simpler than a SAX state machine and costs little. What
 * makes it safe is what is refused before and during the parse: oversized
 * input, any DTD (the only way to declare entities), network access, and
 * nesting deeper than an S3 answer ever goes.
 */
#include "lakefuse/xml.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "lakefuse/uri.h"

/* S3 answers nest four levels at most; anything deeper is hostile. */
#define MAX_DEPTH 16

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void quiet(void *ctx, const char *fmt, ...)
{
    (void)ctx;
    (void)fmt;
}

static void init_libxml(void)
{
    xmlInitParser();
    /* Parse errors become -EIO and a log line of ours, not libxml2's
     * chatter on the daemon's stderr. */
    xmlSetGenericErrorFunc(NULL, quiet);
}

static int depth_of(const xmlNode *n, int depth)
{
    int max = depth;
    for (const xmlNode *c = n->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (depth + 1 > MAX_DEPTH)
            return depth + 1;
        int d = depth_of(c, depth + 1);
        if (d > max)
            max = d;
        if (max > MAX_DEPTH)
            break;
    }
    return max;
}

/* Parses an answer; NULL when it is refused or malformed. */
static xmlDoc *parse(const char *data, size_t len)
{
    pthread_once(&init_once, init_libxml);
    if (!data || len == 0 || len > LF_XML_MAX)
        return NULL;
    /* No DTD means no entity can be declared: no expansion bombs and no
     * external entities, whatever the parser's defaults. */
    if (memmem(data, len, "<!DOCTYPE", 9) || memmem(data, len, "<!ENTITY", 8))
        return NULL;
    xmlDoc *doc = xmlReadMemory(data, (int)len, "s3.xml", NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                    XML_PARSE_NOCDATA | XML_PARSE_NOBLANKS);
    if (!doc)
        return NULL;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || doc->intSubset || doc->extSubset || depth_of(root, 1) > MAX_DEPTH) {
        xmlFreeDoc(doc);
        return NULL;
    }
    return doc;
}

static bool named(const xmlNode *n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static xmlNode *child(const xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (named(c, name))
            return c;
    return NULL;
}

/* The element's text (malloc'd, possibly ""), or NULL on -ENOMEM. */
static char *text(const xmlNode *n)
{
    xmlChar *t = n ? xmlNodeGetContent(n) : NULL;
    char *s = strdup(t ? (const char *)t : "");
    xmlFree(t);
    return s;
}

/* Copies the text of child `name` into dst; false when absent or too long. */
static bool child_text(const xmlNode *n, const char *name, char *dst, size_t cap)
{
    xmlNode *c = child(n, name);
    if (!c || cap == 0)
        return false;
    xmlChar *t = xmlNodeGetContent(c);
    size_t l = t ? strlen((const char *)t) : 0;
    bool ok = l < cap;
    if (ok) {
        memcpy(dst, t ? (const char *)t : "", l);
        dst[l] = '\0';
    }
    xmlFree(t);
    return ok;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* "2006-02-03T16:45:09.000Z" (or without fraction) as time_t UTC. */
static bool parse_time(const char *s, time_t *out)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return false;
    *out = timegm(&tm);
    return true;
}

int lf_s3_code_errno(const char *code)
{
    static const struct {
        const char *code;
        int err;
    } map[] = {
        {"NoSuchKey", -ENOENT},
        {"NoSuchBucket", -ENOENT},
        {"NoSuchUpload", -ENOENT},
        {"NotFound", -ENOENT},
        {"AccessDenied", -EACCES},
        {"SignatureDoesNotMatch", -EACCES},
        {"InvalidAccessKeyId", -EACCES},
        {"ErrReadOnlyRepository", -EROFS},
        {"ErrWriteToProtectedBranch", -EPERM},
        {"PreconditionFailed", -EEXIST},
        {"InvalidRange", -ERANGE},
        {"EntityTooLarge", -EFBIG},
        {"InvalidArgument", -EINVAL},
        {"BadDigest", -EINVAL},
        {"InvalidDigest", -EINVAL},
        {"MalformedXML", -EINVAL},
        {"EntityTooSmall", -EINVAL},
        {"InvalidPart", -EINVAL},
        {"InvalidPartOrder", -EINVAL},
        {"SlowDown", -EAGAIN},
        {"InternalError", -EAGAIN},
        {"ServiceUnavailable", -EAGAIN},
        {"NotImplemented", -ENOTSUP},
    };
    if (!code)
        return -EIO;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(code, map[i].code) == 0)
            return map[i].err;
    return -EIO;
}

int lf_xml_parse_error(const char *data, size_t len, char *code, size_t codecap, char *msg,
                       size_t msgcap)
{
    if (codecap)
        code[0] = '\0';
    if (msgcap)
        msg[0] = '\0';
    xmlDoc *doc = parse(data, len);
    if (!doc)
        return -EIO;
    xmlNode *root = xmlDocGetRootElement(doc);
    int rc = -EIO;
    if (named(root, "Error")) {
        child_text(root, "Code", code, codecap);
        if (!child_text(root, "Message", msg, msgcap) && msgcap)
            msg[0] = '\0';
        rc = 0;
    }
    xmlFreeDoc(doc);
    return rc;
}

/* When an answer that should be a result is an <Error>, its errno. */
static int error_doc(const xmlNode *root)
{
    char code[64] = "";
    if (!named(root, "Error"))
        return 0;
    child_text(root, "Code", code, sizeof(code));
    int err = lf_s3_code_errno(code);
    /* A retryable error inside a 200 answer is still a failure here: the
     * caller's retry loop has already finished. */
    return err == -EAGAIN ? -EIO : err;
}

int lf_xml_parse_buckets(const char *data, size_t len, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    xmlDoc *doc = parse(data, len);
    if (!doc)
        return -EIO;
    int rc = -EIO;
    char **v = NULL;
    size_t count = 0, cap = 0;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!named(root, "ListAllMyBucketsResult"))
        goto out;
    for (xmlNode *b = child(child(root, "Buckets"), "Bucket"); b; b = b->next) {
        if (!named(b, "Bucket"))
            continue;
        xmlNode *nm = child(b, "Name");
        if (!nm)
            continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nv = realloc(v, ncap * sizeof(*nv));
            if (!nv) {
                rc = -ENOMEM;
                goto out;
            }
            v = nv;
            cap = ncap;
        }
        if (!(v[count] = text(nm))) {
            rc = -ENOMEM;
            goto out;
        }
        count++;
    }
    *names = v;
    *n = count;
    v = NULL;
    count = 0;
    rc = 0;
out:
    for (size_t i = 0; i < count; i++)
        free(v[i]);
    free(v);
    xmlFreeDoc(doc);
    return rc;
}

/* A key or prefix as the listing spells it, decoded when it says so. */
static int listed_name(const xmlNode *n, bool url, char **out)
{
    *out = NULL;
    char *raw = text(n);
    if (!raw)
        return -ENOMEM;
    if (!url) {
        *out = raw;
        return 0;
    }
    struct lf_buf b = LF_BUF_INIT;
    int rc = lf_uri_decode(&b, raw, strlen(raw));
    free(raw);
    /* A decoded NUL cannot be part of a path: refuse the page rather
     * than truncate a name into some other name. */
    if (!rc && memchr(b.data ? b.data : "", '\0', b.len))
        rc = -EIO;
    if (rc == -EINVAL)
        rc = -EIO;
    if (rc) {
        lf_buf_free(&b);
        return rc;
    }
    *out = b.data ? lf_buf_steal(&b) : strdup("");
    return *out ? 0 : -ENOMEM;
}

static int parse_entry(const xmlNode *c, bool url, struct lf_list_entry *e)
{
    char num[32], date[64], etag[LF_ETAG_MAX + 2];
    memset(e, 0, sizeof(*e));
    xmlNode *k = child(c, "Key");
    if (!k)
        return -EIO;
    if (child_text(c, "Size", num, sizeof(num)) && !parse_u64(num, &e->attr.size))
        return -EIO;
    if (child_text(c, "ETag", etag, sizeof(etag)))
        lf_etag_copy(e->attr.etag, etag);
    if (child_text(c, "LastModified", date, sizeof(date)))
        parse_time(date, &e->attr.last_modified);
    return listed_name(k, url, &e->key);
}

int lf_xml_parse_list_page(const char *data, size_t len, struct lf_list_page *out)
{
    memset(out, 0, sizeof(*out));
    xmlDoc *doc = parse(data, len);
    if (!doc)
        return -EIO;
    int rc = -EIO;
    char flag[16], enc[16];
    size_t ne = 0, np = 0;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!named(root, "ListBucketResult"))
        goto out;
    bool url = child_text(root, "EncodingType", enc, sizeof(enc)) && strcmp(enc, "url") == 0;
    for (xmlNode *c = root->children; c; c = c->next) {
        if (named(c, "Contents"))
            ne++;
        else if (named(c, "CommonPrefixes"))
            np++;
    }
    if ((ne && !(out->entries = calloc(ne, sizeof(*out->entries)))) ||
        (np && !(out->prefixes = calloc(np, sizeof(*out->prefixes))))) {
        rc = -ENOMEM;
        goto out;
    }
    for (xmlNode *c = root->children; c; c = c->next) {
        if (named(c, "Contents")) {
            if ((rc = parse_entry(c, url, &out->entries[out->nentries])))
                goto out;
            out->nentries++;
        } else if (named(c, "CommonPrefixes")) {
            xmlNode *p = child(c, "Prefix");
            if (!p) {
                rc = -EIO;
                goto out;
            }
            if ((rc = listed_name(p, url, &out->prefixes[out->nprefixes])))
                goto out;
            out->nprefixes++;
        }
    }
    out->truncated = child_text(root, "IsTruncated", flag, sizeof(flag)) &&
                     strcmp(flag, "true") == 0;
    if (out->truncated) {
        xmlNode *t = child(root, "NextContinuationToken");
        if (!t) {
            rc = -EIO;
            goto out;
        }
        if (!(out->next_token = text(t))) {
            rc = -ENOMEM;
            goto out;
        }
        if (!out->next_token[0]) {
            rc = -EIO;
            goto out;
        }
    }
    rc = 0;
out:
    if (rc)
        lf_list_page_free(out);
    xmlFreeDoc(doc);
    return rc;
}

static int parse_etag_result(const char *data, size_t len, const char *root_a,
                             const char *root_b, char etag_out[LF_ETAG_MAX])
{
    char etag[LF_ETAG_MAX + 2];
    xmlDoc *doc = parse(data, len);
    if (!doc)
        return -EIO;
    xmlNode *root = xmlDocGetRootElement(doc);
    int rc = error_doc(root);
    if (!rc) {
        rc = -EIO;
        if ((named(root, root_a) || (root_b && named(root, root_b))) &&
            child_text(root, "ETag", etag, sizeof(etag))) {
            lf_etag_copy(etag_out, etag);
            rc = 0;
        }
    }
    xmlFreeDoc(doc);
    return rc;
}

int lf_xml_parse_copy_result(const char *data, size_t len, char etag_out[LF_ETAG_MAX])
{
    return parse_etag_result(data, len, "CopyObjectResult", "CopyPartResult", etag_out);
}

int lf_xml_parse_complete_result(const char *data, size_t len, char etag_out[LF_ETAG_MAX])
{
    return parse_etag_result(data, len, "CompleteMultipartUploadResult", NULL, etag_out);
}

int lf_xml_parse_upload_id(const char *data, size_t len, char **upload_id)
{
    *upload_id = NULL;
    xmlDoc *doc = parse(data, len);
    if (!doc)
        return -EIO;
    xmlNode *root = xmlDocGetRootElement(doc);
    int rc = error_doc(root);
    if (!rc) {
        xmlNode *id = named(root, "InitiateMultipartUploadResult") ? child(root, "UploadId")
                                                                    : NULL;
        char *s = id ? text(id) : NULL;
        if (id && !s)
            rc = -ENOMEM;
        else if (!s || !s[0])
            rc = -EIO;
        if (rc)
            free(s);
        else
            *upload_id = s;
    }
    xmlFreeDoc(doc);
    return rc;
}

int lf_xml_build_complete(struct lf_buf *out, const struct lf_part *parts, size_t nparts)
{
    int rc = lf_buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                              "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/"
                              "2006-03-01/\">");
    for (size_t i = 0; !rc && i < nparts; i++) {
        /* ETags are hex digits and '-': nothing to escape, but refuse
         * anything else rather than emit broken XML. */
        if (strpbrk(parts[i].etag, "<>&\"'"))
            return -EINVAL;
        rc = lf_buf_printf(out, "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>",
                           parts[i].number, parts[i].etag);
    }
    if (!rc)
        rc = lf_buf_puts(out, "</CompleteMultipartUpload>");
    return rc;
}
