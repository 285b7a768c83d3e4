/* presign store against a small lakeFS of this process's own: the REST
 * calls of the presigned path (stat with presign, staging backing and
 * link, presigned multipart) and the storage its URLs point at, both on
 * one port of 127.0.0.1, with the in-memory store as the gateway.
 *
 * Each test sets the server's knobs (URL lifetime, failures to give,
 * answers to lose), runs store operations and checks what they returned
 * and what the server saw: the bytes stored, the bodies linked, how many
 * stats, storage requests and links, and that no log line holds a URL's
 * query. */
#include "check.h"
#include "lakefuse/api.h"
#include "lakefuse/buf.h"
#include "lakefuse/hash.h"
#include "lakefuse/http.h"
#include "lakefuse/json.h"
#include "lakefuse/log.h"
#include "lakefuse/presign.h"
#include "lakefuse/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MiB (1u << 20)
#define MAX_OBJ 8
#define MAX_BLOB 32
#define MAX_BODY (12u * MiB)

struct blob {
    char addr[32];
    struct lf_buf data;
    char parts_of[32];   /* a part of this upload's blob, or "" */
    int part;
};

struct object {
    char path[64];
    char addr[32];
    char checksum[80];
    uint64_t size;
    char meta[512];      /* the user_metadata object, as JSON text */
};

static struct {
    int lfd, port;
    pthread_mutex_t lock;
    struct object obj[MAX_OBJ];
    int nobj;
    struct blob blob[MAX_BLOB];
    int nblob, next_addr;
    int url_life;        /* seconds a URL lives (expiry said); 0: not said */
    int gen;             /* URLs signed with an older generation are refused */
    /* failures to give: the next n storage requests answer this status */
    int fail_status, fail_n;
    int lose_links;      /* links to carry out and answer with nothing */
    int drop_links;      /* links to close the connection on, not carried out */
    int lose_completes;
    bool no_part_urls;   /* the per-part URL call is unknown (404) */
    bool dropped;        /* this request's connection closes unanswered */
    /* what was seen */
    int stats, storage_gets, storage_puts, links, completes, part_urls, creates, aborts;
    char last_link[2048];
    char last_inm[16];
    char last_md5[64];
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void put_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void header_value(const char *head, const char *name, char *dst, size_t cap)
{
    dst[0] = '\0';
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, name, nl) == 0 && l[2 + nl] == ':') {
            const char *v = l + 3 + nl, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            size_t n = (size_t)(e - v) < cap - 1 ? (size_t)(e - v) : cap - 1;
            memcpy(dst, v, n);
            dst[n] = '\0';
            return;
        }
    }
}

struct request {
    char method[8], target[2048], range[64], inm[16], md5[64];
    struct lf_buf body;
};

static bool read_request(int fd, struct request *q)
{
    char head[8192];
    size_t n = 0;
    char *end = NULL;
    while (!end) {
        if (n == sizeof(head) - 1)
            return false;
        ssize_t r = recv(fd, head + n, 1, 0); /* byte by byte: the body stays unread */
        if (r <= 0)
            return false;
        n += (size_t)r;
        head[n] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    char len[32];
    sscanf(head, "%7s %2047s", q->method, q->target);
    header_value(head, "Range", q->range, sizeof(q->range));
    header_value(head, "If-None-Match", q->inm, sizeof(q->inm));
    header_value(head, "Content-MD5", q->md5, sizeof(q->md5));
    header_value(head, "Content-Length", len, sizeof(len));
    size_t want = (size_t)atol(len);
    lf_buf_reset(&q->body);
    if (want > MAX_BODY || lf_buf_reserve(&q->body, want + 1))
        return false;
    while (q->body.len < want) {
        ssize_t r = recv(fd, q->body.data + q->body.len, want - q->body.len, 0);
        if (r <= 0)
            return false;
        q->body.len += (size_t)r;
    }
    q->body.data[q->body.len] = '\0';
    return true;
}

static void answer(int fd, int status, const char *headers, const void *body, size_t len)
{
    struct lf_buf out = LF_BUF_INIT;
    lf_buf_printf(&out, "HTTP/1.1 %d X\r\n%sContent-Length: %zu\r\n\r\n", status,
                  headers ? headers : "", len);
    lf_buf_append(&out, body, len);
    put_all(fd, out.data, out.len);
    lf_buf_free(&out);
}

static void json(int fd, int status, const char *doc)
{
    answer(fd, status, "Content-Type: application/json\r\n", doc, strlen(doc));
}

/* The query parameter name=... of a target, decoded simply ('%2F' only). */
static void query(const char *target, const char *name, char *dst, size_t cap)
{
    dst[0] = '\0';
    const char *q = strchr(target, '?');
    size_t nl = strlen(name);
    for (const char *p = q; p && *p; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, name, nl) == 0 && p[1 + nl] == '=') {
            size_t k = 0;
            for (const char *v = p + 2 + nl; *v && *v != '&' && k + 1 < cap; v++) {
                if (strncmp(v, "%2F", 3) == 0) {
                    dst[k++] = '/';
                    v += 2;
                } else {
                    dst[k++] = *v;
                }
            }
            dst[k] = '\0';
            return;
        }
    }
}

static struct blob *blob_find(const char *addr)
{
    for (int i = 0; i < srv.nblob; i++)
        if (strcmp(srv.blob[i].addr, addr) == 0)
            return &srv.blob[i];
    return NULL;
}

