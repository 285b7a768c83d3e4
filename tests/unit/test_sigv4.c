/* test_sigv4: the signer against the vectors in data/sigv4 (see its README),
 * plus argument checking, the signing-key cache across dates and threads,
 * and a check that the secret key never shows up in what the signer says. */
#include "check.h"
#include "lakefuse/hash.h"
#include "lakefuse/sigv4.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VEC_DIR LF_TEST_DATA "/sigv4"
#define MAX_KV 32

struct vector {
    char *text;  /* the request file; fields below point into it */
    const char *access, *secret, *region, *service, *time, *method, *path;
    const char *payload, *payload_hash;
    unsigned presign;
    struct lf_sigv4_kv query[MAX_KV], headers[MAX_KV];
    size_t nquery, nheaders;
};

static char *read_file(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/%s", VEC_DIR, dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct lf_buf b = LF_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        lf_buf_append(&b, chunk, n);
    fclose(f);
    return lf_buf_steal(&b);
}

/* An expected-value file without its final newline. */
static char *read_expected(const char *dir, const char *name)
{
    char *s = read_file(dir, name);
    size_t n = s ? strlen(s) : 0;
    if (n && s[n - 1] == '\n')
        s[n - 1] = '\0';
    return s;
}

static void split_kv(char *s, int sep, struct lf_sigv4_kv *kv)
{
    char *p = strchr(s, sep);
    kv->name = s;
    kv->value = NULL;
    if (p) {
        *p = '\0';
        kv->value = p + 1;
    }
}

static int parse_field(struct vector *v, char *key, char *val)
{
    const char **slot = NULL;
    if (!strcmp(key, "access")) slot = &v->access;
    else if (!strcmp(key, "secret")) slot = &v->secret;
    else if (!strcmp(key, "region")) slot = &v->region;
    else if (!strcmp(key, "service")) slot = &v->service;
    else if (!strcmp(key, "time")) slot = &v->time;
    else if (!strcmp(key, "method")) slot = &v->method;
    else if (!strcmp(key, "path")) slot = &v->path;
    else if (!strcmp(key, "payload")) slot = &v->payload;
    else if (!strcmp(key, "payload-hash")) slot = &v->payload_hash;
    if (slot) {
        *slot = val;
        return 0;
    }
    if (!strcmp(key, "presign")) {
        v->presign = (unsigned)strtoul(val, NULL, 10);
    } else if (!strcmp(key, "query") && v->nquery < MAX_KV) {
        split_kv(val, '=', &v->query[v->nquery++]);
    } else if (!strcmp(key, "header") && v->nheaders < MAX_KV) {
        split_kv(val, ':', &v->headers[v->nheaders++]);
    } else {
        return -EINVAL;
    }
    return 0;
}

static int parse_vector(const char *dir, struct vector *v)
{
    memset(v, 0, sizeof(*v));
    if (!(v->text = read_file(dir, "request")))
        return -ENOENT;
    for (char *line = v->text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *val = strchr(line, ' ');
        if (!val)
            return -EINVAL;
        *val++ = '\0';
        if (parse_field(v, line, val))
            return -EINVAL;
    }
    return v->access && v->secret && v->region && v->service && v->time &&
                   v->method && v->path
               ? 0
               : -EINVAL;
}

static time_t parse_time(const char *s)
{
    struct tm tm = {0};
    if (!strptime(s, "%Y%m%dT%H%M%SZ", &tm))
        return (time_t)-1;
    return timegm(&tm);
}

static void check_file(const char *dir, const char *name, const char *got)
{
    char *want = read_expected(dir, name);
    if (!want || !got || strcmp(got, want) != 0)
        fprintf(stderr, "vector %s, file %s:\n", dir, name);
    CHECK_STR(got, want);
    free(want);
}

static void check_no_secret(const char *dir, const char *secret, const char *s)
{
    if (s && strstr(s, secret))
        fprintf(stderr, "vector %s leaks the secret\n", dir);
    CHECK(!s || !strstr(s, secret));
}

static void run_header_vector(const char *dir, struct vector *v,
                              struct lf_sigv4 *s, struct lf_sigv4_req *req)
{
    struct lf_buf creq = LF_BUF_INIT, sts = LF_BUF_INIT, authz = LF_BUF_INIT;
    char sig[LF_SIGV4_SIGNATURE_SIZE] = "";
    CHECK_INT(lf_sigv4_canonical_request(req, &creq), 0);
    CHECK_INT(lf_sigv4_string_to_sign(s, req, &sts), 0);
    CHECK_INT(lf_sigv4_authorization(s, req, &authz), 0);
    CHECK_INT(lf_sigv4_signature(s, req, sig), 0);
    check_file(dir, "creq", creq.data);
    check_file(dir, "sts", sts.data);
    check_file(dir, "authz", authz.data);
    const char *tail = authz.data ? strstr(authz.data, "Signature=") : NULL;
    CHECK(tail != NULL);
    if (tail)
        CHECK_STR(sig, tail + strlen("Signature="));
    check_no_secret(dir, v->secret, creq.data);
    check_no_secret(dir, v->secret, sts.data);
    check_no_secret(dir, v->secret, authz.data);
    lf_buf_free(&creq);
    lf_buf_free(&sts);
    lf_buf_free(&authz);
}

