/* mounts: mountinfo lookups and the processes that keep a mount busy.
 *
 * Nothing here stats a path under the mount point: the names come from
 * /proc's links and tables, which the kernel answers without asking the
 * file system, so a hung daemon cannot hang `lakefuse unmount`.
 */
#include "lakefuse/mounts.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *lf_mount_abspath(const char *path)
{
    char *p = strdup(path), *out = NULL;
    if (!p)
        return NULL;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    char *slash = strrchr(p, '/');
    const char *name = slash ? slash + 1 : p;
    if (n == 0 || strcmp(p, "/") == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        out = realpath(n ? p : ".", NULL);
        goto out;
    }
    const char *parent = !slash ? "." : slash == p ? "/" : p;
    if (slash && slash != p)
        *slash = '\0';
    char *up = realpath(parent, NULL);
    if (up && asprintf(&out, "%s%s%s", up, strcmp(up, "/") == 0 ? "" : "/", name) < 0)
        out = NULL;
    free(up);
out:
    free(p);
    return out;
}

/* Undoes mountinfo's octal escapes (\040 for a space, \134 for a
 * backslash ...) in place. */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* The n-th space-separated field of line (0-based), cut in place. */
static char *field(char *line, int n)
{
    char *save = NULL, *f = strtok_r(line, " \n", &save);
    while (f && n-- > 0)
        f = strtok_r(NULL, " \n", &save);
    return f;
}

/* Fills *fstype and *source when the mountinfo line mounts dir. */
static int match_line(char *line, const char *dir, char **fstype, char **source)
{
    char *sep = strstr(line, " - ");
    if (!sep)
        return 0;
    *sep = '\0';
    char *tail = sep + 3;
    char *target = field(line, 4);
    if (!target)
        return 0;
    unescape(target);
    if (strcmp(target, dir) != 0)
        return 0;
    char *save = NULL;
    char *type = strtok_r(tail, " \n", &save);
    char *src = type ? strtok_r(NULL, " \n", &save) : NULL;
    if (!type)
        return 0;
    if (src)
        unescape(src);
    char *t = strdup(type), *s = strdup(src ? src : "");
    if (!t || !s) {
        free(t);
        free(s);
        return -ENOMEM;
    }
    free(*fstype);
    free(*source);
    *fstype = t;
    *source = s;
    return 1;
}

int lf_mount_find(const char *mountinfo, const char *dir, char **fstype, char **source)
{
    FILE *fp = fopen(mountinfo, "re");
    if (!fp)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    bool found = false;
    *fstype = *source = NULL;
    /* Later lines are later mounts: the last match is the one on top. */
    while (getline(&line, &cap, fp) > 0) {
        rc = match_line(line, dir, fstype, source);
        if (rc < 0)
            break;
        found |= rc == 1;
        rc = 0;
    }
    free(line);
    fclose(fp);
    if (rc || !found) {
        free(*fstype);
        free(*source);
        *fstype = *source = NULL;
    }
    return rc ? rc : found ? 0 : -ENOENT;
}

/* path, or the part of it below dir ("." for dir itself); NULL when path
 * is not dir or under it. */
static const char *below(const char *dir, const char *path)
{
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) != 0 || (path[n] != '\0' && path[n] != '/'))
        return NULL;
    return path[n] ? path + n + 1 : ".";
}

/* The target of a /proc link, or -errno. */
static int read_link(const char *path, char *out, size_t cap)
{
    ssize_t n = readlink(path, out, cap - 1);
    if (n < 0)
        return -errno;
    out[n] = '\0';
    return 0;
}

/* Whether the process at pdir has a file under dir open (h->what says
 * which). */
static bool open_files_under(const char *pdir, const char *dir, struct lf_holder *h)
{
    char path[PATH_MAX + 64], target[PATH_MAX];
    snprintf(path, sizeof(path), "%s/fd", pdir);
    DIR *d = opendir(path);
    struct dirent *e;
    const char *rel = NULL;
    while (d && !rel && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof(path), "%s/fd/%s", pdir, e->d_name) >= (int)sizeof(path))
            continue;
        if (read_link(path, target, sizeof(target)) == 0 && (rel = below(dir, target)))
            snprintf(h->what, sizeof(h->what), "open file %s", rel);
    }
    if (d)
        closedir(d);
    return rel != NULL;
}

/* The same for files it has mapped (a loaded library, an mmap). */
static bool maps_under(const char *pdir, const char *dir, struct lf_holder *h)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/maps", pdir);
    FILE *fp = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0;
    const char *rel = NULL;
    while (fp && !rel && getline(&line, &cap, fp) > 0) {
        /* "addr perms offset dev inode   /path": the first '/' starts it. */
        char *p = strchr(line, '/');
        if (!p)
            continue;
        p[strcspn(p, "\n")] = '\0';
        if ((rel = below(dir, p)))
            snprintf(h->what, sizeof(h->what), "mapped file %s", rel);
    }
    free(line);
    if (fp)
        fclose(fp);
    return rel != NULL;
}

/* 1 when the process holds dir (h filled), 0 when not, -EACCES when it
 * cannot be inspected. */
static int inspect(const char *pdir, const char *dir, struct lf_holder *h)
{
    static const char *const links[] = {"cwd", "root"};
    static const char *const names[] = {"working directory", "root directory"};
    char path[PATH_MAX + 64], target[PATH_MAX];
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", pdir, links[i]);
        int rc = read_link(path, target, sizeof(target));
        if (rc == -EACCES || rc == -EPERM)
            return -EACCES;
        const char *rel = rc ? NULL : below(dir, target);
        if (rel) {
            snprintf(h->what, sizeof(h->what), "%s %s", names[i], rel);
            return 1;
        }
    }
    return open_files_under(pdir, dir, h) || maps_under(pdir, dir, h);
}

static void read_comm(const char *pdir, struct lf_holder *h)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/comm", pdir);
    FILE *fp = fopen(path, "re");
    if (!fp || !fgets(h->comm, sizeof(h->comm), fp))
        snprintf(h->comm, sizeof(h->comm), "?");
    h->comm[strcspn(h->comm, "\n")] = '\0';
    if (fp)
        fclose(fp);
}

int lf_mount_holders(const char *proc_root, const char *dir, struct lf_holder **holders,
                     size_t *n, size_t *hidden)
{
    *holders = NULL;
    *n = *hidden = 0;
    DIR *d = opendir(proc_root);
    if (!d)
        return -errno;
    size_t cap = 0;
    int rc = 0;
    pid_t self = getpid();
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self)
            continue;
        char pdir[PATH_MAX];
        snprintf(pdir, sizeof(pdir), "%s/%s", proc_root, e->d_name);
        struct lf_holder h = {.pid = (pid_t)pid};
        int r = inspect(pdir, dir, &h);
        if (r == -EACCES)
            (*hidden)++;
        if (r != 1)
            continue;
        read_comm(pdir, &h);
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            struct lf_holder *g = realloc(*holders, cap * sizeof(*g));
            if (!g) {
                rc = -ENOMEM;
                break;
            }
            *holders = g;
        }
        (*holders)[(*n)++] = h;
    }
    closedir(d);
    if (rc) {
        free(*holders);
        *holders = NULL;
        *n = 0;
    }
    return rc;
}