static struct object *obj_find(const char *path)
{
    for (int i = 0; i < srv.nobj; i++)
        if (strcmp(srv.obj[i].path, path) == 0)
            return &srv.obj[i];
    return NULL;
}

static void md5_hex_of(const void *p, size_t n, char out[LF_MD5_HEX_SIZE])
{
    lf_md5_hex(p, n, out);
}

/* "http://127.0.0.1:PORT/data/<addr>?gen=G&part=N&X-Amz-Signature=s3cr3tsig" */
static void sign(char *dst, size_t cap, const char *addr, int part)
{
    snprintf(dst, cap, "http://127.0.0.1:%d/data/%s?gen=%d&part=%d&X-Amz-Signature=s3cr3tsig",
             srv.port, addr, srv.gen, part);
}

static void storage(int fd, struct request *q)
{
    char addr[32] = "", gen[16], part[16], hdr[256];
    sscanf(q->target, "/data/%31[^?]", addr);
    query(q->target, "gen", gen, sizeof(gen));
    query(q->target, "part", part, sizeof(part));
    if (strcmp(q->method, "GET") == 0)
        srv.storage_gets++;
    else
        srv.storage_puts++;
    if (srv.fail_n > 0) {
        srv.fail_n--;
        const char *doc = "<Error><Code>InternalError</Code><Message>m</Message></Error>";
        if (srv.fail_status == 403)
            doc = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>";
        answer(fd, srv.fail_status, NULL, doc, strlen(doc));
        return;
    }
    if (atoi(gen) != srv.gen) {
        const char *doc = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message>"
                          "</Error>";
        answer(fd, 403, NULL, doc, strlen(doc));
        return;
    }
    if (strcmp(q->method, "PUT") == 0) {
        char md5[LF_MD5_HEX_SIZE], b64[LF_MD5_B64_SIZE];
        lf_md5_base64(q->body.data, q->body.len, b64);
        if (q->md5[0] && strcmp(q->md5, b64) != 0) {
            answer(fd, 400, NULL, "<Error><Code>BadDigest</Code></Error>", 36);
            return;
        }
        snprintf(srv.last_md5, sizeof(srv.last_md5), "%s", q->md5);
        md5_hex_of(q->body.data, q->body.len, md5);
        int pn = atoi(part);
        char key[32];
        snprintf(key, sizeof(key), pn ? "%.20s.%d" : "%.20s", addr, pn);
        struct blob *b = blob_find(key);
        if (!b && srv.nblob < MAX_BLOB) {
            b = &srv.blob[srv.nblob++];
            snprintf(b->addr, sizeof(b->addr), "%s", key);
        }
        lf_buf_reset(&b->data);
        lf_buf_append(&b->data, q->body.data, q->body.len);
        snprintf(hdr, sizeof(hdr), "ETag: \"%s\"\r\n", md5);
        answer(fd, 200, hdr, "", 0);
        return;
    }
    struct blob *b = blob_find(addr);
    if (!b) {
        answer(fd, 404, NULL, "<Error><Code>NoSuchKey</Code></Error>", 37);
        return;
    }
    unsigned long long a = 0, e = b->data.len - 1;
    if (q->range[0])
        sscanf(q->range, "bytes=%llu-%llu", &a, &e);
    if (e >= b->data.len)
        e = b->data.len - 1;
    snprintf(hdr, sizeof(hdr), "Content-Range: bytes %llu-%llu/%zu\r\n", a, e, b->data.len);
    answer(fd, 206, hdr, b->data.data + a, (size_t)(e - a + 1));
}

static void stats_doc(struct lf_buf *out, const struct object *o, const char *address,
                      time_t expiry)
{
    lf_buf_printf(out, "{\"path\": \"%s\", \"path_type\": \"object\", \"physical_address\": "
                       "\"%s\", \"checksum\": \"%s\", \"size_bytes\": %llu, \"mtime\": 1, "
                       "\"metadata\": %s",
                  o->path, address, o->checksum, (unsigned long long)o->size,
                  o->meta[0] ? o->meta : "{}");
    if (expiry)
        lf_buf_printf(out, ", \"physical_address_expiry\": %lld", (long long)expiry);
    lf_buf_puts(out, "}");
}

/* Records a link or completion's fields from its JSON body. */
static void link_object(const char *path, const char *addr, const struct lf_json *doc,
                        const char *checksum, uint64_t size, struct lf_buf *out)
{
    struct object *o = obj_find(path);
    if (!o)
        o = &srv.obj[srv.nobj < MAX_OBJ - 1 ? srv.nobj++ : MAX_OBJ - 1];
    memset(o, 0, sizeof(*o));
    snprintf(o->path, sizeof(o->path), "%s", path);
    snprintf(o->addr, sizeof(o->addr), "%s", addr);
    snprintf(o->checksum, sizeof(o->checksum), "%s", checksum);
    o->size = size;
    const struct lf_json *m;
    if (lf_json_has(doc, "user_metadata") && lf_json_get_obj(doc, "user_metadata", &m) == 0) {
        struct lf_buf b = LF_BUF_INIT;
        lf_json_dump(m, &b);
        snprintf(o->meta, sizeof(o->meta), "%s", b.data);
        lf_buf_free(&b);
    }
    stats_doc(out, o, addr, 0);
}

