/* s3: requests that must not be sent twice (CompleteMultipartUpload,
 * DeleteObject) against a scripted server on 127.0.0.1 that carries a
 * request out and then loses its answer; listings answered 400; a key
 * rotated on the server (the client reads fresh credentials and sends
 * again); a server whose clock is an hour off (the client signs with the
 * server's time after its first refusal); parts whose answered ETag is or
 * is not the MD5 of the bytes the server got. What the client did is read
 * from the server's counts and state, never from timing. */
#include "check.h"
#include "scripted.h"
#include "lakefuse/buf.h"
#include "lakefuse/hash.h"
#include "lakefuse/s3.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum script {
    COMPLETE_LOST_AFTER_STORE,  /* stores, then closes without an answer */
    COMPLETE_500_AFTER_STORE,   /* stores, then answers 500 */
    COMPLETE_LOST_BEFORE_STORE, /* closes without storing; the next one works */
    DELETE_LOST,                /* deletes, then closes without an answer */
    DELETE_LOST_THEN_NEWER,     /* deletes, a newer version arrives, answer lost */
    DELETE_LOST_BEFORE,         /* closes without deleting; the next one works */
    AUTH_ROTATED,               /* only key AK2 is accepted: 403 SignatureDoesNotMatch */
    CLOCK_AHEAD,                /* the server's clock is an hour ahead: 403 RequestTimeTooSkewed */
    CLOCK_BEHIND,               /* an hour behind: 403 AccessDenied, not valid yet */
    LIST_400_ONCE,              /* a listing fails with 400 once, then works */
    LIST_400_ALWAYS,            /* every listing answers 400 (an unknown ref) */
    PART_OK,                    /* a part's ETag is the MD5 of what arrived */
    PART_DAMAGED,               /* ... of what arrived with its first byte changed */
    PART_CUT_ONCE,              /* the first PUT is cut mid-body, the next is whole */
};

static struct {
    pthread_mutex_t lock;
    enum script script;
    bool stored;
    char etag[64];     /* the object's, unquoted */
    char complete_etag[64];
    int posts, deletes, heads, gets, refused, puts;
    char head[16384];  /* the request being answered */
    char part_md5[LF_MD5_HEX_SIZE]; /* of the last whole body a PUT carried */
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};
static struct scripted server;

static void put_all(int fd, const char *p) { scripted_put_all(fd, p, strlen(p)); }

/* Reads one request (head and body); false at EOF. A PUT's body is
 * hashed into srv.part_md5 (its first byte changed for PART_DAMAGED);
 * for PART_CUT_ONCE the first PUT is read half way and dropped. */
static bool get_request(int fd, char *method, size_t mcap)
{
    char buf[16384];
    size_t n = 0;
    char *end = NULL;
    while (!end && n < sizeof(buf) - 1) {
        ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);
        if (r <= 0)
            return false;
        n += (size_t)r;
        buf[n] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        return false;
    snprintf(method, mcap, "%.*s", (int)strcspn(buf, " "), buf);
    pthread_mutex_lock(&srv.lock);
    snprintf(srv.head, sizeof(srv.head), "%.*s", (int)(end - buf), buf);
    pthread_mutex_unlock(&srv.lock);
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    size_t have = n - (size_t)(end + 4 - buf);
    bool put = strcmp(method, "PUT") == 0;
    pthread_mutex_lock(&srv.lock);
    enum script script = srv.script;
    bool cut = put && script == PART_CUT_ONCE && srv.puts == 0;
    if (put)
        srv.puts++;
    pthread_mutex_unlock(&srv.lock);
    struct lf_hash *h = put ? lf_hash_new(LF_HASH_MD5) : NULL;
    char first = '\0';
    bool seen_first = false;
    const char *p = end + 4;
    size_t len = have;
    for (;;) {
        if (h && len > 0) {
            if (!seen_first && script == PART_DAMAGED) {
                first = (char)(p[0] ^ 1);
                lf_hash_update(h, &first, 1);
                lf_hash_update(h, p + 1, len - 1);
            } else {
                lf_hash_update(h, p, len);
            }
            seen_first = true;
        }
        if (have >= body || (cut && have >= body / 2))
            break;
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0) {
            lf_hash_free(h);
            return false;
        }
        have += (size_t)r;
        p = buf;
        len = (size_t)r;
    }
    if (h) {
        struct lf_hash_result res;
        lf_hash_final(h, &res);
        lf_hash_free(h);
        pthread_mutex_lock(&srv.lock);
        lf_hex_fill(srv.part_md5, res.md5, LF_MD5_LEN);
        pthread_mutex_unlock(&srv.lock);
    }
    return !cut;
}

