/* mounts: mountinfo parsing, absolute names without touching the leaf,
 * and finding the processes that hold a directory. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "lakefuse/mounts.h"

static char tmp[] = "/tmp/lf-mounts-XXXXXX";

static void test_find(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/mountinfo", tmp);
    FILE *fp = fopen(path, "w");
    fputs("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
          "40 22 0:35 / /mnt/lake rw,nosuid,nodev shared:9 - fuse.lakefuse "
          "lakefs://demo/main rw,user_id=0,group_id=0\n"
          "41 22 0:36 / /mnt/a\\040b rw - fuse.sshfs me@host:/x rw\n"
          "42 40 0:37 / /mnt/lake rw - fuse.lakefuse lakefs://demo/v1/data rw\n"
          "43 22 0:38 / /mnt/c rw master:3 propagate_from:2 - tmpfs tmpfs rw\n",
          fp);
    fclose(fp);
    char *type = NULL, *src = NULL;
    /* Stacked: the later (upper) mount answers. */
    CHECK_INT(lf_mount_find(path, "/mnt/lake", &type, &src), 0);
    CHECK_STR(type, "fuse.lakefuse");
    CHECK_STR(src, "lakefs://demo/v1/data");
    free(type);
    free(src);
    CHECK_INT(lf_mount_find(path, "/mnt/a b", &type, &src), 0);
    CHECK_STR(type, "fuse.sshfs");
    free(type);
    free(src);
    CHECK_INT(lf_mount_find(path, "/mnt/c", &type, &src), 0);
    CHECK_STR(type, "tmpfs");
    free(type);
    free(src);
    CHECK_INT(lf_mount_find(path, "/mnt", &type, &src), -ENOENT);
    CHECK(type == NULL && src == NULL);
    CHECK_INT(lf_mount_find(path, "/mnt/lake/x", &type, &src), -ENOENT);
    snprintf(path, sizeof(path), "%s/missing", tmp);
    CHECK_INT(lf_mount_find(path, "/", &type, &src), -ENOENT);
}

static void test_abspath(void)
{
    char want[256], *got;
    snprintf(want, sizeof(want), "%s/not-there", tmp);
    got = lf_mount_abspath(want);
    CHECK_STR(got, want); /* the leaf is never resolved */
    free(got);
    char slashed[300];
    snprintf(slashed, sizeof(slashed), "%s//not-there//", tmp);
    got = lf_mount_abspath(slashed);
    CHECK_STR(got, want);
    free(got);
    char cwd[256];
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    CHECK(chdir(tmp) == 0);
    got = lf_mount_abspath("not-there");
    CHECK_STR(got, want);
    free(got);
    got = lf_mount_abspath(".");
    CHECK_STR(got, tmp);
    free(got);
    CHECK(chdir(cwd) == 0);
    got = lf_mount_abspath("/");
    CHECK_STR(got, "/");
    free(got);
    got = lf_mount_abspath("/no-such-dir/x");
    CHECK(got == NULL && errno == ENOENT);
}

/* A child that holds dir in one way, ready once it wrote to the pipe. */
static pid_t spawn_holder(const char *dir, int how)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        char path[300];
        snprintf(path, sizeof(path), "%s/sub", dir);
        if (how == 0 && chdir(path) != 0)
            _exit(1);
        snprintf(path, sizeof(path), "%s/sub/file", dir);
        if (how == 1 && open(path, O_RDONLY) < 0)
            _exit(1);
        if (write(p[1], "r", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    char c;
    ssize_t r = pid > 0 ? read(p[0], &c, 1) : -1;
    close(p[0]);
    return r == 1 ? pid : -1;
}

static const struct lf_holder *holder_of(const struct lf_holder *h, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].pid == pid)
            return &h[i];
    return NULL;
}

static void test_holders(void)
{
    char dir[256], sub[300];
    snprintf(dir, sizeof(dir), "%s/mnt", tmp);
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    CHECK(mkdir(dir, 0700) == 0 && mkdir(sub, 0700) == 0);
    char file[320];
    snprintf(file, sizeof(file), "%s/file", sub);
    FILE *fp = fopen(file, "w");
    CHECK(fp != NULL);
    if (fp)
        fclose(fp);

    pid_t in_dir = spawn_holder(dir, 0), with_file = spawn_holder(dir, 1);
    CHECK(in_dir > 0 && with_file > 0);
    struct lf_holder *h = NULL;
    size_t n = 0, hidden = 0;
    CHECK_INT(lf_mount_holders("/proc", dir, &h, &n, &hidden), 0);
    const struct lf_holder *a = holder_of(h, n, in_dir), *b = holder_of(h, n, with_file);
    CHECK(a && strcmp(a->what, "working directory sub") == 0);
    CHECK(b && strcmp(b->what, "open file sub/file") == 0);
    CHECK(a && strcmp(a->comm, "test_mounts") == 0);
    CHECK(holder_of(h, n, getpid()) == NULL);
    free(h);

    /* A sibling whose name starts the same is not under dir. */
    char other[300];
    snprintf(other, sizeof(other), "%s/mn", tmp);
    CHECK_INT(lf_mount_holders("/proc", other, &h, &n, &hidden), 0);
    CHECK(holder_of(h, n, in_dir) == NULL && holder_of(h, n, with_file) == NULL);
    free(h);

    pid_t kids[] = {in_dir, with_file};
    for (int i = 0; i < 2; i++)
        if (kids[i] > 0) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
        }
    unlink(file);
    rmdir(sub);
    rmdir(dir);
}

int main(void)
{
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_find();
    test_abspath();
    test_holders();
    char mi[256];
    snprintf(mi, sizeof(mi), "%s/mountinfo", tmp);
    unlink(mi);
    rmdir(tmp);
    return check_summary("test_mounts");
}