static void api(int fd, struct request *q)
{
    char path[256], url[512];
    struct lf_buf out = LF_BUF_INIT;
    struct lf_json *doc = NULL;
    query(q->target, "path", path, sizeof(path));
    time_t expiry = srv.url_life ? time(NULL) + srv.url_life : 0;
    if (q->body.len)
        lf_json_parse(q->body.data, q->body.len, 1 << 20, &doc, NULL);
    if (strstr(q->target, "/objects/stat?")) {
        srv.stats++;
        struct object *o = obj_find(path);
        if (!o) {
            json(fd, 404, "{\"message\": \"not found\"}");
        } else {
            sign(url, sizeof(url), o->addr, 0);
            stats_doc(&out, o, strstr(q->target, "presign=true") ? url : o->addr, expiry);
            json(fd, 200, out.data);
        }
    } else if (strstr(q->target, "/staging/backing") && strcmp(q->method, "GET") == 0) {
        char addr[32];
        snprintf(addr, sizeof(addr), "a%d", ++srv.next_addr);
        sign(url, sizeof(url), addr, 0);
        lf_buf_printf(&out, "{\"physical_address\": \"local://r/data/%s,sig\", "
                            "\"presigned_url\": \"%s\"}", addr, url);
        json(fd, 200, out.data);
    } else if (strstr(q->target, "/staging/backing") && srv.drop_links > 0) {
        srv.drop_links--;
        srv.dropped = true; /* serve_conn closes the connection */
    } else if (strstr(q->target, "/staging/backing")) {
        srv.links++;
        snprintf(srv.last_link, sizeof(srv.last_link), "%s", q->body.data);
        snprintf(srv.last_inm, sizeof(srv.last_inm), "%s", q->inm);
        const struct lf_json *st;
        const char *pa, *sum;
        int64_t size;
        char addr[32] = "";
        if (lf_json_get_obj(doc, "staging", &st) || lf_json_get_str(st, "physical_address", &pa) ||
            lf_json_get_str(doc, "checksum", &sum) || lf_json_get_int(doc, "size_bytes", &size)) {
            json(fd, 400, "{\"message\": \"bad link\"}");
        } else if (q->inm[0] && obj_find(path)) {
            json(fd, 412, "{\"message\": \"Precondition failed\"}");
        } else {
            sscanf(pa, "local://r/data/%31[^,]", addr);
            link_object(path, addr, doc, sum, (uint64_t)size, &out);
            if (srv.lose_links > 0)
                srv.lose_links--; /* made, and the answer lost */
            else
                json(fd, 200, out.data);
        }
    } else if (strstr(q->target, "/staging/pmpu") && strstr(q->target, "/parts/")) {
        srv.part_urls++;
        int part = 0;
        char id[32] = "";
        sscanf(strstr(q->target, "/staging/pmpu/"), "/staging/pmpu/%31[^/]/parts/%d", id, &part);
        if (srv.no_part_urls) {
            json(fd, 404, "{\"message\": \"path not found\"}");
        } else {
            sign(url, sizeof(url), id, part);
            lf_buf_printf(&out, "{\"presigned_url\": \"%s\"}", url);
            json(fd, 200, out.data);
        }
    } else if (strstr(q->target, "/staging/pmpu?") && strcmp(q->method, "POST") == 0) {
        srv.creates++;
        int n = ++srv.next_addr;
        lf_buf_printf(&out, "{\"upload_id\": \"u%d\", \"physical_address\": "
                            "\"local://r/data/u%d,sig\"}", n, n);
        json(fd, 201, out.data);
    } else if (strstr(q->target, "/staging/pmpu/") && strcmp(q->method, "DELETE") == 0) {
        srv.aborts++;
        answer(fd, 204, NULL, "", 0);
    } else if (strstr(q->target, "/staging/pmpu/")) {
        srv.completes++;
        char id[32] = "";
        const struct lf_json *parts;
        size_t n = 0;
        sscanf(strstr(q->target, "/staging/pmpu/"), "/staging/pmpu/%31[^?]", id);
        lf_json_get_array(doc, "parts", &parts, &n);
        /* the object: the parts' blobs, in order */
        struct blob *whole = blob_find(id);
        if (!whole && srv.nblob < MAX_BLOB) {
            whole = &srv.blob[srv.nblob++];
            snprintf(whole->addr, sizeof(whole->addr), "%s", id);
        }
        lf_buf_reset(&whole->data);
        struct lf_buf md5s = LF_BUF_INIT;
        for (size_t i = 0; i < n; i++) {
            int64_t num;
            char key[40];
            lf_json_get_int(lf_json_at(parts, i), "part_number", &num);
            snprintf(key, sizeof(key), "%.20s.%d", id, (int)num);
            struct blob *b = blob_find(key);
            unsigned char d[LF_MD5_LEN];
            if (b) {
                lf_buf_append(&whole->data, b->data.data, b->data.len);
                lf_md5(b->data.data, b->data.len, d);
                lf_buf_append(&md5s, d, sizeof(d));
            }
        }
        struct lf_buf etag = LF_BUF_INIT;
        lf_multipart_etag(&etag, (unsigned char *)md5s.data, n);
        link_object(path, id, doc, etag.data, whole->data.len, &out);
        if (srv.lose_completes > 0)
            srv.lose_completes--;
        else
            json(fd, 200, out.data);
        lf_buf_free(&etag);
        lf_buf_free(&md5s);
    } else {
        json(fd, 404, "{\"message\": \"path not found\"}");
    }
    lf_json_free(doc);
    lf_buf_free(&out);
}

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct request q = {.body = LF_BUF_INIT};
    while (read_request(fd, &q)) {
        pthread_mutex_lock(&srv.lock);
        int before = srv.lose_links + srv.lose_completes;
        if (strncmp(q.target, "/data/", 6) == 0)
            storage(fd, &q);
        else
            api(fd, &q);
        bool lost = srv.lose_links + srv.lose_completes < before || srv.dropped;
        srv.dropped = false;
        pthread_mutex_unlock(&srv.lock);
        if (lost)
            break; /* the connection closes with no answer */
    }
    lf_buf_free(&q.body);
    close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(srv.lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_t t;
        if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
}