static void run_presign_vector(const char *dir, struct vector *v,
                               struct lf_sigv4 *s, struct lf_sigv4_req *req)
{
    struct lf_buf q = LF_BUF_INIT;
    struct lf_sigv4_trace t = {LF_BUF_INIT, LF_BUF_INIT};
    CHECK_INT(lf_sigv4_presign(s, req, v->presign, &q, &t), 0);
    check_file(dir, "creq", t.creq.data);
    check_file(dir, "sts", t.sts.data);
    check_file(dir, "presign", q.data);
    check_no_secret(dir, v->secret, q.data);
    /* Without a trace, or with one already used, the answer is the same. */
    struct lf_buf q2 = LF_BUF_INIT;
    CHECK_INT(lf_sigv4_presign(s, req, v->presign, &q2, NULL), 0);
    CHECK_STR(q2.data, q.data);
    lf_buf_reset(&q2);
    CHECK_INT(lf_sigv4_presign(s, req, v->presign, &q2, &t), 0);
    CHECK_STR(q2.data, q.data);
    check_file(dir, "creq", t.creq.data);
    lf_buf_free(&q);
    lf_buf_free(&q2);
    lf_buf_free(&t.creq);
    lf_buf_free(&t.sts);
}

static void run_vector(const char *dir)
{
    struct vector v;
    int rc = parse_vector(dir, &v);
    if (rc)
        fprintf(stderr, "vector %s: bad request file\n", dir);
    CHECK_INT(rc, 0);
    struct lf_sigv4 *s = rc ? NULL : lf_sigv4_new(v.access, v.secret, v.region, v.service);
    char hash[LF_SHA256_HEX_SIZE];
    struct lf_sigv4_req req = {
        .method = v.method, .path = v.path,
        .query = v.query, .nquery = v.nquery,
        .headers = v.headers, .nheaders = v.nheaders,
        .payload_hash = v.payload_hash,
        .time = rc ? 0 : parse_time(v.time),
    };
    if (s && v.payload && lf_sha256_hex(v.payload, strlen(v.payload), hash) == 0)
        req.payload_hash = hash;
    if (s) {
        char amz[LF_SIGV4_AMZ_DATE_SIZE];
        CHECK_INT(lf_sigv4_amz_date(req.time, amz), 0);
        CHECK_STR(amz, v.time);
        if (v.presign)
            run_presign_vector(dir, &v, s, &req);
        else
            run_header_vector(dir, &v, s, &req);
    }
    lf_sigv4_free(s);
    free(v.text);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every vector directory in name order; returns how many ran. */
static size_t run_all_vectors(void)
{
    DIR *d = opendir(VEC_DIR);
    CHECK(d != NULL);
    if (!d)
        return 0;
    char *names[256];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 256;) {
        if (e->d_name[0] == '.')
            continue;
        char *req = read_file(e->d_name, "request");
        if (req)
            names[n++] = strdup(e->d_name);
        free(req);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_names);
    for (size_t i = 0; i < n; i++) {
        run_vector(names[i]);
        free(names[i]);
    }
    return n;
}

/* The vectors the brief names must stay present: a vector that vanished
 * would otherwise pass silently. */
static void check_required_vectors(void)
{
    static const char *const required[] = {
        "get-vanilla", "get-vanilla-query-order-key-case", "get-header-value-trim",
        "get-header-key-duplicate", "get-vanilla-utf8-query",
        "post-x-www-form-urlencoded", "get-space", "get-utf8", "post-vanilla-query",
        "s3-get-object", "s3-put-object", "s3-get-bucket-lifecycle",
        "s3-get-bucket-list-objects", "s3-presign-get-object",
    };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        char *s = read_file(required[i], "request");
        if (!s)
            fprintf(stderr, "missing vector %s\n", required[i]);
        CHECK(s != NULL);
        free(s);
    }
}

static const struct lf_sigv4_kv base_headers[] = {
    {"Host", "examplebucket.s3.amazonaws.com"},
    {"x-amz-content-sha256", LF_SHA256_EMPTY_HEX},
    {"x-amz-date", "20130524T000000Z"},
};

static struct lf_sigv4_req base_req(void)
{
    struct lf_sigv4_req r = {
        .method = "GET", .path = "/test.txt", .headers = base_headers,
        .nheaders = 3, .payload_hash = LF_SHA256_EMPTY_HEX,
        .time = 1369353600, /* 2013-05-24T00:00:00Z */
    };
    return r;
}

