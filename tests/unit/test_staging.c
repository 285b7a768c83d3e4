/* staging against the in-memory store: bytes stored, requests made,
 * failures kept staged, limits enforced. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "lakefuse/hash.h"
#include "lakefuse/staging.h"

#define MiB (1u << 20)
#define PS (5 * MiB)

static char root[] = "/tmp/lf-staging-test-XXXXXX";
static char dir[sizeof(root) + 16]; /* made by staging itself, under root */

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 2654435761u + seed) >> 13);
}

static bool stored_equals(struct lf_mem_store *m, const char *key, const void *want, size_t n)
{
    size_t len = 0;
    const void *got = lf_mem_store_data(m, "repo", key, &len);
    return got && len == n && memcmp(got, want, n) == 0;
}

/* A staged file or manifest holds data not yet on the gateway: only its
 * owner may read it, whatever the umask (main sets it to 0). */
static bool private_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 0777) == 0600;
}

/* Waits (bounded) until at least n calls of kind op reached the store. */
static bool wait_calls(struct lf_mem_store *m, enum lf_mem_op op, unsigned long n)
{
    for (int i = 0; i < 60 * 100; i++) {
        if (lf_mem_store_calls(m, op) >= n)
            return true;
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    return false;
}

static struct lf_staging *area(struct lf_mem_store *m, struct lf_workq *wq, uint64_t max)
{
    struct lf_staging_opts o = {.dir = dir, .max_bytes = max, .part_size = PS, .max_files = 4};
    return lf_staging_new(lf_mem_store_view(m), wq, &o);
}

static void test_small_new_file(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f;
    struct lf_obj_attr a;
    lf_mem_store_reset_calls(m);
    CHECK_INT(lf_sfile_new(s, "repo", "main/small.txt", NULL, &f), 0);
    CHECK(lf_sfile_dirty(f));
    CHECK_INT(lf_sfile_write(f, "hello ", 6, 0), 6);
    CHECK_INT(lf_sfile_write(f, "world", 5, 6), 5);
    char buf[32] = "";
    CHECK_INT(lf_sfile_read(f, buf, sizeof(buf), 0), 11);
    CHECK(memcmp(buf, "hello world", 11) == 0);
    struct lf_put_meta pm = {.has = LF_ATTR_MODE, .mode = 0640};
    lf_sfile_set_meta(f, &pm, false);
    CHECK_INT(lf_sfile_flush(f, &a), 0);
    CHECK(!lf_sfile_dirty(f));
    CHECK(stored_equals(m, "main/small.txt", "hello world", 11));
    CHECK_INT(a.size, 11);
    CHECK(a.etag[0] != '\0');
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_PUT), 1);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_MPU_CREATE), 0);
    /* A clean file flushes with no request. */
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_PUT), 1);

    /* Sparse write past the end reads back zeros in the hole. */
    CHECK_INT(lf_sfile_write(f, "!", 1, 20), 1);
    CHECK_INT(lf_sfile_read(f, buf, sizeof(buf), 0), 21);
    CHECK(buf[11] == 0 && buf[19] == 0 && buf[20] == '!');
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/small.txt", buf, 21));

    /* An empty new file is created on flush. */
    struct lf_sfile *e;
    CHECK_INT(lf_sfile_new(s, "repo", "main/empty", NULL, &e), 0);
    CHECK_INT(lf_sfile_flush(e, NULL), 0);
    CHECK(stored_equals(m, "main/empty", "", 0));
    lf_sfile_unref(e);
    lf_sfile_unref(f);
    lf_staging_free(s);
}

static void test_modify_existing(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f;
    CHECK_INT(lf_mem_store_put(m, "repo", "main/log", "line1\n", 6), 0);
    struct lf_obj_attr base;
    CHECK_INT(lf_mem_store_view(m)->ops->head(lf_mem_store_view(m)->ctx, "repo", "main/log",
                                              &base),
              0);
    lf_mem_store_reset_calls(m);
    CHECK_INT(lf_sfile_new(s, "repo", "main/log", &base, &f), 0);
    /* Opening fetches nothing; nothing changed, nothing to upload. */
    CHECK(!lf_sfile_has_data(f));
    CHECK(!lf_sfile_dirty(f));
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_GET), 0);
    /* The first write brings the old content in (an append keeps it). */
    CHECK_INT(lf_sfile_write(f, "line2\n", 6, 6), 6);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_GET), 1);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/log", "line1\nline2\n", 12));
    /* Truncate down, then up: zeros after the cut. */
    CHECK_INT(lf_sfile_truncate(f, 3), 0);
    CHECK_INT(lf_sfile_truncate(f, 5), 0);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/log", "lin\0\0", 5));
    lf_sfile_unref(f);

    /* O_TRUNC of an existing object downloads nothing. */
    lf_mem_store_reset_calls(m);
    CHECK_INT(lf_sfile_new(s, "repo", "main/log", &base, &f), 0);
    CHECK_INT(lf_sfile_truncate(f, 0), 0);
    CHECK_INT(lf_sfile_write(f, "new", 3, 0), 3);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_GET), 0);
    CHECK(stored_equals(m, "main/log", "new", 3));
    lf_sfile_unref(f);
    lf_staging_free(s);
}