/* ---- helpers ------------------------------------------------------------ */

/* The tests' side of the server's knobs and counters, under its lock. */
#define SET(field, value)                                                    \
    do {                                                                     \
        __typeof__(srv.field) set_v_ = (value); /* may GET: before the lock */ \
        pthread_mutex_lock(&srv.lock);                                       \
        srv.field = set_v_;                                                  \
        pthread_mutex_unlock(&srv.lock);                                     \
    } while (0)
#define GET(field) get_knob(&srv.field)
static int get_knob(const int *p)
{
    pthread_mutex_lock(&srv.lock);
    int v = *p;
    pthread_mutex_unlock(&srv.lock);
    return v;
}

/* A copy of one of the server's strings (a static buffer per call site). */
#define GET_STR(field) get_str(srv.field, sizeof(srv.field), (char[sizeof(srv.field)]){0})
static const char *get_str(const char *src, size_t n, char *dst)
{
    pthread_mutex_lock(&srv.lock);
    memcpy(dst, src, n);
    pthread_mutex_unlock(&srv.lock);
    return dst;
}

static void reset_server(void)
{
    pthread_mutex_lock(&srv.lock);
    for (int i = 0; i < srv.nblob; i++)
        lf_buf_free(&srv.blob[i].data);
    memset(srv.obj, 0, sizeof(srv.obj));
    memset(srv.blob, 0, sizeof(srv.blob));
    srv.nobj = srv.nblob = 0;
    srv.url_life = 0;
    srv.fail_status = srv.fail_n = srv.lose_links = srv.lose_completes = srv.drop_links = 0;
    srv.no_part_urls = false;
    srv.stats = srv.storage_gets = srv.storage_puts = srv.links = srv.completes = 0;
    srv.part_urls = srv.creates = srv.aborts = 0;
    srv.last_link[0] = srv.last_inm[0] = '\0';
    pthread_mutex_unlock(&srv.lock);
}

/* An object in the fake lakeFS with these bytes (checksum: their MD5). */
static void seed(const char *path, const void *data, size_t len)
{
    pthread_mutex_lock(&srv.lock);
    struct blob *b = &srv.blob[srv.nblob++];
    snprintf(b->addr, sizeof(b->addr), "s%d", ++srv.next_addr);
    lf_buf_append(&b->data, data, len);
    struct object *o = obj_find(path);
    if (!o)
        o = &srv.obj[srv.nobj++];
    snprintf(o->path, sizeof(o->path), "%s", path);
    snprintf(o->addr, sizeof(o->addr), "%s", b->addr);
    md5_hex_of(data, len, o->checksum);
    o->size = len;
    o->meta[0] = '\0';
    pthread_mutex_unlock(&srv.lock);
}

static const struct blob *stored(const char *path)
{
    const struct object *o = obj_find(path);
    return o ? blob_find(o->addr) : NULL;
}

static char *pattern(size_t n, unsigned seed_)
{
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)((i * 2654435761u + seed_) >> 13);
    return p;
}

static struct lf_mem_store *mem;
static struct lf_api *api_client;

static struct lf_store *new_store(bool multipart)
{
    mem = lf_mem_store_new();
    lf_mem_store_add_bucket(mem, "r");
    /* The view's destroy does nothing: the mem store is freed below. */
    struct lf_presign_opts o = {.gateway = lf_mem_store_view(mem), .api = api_client,
                                .multipart = multipart, .max_conns = 4,
                                .connect_timeout_ms = 2000, .stall_timeout_ms = 5000,
                                .retries = 3, .backoff_ms = 1};
    return lf_presign_store_new(&o);
}

static void free_store(struct lf_store *s)
{
    lf_store_free(s);
    lf_mem_store_free(mem);
    mem = NULL;
}

/* ---- tests -------------------------------------------------------------- */

