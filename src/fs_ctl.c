/* fs_ctl: versions from inside the mount. The versioning verbs (commit,
 * status, log, branch, reset, flush, refs) and stats run here, on the control
 * channel's threads, with the daemon's credentials; lakeFS's attributes
 * are read-only extended attributes.
 *
 * Who may do what: a ticket comes from a getxattr on PATH, which the
 * kernel lets through only for users who may use the mount (without
 * allow_other: its owner; with it, default_permissions also requires read
 * permission on PATH), and is honoured only for the user it was issued to.
 * Verbs that change the branch (commit, reset, branch, flush) also need
 * write permission on PATH as the mount shows it, unless the caller is the
 * mount's owner or root; a read-only mount refuses them.
 *
 * The upload barrier (commit, branch, flush): every staged file of the
 * branch with no writer left is uploaded first; files still open for
 * writing are left out and named. The barrier works on nodes, as close()
 * does (fs_flush_node), so a file's attributes and listing entry follow
 * its upload exactly as after a close.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "fs_int.h"
#include "lakefuse/api.h"
#include "lakefuse/ctl.h"
#include "lakefuse/log.h"
#include "lakefuse/metrics.h"
#include "lakefuse/uri.h"
#include "lakefuse/verbs.h"

#define TICKETS 32
#define TICKET_LIFE 60.0 /* seconds: one command, with a confirmation */

/* Where a ticket's PATH is: copied out of the nodes when it is issued, so
 * a verb needs no node (and none can go away under it). */
struct place {
    char *repo;      /* NULL above repositories */
    char *ref;       /* NULL above refs */
    char *path;      /* below the ref, mounted subdirectory included; "" at its root */
    bool is_dir;
    bool ref_root;   /* PATH is the ref's top directory (or the mount's, for a subdirectory) */
    mode_t mode;     /* as the mount shows PATH */
    uid_t owner;
    gid_t group;
};

struct ticket {
    char id[33];
    uid_t uid;
    double expiry;
    struct place where;
};

struct fs_ctl {
    struct lf_ctl *chan;
    pthread_mutex_t lock;
    struct ticket t[TICKETS];
    unsigned next;
};

static void place_free(struct place *p)
{
    free(p->repo);
    free(p->ref);
    free(p->path);
    memset(p, 0, sizeof(*p));
}

static int place_copy(struct place *dst, const struct place *src)
{
    *dst = *src;
    dst->repo = src->repo ? strdup(src->repo) : NULL;
    dst->ref = src->ref ? strdup(src->ref) : NULL;
    dst->path = src->path ? strdup(src->path) : NULL;
    if ((src->repo && !dst->repo) || (src->ref && !dst->ref) || (src->path && !dst->path)) {
        place_free(dst);
        return -ENOMEM;
    }
    return 0;
}

/* ---- tickets ----------------------------------------------------------------------- */

/* The place of node n. Lock held. */
static int place_of(struct lf_fs *fs, struct lf_node *n, struct place *p)
{
    struct stat st;
    struct lf_buf path = LF_BUF_INIT;
    int rc = 0;
    memset(p, 0, sizeof(*p));
    fs_fill_stat(fs, n, &st);
    p->mode = st.st_mode;
    p->owner = st.st_uid;
    p->group = st.st_gid;
    p->is_dir = n->kind != LF_FILE;
    if (n->kind == LF_ROOT)
        return 0;
    if (n->kind == LF_REPO) {
        p->repo = strdup(n->name);
        return p->repo ? 0 : -ENOMEM;
    }
    if ((rc = lf_meta_path(n, &path)) != 0)
        goto out;
    p->repo = strdup(n->ref->repo);
    p->ref = strdup(n->ref->name);
    /* fs->subdir is "a/b/" or "": the path below the ref, no trailing slash. */
    size_t sl = strlen(fs->subdir);
    int w = path.len ? asprintf(&p->path, "%s%s", fs->subdir, path.data)
                     : asprintf(&p->path, "%.*s", (int)(sl ? sl - 1 : 0), fs->subdir);
    if (w < 0)
        p->path = NULL;
    p->ref_root = n->kind == LF_REF;
    if (!p->repo || !p->ref || !p->path)
        rc = -ENOMEM;
out:
    lf_buf_free(&path);
    if (rc)
        place_free(p);
    return rc;
}

int fs_ctl_ticket(struct lf_fs *fs, struct lf_node *n, uid_t uid, char *out, size_t cap)
{
    struct fs_ctl *c = fs->ctl;
    unsigned char rnd[16];
    struct place p;
    if (!c)
        return -ENOTSUP;
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return -EAGAIN;
    lf_meta_lock(fs->meta);
    int rc = place_of(fs, n, &p);
    lf_meta_unlock(fs->meta);
    if (rc)
        return rc;
    pthread_mutex_lock(&c->lock);
    struct ticket *t = &c->t[c->next++ % TICKETS]; /* the oldest goes */
    place_free(&t->where);
    t->where = p;
    t->uid = uid;
    t->expiry = fs_now() + TICKET_LIFE;
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(t->id + 2 * i, 3, "%02x", rnd[i]);
    int len = snprintf(out, cap, "%s\n%s\n", lf_ctl_address(c->chan), t->id);
    pthread_mutex_unlock(&c->lock);
    return len < 0 || (size_t)len >= cap ? -ERANGE : len;
}

