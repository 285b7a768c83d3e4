/* api: lakeFS's REST API as one generic exchange (URL, basic auth, send,
 * classify, retry reads) and a thin function per operation on top, with
 * a page walker for the listing calls.
 *
 * Answer bodies are read into memory bounded by LF_JSON_MAX and parsed by
 * src/api_parse.c. A page is checked whole before any of its entries is
 * handed to the caller, so a malformed page delivers nothing of itself.
 */
#include "lakefuse/api.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "api_parse.h"
#include "lakefuse/buf.h"
#include "lakefuse/http.h"
#include "lakefuse/json.h"
#include "lakefuse/log.h"
#include "lakefuse/uri.h"

#define PAGE_MAX 1000 /* lakeFS's largest page */

struct lf_api {
    struct lf_http *http;
    char *base; /* scheme://host[:port][/base]/api/v1 */
    unsigned retries, backoff_ms;
    int (*reload)(void *arg, char **ak, char **sk);
    void *reload_arg;
    pthread_mutex_t auth_lock; /* the fields below: a reload replaces auth */
    char *auth; /* "Authorization: Basic ...": holds the secret, never logged */
    unsigned auth_gen;
    time_t next_reload;
};

/* One REST call as an operation describes it. */
struct call {
    const char *op;      /* for log lines: "commit", "get branch" ... */
    const char *repo;    /* for log lines */
    const char *ref;     /* "" when the call names none */
    const char *method;
    const char *url;
    const struct lf_buf *body; /* JSON, or NULL */
    const char *header;  /* one more "Name: value" line, or NULL */
    bool change;         /* changes the repository: one attempt, fresh connection */
    bool probe;          /* 404 or 400 is an expected answer (resolve's lookups) */
};

static void err_set(struct lf_api_err *err, long status, const char *msg)
{
    if (!err)
        return;
    err->status = status;
    snprintf(err->message, sizeof(err->message), "%s", msg);
}

/* ---- construction ----------------------------------------------------- */

static char *basic_auth(const char *ak, const char *sk)
{
    size_t al = strlen(ak), sl = strlen(sk), n = al + 1 + sl;
    char *plain = malloc(n + 1);
    static const char prefix[] = "Authorization: Basic ";
    size_t enc = 4 * ((n + 2) / 3) + 1;
    char *hdr = malloc(sizeof(prefix) - 1 + enc);
    if (!plain || !hdr || n > INT32_MAX) {
        free(plain);
        free(hdr);
        return NULL;
    }
    memcpy(plain, ak, al);
    plain[al] = ':';
    memcpy(plain + al + 1, sk, sl);
    memcpy(hdr, prefix, sizeof(prefix) - 1);
    EVP_EncodeBlock((unsigned char *)hdr + sizeof(prefix) - 1, (const unsigned char *)plain,
                    (int)n);
    explicit_bzero(plain, n);
    free(plain);
    return hdr;
}

static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

struct lf_api *lf_api_new(const struct lf_api_opts *opts)
{
    const char *ep = opts->endpoint;
    if (!ep || (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)) {
        lf_err("lakeFS API: endpoint '%s' is not an http:// or https:// URL", ep ? ep : "");
        return NULL;
    }
    if (!opts->access_key || !opts->secret_key || !opts->access_key[0] ||
        strchr(opts->access_key, ':')) {
        lf_err("lakeFS API: an access key (without ':') and a secret key are needed");
        return NULL;
    }
    struct lf_api *api = calloc(1, sizeof(*api));
    if (!api)
        return NULL;
    pthread_mutex_init(&api->auth_lock, NULL);
    api->reload = opts->reload;
    api->reload_arg = opts->reload_arg;
    struct lf_buf base = LF_BUF_INIT;
    size_t el = strlen(ep);
    while (el > 0 && ep[el - 1] == '/')
        el--;
    if (lf_buf_append(&base, ep, el) || lf_buf_puts(&base, "/api/v1"))
        goto fail;
    api->base = lf_buf_steal(&base);
    if (!(api->auth = basic_auth(opts->access_key, opts->secret_key)))
        goto fail;
    struct lf_http_opts ho = {.max_conns = 4,
                              .connect_timeout_ms = opts->connect_timeout_ms,
                              .stall_timeout_ms = opts->stall_timeout_ms,
                              .ca_bundle = opts->ca_bundle,
                              .insecure = opts->insecure};
    if (!(api->http = lf_http_new(&ho)))
        goto fail;
    api->retries = opts->retries;
    api->backoff_ms = opts->backoff_ms ? opts->backoff_ms : 1;
    return api;
fail:
    lf_buf_free(&base);
    lf_api_free(api);
    return NULL;
}

void lf_api_free(struct lf_api *api)
{
    if (!api)
        return;
    lf_http_free(api->http);
    free(api->base);
    free_secret(api->auth);
    pthread_mutex_destroy(&api->auth_lock);
    free(api);
}