static void test_amz_date(void)
{
    char s[LF_SIGV4_AMZ_DATE_SIZE];
    CHECK_INT(lf_sigv4_amz_date(0, s), 0);
    CHECK_STR(s, "19700101T000000Z");
    CHECK_INT(lf_sigv4_amz_date(1369353600 + 3600 * 13 + 62, s), 0);
    CHECK_STR(s, "20130524T130102Z");
    CHECK_INT(lf_sigv4_amz_date(-1, s), -EINVAL);
}

static void test_new_args(void)
{
    CHECK(lf_sigv4_new(NULL, "s", "r", "s3") == NULL);
    CHECK(lf_sigv4_new("a", "", "r", "s3") == NULL);
    CHECK(lf_sigv4_new("a", "s", NULL, "s3") == NULL);
    CHECK(lf_sigv4_new("a", "s", "r", "") == NULL);
    lf_sigv4_free(NULL);
}

static int canon(const struct lf_sigv4_req *r, struct lf_buf *out)
{
    lf_buf_reset(out);
    return lf_sigv4_canonical_request(r, out);
}

static void test_bad_requests(void)
{
    struct lf_buf b = LF_BUF_INIT;
    struct lf_sigv4_req r = base_req();
    r.path = "no-slash";
    CHECK_INT(canon(&r, &b), -EINVAL);
    r = base_req();
    r.method = NULL;
    CHECK_INT(canon(&r, &b), -EINVAL);
    r = base_req();
    r.payload_hash = NULL;
    CHECK_INT(canon(&r, &b), -EINVAL);

    static const char *const bad_names[] = {"", "a b", "a:b", "a\nb", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        struct lf_sigv4_kv h[] = {{bad_names[i], "v"}};
        r = base_req();
        r.headers = h;
        r.nheaders = 1;
        CHECK_INT(canon(&r, &b), -EINVAL);
    }
    static const char *const bad_values[] = {"a\r\nx-evil: 1", "a\nb", "a\rb", "\x01"};
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
        struct lf_sigv4_kv h[] = {{"x-amz-meta-a", bad_values[i]}};
        r = base_req();
        r.headers = h;
        r.nheaders = 1;
        CHECK_INT(canon(&r, &b), -EINVAL);
    }
    lf_buf_free(&b);
}

static void test_canonical_details(void)
{
    struct lf_buf b = LF_BUF_INIT;
    /* NULL path is "/", NULL values are empty, tabs count as blanks, one
     * header name in two spellings is one header, keys stay in order. */
    struct lf_sigv4_kv q[] = {{"b", NULL}, {"a", "x/y z"}, {"a", "x"}};
    struct lf_sigv4_kv h[] = {{"X-A", "\t one \t two\t"}, {"host", "h"},
                              {"x-a", NULL}, {"X-a", " 3 "}};
    struct lf_sigv4_req r = {.method = "GET", .query = q, .nquery = 3,
                             .headers = h, .nheaders = 4,
                             .payload_hash = LF_SIGV4_UNSIGNED_PAYLOAD};
    CHECK_INT(canon(&r, &b), 0);
    CHECK_STR(b.data, "GET\n/\na=x&a=x%2Fy%20z&b=\nhost:h\nx-a:one two,,3\n\n"
                      "host;x-a\nUNSIGNED-PAYLOAD");
    /* Nothing at all to sort. */
    struct lf_sigv4_req empty = {.method = "GET", .path = "/", .payload_hash = "x"};
    CHECK_INT(canon(&empty, &b), 0);
    CHECK_STR(b.data, "GET\n/\n\n\n\nx");
    lf_buf_free(&b);
}

static void test_presign_args(void)
{
    struct lf_sigv4 *s = lf_sigv4_new("AK", "SK", "us-east-1", "s3");
    struct lf_buf b = LF_BUF_INIT;
    struct lf_sigv4_req r = base_req();
    CHECK_INT(lf_sigv4_presign(s, &r, 0, &b, NULL), -EINVAL);
    CHECK_INT(lf_sigv4_presign(s, &r, LF_SIGV4_MAX_EXPIRES + 1, &b, NULL), -EINVAL);
    CHECK_INT(lf_sigv4_presign(s, &r, LF_SIGV4_MAX_EXPIRES, &b, NULL), 0);
    CHECK(strstr(b.data, "X-Amz-Expires=604800&") != NULL);
    r.headers = base_headers + 1;  /* no host */
    r.nheaders = 2;
    lf_buf_reset(&b);
    CHECK_INT(lf_sigv4_presign(s, &r, 60, &b, NULL), -EINVAL);
    lf_buf_free(&b);
    lf_sigv4_free(s);
}