/* A commit ID: objects under it never change. */
#define CID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_reads(void)
{
    reset_server();
    struct lf_store *s = new_store(true);
    char *data = pattern(3 * MiB, 1);
    seed("dir/f", data, 3 * MiB);
    char etag[LF_ETAG_MAX];
    md5_hex_of(data, 3 * MiB, etag);
    char *buf = malloc(MiB);
    struct iovec iov = {buf, MiB};
    size_t got = 0;
    /* three ranged reads under a commit ID: one stat, the URL reused */
    const char *K = CID "/dir/f";
    for (int i = 0; i < 3; i++) {
        CHECK_INT(s->ops->get(s->ctx, "r", K, (uint64_t)i * MiB, &iov, 1, etag, &got,
                              NULL), 0);
        CHECK_INT(got, MiB);
        CHECK(memcmp(buf, data + (size_t)i * MiB, MiB) == 0);
    }
    CHECK_INT(GET(stats), 1);
    CHECK_INT(GET(storage_gets), 3);
    CHECK_INT(lf_mem_store_calls(mem, LF_MEM_GET), 0); /* nothing through the gateway */
    /* a read running past the end gives what exists; past the end, ERANGE */
    CHECK_INT(s->ops->get(s->ctx, "r", K, 3 * MiB - 10, &iov, 1, etag, &got, NULL), 0);
    CHECK_INT(got, 10);
    CHECK_INT(s->ops->get(s->ctx, "r", K, 3 * MiB, &iov, 1, etag, &got, NULL), -ERANGE);
    /* a 403 (expired, refused): a new URL, the reader sees nothing */
    SET(fail_status, 403);
    SET(fail_n, 1);
    CHECK_INT(s->ops->get(s->ctx, "r", K, 0, &iov, 1, etag, &got, NULL), 0);
    CHECK(memcmp(buf, data, MiB) == 0);
    CHECK_INT(GET(stats), 2);
    /* a 500 and a 503: retried on the same URL */
    SET(fail_status, 500);
    SET(fail_n, 2);
    CHECK_INT(s->ops->get(s->ctx, "r", K, MiB, &iov, 1, etag, &got, NULL), 0);
    CHECK(memcmp(buf, data + MiB, MiB) == 0);
    CHECK_INT(GET(stats), 2);
    /* URLs signed before a key rotation: refused, renewed */
    SET(gen, GET(gen) + 1);
    CHECK_INT(s->ops->get(s->ctx, "r", K, 0, &iov, 1, etag, &got, NULL), 0);
    CHECK_INT(GET(stats), 3);
    /* replaced: a read a moment later asks again (main moves), the stat
     * names another version, and the pinned read fails, never giving the
     * old bytes from a URL still good */
    CHECK_INT(s->ops->get(s->ctx, "r", "main/dir/f", 0, &iov, 1, etag, &got, NULL), 0);
    char *other = pattern(3 * MiB, 2);
    seed("dir/f", other, 3 * MiB);
    usleep(150 * 1000);
    CHECK_INT(s->ops->get(s->ctx, "r", "main/dir/f", 0, &iov, 1, etag, &got, NULL), -ESTALE);
    CHECK_INT(GET(stats), 5);
    /* an unpinned read takes the new one */
    CHECK_INT(s->ops->get(s->ctx, "r", "main/dir/f", 0, &iov, 1, "", &got, NULL), 0);
    CHECK(memcmp(buf, other, MiB) == 0);
    /* gone */
    CHECK_INT(s->ops->get(s->ctx, "r", "main/nothere", 0, &iov, 1, "", &got, NULL), -ENOENT);
    /* a refusal that does not end: EACCES after a few new URLs */
    SET(fail_status, 403);
    SET(fail_n, 100);
    CHECK_INT(s->ops->get(s->ctx, "r", "main/dir/f", 0, &iov, 1, "", &got, NULL), -EACCES);
    SET(fail_n, 0);
    struct lf_presign_stats st;
    lf_presign_get_stats(s, &st);
    CHECK(st.refreshes >= 3 && st.retries >= 2);
    CHECK(st.bytes_in >= 6 * MiB);
    free_store(s);
    free(buf);
    free(data);
    free(other);
}

static void test_url_lifetime(void)
{
    reset_server();
    struct lf_store *s = new_store(true);
    char data[4096];
    memset(data, 'x', sizeof(data));
    seed("f", data, sizeof(data));
    char buf[100];
    struct iovec iov = {buf, sizeof(buf)};
    size_t got;
    /* under a commit ID the version never changes: a URL that lives 2 s
     * is reused until a second before its end, then asked for again */
    SET(url_life, 2);
    CHECK_INT(s->ops->get(s->ctx, "r", CID "/f", 0, &iov, 1, "", &got, NULL), 0);
    usleep(300 * 1000);
    CHECK_INT(s->ops->get(s->ctx, "r", CID "/f", 100, &iov, 1, "", &got, NULL), 0);
    CHECK_INT(GET(stats), 1);
    usleep(1000 * 1000);
    CHECK_INT(s->ops->get(s->ctx, "r", CID "/f", 200, &iov, 1, "", &got, NULL), 0);
    CHECK_INT(GET(stats), 2);
    /* a long-lived one stays */
    SET(url_life, 3600);
    usleep(1200 * 1000);
    CHECK_INT(s->ops->get(s->ctx, "r", CID "/f", 0, &iov, 1, "", &got, NULL), 0);
    CHECK_INT(GET(stats), 3);
    usleep(1200 * 1000);
    CHECK_INT(s->ops->get(s->ctx, "r", CID "/f", 0, &iov, 1, "", &got, NULL), 0);
    CHECK_INT(GET(stats), 3);
    /* on a branch, asked again a tenth of a second on, long-lived or not */
    CHECK_INT(s->ops->get(s->ctx, "r", "main/f", 0, &iov, 1, "", &got, NULL), 0);
    CHECK_INT(s->ops->get(s->ctx, "r", "main/f", 0, &iov, 1, "", &got, NULL), 0);
    CHECK_INT(GET(stats), 4);
    usleep(150 * 1000);
    CHECK_INT(s->ops->get(s->ctx, "r", "main/f", 0, &iov, 1, "", &got, NULL), 0);
    CHECK_INT(GET(stats), 5);
    free_store(s);
}

