/* fs: FUSE low-level operations over the store: the mount's lifecycle,
 * the table of operations, and the small helpers every part uses.
 *
 * The operations live in parts by concern, all bound by the rules at the
 * top of fs_int.h: fs_names.c (lookup and the name space: create, unlink,
 * rename ...), fs_attr.c (getattr, setattr), fs_dir.c (listings, readdir)
 * and fs_io.c (write state, open, read, write, flush, release).
 */
#include "lakefuse/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "lakefuse/bcache.h"
#include "lakefuse/buf.h"
#include "lakefuse/log.h"
#include "lakefuse/meta.h"
#include "lakefuse/recovery.h"
#include "lakefuse/staging.h"
#include "lakefuse/uri.h"
#include "lakefuse/workq.h"

#include "fs_int.h"

/* ---- small helpers ------------------------------------------------------ */

double fs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct lf_fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

/* Errors the kernel should see: transport trouble is EIO to a caller. */
int fs_reply_errno(int rc)
{
    switch (rc) {
    case -ENOENT:
    case -EACCES:
    case -EPERM:
    case -EROFS:
    case -EINTR:
    case -ENOMEM:
    case -ENOTDIR:
    case -EISDIR:
    case -ENAMETOOLONG:
    case -ENOTEMPTY:
    case -EEXIST:
    case -EINVAL:
    case -ENOSPC:
    case -EFBIG:
    case -ENOTSUP:
    case -ENFILE:
        return -rc;
    case -EMFILE: /* the daemon's limit, not the caller's: too many files "in the system" */
        return ENFILE;
    default:
        return EIO;
    }
}

void fs_now_realtime(struct timespec *ts) { clock_gettime(CLOCK_REALTIME, ts); }

/* ---- the mount ---------------------------------------------------------- */

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs st;
    memset(&st, 0, sizeof(st));
    /* Object storage has no meaningful capacity; report plenty so tools
     * that check free space before writing do not refuse. */
    st.f_bsize = st.f_frsize = 4096;
    st.f_blocks = st.f_bfree = st.f_bavail = 1ull << 34;
    st.f_files = st.f_ffree = st.f_favail = 1ull << 32;
    st.f_namemax = LF_NAME_MAX;
    fuse_reply_statfs(req, &st);
}

/* A larger readahead on the mount's own backing device makes sequential
 * reads 1 MiB FUSE requests instead of 128 KiB. Best effort: needs write
 * access to sysfs. It runs inside op_init, before the kernel has our INIT
 * answer: the kernel then keeps min(this, our max_readahead), and every
 * file opened afterwards gets it (a file takes its readahead from the
 * device when it is opened, so tuning later would miss the first ones).
 * The device is found in mountinfo: a stat of the mount point would wait
 * for this very INIT. */
static void tune_readahead(const char *mountpoint)
{
    char *real = realpath(mountpoint, NULL), line[4096], dev[32] = "";
    FILE *fp = real ? fopen("/proc/self/mountinfo", "re") : NULL;
    while (fp && fgets(line, sizeof(line), fp)) {
        char mdev[32], mnt[2048], fstype[64];
        const char *sep = strstr(line, " - "); /* after the optional fields */
        if (sep && sscanf(line, "%*s %*s %31s %*s %2047s", mdev, mnt) == 2 &&
            sscanf(sep + 3, "%63s", fstype) == 1 && strcmp(mnt, real) == 0 &&
            strncmp(fstype, "fuse", 4) == 0)
            snprintf(dev, sizeof(dev), "%s", mdev); /* the last one is ours */
    }
    if (fp)
        fclose(fp);
    free(real);
    if (!dev[0])
        return;
    char path[128];
    snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "4096", 4) != 4)
        lf_dbg("kernel readahead of the mount left as is (%s: %s)", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct lf_fs *fs = userdata;
    /* libfuse's splice would only add a vmsplice to the same copy for
     * replies from our memory (streams are spliced by read_spliced). */
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want &= ~FUSE_CAP_SPLICE_WRITE;
    conn->want |= conn->capable & (FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO |
                                   FUSE_CAP_CACHE_SYMLINKS);
    /* Synchronous reads by default: the kernel then sends reads in the
     * reader's own context, so Ctrl-C reaches a read stuck on a slow
     * gateway even in a program that catches it (async readahead requests
     * cannot be interrupted; only a fatal signal ends the wait for them).
     * The price is that the reader's copy and ours take turns instead of
     * overlapping, which caps a single stream (docs/benchmarks.md). */
    if (fs->cfg->async_read && (conn->capable & FUSE_CAP_ASYNC_READ))
        conn->want |= FUSE_CAP_ASYNC_READ;
    else
        conn->want &= ~FUSE_CAP_ASYNC_READ;
    conn->max_readahead = 4u << 20; /* the kernel keeps the smaller of this and the device's */
    conn->max_background = 64;
    /* Big writes: 1 MiB per request instead of 128 KiB. */
    conn->max_write = 1024 * 1024;
    lf_info("FUSE session ready (max_read %u, max_readahead %u)", conn->max_read,
            conn->max_readahead);
    if (fs->splice)
        lf_info("sequential reads of objects from %zu MiB on are spliced from the socket "
                "(the gateway's, or the storage's with presigned URLs) to the kernel",
                (size_t)(fs->ra.stream_min >> 20));
    tune_readahead(fs->cfg->mountpoint);
}

