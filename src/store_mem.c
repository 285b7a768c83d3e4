/* store_mem: an in-memory object store behind the lf_store interface.
 *
 * It exists so the caches, readahead and staging logic can be tested
 * without sockets, with exact call counts and injected failures. It keeps
 * S3's semantics that matter to those layers (sorted keys, delimiter
 * listings with continuation tokens, ETags as MD5 and multipart ETags,
 * ranged reads) and nothing lakeFS-specific: refs are just the first key
 * segment. One mutex; clarity over speed.
 */
#include "lakefuse/store.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct mem_obj {
    char *bucket;
    char *key;
    unsigned char *data;
    size_t len;
    struct lf_obj_attr attr;
};

struct mem_upload {
    char *id;
    char *bucket;
    char *key;
    struct lf_put_meta meta;
    unsigned char *parts[10001];
    size_t part_len[10001];
    struct mem_upload *next;
};

struct lf_mem_store {
    struct lf_store view;
    pthread_mutex_t lock;
    char **buckets;
    size_t nbuckets;
    struct mem_obj **objs; /* sorted by (bucket, key) */
    size_t nobjs, capobjs;
    struct mem_upload *uploads;
    unsigned long next_upload;
    unsigned long calls[LF_MEM_NOPS];
    uint64_t bytes_out;
    int fail_err[LF_MEM_NOPS];
    unsigned fail_count[LF_MEM_NOPS];
    unsigned delay_us;
    uint64_t break_after;
    int break_err;
    unsigned break_count;
    time_t clock;
};

static int cmp_bk(const char *b1, const char *k1, const char *b2, const char *k2)
{
    int c = strcmp(b1, b2);
    return c ? c : strcmp(k1, k2);
}