static void test_multipart_streaming(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f;
    size_t total = 4 * PS + 123457;
    unsigned char *data = malloc(total);
    fill(data, total, 7);
    lf_mem_store_reset_calls(m);
    CHECK_INT(lf_sfile_new(s, "repo", "main/big.bin", NULL, &f), 0);
    for (size_t off = 0; off < total; off += 128 * 1024) {
        size_t n = total - off < 128 * 1024 ? total - off : 128 * 1024;
        CHECK_INT(lf_sfile_write(f, data + off, n, off), (long long)n);
    }
    /* Parts go up while writing: the writer passed parts 1..3, and they
     * reach the store without a flush (in their own time: wait for them). */
    CHECK(wait_calls(m, LF_MEM_MPU_PART, 3));
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_MPU_CREATE), 1);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_PUT), 0);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/big.bin", data, total));
    /* Five parts in all: the streamed ones were not sent twice. */
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_MPU_PART), 5);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_MPU_COMPLETE), 1);
    CHECK_INT(lf_mem_store_open_uploads(m), 0);

    /* A random write into the middle re-sends everything in a new upload
     * (the old one completed), and the bytes are right. */
    lf_mem_store_reset_calls(m);
    CHECK_INT(lf_sfile_write(f, "XYZ", 3, PS + 10), 3);
    memcpy(data + PS + 10, "XYZ", 3);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/big.bin", data, total));
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_MPU_PART), 5);
    lf_sfile_unref(f);
    free(data);
    lf_staging_free(s);
}

static void test_failure_stays_staged(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f;
    CHECK_INT(lf_sfile_new(s, "repo", "main/keep", NULL, &f), 0);
    CHECK_INT(lf_sfile_write(f, "precious", 8, 0), 8);
    lf_mem_store_fail(m, LF_MEM_PUT, -EIO, 1);
    CHECK_INT(lf_sfile_flush(f, NULL), -EIO);
    CHECK(lf_sfile_dirty(f));
    CHECK(lf_mem_store_data(m, "repo", "main/keep", &(size_t){0}) == NULL);

    /* A killed daemon would leave the data and its manifest behind. */
    struct lf_orphan *o;
    size_t n;
    CHECK_INT(lf_staging_find_orphans(dir, &o, &n), 0);
    CHECK_INT(n, 1);
    if (n == 1) {
        CHECK_STR(o[0].bucket, "repo");
        CHECK_STR(o[0].key, "main/keep");
        CHECK_STR(o[0].base_etag, "");
        CHECK_INT(o[0].size, 8);
        CHECK(private_file(o[0].data_path));
        CHECK(private_file(o[0].manifest_path));
    }
    /* Killed while rewriting that manifest: the half-written copy beside
     * the whole one is dropped; one whose data file is gone too; one
     * that is all that names its data stays. */
    char partial[512], lone_data[512], lone_tmp[512], bare_tmp[512];
    snprintf(partial, sizeof(partial), "%s.tmp", n == 1 ? o[0].manifest_path : "x");
    snprintf(lone_data, sizeof(lone_data), "%s/f-lonely", dir);
    snprintf(lone_tmp, sizeof(lone_tmp), "%s/f-lonely.m.tmp", dir);
    snprintf(bare_tmp, sizeof(bare_tmp), "%s/f-nodata.m.tmp", dir);
    const char *paths[] = {partial, lone_data, lone_tmp, bare_tmp};
    for (size_t i = 0; i < 4; i++) {
        FILE *fp = fopen(paths[i], "w");
        CHECK(fp != NULL);
        if (fp) {
            fputs("lakefuse-manif", fp); /* cut short */
            fclose(fp);
        }
    }
    lf_orphans_free(o, n);
    CHECK_INT(lf_staging_find_orphans(dir, &o, &n), 0);
    CHECK_INT(n, 1);
    CHECK(access(partial, F_OK) != 0);
    CHECK(access(bare_tmp, F_OK) != 0);
    CHECK(access(lone_tmp, F_OK) == 0);
    unlink(lone_tmp);
    unlink(lone_data);
    lf_orphans_free(o, n);

    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/keep", "precious", 8));
    CHECK_INT(lf_staging_find_orphans(dir, &o, &n), 0);
    CHECK_INT(n, 0);
    lf_orphans_free(o, n);

    /* A failed multipart upload is aborted and retried whole. */
    size_t total = 2 * PS + 5;
    unsigned char *data = malloc(total);
    fill(data, total, 3);
    struct lf_sfile *g;
    CHECK_INT(lf_sfile_new(s, "repo", "main/mp", NULL, &g), 0);
    CHECK_INT(lf_sfile_write(g, data, total, 1), (long long)total); /* not sequential */
    lf_mem_store_fail(m, LF_MEM_MPU_COMPLETE, -EIO, 1);
    CHECK_INT(lf_sfile_flush(g, NULL), -EIO);
    CHECK_INT(lf_mem_store_open_uploads(m), 0);
    CHECK_INT(lf_sfile_write(g, data, 1, 0), 1);
    CHECK_INT(lf_sfile_flush(g, NULL), 0);
    unsigned char *want = malloc(total + 1);
    want[0] = data[0];
    memcpy(want + 1, data, total);
    CHECK(stored_equals(m, "main/mp", want, total + 1));
    free(want);
    free(data);
    lf_sfile_unref(g);
    lf_sfile_unref(f);
    lf_staging_free(s);
}

/* What a killed daemon left: uploaded, skipped when already there, never
 * written over a newer object. */
