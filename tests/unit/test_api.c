/* api against a scripted lakeFS on 127.0.0.1 in this process: each test
 * queues the answers, runs one call, and checks what was asked (method,
 * path and query as sent, body, auth header, connections) and what came
 * back (values, errno, the server's message). Then the answer parsers on
 * their own, on shapes a server should not send. */
#include "check.h"
#include "scripted.h"
#include "lakefuse/api.h"
#include "lakefuse/http.h"
#include "lakefuse/json.h"
#include "lakefuse/log.h"
#include "api_parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_SCRIPT 16
#define MAX_SEEN 32

#define C1 "1111111111111111111111111111111111111111111111111111111111111111"
#define C2 "2222222222222222222222222222222222222222222222222222222222222222"
#define C3 "3333333333333333333333333333333333333333333333333333333333333333"

#define AK "AKIAEXAMPLE"
#define SK "s3cr3t/Key+with=odd:chars"
/* base64("AKIAEXAMPLE:s3cr3t/Key+with=odd:chars") */
#define AUTH_B64 "QUtJQUVYQU1QTEU6czNjcjN0L0tleSt3aXRoPW9kZDpjaGFycw=="

struct answer {
    int status;      /* 0: close the connection without answering */
    const char *body;
};

struct seen {
    char method[8];
    char target[1024];
    char auth[256];
    char ctype[64];
    char inm[16];    /* If-None-Match */
    char body[4096];
    int conn;
};

static struct {
    pthread_mutex_t lock;
    struct answer script[MAX_SCRIPT];
    int nscript, next;
    struct seen seen[MAX_SEEN];
    int nseen, conns;
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};
static struct scripted server;

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

/* Reads one request and records it; false at EOF. */
static bool get_request(int fd, int conn, struct seen *s)
{
    static __thread char buf[16384];
    size_t n = 0;
    char *end = NULL;
    while (!end) {
        if (n == sizeof(buf) - 1)
            return false;
        ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);
        if (r <= 0)
            return false;
        n += (size_t)r;
        buf[n] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    memset(s, 0, sizeof(*s));
    s->conn = conn;
    sscanf(buf, "%7s %1023s", s->method, s->target);
    char len[32];
    header_value(buf, "Authorization", s->auth, sizeof(s->auth));
    header_value(buf, "Content-Type", s->ctype, sizeof(s->ctype));
    header_value(buf, "If-None-Match", s->inm, sizeof(s->inm));
    header_value(buf, "Content-Length", len, sizeof(len));
    size_t want = (size_t)atol(len), have = n - (size_t)(end + 4 - buf);
    if (want >= sizeof(s->body))
        return false;
    memcpy(s->body, end + 4, have < want ? have : want);
    while (have < want) {
        ssize_t r = recv(fd, s->body + have, want - have, 0);
        if (r <= 0)
            return false;
        have += (size_t)r;
    }
    return true;
}