/* The place a request's ticket stands for, if the ticket is good for its
 * sender. */
static int redeem(struct fs_ctl *c, const struct lf_ctl_req *req, struct place *p)
{
    int rc = -EACCES;
    pthread_mutex_lock(&c->lock);
    for (unsigned i = 0; i < TICKETS; i++) {
        struct ticket *t = &c->t[i];
        if (t->id[0] && strcmp(t->id, req->ticket) == 0 && t->uid == req->uid &&
            t->expiry > fs_now()) {
            rc = place_copy(p, &t->where);
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* ---- helpers for the verbs ------------------------------------------------------------ */

struct verb_ctx {
    struct lf_fs *fs;
    const struct lf_ctl_req *req;
    struct lf_ctl_out *out;
    struct place where;
    const char *verb;
    char head[LF_COMMIT_ID_MAX]; /* the branch's head, as need_branch saw it */
};

static int fail(struct verb_ctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct verb_ctx *v, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lf_ctl_printf(v->out, 2, "lakefuse %s: %s\n", v->verb, msg);
    return 1;
}

static int api_fail(struct verb_ctx *v, const char *what, int rc, const struct lf_api_err *e)
{
    if (e->status)
        return fail(v, "%s: lakeFS says: %s (HTTP %ld)", what, e->message[0] ? e->message : "?",
                    e->status);
    return fail(v, "%s: %s%s%s", what, strerror(-rc), e->message[0] ? ": " : "", e->message);
}

static int need_ref(struct verb_ctx *v)
{
    if (!v->where.ref)
        return fail(v, "PATH is not inside a ref (mounts show REPO/REF/...; pick a path below a "
                       "branch, tag or commit)");
    if (!v->fs->api)
        return fail(v, "the lakeFS API is not available to this mount (see its log)");
    return 0;
}

/* The caller may change what PATH shows. */
static int need_write(struct verb_ctx *v)
{
    const struct place *p = &v->where;
    uid_t uid = v->req->uid;
    if (v->fs->cfg->read_only)
        return fail(v, "the mount is read-only");
    if (uid == 0 || uid == v->fs->uid)
        return 0;
    mode_t bit = uid == p->owner ? S_IWUSR : v->req->gid == p->group ? S_IWGRP : S_IWOTH;
    if (p->mode & bit)
        return 0;
    return fail(v, "permission denied: changing the branch needs write permission on PATH "
                   "(or being the mount's owner)");
}

/* PATH's ref must be a branch. */
static int need_branch(struct verb_ctx *v)
{
    enum lf_ref_type type;
    char commit[LF_COMMIT_ID_MAX];
    struct lf_api_err e = {0};
    int rc = lf_api_resolve(v->fs->api, v->where.repo, v->where.ref, &type, commit, &e);
    if (rc)
        return api_fail(v, v->where.ref, rc, &e);
    if (type != LF_REF_BRANCH)
        return fail(v, "%s is a %s, not a branch: only a branch has changes to %s",
                    v->where.ref, type == LF_REF_TAG ? "tag" : "commit", v->verb);
    memcpy(v->head, commit, sizeof(v->head));
    return 0;
}

/* A file this mount has staged or open, of the place's ref. */
struct staged {
    struct lf_node *n; /* pinned */
    struct lf_sfile *sf; /* referenced */
    char *path;        /* below the ref */
    bool open;         /* a writer still holds it */
    bool dirty;        /* an upload is pending */
    bool unsaved;      /* written since its last close or fsync */
    int err;           /* the barrier's upload */
};

struct staged_set {
    struct lf_fs *fs;
    const char *repo, *ref;
    const char *prefix; /* "" or "a/b/" or "a/b.txt" (exact) */
    bool exact;
    struct staged *v;
    size_t n, cap;
    int err;
};

static void collect_one(struct lf_node *n, void *arg)
{
    struct staged_set *s = arg;
    struct wstate *w = fs_wstate_of(n);
    struct lf_buf key = LF_BUF_INIT;
    if (!w || s->err || !n->ref || strcmp(n->ref->repo, s->repo) != 0 ||
        strcmp(n->ref->name, s->ref) != 0)
        return;
    if (fs_node_key(s->fs, n, false, &key) != 0) {
        s->err = -ENOMEM;
        return;
    }
    const char *path = key.data + strlen(s->ref) + 1;
    bool in = s->exact ? strcmp(path, s->prefix) == 0
                       : strncmp(path, s->prefix, strlen(s->prefix)) == 0;
    unsigned gen;
    bool dirty = lf_sfile_dirty_gen(w->sf, &gen);
    if (in && (dirty || w->writers > 0)) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 16;
            struct staged *nv = realloc(s->v, cap * sizeof(*nv));
            if (!nv) {
                s->err = -ENOMEM;
                goto out;
            }
            s->v = nv;
            s->cap = cap;
        }
        struct staged *e = &s->v[s->n];
        if (!(e->path = strdup(path))) {
            s->err = -ENOMEM;
            goto out;
        }
        e->n = n;
        e->sf = w->sf;
        e->open = w->writers > 0;
        e->dirty = dirty;
        /* Open and not synced since its last change: the kernel may even
         * hold written bytes we have not seen (writeback cache). */
        e->unsaved = e->open && !(w->synced && w->synced_gen == gen);
        e->err = 0;
        lf_meta_pin(n);
        lf_sfile_ref(w->sf);
        s->n++;
    }
out:
    lf_buf_free(&key);
}

static int cmp_staged(const void *a, const void *b)
{
    return strcmp(((const struct staged *)a)->path, ((const struct staged *)b)->path);
}

/* This mount's staged and open files of repo/ref under prefix, sorted. */
static int staged_collect(struct lf_fs *fs, struct staged_set *s)
{
    lf_meta_lock(fs->meta);
    lf_meta_for_each(fs->meta, collect_one, s);
    lf_meta_unlock(fs->meta);
    if (s->n)
        qsort(s->v, s->n, sizeof(*s->v), cmp_staged);
    return s->err;
}

static void staged_free(struct lf_fs *fs, struct staged_set *s)
{
    lf_meta_lock(fs->meta);
    for (size_t i = 0; i < s->n; i++) {
        lf_sfile_unref(s->v[i].sf);
        lf_meta_unpin(fs->meta, s->v[i].n);
    }
    lf_meta_unlock(fs->meta);
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].path);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* The upload barrier: uploads what waits and has no writer. Returns how
 * many failed (each named on stderr); open files are named as left out. */