/* ---- URLs --------------------------------------------------------------- */

/* base, then each segment percent-encoded ('/' too), up to a NULL. */
static int url_path(const struct lf_api *api, struct lf_buf *url, ...)
{
    va_list ap;
    int rc = lf_buf_puts(url, api->base);
    va_start(ap, url);
    for (const char *seg; !rc && (seg = va_arg(ap, const char *));) {
        rc = lf_buf_puts(url, "/");
        if (!rc)
            rc = lf_uri_encode(url, seg, strlen(seg), false);
    }
    va_end(ap);
    return rc;
}

static int url_query(struct lf_buf *url, const char *name, const char *value)
{
    int rc = lf_buf_puts(url, strchr(url->data, '?') ? "&" : "?");
    if (!rc)
        rc = lf_buf_printf(url, "%s=", name);
    if (!rc)
        rc = lf_uri_encode(url, value, strlen(value), false);
    return rc;
}

/* ---- the exchange --------------------------------------------------------- */

static int status_errno(long status)
{
    switch (status) {
    case 400:
        return -EINVAL;
    case 401:
    case 403:
        return -EACCES;
    case 404:
        return -ENOENT;
    case 409:
        return -EEXIST;
    case 412:
        return -EBUSY;
    case 429:
        return -EAGAIN;
    case 405:
    case 501:
        return -EOPNOTSUPP;
    default:
        return -EIO;
    }
}

static bool retryable_errno(int rc)
{
    return rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -EPROTO ||
           rc == -EIO || rc == -EHOSTUNREACH || rc == LF_HTTP_ETLS;
}

/* Full jitter under a cap that doubles per attempt, as the gateway's
 * client does. */
static void backoff(const struct lf_api *api, unsigned attempt)
{
    uint64_t cap = (uint64_t)api->backoff_ms << (attempt < 8 ? attempt : 8);
    if (cap > 5000)
        cap = 5000;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)&attempt ^ attempt;
    uint64_t ms = cap / 2 + (uint64_t)rand_r(&seed) % (cap / 2 + 1);
    usleep((useconds_t)(ms * 1000));
}

#define WHO_MAX 400

/* "op repo/ref" (or "op repo") for log lines. */
static const char *who(const struct call *c, char w[WHO_MAX])
{
    snprintf(w, WHO_MAX, "%s %s%s%.255s", c->op, c->repo, c->ref[0] ? "/" : "", c->ref);
    return w;
}

/* The header in force (a copy: a reload may replace it) and its generation. */
static char *auth_get(struct lf_api *api, unsigned *gen)
{
    pthread_mutex_lock(&api->auth_lock);
    char *a = strdup(api->auth);
    *gen = api->auth_gen;
    pthread_mutex_unlock(&api->auth_lock);
    return a;
}

/* After a 401 to a call signed under generation gen: whether newer
 * credentials are in force now (read again, at most every
 * LF_API_RELOAD_EVERY s). */
static bool auth_reload(struct lf_api *api, unsigned gen)
{
    bool newer = false;
    pthread_mutex_lock(&api->auth_lock);
    time_t now = time(NULL);
    if (api->auth_gen != gen) {
        newer = true;
    } else if (api->reload && now >= api->next_reload) {
        api->next_reload = now + LF_API_RELOAD_EVERY;
        char *ak = NULL, *sk = NULL, *a = NULL;
        if (api->reload(api->reload_arg, &ak, &sk) == 0 && ak && sk && !strchr(ak, ':') &&
            (a = basic_auth(ak, sk)) && strcmp(a, api->auth) != 0) {
            free_secret(api->auth);
            api->auth = a;
            a = NULL;
            api->auth_gen++;
            newer = true;
            lf_info("lakeFS API: refused; took new credentials (access key %s)", ak);
        }
        free_secret(a);
        free(ak);
        free_secret(sk);
    }
    pthread_mutex_unlock(&api->auth_lock);
    return newer;
}

/* Runs the call; 0 with the 2xx answer's body in out, or a negative
 * errno with err filled and one line logged. */