static void test_recovery(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *a, *b, *c;
    struct lf_obj_attr base;
    CHECK_INT(lf_mem_store_put(m, "repo", "rec/b", "old", 3), 0);
    CHECK_INT(lf_mem_store_put(m, "repo", "rec/c", "old", 3), 0);
    struct lf_store *st = lf_mem_store_view(m);
    CHECK_INT(lf_sfile_new(s, "repo", "rec/a", NULL, &a), 0);
    CHECK_INT(lf_sfile_write(a, "fresh", 5, 0), 5);
    CHECK_INT(st->ops->head(st->ctx, "repo", "rec/b", &base), 0);
    CHECK_INT(lf_sfile_new(s, "repo", "rec/b", &base, &b), 0);
    CHECK_INT(lf_sfile_truncate(b, 0), 0);
    CHECK_INT(lf_sfile_write(b, "mine", 4, 0), 4);
    CHECK_INT(st->ops->head(st->ctx, "repo", "rec/c", &base), 0);
    CHECK_INT(lf_sfile_new(s, "repo", "rec/c", &base, &c), 0);
    CHECK_INT(lf_sfile_write(c, "X", 1, 0), 1);
    /* "Kill" the daemon: the files stay dirty on disk. Meanwhile someone
     * else replaces main/c. */
    lf_sfile_unref(a);
    lf_sfile_unref(b);
    lf_sfile_unref(c);
    lf_staging_free(s);
    CHECK_INT(lf_mem_store_put(m, "repo", "rec/c", "theirs", 6), 0);

    struct lf_orphan *o;
    size_t n;
    CHECK_INT(lf_staging_find_orphans(dir, &o, &n), 0);
    CHECK_INT(n, 3);
    s = area(m, wq, 0);
    int uploaded = 0, refused = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = lf_staging_recover(s, &o[i], true);
        uploaded += rc == 0;
        refused += rc == -EEXIST;
    }
    CHECK_INT(uploaded, 2);
    CHECK_INT(refused, 1);
    CHECK(stored_equals(m, "rec/a", "fresh", 5));
    CHECK(stored_equals(m, "rec/b", "mine", 4));
    CHECK(stored_equals(m, "rec/c", "theirs", 6));
    lf_orphans_free(o, n);
    /* Only the conflicting one is left; recovering it again changes nothing. */
    CHECK_INT(lf_staging_find_orphans(dir, &o, &n), 0);
    CHECK_INT(n, 1);
    if (n == 1) {
        CHECK_STR(o[0].key, "rec/c");
        CHECK_INT(lf_staging_recover(s, &o[0], true), -EEXIST);
        unlink(o[0].data_path);
        unlink(o[0].manifest_path);
    }
    lf_orphans_free(o, n);
    lf_staging_free(s);
}

static void test_limits_and_rename(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 64 * 1024);
    struct lf_sfile *f, *v[4];
    char chunk[40000];
    memset(chunk, 'a', sizeof(chunk));
    CHECK_INT(lf_sfile_new(s, "repo", "main/a", NULL, &f), 0);
    CHECK_INT(lf_sfile_write(f, chunk, sizeof(chunk), 0), (long long)sizeof(chunk));
    CHECK_INT(lf_sfile_write(f, chunk, sizeof(chunk), sizeof(chunk)), -ENOSPC);
    /* The staging limit is shared: a second file cannot take it either. */
    CHECK_INT(lf_sfile_new(s, "repo", "main/b", NULL, &v[0]), 0);
    CHECK_INT(lf_sfile_write(v[0], chunk, sizeof(chunk), 0), -ENOSPC);
    CHECK_INT(lf_sfile_truncate(f, 0), 0);
    CHECK_INT(lf_sfile_write(v[0], chunk, sizeof(chunk), 0), (long long)sizeof(chunk));
    /* At most max_files (4) staged files. */
    CHECK_INT(lf_sfile_new(s, "repo", "main/c", NULL, &v[1]), 0);
    CHECK_INT(lf_sfile_new(s, "repo", "main/d", NULL, &v[2]), 0);
    CHECK_INT(lf_sfile_new(s, "repo", "main/e", NULL, &v[3]), -ENFILE);

    /* Renaming a directory moves pending uploads with it. */
    CHECK_INT(lf_staging_rename_prefix(s, "repo", "main/", "dev/x/", NULL, NULL), 0);
    CHECK_INT(lf_staging_flush_prefix(s, "repo", "dev/x/"), 0);
    CHECK(stored_equals(m, "dev/x/b", chunk, sizeof(chunk)));
    CHECK(stored_equals(m, "dev/x/a", "", 0));
    CHECK(lf_mem_store_data(m, "repo", "main/b", &(size_t){0}) == NULL);
    /* Discarded data is never uploaded (c went up empty with the prefix). */
    CHECK(stored_equals(m, "dev/x/c", "", 0));
    CHECK_INT(lf_sfile_write(v[1], "zz", 2, 0), 2);
    lf_sfile_discard(v[1]);
    CHECK_INT(lf_staging_flush_all(s), 0);
    CHECK(stored_equals(m, "dev/x/c", "", 0));
    for (int i = 0; i < 3; i++)
        lf_sfile_unref(v[i]);
    lf_sfile_unref(f);
    struct lf_staging_stats st;
    lf_staging_get_stats(s, &st);
    CHECK_INT(st.files, 0);
    CHECK_INT(st.used_bytes, 0);
    lf_staging_free(s);

    /* The area staging made for itself is private too. */
    struct stat sb;
    CHECK(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) && (sb.st_mode & 0777) == 0700);
}

/* A flush that runs while a write is under way (after the write reserved
 * its room, before its bytes reach the staging file) must not leave the
 * file clean without those bytes: the write returns success, so they are
 * either in what was stored or still pending. */
struct mid_write {
    const char *point; /* where the flush runs */
    bool fired;
    int rc;
};

static void flush_at(void *arg, const char *point, struct lf_sfile *f)
{
    struct mid_write *mw = arg;
    if (strcmp(point, mw->point) == 0 && !mw->fired) {
        mw->fired = true;
        mw->rc = lf_sfile_flush(f, NULL);
    }
}

static void test_flush_during_a_write(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f;
    struct mid_write mw = {.point = "write"};
    CHECK_INT(lf_sfile_new(s, "repo", "main/race", NULL, &f), 0);
    CHECK_INT(lf_sfile_write(f, "AAAA", 4, 0), 4);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/race", "AAAA", 4));
    lf_staging_set_hook(s, flush_at, &mw);
    CHECK_INT(lf_sfile_write(f, "BBBB", 4, 0), 4);
    lf_staging_set_hook(s, NULL, NULL);
    CHECK(mw.fired);
    CHECK_INT(mw.rc, 0);
    CHECK(lf_sfile_dirty(f) || stored_equals(m, "main/race", "BBBB", 4));
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/race", "BBBB", 4));
    lf_sfile_unref(f);
    lf_staging_free(s);
}

/* An unlink (discard) between a first write's decision to record the file
 * and the record landing: no manifest may stay behind, or a crash before
 * the file is freed would have recovery upload a file that was removed. */