static unsigned barrier(struct verb_ctx *v, struct staged_set *s, bool quiet_open)
{
    unsigned failed = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct staged *e = &s->v[i];
        if (e->unsaved) {
            if (!quiet_open)
                lf_ctl_printf(v->out, 2, "lakefuse %s: %s is open for writing: what was "
                              "written since its last close or fsync is not included\n",
                              v->verb, e->path);
            continue;
        }
        if (!e->dirty)
            continue;
        e->err = fs_flush_node(v->fs, e->n, e->sf);
        if (e->err) {
            failed++;
            lf_ctl_printf(v->out, 2, "lakefuse %s: cannot upload %s: %s (it stays staged)\n",
                          v->verb, e->path, strerror(-e->err));
        }
    }
    return failed;
}

/* ---- the verbs --------------------------------------------------------------------------- */

static int verb_where(struct verb_ctx *v)
{
    const struct place *p = &v->where;
    lf_ctl_printf(v->out, 1, "lakefs://%s%s%s%s%s%s\n", p->repo ? p->repo : "", p->ref ? "/" : "",
                  p->ref ? p->ref : "", p->path && p->path[0] ? "/" : "",
                  p->path ? p->path : "", p->is_dir && p->path && p->path[0] ? "/" : "");
    return 0;
}

/* What the diff and the barrier look at under PATH. */
static void scope_of(const struct place *p, char **prefix, bool *exact)
{
    *exact = !p->is_dir;
    if (p->is_dir && p->path[0]) {
        if (asprintf(prefix, "%s/", p->path) < 0)
            *prefix = NULL;
    } else {
        *prefix = strdup(p->path);
    }
}

static int verb_flush(struct verb_ctx *v)
{
    char *prefix;
    bool exact;
    int rc = need_ref(v) || need_write(v);
    if (rc)
        return rc;
    scope_of(&v->where, &prefix, &exact);
    if (!prefix)
        return fail(v, "out of memory");
    struct staged_set s = {.fs = v->fs, .repo = v->where.repo, .ref = v->where.ref,
                           .prefix = prefix, .exact = exact};
    rc = staged_collect(v->fs, &s);
    unsigned failed = rc ? 0 : barrier(v, &s, false);
    staged_free(v->fs, &s);
    free(prefix);
    if (rc)
        return fail(v, "%s", strerror(-rc));
    if (failed)
        return fail(v, "%u file%s not uploaded", failed, failed == 1 ? "" : "s");
    return 0;
}

/* After a commit whose answer never came: did it happen? The branch's
 * head moved from what it was to a commit with our message. */
static int first_commit(void *arg, const struct lf_api_commit *c)
{
    *(struct lf_api_commit *)arg = *c;
    return 0;
}

static bool commit_landed(struct verb_ctx *v, struct lf_api_commit *out)
{
    struct lf_api_commit c = {0};
    if (lf_api_log(v->fs->api, v->where.repo, v->where.ref, 1, first_commit, &c, NULL) != 0)
        return false;
    if (!c.id[0] || strcmp(c.id, v->head) == 0 || strcmp(c.message, v->req->argv[1]) != 0)
        return false;
    *out = c;
    return true;
}

