/* lockdir: subdirectories each owned by one live process, through an
 * flock on a lock file inside (see lockdir.h). */
#include "lakefuse/lockdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lakefuse/log.h"

#define LOCK_NAME "lock"
#define LIVE_PREFIX "m-"    /* a directory in place: scanners look at these */
#define NEW_PREFIX ".new-"  /* being prepared: scanners skip it */

struct lf_lockdir {
    char *path;
    int fd; /* the locked file; the lock lives as long as this description */
};

/* Opens (or creates) dir/lock and takes its lock without waiting: 0,
 * -EBUSY when a live process holds it, -ENOENT when the lock file went
 * away (its directory is being removed by its owner), or -errno. */
static int take_lock(const char *dir, bool create, int *out)
{
    char path[4096];
    struct stat held, now;
    if (snprintf(path, sizeof(path), "%s/" LOCK_NAME, dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_EXCL : 0);
    int fd = open(path, flags, 0600);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
    /* The owner unlinks the lock file before it removes the directory: a
     * lock on a file no longer in place owns nothing. */
    else if (fstat(fd, &held) != 0 || stat(path, &now) != 0 || held.st_ino != now.st_ino ||
             held.st_dev != now.st_dev)
        rc = -ENOENT;
    if (rc) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

static struct lf_lockdir *lockdir_of(char *path, int fd)
{
    struct lf_lockdir *d = malloc(sizeof(*d));
    if (!d) {
        free(path);
        close(fd);
        return NULL;
    }
    d->path = path;
    d->fd = fd;
    return d;
}

/* Prepares one locked directory under a hidden name and moves it into
 * place; -EEXIST when the chosen name is taken (try another). */
static int create_once(const char *parent, char **out, int *fd)
{
    char *tmp = NULL, *final = NULL;
    int rc = 0;
    if (asprintf(&tmp, "%s/" NEW_PREFIX "XXXXXX", parent) < 0) {
        tmp = NULL;
        return -ENOMEM;
    }
    if (!mkdtemp(tmp)) {
        rc = -errno;
        goto out;
    }
    const char *suffix = strrchr(tmp, '/') + 1 + strlen(NEW_PREFIX);
    if (asprintf(&final, "%s/" LIVE_PREFIX "%s", parent, suffix) < 0) {
        final = NULL;
        rc = -ENOMEM;
    } else if ((rc = take_lock(tmp, true, fd)) == 0 &&
               renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) != 0) {
        rc = -errno;
        close(*fd);
    }
    if (rc) {
        char lock[4096];
        snprintf(lock, sizeof(lock), "%s/" LOCK_NAME, tmp);
        unlink(lock);
        rmdir(tmp);
        free(final);
        final = NULL;
    }
out:
    free(tmp);
    *out = final;
    return rc;
}

int lf_lockdir_create(const char *parent, struct lf_lockdir **out)
{
    *out = NULL;
    if (mkdir(parent, 0700) != 0 && errno != EEXIST)
        return -errno;
    for (int tries = 0; tries < 16; tries++) {
        char *path;
        int fd, rc = create_once(parent, &path, &fd);
        if (rc == -EEXIST)
            continue;
        if (rc)
            return rc;
        return (*out = lockdir_of(path, fd)) ? 0 : -ENOMEM;
    }
    return -EEXIST;
}

int lf_lockdir_adopt_all(const char *parent, struct lf_lockdir ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *dir = opendir(parent);
    if (!dir)
        return errno == ENOENT ? 0 : -errno;
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(dir))) {
        char *path;
        int fd;
        if (strncmp(e->d_name, LIVE_PREFIX, strlen(LIVE_PREFIX)) != 0)
            continue;
        if (asprintf(&path, "%s/%s", parent, e->d_name) < 0) {
            rc = -ENOMEM;
            break;
        }
        int lrc = take_lock(path, false, &fd);
        if (lrc) {
            if (lrc != -EBUSY && lrc != -ENOENT && lrc != -ENOTDIR)
                lf_warn("staging area %s: cannot lock it: %s; leaving it", path,
                        strerror(-lrc));
            free(path);
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 4;
            struct lf_lockdir **v = realloc(*out, cap * sizeof(*v));
            if (!v) {
                free(path);
                close(fd);
                rc = -ENOMEM;
                break;
            }
            *out = v;
        }
        if (!((*out)[*n] = lockdir_of(path, fd)))
            rc = -ENOMEM;
        else
            (*n)++;
    }
    closedir(dir);
    if (rc) {
        for (size_t i = 0; i < *n; i++)
            lf_lockdir_free((*out)[i], false);
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

const char *lf_lockdir_path(const struct lf_lockdir *d) { return d->path; }

/* Whether the directory holds nothing but its lock file. */
static bool only_lock_left(const char *path)
{
    DIR *dir = opendir(path);
    if (!dir)
        return false;
    bool empty = true;
    struct dirent *e;
    while (empty && (e = readdir(dir)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
                strcmp(e->d_name, LOCK_NAME) == 0;
    closedir(dir);
    return empty;
}

bool lf_lockdir_is_empty(const struct lf_lockdir *d) { return only_lock_left(d->path); }

void lf_lockdir_free(struct lf_lockdir *d, bool remove)
{
    if (!d)
        return;
    /* Only the holder adds files here, so "empty" stays true until the
     * directory is gone; the lock file goes first, while still locked. */
    if (remove && only_lock_left(d->path)) {
        char lock[4096];
        snprintf(lock, sizeof(lock), "%s/" LOCK_NAME, d->path);
        if (unlink(lock) == 0)
            rmdir(d->path);
    }
    close(d->fd);
    free(d->path);
    free(d);
}