static void test_stream(void)
{
    reset_server();
    struct lf_store *s = new_store(true);
    char *data = pattern(MiB, 3);
    seed("st", data, MiB);
    char etag[LF_ETAG_MAX];
    md5_hex_of(data, MiB, etag);
    int p[2];
    CHECK(pipe(p) == 0);
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    struct lf_stream *st = NULL;
    SET(fail_status, 403);
    SET(fail_n, 1);
    CHECK_INT(s->ops->get_stream(s->ctx, "r", "main/st", 4096, 65536, etag, NULL, &st), 0);
    CHECK(st != NULL);
    size_t moved = 0;
    if (st) {
        CHECK_INT(st->ops->splice(st, p[1], 65536, NULL, &moved), 0);
        st->ops->close(st);
    }
    char *buf = malloc(65536);
    CHECK_INT(test_read_full(p[0], buf, 65536), 65536);
    CHECK(memcmp(buf, data + 4096, 65536) == 0);
    /* past the object's end: it changed size */
    CHECK_INT(s->ops->get_stream(s->ctx, "r", "main/st", MiB - 10, 100, etag, NULL, &st),
              -ESTALE);
    close(p[0]);
    close(p[1]);
    free(buf);
    free(data);
    free_store(s);
}

static const char *link_field(const char *name, char *dst, size_t cap)
{
    struct lf_json *root = NULL;
    const char *v = NULL;
    dst[0] = '\0';
    const char *link = GET_STR(last_link);
    if (lf_json_parse(link, strlen(link), 1 << 20, &root, NULL) == 0) {
        const struct lf_json *m;
        if (strcmp(name, "mode") == 0 || strcmp(name, "mtime") == 0 ||
            strcmp(name, "mtime-nsec") == 0) {
            char key[64];
            snprintf(key, sizeof(key), "X-Amz-Meta-%s", name);
            if (lf_json_get_obj(root, "user_metadata", &m) == 0 && lf_json_has(m, key))
                lf_json_get_str(m, key, &v);
        } else if (lf_json_has(root, name)) {
            lf_json_get_str(root, name, &v);
        }
        snprintf(dst, cap, "%s", v ? v : "");
    }
    lf_json_free(root);
    return dst;
}

static void test_put(void)
{
    reset_server();
    struct lf_store *s = new_store(true);
    char *data = pattern(300000, 4);
    char md5[LF_MD5_HEX_SIZE], etag[LF_ETAG_MAX] = "", v[128];
    md5_hex_of(data, 300000, md5);
    struct lf_body body = {.mem = data, .len = 300000};
    struct lf_put_meta meta = {.has = LF_ATTR_MODE | LF_ATTR_MTIME, .mode = 0100640,
                               .mtime = {1700000000, 5}};
    CHECK_INT(s->ops->put(s->ctx, "r", "main/d/p", &body, &meta, LF_PUT_ANY, etag), 0);
    CHECK_STR(etag, md5);
    const struct blob *b = stored("d/p");
    CHECK(b && b->data.len == 300000 && memcmp(b->data.data, data, 300000) == 0);
    CHECK(GET_STR(last_md5)[0] != '\0'); /* Content-MD5 was sent */
    CHECK_STR(link_field("checksum", v, sizeof(v)), md5);
    CHECK_STR(link_field("mode", v, sizeof(v)), "33184");
    CHECK_STR(link_field("mtime", v, sizeof(v)), "1700000000");
    CHECK_STR(link_field("mtime-nsec", v, sizeof(v)), "5");
    CHECK_STR(link_field("content_type", v, sizeof(v)), "application/octet-stream");
    CHECK_STR(GET_STR(last_inm), "");
    CHECK_INT(lf_mem_store_calls(mem, LF_MEM_PUT), 0);
    /* from a file region, as the staging layer sends */
    char name[] = "/tmp/test_presign.XXXXXX";
    int fd = mkstemp(name);
    unlink(name);
    CHECK(write(fd, data, 300000) == 300000);
    struct lf_body fbody = {.fd = fd, .off = 1000, .len = 200000};
    CHECK_INT(s->ops->put(s->ctx, "r", "main/d/q", &fbody, NULL, LF_PUT_ANY, etag), 0);
    b = stored("d/q");
    CHECK(b && b->data.len == 200000 && memcmp(b->data.data, data + 1000, 200000) == 0);
    close(fd);
    /* if absent: If-None-Match on the link; a path that exists: EEXIST */
    CHECK_INT(s->ops->put(s->ctx, "r", "main/d/p", &body, NULL, LF_PUT_IF_ABSENT, etag), -EEXIST);
    CHECK_STR(GET_STR(last_inm), "*");
    CHECK_INT(s->ops->put(s->ctx, "r", "main/d/new", &body, NULL, LF_PUT_IF_ABSENT, etag), 0);
    /* an empty or small body: the gateway takes it in one request */
    struct lf_body empty = {.mem = "", .len = 0}, small = {.mem = data, .len = 128 * 1024 - 1};
    int links = GET(links);
    CHECK_INT(s->ops->put(s->ctx, "r", "main/d/empty", &empty, NULL, LF_PUT_ANY, etag), 0);
    CHECK_INT(s->ops->put(s->ctx, "r", "main/d/small", &small, NULL, LF_PUT_ANY, etag), 0);
    CHECK_INT(lf_mem_store_calls(mem, LF_MEM_PUT), 2);
    CHECK_INT(GET(links), links);
    size_t len = 0;
    const void *got = lf_mem_store_data(mem, "r", "main/d/small", &len);
    CHECK(got && len == small.len && memcmp(got, data, len) == 0);
    /* the storage refuses the URL once: a new staging location */
    SET(fail_status, 403);
    SET(fail_n, 1);
    CHECK_INT(s->ops->put(s->ctx, "r", "main/d/r", &body, NULL, LF_PUT_ANY, etag), 0);
    b = stored("d/r");
    CHECK(b && b->data.len == 300000);
    free_store(s);
    free(data);
}