static void discard_at(void *arg, const char *point, struct lf_sfile *f)
{
    struct mid_write *mw = arg;
    if (strcmp(point, mw->point) == 0 && !mw->fired) {
        mw->fired = true;
        mw->rc = lf_sfile_discard(f);
    }
}

static unsigned manifests_in(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "find %s -name '*.m' | grep -c . 2>/dev/null", d);
    FILE *p = popen(cmd, "r");
    unsigned n = 0;
    if (p) {
        if (fscanf(p, "%u", &n) != 1)
            n = 0;
        pclose(p);
    }
    return n;
}

static void test_discard_while_the_manifest_is_written(struct lf_mem_store *m,
                                                       struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f;
    struct mid_write mw = {.point = "manifest"};
    CHECK_INT(lf_sfile_new(s, "repo", "main/gone", NULL, &f), 0);
    lf_staging_set_hook(s, discard_at, &mw);
    (void)lf_sfile_write(f, "AAAA", 4, 0);
    lf_staging_set_hook(s, NULL, NULL);
    CHECK(mw.fired);
    CHECK_INT(manifests_in(dir), 0);
    CHECK_INT(lf_staging_flush_all(s), 0);
    CHECK(lf_mem_store_data(m, "repo", "main/gone", &(size_t){0}) == NULL);
    lf_sfile_unref(f);
    lf_staging_free(s);
}

/* O_TRUNC of a file not fetched yet, with a flush (another descriptor's
 * close) in the middle: the flush must not take the old size over an
 * empty staging file (it once failed with EIO, the file unchanged). */
static void test_flush_during_an_o_trunc(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_store *st = lf_mem_store_view(m);
    struct lf_sfile *f;
    struct lf_obj_attr base;
    struct mid_write mw = {.point = "truncate"};
    unsigned char data[4096];
    fill(data, sizeof(data), 3);
    lf_mem_store_put(m, "repo", "main/t", data, sizeof(data));
    CHECK_INT(st->ops->head(st->ctx, "repo", "main/t", &base), 0);
    CHECK_INT(lf_sfile_new(s, "repo", "main/t", &base, &f), 0);
    struct lf_put_meta pm = {.has = LF_ATTR_MODE, .mode = 0100640};
    lf_sfile_set_meta(f, &pm, true); /* pending, without its bytes */
    lf_staging_set_hook(s, flush_at, &mw);
    CHECK_INT(lf_sfile_truncate(f, 0), 0);
    lf_staging_set_hook(s, NULL, NULL);
    CHECK(mw.fired);
    CHECK_INT(mw.rc, 0);
    CHECK(lf_sfile_dirty(f));
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/t", "", 0));
    lf_sfile_unref(f);
    lf_staging_free(s);
}

/* Rewrites a manifest as if written in another boot, with synced_size
 * ("" for none): what a power loss leaves. */
static void manifest_from_another_boot(const char *path, const char *key,
                                       const char *synced_size)
{
    FILE *fp = fopen(path, "w");
    const char *boot = "00000000-0000-0000-0000-000000000000";
    fprintf(fp, "lakefuse-staged 1\n%zu %s\n%zu %s\n0 \n%zu %s\n%zu %s\n", strlen("repo"),
            "repo", strlen(key), key, strlen(boot), boot, strlen(synced_size), synced_size);
    fclose(fp);
}

/* After a power loss a staged file may be cut short: recovery uploads it
 * only if it was synced at its present size (which a failed upload does),
 * and leaves it for a person otherwise. */
static void test_recovery_after_a_restart(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *a, *b;
    CHECK_INT(lf_sfile_new(s, "repo", "boot/a", NULL, &a), 0);
    CHECK_INT(lf_sfile_write(a, "unsynced", 8, 0), 8);
    CHECK_INT(lf_sfile_new(s, "repo", "boot/b", NULL, &b), 0);
    CHECK_INT(lf_sfile_write(b, "synced", 6, 0), 6);
    /* b's upload fails: its data and manifest are synced, to wait. */
    lf_mem_store_fail(m, LF_MEM_PUT, -EIO, 100);
    CHECK(lf_sfile_flush(b, NULL) != 0);
    lf_mem_store_fail(m, LF_MEM_PUT, 0, 0);
    lf_sfile_unref(a);
    lf_sfile_unref(b);
    lf_staging_free(s);

    struct lf_orphan *o;
    size_t n;
    CHECK_INT(lf_staging_find_orphans(dir, &o, &n), 0);
    CHECK_INT(n, 2);
    for (size_t i = 0; i < n; i++) {
        CHECK(o[i].trusted); /* same boot: the kernel kept every byte */
        /* The machine restarts: b's manifest said which size was synced. */
        bool is_b = strcmp(o[i].key, "boot/b") == 0;
        FILE *fp = fopen(o[i].manifest_path, "r");
        char buf[512] = "";
        size_t got = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;
        if (fp)
            fclose(fp);
        CHECK(got > 0 && (strstr(buf, "\n1 6\n") != NULL) == is_b);
        manifest_from_another_boot(o[i].manifest_path, o[i].key, is_b ? "6" : "");
    }
    lf_orphans_free(o, n);
    CHECK_INT(lf_staging_find_orphans(dir, &o, &n), 0);
    CHECK_INT(n, 2);
    s = area(m, wq, 0);
    for (size_t i = 0; i < n; i++) {
        bool is_b = strcmp(o[i].key, "boot/b") == 0;
        CHECK(o[i].trusted == is_b);
        CHECK_INT(lf_staging_recover(s, &o[i], true), is_b ? 0 : -ESTALE);
    }
    CHECK(stored_equals(m, "boot/b", "synced", 6));
    CHECK(lf_mem_store_data(m, "repo", "boot/a", &(size_t){0}) == NULL);
    for (size_t i = 0; i < n; i++)
        if (strcmp(o[i].key, "boot/a") == 0) {
            CHECK(access(o[i].data_path, F_OK) == 0); /* left for a person */
            unlink(o[i].data_path);
            unlink(o[i].manifest_path);
        }
    lf_orphans_free(o, n);
    lf_staging_free(s);
}