static int perform(struct lf_api *api, const struct call *c, struct lf_buf *out,
                   struct lf_api_err *err)
{
    unsigned gen;
    char *auth = auth_get(api, &gen);
    if (!auth)
        return -ENOMEM;
    const char *hdrs[3] = {auth};
    size_t nh = 1;
    if (c->body)
        hdrs[nh++] = "Content-Type: application/json";
    if (c->header)
        hdrs[nh++] = c->header;
    struct lf_http_req hr = {.method = c->method, .url = c->url, .headers = hdrs,
                             .nheaders = nh, .out_buf = out,
                             .out_max = LF_JSON_MAX, .fresh_connect = c->change};
    if (c->body) {
        hr.body = c->body->data ? c->body->data : "";
        hr.body_len = c->body->len;
    }
    struct lf_http_resp resp;
    char msg[sizeof(err->message)], w[WHO_MAX];
    int rc;
    lf_http_resp_init(&resp);
    for (unsigned attempt = 0;; attempt++) {
        lf_buf_reset(out);
        rc = lf_http_perform(api->http, &hr, &resp);
        bool again;
        if (rc) {
            snprintf(msg, sizeof(msg), "no answer: %s",
                     resp.errmsg[0] ? resp.errmsg : strerror(-rc));
            again = retryable_errno(rc);
        } else if (resp.status >= 200 && resp.status < 300) {
            err_set(err, resp.status, "");
            break;
        } else {
            lf_api_parse_message(resp.err_body.data, resp.err_body.len, msg, sizeof(msg));
            if (!msg[0])
                snprintf(msg, sizeof(msg), "(no message)");
            rc = status_errno(resp.status);
            again = resp.status >= 500 || resp.status == 429;
            /* Refused before any work: with new credentials any call may
             * go again, at once. */
            if (resp.status == 401 && attempt < api->retries && auth_reload(api, gen)) {
                free_secret(auth);
                if (!(auth = auth_get(api, &gen))) {
                    rc = -ENOMEM;
                    break;
                }
                hdrs[0] = auth;
                continue;
            }
        }
        again = again && !c->change && attempt < api->retries;
        if (!again) {
            err_set(err, resp.status, msg);
            if ((resp.status == 404 || resp.status == 400) && c->probe)
                lf_dbg("lakeFS API: %s: HTTP %ld: %s", who(c, w), resp.status, msg);
            else if (resp.status == 404)
                lf_info("lakeFS API: %s: HTTP 404: %s", who(c, w), msg);
            else if (resp.status)
                lf_err("lakeFS API: %s: HTTP %ld: %s", who(c, w), resp.status, msg);
            else
                lf_err("lakeFS API: %s: %s%s", who(c, w), msg,
                       c->change ? " (the change may have been made)" : "");
            break;
        }
        if (resp.status)
            lf_warn("lakeFS API: %s: HTTP %ld: %s (attempt %u, trying again)", who(c, w),
                    resp.status, msg, attempt + 1);
        else
            lf_warn("lakeFS API: %s: %s (attempt %u, trying again)", who(c, w), msg,
                    attempt + 1);
        backoff(api, attempt);
    }
    lf_http_resp_free(&resp);
    free_secret(auth);
    return rc;
}

/* A 2xx answer that is not what the operation expects. */
static int malformed(const struct call *c, struct lf_api_err *err, int rc)
{
    if (rc == -EPROTO) {
        char w[WHO_MAX];
        lf_err("lakeFS API: %s: malformed answer", who(c, w));
        err_set(err, err ? err->status : 0, "malformed answer from lakeFS");
    }
    return rc;
}

/* GETs a single JSON object into *root. */
static int get_doc(struct lf_api *api, const struct call *c, struct lf_json **root,
                   struct lf_api_err *err)
{
    struct lf_buf body = LF_BUF_INIT;
    *root = NULL;
    int rc = perform(api, c, &body, err);
    if (!rc)
        rc = malformed(c, err, lf_api_parse_doc(body.data, body.len, root));
    lf_buf_free(&body);
    return rc;
}

/* ---- pages ------------------------------------------------------------- */

struct walk {
    /* Checks one entry (deliver false), or checks and hands it over. */
    int (*item)(struct walk *w, const struct lf_json *v, bool deliver);
    void *fn;
    void *arg;
    unsigned limit;     /* entries wanted; 0: all */
    unsigned delivered;
};

/* Follows a listing's pages from url (which may hold a query already)
 * until has_more is false, the limit is met or the caller says stop. */