static int verb_commit(struct verb_ctx *v)
{
    struct lf_api_kv meta[LF_CTL_MAX_ARGS];
    size_t nmeta = 0;
    char *kv_copy[LF_CTL_MAX_ARGS];
    int rc = need_ref(v) || need_write(v) || need_branch(v);
    if (rc)
        return rc;
    if (v->req->argc < 2)
        return fail(v, "missing message");
    /* The whole branch: a commit takes all of it, not just PATH. */
    struct staged_set s = {.fs = v->fs, .repo = v->where.repo, .ref = v->where.ref, .prefix = ""};
    rc = staged_collect(v->fs, &s);
    unsigned failed = rc ? 0 : barrier(v, &s, false);
    staged_free(v->fs, &s);
    if (rc)
        return fail(v, "%s", strerror(-rc));
    if (failed)
        return fail(v, "nothing committed: %u file%s could not be uploaded (above); they stay "
                       "staged, and the next commit or flush tries again",
                    failed, failed == 1 ? "" : "s");
    for (int i = 2; i < v->req->argc; i++) {
        char *kv = strdup(v->req->argv[i]);
        char *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq) {
            free(kv);
            rc = fail(v, "bad metadata '%s' (KEY=VALUE)", v->req->argv[i]);
            goto out;
        }
        *eq = '\0';
        kv_copy[nmeta] = kv;
        meta[nmeta].key = kv;
        meta[nmeta].value = eq + 1;
        nmeta++;
    }
    struct lf_api_commit c;
    struct lf_api_err e = {0};
    rc = lf_api_commit(v->fs->api, v->where.repo, v->where.ref, v->req->argv[1], meta, nmeta, &c,
                       &e);
    if (rc && e.status == 0 && commit_landed(v, &c)) {
        lf_warn("commit of %s/%s: the answer was lost, but the commit was made: %s",
                v->where.repo, v->where.ref, c.id);
        rc = 0;
    }
    if (rc) {
        rc = api_fail(v, "commit", rc, &e);
        goto out;
    }
    lf_info("committed %s/%s: %s", v->where.repo, v->where.ref, c.id);
    lf_ctl_printf(v->out, 1, "%s\n", c.id);
out:
    for (size_t i = 0; i < nmeta; i++)
        free(kv_copy[i]);
    return rc;
}

struct status_walk {
    struct verb_ctx *v;
    const char *exact; /* a file: only this path */
};

static int status_line(void *arg, enum lf_api_change kind, const char *path, bool is_prefix)
{
    struct status_walk *w = arg;
    static const char *const names[] = {"added", "changed", "removed", "conflict"};
    if (w->exact && strcmp(path, w->exact) != 0)
        return 0;
    return lf_ctl_printf(w->v->out, 1, "%s %s%s\n", names[kind], path, is_prefix ? "" : "");
}

static int verb_status(struct verb_ctx *v)
{
    char *prefix;
    bool exact;
    int rc = need_ref(v);
    if (rc)
        return rc;
    enum lf_ref_type type;
    char commit[LF_COMMIT_ID_MAX];
    struct lf_api_err e = {0};
    if ((rc = lf_api_resolve(v->fs->api, v->where.repo, v->where.ref, &type, commit, &e)) != 0)
        return api_fail(v, v->where.ref, rc, &e);
    if (type != LF_REF_BRANCH) {
        lf_ctl_printf(v->out, 2, "%s is a %s at %s: it has no uncommitted changes\n",
                      v->where.ref, type == LF_REF_TAG ? "tag" : "commit", commit);
        return 0;
    }
    scope_of(&v->where, &prefix, &exact);
    if (!prefix)
        return fail(v, "out of memory");
    struct status_walk w = {.v = v, .exact = exact ? prefix : NULL};
    rc = lf_api_diff_branch(v->fs->api, v->where.repo, v->where.ref, prefix, status_line, &w, &e);
    if (rc == -EPIPE) {
        free(prefix);
        return 1; /* the client went away */
    }
    if (rc) {
        free(prefix);
        return api_fail(v, "diff", rc, &e);
    }
    struct staged_set s = {.fs = v->fs, .repo = v->where.repo, .ref = v->where.ref,
                           .prefix = prefix, .exact = exact};
    rc = staged_collect(v->fs, &s);
    for (size_t i = 0; !rc && i < s.n; i++)
        if (s.v[i].dirty && !s.v[i].unsaved)
            lf_ctl_printf(v->out, 1, "pending %s\n", s.v[i].path);
    for (size_t i = 0; !rc && i < s.n; i++)
        if (s.v[i].open)
            lf_ctl_printf(v->out, 1, "open %s\n", s.v[i].path);
    staged_free(v->fs, &s);
    free(prefix);
    return rc ? fail(v, "%s", strerror(-rc)) : 0;
}