/* An unlinked or replaced file: descriptors keep reading and writing it,
 * nothing of it is uploaded again, and a failed delete can undo that. */
static void test_discarded_file_stays_local(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f;
    char buf[16] = {0};
    CHECK_INT(lf_sfile_new(s, "repo", "main/gone", NULL, &f), 0);
    CHECK_INT(lf_sfile_write(f, "one ", 4, 0), 4);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    lf_mem_store_reset_calls(m);
    CHECK(!lf_sfile_discard(f)); /* nothing was pending */
    CHECK_INT(lf_sfile_write(f, "two", 3, 4), 3);
    CHECK_INT(lf_sfile_truncate(f, 6), 0);
    struct lf_put_meta pm = {.has = LF_ATTR_MODE, .mode = 0100600};
    lf_sfile_set_meta(f, &pm, true);
    CHECK(!lf_sfile_dirty(f));
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK_INT(lf_staging_flush_all(s), 0);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_PUT), 0);
    CHECK(stored_equals(m, "main/gone", "one ", 4));
    CHECK_INT(lf_sfile_read(f, buf, sizeof(buf), 0), 6);
    CHECK(memcmp(buf, "one tw", 6) == 0);
    /* Pending content whose delete failed is pending again. */
    CHECK_INT(lf_sfile_write(f, "!", 1, 6), 1);
    lf_sfile_restore(f, true);
    CHECK(lf_sfile_dirty(f));
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/gone", "one tw!", 7));
    lf_sfile_unref(f);
    lf_staging_free(s);
}

/* A rename whose gateway copy carried generation g: clean if nothing
 * changed since, pending if anything did. */
static void test_rename_of_a_stored_file(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f;
    unsigned gen;
    CHECK_INT(lf_sfile_new(s, "repo", "main/r1", NULL, &f), 0);
    CHECK_INT(lf_sfile_write(f, "data", 4, 0), 4);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(!lf_sfile_dirty_gen(f, &gen));
    CHECK_INT(lf_sfile_rename(f, "main/r2", &gen), 0);
    CHECK(!lf_sfile_dirty(f));
    CHECK(!lf_sfile_dirty_gen(f, &gen));
    CHECK_INT(lf_sfile_write(f, "DATA", 4, 0), 4); /* slipped in before the re-key */
    CHECK_INT(lf_sfile_rename(f, "main/r3", &gen), 1);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/r3", "DATA", 4));
    CHECK_INT(lf_sfile_rename(f, "main/r4", NULL), 1); /* the new key has nothing */
    lf_sfile_unref(f);
    lf_staging_free(s);
}

/* A change of mode or times only (rsync's chmod and utimens after close)
 * is stored by a copy onto the object, not by sending its bytes again. */
static void test_metadata_only_change_sends_no_bytes(struct lf_mem_store *m,
                                                     struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_store *st = lf_mem_store_view(m);
    struct lf_sfile *f;
    CHECK_INT(lf_sfile_new(s, "repo", "main/chmod", NULL, &f), 0);
    CHECK_INT(lf_sfile_write(f, "bytes", 5, 0), 5);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    lf_mem_store_reset_calls(m);
    struct lf_put_meta pm = {.has = LF_ATTR_MODE | LF_ATTR_MTIME, .mode = 0100700,
                             .mtime = {.tv_sec = 1600000000}};
    lf_sfile_set_meta(f, &pm, true);
    unsigned gen;
    struct lf_put_meta got;
    CHECK(lf_sfile_meta_only(f, &gen, &got));
    CHECK_INT(got.mode, 0100700);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_PUT), 0);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_COPY), 1);
    struct lf_obj_attr a;
    CHECK_INT(st->ops->head(st->ctx, "repo", "main/chmod", &a), 0);
    CHECK_INT(a.mode, 0100700);
    CHECK(stored_equals(m, "main/chmod", "bytes", 5));
    /* Bytes changed too: they are sent. */
    CHECK_INT(lf_sfile_write(f, "B", 1, 0), 1);
    lf_sfile_set_meta(f, &pm, true);
    CHECK(!lf_sfile_meta_only(f, &gen, &got));
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_PUT), 1);
    CHECK(stored_equals(m, "main/chmod", "Bytes", 5));
    lf_sfile_unref(f);
    lf_staging_free(s);
}

/* A streamed multipart upload is created with the metadata of its first
 * parts' time; what the writer set afterwards (cp -p's chmod, utimens)
 * reaches the object when it completes. */
static void test_streamed_upload_gets_late_metadata(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f;
    size_t total = 3 * PS + 999;
    unsigned char *data = malloc(total);
    fill(data, total, 11);
    CHECK_INT(lf_sfile_new(s, "repo", "main/cp-p.bin", NULL, &f), 0);
    struct lf_put_meta early = {.has = LF_ATTR_MODE | LF_ATTR_MTIME, .mode = 0100644,
                                .mtime = {.tv_sec = 2000000000}};
    lf_sfile_set_meta(f, &early, false);
    for (size_t off = 0; off < total; off += MiB) {
        size_t n = total - off < MiB ? total - off : MiB;
        CHECK_INT(lf_sfile_write(f, data + off, n, off), (long long)n);
    }
    struct lf_put_meta late = {.has = LF_ATTR_MODE | LF_ATTR_MTIME, .mode = 0100751,
                               .mtime = {.tv_sec = 1400000000, .tv_nsec = 5}};
    lf_sfile_set_meta(f, &late, true);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/cp-p.bin", data, total));
    struct lf_obj_attr a;
    struct lf_store *st = lf_mem_store_view(m);
    CHECK_INT(st->ops->head(st->ctx, "repo", "main/cp-p.bin", &a), 0);
    CHECK_INT(a.mode, 0100751);
    CHECK_INT(a.mtime.tv_sec, 1400000000);
    CHECK_INT(a.mtime.tv_nsec, 5);
    lf_sfile_unref(f);
    free(data);
    lf_staging_free(s);
}