/* Unmount: what is still staged goes up before the daemon exits. */
static void op_destroy(void *userdata)
{
    struct lf_fs *fs = userdata;
    fs_ctl_stop(fs); /* a verb under way ends first; no new one starts */
    if (!fs->staging)
        return;
    lf_recovery_stop(fs->recovery); /* what it adopted is flushed below */
    unsigned failed = lf_staging_flush_all(fs->staging);
    if (failed)
        lf_err("unmount: %u staged file(s) could not be uploaded; they stay in %s/staging "
               "and the next mount on this cache directory uploads them", failed,
               fs->cfg->cache_dir);
}

static const struct fuse_lowlevel_ops OPS = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = fs_op_lookup,
    .forget = fs_op_forget,
    .forget_multi = fs_op_forget_multi,
    .getattr = fs_op_getattr,
    .setattr = fs_op_setattr,
    .mknod = fs_op_mknod,
    .mkdir = fs_op_mkdir,
    .unlink = fs_op_unlink,
    .rmdir = fs_op_rmdir,
    .symlink = fs_op_symlink,
    .rename = fs_op_rename,
    .link = fs_op_link,
    .create = fs_op_create,
    .open = fs_op_open,
    .read = fs_op_read,
    .write = fs_op_write,
    .flush = fs_op_flush,
    .release = fs_op_release,
    .fsync = fs_op_fsync,
    .opendir = fs_op_opendir,
    .readdir = fs_op_readdir,
    .readdirplus = fs_op_readdirplus,
    .releasedir = fs_op_releasedir,
    .statfs = op_statfs,
    .setxattr = fs_op_setxattr,
    .getxattr = fs_op_getxattr,
    .listxattr = fs_op_listxattr,
};

const struct fuse_lowlevel_ops *lf_fs_ops(void) { return &OPS; }

void lf_fs_set_api(struct lf_fs *fs, struct lf_api *api) { fs->api = api; }

void lf_fs_attach(struct lf_fs *fs, struct fuse_session *se)
{
    fs->se = se;
    if ((fs->splice || fs->direct_min != UINT64_MAX) &&
        fuse_session_custom_io(se, &fs_custom_io, fuse_session_fd(se)) != 0) {
        lf_warn("libfuse refused the custom I/O hooks: reads are copied through memory%s",
                fs->cfg->direct_io ? " and shared mmap of --direct-io files fails"
                                   : ", through the page cache");
        fs->splice = false;
        fs->ra.stream_min = 0;
    }
}

struct lf_fs *lf_fs_new(const struct lf_config *cfg, struct lf_store *store,
                        const struct lf_fs_root *root)
{
    struct lf_fs *fs = calloc(1, sizeof(*fs));
    struct lf_refinfo *ref = NULL;
    if (!fs)
        return NULL;
    fs->cfg = cfg;
    fs->store = store;
    if (asprintf(&fs->subdir, "%s%s", root->path ? root->path : "", root->path ? "/" : "") < 0) {
        free(fs);
        return NULL;
    }
    pthread_cond_init(&fs->changed, NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* Writer preference: a directory rename is not starved by a stream
     * of creates. */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&fs->ns, &ra);
    pthread_mutex_init(&fs->handles_lock, NULL);
    pthread_rwlockattr_destroy(&ra);
    fs->uid = getuid();
    fs->gid = getgid();
    clock_gettime(CLOCK_REALTIME, &fs->started);
    fs->ra.initial_window = cfg->readahead_init;
    fs->ra.max_window = cfg->readahead_max;
    fs->ra.request_size = cfg->request_size;
    /* Streams are for objects the cache would not keep (see
     * lf_bcache_release), and only when no disk tier would keep them. */
    /* Nor with --async-read: readahead sent in parallel reaches us out of
     * order, and a stream (read in order) would have to wait for the
     * stragglers or fetch their bytes twice. */
    const char *nosplice = cfg->no_splice              ? NULL
                           : !store->ops->get_stream   ? "the endpoint is HTTPS"
                           : cfg->disk_cache_size      ? "--disk-cache-size keeps them on disk"
                           : cfg->async_read           ? "--async-read"
                                                       : NULL;
    if (nosplice)
        lf_info("big sequential reads are copied through memory, not spliced (%s)", nosplice);
    fs->splice = !cfg->no_splice && !nosplice;
    if (fs->splice) {
        int *p = fs_pipe_new();
        if (p)
            fs_pipe_close(p);
        else
            lf_info("big sequential reads are copied through memory, not spliced: that "
                    "needs pipes of %d MiB (CAP_SYS_RESOURCE, or sysctl fs.pipe-max-size=%d)",
                    PIPE_ROOM >> 20, PIPE_ROOM);
        fs->splice = p != NULL;
    }
    fs->ra.stream_min = fs->splice ? cfg->cache_size / 2 : 0;
    /* The page cache is worth its cost for what it can keep: files over
     * half the cache are the ones our own cache gives back as they are
     * read, and a page cache fill of them costs most of a stream's time
     * (docs/benchmarks.md). */
    fs->direct_min = cfg->direct_io ? 0 : cfg->page_cache ? UINT64_MAX : cfg->cache_size / 2;
    fs->cache = lf_bcache_new(cfg->cache_size, cfg->block_size);
    if (fs->cache && cfg->disk_cache_size) {
        /* A subdirectory: the cache directory also holds staging/. */
        struct lf_buf dir = LF_BUF_INIT;
        if (lf_buf_printf(&dir, "%s/blocks", cfg->cache_dir) == 0) {
            int rc = lf_bcache_enable_disk(fs->cache, dir.data, cfg->disk_cache_size);
            if (rc)
                lf_warn("disk cache in %s: %s; caching in memory only", dir.data, strerror(-rc));
        }
        lf_buf_free(&dir);
    }
    enum lf_kind kind = LF_ROOT;
    const char *name = "";
    if (root->repo && root->ref) {
        kind = LF_REF;
        name = root->ref;
        ref = fs_new_ref(fs, root->repo, root->ref, root->ref_is_branch);
    } else if (root->repo) {
        kind = LF_REPO;
        name = root->repo;
    }
    if (kind != LF_REF || ref)
        fs->meta = lf_meta_new(kind, name, ref);
    if (fs->meta)
        lf_meta_set_release(fs->meta, fs_release_node);
    lf_refinfo_put(ref);
    if (!fs->cache || !fs->meta) {
        lf_fs_free(fs);
        return NULL;
    }
    return fs;
}