static void test_lost_link(void)
{
    reset_server();
    struct lf_store *s = new_store(true);
    char *data = pattern(200000, 5);
    char etag[LF_ETAG_MAX], md5[LF_MD5_HEX_SIZE];
    md5_hex_of(data, 200000, md5);
    struct lf_body body = {.mem = data, .len = 200000};
    /* made, answer lost: a stat finds it linked; not sent again */
    SET(lose_links, 1);
    CHECK_INT(s->ops->put(s->ctx, "r", "main/l", &body, NULL, LF_PUT_ANY, etag), 0);
    CHECK_INT(GET(links), 1);
    CHECK_STR(etag, md5);
    /* made, answer lost, with If-None-Match: the stat says it is ours */
    SET(lose_links, 1);
    CHECK_INT(s->ops->put(s->ctx, "r", "main/l2", &body, NULL, LF_PUT_IF_ABSENT, etag), 0);
    CHECK_INT(GET(links), 2);
    /* the connection drops before the link is made: the stat finds other
     * bytes there, and the link is sent again */
    seed("l3", "other", 5);
    int before = GET(links);
    SET(drop_links, 1);
    CHECK_INT(s->ops->put(s->ctx, "r", "main/l3", &body, NULL, LF_PUT_ANY, etag), 0);
    CHECK_INT(GET(links), before + 1);
    const struct blob *b = stored("l3");
    CHECK(b && b->data.len == 200000 && memcmp(b->data.data, data, 200000) == 0);
    /* dropped every time: an error after the retries, nothing half done */
    SET(drop_links, 100);
    CHECK_INT(s->ops->put(s->ctx, "r", "main/l4", &body, NULL, LF_PUT_ANY, etag), -ECONNRESET);
    CHECK(stored("l4") == NULL);
    SET(drop_links, 0);
    free_store(s);
    free(data);
}

static void test_multipart(void)
{
    reset_server();
    struct lf_store *s = new_store(true);
    char *data = pattern(11 * MiB, 6);
    char *id = NULL, etag[LF_ETAG_MAX] = "";
    struct lf_put_meta meta = {.has = LF_ATTR_UID, .uid = 1000, .content_type = "text/x"};
    CHECK_INT(s->ops->mpu_create(s->ctx, "r", "main/big", &meta, &id), 0);
    CHECK(id && strncmp(id, "lakefuse-presigned-", 19) == 0);
    CHECK_INT(GET(creates), 1);
    CHECK_INT(GET(part_urls), 1); /* the probe: the server gives part URLs */
    struct lf_part parts[3] = {{1, ""}, {2, ""}, {3, ""}};
    size_t off[] = {0, 5 * MiB, 10 * MiB, 11 * MiB};
    for (int i = 2; i >= 0; i--) { /* any order, as the work queue sends them */
        struct lf_body b = {.mem = data + off[i], .len = off[i + 1] - off[i]};
        CHECK_INT(s->ops->mpu_part(s->ctx, "r", "main/big", id, i + 1, &b, parts[i].etag), 0);
    }
    SET(lose_completes, 1); /* made, the answer lost: a stat finds the multipart ETag */
    CHECK_INT(s->ops->mpu_complete(s->ctx, "r", "main/big", id, parts, 3, LF_PUT_ANY, NULL, etag), 0);
    CHECK_INT(GET(completes), 1);
    CHECK(strstr(etag, "-3") != NULL);
    const struct blob *b = stored("big");
    CHECK(b && b->data.len == 11 * MiB && memcmp(b->data.data, data, 11 * MiB) == 0);
    const struct object *o = obj_find("big");
    CHECK(o && strstr(o->meta, "\"X-Amz-Meta-uid\":\"1000\"") != NULL);
    CHECK_INT(lf_mem_store_calls(mem, LF_MEM_MPU_CREATE), 0);
    free(id);
    /* abort */
    CHECK_INT(s->ops->mpu_create(s->ctx, "r", "main/big2", NULL, &id), 0);
    CHECK_INT(GET(part_urls), 4); /* no second probe */
    CHECK_INT(s->ops->mpu_abort(s->ctx, "r", "main/big2", id), 0);
    CHECK_INT(GET(aborts), 1);
    struct lf_body one = {.mem = data, .len = 5 * MiB};
    CHECK_INT(s->ops->mpu_part(s->ctx, "r", "main/big2", id, 1, &one, parts[0].etag), -ENOENT);
    free(id);
    /* metadata that changed after the create rides on the completion,
     * which says so (1): no copy onto itself is needed */
    CHECK_INT(s->ops->mpu_create(s->ctx, "r", "main/late", &meta, &id), 0);
    CHECK_INT(s->ops->mpu_part(s->ctx, "r", "main/late", id, 1, &one, parts[0].etag), 0);
    struct lf_put_meta late = {.has = LF_ATTR_UID | LF_ATTR_MTIME, .uid = 1001,
                               .mtime = {.tv_sec = 1700000000, .tv_nsec = 42}};
    CHECK_INT(s->ops->mpu_complete(s->ctx, "r", "main/late", id, parts, 1, LF_PUT_ANY, &late,
                                   etag), 1);
    o = obj_find("late");
    CHECK(o && strstr(o->meta, "\"X-Amz-Meta-uid\":\"1001\"") != NULL);
    CHECK(o && strstr(o->meta, "\"X-Amz-Meta-mtime\":\"1700000000\"") != NULL);
    CHECK(o && strstr(o->meta, "\"X-Amz-Meta-mtime-nsec\":\"42\"") != NULL);
    free(id);
    free_store(s);

    /* a server without per-part URLs: the first upload finds out, is
     * aborted, and every upload goes to the gateway's multipart */
    reset_server();
    s = new_store(true);
    SET(no_part_urls, true);
    CHECK_INT(s->ops->mpu_create(s->ctx, "r", "main/g", NULL, &id), 0);
    CHECK(id && strncmp(id, "lakefuse-presigned-", 19) != 0);
    CHECK_INT(GET(aborts), 1);
    CHECK_INT(lf_mem_store_calls(mem, LF_MEM_MPU_CREATE), 1);
    struct lf_body p1 = {.mem = data, .len = 5 * MiB};
    CHECK_INT(s->ops->mpu_part(s->ctx, "r", "main/g", id, 1, &p1, parts[0].etag), 0);
    /* the gateway's completion cannot set metadata: 0, the create's stays */
    struct lf_put_meta any = {.has = LF_ATTR_UID, .uid = 7};
    CHECK_INT(s->ops->mpu_complete(s->ctx, "r", "main/g", id, parts, 1, LF_PUT_ANY, &any, etag),
              0);
    size_t len = 0;
    const void *got = lf_mem_store_data(mem, "r", "main/g", &len);
    CHECK(got && len == 5 * MiB && memcmp(got, data, len) == 0);
    free(id);
    CHECK_INT(s->ops->mpu_create(s->ctx, "r", "main/g2", NULL, &id), 0);
    CHECK_INT(GET(creates), 1); /* never asked again */
    CHECK_INT(s->ops->mpu_abort(s->ctx, "r", "main/g2", id), 0);
    free(id);
    free_store(s);
    free(data);
}