static void serve_conn(int fd)
{
    pthread_mutex_lock(&srv.lock);
    int conn = ++srv.conns;
    pthread_mutex_unlock(&srv.lock);
    struct seen s;
    while (get_request(fd, conn, &s)) {
        pthread_mutex_lock(&srv.lock);
        if (srv.nseen < MAX_SEEN)
            srv.seen[srv.nseen++] = s;
        struct answer a = {500, "{\"message\": \"script exhausted\"}"};
        if (srv.next < srv.nscript)
            a = srv.script[srv.next++];
        pthread_mutex_unlock(&srv.lock);
        if (a.status == 0)
            break;
        /* One write: head and body in two would meet Nagle and a delayed
         * ACK, 40 ms a request. */
        struct lf_buf out = LF_BUF_INIT;
        lf_buf_printf(&out, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n%s", a.status, strlen(a.body), a.body);
        scripted_put_all(fd, out.data, out.len);
        lf_buf_free(&out);
    }
}

/* Queues the answers of the next test; NULL ends the list. */
static void script(int status, const char *body, ...)
{
    va_list ap;
    pthread_mutex_lock(&srv.lock);
    srv.nscript = srv.next = srv.nseen = 0;
    va_start(ap, body);
    while (body || status == 0) {
        srv.script[srv.nscript++] = (struct answer){status, body ? body : ""};
        status = va_arg(ap, int);
        if (status < 0)
            break;
        body = va_arg(ap, const char *);
    }
    va_end(ap);
    pthread_mutex_unlock(&srv.lock);
}
#define END (-1)

static int nseen(void)
{
    pthread_mutex_lock(&srv.lock);
    int n = srv.nseen;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

static int conns(void)
{
    pthread_mutex_lock(&srv.lock);
    int n = srv.conns;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

static const struct seen *req(int i) { return &srv.seen[i]; }

/* ---- callbacks ---------------------------------------------------------- */

struct diffs {
    int n;
    char text[16][64];
    int stop_at; /* 1-based; 0: never */
};

static int on_diff(void *arg, enum lf_api_change kind, const char *path, bool is_prefix)
{
    struct diffs *d = arg;
    static const char kinds[] = "+~-!";
    if (d->n < 16)
        snprintf(d->text[d->n], sizeof(d->text[0]), "%c%s%s", kinds[kind], path,
                 is_prefix ? " (prefix)" : "");
    d->n++;
    return d->n == d->stop_at ? 5 : 0;
}

struct commits {
    int n;
    struct lf_api_commit c[8];
};

static int on_commit(void *arg, const struct lf_api_commit *c)
{
    struct commits *x = arg;
    if (x->n < 8)
        x->c[x->n] = *c;
    x->n++;
    return 0;
}

static int on_ref(void *arg, const char *name, const char *commit_id)
{
    struct lf_buf *b = arg;
    return lf_buf_printf(b, "%s=%.1s;", name, commit_id);
}

/* ---- the tests ---------------------------------------------------------- */

#define REF(id, c) "{\"id\": \"" id "\", \"commit_id\": \"" c "\"}"
#define COMMIT(id, msg, date)                                                              \
    "{\"id\": \"" id "\", \"parents\": [], \"committer\": \"admin\", \"message\": \"" msg  \
    "\", \"creation_date\": " #date ", \"meta_range_id\": \"\", \"metadata\": {}}"
#define PAGE(more, next, results)                                                          \
    "{\"pagination\": {\"has_more\": " #more ", \"next_offset\": \"" next "\", "           \
    "\"results\": 1, \"max_per_page\": 1000}, \"results\": [" results "]}"
#define DIFF(type, path, ptype) \
    "{\"type\": \"" type "\", \"path\": \"" path "\", \"path_type\": \"" ptype "\"}"

static void test_resolve(struct lf_api *api)
{
    enum lf_ref_type type;
    char id[LF_COMMIT_ID_MAX];
    struct lf_api_err err;

    script(200, REF("main", C1), END);
    CHECK_INT(lf_api_resolve(api, "repo1", "main", &type, id, &err), 0);
    CHECK_INT(type, LF_REF_BRANCH);
    CHECK_STR(id, C1);
    CHECK_INT(nseen(), 1);
    CHECK_STR(req(0)->method, "GET");
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/branches/main");
    CHECK_STR(req(0)->auth, "Basic " AUTH_B64);
    CHECK_INT(err.status, 200);

    script(404, "{\"message\": \"branch not found\"}", 200, REF("v1.0", C2), END);
    CHECK_INT(lf_api_resolve(api, "repo1", "v1.0", &type, id, &err), 0);
    CHECK_INT(type, LF_REF_TAG);
    CHECK_STR(id, C2);
    CHECK_INT(nseen(), 2);
    CHECK_STR(req(1)->target, "/api/v1/repositories/repo1/tags/v1.0");

    /* A 64-hex name that is neither branch nor tag: the log says. And a
     * 400 for a name that cannot be a branch means "look further" too. */
    script(400, "{\"message\": \"invalid branch id\"}", 404, "{\"message\": \"no tag\"}",
           200, PAGE(false, "", COMMIT(C3, "m", 1)), END);
    CHECK_INT(lf_api_resolve(api, "repo1", C3, &type, id, &err), 0);
    CHECK_INT(type, LF_REF_COMMIT);
    CHECK_STR(id, C3);
    CHECK_INT(nseen(), 3);
    CHECK_STR(req(2)->target, "/api/v1/repositories/repo1/refs/" C3 "/commits?amount=1");

    /* An expression goes straight to the log; '~' needs no escape, '^' does. */
    script(200, PAGE(true, C1, COMMIT(C1, "m", 1)), END);
    CHECK_INT(lf_api_resolve(api, "repo1", "main~2^", &type, id, &err), 0);
    CHECK_INT(type, LF_REF_COMMIT);
    CHECK_STR(id, C1);
    CHECK_INT(nseen(), 1); /* the limit is met: page 2 is not asked for */
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/refs/main~2%5E/commits?amount=1");

    script(404, "{\"message\": \"b\"}", 404, "{\"message\": \"t\"}", 404,
           "{\"message\": \"ref not found\"}", END);
    CHECK_INT(lf_api_resolve(api, "repo1", "nope", &type, id, &err), -ENOENT);
    CHECK_INT(err.status, 404);
    CHECK_STR(err.message, "ref not found");
    CHECK_INT(nseen(), 3);

    script(200, PAGE(false, "", ""), END);
    CHECK_INT(lf_api_resolve(api, "repo1", "main~1", &type, id, &err), -ENOENT);

    /* Anything but "not here" ends the search. */
    script(401, "{\"message\": \"error authenticating request\"}", END);
    CHECK_INT(lf_api_resolve(api, "repo1", "main", &type, id, &err), -EACCES);
    CHECK_INT(nseen(), 1);
    CHECK_STR(err.message, "error authenticating request");

    /* A branch answer without a commit_id is malformed. */
    script(200, "{\"id\": \"main\"}", END);
    CHECK_INT(lf_api_resolve(api, "repo1", "main", &type, id, &err), -EPROTO);
    CHECK_INT(err.status, 200);
    CHECK(strstr(err.message, "malformed") != NULL);
}

static void test_diff(struct lf_api *api)
{
    struct lf_api_err err;
    struct diffs d = {0};

    /* Three pages, the query escaped, after= following next_offset. */
    script(200, PAGE(true, "a b/2", DIFF("added", "a b/1", "object") ","
                                    DIFF("removed", "a b/2", "object")),
           200, PAGE(true, "a b/4", DIFF("changed", "a b/3", "object") ","
                                    DIFF("conflict", "a b/4/", "common_prefix")),
           200, PAGE(false, "", DIFF("added", "a b/5", "object")), END);
    CHECK_INT(lf_api_diff_branch(api, "repo1", "feat-1", "a b/", on_diff, &d, &err), 0);
    CHECK_INT(d.n, 5);
    CHECK_STR(d.text[0], "+a b/1");
    CHECK_STR(d.text[1], "-a b/2");
    CHECK_STR(d.text[2], "~a b/3");
    CHECK_STR(d.text[3], "!a b/4/ (prefix)");
    CHECK_STR(d.text[4], "+a b/5");
    CHECK_INT(nseen(), 3);
    CHECK_STR(req(0)->target,
              "/api/v1/repositories/repo1/branches/feat-1/diff?prefix=a%20b%2F&amount=1000");
    CHECK_STR(req(1)->target, "/api/v1/repositories/repo1/branches/feat-1/diff?prefix=a%20b%2F"
                              "&after=a%20b%2F2&amount=1000");
    CHECK_STR(req(2)->target, "/api/v1/repositories/repo1/branches/feat-1/diff?prefix=a%20b%2F"
                              "&after=a%20b%2F4&amount=1000");

    /* No prefix: no prefix parameter. */
    memset(&d, 0, sizeof(d));
    script(200, PAGE(false, "", ""), END);
    CHECK_INT(lf_api_diff_branch(api, "repo1", "main", "", on_diff, &d, &err), 0);
    CHECK_INT(d.n, 0);
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/branches/main/diff?amount=1000");

    /* A server that hands out the same offset twice would loop forever. */
    memset(&d, 0, sizeof(d));
    script(200, PAGE(true, "x", DIFF("added", "w", "object")),
           200, PAGE(true, "x", DIFF("added", "x", "object")),
           200, PAGE(true, "x", DIFF("added", "y", "object")), END);
    CHECK_INT(lf_api_diff_branch(api, "repo1", "main", NULL, on_diff, &d, &err), -EPROTO);
    CHECK_INT(nseen(), 2);
    CHECK_INT(d.n, 2);

    /* The caller stops the walk: its value comes back, no more pages. */
    memset(&d, 0, sizeof(d));
    d.stop_at = 2;
    script(200, PAGE(true, "b", DIFF("added", "a", "object") "," DIFF("added", "b", "object")),
           200, PAGE(false, "", DIFF("added", "c", "object")), END);
    CHECK_INT(lf_api_diff_branch(api, "repo1", "main", NULL, on_diff, &d, &err), 5);
    CHECK_INT(d.n, 2);
    CHECK_INT(nseen(), 1);

    /* A malformed entry: nothing of its page is delivered. */
    memset(&d, 0, sizeof(d));
    script(200, PAGE(true, "a", DIFF("added", "a", "object")),
           200, PAGE(false, "", DIFF("added", "b", "object") ","
                               "{\"type\": \"added\", \"path_type\": \"object\"}"), END);
    CHECK_INT(lf_api_diff_branch(api, "repo1", "main", NULL, on_diff, &d, &err), -EPROTO);
    CHECK_INT(d.n, 1);
    CHECK_STR(d.text[0], "+a");

    /* has_more without a next_offset. */
    memset(&d, 0, sizeof(d));
    script(200, PAGE(true, "", DIFF("added", "a", "object")), END);
    CHECK_INT(lf_api_diff_branch(api, "repo1", "main", NULL, on_diff, &d, &err), -EPROTO);
    CHECK_INT(d.n, 0);
}

static void test_log_and_lists(struct lf_api *api)
{
    struct lf_api_err err;
    struct commits cs = {0};

    script(200, PAGE(true, C3, COMMIT(C1, "newest", 300) "," COMMIT(C2, "older", 200) ","
                                   COMMIT(C3, "oldest", 100)), END);
    CHECK_INT(lf_api_log(api, "repo1", "main", 2, on_commit, &cs, &err), 0);
    CHECK_INT(cs.n, 2);
    CHECK_STR(cs.c[0].id, C1);
    CHECK_STR(cs.c[0].message, "newest");
    CHECK_STR(cs.c[0].committer, "admin");
    CHECK_INT(cs.c[0].created, 300);
    CHECK_STR(cs.c[1].id, C2);
    CHECK_INT(nseen(), 1);
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/refs/main/commits?amount=2");

    memset(&cs, 0, sizeof(cs));
    script(200, PAGE(true, C1, COMMIT(C1, "a", 3)), 200, PAGE(false, "", COMMIT(C2, "b", 2)),
           END);
    CHECK_INT(lf_api_log(api, "repo1", "main", 0, on_commit, &cs, &err), 0);
    CHECK_INT(cs.n, 2);
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/refs/main/commits?amount=1000");
    CHECK_STR(req(1)->target,
              "/api/v1/repositories/repo1/refs/main/commits?after=" C1 "&amount=1000");

    /* A limit over one page: the second asks for what is left. */
    struct lf_buf big = LF_BUF_INIT;
    lf_buf_puts(&big, "{\"pagination\": {\"has_more\": true, \"next_offset\": \"c999\"},"
                      " \"results\": [");
    for (int i = 0; i < 1000; i++)
        lf_buf_printf(&big, "%s{\"id\": \"c%d\", \"committer\": \"a\", \"message\": \"\","
                            " \"creation_date\": %d}", i ? ", " : "", i, 5000 - i);
    lf_buf_puts(&big, "]}");
    memset(&cs, 0, sizeof(cs));
    script(200, big.data, 200, PAGE(true, C3, COMMIT(C1, "a", 3) "," COMMIT(C2, "b", 2) ","
                                              COMMIT(C3, "c", 1) "," COMMIT(C3, "d", 0)),
           END);
    CHECK_INT(lf_api_log(api, "repo1", "main", 1003, on_commit, &cs, &err), 0);
    CHECK_INT(cs.n, 1003);
    CHECK_STR(cs.c[7].id, "c7");
    CHECK_INT(nseen(), 2);
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/refs/main/commits?amount=1000");
    CHECK_STR(req(1)->target,
              "/api/v1/repositories/repo1/refs/main/commits?after=c999&amount=3");
    lf_buf_free(&big);

    struct lf_buf names = LF_BUF_INIT;
    script(200, PAGE(true, "dev", REF("dev", C1) "," REF("main", C2)),
           200, PAGE(false, "", REF("zz", C3)), END);
    CHECK_INT(lf_api_list_branches(api, "repo1", on_ref, &names, &err), 0);
    CHECK_STR(names.data, "dev=1;main=2;zz=3;");
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/branches?amount=1000");
    CHECK_STR(req(1)->target, "/api/v1/repositories/repo1/branches?after=dev&amount=1000");
    lf_buf_reset(&names);
    script(200, PAGE(false, "", REF("v1", C3)), END);
    CHECK_INT(lf_api_list_tags(api, "repo1", on_ref, &names, &err), 0);
    CHECK_STR(names.data, "v1=3;");
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/tags?amount=1000");
    lf_buf_reset(&names);
    script(200, PAGE(false, "", REF("v1", "")), END);
    CHECK_INT(lf_api_list_tags(api, "repo1", on_ref, &names, &err), -EPROTO);
    script(404, "{\"message\": \"repository not found\"}", END);
    CHECK_INT(lf_api_list_tags(api, "nope", on_ref, &names, &err), -ENOENT);
    CHECK_STR(err.message, "repository not found");
    lf_buf_free(&names);
}

static void test_changes(struct lf_api *api)
{
    struct lf_api_err err;
    struct lf_api_commit c;
    struct lf_json *root;
    const struct lf_json *md;
    const char *s;

    int before = conns();
    script(200, REF("main", C1), 200, REF("main", C1), 201, COMMIT(C2, "snap", 1700000000),
           201, COMMIT(C3, "again", 1700000001), END);
    enum lf_ref_type type;
    char id[LF_COMMIT_ID_MAX];
    lf_api_resolve(api, "repo1", "main", &type, id, &err);
    lf_api_resolve(api, "repo1", "main", &type, id, &err);
    CHECK(conns() - before <= 1); /* reads share a kept-alive connection */
    int reads = conns();
    struct lf_api_kv meta[] = {{"lakefuse", "1"}, {"host \"x\"", "caf\xc3\xa9"}};
    CHECK_INT(lf_api_commit(api, "repo1", "main", "snap\nshot", meta, 2, &c, &err), 0);
    CHECK_INT(conns(), reads + 1); /* a change goes on a new connection */
    CHECK_STR(c.id, C2);
    CHECK_STR(c.message, "snap");
    CHECK_INT(c.created, 1700000000);
    CHECK_INT(err.status, 201);
    const struct seen *r = req(2);
    CHECK_STR(r->method, "POST");
    CHECK_STR(r->target, "/api/v1/repositories/repo1/branches/main/commits");
    CHECK_STR(r->ctype, "application/json");
    CHECK_STR(r->auth, "Basic " AUTH_B64);
    CHECK_INT(lf_json_parse(r->body, strlen(r->body), LF_JSON_MAX, &root, NULL), 0);
    CHECK_INT(lf_json_get_str(root, "message", &s), 0);
    CHECK_STR(s, "snap\nshot");
    CHECK_INT(lf_json_get_obj(root, "metadata", &md), 0);
    CHECK_INT(lf_json_get_str(md, "host \"x\"", &s), 0);
    CHECK_STR(s, "caf\xc3\xa9");
    CHECK_INT(lf_json_get_str(md, "lakefuse", &s), 0);
    CHECK_STR(s, "1");
    lf_json_free(root);
    CHECK_INT(lf_api_commit(api, "repo1", "main", "again", NULL, 0, NULL, &err), 0);
    CHECK_INT(conns(), reads + 2);
    CHECK_STR(req(3)->body, "{\"message\":\"again\",\"metadata\":{}}");

    /* Not UTF-8: refused before anything is sent. */
    script(201, COMMIT(C2, "x", 1), END);
    CHECK_INT(lf_api_commit(api, "repo1", "main", "\xff", NULL, 0, &c, &err), -EINVAL);
    CHECK_INT(nseen(), 0);

    /* lakeFS's refusals, each with its message. */
    script(400, "{\"message\": \"commit: no changes\"}", END);
    CHECK_INT(lf_api_commit(api, "repo1", "main", "m", NULL, 0, &c, &err), -EINVAL);
    CHECK_INT(err.status, 400);
    CHECK_STR(err.message, "commit: no changes");
    script(412, "{\"message\": \"pre-commit hook failed\\nline 2\"}", END);
    CHECK_INT(lf_api_commit(api, "repo1", "main", "m", NULL, 0, &c, &err), -EBUSY);
    CHECK_STR(err.message, "pre-commit hook failed line 2");
    script(403, "{\"message\": \"insufficient permissions\"}", END);
    CHECK_INT(lf_api_commit(api, "repo1", "main", "m", NULL, 0, &c, &err), -EACCES);
    script(502, "<html><body>Bad Gateway</body></html>", END);
    CHECK_INT(lf_api_commit(api, "repo1", "main", "m", NULL, 0, &c, &err), -EIO);
    CHECK_STR(err.message, "<html><body>Bad Gateway</body></html>");

    /* Branch creation: the answer's text is the head. */
    script(201, C2, END);
    CHECK_INT(lf_api_create_branch(api, "repo1", "feat", "main~1", id, &err), 0);
    CHECK_STR(id, C2);
    CHECK_STR(req(0)->method, "POST");
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/branches");
    CHECK_STR(req(0)->body, "{\"name\":\"feat\",\"source\":\"main~1\"}");
    script(201, "\"" C3 "\"\n", END);
    CHECK_INT(lf_api_create_branch(api, "repo1", "feat", "main", id, &err), 0);
    CHECK_STR(id, C3);
    /* An answer that is no commit ID: the branch is asked. */
    script(201, "Created", 200, REF("feat", C1), END);
    CHECK_INT(lf_api_create_branch(api, "repo1", "feat", "main", id, &err), 0);
    CHECK_STR(id, C1);
    CHECK_STR(req(1)->target, "/api/v1/repositories/repo1/branches/feat");
    script(201, "", END);
    CHECK_INT(lf_api_create_branch(api, "repo1", "feat", "main", NULL, &err), 0);
    CHECK_INT(nseen(), 1);
    script(409, "{\"message\": \"branch already exists\"}", END);
    CHECK_INT(lf_api_create_branch(api, "repo1", "feat", "main", id, &err), -EEXIST);
    CHECK_STR(err.message, "branch already exists");

    /* Reset: one object, a prefix, the whole branch. */
    script(204, "", 204, "", 204, "", END);
    CHECK_INT(lf_api_reset(api, "repo1", "main", LF_RESET_OBJECT, "a/b c.txt", &err), 0);
    CHECK_INT(lf_api_reset(api, "repo1", "main", LF_RESET_PREFIX, "a/", &err), 0);
    CHECK_INT(lf_api_reset(api, "repo1", "main", LF_RESET_BRANCH, "ignored", &err), 0);
    CHECK_INT(nseen(), 3);
    CHECK_STR(req(0)->method, "PUT");
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/branches/main");
    CHECK_STR(req(0)->body, "{\"type\":\"object\",\"path\":\"a/b c.txt\"}");
    CHECK_STR(req(1)->body, "{\"type\":\"common_prefix\",\"path\":\"a/\"}");
    CHECK_STR(req(2)->body, "{\"type\":\"reset\"}");
    script(204, "", END);
    CHECK_INT(lf_api_reset(api, "repo1", "main", LF_RESET_OBJECT, "", &err), -EINVAL);
    CHECK_INT(lf_api_reset(api, "repo1", "main", LF_RESET_PREFIX, NULL, &err), -EINVAL);
    CHECK_INT(nseen(), 0);
}

static void test_stat(struct lf_api *api)
{
    struct lf_api_err err;
    struct lf_api_stat *st = malloc(sizeof(*st));
    script(200, "{\"path\": \"dir/a b+c?.txt\", \"path_type\": \"object\","
                " \"physical_address\": \"s3://bucket/data/abc\", \"checksum\": \"\\\"0a1b\\\"\","
                " \"size_bytes\": 12345678901, \"mtime\": 1700000000,"
                " \"content_type\": \"text/plain\","
                " \"metadata\": {\"X-Amz-Meta-Mode\": \"33188\", \"owner\": \"me\"}}", END);
    CHECK_INT(lf_api_stat(api, "repo1", C1, "dir/a b+c?.txt", st, &err), 0);
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/refs/" C1
                              "/objects/stat?path=dir%2Fa%20b%2Bc%3F.txt&user_metadata=true");
    CHECK_STR(st->path, "dir/a b+c?.txt");
    CHECK_STR(st->checksum, "0a1b");
    CHECK_STR(st->physical_address, "s3://bucket/data/abc");
    CHECK_STR(st->content_type, "text/plain");
    CHECK(st->size == 12345678901ULL);
    CHECK_INT(st->mtime, 1700000000);
    CHECK_INT(st->nmeta, 2);
    CHECK_STR(st->meta[0].key, "X-Amz-Meta-Mode");
    CHECK_STR(st->meta[0].value, "33188");
    CHECK_STR(st->meta[1].key, "owner");

    /* More metadata than room: the first 32 kept. */
    struct lf_buf b = LF_BUF_INIT;
    lf_buf_puts(&b, "{\"path\": \"p\", \"physical_address\": \"x\", \"checksum\": \"c\","
                    " \"mtime\": 1, \"metadata\": {");
    for (int i = 0; i < 40; i++)
        lf_buf_printf(&b, "%s\"k%02d\": \"v%d\"", i ? ", " : "", i, i);
    lf_buf_puts(&b, "}}");
    script(200, b.data, END);
    CHECK_INT(lf_api_stat(api, "repo1", "main", "p", st, &err), 0);
    CHECK_INT(st->nmeta, 32);
    CHECK_STR(st->meta[31].key, "k31");
    CHECK_STR(st->meta[31].value, "v31");
    CHECK_INT(st->size, 0); /* size_bytes is optional */
    lf_buf_free(&b);

    script(200, "{\"path\": \"p\", \"physical_address\": \"x\", \"checksum\": \"c\","
                " \"mtime\": \"yesterday\"}", END);
    CHECK_INT(lf_api_stat(api, "repo1", "main", "p", st, &err), -EPROTO);
    script(200, "{\"path\": \"p\", \"physical_address\": \"x\", \"checksum\": \"c\","
                " \"mtime\": 1, \"metadata\": {\"k\": 5}}", END);
    CHECK_INT(lf_api_stat(api, "repo1", "main", "p", st, &err), -EPROTO);
    script(404, "{\"message\": \"not found\"}", END);
    CHECK_INT(lf_api_stat(api, "repo1", "main", "p", st, &err), -ENOENT);
    free(st);
}

#define STATS(sum) \
    "{\"path\": \"p\", \"path_type\": \"object\", \"physical_address\": \"s3://b/data/x\"," \
    " \"checksum\": \"" sum "\", \"size_bytes\": 5, \"mtime\": 1, \"metadata\": {}}"

/* The presigned data path's calls: what is asked (paths, queries, bodies,
 * If-None-Match, one attempt for changes) and what comes back. */
static void test_presign_calls(struct lf_api *api)
{
    struct lf_api_err err;
    struct lf_api_storage caps;
    /* /config, with storage_config */
    script(200, "{\"version_config\": {}, \"storage_config\": {\"blockstore_type\": \"s3\","
                " \"pre_sign_support\": true, \"pre_sign_support_ui\": false,"
                " \"pre_sign_multipart_upload\": true}}", END);
    CHECK_INT(lf_api_storage_config(api, &caps, &err), 0);
    CHECK_STR(req(0)->target, "/api/v1/config");
    CHECK(caps.presign && caps.presign_multipart);
    CHECK_STR(caps.blockstore_type, "s3");
    /* an older server: /config is 404, /config/storage answers */
    script(404, "{\"message\": \"path not found\"}", 200,
           "{\"blockstore_type\": \"gs\", \"pre_sign_support\": true}", END);
    CHECK_INT(lf_api_storage_config(api, &caps, &err), 0);
    CHECK_INT(nseen(), 2);
    CHECK_STR(req(1)->target, "/api/v1/config/storage");
    CHECK(caps.presign && !caps.presign_multipart);
    /* several blockstores: presigning only where every one can */
    script(200, "{\"storage_config_list\": [{\"blockstore_type\": \"s3\","
                " \"pre_sign_support\": true, \"pre_sign_multipart_upload\": true},"
                " {\"blockstore_type\": \"local\", \"pre_sign_support\": false}]}", END);
    CHECK_INT(lf_api_storage_config(api, &caps, &err), 0);
    CHECK(!caps.presign && !caps.presign_multipart);
    CHECK_STR(caps.blockstore_type, "mixed");
    script(200, "{\"storage_config\": {\"blockstore_type\": \"s3\"}}", END);
    CHECK_INT(lf_api_storage_config(api, &caps, &err), -EPROTO);

    /* stat with presign=true */
    struct lf_api_stat *st = malloc(sizeof(*st));
    script(200, "{\"path\": \"a b\", \"path_type\": \"object\", \"physical_address\":"
                " \"https://bucket.s3.example/data/x?X-Amz-Signature=abc&X-Amz-Expires=900\","
                " \"physical_address_expiry\": 1800000000, \"checksum\": \"0a1b\","
                " \"size_bytes\": 10, \"mtime\": 1}", END);
    CHECK_INT(lf_api_stat_presign(api, "repo1", "main", "a b", st, &err), 0);
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/refs/main/objects/stat?path=a%20b"
                              "&user_metadata=true&presign=true");
    CHECK_STR(st->physical_address,
              "https://bucket.s3.example/data/x?X-Amz-Signature=abc&X-Amz-Expires=900");
    CHECK_INT(st->physical_address_expiry, 1800000000);
    script(400, "{\"message\": \"operation not supported\"}", END);
    CHECK_INT(lf_api_stat_presign(api, "repo1", "main", "a", st, &err), -EINVAL);
    CHECK_STR(err.message, "operation not supported");
    free(st);

    /* staging location */
    struct lf_api_staging *loc = malloc(sizeof(*loc));
    script(200, "{\"physical_address\": \"s3://b/data/g1,sig\", \"presigned_url\":"
                " \"http://s/data/g1?sig=1\", \"presigned_url_expiry\": 1800000001}", END);
    CHECK_INT(lf_api_staging_location(api, "repo1", "br", "d/f", loc, &err), 0);
    CHECK_STR(req(0)->method, "GET");
    CHECK_STR(req(0)->target,
              "/api/v1/repositories/repo1/branches/br/staging/backing?path=d%2Ff&presign=true");
    CHECK_STR(loc->physical_address, "s3://b/data/g1,sig");
    CHECK_STR(loc->url, "http://s/data/g1?sig=1");
    CHECK_INT(loc->expiry, 1800000001);
    script(200, "{\"physical_address\": \"s3://b/data/g1,sig\", \"presigned_url\": null}",
           END);
    CHECK_INT(lf_api_staging_location(api, "repo1", "br", "d/f", loc, &err), -EPROTO);
    free(loc);

    /* link: the body lakeFS's StagingMetadata describes, once, If-None-Match */
    struct lf_api_kv meta[] = {{"X-Amz-Meta-mode", "33188"}, {"X-Amz-Meta-uid", "1000"}};
    struct lf_api_object obj = {.checksum = "0123abcd", .size = 12345678901ULL, .meta = meta,
                                .nmeta = 2, .content_type = "text/plain", .if_absent = true};
    char sum[128];
    script(200, STATS("0123abcd"), END);
    CHECK_INT(lf_api_link(api, "repo1", "br", "d/f", "s3://b/data/g1,sig", &obj, sum, &err), 0);
    CHECK_STR(req(0)->method, "PUT");
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/branches/br/staging/backing?path=d%2Ff");
    CHECK_STR(req(0)->inm, "*");
    CHECK_STR(req(0)->ctype, "application/json");
    struct lf_json *root = NULL;
    const struct lf_json *o;
    const char *v;
    int64_t n;
    CHECK_INT(lf_json_parse(req(0)->body, strlen(req(0)->body), 4096, &root, NULL), 0);
    CHECK(lf_json_get_obj(root, "staging", &o) == 0 &&
          lf_json_get_str(o, "physical_address", &v) == 0 && strcmp(v, "s3://b/data/g1,sig") == 0);
    CHECK(lf_json_get_str(root, "checksum", &v) == 0 && strcmp(v, "0123abcd") == 0);
    CHECK(lf_json_get_int(root, "size_bytes", &n) == 0 && n == 12345678901LL);
    CHECK(lf_json_get_str(root, "content_type", &v) == 0 && strcmp(v, "text/plain") == 0);
    CHECK(lf_json_get_obj(root, "user_metadata", &o) == 0 &&
          lf_json_get_str(o, "X-Amz-Meta-mode", &v) == 0 && strcmp(v, "33188") == 0);
    lf_json_free(root);
    CHECK_STR(sum, "0123abcd");
    int before = conns();
    script(412, "{\"message\": \"Precondition failed\"}", END);
    CHECK_INT(lf_api_link(api, "repo1", "br", "d/f", "s3://b/data/g1,sig", &obj, sum, &err),
              -EBUSY);
    script(503, "{\"message\": \"busy\"}", 200, STATS("x"), END);
    CHECK_INT(lf_api_link(api, "repo1", "br", "d/f", "s3://b/data/g1,sig", &obj, sum, &err),
              -EIO);
    CHECK_INT(nseen(), 1); /* a change: never sent twice */
    CHECK_INT(err.status, 503);
    CHECK(conns() >= before + 2); /* each on a fresh connection */
    obj.if_absent = false;
    script(200, STATS("y"), END);
    CHECK_INT(lf_api_link(api, "repo1", "br", "d/f", "s3://b/data/g1,sig", &obj, NULL, &err), 0);
    CHECK_STR(req(0)->inm, "");

    /* presigned multipart: create, a part's URL, complete, abort */
    struct lf_api_pmpu *u = malloc(sizeof(*u));
    script(201, "{\"upload_id\": \"up 1\", \"physical_address\": \"s3://b/data/m,sig\"}", END);
    CHECK_INT(lf_api_pmpu_create(api, "repo1", "br", "big", u, &err), 0);
    CHECK_STR(req(0)->method, "POST");
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/branches/br/staging/pmpu?path=big");
    CHECK_STR(u->upload_id, "up 1");
    script(501, "{\"message\": \"presign multipart upload API is not supported\"}", END);
    CHECK_INT(lf_api_pmpu_create(api, "repo1", "br", "big", u, &err), -EOPNOTSUPP);
    strcpy(u->upload_id, "up 1");
    strcpy(u->physical_address, "s3://b/data/m,sig");
    char *url = malloc(LF_API_URL_MAX);
    script(503, "{\"message\": \"busy\"}", 200, "{\"presigned_url\": \"http://s/m?part=2\"}", END);
    CHECK_INT(lf_api_pmpu_part_url(api, "repo1", "br", "big", u, 2, url, &err), 0);
    CHECK_INT(nseen(), 2); /* only a URL is made: asked again */
    CHECK_STR(req(1)->method, "PUT");
    CHECK_STR(req(1)->target,
              "/api/v1/repositories/repo1/branches/br/staging/pmpu/up%201/parts/2?path=big");
    CHECK_STR(req(1)->body, "{\"physical_address\":\"s3://b/data/m,sig\"}");
    CHECK_STR(url, "http://s/m?part=2");
    script(404, "{\"message\": \"path not found\"}", END);
    CHECK_INT(lf_api_pmpu_part_url(api, "repo1", "br", "big", u, 1, url, &err), -ENOENT);
    struct lf_api_part parts[] = {{1, "\"e1\""}, {2, "e2"}};
    obj = (struct lf_api_object){.meta = meta, .nmeta = 1};
    script(200, STATS("abc-2"), END);
    CHECK_INT(lf_api_pmpu_complete(api, "repo1", "br", "big", u, parts, 2, &obj, sum, &err), 0);
    CHECK_STR(req(0)->target, "/api/v1/repositories/repo1/branches/br/staging/pmpu/up%201?path=big");
    CHECK_STR(req(0)->body, "{\"parts\":[{\"part_number\":1,\"etag\":\"\\\"e1\\\"\"},"
                            "{\"part_number\":2,\"etag\":\"e2\"}],\"physical_address\":"
                            "\"s3://b/data/m,sig\",\"user_metadata\":{\"X-Amz-Meta-mode\":"
                            "\"33188\"}}");
    CHECK_STR(sum, "abc-2");
    script(0, NULL, 200, STATS("abc-2"), END);
    CHECK_INT(lf_api_pmpu_complete(api, "repo1", "br", "big", u, parts, 2, &obj, sum, &err),
              -ECONNRESET);
    CHECK_INT(err.status, 0); /* lost: may have been made */
    CHECK_INT(nseen(), 1);
    script(204, "", END);
    CHECK_INT(lf_api_pmpu_abort(api, "repo1", "br", "big", u, &err), 0);
    CHECK_STR(req(0)->method, "DELETE");
    CHECK_STR(req(0)->body, "{\"physical_address\":\"s3://b/data/m,sig\"}");
    free(url);
    free(u);
}

static void test_retries(struct lf_api *api)
{
    struct lf_api_err err;
    struct lf_api_stat *st = malloc(sizeof(*st));
    const char *ok = "{\"path\": \"p\", \"physical_address\": \"x\", \"checksum\": \"c\","
                     " \"mtime\": 1}";

    /* A read: 503 and 429 are asked again (retries = 2 here). */
    script(503, "{\"message\": \"busy\"}", 429, "{\"message\": \"slow down\"}", 200, ok, END);
    CHECK_INT(lf_api_stat(api, "repo1", "main", "p", st, &err), 0);
    CHECK_INT(nseen(), 3);
    CHECK_INT(err.status, 200);
    CHECK_STR(err.message, "");
    script(503, "{\"message\": \"busy 1\"}", 500, "{\"message\": \"busy 2\"}", 503,
           "{\"message\": \"busy 3\"}", 200, ok, END);
    CHECK_INT(lf_api_stat(api, "repo1", "main", "p", st, &err), -EIO);
    CHECK_INT(nseen(), 3);
    CHECK_INT(err.status, 503);
    CHECK_STR(err.message, "busy 3");
    /* A lost answer is asked again too. */
    script(0, NULL, 200, ok, END);
    CHECK_INT(lf_api_stat(api, "repo1", "main", "p", st, &err), 0);
    CHECK_INT(nseen(), 2);
    /* A 4xx is an answer, not a hiccup. */
    script(400, "{\"message\": \"bad path\"}", 200, ok, END);
    CHECK_INT(lf_api_stat(api, "repo1", "main", "p", st, &err), -EINVAL);
    CHECK_INT(nseen(), 1);

    /* A change is sent once: a 503 or a lost answer may hide a commit. */
    struct lf_api_commit c;
    script(503, "{\"message\": \"busy\"}", 201, COMMIT(C1, "m", 1), END);
    CHECK_INT(lf_api_commit(api, "repo1", "main", "m", NULL, 0, &c, &err), -EIO);
    CHECK_INT(nseen(), 1);
    CHECK_INT(err.status, 503);
    CHECK_STR(err.message, "busy");
    script(0, NULL, 201, COMMIT(C1, "m", 1), END);
    CHECK_INT(lf_api_commit(api, "repo1", "main", "m", NULL, 0, &c, &err), -ECONNRESET);
    CHECK_INT(nseen(), 1);
    CHECK_INT(err.status, 0);
    CHECK(strstr(err.message, "no answer") == err.message);
    script(0, NULL, 204, "", END);
    CHECK_INT(lf_api_reset(api, "repo1", "main", LF_RESET_BRANCH, NULL, &err), -ECONNRESET);
    CHECK_INT(nseen(), 1);
    script(0, NULL, 201, C1, END);
    char id[LF_COMMIT_ID_MAX];
    CHECK_INT(lf_api_create_branch(api, "repo1", "b", "main", id, &err), -ECONNRESET);
    CHECK_INT(nseen(), 1);
    free(st);
}

static void test_parsers(void)
{
    char msg[16];
    CHECK_INT(lf_api_parse_message("{\"message\": \"short\"}", 20, msg, sizeof(msg)), 0);
    CHECK_STR(msg, "short");
    /* Cut to fit, on a character boundary: 14 bytes, then a 2-byte é. */
    const char *long_msg = "{\"message\": \"abcdefghijklmn\xc3\xa9xyz\"}";
    CHECK_INT(lf_api_parse_message(long_msg, strlen(long_msg), msg, sizeof(msg)), 0);
    CHECK_STR(msg, "abcdefghijklmn");
    CHECK_INT(lf_api_parse_message("{\"message\": 5}", 14, msg, sizeof(msg)), -EPROTO);
    CHECK_STR(msg, "{\"message\": 5}");
    CHECK_INT(lf_api_parse_message("oops\r\n\x01", 7, msg, sizeof(msg)), -EPROTO);
    CHECK_STR(msg, "oops");
    CHECK_INT(lf_api_parse_message(NULL, 0, msg, sizeof(msg)), -EPROTO);
    CHECK_STR(msg, "");

    struct lf_json *root;
    struct lf_api_commit c;
    const char *doc = "{\"id\": \"" C1 "\", \"committer\": \"x\", \"message\": \"m\","
                      " \"creation_date\": 5}";
    CHECK_INT(lf_api_parse_doc(doc, strlen(doc), &root), 0);
    CHECK_INT(lf_api_parse_commit(root, &c), 0);
    lf_json_free(root);
    const char *long_id = "{\"id\": \"" C1 "0\", \"committer\": \"x\", \"message\": \"m\","
                          " \"creation_date\": 5}";
    CHECK_INT(lf_api_parse_doc(long_id, strlen(long_id), &root), 0);
    CHECK_INT(lf_api_parse_commit(root, &c), -EPROTO);
    lf_json_free(root);
    CHECK_INT(lf_api_parse_doc("[1]", 3, &root), -EPROTO);
    CHECK(root == NULL);

    struct lf_api_page p;
    const char *no_results = "{\"pagination\": {\"has_more\": false, \"next_offset\": \"\"}}";
    CHECK_INT(lf_api_parse_page(no_results, strlen(no_results), &p), -EPROTO);
    CHECK(p.root == NULL);
    const char *str_more = "{\"pagination\": {\"has_more\": \"no\"}, \"results\": []}";
    CHECK_INT(lf_api_parse_page(str_more, strlen(str_more), &p), -EPROTO);
    const char *obj_results = "{\"pagination\": {\"has_more\": false}, \"results\": {}}";
    CHECK_INT(lf_api_parse_page(obj_results, strlen(obj_results), &p), -EPROTO);
    const char *fine = "{\"pagination\": {\"has_more\": false}, \"results\": [1, 2]}";
    CHECK_INT(lf_api_parse_page(fine, strlen(fine), &p), 0);
    CHECK_INT(p.n, 2);
    CHECK(!p.has_more);
    lf_api_page_free(&p);

    enum lf_api_change kind;
    const char *path;
    bool pre;
    const char *d = "{\"type\": \"renamed\", \"path\": \"a\", \"path_type\": \"object\"}";
    CHECK_INT(lf_api_parse_doc(d, strlen(d), &root), 0);
    CHECK_INT(lf_api_parse_diff(root, &kind, &path, &pre), -EPROTO);
    lf_json_free(root);
    d = "{\"type\": \"added\", \"path\": \"a\", \"path_type\": \"dir\"}";
    CHECK_INT(lf_api_parse_doc(d, strlen(d), &root), 0);
    CHECK_INT(lf_api_parse_diff(root, &kind, &path, &pre), -EPROTO);
    lf_json_free(root);

    char id[LF_COMMIT_ID_MAX];
    CHECK_INT(lf_api_parse_created("  " C1 "\r\n", 68, id), 0);
    CHECK_STR(id, C1);
    CHECK_INT(lf_api_parse_created(C1 "0", 65, id), -EPROTO);
    CHECK_INT(lf_api_parse_created("\"\"", 2, id), -EPROTO);
    CHECK_INT(lf_api_parse_created("main", 4, id), -EPROTO);
    CHECK_INT(lf_api_parse_created("", 0, id), -EPROTO);
}

/* Nothing logged, at any level, may carry the secret or the header. */
static void test_secret_not_logged(struct lf_api *api, int logfd)
{
    struct lf_api_err err;
    enum lf_ref_type type;
    char id[LF_COMMIT_ID_MAX];
    script(503, "{\"message\": \"x\"}", 404, "{\"message\": \"y\"}", 401,
           "{\"message\": \"z\"}", END);
    lf_api_resolve(api, "repo1", "main", &type, id, &err);
    char buf[65536];
    ssize_t n = pread(logfd, buf, sizeof(buf) - 1, 0);
    CHECK(n > 0);
    buf[n > 0 ? n : 0] = '\0';
    CHECK(strstr(buf, "lakeFS API: get branch repo1/main: HTTP 503: x (attempt 1, trying again)"));
    CHECK(strstr(buf, "lakeFS API: get tag repo1/main: HTTP 401: z") != NULL);
    CHECK(strstr(buf, SK) == NULL);
    CHECK(strstr(buf, "s3cr3t") == NULL);
    CHECK(strstr(buf, AUTH_B64) == NULL);
    CHECK(strstr(buf, "Basic") == NULL);
    if (getenv("TEST_API_SHOW_LOG")) /* to read what the lines look like */
        fputs(buf, stderr);
}

int main(void)
{
    scripted_start(&server, serve_conn);
    lf_http_global_init();

    /* Every line goes to a file: the secret test reads it back. */
    char logname[] = "/tmp/test_api_log.XXXXXX";
    int logfd = mkstemp(logname);
    unlink(logname);
    lf_log_set_fd(logfd);
    lf_log_set_level(LF_LOG_DEBUG);

    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/", server.port);
    struct lf_api_opts o = {.endpoint = ep, .access_key = AK, .secret_key = SK,
                            .connect_timeout_ms = 2000, .stall_timeout_ms = 5000,
                            .retries = 2, .backoff_ms = 1};
    struct lf_api *api = lf_api_new(&o);
    CHECK(api != NULL);

    test_resolve(api);
    test_diff(api);
    test_log_and_lists(api);
    test_changes(api);
    test_stat(api);
    test_presign_calls(api);
    test_retries(api);
    test_parsers();
    test_secret_not_logged(api, logfd);
    lf_api_free(api);

    /* No server: the transport's errno, status 0, after the retries. */
    int closed = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in c = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t cl = sizeof(c);
    bind(closed, (struct sockaddr *)&c, sizeof(c));
    getsockname(closed, (struct sockaddr *)&c, &cl);
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", ntohs(c.sin_port));
    close(closed);
    o.endpoint = ep;
    api = lf_api_new(&o);
    struct lf_api_err err;
    enum lf_ref_type type;
    char id[LF_COMMIT_ID_MAX];
    CHECK_INT(lf_api_resolve(api, "repo1", "main", &type, id, &err), -ECONNREFUSED);
    CHECK_INT(err.status, 0);
    lf_api_free(api);

    /* Options that cannot work. */
    o.endpoint = "ftp://127.0.0.1";
    CHECK(lf_api_new(&o) == NULL);
    o.endpoint = ep;
    o.access_key = "a:b";
    CHECK(lf_api_new(&o) == NULL);
    o.access_key = NULL;
    CHECK(lf_api_new(&o) == NULL);

    lf_log_set_fd(2);
    close(logfd);
    scripted_stop(&server);
    lf_http_global_cleanup();
    return check_summary("test_api");
}