/* A plain streamed write (no chmod or utimens after the upload began):
 * only the writes' own times changed since, which the object's time at
 * completion says as well, so no copy follows the completion (on lakeFS a
 * copy moves every byte again). The mode set at create is on the object. */
static void test_streamed_write_needs_no_copy(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f;
    size_t total = 3 * PS + 4321;
    unsigned char *data = malloc(total);
    fill(data, total, 12);
    lf_mem_store_reset_calls(m);
    CHECK_INT(lf_sfile_new(s, "repo", "main/dd.bin", NULL, &f), 0);
    struct lf_put_meta created = {.has = LF_ATTR_MODE | LF_ATTR_MTIME, .mode = 0100640,
                                  .mtime = {.tv_sec = 1600000000}};
    lf_sfile_set_meta(f, &created, false);
    for (size_t off = 0; off < total; off += MiB) {
        size_t n = total - off < MiB ? total - off : MiB;
        /* What a write does: its time becomes the file's mtime. */
        struct lf_put_meta w = {.has = LF_ATTR_MTIME, .implicit = LF_ATTR_MTIME,
                                .mtime = {.tv_sec = 1600000001 + (time_t)(off / MiB)}};
        lf_sfile_set_meta(f, &w, false);
        CHECK_INT(lf_sfile_write(f, data + off, n, off), (long long)n);
    }
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/dd.bin", data, total));
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_MPU_COMPLETE), 1);
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_COPY), 0);
    struct lf_obj_attr a;
    struct lf_store *st = lf_mem_store_view(m);
    CHECK_INT(st->ops->head(st->ctx, "repo", "main/dd.bin", &a), 0);
    CHECK_INT(a.mode, 0100640);
    /* A time set on purpose after the writes still reaches the object. */
    struct lf_put_meta touched = {.has = LF_ATTR_MTIME, .mtime = {.tv_sec = 1234567890}};
    CHECK_INT(lf_sfile_write(f, "x", 1, 0), 1);
    lf_sfile_set_meta(f, &touched, true);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK_INT(st->ops->head(st->ctx, "repo", "main/dd.bin", &a), 0);
    CHECK_INT(a.mtime.tv_sec, 1234567890);
    lf_sfile_unref(f);
    free(data);
    lf_staging_free(s);
}

/* What waits for upload, as `lakefuse stats` shows it: the files whose
 * upload is pending and their sizes, while a failed one stays. */
static void test_stats_of_waiting_uploads(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    struct lf_sfile *f, *g;
    struct lf_staging_stats st;
    CHECK_INT(lf_sfile_new(s, "repo", "main/w1", NULL, &f), 0);
    CHECK_INT(lf_sfile_new(s, "repo", "main/w2", NULL, &g), 0);
    CHECK_INT(lf_sfile_write(f, "12345", 5, 0), 5);
    CHECK_INT(lf_sfile_write(g, "abc", 3, 100), 3);
    lf_staging_get_stats(s, &st);
    CHECK_INT(st.files, 2);
    CHECK_INT(st.dirty, 2);
    CHECK_INT(st.dirty_bytes, 5 + 103);
    lf_mem_store_fail(m, LF_MEM_PUT, -EIO, 1);
    CHECK(lf_sfile_flush(f, NULL) != 0);
    CHECK_INT(lf_sfile_flush(g, NULL), 0);
    lf_staging_get_stats(s, &st);
    CHECK_INT(st.dirty, 1);
    CHECK_INT(st.dirty_bytes, 5);
    CHECK_INT(st.failures, 1);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    lf_staging_get_stats(s, &st);
    CHECK_INT(st.dirty, 0);
    CHECK_INT(st.dirty_bytes, 0);
    CHECK_INT(st.files, 2);
    lf_sfile_unref(f);
    lf_sfile_unref(g);
    lf_staging_get_stats(s, &st);
    CHECK_INT(st.files, 0);
    lf_staging_free(s);
}

/* Two clients create one name: the second create is refused, never an
 * overwrite; its data stays staged; under another name it is stored, and
 * renamed back it is again a create only. Small (PUT) and large
 * (multipart complete) files alike. */
