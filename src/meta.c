/* meta: two chained hash tables over the same nodes (by inode number, and
 * by parent + name), and listings as growable arrays in key order. */
#include "lakefuse/meta.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lakefuse/log.h"
#include "lakefuse/uri.h"

struct lf_meta {
    pthread_mutex_t lock;
    struct lf_node **by_ino, **by_name;
    size_t nbuckets, count;
    uint64_t next_ino;
    struct lf_node *root;
    void (*release)(struct lf_node *n);
};

static uint64_t hash_name(uint64_t parent, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ (parent * 0x9e3779b97f4a7c15ull);
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static size_t slot(const struct lf_meta *m, uint64_t h)
{
    return (size_t)((h ^ (h >> 29)) & (m->nbuckets - 1));
}

static void insert(struct lf_meta *m, struct lf_node *n)
{
    size_t i = slot(m, n->ino * 0x9e3779b97f4a7c15ull);
    n->next_ino = m->by_ino[i];
    m->by_ino[i] = n;
    if (n->parent) {
        size_t j = slot(m, n->name_hash);
        n->next_name = m->by_name[j];
        m->by_name[j] = n;
    }
    m->count++;
}

static int grow(struct lf_meta *m)
{
    size_t nb = m->nbuckets * 2;
    struct lf_node **bi = calloc(nb, sizeof(*bi)), **bn = calloc(nb, sizeof(*bn));
    if (!bi || !bn) {
        free(bi);
        free(bn);
        return -ENOMEM;
    }
    struct lf_node **oi = m->by_ino;
    size_t ob = m->nbuckets;
    free(m->by_name);
    m->by_ino = bi;
    m->by_name = bn;
    m->nbuckets = nb;
    m->count = 0;
    for (size_t i = 0; i < ob; i++) {
        struct lf_node *n = oi[i];
        while (n) {
            struct lf_node *next = n->next_ino;
            bool named = n->next_name != n; /* detached nodes point to self */
            insert(m, n);
            if (!named && n->parent) {
                /* Keep detached nodes out of the name table. */
                size_t j = slot(m, n->name_hash);
                m->by_name[j] = n->next_name;
                n->next_name = n;
            }
            n = next;
        }
    }
    free(oi);
    return 0;
}

static void unlink_name(struct lf_meta *m, struct lf_node *n)
{
    if (!n->parent || n->next_name == n)
        return;
    struct lf_node **pp = &m->by_name[slot(m, n->name_hash)];
    while (*pp && *pp != n)
        pp = &(*pp)->next_name;
    if (*pp)
        *pp = n->next_name;
    n->next_name = n;
}

static void unlink_ino(struct lf_meta *m, struct lf_node *n)
{
    struct lf_node **pp = &m->by_ino[slot(m, n->ino * 0x9e3779b97f4a7c15ull)];
    while (*pp && *pp != n)
        pp = &(*pp)->next_ino;
    if (*pp)
        *pp = n->next_ino;
    m->count--;
}

static struct lf_node *node_alloc(struct lf_meta *m, struct lf_node *parent,
                                  const char *name, enum lf_kind kind,
                                  struct lf_refinfo *ref)
{
    struct lf_node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->name = strdup(name);
    if (!n->name) {
        free(n);
        return NULL;
    }
    n->ino = m->next_ino++;
    n->parent = parent;
    n->kind = kind;
    n->ref = ref;
    if (ref)
        lf_refinfo_get(ref);
    if (parent) {
        n->name_hash = hash_name(parent->ino, name);
        parent->pins++;
    }
    return n;
}

static void node_free(struct lf_meta *m, struct lf_node *n)
{
    if (n->priv && m->release)
        m->release(n);
    lf_listing_put(n->listing);
    lf_refinfo_put(n->ref);
    free(n->name);
    free(n);
}

struct lf_meta *lf_meta_new(enum lf_kind root_kind, const char *root_name,
                            struct lf_refinfo *root_ref)
{
    struct lf_meta *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->nbuckets = 4096;
    m->by_ino = calloc(m->nbuckets, sizeof(*m->by_ino));
    m->by_name = calloc(m->nbuckets, sizeof(*m->by_name));
    m->next_ino = 1;
    if (m->by_ino && m->by_name)
        m->root = node_alloc(m, NULL, root_name ? root_name : "", root_kind, root_ref);
    if (!m->root) {
        free(m->by_ino);
        free(m->by_name);
        free(m);
        return NULL;
    }
    m->root->nlookup = 1; /* never forgotten */
    insert(m, m->root);
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void lf_meta_free(struct lf_meta *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct lf_node *n = m->by_ino[i];
        while (n) {
            struct lf_node *next = n->next_ino;
            node_free(m, n);
            n = next;
        }
    }
    pthread_mutex_destroy(&m->lock);
    free(m->by_ino);
    free(m->by_name);
    free(m);
}

void lf_meta_lock(struct lf_meta *m) { pthread_mutex_lock(&m->lock); }
void lf_meta_unlock(struct lf_meta *m) { pthread_mutex_unlock(&m->lock); }
struct lf_node *lf_meta_root(struct lf_meta *m) { return m->root; }
size_t lf_meta_count(struct lf_meta *m) { return m->count; }

struct lf_node *lf_meta_get(struct lf_meta *m, uint64_t ino)
{
    for (struct lf_node *n = m->by_ino[slot(m, ino * 0x9e3779b97f4a7c15ull)]; n; n = n->next_ino)
        if (n->ino == ino)
            return n;
    return NULL;
}

struct lf_node *lf_meta_child(struct lf_meta *m, struct lf_node *parent, const char *name)
{
    uint64_t h = hash_name(parent->ino, name);
    for (struct lf_node *n = m->by_name[slot(m, h)]; n; n = n->next_name)
        if (n->name_hash == h && n->parent == parent && strcmp(n->name, name) == 0)
            return n;
    return NULL;
}

struct lf_node *lf_meta_child_get(struct lf_meta *m, struct lf_node *parent,
                                  const char *name, enum lf_kind kind,
                                  struct lf_refinfo *ref)
{
    struct lf_node *n = lf_meta_child(m, parent, name);
    if (n && n->kind == kind)
        return n;
    if (n)
        lf_meta_detach(m, n);
    if (m->count >= m->nbuckets && grow(m) != 0)
        return NULL;
    n = node_alloc(m, parent, name, kind, ref);
    if (n)
        insert(m, n);
    return n;
}

struct lf_node *lf_meta_child_detached(struct lf_meta *m, struct lf_node *parent,
                                       const char *name, enum lf_kind kind,
                                       struct lf_refinfo *ref)
{
    if (m->count >= m->nbuckets && grow(m) != 0)
        return NULL;
    struct lf_node *n = node_alloc(m, parent, name, kind, ref);
    if (n) {
        insert(m, n);
        unlink_name(m, n);
    }
    return n;
}

static void maybe_free(struct lf_meta *m, struct lf_node *n)
{
    while (n && n != m->root && n->nlookup == 0 && n->pins == 0) {
        struct lf_node *parent = n->parent;
        unlink_name(m, n);
        unlink_ino(m, n);
        node_free(m, n);
        if (!parent)
            break;
        parent->pins--;
        n = parent;
    }
}

void lf_meta_forget(struct lf_meta *m, struct lf_node *n, uint64_t count)
{
    n->nlookup = count > n->nlookup ? 0 : n->nlookup - count;
    maybe_free(m, n);
}

void lf_meta_pin(struct lf_node *n) { n->pins++; }

void lf_meta_unpin(struct lf_meta *m, struct lf_node *n)
{
    if (n->pins > 0)
        n->pins--;
    maybe_free(m, n);
}

void lf_meta_detach(struct lf_meta *m, struct lf_node *n) { unlink_name(m, n); }

void lf_meta_for_each(struct lf_meta *m, void (*fn)(struct lf_node *n, void *arg), void *arg)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct lf_node *n = m->by_ino[i]; n; n = n->next_ino)
            fn(n, arg);
}