static int walk_pages(struct lf_api *api, struct call *c, const char *url, struct walk *w,
                      struct lf_api_err *err)
{
    struct lf_buf page_url = LF_BUF_INIT, body = LF_BUF_INIT;
    char *after = NULL;
    struct lf_api_page page = {0};
    int rc = 0;
    for (;;) {
        unsigned amount = PAGE_MAX;
        if (w->limit && w->limit - w->delivered < amount)
            amount = w->limit - w->delivered;
        char num[16];
        snprintf(num, sizeof(num), "%u", amount);
        lf_buf_reset(&page_url);
        if ((rc = lf_buf_puts(&page_url, url)) ||
            (after && (rc = url_query(&page_url, "after", after))) ||
            (rc = url_query(&page_url, "amount", num)))
            break;
        c->url = page_url.data;
        if ((rc = perform(api, c, &body, err)))
            break;
        if ((rc = malformed(c, err, lf_api_parse_page(body.data, body.len, &page))))
            break;
        for (size_t i = 0; !rc && i < page.n; i++)
            rc = w->item(w, lf_json_at(page.results, i), false);
        if ((rc = malformed(c, err, rc)))
            break;
        for (size_t i = 0; !rc && i < page.n && (!w->limit || w->delivered < w->limit); i++) {
            rc = w->item(w, lf_json_at(page.results, i), true);
            w->delivered++;
        }
        if (rc || !page.has_more || (w->limit && w->delivered >= w->limit))
            break;
        if (after && strcmp(after, page.next_offset) == 0) {
            /* Asking again would bring the same page: a loop. */
            char where[WHO_MAX];
            lf_err("lakeFS API: %s: the server repeats next_offset '%.64s'", who(c, where),
                   after);
            err_set(err, err ? err->status : 0, "lakeFS repeats the same page");
            rc = -EPROTO;
            break;
        }
        free(after);
        if (!(after = strdup(page.next_offset))) {
            rc = -ENOMEM;
            break;
        }
        lf_api_page_free(&page);
    }
    lf_api_page_free(&page);
    free(after);
    lf_buf_free(&page_url);
    lf_buf_free(&body);
    return rc;
}

/* ---- operations ------------------------------------------------------- */

static void err_clear(struct lf_api_err *err) { err_set(err, 0, ""); }

int lf_api_commit(struct lf_api *api, const char *repo, const char *branch, const char *message,
                  const struct lf_api_kv *meta, size_t nmeta, struct lf_api_commit *out,
                  struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT, body = LF_BUF_INIT, answer = LF_BUF_INIT;
    struct lf_json *req = lf_json_new_object(), *md = lf_json_new_object(), *root = NULL;
    struct call c = {.op = "commit", .repo = repo, .ref = branch, .method = "POST",
                     .body = &body, .change = true};
    int rc = req && md ? 0 : -ENOMEM;
    err_clear(err);
    for (size_t i = 0; !rc && i < nmeta; i++)
        rc = lf_json_set_str(md, meta[i].key, meta[i].value);
    if (!rc)
        rc = lf_json_set_str(req, "message", message);
    if (!rc) {
        rc = lf_json_set(req, "metadata", md);
        md = NULL;
    }
    if (rc == -EINVAL)
        err_set(err, 0, "commit message and metadata must be UTF-8 text");
    if (rc || (rc = lf_json_dump(req, &body)) ||
        (rc = url_path(api, &url, "repositories", repo, "branches", branch, "commits", NULL)))
        goto out;
    c.url = url.data;
    if ((rc = perform(api, &c, &answer, err)))
        goto out;
    struct lf_api_commit tmp;
    rc = lf_api_parse_doc(answer.data, answer.len, &root);
    if (!rc)
        rc = lf_api_parse_commit(root, out ? out : &tmp);
    rc = malformed(&c, err, rc);
out:
    lf_json_free(root);
    lf_json_free(req);
    lf_json_free(md);
    lf_buf_free(&url);
    lf_buf_free(&body);
    lf_buf_free(&answer);
    return rc;
}

static int diff_item(struct walk *w, const struct lf_json *v, bool deliver)
{
    enum lf_api_change kind;
    const char *path;
    bool is_prefix;
    int rc = lf_api_parse_diff(v, &kind, &path, &is_prefix);
    if (rc || !deliver)
        return rc;
    return ((lf_api_diff_fn)w->fn)(w->arg, kind, path, is_prefix);
}

int lf_api_diff_branch(struct lf_api *api, const char *repo, const char *branch,
                       const char *prefix, lf_api_diff_fn fn, void *arg, struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT;
    struct call c = {.op = "diff", .repo = repo, .ref = branch, .method = "GET"};
    struct walk w = {.item = diff_item, .fn = (void *)fn, .arg = arg};
    err_clear(err);
    int rc = url_path(api, &url, "repositories", repo, "branches", branch, "diff", NULL);
    if (!rc && prefix && prefix[0])
        rc = url_query(&url, "prefix", prefix);
    if (!rc)
        rc = walk_pages(api, &c, url.data, &w, err);
    lf_buf_free(&url);
    return rc;
}

static int commit_item(struct walk *w, const struct lf_json *v, bool deliver)
{
    struct lf_api_commit cm;
    int rc = lf_api_parse_commit(v, &cm);
    if (rc || !deliver)
        return rc;
    return ((lf_api_commit_fn)w->fn)(w->arg, &cm);
}

int lf_api_log(struct lf_api *api, const char *repo, const char *ref, unsigned limit,
               lf_api_commit_fn fn, void *arg, struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT;
    struct call c = {.op = "log", .repo = repo, .ref = ref, .method = "GET"};
    struct walk w = {.item = commit_item, .fn = (void *)fn, .arg = arg, .limit = limit};
    err_clear(err);
    int rc = url_path(api, &url, "repositories", repo, "refs", ref, "commits", NULL);
    if (!rc)
        rc = walk_pages(api, &c, url.data, &w, err);
    lf_buf_free(&url);
    return rc;
}