/* First index whose (bucket, key) >= (bucket, key). */
static size_t lower_bound(struct lf_mem_store *m, const char *bucket, const char *key)
{
    size_t lo = 0, hi = m->nobjs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp_bk(m->objs[mid]->bucket, m->objs[mid]->key, bucket, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct mem_obj *find(struct lf_mem_store *m, const char *bucket, const char *key)
{
    size_t i = lower_bound(m, bucket, key);
    if (i < m->nobjs && cmp_bk(m->objs[i]->bucket, m->objs[i]->key, bucket, key) == 0)
        return m->objs[i];
    return NULL;
}

static int has_bucket(struct lf_mem_store *m, const char *bucket)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        if (strcmp(m->buckets[i], bucket) == 0)
            return 1;
    return 0;
}

static void md5_hex(const void *p, size_t n, char out[33])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    EVP_Digest(p, n, d, &dl, EVP_md5(), NULL);
    for (unsigned i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void obj_free(struct mem_obj *o)
{
    if (!o)
        return;
    free(o->bucket);
    free(o->key);
    free(o->data);
    free(o);
}

/* Stores (takes ownership of) data under bucket/key, replacing any old. */
static int store_obj(struct lf_mem_store *m, const char *bucket, const char *key,
                     unsigned char *data, size_t len, const struct lf_put_meta *meta,
                     const char *etag)
{
    struct mem_obj *o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    o->bucket = strdup(bucket);
    o->key = strdup(key);
    if (!o->bucket || !o->key) {
        obj_free(o);
        return -ENOMEM;
    }
    o->data = data;
    o->len = len;
    o->attr.size = len;
    snprintf(o->attr.etag, sizeof(o->attr.etag), "%s", etag);
    o->attr.last_modified = ++m->clock;
    if (meta) {
        o->attr.has = meta->has;
        o->attr.mode = meta->mode;
        o->attr.uid = meta->uid;
        o->attr.gid = meta->gid;
        o->attr.mtime = meta->mtime;
    }
    size_t i = lower_bound(m, bucket, key);
    if (i < m->nobjs && cmp_bk(m->objs[i]->bucket, m->objs[i]->key, bucket, key) == 0) {
        obj_free(m->objs[i]);
        m->objs[i] = o;
        return 0;
    }
    if (m->nobjs == m->capobjs) {
        size_t cap = m->capobjs ? m->capobjs * 2 : 64;
        struct mem_obj **p = realloc(m->objs, cap * sizeof(*p));
        if (!p) {
            o->data = NULL;
            obj_free(o);
            return -ENOMEM;
        }
        m->objs = p;
        m->capobjs = cap;
    }
    memmove(m->objs + i + 1, m->objs + i, (m->nobjs - i) * sizeof(*m->objs));
    m->objs[i] = o;
    m->nobjs++;
    return 0;
}

/* Counts the call, applies the delay and any injected failure. Called
 * with the lock held; returns the injected error or 0. */
static int enter(struct lf_mem_store *m, enum lf_mem_op op)
{
    m->calls[op]++;
    if (m->delay_us) {
        unsigned us = m->delay_us;
        pthread_mutex_unlock(&m->lock);
        usleep(us);
        pthread_mutex_lock(&m->lock);
    }
    if (m->fail_count[op] > 0) {
        m->fail_count[op]--;
        return m->fail_err[op];
    }
    return 0;
}

static int mem_list_buckets(void *ctx, char ***names, size_t *n)
{
    struct lf_mem_store *m = ctx;
    int rc;
    pthread_mutex_lock(&m->lock);
    rc = enter(m, LF_MEM_LIST_BUCKETS);
    if (rc)
        goto out;
    *names = calloc(m->nbuckets + 1, sizeof(char *));
    if (!*names) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < m->nbuckets; i++)
        (*names)[i] = strdup(m->buckets[i]);
    *n = m->nbuckets;
out:
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int page_add_prefix(struct lf_list_page *p, const char *s, size_t n)
{
    char **np = realloc(p->prefixes, (p->nprefixes + 1) * sizeof(*np));
    if (!np)
        return -ENOMEM;
    p->prefixes = np;
    np[p->nprefixes] = strndup(s, n);
    if (!np[p->nprefixes])
        return -ENOMEM;
    p->nprefixes++;
    return 0;
}

static int page_add_entry(struct lf_list_page *p, const struct mem_obj *o)
{
    struct lf_list_entry *ne = realloc(p->entries, (p->nentries + 1) * sizeof(*ne));
    if (!ne)
        return -ENOMEM;
    p->entries = ne;
    ne[p->nentries].key = strdup(o->key);
    if (!ne[p->nentries].key)
        return -ENOMEM;
    /* Listings carry no user metadata, as on the real gateway. */
    ne[p->nentries].attr = o->attr;
    ne[p->nentries].attr.has = 0;
    p->nentries++;
    return 0;
}

static int mem_list(void *ctx, const char *bucket, const char *prefix,
                    const char *delimiter, const char *token, unsigned max_keys,
                    struct lf_list_page *out)
{
    struct lf_mem_store *m = ctx;
    size_t plen = strlen(prefix), emitted = 0;
    const char *last = NULL;
    size_t last_len = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (max_keys == 0 || max_keys > 1000)
        max_keys = 1000;
    pthread_mutex_lock(&m->lock);
    rc = enter(m, LF_MEM_LIST);
    if (rc)
        goto out;
    if (!has_bucket(m, bucket)) {
        rc = -ENOENT;
        goto out;
    }
    size_t i = lower_bound(m, bucket, token && *token ? token : prefix);
    size_t tlen = token ? strlen(token) : 0;
    if (tlen && delimiter && *delimiter && tlen >= strlen(delimiter) &&
        strcmp(token + tlen - strlen(delimiter), delimiter) == 0) {
        /* A page that ended on a common prefix goes on after its sub-tree. */
        char *after = strdup(token);
        if (!after) {
            rc = -ENOMEM;
            goto out;
        }
        after[tlen - 1]++;
        i = lower_bound(m, bucket, after);
        free(after);
    } else if (tlen && i < m->nobjs && strcmp(m->objs[i]->bucket, bucket) == 0 &&
               strcmp(m->objs[i]->key, token) == 0) {
        i++;
    }
    while (i < m->nobjs) {
        struct mem_obj *o = m->objs[i];
        if (strcmp(o->bucket, bucket) != 0 || strncmp(o->key, prefix, plen) != 0)
            break;
        if (emitted == max_keys) {
            out->truncated = true;
            out->next_token = strndup(last, last_len);
            if (!out->next_token)
                rc = -ENOMEM;
            break;
        }
        const char *d = delimiter && *delimiter ? strstr(o->key + plen, delimiter) : NULL;
        if (d) {
            size_t cplen = (size_t)(d - o->key) + strlen(delimiter);
            rc = page_add_prefix(out, o->key, cplen);
            if (rc)
                break;
            last = out->prefixes[out->nprefixes - 1];
            last_len = cplen;
            /* Skip the whole sub-tree: its keys all start with the prefix. */
            char *after = strndup(o->key, cplen);
            if (!after) {
                rc = -ENOMEM;
                break;
            }
            after[cplen - 1]++;
            i = lower_bound(m, bucket, after);
            free(after);
        } else {
            rc = page_add_entry(out, o);
            if (rc)
                break;
            last = o->key;
            last_len = strlen(o->key);
            i++;
        }
        emitted++;
    }
out:
    pthread_mutex_unlock(&m->lock);
    if (rc)
        lf_list_page_free(out);
    return rc;
}

static int mem_head(void *ctx, const char *bucket, const char *key, struct lf_obj_attr *out)
{
    struct lf_mem_store *m = ctx;
    pthread_mutex_lock(&m->lock);
    int rc = enter(m, LF_MEM_HEAD);
    if (!rc) {
        struct mem_obj *o = find(m, bucket, key);
        if (o)
            *out = o->attr;
        else
            rc = -ENOENT;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int mem_get(void *ctx, const char *bucket, const char *key, uint64_t off,
                   const struct iovec *iov, int iovcnt, const char *etag,
                   size_t *got, const struct lf_read_ctl *ctl)
{
    struct lf_mem_store *m = ctx;
    pthread_mutex_lock(&m->lock);
    int rc = enter(m, LF_MEM_GET);
    if (rc)
        goto out;
    struct mem_obj *o = find(m, bucket, key);
    if (!o) {
        rc = -ENOENT;
        goto out;
    }
    if (etag && *etag && !lf_etag_same(etag, o->attr.etag)) {
        rc = -ESTALE;
        goto out;
    }
    if (off >= o->len && !(off == 0 && o->len == 0)) {
        rc = -ERANGE;
        goto out;
    }
    size_t pos = (size_t)off, n = 0;
    for (int i = 0; i < iovcnt && pos < o->len; i++) {
        size_t k = o->len - pos < iov[i].iov_len ? o->len - pos : iov[i].iov_len;
        memcpy(iov[i].iov_base, o->data + pos, k);
        pos += k;
        n += k;
    }
    m->bytes_out += n;
    *got = n;
out:
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* A stream is the range copied into a memfd at open, spliced from there:
 * the same system call a socket's body takes. */
struct mem_stream {
    struct lf_stream base;
    struct lf_mem_store *m;
    int fd;
    loff_t pos;
    uint64_t len;
    uint64_t break_at; /* UINT64_MAX: never */
    int break_err;
};

static int mem_stream_splice(struct lf_stream *st, int pipe_fd, size_t n,
                             const struct lf_read_ctl *ctl, size_t *moved)
{
    struct mem_stream *x = (struct mem_stream *)st;
    *moved = 0;
    if ((uint64_t)x->pos + n > x->len)
        return -EINVAL;
    while (*moved < n) {
        if (ctl && ctl->cancelled && ctl->cancelled(ctl->arg))
            return -EINTR;
        if ((uint64_t)x->pos >= x->break_at)
            return x->break_err;
        size_t want = n - *moved;
        if ((uint64_t)x->pos + want > x->break_at)
            want = (size_t)(x->break_at - (uint64_t)x->pos);
        ssize_t r = splice(x->fd, &x->pos, pipe_fd, NULL, want, SPLICE_F_NONBLOCK);
        if (r > 0) {
            *moved += (size_t)r;
            pthread_mutex_lock(&x->m->lock);
            x->m->bytes_out += (uint64_t)r;
            pthread_mutex_unlock(&x->m->lock);
        } else if (r < 0 && errno == EAGAIN) {
            return -ENOBUFS;
        } else if (!(r < 0 && errno == EINTR)) {
            return r == 0 ? -EPROTO : -errno;
        }
    }
    return 0;
}

static void mem_stream_close(struct lf_stream *st)
{
    struct mem_stream *x = (struct mem_stream *)st;
    if (!x)
        return;
    close(x->fd);
    free(x);
}

static const struct lf_stream_ops MEM_STREAM_OPS = {
    .splice = mem_stream_splice,
    .close = mem_stream_close,
};

static int mem_get_stream(void *ctx, const char *bucket, const char *key, uint64_t off,
                          uint64_t len, const char *etag, const struct lf_read_ctl *ctl,
                          struct lf_stream **out)
{
    struct lf_mem_store *m = ctx;
    struct mem_stream *x = NULL;
    *out = NULL;
    pthread_mutex_lock(&m->lock);
    int rc = enter(m, LF_MEM_GET_STREAM);
    struct mem_obj *o = rc ? NULL : find(m, bucket, key);
    if (!rc && !o)
        rc = -ENOENT;
    if (!rc && etag && *etag && !lf_etag_same(etag, o->attr.etag))
        rc = -ESTALE;
    if (!rc && (len == 0 || off > o->len || len > o->len - off))
        rc = -EPROTO;
    if (!rc && !(x = calloc(1, sizeof(*x))))
        rc = -ENOMEM;
    if (!rc && (x->fd = memfd_create("lf-mem-stream", MFD_CLOEXEC)) < 0) {
        rc = -errno;
        free(x);
        x = NULL;
    }
    for (uint64_t done = 0; !rc && done < len;) {
        ssize_t w = write(x->fd, o->data + off + done, (size_t)(len - done));
        if (w <= 0)
            rc = w < 0 ? -errno : -EIO;
        else
            done += (uint64_t)w;
    }
    if (!rc) {
        x->base.ops = &MEM_STREAM_OPS;
        x->m = m;
        x->len = len;
        x->break_at = UINT64_MAX;
        if (m->break_count > 0) {
            m->break_count--;
            x->break_at = m->break_after;
            x->break_err = m->break_err;
        }
        *out = &x->base;
        x = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    if (x)
        mem_stream_close(&x->base);
    return rc;
}

static int read_body(const struct lf_body *b, unsigned char **data)
{
    unsigned char *p = malloc(b->len ? b->len : 1);
    if (!p)
        return -ENOMEM;
    if (b->mem) {
        memcpy(p, b->mem, b->len);
    } else {
        uint64_t done = 0;
        while (done < b->len) {
            ssize_t r = pread(b->fd, p + done, b->len - done, b->off + (off_t)done);
            if (r <= 0) {
                free(p);
                return r < 0 ? -errno : -EIO;
            }
            done += (uint64_t)r;
        }
    }
    *data = p;
    return 0;
}

static int mem_put(void *ctx, const char *bucket, const char *key,
                   const struct lf_body *body, const struct lf_put_meta *meta,
                   enum lf_put_cond cond, char etag_out[LF_ETAG_MAX])
{
    struct lf_mem_store *m = ctx;
    unsigned char *data = NULL;
    char etag[33];
    int rc = read_body(body, &data);
    if (rc)
        return rc;
    md5_hex(data, body->len, etag);
    pthread_mutex_lock(&m->lock);
    rc = enter(m, LF_MEM_PUT);
    int torn = rc == -EBADMSG ? rc : 0; /* stored, then told so */
    if (torn)
        rc = 0;
    if (!rc && !has_bucket(m, bucket))
        rc = -ENOENT;
    if (!rc && cond == LF_PUT_IF_ABSENT && find(m, bucket, key))
        rc = -EEXIST;
    if (!rc)
        rc = store_obj(m, bucket, key, data, body->len, meta, etag);
    pthread_mutex_unlock(&m->lock);
    if (!rc && torn)
        return torn; /* data now the store's */
    if (rc)
        free(data);
    else if (etag_out)
        snprintf(etag_out, LF_ETAG_MAX, "%s", etag);
    return rc;
}

static int mem_copy(void *ctx, const char *bucket, const char *src_key,
                    const char *dst_key, const struct lf_put_meta *meta,
                    char etag_out[LF_ETAG_MAX])
{
    struct lf_mem_store *m = ctx;
    pthread_mutex_lock(&m->lock);
    int rc = enter(m, LF_MEM_COPY);
    struct mem_obj *src = rc ? NULL : find(m, bucket, src_key);
    if (!rc && !src)
        rc = -ENOENT;
    if (!rc) {
        unsigned char *data = malloc(src->len ? src->len : 1);
        struct lf_put_meta keep = {.has = src->attr.has, .mode = src->attr.mode,
                                   .uid = src->attr.uid, .gid = src->attr.gid,
                                   .mtime = src->attr.mtime};
        char etag[LF_ETAG_MAX];
        snprintf(etag, sizeof(etag), "%s", src->attr.etag);
        if (!data) {
            rc = -ENOMEM;
        } else {
            memcpy(data, src->data, src->len);
            rc = store_obj(m, bucket, dst_key, data, src->len, meta ? meta : &keep, etag);
            if (rc)
                free(data);
            else if (etag_out)
                snprintf(etag_out, LF_ETAG_MAX, "%s", etag);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int mem_remove(void *ctx, const char *bucket, const char *key, const char *etag)
{
    (void)etag; /* answers are never lost here */
    struct lf_mem_store *m = ctx;
    pthread_mutex_lock(&m->lock);
    int rc = enter(m, LF_MEM_REMOVE);
    if (!rc) {
        size_t i = lower_bound(m, bucket, key);
        if (i < m->nobjs && cmp_bk(m->objs[i]->bucket, m->objs[i]->key, bucket, key) == 0) {
            obj_free(m->objs[i]);
            memmove(m->objs + i, m->objs + i + 1, (m->nobjs - i - 1) * sizeof(*m->objs));
            m->nobjs--;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static struct mem_upload *find_upload(struct lf_mem_store *m, const char *id,
                                      struct mem_upload ***link)
{
    for (struct mem_upload **u = &m->uploads; *u; u = &(*u)->next)
        if (strcmp((*u)->id, id) == 0) {
            if (link)
                *link = u;
            return *u;
        }
    return NULL;
}

static void upload_free(struct mem_upload *u)
{
    for (int i = 0; i <= 10000; i++)
        free(u->parts[i]);
    free(u->id);
    free(u->bucket);
    free(u->key);
    free(u);
}

static int mem_mpu_create(void *ctx, const char *bucket, const char *key,
                          const struct lf_put_meta *meta, char **upload_id)
{
    struct lf_mem_store *m = ctx;
    pthread_mutex_lock(&m->lock);
    int rc = enter(m, LF_MEM_MPU_CREATE);
    if (!rc && !has_bucket(m, bucket))
        rc = -ENOENT;
    if (!rc) {
        struct mem_upload *u = calloc(1, sizeof(*u));
        char id[32];
        snprintf(id, sizeof(id), "upload-%lu", ++m->next_upload);
        if (u) {
            u->id = strdup(id);
            u->bucket = strdup(bucket);
            u->key = strdup(key);
        }
        if (!u || !u->id || !u->bucket || !u->key) {
            if (u)
                upload_free(u);
            rc = -ENOMEM;
        } else {
            if (meta)
                u->meta = *meta;
            u->meta.content_type = NULL;
            u->next = m->uploads;
            m->uploads = u;
            *upload_id = strdup(id);
            if (!*upload_id)
                rc = -ENOMEM;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int mem_mpu_part(void *ctx, const char *bucket, const char *key,
                        const char *upload_id, int number, const struct lf_body *body,
                        char etag_out[LF_ETAG_MAX])
{
    struct lf_mem_store *m = ctx;
    unsigned char *data = NULL;
    char etag[33];
    if (number < 1 || number > 10000)
        return -EINVAL;
    int rc = read_body(body, &data);
    if (rc)
        return rc;
    md5_hex(data, body->len, etag);
    pthread_mutex_lock(&m->lock);
    rc = enter(m, LF_MEM_MPU_PART);
    struct mem_upload *u = rc ? NULL : find_upload(m, upload_id, NULL);
    if (!rc && !u)
        rc = -ENOENT;
    if (!rc) {
        free(u->parts[number]);
        u->parts[number] = data;
        u->part_len[number] = body->len;
        data = NULL;
        snprintf(etag_out, LF_ETAG_MAX, "%s", etag);
    }
    pthread_mutex_unlock(&m->lock);
    free(data);
    return rc;
}

static int mem_mpu_complete(void *ctx, const char *bucket, const char *key,
                            const char *upload_id, const struct lf_part *parts,
                            size_t nparts, enum lf_put_cond cond,
                            const struct lf_put_meta *meta, char etag_out[LF_ETAG_MAX])
{
    (void)meta; /* as S3: the create's metadata stays */
    struct lf_mem_store *m = ctx;
    struct mem_upload **link = NULL;
    unsigned char *data = NULL;
    pthread_mutex_lock(&m->lock);
    int rc = enter(m, LF_MEM_MPU_COMPLETE);
    struct mem_upload *u = rc ? NULL : find_upload(m, upload_id, &link);
    if (!rc && !u)
        rc = -ENOENT;
    if (!rc && cond == LF_PUT_IF_ABSENT && find(m, bucket, key))
        rc = -EEXIST; /* the upload stays open, as on the gateway */
    size_t total = 0;
    for (size_t i = 0; !rc && i < nparts; i++) {
        int n = parts[i].number;
        if (n < 1 || n > 10000 || !u->parts[n] || (i > 0 && n <= parts[i - 1].number))
            rc = -EINVAL;
        else if (i + 1 < nparts && u->part_len[n] < 5u * 1024 * 1024)
            rc = -EINVAL; /* EntityTooSmall */
        else
            total += u->part_len[n];
    }
    if (!rc && !(data = malloc(total ? total : 1)))
        rc = -ENOMEM;
    if (!rc) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned dl = 0;
        size_t pos = 0;
        EVP_DigestInit_ex(md, EVP_md5(), NULL);
        for (size_t i = 0; i < nparts; i++) {
            int n = parts[i].number;
            EVP_Digest(u->parts[n], u->part_len[n], d, &dl, EVP_md5(), NULL);
            EVP_DigestUpdate(md, d, 16);
            memcpy(data + pos, u->parts[n], u->part_len[n]);
            pos += u->part_len[n];
        }
        EVP_DigestFinal_ex(md, d, &dl);
        EVP_MD_CTX_free(md);
        char etag[LF_ETAG_MAX];
        for (unsigned i = 0; i < 16; i++)
            sprintf(etag + 2 * i, "%02x", d[i]);
        snprintf(etag + 32, sizeof(etag) - 32, "-%zu", nparts);
        rc = store_obj(m, bucket, key, data, total, &u->meta, etag);
        if (!rc) {
            data = NULL;
            snprintf(etag_out, LF_ETAG_MAX, "%s", etag);
            *link = u->next;
            upload_free(u);
        }
    }
    pthread_mutex_unlock(&m->lock);
    free(data);
    return rc;
}

static int mem_mpu_abort(void *ctx, const char *bucket, const char *key,
                         const char *upload_id)
{
    struct lf_mem_store *m = ctx;
    struct mem_upload **link = NULL;
    pthread_mutex_lock(&m->lock);
    int rc = enter(m, LF_MEM_MPU_ABORT);
    struct mem_upload *u = rc ? NULL : find_upload(m, upload_id, &link);
    if (!rc && !u)
        rc = -ENOENT;
    if (!rc) {
        *link = u->next;
        upload_free(u);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static void mem_destroy(void *ctx) { (void)ctx; /* owned by lf_mem_store_free */ }

static const struct lf_store_ops mem_ops = {
    .list_buckets = mem_list_buckets,
    .list = mem_list,
    .head = mem_head,
    .get = mem_get,
    .get_stream = mem_get_stream,
    .put = mem_put,
    .copy = mem_copy,
    .remove = mem_remove,
    .mpu_create = mem_mpu_create,
    .mpu_part = mem_mpu_part,
    .mpu_complete = mem_mpu_complete,
    .mpu_abort = mem_mpu_abort,
    .destroy = mem_destroy,
};

struct lf_mem_store *lf_mem_store_new(void)
{
    struct lf_mem_store *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->view.ops = &mem_ops;
    m->view.ctx = m;
    m->clock = 1700000000;
    return m;
}

struct lf_store *lf_mem_store_view(struct lf_mem_store *m) { return &m->view; }

void lf_mem_store_free(struct lf_mem_store *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nobjs; i++)
        obj_free(m->objs[i]);
    for (size_t i = 0; i < m->nbuckets; i++)
        free(m->buckets[i]);
    while (m->uploads) {
        struct mem_upload *u = m->uploads;
        m->uploads = u->next;
        upload_free(u);
    }
    free(m->objs);
    free(m->buckets);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int lf_mem_store_add_bucket(struct lf_mem_store *m, const char *bucket)
{
    pthread_mutex_lock(&m->lock);
    int rc = 0;
    char **nb = realloc(m->buckets, (m->nbuckets + 1) * sizeof(*nb));
    if (!nb || !(nb[m->nbuckets] = strdup(bucket)))
        rc = -ENOMEM;
    if (nb)
        m->buckets = nb;
    if (!rc)
        m->nbuckets++;
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int lf_mem_store_put(struct lf_mem_store *m, const char *bucket, const char *key,
                     const void *data, size_t len)
{
    struct lf_body b = {.mem = data, .len = len};
    int rc = mem_put(m, bucket, key, &b, NULL, LF_PUT_ANY, NULL);
    pthread_mutex_lock(&m->lock);
    m->calls[LF_MEM_PUT]--; /* set-up is not a request */
    pthread_mutex_unlock(&m->lock);
    return rc;
}

const void *lf_mem_store_data(struct lf_mem_store *m, const char *bucket,
                              const char *key, size_t *len)
{
    pthread_mutex_lock(&m->lock);
    struct mem_obj *o = find(m, bucket, key);
    const void *p = o ? o->data : NULL;
    *len = o ? o->len : 0;
    pthread_mutex_unlock(&m->lock);
    return p;
}

unsigned long lf_mem_store_calls(struct lf_mem_store *m, enum lf_mem_op op)
{
    pthread_mutex_lock(&m->lock);
    unsigned long n = m->calls[op];
    pthread_mutex_unlock(&m->lock);
    return n;
}

uint64_t lf_mem_store_bytes_out(struct lf_mem_store *m)
{
    pthread_mutex_lock(&m->lock);
    uint64_t n = m->bytes_out;
    pthread_mutex_unlock(&m->lock);
    return n;
}

void lf_mem_store_reset_calls(struct lf_mem_store *m)
{
    pthread_mutex_lock(&m->lock);
    memset(m->calls, 0, sizeof(m->calls));
    m->bytes_out = 0;
    pthread_mutex_unlock(&m->lock);
}

void lf_mem_store_fail(struct lf_mem_store *m, enum lf_mem_op op, int err, unsigned count)
{
    pthread_mutex_lock(&m->lock);
    m->fail_err[op] = err;
    m->fail_count[op] = count;
    pthread_mutex_unlock(&m->lock);
}

void lf_mem_store_break_streams(struct lf_mem_store *m, uint64_t after, int err,
                                unsigned count)
{
    pthread_mutex_lock(&m->lock);
    m->break_after = after;
    m->break_err = err;
    m->break_count = count;
    pthread_mutex_unlock(&m->lock);
}

void lf_mem_store_set_delay_us(struct lf_mem_store *m, unsigned us)
{
    pthread_mutex_lock(&m->lock);
    m->delay_us = us;
    pthread_mutex_unlock(&m->lock);
}

size_t lf_mem_store_open_uploads(struct lf_mem_store *m)
{
    size_t n = 0;
    pthread_mutex_lock(&m->lock);
    for (struct mem_upload *u = m->uploads; u; u = u->next)
        n++;
    pthread_mutex_unlock(&m->lock);
    return n;
}