bool lf_meta_attached(const struct lf_node *n) { return !n->parent || n->next_name != n; }

void lf_meta_wait(struct lf_meta *m, pthread_cond_t *c) { pthread_cond_wait(c, &m->lock); }

void lf_meta_set_release(struct lf_meta *m, void (*fn)(struct lf_node *n)) { m->release = fn; }

int lf_meta_move(struct lf_meta *m, struct lf_node *n, struct lf_node *newparent,
                 const char *newname)
{
    char *name = strdup(newname);
    if (!name)
        return -ENOMEM;
    struct lf_node *old = lf_meta_child(m, newparent, newname);
    if (old && old != n)
        unlink_name(m, old);
    unlink_name(m, n);
    struct lf_node *oldparent = n->parent;
    free(n->name);
    n->name = name;
    n->parent = newparent;
    newparent->pins++;
    n->name_hash = hash_name(newparent->ino, name);
    size_t j = slot(m, n->name_hash);
    n->next_name = m->by_name[j];
    m->by_name[j] = n;
    if (oldparent->pins > 0)
        oldparent->pins--;
    maybe_free(m, oldparent);
    return 0;
}

int lf_meta_path(const struct lf_node *n, struct lf_buf *out)
{
    const struct lf_node *chain[512];
    size_t depth = 0;
    lf_buf_reset(out);
    for (const struct lf_node *p = n; p && (p->kind == LF_DIR || p->kind == LF_FILE);
         p = p->parent) {
        if (depth == sizeof(chain) / sizeof(chain[0]))
            return -ENAMETOOLONG;
        chain[depth++] = p;
    }
    if (lf_buf_reserve(out, 0))
        return -ENOMEM;
    while (depth > 0) {
        const struct lf_node *p = chain[--depth];
        if ((out->len && lf_buf_append(out, "/", 1)) || lf_buf_puts(out, p->name))
            return -ENOMEM;
    }
    return 0;
}

