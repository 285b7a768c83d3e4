/* fuse_ceiling: what the kernel's FUSE read path alone carries on this
 * machine.
 *
 *   fuse_ceiling [--async-read | --direct-io] [--size-mib N] MOUNTPOINT
 *
 * Serves one read-only file, MOUNTPOINT/data (N MiB, default 1024), and
 * answers every read from a 64 MiB buffer in memory: no network, no cache
 * logic, nothing but the round trip through /dev/fuse, the copy into the
 * page cache and the reader's copy out of it. The session is set up the
 * way lakefuse sets up its own (1 MiB reads, synchronous unless
 * --async-read, the same worker-thread limits), so a sequential read of
 * MOUNTPOINT/data is an upper bound for any lakefuse stream on the same
 * machine. With --direct-io the file is opened past the page cache, as
 * lakefuse opens big objects by default: every read of the reader is one
 * round trip through the server, and the kernel copies the answer
 * straight into the reader's buffer. bench/read_bench.py and
 * bench/peers.py run it; it stays in the foreground and exits when
 * unmounted (fusermount3 -u).
 */
#define FUSE_USE_VERSION 34
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SOURCE_SIZE (64u << 20)
#define DATA_INO 2

static struct {
    char *src;
    uint64_t size;
    bool async_read;
    bool direct_io;
} g;

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    if (ino == FUSE_ROOT_ID) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
    } else {
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_size = (off_t)g.size;
    }
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    conn->want &= ~FUSE_CAP_SPLICE_WRITE;
    if (g.async_read && (conn->capable & FUSE_CAP_ASYNC_READ))
        conn->want |= FUSE_CAP_ASYNC_READ;
    else
        conn->want &= ~FUSE_CAP_ASYNC_READ;
    conn->max_readahead = 4u << 20;
    conn->max_background = 64;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (parent != FUSE_ROOT_ID || strcmp(name, "data") != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.ino = DATA_INO;
    e.attr_timeout = e.entry_timeout = 3600;
    fill_attr(DATA_INO, &e.attr);
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    if (ino != FUSE_ROOT_ID && ino != DATA_INO) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct stat st;
    fill_attr(ino, &st);
    fuse_reply_attr(req, &st, 3600);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)fi;
    if (ino != DATA_INO) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    uint64_t o = (uint64_t)off;
    if (o >= g.size) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > g.size - o)
        size = (size_t)(g.size - o);
    /* The source wraps, and has 1 MiB of slack past its end for that. */
    fuse_reply_buf(req, g.src + o % SOURCE_SIZE, size);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (ino != DATA_INO) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    fi->direct_io = g.direct_io;
    fuse_reply_open(req, fi);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .open = op_open,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .read = op_read,
};

static int usage(void)
{
    fprintf(stderr, "usage: fuse_ceiling [--async-read | --direct-io] [--size-mib N] MOUNTPOINT\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *mnt = NULL;
    g.size = 1024ull << 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--async-read") == 0) {
            g.async_read = true;
        } else if (strcmp(argv[i], "--direct-io") == 0) {
            g.direct_io = true;
        } else if (strcmp(argv[i], "--size-mib") == 0 && i + 1 < argc) {
            char *end;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (*end || v == 0 || v > (1ull << 24))
                return usage();
            g.size = v << 20;
        } else if (argv[i][0] != '-' && !mnt) {
            mnt = argv[i];
        } else {
            return usage();
        }
    }
    if (!mnt)
        return usage();

    int rc = 1;
    struct fuse_session *se = NULL;
    struct fuse_loop_config *lc = NULL;
    char *fargv[] = {argv[0], "-o", "fsname=fuse_ceiling,subtype=fuse_ceiling", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
    bool mounted = false;

    if (!(g.src = malloc(SOURCE_SIZE + (1u << 20)))) {
        fprintf(stderr, "fuse_ceiling: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < SOURCE_SIZE + (1u << 20); i++)
        g.src[i] = (char)(i * 131 + (i >> 12));
    if (!(se = fuse_session_new(&args, &ops, sizeof(ops), NULL)))
        goto out;
    if (fuse_session_mount(se, mnt) != 0)
        goto out;
    mounted = true;
    if (fuse_set_signal_handlers(se) != 0 || !(lc = fuse_loop_cfg_create()))
        goto out;
    fuse_loop_cfg_set_max_threads(lc, 64); /* as lakefuse's loop */
    fuse_loop_cfg_set_idle_threads(lc, 16);
    rc = fuse_session_loop_mt(se, lc) == 0 ? 0 : 1;
out:
    if (lc)
        fuse_loop_cfg_destroy(lc);
    if (se) {
        fuse_remove_signal_handlers(se);
        if (mounted)
            fuse_session_unmount(se);
        fuse_session_destroy(se);
    }
    fuse_opt_free_args(&args);
    free(g.src);
    return rc;
}