static int ref_item(struct walk *w, const struct lf_json *v, bool deliver)
{
    const char *name, *id;
    int rc = lf_api_parse_ref(v, &name, &id);
    if (rc || !deliver)
        return rc;
    return ((lf_api_ref_fn)w->fn)(w->arg, name, id);
}

static int list_refs(struct lf_api *api, const char *op, const char *repo, const char *kind,
                     lf_api_ref_fn fn, void *arg, struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT;
    struct call c = {.op = op, .repo = repo, .ref = "", .method = "GET"};
    struct walk w = {.item = ref_item, .fn = (void *)fn, .arg = arg};
    err_clear(err);
    int rc = url_path(api, &url, "repositories", repo, kind, NULL);
    if (!rc)
        rc = walk_pages(api, &c, url.data, &w, err);
    lf_buf_free(&url);
    return rc;
}

int lf_api_list_branches(struct lf_api *api, const char *repo, lf_api_ref_fn fn, void *arg,
                         struct lf_api_err *err)
{
    return list_refs(api, "list branches", repo, "branches", fn, arg, err);
}

int lf_api_list_tags(struct lf_api *api, const char *repo, lf_api_ref_fn fn, void *arg,
                     struct lf_api_err *err)
{
    return list_refs(api, "list tags", repo, "tags", fn, arg, err);
}

/* GET .../{kind}/{name}: a branch or a tag, as {id, commit_id}. */
static int get_ref(struct lf_api *api, const char *op, const char *repo, const char *kind,
                   const char *name, bool probe, char commit_id[LF_COMMIT_ID_MAX],
                   struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT;
    struct lf_json *root = NULL;
    struct call c = {.op = op, .repo = repo, .ref = name, .method = "GET", .probe = probe};
    const char *id, *cid;
    int rc = url_path(api, &url, "repositories", repo, kind, name, NULL);
    c.url = url.data;
    if (!rc && !(rc = get_doc(api, &c, &root, err)) &&
        !(rc = malformed(&c, err, lf_api_parse_ref(root, &id, &cid))))
        memcpy(commit_id, cid, strlen(cid) + 1);
    lf_json_free(root);
    lf_buf_free(&url);
    return rc;
}

int lf_api_create_branch(struct lf_api *api, const char *repo, const char *name,
                         const char *source, char commit_id[LF_COMMIT_ID_MAX],
                         struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT, body = LF_BUF_INIT, answer = LF_BUF_INIT;
    struct lf_json *req = lf_json_new_object();
    struct call c = {.op = "create branch", .repo = repo, .ref = name, .method = "POST",
                     .body = &body, .change = true};
    err_clear(err);
    int rc = req ? 0 : -ENOMEM;
    if (rc || (rc = lf_json_set_str(req, "name", name)) ||
        (rc = lf_json_set_str(req, "source", source)) || (rc = lf_json_dump(req, &body)) ||
        (rc = url_path(api, &url, "repositories", repo, "branches", NULL)))
        goto out;
    c.url = url.data;
    if ((rc = perform(api, &c, &answer, err)) || !commit_id)
        goto out;
    /* The answer's text is the new head; when it is not, ask the branch
     * (a read, safe to repeat: the branch exists now). */
    if (lf_api_parse_created(answer.data, answer.len, commit_id))
        rc = get_ref(api, "get branch", repo, "branches", name, false, commit_id, err);
out:
    lf_json_free(req);
    lf_buf_free(&url);
    lf_buf_free(&body);
    lf_buf_free(&answer);
    return rc;
}

int lf_api_reset(struct lf_api *api, const char *repo, const char *branch, enum lf_api_reset type,
                 const char *path, struct lf_api_err *err)
{
    static const char *const types[] = {[LF_RESET_OBJECT] = "object",
                                        [LF_RESET_PREFIX] = "common_prefix",
                                        [LF_RESET_BRANCH] = "reset"};
    struct lf_buf url = LF_BUF_INIT, body = LF_BUF_INIT, answer = LF_BUF_INIT;
    struct lf_json *req = NULL;
    struct call c = {.op = "reset", .repo = repo, .ref = branch, .method = "PUT",
                     .body = &body, .change = true};
    err_clear(err);
    int rc = -EINVAL;
    if ((unsigned)type > LF_RESET_BRANCH || (type != LF_RESET_BRANCH && (!path || !path[0]))) {
        err_set(err, 0, "reset of an object or prefix needs its path");
        goto out;
    }
    rc = (req = lf_json_new_object()) ? 0 : -ENOMEM;
    if (rc || (rc = lf_json_set_str(req, "type", types[type])) ||
        (type != LF_RESET_BRANCH && (rc = lf_json_set_str(req, "path", path))) ||
        (rc = lf_json_dump(req, &body)) ||
        (rc = url_path(api, &url, "repositories", repo, "branches", branch, NULL)))
        goto out;
    c.url = url.data;
    rc = perform(api, &c, &answer, err);
out:
    lf_json_free(req);
    lf_buf_free(&url);
    lf_buf_free(&body);
    lf_buf_free(&answer);
    return rc;
}