struct lf_refinfo *lf_refinfo_new(const char *repo, const char *name, bool immutable,
                                  bool writable)
{
    struct lf_refinfo *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->repo = strdup(repo);
    r->name = strdup(name);
    if (!r->repo || !r->name) {
        free(r->repo);
        free(r->name);
        free(r);
        return NULL;
    }
    r->refs = 1;
    r->immutable = immutable;
    r->writable = writable;
    return r;
}

void lf_refinfo_get(struct lf_refinfo *r) { __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED); }

void lf_refinfo_put(struct lf_refinfo *r)
{
    if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(r->repo);
        free(r->name);
        free(r);
    }
}

/* ---- listings ---------------------------------------------------------- */

struct lf_listing *lf_listing_new(void)
{
    struct lf_listing *l = calloc(1, sizeof(*l));
    if (l)
        l->refs = 1;
    return l;
}

void lf_listing_get(struct lf_listing *l) { __atomic_add_fetch(&l->refs, 1, __ATOMIC_RELAXED); }

void lf_listing_put(struct lf_listing *l)
{
    if (!l || __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].name);
    free(l->v);
    free(l);
}

/* Key order: a directory compares as its name followed by '/', as its
 * prefix does in the gateway's answer. */
static int key_cmp(const char *a, bool a_dir, const char *b, bool b_dir)
{
    size_t na = strlen(a), nb = strlen(b);
    size_t la = na + a_dir, lb = nb + b_dir;
    for (size_t i = 0;; i++) {
        int ca = i < na ? (unsigned char)a[i] : (i < la ? '/' : -1);
        int cb = i < nb ? (unsigned char)b[i] : (i < lb ? '/' : -1);
        if (ca != cb)
            return ca - cb;
        if (ca == -1)
            return 0;
    }
}

static size_t lower(const struct lf_listing *l, const char *name, bool is_dir);