/* Written data comes before cached data on a full disk. */
static uint64_t give_back(void *cache, uint64_t bytes)
{
    return lf_bcache_disk_trim(cache, bytes);
}

int lf_fs_start(struct lf_fs *fs)
{
    fs->data_wq = lf_workq_new(fs->cfg->max_requests, "lf-data");
    fs->meta_wq = lf_workq_new(4, "lf-meta");
    /* Parts in flight: enough to keep a high-latency link busy. */
    fs->up_wq = lf_workq_new(8, "lf-upload");
    fs->ahead = fs_ahead_new();
    if (!fs->data_wq || !fs->meta_wq || !fs->up_wq || !fs->ahead)
        return -ENOMEM;
    struct lf_staging_opts so = {.dir = fs->cfg->staging_dir, .max_bytes = fs->cfg->staging_max,
                                 .part_size = fs->cfg->part_size, .make_room = give_back,
                                 .make_room_arg = fs->cache};
    fs->staging = lf_staging_new(fs->store, fs->up_wq, &so);
    /* What daemons that are gone left staged goes up in the background; a
     * read-only mount writes nothing, so it leaves that to another mount. */
    if (fs->staging && !fs->cfg->read_only) {
        struct lf_buf root = LF_BUF_INIT;
        if (lf_buf_printf(&root, "%s/staging", fs->cfg->cache_dir) == 0)
            fs->recovery = lf_recovery_start(fs->staging, root.data, !fs->cfg->keep_staged);
        lf_buf_free(&root);
        if (!fs->recovery)
            lf_warn("cannot look for files staged by earlier runs; the next mount will");
    } else if (fs->staging) {
        lf_info("read-only: files staged by earlier runs are left for a writable mount");
    }
    if (fs->staging) {
        fs_ctl_start(fs); /* without it the mount works, the verbs say why not */
        fs_metrics_start(fs);
    }
    return fs->staging ? 0 : -EIO;
}

void lf_fs_free(struct lf_fs *fs)
{
    if (!fs)
        return;
    fs_metrics_stop(fs);
    fs_ctl_stop(fs);
    /* Handles whose release the unmount overtook (their close() has
     * returned: what they wrote is uploaded or staged already). */
    fs->tearing_down = true;
    while (fs->files)
        fs_fileh_free(fs, fs->files);
    while (fs->dirs)
        fs_dir_release(fs, fs->dirs);
    lf_recovery_stop(fs->recovery);
    lf_workq_free(fs->data_wq); /* runs what fs_ahead queued: its nodes are let go */
    lf_workq_free(fs->meta_wq);
    fs_ahead_free(fs->ahead);
    lf_meta_free(fs->meta); /* drops the nodes' staged files */
    lf_workq_free(fs->up_wq);
    lf_staging_free(fs->staging);
    lf_recovery_free(fs->recovery); /* after the staged files it adopted are let go */
    lf_bcache_free(fs->cache);
    pthread_cond_destroy(&fs->changed);
    pthread_rwlock_destroy(&fs->ns);
    pthread_mutex_destroy(&fs->handles_lock);
    free(fs->subdir);
    free(fs);
}