static int first_commit(void *arg, const struct lf_api_commit *c)
{
    memcpy(arg, c->id, sizeof(c->id));
    return 0;
}

int lf_api_resolve(struct lf_api *api, const char *repo, const char *ref,
                   enum lf_ref_type *type, char commit_id[LF_COMMIT_ID_MAX],
                   struct lf_api_err *err)
{
    int rc;
    err_clear(err);
    commit_id[0] = '\0';
    /* An expression (main~2) names neither a branch nor a tag: straight
     * to the log. A 64-hex name may be either, so it is asked first. */
    if (!lf_ref_has_modifier(ref)) {
        /* lakeFS answers 400 for a name that cannot be a branch (v1.0
         * can be a tag): that too means "look further". */
        rc = get_ref(api, "get branch", repo, "branches", ref, true, commit_id, err);
        if (rc != -ENOENT && rc != -EINVAL) {
            *type = LF_REF_BRANCH;
            return rc;
        }
        rc = get_ref(api, "get tag", repo, "tags", ref, true, commit_id, err);
        if (rc != -ENOENT && rc != -EINVAL) {
            *type = LF_REF_TAG;
            return rc;
        }
    }
    *type = LF_REF_COMMIT;
    rc = lf_api_log(api, repo, ref, 1, first_commit, commit_id, err);
    if (!rc && !commit_id[0]) {
        lf_info("lakeFS API: resolve %s/%s: no commit", repo, ref);
        err_set(err, err ? err->status : 0, "the ref has no commit");
        rc = -ENOENT;
    }
    return rc;
}

static int stat_object(struct lf_api *api, const char *repo, const char *ref, const char *path,
                       bool presign, struct lf_api_stat *out, struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT;
    struct lf_json *root = NULL;
    struct call c = {.op = presign ? "stat (presign)" : "stat", .repo = repo, .ref = ref,
                     .method = "GET"};
    err_clear(err);
    int rc = url_path(api, &url, "repositories", repo, "refs", ref, "objects", "stat", NULL);
    if (!rc)
        rc = url_query(&url, "path", path);
    if (!rc)
        rc = url_query(&url, "user_metadata", "true");
    if (!rc && presign)
        rc = url_query(&url, "presign", "true");
    c.url = url.data;
    if (!rc && !(rc = get_doc(api, &c, &root, err)))
        rc = malformed(&c, err, lf_api_parse_stat(root, out));
    lf_json_free(root);
    lf_buf_free(&url);
    return rc;
}

int lf_api_stat(struct lf_api *api, const char *repo, const char *ref, const char *path,
                struct lf_api_stat *out, struct lf_api_err *err)
{
    return stat_object(api, repo, ref, path, false, out, err);
}

int lf_api_stat_presign(struct lf_api *api, const char *repo, const char *ref, const char *path,
                        struct lf_api_stat *out, struct lf_api_err *err)
{
    return stat_object(api, repo, ref, path, true, out, err);
}

/* ---- presigned transfers ---------------------------------------------- */

int lf_api_storage_config(struct lf_api *api, struct lf_api_storage *out,
                          struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT;
    struct lf_json *root = NULL;
    struct call c = {.op = "config", .repo = "", .ref = "", .method = "GET", .probe = true};
    err_clear(err);
    int rc = url_path(api, &url, "config", NULL);
    c.url = url.data;
    if (!rc)
        rc = get_doc(api, &c, &root, err);
    if (rc == -ENOENT) { /* before lakeFS 1.x had /config */
        lf_buf_reset(&url);
        c.op = "config/storage";
        c.probe = false;
        if (!(rc = url_path(api, &url, "config", "storage", NULL))) {
            c.url = url.data;
            rc = get_doc(api, &c, &root, err);
        }
    }
    if (!rc)
        rc = malformed(&c, err, lf_api_parse_storage_config(root, out));
    lf_json_free(root);
    lf_buf_free(&url);
    return rc;
}