static void test_create_only_where_nothing_is(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 0);
    static unsigned char big[2 * PS + 1000];
    fill(big, sizeof(big), 7);
    const size_t sizes[] = {5, sizeof(big)};
    for (int i = 0; i < 2; i++) {
        const char *key = i ? "main/race-big" : "main/race";
        struct lf_sfile *f;
        CHECK_INT(lf_sfile_new(s, "repo", key, NULL, &f), 0);
        CHECK(lf_sfile_created_here(f));
        CHECK_INT(lf_sfile_write(f, big, sizes[i], 0), (long)sizes[i]);
        /* Another client's create lands first. */
        CHECK_INT(lf_mem_store_put(m, "repo", key, "theirs", 6), 0);
        CHECK_INT(lf_sfile_flush(f, NULL), -EEXIST);
        CHECK(lf_sfile_dirty(f));
        CHECK(stored_equals(m, key, "theirs", 6));
        /* Asked again, the same answer: theirs is never replaced. */
        CHECK_INT(lf_sfile_flush(f, NULL), -EEXIST);
        CHECK(stored_equals(m, key, "theirs", 6));
        CHECK_INT(lf_mem_store_open_uploads(m), 0);
        /* Renamed away and back: still only a create there. Away, the
         * key may hold what the rename replaced: not a create there. */
        CHECK_INT(lf_sfile_rename(f, "main/elsewhere", NULL), 1);
        CHECK(!lf_sfile_created_here(f));
        CHECK_INT(lf_sfile_rename(f, key, NULL), 1);
        CHECK(lf_sfile_created_here(f));
        CHECK_INT(lf_sfile_flush(f, NULL), -EEXIST);
        CHECK(stored_equals(m, key, "theirs", 6));
        /* Under another name (a rename replaces its target) it is stored;
         * from then on uploads replace. */
        CHECK_INT(lf_mem_store_put(m, "repo", "main/mine", "old", 3), 0);
        CHECK_INT(lf_sfile_rename(f, "main/mine", NULL), 1);
        CHECK_INT(lf_sfile_flush(f, NULL), 0);
        CHECK(stored_equals(m, "main/mine", big, sizes[i]));
        CHECK(!lf_sfile_created_here(f));
        CHECK_INT(lf_sfile_write(f, "X", 1, 0), 1);
        CHECK_INT(lf_sfile_flush(f, NULL), 0);
        big[0] = 'X';
        CHECK(stored_equals(m, "main/mine", big, sizes[i]));
        fill(big, sizeof(big), 7);
        lf_sfile_unref(f);
    }
    /* A name nobody took is created as usual. */
    struct lf_sfile *g;
    CHECK_INT(lf_sfile_new(s, "repo", "main/free", NULL, &g), 0);
    CHECK_INT(lf_sfile_write(g, "ok", 2, 0), 2);
    CHECK_INT(lf_sfile_flush(g, NULL), 0);
    CHECK(stored_equals(m, "main/free", "ok", 2));
    lf_sfile_unref(g);
    /* A create the gateway stored with other bytes than were hashed (they
     * changed on the way): the object there is ours, and the next upload
     * replaces it instead of taking it for another client's. */
    CHECK_INT(lf_sfile_new(s, "repo", "main/torn", NULL, &g), 0);
    CHECK_INT(lf_sfile_write(g, "whole", 5, 0), 5);
    lf_mem_store_fail(m, LF_MEM_PUT, -EBADMSG, 1);
    CHECK_INT(lf_sfile_flush(g, NULL), -EIO);
    CHECK(lf_sfile_dirty(g));
    CHECK(!lf_sfile_created_here(g)); /* an unlink now deletes what is there */
    CHECK_INT(lf_sfile_flush(g, NULL), 0);
    CHECK(stored_equals(m, "main/torn", "whole", 5));
    CHECK(!lf_sfile_dirty(g));
    lf_sfile_unref(g);
    /* A create that finds a version this mount made (a rename's copy it
     * raced) replaces it; one it did not make stays, as above. */
    char md5[LF_MD5_HEX_SIZE];
    CHECK_INT(lf_sfile_new(s, "repo", "main/ours", NULL, &g), 0);
    CHECK_INT(lf_sfile_write(g, "new", 3, 0), 3);
    CHECK_INT(lf_mem_store_put(m, "repo", "main/ours", "copied", 6), 0);
    lf_md5_hex("copied", 6, md5);
    lf_staging_note_own(s, "repo", "main/ours", md5);
    CHECK_INT(lf_sfile_flush(g, NULL), 0);
    CHECK(stored_equals(m, "main/ours", "new", 3));
    lf_sfile_unref(g);
    CHECK_INT(lf_sfile_new(s, "repo", "main/theirs", NULL, &g), 0);
    CHECK_INT(lf_sfile_write(g, "new", 3, 0), 3);
    CHECK_INT(lf_mem_store_put(m, "repo", "main/theirs", "other", 5), 0);
    lf_staging_note_own(s, "repo", "main/ours", "0123456789abcdef0123456789abcdef");
    CHECK_INT(lf_sfile_flush(g, NULL), -EEXIST);
    CHECK(stored_equals(m, "main/theirs", "other", 5));
    lf_sfile_unref(g);
    lf_staging_free(s);
}

/* A listing asks for the staged names under a directory while another
 * thread renames one of those files: the key it reads is the rename's to
 * change, so it must read it under the file's lock (the TSan build turns
 * any other order into a failure), and it sees the file in one directory
 * or the other, never a torn name. */
struct mover {
    struct lf_sfile *f;
    int rounds, rc;
};

static void *move_back_and_forth(void *arg)
{
    struct mover *mv = arg;
    for (int i = 0; i < mv->rounds && mv->rc >= 0; i++)
        mv->rc = lf_sfile_rename(mv->f, i % 2 ? "main/d1/x" : "main/d2/x", NULL);
    return NULL;
}

static void test_listing_during_a_rename(struct lf_mem_store *m, struct lf_workq *wq)
{
    struct lf_staging *s = area(m, wq, 64 * 1024);
    struct lf_sfile *f;
    CHECK_INT(lf_sfile_new(s, "repo", "main/d1/x", NULL, &f), 0);
    CHECK_INT(lf_sfile_write(f, "abc", 3, 0), 3);
    struct mover mv = {.f = f, .rounds = 400};
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, move_back_and_forth, &mv), 0);
    unsigned bad = 0, listings = 0;
    for (int i = 0; i < 400; i++) {
        char **names;
        size_t n;
        const char *dirs[] = {"main/d1/", "main/d2/"};
        if (lf_staging_pending_names(s, "repo", dirs[i % 2], &names, &n) != 0) {
            bad++;
            continue;
        }
        listings++;
        if (n > 1 || (n == 1 && strcmp(names[0], "x") != 0))
            bad++;
        for (size_t j = 0; j < n; j++)
            free(names[j]);
        free(names);
    }
    pthread_join(t, NULL);
    CHECK_INT(mv.rc >= 0, 1);
    CHECK_INT(bad, 0);
    CHECK_INT(listings, 400);
    lf_sfile_discard(f);
    lf_sfile_unref(f);
    lf_staging_free(s);
}

/* The data file (not the manifest) of the only file staged in area
 * directory d, opened. */