/* Metadata stays the gateway's. */
static void test_metadata(void)
{
    reset_server();
    struct lf_store *s = new_store(true);
    lf_mem_store_put(mem, "r", "main/m", "meta", 4);
    struct lf_obj_attr a;
    CHECK_INT(s->ops->head(s->ctx, "r", "main/m", &a), 0);
    CHECK_INT(a.size, 4);
    struct lf_list_page page;
    CHECK_INT(s->ops->list(s->ctx, "r", "main/", "/", NULL, 100, &page), 0);
    CHECK_INT(page.nentries, 1);
    lf_list_page_free(&page);
    char etag[LF_ETAG_MAX];
    CHECK_INT(s->ops->copy(s->ctx, "r", "main/m", "main/n", NULL, etag), 0);
    CHECK_INT(s->ops->remove(s->ctx, "r", "main/m", NULL), 0);
    CHECK_INT(lf_mem_store_calls(mem, LF_MEM_COPY), 1);
    CHECK_INT(GET(stats) + GET(links), 0);
    free_store(s);
}

static void test_no_secret_logged(int logfd)
{
    char *buf = malloc(1 << 22);
    ssize_t n = pread(logfd, buf, (1 << 22) - 1, 0);
    CHECK(n > 0);
    buf[n > 0 ? n : 0] = '\0';
    CHECK(strstr(buf, "storage GET") != NULL);   /* requests were logged ... */
    CHECK(strstr(buf, "/data/") != NULL);        /* ... by their path ... */
    CHECK(strstr(buf, "s3cr3tsig") == NULL);     /* ... never their query */
    CHECK(strstr(buf, "gen=") == NULL);
    if (getenv("TEST_PRESIGN_SHOW_LOG"))
        fputs(buf, stderr);
    free(buf);
}

int main(void)
{
    SET(lfd, socket(AF_INET, SOCK_STREAM, 0));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (bind(GET(lfd), (struct sockaddr *)&a, sizeof(a)) || listen(GET(lfd), 16) ||
        getsockname(GET(lfd), (struct sockaddr *)&a, &al)) {
        perror("test server");
        return 1;
    }
    SET(port, ntohs(a.sin_port));
    pthread_t t;
    pthread_create(&t, NULL, serve, NULL);
    lf_http_global_init();
    char logname[] = "/tmp/test_presign_log.XXXXXX";
    int logfd = mkstemp(logname);
    unlink(logname);
    lf_log_set_fd(logfd);
    lf_log_set_level(LF_LOG_DEBUG);

    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", srv.port);
    struct lf_api_opts o = {.endpoint = ep, .access_key = "AK", .secret_key = "SK",
                            .connect_timeout_ms = 2000, .stall_timeout_ms = 5000, .retries = 2,
                            .backoff_ms = 1};
    api_client = lf_api_new(&o);
    CHECK(api_client != NULL);

    test_reads();
    test_url_lifetime();
    test_stream();
    test_put();
    test_lost_link();
    test_multipart();
    test_metadata();
    test_no_secret_logged(logfd);

    lf_api_free(api_client);
    reset_server();
    lf_http_global_cleanup();
    close(logfd);
    return check_summary("test_presign");
}