int lf_api_staging_location(struct lf_api *api, const char *repo, const char *branch,
                            const char *path, struct lf_api_staging *out,
                            struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT;
    struct lf_json *root = NULL;
    struct call c = {.op = "staging location", .repo = repo, .ref = branch, .method = "GET"};
    err_clear(err);
    int rc = url_path(api, &url, "repositories", repo, "branches", branch, "staging", "backing",
                      NULL);
    if (!rc)
        rc = url_query(&url, "path", path);
    if (!rc)
        rc = url_query(&url, "presign", "true");
    c.url = url.data;
    if (!rc && !(rc = get_doc(api, &c, &root, err)))
        rc = malformed(&c, err, lf_api_parse_staging(root, out));
    lf_json_free(root);
    lf_buf_free(&url);
    return rc;
}

/* The fields of a link or a completion that describe the object. */
static int object_fields(struct lf_json *req, const struct lf_api_object *obj, bool sized)
{
    struct lf_json *md = lf_json_new_object();
    int rc = md ? 0 : -ENOMEM;
    for (size_t i = 0; !rc && i < obj->nmeta; i++)
        rc = lf_json_set_str(md, obj->meta[i].key, obj->meta[i].value);
    if (!rc) {
        rc = lf_json_set(req, "user_metadata", md);
        md = NULL;
    }
    if (!rc && obj->content_type)
        rc = lf_json_set_str(req, "content_type", obj->content_type);
    if (!rc && sized)
        rc = lf_json_set_str(req, "checksum", obj->checksum);
    if (!rc && sized)
        rc = lf_json_set_int(req, "size_bytes", (int64_t)obj->size);
    lf_json_free(md);
    return rc;
}

/* Sends a change whose answer is ObjectStats; copies its checksum. */
static int change_with_stats(struct lf_api *api, struct call *c, struct lf_json *req,
                             char checksum_out[128], struct lf_api_err *err)
{
    struct lf_buf body = LF_BUF_INIT, answer = LF_BUF_INIT;
    struct lf_json *root = NULL;
    struct lf_api_stat *st = NULL;
    int rc = lf_json_dump(req, &body);
    c->body = &body;
    if (!rc)
        rc = perform(api, c, &answer, err);
    if (!rc && checksum_out) {
        if (!(st = malloc(sizeof(*st))))
            rc = -ENOMEM;
        if (!rc)
            rc = lf_api_parse_doc(answer.data, answer.len, &root);
        if (!rc)
            rc = lf_api_parse_stat(root, st);
        if (!rc)
            memcpy(checksum_out, st->checksum, sizeof(st->checksum));
        rc = malformed(c, err, rc);
    }
    free(st);
    lf_json_free(root);
    lf_buf_free(&body);
    lf_buf_free(&answer);
    return rc;
}

int lf_api_link(struct lf_api *api, const char *repo, const char *branch, const char *path,
                const char *physical_address, const struct lf_api_object *obj,
                char checksum_out[128], struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT;
    struct lf_json *req = lf_json_new_object(), *staging = lf_json_new_object();
    struct call c = {.op = "link", .repo = repo, .ref = branch, .method = "PUT",
                     .change = true, .header = obj->if_absent ? "If-None-Match: *" : NULL};
    err_clear(err);
    int rc = req && staging ? 0 : -ENOMEM;
    if (!rc)
        rc = lf_json_set_str(staging, "physical_address", physical_address);
    if (!rc) {
        rc = lf_json_set(req, "staging", staging);
        staging = NULL;
    }
    if (!rc)
        rc = object_fields(req, obj, true);
    if (rc == -EINVAL)
        err_set(err, 0, "user metadata must be UTF-8 text");
    if (!rc)
        rc = url_path(api, &url, "repositories", repo, "branches", branch, "staging", "backing",
                      NULL);
    if (!rc)
        rc = url_query(&url, "path", path);
    c.url = url.data;
    if (!rc)
        rc = change_with_stats(api, &c, req, checksum_out, err);
    lf_json_free(req);
    lf_json_free(staging);
    lf_buf_free(&url);
    return rc;
}

/* .../branches/{branch}/staging/pmpu[/{id}[/parts/{n}]]?path= */
static int pmpu_url(struct lf_api *api, struct lf_buf *url, const char *repo, const char *branch,
                    const char *path, const char *id, const char *part)
{
    int rc = part ? url_path(api, url, "repositories", repo, "branches", branch, "staging",
                             "pmpu", id, "parts", part, NULL)
             : id ? url_path(api, url, "repositories", repo, "branches", branch, "staging",
                             "pmpu", id, NULL)
                  : url_path(api, url, "repositories", repo, "branches", branch, "staging",
                             "pmpu", NULL);
    return rc ? rc : url_query(url, "path", path);
}

