/* meta: listings in key order, lookups, copy-on-write updates, and node
 * lifetimes under lookups, pins and forgets. */
#include "check.h"
#include "lakefuse/meta.h"
#include "lakefuse/store.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

static struct lf_list_entry entry(const char *key, uint64_t size)
{
    struct lf_list_entry e;
    memset(&e, 0, sizeof(e));
    e.key = (char *)key;
    e.attr.size = size;
    snprintf(e.attr.etag, sizeof(e.attr.etag), "etag-%s", key);
    return e;
}

static void test_page_merge_and_find(void)
{
    /* Key order as the gateway sends it: "a.txt" < "a/" < "b". */
    struct lf_list_entry entries[] = {
        entry("main/d/", 0),        /* the directory's own marker */
        entry("main/d/a", 1),       /* shadowed by the directory a/ */
        entry("main/d/a.txt", 2),
        entry("main/d/b", 3),
        entry("main/d/..", 4),      /* not a file name */
    };
    char *prefixes[] = {"main/d/a/", "main/d/c/", "main/d//"};
    struct lf_list_page page = {.entries = entries, .nentries = 5,
                                .prefixes = prefixes, .nprefixes = 3};
    struct lf_listing *l = lf_listing_new();
    CHECK_INT(lf_listing_add_page(l, "main/d/", &page), 0);
    CHECK_INT(l->n, 4);
    const char *want[] = {"a.txt", "a", "b", "c"};
    for (size_t i = 0; i < l->n && i < 4; i++)
        CHECK_STR(l->v[i].name, want[i]);
    const struct lf_dent *d = lf_listing_find(l, "a");
    CHECK(d && d->is_dir);
    d = lf_listing_find(l, "b");
    CHECK(d && !d->is_dir && d->attr.size == 3);
    CHECK(lf_listing_find(l, "a.txt") != NULL);
    CHECK(lf_listing_find(l, "zz") == NULL);
    CHECK(lf_listing_find(l, "") == NULL);
    lf_listing_put(l);
}

/* Lists dir_prefix of the in-memory store in pages of page_keys keys. */
static struct lf_listing *list_all(struct lf_mem_store *m, const char *prefix, unsigned page_keys)
{
    struct lf_store *st = lf_mem_store_view(m);
    struct lf_listing *l = lf_listing_new();
    char *token = NULL;
    do {
        struct lf_list_page page;
        CHECK_INT(st->ops->list(st->ctx, "r", prefix, "/", token, page_keys, &page), 0);
        CHECK_INT(lf_listing_add_page(l, prefix, &page), 0);
        free(token);
        token = page.truncated ? page.next_token : NULL;
        if (token)
            page.next_token = NULL;
        lf_list_page_free(&page);
    } while (token);
    return l;
}

/* "data" < "data-2024/" < "data.txt" < "data/": the file and the directory
 * named data are not neighbours in the answer, and with small pages not on
 * one page either. One entry, the directory, whatever the paging. */