static int reserve(struct lf_listing *l, size_t extra)
{
    if (l->n + extra <= l->cap)
        return 0;
    size_t cap = l->cap ? l->cap : 64;
    while (cap < l->n + extra)
        cap *= 2;
    struct lf_dent *v = realloc(l->v, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    l->v = v;
    l->cap = cap;
    return 0;
}

static int push(struct lf_listing *l, const char *name, size_t len, bool is_dir,
                const struct lf_obj_attr *attr)
{
    char *copy = strndup(name, len);
    if (!copy)
        return -ENOMEM;
    struct lf_dent *d = &l->v[l->n++];
    d->name = copy;
    d->is_dir = is_dir;
    if (attr)
        d->attr = *attr;
    else
        memset(&d->attr, 0, sizeof(d->attr));
    return 0;
}

static bool usable(const char *dir_prefix, const char *key, const char *name, size_t len)
{
    if (lf_name_is_valid_segment(name, len))
        return true;
    lf_warn("listing of '%s': skipping key '%.300s': not a usable file name "
            "(empty, '.', '..' or longer than 255 bytes)", dir_prefix, key);
    return false;
}

/* A file and a directory of one name: the directory wins. They need not
 * be neighbours ("data" < "data-2024/" < "data/", as '-' sorts before
 * '/'), nor on one page, so each looks the other up in what is listed
 * so far (kept in key order). Returns whether name is to be skipped. */
static bool resolve_clash(struct lf_listing *l, const char *name, size_t len, bool is_dir)
{
    char *n = strndup(name, len);
    if (!n)
        return false;
    size_t i = lower(l, n, !is_dir);
    bool clash = i < l->n && l->v[i].is_dir == !is_dir && strcmp(l->v[i].name, n) == 0;
    free(n);
    if (!clash || !is_dir)
        return clash;
    free(l->v[i].name); /* the file listed earlier gives way */
    memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
    l->n--;
    return false;
}

int lf_listing_add_page(struct lf_listing *l, const char *dir_prefix,
                        const struct lf_list_page *page)
{
    size_t plen = strlen(dir_prefix), ie = 0, ip = 0;
    if (reserve(l, page->nentries + page->nprefixes))
        return -ENOMEM;
    while (ie < page->nentries || ip < page->nprefixes) {
        const char *ek = ie < page->nentries ? page->entries[ie].key : NULL;
        const char *pk = ip < page->nprefixes ? page->prefixes[ip] : NULL;
        bool take_prefix = !ek || (pk && strcmp(pk, ek) < 0);
        const char *key = take_prefix ? pk : ek;
        if (strncmp(key, dir_prefix, plen) != 0) {
            lf_warn("listing of '%s': ignoring key '%.300s' outside the prefix", dir_prefix, key);
        } else if (take_prefix) {
            const char *name = key + plen;
            size_t len = strlen(name);
            if (len > 0 && name[len - 1] == '/')
                len--;
            if (usable(dir_prefix, key, name, len) && !resolve_clash(l, name, len, true) &&
                push(l, name, len, true, NULL))
                return -ENOMEM;
        } else {
            const char *name = key + plen;
            size_t len = strlen(name);
            /* The directory's own "dir/" marker is not an entry. A file
             * and a directory of one name: the directory wins (it was or
             * will be listed as a prefix next to it). */
            bool shadowed = pk && strncmp(pk, key, strlen(key)) == 0 &&
                            strlen(pk) == strlen(key) + 1 && pk[strlen(key)] == '/';
            if (len > 0 && !shadowed && usable(dir_prefix, key, name, len) &&
                !resolve_clash(l, name, len, false) &&
                push(l, name, len, false, &page->entries[ie].attr))
                return -ENOMEM;
        }
        if (take_prefix)
            ip++;
        else
            ie++;
    }
    return 0;
}

static size_t lower(const struct lf_listing *l, const char *name, bool is_dir)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (key_cmp(l->v[mid].name, l->v[mid].is_dir, name, is_dir) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const struct lf_dent *lf_listing_find(const struct lf_listing *l, const char *name)
{
    for (int dir = 1; dir >= 0; dir--) {
        size_t i = lower(l, name, dir);
        if (i < l->n && l->v[i].is_dir == dir && strcmp(l->v[i].name, name) == 0)
            return &l->v[i];
    }
    return NULL;
}

/* Makes *lp private to the caller's node before a change. */
static int listing_unshare(struct lf_listing **lp)
{
    struct lf_listing *l = *lp;
    /* A handle lets go of its snapshot without the lock (releasedir): an
     * acquire, so its last reads come before our edits in place. */
    if (__atomic_load_n(&l->refs, __ATOMIC_ACQUIRE) == 1)
        return 0;
    struct lf_listing *c = lf_listing_new();
    if (!c || reserve(c, l->n + 1)) {
        lf_listing_put(c);
        return -ENOMEM;
    }
    for (size_t i = 0; i < l->n; i++)
        if (push(c, l->v[i].name, strlen(l->v[i].name), l->v[i].is_dir, &l->v[i].attr)) {
            lf_listing_put(c);
            return -ENOMEM;
        }
    c->complete = l->complete;
    c->expiry = l->expiry;
    c->started = l->started;
    c->changes = l->changes;
    lf_listing_put(l);
    *lp = c;
    return 0;
}

int lf_listing_upsert(struct lf_listing **lp, const char *name, bool is_dir,
                      const struct lf_obj_attr *attr)
{
    int rc = listing_unshare(lp);
    if (rc)
        return rc;
    struct lf_listing *l = *lp;
    size_t i = lower(l, name, is_dir);
    if (i < l->n && l->v[i].is_dir == is_dir && strcmp(l->v[i].name, name) == 0) {
        if (attr)
            l->v[i].attr = *attr;
        return 0;
    }
    if (reserve(l, 1))
        return -ENOMEM;
    memmove(&l->v[i + 1], &l->v[i], (l->n - i) * sizeof(*l->v));
    l->n++;
    size_t save = l->n;
    l->n = i;
    rc = push(l, name, strlen(name), is_dir, attr);
    l->n = save;
    if (rc) {
        memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
        l->n--;
    }
    return rc;
}

int lf_listing_remove(struct lf_listing **lp, const char *name, bool is_dir)
{
    int rc = listing_unshare(lp);
    if (rc)
        return rc;
    struct lf_listing *l = *lp;
    size_t i = lower(l, name, is_dir);
    if (i < l->n && l->v[i].is_dir == is_dir && strcmp(l->v[i].name, name) == 0) {
        free(l->v[i].name);
        memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
        l->n--;
    }
    return 0;
}