static int log_line(void *arg, const struct lf_api_commit *c)
{
    struct verb_ctx *v = arg;
    char date[32];
    struct tm tm;
    gmtime_r(&c->created, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* One line per commit: the message's first line. */
    int len = (int)strcspn(c->message, "\n");
    return lf_ctl_printf(v->out, 1, "%s %s %.*s\n", c->id, date, len, c->message);
}

static int verb_log(struct verb_ctx *v)
{
    int rc = need_ref(v);
    if (rc)
        return rc;
    unsigned long limit = v->req->argc > 1 ? strtoul(v->req->argv[1], NULL, 10) : 0;
    struct lf_api_err e = {0};
    rc = lf_api_log(v->fs->api, v->where.repo, v->where.ref, (unsigned)limit, log_line, v, &e);
    if (rc == -EPIPE)
        return 1;
    return rc ? api_fail(v, "log", rc, &e) : 0;
}

static int ref_line(void *arg, const char *name, const char *commit_id)
{
    struct verb_ctx *v = arg;
    return lf_ctl_printf(v->out, 1, "%s %s %s\n", v->verb, name, commit_id);
}

static int verb_refs(struct verb_ctx *v)
{
    struct lf_api_err e = {0};
    if (!v->where.repo)
        return fail(v, "PATH is not inside a repository");
    if (!v->fs->api)
        return fail(v, "the lakeFS API is not available to this mount (see its log)");
    const char *verb = v->verb;
    v->verb = "branch";
    int rc = lf_api_list_branches(v->fs->api, v->where.repo, ref_line, v, &e);
    v->verb = "tag";
    if (!rc)
        rc = lf_api_list_tags(v->fs->api, v->where.repo, ref_line, v, &e);
    v->verb = verb;
    if (rc == -EPIPE)
        return 1;
    return rc ? api_fail(v, "listing refs", rc, &e) : 0;
}

/* After a change of the repository's refs: the repository's directory
 * lists the new branch at once. */
static void show_new_branch(struct lf_fs *fs, const char *repo, const char *name)
{
    struct lf_node *root, *rn = NULL;
    uint64_t ino = 0;
    lf_meta_lock(fs->meta);
    root = lf_meta_root(fs->meta);
    if (root->kind == LF_REPO && strcmp(root->name, repo) == 0)
        rn = root;
    else if (root->kind == LF_ROOT)
        rn = lf_meta_child(fs->meta, root, repo);
    if (rn) {
        if (rn->listing)
            rn->listing->expiry = 0;
        ino = rn->ino;
    }
    lf_meta_unlock(fs->meta);
    if (ino && fs->se)
        fuse_lowlevel_notify_inval_entry(fs->se, ino, name, strlen(name));
}

static int verb_branch(struct verb_ctx *v)
{
    int rc = need_ref(v) || need_write(v);
    if (rc)
        return rc;
    if (v->req->argc < 2)
        return fail(v, "missing NEW_BRANCH");
    const char *name = v->req->argv[1];
    enum lf_ref_type type;
    char commit[LF_COMMIT_ID_MAX];
    struct lf_api_err e = {0};
    if ((rc = lf_api_resolve(v->fs->api, v->where.repo, v->where.ref, &type, commit, &e)) != 0)
        return api_fail(v, v->where.ref, rc, &e);
    if (type == LF_REF_BRANCH) {
        struct staged_set s = {.fs = v->fs, .repo = v->where.repo, .ref = v->where.ref,
                               .prefix = ""};
        rc = staged_collect(v->fs, &s);
        unsigned failed = rc ? 0 : barrier(v, &s, true);
        staged_free(v->fs, &s);
        if (rc || failed)
            return fail(v, "no branch created: %s", rc ? strerror(-rc) : "uploads failed");
    }
    char head[LF_COMMIT_ID_MAX] = "";
    rc = lf_api_create_branch(v->fs->api, v->where.repo, name, v->where.ref, head, &e);
    if (rc == -EEXIST)
        return fail(v, "a branch or tag named %s already exists", name);
    if (rc)
        return api_fail(v, "creating the branch", rc, &e);
    lf_info("created branch %s/%s from %s", v->where.repo, name, v->where.ref);
    show_new_branch(v->fs, v->where.repo, name);
    lf_ctl_printf(v->out, 1, "created branch %s at %s\n", name, head[0] ? head : commit);
    return 0;
}

/* The mount's counters: no ref and nothing changed, so any path of the
 * mount and any user the mount lets in. argv[1]: text or json. */
static int verb_stats(struct verb_ctx *v)
{
    struct lf_metrics m;
    struct lf_buf b = LF_BUF_INIT;
    const char *form = v->req->argc > 1 ? v->req->argv[1] : "text";
    fs_metrics(v->fs, &m);
    int rc = strcmp(form, "json") == 0   ? lf_metrics_json(&m, &b)
             : strcmp(form, "text") == 0 ? lf_metrics_text(&m, &b)
                                         : -EINVAL;
    if (!rc)
        lf_ctl_printf(v->out, 1, "%s", b.data);
    lf_buf_free(&b);
    return rc ? fail(v, "%s", rc == -EINVAL ? "unknown form" : strerror(-rc)) : 0;
}

/* ---- reset ---------------------------------------------------------------------------------- */

struct inval {
    uint64_t parent;
    char *name;
    uint64_t ino;     /* a file whose pages and attributes go */
};

struct inval_set {
    struct lf_fs *fs;
    const struct place *where;
    const char *prefix; /* exact file path, or "" / "a/b/" */
    bool exact;
    struct inval *v;
    size_t n, cap;
};

static int inval_add(struct inval_set *s, uint64_t parent, const char *name, uint64_t ino)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        struct inval *nv = realloc(s->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        s->v = nv;
        s->cap = cap;
    }
    if (!(s->v[s->n].name = strdup(name)))
        return -ENOMEM;
    s->v[s->n].parent = parent;
    s->v[s->n].ino = ino;
    s->n++;
    return 0;
}