static void answer_head(int fd)
{
    char a[256];
    if (srv.stored)
        snprintf(a, sizeof(a), "HTTP/1.1 200 OK\r\nETag: \"%s\"\r\nContent-Length: 0\r\n\r\n",
                 srv.etag);
    else
        snprintf(a, sizeof(a), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    put_all(fd, a);
}

static void answer_xml(int fd, int status, const char *reason, const char *doc)
{
    char a[1024];
    snprintf(a, sizeof(a), "HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\n"
             "Content-Length: %zu\r\n\r\n%s", status, reason, strlen(doc), doc);
    put_all(fd, a);
}

static const char NO_UPLOAD[] =
    "<?xml version=\"1.0\"?><Error><Code>NoSuchUpload</Code></Error>";

/* The x-amz-date of the request being answered, as seconds. */
static time_t amz_date(void)
{
    const char *d = strcasestr(srv.head, "\r\nx-amz-date: ");
    struct tm tm = {0};
    if (!d || !strptime(d + 14, "%Y%m%dT%H%M%SZ", &tm))
        return 0;
    return timegm(&tm);
}

/* Refuses the request as lakeFS would, if the script says so (an
 * answer to HEAD has no body). */
static bool refused(int fd, const char *method)
{
    char a[1024], date[64];
    const char *code = NULL, *msg = NULL;
    time_t now = time(NULL);
    if (srv.script == CLOCK_AHEAD || srv.script == CLOCK_BEHIND) {
        now += srv.script == CLOCK_AHEAD ? 3600 : -3600;
        long long apart = (long long)now - (long long)amz_date();
        if (apart > 900)
            code = "RequestTimeTooSkewed", msg = "too large";
        else if (apart < -900)
            code = "AccessDenied", msg = "Request is not valid yet";
    } else if (srv.script == AUTH_ROTATED && !strstr(srv.head, "Credential=AK2/")) {
        code = "SignatureDoesNotMatch", msg = "does not match";
    }
    if (!code)
        return false;
    srv.refused++;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    bool head = strcmp(method, "HEAD") == 0;
    snprintf(a, sizeof(a), "HTTP/1.1 403 Forbidden\r\nDate: %s\r\n"
             "Content-Type: application/xml\r\nContent-Length: %zu\r\n\r\n"
             "<Error><Code>%s</Code><Message>%s</Message></Error>", date,
             head ? 0 : strlen("<Error><Code></Code><Message></Message></Error>") +
                            strlen(code) + strlen(msg), code, msg);
    if (head)
        *strstr(a, "\r\n\r\n<Error>") = '\0', strcat(a, "\r\n\r\n");
    put_all(fd, a);
    return true;
}

/* Answers one request; false when the connection is to close here. */
static bool answer(int fd, const char *method)
{
    char doc[512];
    if (refused(fd, method))
        return true;
    if (strcmp(method, "HEAD") == 0) {
        srv.heads++;
        answer_head(fd);
        return true;
    }
    if (strcmp(method, "POST") == 0) {
        int n = ++srv.posts;
        switch (srv.script) {
        case COMPLETE_LOST_AFTER_STORE:
        case COMPLETE_500_AFTER_STORE:
            if (n > 1) {
                answer_xml(fd, 404, "Not Found", NO_UPLOAD);
                return true;
            }
            srv.stored = true;
            snprintf(srv.etag, sizeof(srv.etag), "%s", srv.complete_etag);
            if (srv.script == COMPLETE_LOST_AFTER_STORE)
                return false;
            answer_xml(fd, 500, "Internal Server Error",
                       "<?xml version=\"1.0\"?><Error><Code>InternalError</Code></Error>");
            return true;
        case COMPLETE_LOST_BEFORE_STORE:
            if (n == 1)
                return false;
            srv.stored = true;
            snprintf(srv.etag, sizeof(srv.etag), "%s", srv.complete_etag);
            snprintf(doc, sizeof(doc), "<?xml version=\"1.0\"?><CompleteMultipartUploadResult>"
                     "<ETag>\"%s\"</ETag></CompleteMultipartUploadResult>", srv.etag);
            answer_xml(fd, 200, "OK", doc);
            return true;
        default:
            return false;
        }
    }
    if (strcmp(method, "GET") == 0) {
        int n = ++srv.gets;
        if (srv.script == LIST_400_ALWAYS || n == 1) {
            answer_xml(fd, 400, "Bad Request",
                       "<?xml version=\"1.0\"?><Error><Code>BadRequest</Code></Error>");
            return true;
        }
        answer_xml(fd, 200, "OK",
                   "<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name>"
                   "<Prefix>main/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>"
                   "<IsTruncated>false</IsTruncated><Contents><Key>main/x</Key>"
                   "<Size>1</Size><ETag>\"e\"</ETag></Contents></ListBucketResult>");
        return true;
    }
    if (strcmp(method, "PUT") == 0) {
        snprintf(doc, sizeof(doc), "HTTP/1.1 200 OK\r\nETag: \"%s\"\r\nContent-Length: 0\r\n\r\n",
                 srv.part_md5);
        put_all(fd, doc);
        return true;
    }
    if (strcmp(method, "DELETE") == 0) {
        int n = ++srv.deletes;
        if (n == 1 && srv.script == DELETE_LOST_BEFORE)
            return false;
        srv.stored = false;
        if (n == 1 && srv.script == DELETE_LOST_THEN_NEWER) {
            srv.stored = true;
            snprintf(srv.etag, sizeof(srv.etag), "%s", "0123456789abcdef0123456789abcdef");
        }
        if (n == 1)
            return false;
        put_all(fd, "HTTP/1.1 204 No Content\r\n\r\n");
        return true;
    }
    return false;
}

static void serve_conn(int fd)
{
    char method[16];
    bool more = true;
    while (more && get_request(fd, method, sizeof(method))) {
        pthread_mutex_lock(&srv.lock);
        more = answer(fd, method);
        pthread_mutex_unlock(&srv.lock);
    }
}

static void start_server(void) { scripted_start(&server, serve_conn); }

static struct lf_store *new_store(enum script script)
{
    char ep[64];
    pthread_mutex_lock(&srv.lock);
    srv.script = script;
    srv.posts = srv.deletes = srv.heads = srv.gets = srv.refused = srv.puts = 0;
    pthread_mutex_unlock(&srv.lock);
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", server.port);
    struct lf_s3_opts o = {.endpoint = ep, .access_key = "AK", .secret_key = "SK",
                           .region = "us-east-1", .max_conns = 4, .connect_timeout_ms = 5000,
                           .stall_timeout_ms = 10000, .retries = 3, .backoff_ms = 1};
    return lf_s3_store_new(&o);
}

static int count(int *what)
{
    pthread_mutex_lock(&srv.lock);
    int v = *what;
    pthread_mutex_unlock(&srv.lock);
    return v;
}

/* Two parts; the multipart ETag S3 would give their object. */
static void two_parts(struct lf_part parts[2])
{
    unsigned char md5s[2 * LF_MD5_LEN];
    struct lf_buf b = LF_BUF_INIT;
    for (int i = 0; i < 2; i++) {
        char body[16];
        snprintf(body, sizeof(body), "part %d", i + 1);
        parts[i].number = i + 1;
        lf_md5(body, strlen(body), md5s + i * LF_MD5_LEN);
        lf_md5_hex(body, strlen(body), parts[i].etag);
    }
    CHECK_INT(lf_multipart_etag(&b, md5s, 2), 0);
    snprintf(srv.complete_etag, sizeof(srv.complete_etag), "%s", b.data);
    lf_buf_free(&b);
}

static void test_complete(enum script script, int want_posts)
{
    struct lf_part parts[2];
    char etag[LF_ETAG_MAX] = "";
    two_parts(parts);
    pthread_mutex_lock(&srv.lock);
    srv.stored = true; /* an older version: HEADs answer, with another ETag */
    snprintf(srv.etag, sizeof(srv.etag), "%s", "fedcba9876543210fedcba9876543210");
    pthread_mutex_unlock(&srv.lock);
    struct lf_store *st = new_store(script);
    struct lf_obj_attr a;
    /* A warm connection: libcurl sends a request again by itself when a
     * reused connection closes before any answer. */
    CHECK_INT(st->ops->head(st->ctx, "b", "k", &a), 0);
    int rc = st->ops->mpu_complete(st->ctx, "b", "k", "upload-1", parts, 2, LF_PUT_ANY,
                                     NULL, etag);
    CHECK_INT(rc, 0);
    CHECK_STR(etag, srv.complete_etag);
    CHECK_INT(count(&srv.posts), want_posts);
    lf_s3_store_free(st);
}

static void test_delete(enum script script, int want_rc)
{
    pthread_mutex_lock(&srv.lock);
    srv.stored = true;
    snprintf(srv.etag, sizeof(srv.etag), "%s", "fedcba9876543210fedcba9876543210");
    pthread_mutex_unlock(&srv.lock);
    struct lf_store *st = new_store(script);
    struct lf_obj_attr a;
    CHECK_INT(st->ops->head(st->ctx, "b", "k", &a), 0);
    /* The version it meant to delete: a newer one is never deleted. */
    CHECK_INT(st->ops->remove(st->ctx, "b", "k", "fedcba9876543210fedcba9876543210"), want_rc);
    CHECK_INT(count(&srv.deletes), 1); /* never sent again */
    pthread_mutex_lock(&srv.lock);
    /* the newer version written after our delete is still there */
    CHECK(srv.stored == (script == DELETE_LOST_THEN_NEWER));
    pthread_mutex_unlock(&srv.lock);
    lf_s3_store_free(st);
}

/* A DELETE whose answer was lost and that did not take effect: sent
 * again only when the caller named the version it meant to delete and
 * the key still holds exactly that one. */
static void test_delete_again(const char *etag, int want_rc, int want_deletes)
{
    pthread_mutex_lock(&srv.lock);
    srv.stored = true;
    snprintf(srv.etag, sizeof(srv.etag), "%s", "fedcba9876543210fedcba9876543210");
    pthread_mutex_unlock(&srv.lock);
    struct lf_store *st = new_store(DELETE_LOST_BEFORE);
    struct lf_obj_attr a;
    CHECK_INT(st->ops->head(st->ctx, "b", "k", &a), 0);
    CHECK_INT(st->ops->remove(st->ctx, "b", "k", etag), want_rc);
    CHECK_INT(count(&srv.deletes), want_deletes);
    pthread_mutex_lock(&srv.lock);
    CHECK(srv.stored == (want_rc != 0));
    pthread_mutex_unlock(&srv.lock);
    lf_s3_store_free(st);
}

/* lakeFS answers 400 for a listing that failed on its side as for an
 * unknown ref: a second try, and no more. */
static void test_list_400(enum script script, int want_rc)
{
    struct lf_store *st = new_store(script);
    struct lf_list_page page;
    CHECK_INT(st->ops->list(st->ctx, "b", "main/", "/", NULL, 1000, &page), want_rc);
    CHECK_INT(count(&srv.gets), 2);
    if (!want_rc) {
        CHECK_INT(page.nentries, 1);
        lf_list_page_free(&page);
    }
    lf_s3_store_free(st);
}

/* The counters of lf_store_stats: every attempt by operation, each
 * failure by kind, each retry by what made it necessary. */
static void test_stats(void)
{
    struct lf_store_stats st;
    struct lf_list_page page;
    struct lf_store *s = new_store(LIST_400_ONCE);
    CHECK(s->ops->stats != NULL);
    CHECK_INT(s->ops->list(s->ctx, "b", "main/", "/", NULL, 1000, &page), 0);
    lf_list_page_free(&page);
    memset(&st, 0xff, sizeof(st));
    s->ops->stats(s->ctx, &st);
    CHECK_INT(st.requests[LF_OP_LIST_OBJECTS], 2);
    CHECK_INT(st.requests[LF_OP_GET], 0);
    CHECK_INT(st.errors[LF_ERR_CLIENT], 1);
    CHECK_INT(st.retries[LF_ERR_CLIENT], 1);
    CHECK_INT(st.errors[LF_ERR_SERVER], 0);
    CHECK_INT(st.failures, 0);
    lf_s3_store_free(s);
    s = new_store(LIST_400_ALWAYS);
    CHECK_INT(s->ops->list(s->ctx, "b", "main/", "/", NULL, 1000, &page), -EINVAL);
    s->ops->stats(s->ctx, &st);
    CHECK_INT(st.errors[LF_ERR_CLIENT], 2);
    CHECK_INT(st.retries[LF_ERR_CLIENT], 1);
    CHECK_INT(st.failures, 1);
    lf_s3_store_free(s);

    /* A 500 to a complete that took effect: an error, no retry (a HEAD
     * finds the object), and no failed operation. */
    struct lf_part parts[2];
    char etag[LF_ETAG_MAX] = "";
    struct lf_obj_attr a;
    two_parts(parts);
    pthread_mutex_lock(&srv.lock);
    srv.stored = true;
    snprintf(srv.etag, sizeof(srv.etag), "%s", "fedcba9876543210fedcba9876543210");
    pthread_mutex_unlock(&srv.lock);
    s = new_store(COMPLETE_500_AFTER_STORE);
    CHECK_INT(s->ops->head(s->ctx, "b", "k", &a), 0);
    CHECK_INT(s->ops->mpu_complete(s->ctx, "b", "k", "upload-1", parts, 2, LF_PUT_ANY, NULL, etag), 0);
    s->ops->stats(s->ctx, &st);
    CHECK_INT(st.requests[LF_OP_HEAD], 2);
    CHECK_INT(st.requests[LF_OP_MPU_COMPLETE], 1);
    CHECK_INT(st.errors[LF_ERR_SERVER], 1);
    CHECK_INT(st.retries[LF_ERR_SERVER], 0);
    CHECK_INT(st.failures, 0);
    lf_s3_store_free(s);

    /* Its answer lost before it took effect: sent again, counted as a
     * retry of a connection's or an answer's failure. */
    pthread_mutex_lock(&srv.lock);
    snprintf(srv.etag, sizeof(srv.etag), "%s", "fedcba9876543210fedcba9876543210");
    pthread_mutex_unlock(&srv.lock);
    s = new_store(COMPLETE_LOST_BEFORE_STORE);
    CHECK_INT(s->ops->head(s->ctx, "b", "k", &a), 0);
    CHECK_INT(s->ops->mpu_complete(s->ctx, "b", "k", "upload-1", parts, 2, LF_PUT_ANY, NULL, etag), 0);
    s->ops->stats(s->ctx, &st);
    CHECK_INT(st.requests[LF_OP_MPU_COMPLETE], 2);
    CHECK_INT(st.retries[LF_ERR_CONNECT] + st.retries[LF_ERR_PROTOCOL], 1);
    CHECK_INT(st.errors[LF_ERR_CONNECT] + st.errors[LF_ERR_PROTOCOL], 1);
    lf_s3_store_free(s);

    for (unsigned i = 0; i < LF_OP_COUNT; i++)
        CHECK_INT(lf_store_op_of(lf_store_op_name((enum lf_store_op)i)), i);
    CHECK_INT(lf_store_op_of("PostObject"), LF_OP_OTHER);
    CHECK_STR(lf_store_err_name(LF_ERR_THROTTLED), "throttled");
}

static int reloads;

static int reload_ak2(void *arg, char **ak, char **sk)
{
    (void)arg;
    reloads++;
    *ak = strdup("AK2");
    *sk = strdup("SK2");
    return 0;
}

/* The key was rotated: the first refusal reads fresh credentials and the
 * request goes again; one more refusal within LF_S3_RELOAD_EVERY does
 * not read them again; without a source the request fails, EACCES. */
static void test_rotated_key(void)
{
    struct lf_obj_attr a;
    for (int with_source = 0; with_source < 2; with_source++) {
        pthread_mutex_lock(&srv.lock);
        srv.stored = true;
        snprintf(srv.etag, sizeof(srv.etag), "%s", "fedcba9876543210fedcba9876543210");
        pthread_mutex_unlock(&srv.lock);
        char ep[64];
        snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", server.port);
        struct lf_s3_opts o = {.endpoint = ep, .access_key = "AK", .secret_key = "SK",
                               .region = "us-east-1", .max_conns = 2, .connect_timeout_ms = 5000,
                               .stall_timeout_ms = 10000, .retries = 3, .backoff_ms = 1,
                               .reload = with_source ? reload_ak2 : NULL,
                               .cred_source = "a test"};
        struct lf_store *st = new_store(AUTH_ROTATED);
        lf_s3_store_free(st); /* new_store set the script; this one has a source */
        st = lf_s3_store_new(&o);
        reloads = 0;
        struct lf_s3_stats s;
        CHECK_INT(st->ops->head(st->ctx, "b", "k", &a), with_source ? 0 : -EACCES);
        CHECK_INT(count(&srv.refused), 1);
        CHECK_INT(count(&srv.heads), with_source ? 1 : 0);
        CHECK_INT(reloads, with_source);
        CHECK_INT(st->ops->head(st->ctx, "b", "k", &a), with_source ? 0 : -EACCES);
        CHECK_INT(count(&srv.refused), with_source ? 1 : 2);
        CHECK_INT(reloads, with_source);
        lf_s3_get_stats(st, &s);
        CHECK_INT(s.reloads, (uint64_t)with_source);
        lf_s3_store_free(st);
    }
}

/* The server's clock is an hour off either way: its first refusal (with
 * its Date) corrects ours, sent again once; later requests pass. */
static void test_clock_off(enum script script, int64_t want)
{
    pthread_mutex_lock(&srv.lock);
    srv.stored = true;
    pthread_mutex_unlock(&srv.lock);
    struct lf_store *st = new_store(script);
    struct lf_obj_attr a;
    struct lf_s3_stats s;
    CHECK_INT(st->ops->head(st->ctx, "b", "k", &a), 0);
    CHECK_INT(st->ops->head(st->ctx, "b", "k", &a), 0);
    CHECK_INT(count(&srv.refused), 1);
    CHECK_INT(count(&srv.heads), 2);
    lf_s3_get_stats(st, &s);
    CHECK(s.clock_offset > want - 60 && s.clock_offset < want + 60);
    lf_s3_store_free(st);
}

/* A part of 3 MiB from a file: the ETag the server answers must be the MD5
 * of the bytes that went out, also when the first attempt was cut. */
static void test_part(enum script script, int want_rc, int want_puts)
{
    struct lf_store *st = new_store(script);
    CHECK(st != NULL);
    char path[] = "/tmp/lakefuse-test-s3-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    size_t n = 3u << 20;
    char *data = malloc(n);
    CHECK(data != NULL);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 131 + (i >> 12));
    CHECK(write(fd, data, n) == (ssize_t)n);
    char want[LF_MD5_HEX_SIZE], etag[LF_ETAG_MAX] = "";
    lf_md5_hex(data, n, want);
    struct lf_body body = {.fd = fd, .off = 0, .len = n};
    int rc = st->ops->mpu_part(st->ctx, "b", "k", "upload-1", 1, &body, etag);
    CHECK_INT(rc, want_rc);
    CHECK_INT(count(&srv.puts), want_puts);
    if (want_rc == 0)
        CHECK_STR(etag, want);
    free(data);
    close(fd);
    lf_s3_store_free(st);
}

int main(void)
{
    start_server();
    /* The complete took effect: found by asking, not sent again. */
    test_complete(COMPLETE_LOST_AFTER_STORE, 1);
    test_complete(COMPLETE_500_AFTER_STORE, 1);
    /* It did not: asking finds the old object, so it is sent again. */
    test_complete(COMPLETE_LOST_BEFORE_STORE, 2);
    test_delete(DELETE_LOST, 0);
    test_delete(DELETE_LOST_THEN_NEWER, -EIO);
    test_delete_again("fedcba9876543210fedcba9876543210", 0, 2);
    test_delete_again(NULL, -EIO, 1);
    test_delete_again("00000000000000000000000000000000", -EIO, 1);
    test_list_400(LIST_400_ONCE, 0);
    test_list_400(LIST_400_ALWAYS, -EINVAL);
    test_stats();
    test_rotated_key();
    test_clock_off(CLOCK_AHEAD, 3600);
    test_clock_off(CLOCK_BEHIND, -3600);
    test_part(PART_OK, 0, 1);
    test_part(PART_DAMAGED, -EIO, 1);
    test_part(PART_CUT_ONCE, 0, 2);
    return check_summary("test_s3");
}