/* A distinctive secret, then every string the signer can produce for a
 * request that even carries the secret's bytes elsewhere: none may hold
 * it. (A request that itself contains the secret would echo it, rightly.) */
static void test_secret_never_output(void)
{
    const char *secret = "Zq9/SECRET+key=never-printed";
    struct lf_sigv4 *s = lf_sigv4_new("AKIDLEAKTEST", secret, "us-east-1", "s3");
    struct lf_sigv4_kv q[] = {{"prefix", "a/b"}, {"list-type", "2"}};
    struct lf_sigv4_req r = base_req();
    r.query = q;
    r.nquery = 2;
    struct lf_buf out[5] = {LF_BUF_INIT, LF_BUF_INIT, LF_BUF_INIT, LF_BUF_INIT, LF_BUF_INIT};
    struct lf_sigv4_trace t = {LF_BUF_INIT, LF_BUF_INIT};
    char sig[LF_SIGV4_SIGNATURE_SIZE];
    CHECK_INT(lf_sigv4_canonical_request(&r, &out[0]), 0);
    CHECK_INT(lf_sigv4_string_to_sign(s, &r, &out[1]), 0);
    CHECK_INT(lf_sigv4_authorization(s, &r, &out[2]), 0);
    CHECK_INT(lf_sigv4_presign(s, &r, 3600, &out[3], &t), 0);
    CHECK_INT(lf_sigv4_signature(s, &r, sig), 0);
    CHECK_INT(lf_buf_puts(&out[4], sig), 0);
    for (int i = 0; i < 5; i++) {
        CHECK(strstr(out[i].data, secret) == NULL);
        CHECK(strstr(out[i].data, "SECRET") == NULL);
        lf_buf_free(&out[i]);
    }
    CHECK(strstr(t.creq.data, "SECRET") == NULL);
    CHECK(strstr(t.sts.data, "SECRET") == NULL);
    lf_buf_free(&t.creq);
    lf_buf_free(&t.sts);
    lf_sigv4_free(s);
}

/* The cached key must follow the date: signing on day A, B, then A again
 * gives what fresh signers give. */
static void test_key_cache_dates(void)
{
    struct lf_sigv4 *s = lf_sigv4_new("AK", "SK", "us-east-1", "s3");
    time_t days[] = {1369353600, 1369353600 + 86400, 1369353600};
    for (int i = 0; i < 3; i++) {
        struct lf_sigv4_req r = base_req();
        r.time = days[i];
        char a[LF_SIGV4_SIGNATURE_SIZE], b[LF_SIGV4_SIGNATURE_SIZE];
        struct lf_sigv4 *fresh = lf_sigv4_new("AK", "SK", "us-east-1", "s3");
        CHECK_INT(lf_sigv4_signature(s, &r, a), 0);
        CHECK_INT(lf_sigv4_signature(fresh, &r, b), 0);
        CHECK_STR(a, b);
        lf_sigv4_free(fresh);
    }
    lf_sigv4_free(s);
}

#define THREADS 8
#define ROUNDS 300

struct thread_arg {
    struct lf_sigv4 *s;
    const char (*want)[LF_SIGV4_SIGNATURE_SIZE];
    int id, bad;
};

static void *sign_loop(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < ROUNDS; i++) {
        int day = (i + a->id) % 3;
        struct lf_sigv4_req r = base_req();
        r.time += day * 86400;
        char sig[LF_SIGV4_SIGNATURE_SIZE];
        if (lf_sigv4_signature(a->s, &r, sig) || strcmp(sig, a->want[day]))
            a->bad++;
    }
    return NULL;
}

/* Many threads, one signer, dates switching under them. */
static void test_threads(void)
{
    struct lf_sigv4 *s = lf_sigv4_new("AK", "SK", "us-east-1", "s3");
    char want[3][LF_SIGV4_SIGNATURE_SIZE];
    for (int d = 0; d < 3; d++) {
        struct lf_sigv4_req r = base_req();
        r.time += d * 86400;
        CHECK_INT(lf_sigv4_signature(s, &r, want[d]), 0);
    }
    pthread_t th[THREADS];
    struct thread_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct thread_arg){s, (const char (*)[LF_SIGV4_SIGNATURE_SIZE])want, i, 0};
        CHECK_INT(pthread_create(&th[i], NULL, sign_loop, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(args[i].bad, 0);
    }
    lf_sigv4_free(s);
}

int main(void)
{
    size_t n = run_all_vectors();
    printf("test_sigv4: %zu vectors\n", n);
    CHECK(n >= 36);
    check_required_vectors();
    test_amz_date();
    test_new_args();
    test_bad_requests();
    test_canonical_details();
    test_presign_args();
    test_secret_never_output();
    test_key_cache_dates();
    test_threads();
    return check_summary("test_sigv4");
}