/* Every node of the ref under the reset scope forgets what it knew, and
 * the kernel is told to drop its names, attributes and pages. Lock held. */
static void expire_node(struct lf_node *n, void *arg)
{
    struct inval_set *s = arg;
    struct lf_buf key = LF_BUF_INIT;
    if (!n->ref || n->kind == LF_REF || strcmp(n->ref->repo, s->where->repo) != 0 ||
        strcmp(n->ref->name, s->where->ref) != 0 || fs_node_key(s->fs, n, false, &key) != 0)
        goto out;
    const char *path = key.data + strlen(s->where->ref) + 1;
    size_t plen = strlen(s->prefix);
    bool in = s->exact ? strcmp(path, s->prefix) == 0
                       : strncmp(path, s->prefix, plen) == 0 ||
                             (plen && strncmp(path, s->prefix, plen - 1) == 0 &&
                              path[plen - 1] == '\0');
    if (!in)
        goto out;
    n->attr_expiry = 0;
    n->meta_known = false;
    n->cached_etag[0] = '\0';
    if (n->listing)
        n->listing->expiry = 0;
    if (n->parent)
        inval_add(s, n->parent->ino, n->name, n->kind == LF_FILE ? n->ino : 0);
out:
    lf_buf_free(&key);
}

/* Names that come back or go with the reset but have no node (a removed
 * file the kernel remembers as absent): their parents' listings and the
 * kernel's negative entries. */
static int reset_diff_entry(void *arg, enum lf_api_change kind, const char *path, bool is_prefix)
{
    struct inval_set *s = arg;
    struct lf_fs *fs = s->fs;
    if (s->exact && strcmp(path, s->prefix) != 0)
        return 0;
    /* Walk down from the ref's node as far as nodes exist. */
    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_root(fs->meta);
    if (n->kind == LF_ROOT)
        n = lf_meta_child(fs->meta, n, s->where->repo);
    if (n && n->kind == LF_REPO)
        n = lf_meta_child(fs->meta, n, s->where->ref);
    size_t sub = strlen(fs->subdir);
    const char *rest = strncmp(path, fs->subdir, sub) == 0 ? path + sub : NULL;
    while (n && rest && *rest) {
        size_t len = strcspn(rest, "/");
        char name[LF_NAME_MAX + 1];
        if (len > LF_NAME_MAX)
            break;
        memcpy(name, rest, len);
        name[len] = '\0';
        if (n->listing)
            n->listing->expiry = 0;
        inval_add(s, n->ino, name, 0);
        n = lf_meta_child(fs->meta, n, name);
        rest += len;
        rest += *rest == '/';
    }
    lf_meta_unlock(fs->meta);
    (void)kind;
    (void)is_prefix;
    return 0;
}

static int verb_reset(struct verb_ctx *v)
{
    char *prefix = NULL;
    bool exact;
    struct lf_api_err e = {0};
    struct staged_set s = {0};
    struct inval_set iv = {0};
    bool *was_dirty = NULL;
    int rc = need_ref(v) || need_write(v) || need_branch(v);
    if (rc)
        return rc;
    scope_of(&v->where, &prefix, &exact);
    if (!prefix)
        return fail(v, "out of memory");
    enum lf_api_reset type = exact ? LF_RESET_OBJECT : prefix[0] ? LF_RESET_PREFIX
                                                                 : LF_RESET_BRANCH;
    iv = (struct inval_set){.fs = v->fs, .where = &v->where, .prefix = prefix, .exact = exact};
    /* What changes, for the kernel's negative entries: read before. */
    rc = lf_api_diff_branch(v->fs->api, v->where.repo, v->where.ref, prefix, reset_diff_entry,
                            &iv, &e);
    if (rc) {
        rc = api_fail(v, "diff", rc, &e);
        goto out;
    }

    /* This mount's staged copies go too, except those a writer holds
     * (their writes would otherwise vanish at close). While the reset
     * runs they are marked changing, so no new writer picks them up. */
    s = (struct staged_set){.fs = v->fs, .repo = v->where.repo, .ref = v->where.ref,
                            .prefix = prefix, .exact = exact};
    if ((rc = staged_collect(v->fs, &s)) != 0) {
        rc = fail(v, "%s", strerror(-rc));
        goto out;
    }
    was_dirty = calloc(s.n ? s.n : 1, sizeof(*was_dirty));
    if (!was_dirty) {
        rc = fail(v, "out of memory");
        goto out;
    }
    lf_meta_lock(v->fs->meta);
    for (size_t i = 0; i < s.n; i++) {
        struct wstate *w = fs_wstate_of(s.v[i].n);
        s.v[i].open = !w || w->sf != s.v[i].sf || w->writers > 0;
        if (!s.v[i].open)
            fs_change_mark(s.v[i].n);
    }
    lf_meta_unlock(v->fs->meta);
    for (size_t i = 0; i < s.n; i++) {
        if (s.v[i].open)
            lf_ctl_printf(v->out, 2, "lakefuse reset: %s is open for writing: its staged "
                          "copy is kept (reset it again once it is closed)\n", s.v[i].path);
        else
            was_dirty[i] = lf_sfile_discard(s.v[i].sf);
    }
    rc = lf_api_reset(v->fs->api, v->where.repo, v->where.ref, type, prefix, &e);
    lf_meta_lock(v->fs->meta);
    for (size_t i = 0; i < s.n; i++) {
        if (s.v[i].open)
            continue;
        if (rc)
            lf_sfile_restore(s.v[i].sf, was_dirty[i]);
        fs_change_unmark(v->fs, s.v[i].n);
        fs_wstate_settle(v->fs, s.v[i].n);
    }
    if (!rc)
        lf_meta_for_each(v->fs->meta, expire_node, &iv);
    lf_meta_unlock(v->fs->meta);
    if (rc) {
        rc = api_fail(v, "reset", rc, &e);
        goto out;
    }
    /* The kernel's view, outside every lock: a notification may wait for
     * the kernel's own inode locks. */
    for (size_t i = 0; v->fs->se && i < iv.n; i++) {
        struct inval *x = &iv.v[i];
        if (x->ino)
            fuse_lowlevel_notify_inval_inode(v->fs->se, x->ino, 0, 0);
        /* Expired, not dropped: the next use asks us again, and a
         * directory that still exists stays valid for whoever is in it
         * (dropping it would leave their working directory unlinked). */
        int r = fuse_lowlevel_notify_expire_entry(v->fs->se, x->parent, x->name,
                                                  strlen(x->name), FUSE_LL_EXPIRE_ONLY);
        if (r == -ENOSYS && x->ino)
            fuse_lowlevel_notify_inval_entry(v->fs->se, x->parent, x->name, strlen(x->name));
    }
    lf_info("reset %s/%s %s", v->where.repo, v->where.ref, prefix[0] ? prefix : "(all)");
out:
    staged_free(v->fs, &s);
    for (size_t i = 0; i < iv.n; i++)
        free(iv.v[i].name);
    free(iv.v);
    free(was_dirty);
    free(prefix);
    return rc;
}