static void test_file_and_directory_of_one_name(void)
{
    struct lf_mem_store *m = lf_mem_store_new();
    CHECK_INT(lf_mem_store_add_bucket(m, "r"), 0);
    const char *keys[] = {"main/data", "main/data-2024/x", "main/data.txt", "main/data/y",
                          "main/z"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        CHECK_INT(lf_mem_store_put(m, "r", keys[i], "x", 1), 0);
    unsigned pages[] = {1, 2, 3, 1000};
    for (size_t p = 0; p < sizeof(pages) / sizeof(pages[0]); p++) {
        struct lf_listing *l = list_all(m, "main/", pages[p]);
        const char *want[] = {"data-2024", "data.txt", "data", "z"};
        const bool dir[] = {true, false, true, false};
        CHECK_INT(l->n, 4);
        for (size_t i = 0; i < l->n && i < 4; i++) {
            CHECK_STR(l->v[i].name, want[i]);
            CHECK(l->v[i].is_dir == dir[i]);
        }
        const struct lf_dent *d = lf_listing_find(l, "data");
        CHECK(d && d->is_dir);
        lf_listing_put(l);
    }
    lf_mem_store_free(m);
}

static void test_copy_on_write(void)
{
    struct lf_list_entry entries[] = {entry("r/x", 1), entry("r/z", 2)};
    struct lf_list_page page = {.entries = entries, .nentries = 2};
    struct lf_listing *l = lf_listing_new();
    CHECK_INT(lf_listing_add_page(l, "r/", &page), 0);
    struct lf_listing *shared = l;
    lf_listing_get(shared); /* an open directory handle */
    struct lf_obj_attr a = {.size = 9};
    CHECK_INT(lf_listing_upsert(&l, "y", false, &a), 0);
    CHECK(l != shared);
    CHECK_INT(shared->n, 2);
    CHECK_INT(l->n, 3);
    CHECK_STR(l->v[1].name, "y");
    CHECK_INT(lf_listing_upsert(&l, "y", true, NULL), 0); /* a dir "y" sorts after file y */
    CHECK_INT(l->n, 4);
    CHECK(lf_listing_find(l, "y")->is_dir);
    CHECK_INT(lf_listing_remove(&l, "y", true), 0);
    CHECK(!lf_listing_find(l, "y")->is_dir);
    CHECK_INT(lf_listing_remove(&l, "x", false), 0);
    CHECK_INT(l->n, 2);
    CHECK_STR(l->v[0].name, "y");
    lf_listing_put(shared);
    lf_listing_put(l);
}

/* A directory handle reads its snapshot of the listing with no lock held
 * and lets go of it (fs_dir_release) outside the metadata lock; the
 * directory's next change (fs_listing_note, under the lock) then finds
 * the node's listing unshared and edits it in place. Nothing but the
 * listing's reference count orders the two: the handle's turn ends with
 * a relaxed store, which synchronises nothing. */
#define SNAPSHOTS 200

struct snapshot_reader {
    struct lf_listing *handed[SNAPSHOTS]; /* each handle's snapshot, published (release) */
    size_t want_n[SNAPSHOTS];             /* its size when handed */
    unsigned released;                    /* handles done (relaxed) */
    unsigned bad;
};

static void *read_snapshots(void *arg)
{
    struct snapshot_reader *sr = arg;
    for (int i = 0; i < SNAPSHOTS; i++) {
        struct lf_listing *l;
        while (!(l = __atomic_load_n(&sr->handed[i], __ATOMIC_ACQUIRE)))
            sched_yield();
        /* A readdir: the entries as they were at opendir. */
        const struct lf_dent *d = lf_listing_find(l, "x");
        if (l->n != sr->want_n[i] || !d || d->attr.size != 1)
            sr->bad++;
        lf_listing_put(l); /* releasedir: no lock */
        __atomic_store_n(&sr->released, (unsigned)i + 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_handle_snapshot_while_the_directory_changes(void)
{
    struct lf_list_entry entries[] = {entry("r/x", 1), entry("r/z", 2)};
    struct lf_list_page page = {.entries = entries, .nentries = 2};
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* the metadata lock's stand-in */
    struct snapshot_reader sr = {.bad = 0};
    struct lf_listing *l = lf_listing_new(); /* the node's */
    CHECK_INT(lf_listing_add_page(l, "r/", &page), 0);
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, read_snapshots, &sr), 0);
    unsigned failed = 0;
    for (int i = 0; i < SNAPSHOTS; i++) {
        pthread_mutex_lock(&lock);
        lf_listing_get(l); /* opendir of a fresh listing */
        sr.want_n[i] = l->n;
        __atomic_store_n(&sr.handed[i], l, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&lock);
        while (__atomic_load_n(&sr.released, __ATOMIC_RELAXED) <= (unsigned)i)
            sched_yield();
        /* A create and an unlink in the directory once the handle is gone. */
        pthread_mutex_lock(&lock);
        failed += lf_listing_upsert(&l, "y", false, NULL) != 0;
        failed += lf_listing_remove(&l, "y", false) != 0;
        pthread_mutex_unlock(&lock);
    }
    pthread_join(t, NULL);
    CHECK_INT(failed, 0);
    CHECK_INT(sr.bad, 0);
    CHECK_INT(l->n, 2);
    CHECK(lf_listing_find(l, "y") == NULL);
    lf_listing_put(l);
}

static void test_node_lifetime(void)
{
    struct lf_refinfo *ref = lf_refinfo_new("repo", "main", false, true);
    struct lf_meta *m = lf_meta_new(LF_REF, "main", ref);
    lf_refinfo_put(ref);
    lf_meta_lock(m);
    struct lf_node *root = lf_meta_root(m);
    struct lf_node *d = lf_meta_child_get(m, root, "dir", LF_DIR, root->ref);
    struct lf_node *f = lf_meta_child_get(m, d, "file", LF_FILE, root->ref);
    d->nlookup = 1;
    f->nlookup = 2;
    struct lf_buf p = LF_BUF_INIT;
    CHECK_INT(lf_meta_path(f, &p), 0);
    CHECK_STR(p.data, "dir/file");
    CHECK(lf_meta_child(m, d, "file") == f);
    CHECK(lf_meta_get(m, f->ino) == f);
    uint64_t fino = f->ino, dino = d->ino;
    /* The directory is forgotten first, but its child still pins it. */
    lf_meta_forget(m, d, 1);
    CHECK(lf_meta_get(m, dino) == d);
    lf_meta_pin(f); /* an open file */
    lf_meta_forget(m, f, 2);
    CHECK(lf_meta_get(m, fino) == f);
    lf_meta_unpin(m, f);
    CHECK(lf_meta_get(m, fino) == NULL);
    CHECK(lf_meta_get(m, dino) == NULL);
    CHECK_INT(lf_meta_count(m), 1);
    /* A kind change gives a new inode. */
    struct lf_node *a = lf_meta_child_get(m, root, "x", LF_FILE, root->ref);
    a->nlookup = 1;
    struct lf_node *b = lf_meta_child_get(m, root, "x", LF_DIR, root->ref);
    CHECK(a != b && a->ino != b->ino);
    CHECK(lf_meta_child(m, root, "x") == b);
    /* Many nodes: the tables grow and still find everything. */
    int ok = 1;
    for (int i = 0; i < 20000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "n%d", i);
        struct lf_node *n = lf_meta_child_get(m, root, name, LF_FILE, root->ref);
        n->nlookup = 1;
    }
    for (int i = 0; i < 20000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "n%d", i);
        struct lf_node *n = lf_meta_child(m, root, name);
        ok &= n && lf_meta_get(m, n->ino) == n;
    }
    CHECK(ok);
    lf_meta_unlock(m);
    lf_buf_free(&p);
    lf_meta_free(m);
}

int main(void)
{
    test_page_merge_and_find();
    test_file_and_directory_of_one_name();
    test_copy_on_write();
    test_handle_snapshot_while_the_directory_changes();
    test_node_lifetime();
    return check_summary("test_meta");
}