static int open_staged(const char *d)
{
    int fd = -1;
    DIR *dp = opendir(d);
    struct dirent *de;
    while (dp && fd < 0 && (de = readdir(dp))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "f-", 2) == 0 && strcmp(de->d_name + l - 2, ".m") != 0)
            fd = openat(dirfd(dp), de->d_name, O_RDONLY | O_CLOEXEC);
    }
    if (dp)
        closedir(dp);
    return fd;
}

struct let_go { const char *dir; unsigned fired; };

/* Called just before the advice: makes every staged byte clean, so what
 * the advice names leaves the cache on any schedule of the writeback. */
static void sync_before_let_go(void *arg, const char *point, struct lf_sfile *f)
{
    (void)f;
    struct let_go *lg = arg;
    if (strcmp(point, "let-go") != 0)
        return;
    int fd = open_staged(lg->dir);
    if (fd >= 0) {
        if (fdatasync(fd) == 0)
            __atomic_fetch_add(&lg->fired, 1, __ATOMIC_RELAXED);
        close(fd);
    }
}

/* Pages of [off, off + len) of fd in the page cache. */
static size_t resident_pages(int fd, size_t off, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = 0;
    void *map = mmap(NULL, off + len, PROT_READ, MAP_SHARED, fd, 0);
    unsigned char *vec = calloc((off + len + pg - 1) / pg, 1);
    if (map == MAP_FAILED || !vec || mincore(map, off + len, vec) != 0) {
        n = (size_t)-1;
        goto out;
    }
    for (size_t i = off / pg; i < (off + len + pg - 1) / pg; i++)
        n += vec[i] & 1;
out:
    if (map != MAP_FAILED)
        munmap(map, off + len);
    free(vec);
    return n;
}

/* A large sequential write does not keep its whole size in the page
 * cache: each streamed part's pages are let go once it and the next two
 * are stored. The bytes stay in the file, read back and re-sent from it. */
static void test_stored_parts_leave_the_page_cache(struct lf_mem_store *m, struct lf_workq *wq)
{
    /* An area of its own: its one staged file is this test's. */
    char own[sizeof(dir) + 8];
    snprintf(own, sizeof(own), "%s/let-go", root);
    struct lf_staging_opts o = {.dir = own, .part_size = PS, .max_files = 4};
    struct lf_staging *s = lf_staging_new(lf_mem_store_view(m), wq, &o);
    struct lf_sfile *f;
    size_t total = 8 * PS + 4321;
    unsigned char *data = malloc(total), *back = malloc(total);
    fill(data, total, 11);
    struct let_go lg = {.dir = own};
    lf_mem_store_reset_calls(m);
    CHECK_INT(lf_sfile_new(s, "repo", "main/let-go.bin", NULL, &f), 0);
    lf_staging_set_hook(s, sync_before_let_go, &lg);
    for (size_t off = 0; off < total; off += 128 * 1024) {
        size_t n = total - off < 128 * 1024 ? total - off : 128 * 1024;
        CHECK_INT(lf_sfile_write(f, data + off, n, off), (long long)n);
    }
    /* Parts 0..7 streamed (the writer passed them), the tail at the flush,
     * which waits for the streamed ones: the last of them to be stored saw
     * all eight, so parts 0..5 were let go whatever their order. */
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    lf_staging_set_hook(s, NULL, NULL);
    CHECK(stored_equals(m, "main/let-go.bin", data, total));
    CHECK_INT(lf_mem_store_calls(m, LF_MEM_MPU_PART), 9);
    CHECK(lg.fired >= 1);
    int fd = open_staged(own);
    CHECK(fd >= 0);
    struct statfs sf;
    if (fd >= 0 && fstatfs(fd, &sf) == 0 && sf.f_type == TMPFS_MAGIC) {
        printf("test_staging: %s is on tmpfs, whose pages have no disk to leave for: "
               "residency not checked\n", own);
    } else {
        /* Short of a large folio across the end, which part 6 keeps. */
        CHECK_INT(resident_pages(fd, 0, 6 * PS - 2 * MiB), 0);
    }
    if (fd >= 0)
        close(fd);
    CHECK_INT(lf_sfile_read(f, back, total, 0), (long long)total);
    CHECK(memcmp(back, data, total) == 0);
    /* A write into a part that left the cache: the flush re-sends it,
     * its other bytes read from the disk. */
    lf_mem_store_reset_calls(m);
    CHECK_INT(lf_sfile_write(f, "XYZ", 3, PS + 10), 3);
    memcpy(data + PS + 10, "XYZ", 3);
    CHECK_INT(lf_sfile_flush(f, NULL), 0);
    CHECK(stored_equals(m, "main/let-go.bin", data, total));
    lf_sfile_unref(f);
    free(data);
    free(back);
    lf_staging_free(s);
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof(dir), "%s/staging", root);
    /* Nothing the test creates is private by the umask's grace. */
    umask(0);
    struct lf_mem_store *m = lf_mem_store_new();
    struct lf_workq *wq = lf_workq_new(4, "test-up");
    lf_mem_store_add_bucket(m, "repo");
    test_small_new_file(m, wq);
    test_modify_existing(m, wq);
    test_multipart_streaming(m, wq);
    test_failure_stays_staged(m, wq);
    test_recovery(m, wq);
    test_recovery_after_a_restart(m, wq);
    test_limits_and_rename(m, wq);
    test_flush_during_a_write(m, wq);
    test_discard_while_the_manifest_is_written(m, wq);
    test_flush_during_an_o_trunc(m, wq);
    test_discarded_file_stays_local(m, wq);
    test_rename_of_a_stored_file(m, wq);
    test_streamed_upload_gets_late_metadata(m, wq);
    test_streamed_write_needs_no_copy(m, wq);
    test_metadata_only_change_sends_no_bytes(m, wq);
    test_stats_of_waiting_uploads(m, wq);
    test_create_only_where_nothing_is(m, wq);
    test_listing_during_a_rename(m, wq);
    test_stored_parts_leave_the_page_cache(m, wq);
    lf_workq_free(wq);
    lf_mem_store_free(m);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_summary("test_staging");
}