/* ---- the channel ---------------------------------------------------------------------------- */

static int handle(void *arg, const struct lf_ctl_req *req, struct lf_ctl_out *out)
{
    static const struct {
        const char *name;
        int (*fn)(struct verb_ctx *v);
    } verbs[] = {{"where", verb_where},   {"commit", verb_commit}, {"status", verb_status},
                 {"log", verb_log},       {"branch", verb_branch}, {"reset", verb_reset},
                 {"flush", verb_flush},   {"refs", verb_refs},     {"stats", verb_stats}};
    struct lf_fs *fs = arg;
    struct verb_ctx v = {.fs = fs, .req = req, .out = out, .verb = req->argv[0]};
    if (redeem(fs->ctl, req, &v.where) != 0) {
        lf_warn("control request '%s' from pid %d (uid %u): no valid ticket", req->argv[0],
                (int)req->pid, (unsigned)req->uid);
        return fail(&v, "the mount did not recognise this request (expired? run it again)");
    }
    int rc = -1;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(verbs[i].name, req->argv[0]) == 0)
            rc = verbs[i].fn(&v);
    if (rc < 0)
        rc = fail(&v, "unknown verb");
    place_free(&v.where);
    return rc;
}

int fs_ctl_start(struct lf_fs *fs)
{
    struct fs_ctl *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    fs->ctl = c;
    c->chan = lf_ctl_start(handle, fs);
    if (!c->chan) {
        fs->ctl = NULL;
        pthread_mutex_destroy(&c->lock);
        free(c);
        lf_warn("no control channel: commit, status and the other verbs will not work");
        return -EIO;
    }
    return 0;
}