int lf_api_pmpu_create(struct lf_api *api, const char *repo, const char *branch,
                       const char *path, struct lf_api_pmpu *out, struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT, answer = LF_BUF_INIT, empty = LF_BUF_INIT;
    struct lf_json *root = NULL;
    struct call c = {.op = "create presigned multipart upload", .repo = repo, .ref = branch,
                     .method = "POST", .change = true, .body = &empty};
    err_clear(err);
    int rc = pmpu_url(api, &url, repo, branch, path, NULL, NULL);
    c.url = url.data;
    if (!rc)
        rc = perform(api, &c, &answer, err);
    if (!rc) {
        rc = lf_api_parse_doc(answer.data, answer.len, &root);
        if (!rc)
            rc = lf_api_parse_pmpu(root, out);
        rc = malformed(&c, err, rc);
    }
    lf_json_free(root);
    lf_buf_free(&url);
    lf_buf_free(&answer);
    return rc;
}

int lf_api_pmpu_part_url(struct lf_api *api, const char *repo, const char *branch,
                         const char *path, const struct lf_api_pmpu *u, int number,
                         char url_out[LF_API_URL_MAX], struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT, body = LF_BUF_INIT, answer = LF_BUF_INIT;
    struct lf_json *req = lf_json_new_object(), *root = NULL;
    /* A PUT that creates nothing (a URL is signed): retried as a read. */
    struct call c = {.op = "presigned part URL", .repo = repo, .ref = branch, .method = "PUT",
                     .body = &body, .probe = number == 1};
    char num[16];
    snprintf(num, sizeof(num), "%d", number);
    err_clear(err);
    int rc = req ? 0 : -ENOMEM;
    if (!rc)
        rc = lf_json_set_str(req, "physical_address", u->physical_address);
    if (!rc)
        rc = lf_json_dump(req, &body);
    if (!rc)
        rc = pmpu_url(api, &url, repo, branch, path, u->upload_id, num);
    c.url = url.data;
    if (!rc)
        rc = perform(api, &c, &answer, err);
    if (!rc) {
        rc = lf_api_parse_doc(answer.data, answer.len, &root);
        if (!rc)
            rc = lf_api_parse_upload_to(root, url_out);
        rc = malformed(&c, err, rc);
    }
    lf_json_free(req);
    lf_json_free(root);
    lf_buf_free(&url);
    lf_buf_free(&body);
    lf_buf_free(&answer);
    return rc;
}

int lf_api_pmpu_complete(struct lf_api *api, const char *repo, const char *branch,
                         const char *path, const struct lf_api_pmpu *u,
                         const struct lf_api_part *parts, size_t nparts,
                         const struct lf_api_object *obj, char checksum_out[128],
                         struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT;
    struct lf_json *req = lf_json_new_object(), *arr = lf_json_new_array();
    struct call c = {.op = "complete presigned multipart upload", .repo = repo, .ref = branch,
                     .method = "PUT", .change = true};
    err_clear(err);
    int rc = req && arr ? 0 : -ENOMEM;
    for (size_t i = 0; !rc && i < nparts; i++) {
        struct lf_json *one = lf_json_new_object();
        rc = one ? lf_json_set_int(one, "part_number", parts[i].number) : -ENOMEM;
        if (!rc)
            rc = lf_json_set_str(one, "etag", parts[i].etag);
        if (!rc)
            rc = lf_json_push(arr, one);
        else
            lf_json_free(one);
    }
    if (!rc) {
        rc = lf_json_set(req, "parts", arr);
        arr = NULL;
    }
    if (!rc)
        rc = lf_json_set_str(req, "physical_address", u->physical_address);
    if (!rc)
        rc = object_fields(req, obj, false);
    if (!rc)
        rc = pmpu_url(api, &url, repo, branch, path, u->upload_id, NULL);
    c.url = url.data;
    if (!rc)
        rc = change_with_stats(api, &c, req, checksum_out, err);
    lf_json_free(req);
    lf_json_free(arr);
    lf_buf_free(&url);
    return rc;
}

int lf_api_pmpu_abort(struct lf_api *api, const char *repo, const char *branch,
                      const char *path, const struct lf_api_pmpu *u, struct lf_api_err *err)
{
    struct lf_buf url = LF_BUF_INIT, body = LF_BUF_INIT, answer = LF_BUF_INIT;
    struct lf_json *req = lf_json_new_object();
    /* Aborting twice is harmless (the second finds nothing): retried. */
    struct call c = {.op = "abort presigned multipart upload", .repo = repo, .ref = branch,
                     .method = "DELETE", .body = &body};
    err_clear(err);
    int rc = req ? 0 : -ENOMEM;
    if (!rc)
        rc = lf_json_set_str(req, "physical_address", u->physical_address);
    if (!rc)
        rc = lf_json_dump(req, &body);
    if (!rc)
        rc = pmpu_url(api, &url, repo, branch, path, u->upload_id, NULL);
    c.url = url.data;
    if (!rc)
        rc = perform(api, &c, &answer, err);
    lf_json_free(req);
    lf_buf_free(&url);
    lf_buf_free(&body);
    lf_buf_free(&answer);
    return rc;
}