void fs_ctl_stop(struct lf_fs *fs)
{
    struct fs_ctl *c = fs->ctl;
    if (!c)
        return;
    lf_ctl_stop(c->chan);
    fs->ctl = NULL;
    for (unsigned i = 0; i < TICKETS; i++)
        place_free(&c->t[i].where);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- lakeFS's attributes as xattrs ------------------------------------------------------ */

#define XATTR_PREFIX "user.lakefs."
/* Metadata keys lakefuse itself uses for POSIX attributes (lakefuse/s3). */
static bool own_meta_key(const char *k)
{
    static const char *const own[] = {"mode", "uid", "gid", "mtime", "mtime-nsec"};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (strcmp(k, own[i]) == 0)
            return true;
    return false;
}

/* A user-metadata key as users know it: lakeFS keeps the gateway's
 * header name (X-Amz-Meta-Color); the xattr is user.lakefs.meta.color. */
static void meta_name(const char *stored, char *out, size_t cap)
{
    if (strncasecmp(stored, "x-amz-meta-", 11) == 0)
        stored += 11;
    size_t i = 0;
    for (; stored[i] && i + 1 < cap; i++)
        out[i] = (char)tolower((unsigned char)stored[i]);
    out[i] = '\0';
}

/* Appends one name or value to an answer being built. */
static int put(struct lf_buf *b, const char *s, bool nul)
{
    int rc = lf_buf_append(b, s, strlen(s));
    return rc || !nul ? rc : lf_buf_append(b, "", 1);
}

/* The attributes of a place: names (list) or one value (name). */
static int lakefs_attrs(struct lf_fs *fs, const struct place *p, const char *name,
                        struct lf_buf *out)
{
    struct lf_api_err e = {0};
    bool list = name == NULL;
    if (!p->ref || !fs->api)
        return -ENODATA;
    if (p->ref_root) {
        if (list)
            return put(out, XATTR_PREFIX "commit_id", true) ||
                   put(out, XATTR_PREFIX "ref_type", true) ? -ENOMEM : 0;
        bool cid = strcmp(name, XATTR_PREFIX "commit_id") == 0;
        if (!cid && strcmp(name, XATTR_PREFIX "ref_type") != 0)
            return -ENODATA;
        enum lf_ref_type type;
        char commit[LF_COMMIT_ID_MAX];
        int rc = lf_api_resolve(fs->api, p->repo, p->ref, &type, commit, &e);
        if (rc)
            return rc == -ENOENT ? -ENODATA : -EIO;
        static const char *const types[] = {"branch", "tag", "commit"};
        return put(out, cid ? commit : types[type], false) ? -ENOMEM : 0;
    }
    if (p->is_dir)
        return -ENODATA;
    struct lf_api_stat *st = malloc(sizeof(*st));
    if (!st)
        return -ENOMEM;
    int rc = lf_api_stat(fs->api, p->repo, p->ref, p->path, st, &e);
    if (rc) {
        rc = rc == -ENOENT ? -ENODATA : -EIO;
        goto out;
    }
    if (list) {
        rc = put(out, XATTR_PREFIX "etag", true);
        if (!rc && st->content_type[0])
            rc = put(out, XATTR_PREFIX "content_type", true);
    } else if (strcmp(name, XATTR_PREFIX "etag") == 0) {
        rc = put(out, st->checksum, false);
    } else if (strcmp(name, XATTR_PREFIX "content_type") == 0) {
        rc = st->content_type[0] ? put(out, st->content_type, false) : -ENODATA;
    } else {
        rc = -ENODATA;
    }
    for (size_t i = 0; i < st->nmeta && (list ? rc == 0 : rc == -ENODATA); i++) {
        char k[160];
        meta_name(st->meta[i].key, k, sizeof(k));
        if (own_meta_key(k))
            continue;
        if (list) {
            rc = put(out, XATTR_PREFIX "meta.", false) || put(out, k, true) ? -ENOMEM : 0;
        } else if (strncmp(name, XATTR_PREFIX "meta.", strlen(XATTR_PREFIX "meta.")) == 0 &&
                   strcmp(name + strlen(XATTR_PREFIX "meta."), k) == 0) {
            rc = put(out, st->meta[i].value, false);
        }
    }
out:
    free(st);
    return rc;
}

/* The answer to a getxattr or listxattr: an error, the size asked for
 * (size 0), ERANGE, or the bytes. */
static void reply_xattr(fuse_req_t req, int rc, const struct lf_buf *b, size_t size)
{
    if (rc)
        fuse_reply_err(req, -rc);
    else if (size == 0)
        fuse_reply_xattr(req, b->len);
    else if (size < b->len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, b->data, b->len);
}

/* The node's place, or an errno. */
static int place_of_ino(struct lf_fs *fs, fuse_ino_t ino, struct place *p)
{
    lf_meta_lock(fs->meta);
    struct lf_node *n = lf_meta_get(fs->meta, ino);
    int rc = n ? place_of(fs, n, p) : -ENOENT;
    lf_meta_unlock(fs->meta);
    return rc;
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct lf_fs *fs = fuse_req_userdata(req);
    struct lf_buf b = LF_BUF_INIT;
    struct place p = {0};
    int rc;
    if (strcmp(name, LF_CTL_XATTR) == 0) {
        char t[256];
        lf_meta_lock(fs->meta);
        struct lf_node *n = lf_meta_get(fs->meta, ino);
        if (n)
            lf_meta_pin(n);
        lf_meta_unlock(fs->meta);
        rc = n ? fs_ctl_ticket(fs, n, fuse_req_ctx(req)->uid, t, sizeof(t)) : -ENOENT;
        if (n) {
            lf_meta_lock(fs->meta);
            lf_meta_unpin(fs->meta, n);
            lf_meta_unlock(fs->meta);
        }
        if (rc >= 0)
            rc = lf_buf_append(&b, t, (size_t)rc);
    } else if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0) {
        rc = -ENODATA; /* security.*, system.posix_acl_*: none here, and no request */
    } else if ((rc = place_of_ino(fs, ino, &p)) == 0) {
        rc = lakefs_attrs(fs, &p, name, &b);
    }
    reply_xattr(req, rc, &b, size);
    place_free(&p);
    lf_buf_free(&b);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct lf_fs *fs = fuse_req_userdata(req);
    struct lf_buf b = LF_BUF_INIT;
    struct place p = {0};
    int rc = place_of_ino(fs, ino, &p);
    if (!rc)
        rc = lakefs_attrs(fs, &p, NULL, &b);
    if (rc == -ENODATA)
        rc = 0; /* no attributes: an empty list */
    reply_xattr(req, rc, &b, size);
    place_free(&p);
    lf_buf_free(&b);
}
