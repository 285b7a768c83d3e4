/* config: options, defaults, credentials from the environment, errors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "lakefuse/config.h"

static int parse(struct lf_config *c, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    FILE *devnull = fopen("/dev/null", "w");
    int rc = lf_config_parse(c, argc, argv, devnull);
    fclose(devnull);
    return rc;
}

static void test_options(void)
{
    struct lf_config c;
    char *argv[] = {"mount", "--endpoint", "http://127.0.0.1:8000/api/v1/", "--cache-size",
                    "64", "--branch-ttl", "0.5", "-o", "allow_other", "--read-only",
                    "lakefs://demo/main", "/mnt/x", NULL};
    CHECK_INT(parse(&c, argv), 0);
    CHECK_STR(c.endpoint, "http://127.0.0.1:8000");
    CHECK_STR(c.repo, "demo");
    CHECK_STR(c.ref, "main");
    CHECK_STR(c.mountpoint, "/mnt/x");
    CHECK_INT(c.cache_size, 64u << 20);
    CHECK(c.branch_ttl > 0.49 && c.branch_ttl < 0.51);
    CHECK(c.read_only);
    CHECK_STR(c.access_key, "AKIDEXAMPLE");
    /* allow_other brings default_permissions along */
    bool dp = false;
    for (int i = 0; i < c.fuse_argc; i++)
        dp = dp || strcmp(c.fuse_argv[i], "default_permissions") == 0;
    CHECK(dp);
    lf_config_free(&c);
}

static void test_subdirectory(void)
{
    struct lf_config c;
    char *argv[] = {"mount", "--endpoint", "http://x", "lakefs://demo/main/data/raw/", "/mnt/x",
                    NULL};
    CHECK_INT(parse(&c, argv), 0);
    CHECK_STR(c.repo, "demo");
    CHECK_STR(c.ref, "main");
    CHECK_STR(c.path, "data/raw");
    CHECK_STR(c.mountpoint, "/mnt/x");
    bool named = false;
    for (int i = 0; i < c.fuse_argc; i++)
        named = named || strstr(c.fuse_argv[i], "fsname=lakefs://demo/main/data/raw,") != NULL;
    CHECK(named);
    lf_config_free(&c);
    char *plain[] = {"mount", "--endpoint", "http://x", "lakefs://demo/main/", "/mnt/x", NULL};
    CHECK_INT(parse(&c, plain), 0);
    CHECK(c.path == NULL);
    lf_config_free(&c);
}

static void test_errors(void)
{
    struct lf_config c;
    char *bad_uri[] = {"mount", "--endpoint", "http://x", "lakefs://A", "/mnt", NULL};
    CHECK_INT(parse(&c, bad_uri), -EINVAL);
    lf_config_free(&c);
    char *bad_part[] = {"mount", "--endpoint", "http://x", "--part-size", "3", "/mnt", NULL};
    CHECK_INT(parse(&c, bad_part), -EINVAL);
    lf_config_free(&c);
    /* one way for every file, or the other: not both */
    char *both_io[] = {"mount", "--endpoint", "http://x", "--direct-io", "--page-cache", "/mnt",
                       NULL};
    CHECK_INT(parse(&c, both_io), -EINVAL);
    lf_config_free(&c);
    char *page_cache[] = {"mount", "--endpoint", "http://x", "--page-cache", "/mnt", NULL};
    CHECK_INT(parse(&c, page_cache), 0);
    CHECK(c.page_cache && !c.direct_io);
    lf_config_free(&c);
    /* numbers past what the fields hold are refused, not converted */
    char *huge_ttl[] = {"mount", "--endpoint", "http://x", "--timeout", "7e45", "/mnt", NULL};
    CHECK_INT(parse(&c, huge_ttl), -EINVAL);
    lf_config_free(&c);
    char *huge_n[] = {"mount", "--endpoint", "http://x", "--retries", "1e30", "/mnt", NULL};
    CHECK_INT(parse(&c, huge_n), -EINVAL);
    lf_config_free(&c);
    char *no_scheme[] = {"mount", "--endpoint", "lakefs.example.com", "/mnt", NULL};
    CHECK_INT(parse(&c, no_scheme), -EINVAL);
    lf_config_free(&c);
    /* A URI and no mount point: the URI is not taken for the mount point. */
    char *no_mp[] = {"mount", "--endpoint", "http://x", "lakefs://demo/main", NULL};
    CHECK_INT(parse(&c, no_mp), -EINVAL);
    lf_config_free(&c);
    char *nothing[] = {"mount", "--endpoint", "http://x", NULL};
    CHECK_INT(parse(&c, nothing), -EINVAL);
    lf_config_free(&c);
    char *three[] = {"mount", "--endpoint", "http://x", "lakefs://demo/main", "/a", "/b", NULL};
    CHECK_INT(parse(&c, three), -EINVAL);
    lf_config_free(&c);
    char *dotdot[] = {"mount", "--endpoint", "http://x", "lakefs://demo/main/../x", "/a", NULL};
    CHECK_INT(parse(&c, dotdot), -EINVAL);
    lf_config_free(&c);
    char *help[] = {"mount", "--help", NULL};
    CHECK_INT(parse(&c, help), 1);
    lf_config_free(&c);
}

/* argv from a fuzz input, split at NUL bytes as fuzz_config does. */
static void parse_fuzz_input(const char *path)
{
    FILE *fp = fopen(path, "rb");
    /* A missing input would make the regression pass without replaying it. */
    CHECK(fp != NULL);
    if (!fp) {
        fprintf(stderr, "    cannot read regression input %s\n", path);
        return;
    }
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, fp);
    fclose(fp);
    char *argv[34] = {"mount"};
    int argc = 1;
    for (char *p = buf; argc < 33 && p <= buf + n; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    struct lf_config c;
    parse(&c, argv);
    lf_config_free(&c);
    free(buf); /* the next parse must not look into it */
}

/* Found by fuzz_config: a call that failed in the middle of a cluster of
 * short options left getopt pointing into the old argv, which the next
 * call read after it was freed (ASan sees it; the regressions replay it). */
static void test_fuzz_regressions(void)
{
    static const char *const inputs[] = {"config-crash-477b3fa8e7639d546143e0ae4dc3b3c53f6bb2e4",
                                         "config-crash-52c1cdbcadbdbd0180f7bbb81e6e353ce289ca90",
                                         "config-crash-e00aac9283b04941f71f28214953c40e0c6c489d"};
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
            char path[512];
            snprintf(path, sizeof(path), "%s/../../fuzz/regressions/config/%s", LF_TEST_DATA,
                     inputs[i]);
            parse_fuzz_input(path);
        }
    struct lf_config c;
    char *argv2[] = {"mount", "--endpoint", "http://x", "-o", "ro", "/mnt", NULL};
    CHECK_INT(parse(&c, argv2), 0);
    lf_config_free(&c);
}

static bool has_arg(const struct lf_config *c, const char *a)
{
    for (int i = 0; i < c->fuse_argc; i++)
        if (strcmp(c->fuse_argv[i], a) == 0)
            return true;
    return false;
}

/* A ref's ',' cannot end fsname and start options; options the user
 * wrote escaped still count for default_permissions; stored setuid bits
 * need --setuid-bits. */
static void test_fuse_options(void)
{
    struct lf_config c;
    char *ref[] = {"mount", "--endpoint", "http://x", "lakefs://demo/v1,allow_other,suid",
                   "/mnt", NULL};
    CHECK_INT(parse(&c, ref), 0);
    CHECK(has_arg(&c, "fsname=lakefs://demo/v1\\,allow_other\\,suid,subtype=lakefuse"));
    CHECK(!has_arg(&c, "default_permissions"));
    CHECK(has_arg(&c, "nosuid"));
    lf_config_free(&c);
    char *esc[] = {"mount", "--endpoint", "http://x", "-o", "ro,allow\\137other", "/mnt", NULL};
    CHECK_INT(parse(&c, esc), 0);
    CHECK(has_arg(&c, "default_permissions"));
    lf_config_free(&c);
    char *suid[] = {"mount", "--endpoint", "http://x", "--setuid-bits", "/mnt", NULL};
    CHECK_INT(parse(&c, suid), 0);
    CHECK(c.setuid_bits && !has_arg(&c, "nosuid"));
    lf_config_free(&c);
}

/* The daemon runs from "/": every path the user typed relative is made
 * absolute against where `mount` ran. */
static void test_relative_paths(void)
{
    struct lf_config c;
    char cwd[4096], want[4200];
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    char *argv[] = {"mount", "--endpoint", "http://x", "--ca-bundle", "ca.pem", "--log-file",
                    "l.log", "--cache-dir", "c", "mnt", NULL};
    CHECK_INT(parse(&c, argv), 0);
    snprintf(want, sizeof(want), "%s/mnt", cwd);
    CHECK_STR(c.mountpoint, want);
    snprintf(want, sizeof(want), "%s/ca.pem", cwd);
    CHECK_STR(c.ca_bundle, want);
    snprintf(want, sizeof(want), "%s/l.log", cwd);
    CHECK_STR(c.log_file, want);
    snprintf(want, sizeof(want), "%s/c", cwd);
    CHECK_STR(c.cache_dir, want);
    lf_config_free(&c);
}

static void test_nan_refused(void)
{
    struct lf_config c;
    const char *opts[] = {"--timeout", "--cache-size", "--retries", "--branch-ttl"};
    const char *vals[] = {"nan", "NaN", "-nan", "inf"};
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++) {
            char *argv[] = {"mount", "--endpoint", "http://x", (char *)opts[i], (char *)vals[j],
                            "/mnt", NULL};
            CHECK_INT(parse(&c, argv), -EINVAL);
            lf_config_free(&c);
        }
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
}

/* lakectl's YAML: comments after plain values, keys nested deeper than a
 * section's own, lines longer than any fixed buffer; an explicit --config
 * wins over the environment. */
static void test_lakectl_file(void)
{
    struct lf_config c;
    char path[] = "/tmp/lf-test-lakectl-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    size_t pad = 3000;
    char *yaml = malloc(pad + 1024);
    int n = sprintf(yaml, "# lakectl\ncredentials:\n  access_key_id: AKFILE # the key\n"
                          "  nested:\n    secret_access_key: NOT-THIS-ONE\n"
                          "  secret_access_key: \"sec # ret\"\nserver:\n  endpoint_url: ");
    memset(yaml + n, 'a', pad); /* one long comment-free line: a host name nobody has */
    sprintf(yaml + n + pad, "\n  retries: 3\n");
    memcpy(yaml + n, "http://h", 8);
    write_file(path, yaml);
    char *argv[] = {"mount", "--config", path, "/mnt", NULL};
    CHECK_INT(parse(&c, argv), 0);
    CHECK_STR(c.access_key, "AKFILE");
    CHECK_STR(c.secret_key, "sec # ret");
    CHECK_INT(strlen(c.endpoint), 8 + pad - 8);
    lf_config_free(&c);
    unlink(path);
    free(yaml);
}

/* Every long option is also a mount option with '_' for '-'; FUSE's and
 * the kernel's pass to libfuse; mount(8)'s own words are dropped; anything
 * else, and a flag with a value or a valued option without one, is refused. */
static void test_mount_options(void)
{
    struct lf_config c;
    char *argv[] = {"mount", "-o", "endpoint=http://h:8000,cache_dir=/var/c,cache_size=64",
                    "-o", "read_only,log_level=debug,retries=2,allow_other,noatime",
                    "-o", "_netdev,nofail,noauto,x-systemd.automount,comment=x,user,,relatime",
                    "lakefs://demo/main", "/mnt/x", NULL};
    CHECK_INT(parse(&c, argv), 0);
    CHECK_STR(c.endpoint, "http://h:8000");
    CHECK_STR(c.cache_dir, "/var/c");
    CHECK_INT(c.cache_size, 64u << 20);
    CHECK(c.read_only);
    CHECK_INT(c.retries, 2);
    CHECK(has_arg(&c, "allow_other") && has_arg(&c, "noatime"));
    CHECK(has_arg(&c, "default_permissions"));
    CHECK(!has_arg(&c, "_netdev") && !has_arg(&c, "relatime") && !has_arg(&c, "user"));
    CHECK(!c.config_private);
    lf_config_free(&c);

    char *ro[] = {"mount", "--endpoint", "http://x", "-o", "ro", "/mnt", NULL};
    CHECK_INT(parse(&c, ro), 0);
    CHECK(c.read_only && has_arg(&c, "ro"));
    lf_config_free(&c);

    const char *refused[] = {"cache_sise=5", "read_only=1", "cache_dir", "cache_dir=",
                             "option=x", "fsname=y", "subtype=z", "kernel_cache", "debug"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char *bad[] = {"mount", "--endpoint", "http://x", "-o", (char *)refused[i], "/mnt", NULL};
        CHECK_INT(parse(&c, bad), -EINVAL);
        lf_config_free(&c);
    }
}

/* mount.fuse3's form: SOURCE MOUNTPOINT -o OPTS, only -o after the two. */
static void test_helper_form(void)
{
    struct lf_config c;
    FILE *devnull = fopen("/dev/null", "w");
    char *argv[] = {"lakefs://demo/main/sub", "/mnt/x", "-o", "rw,endpoint=http://h,dev,suid",
                    "-o", "cache_size=32", NULL};
    CHECK_INT(lf_config_parse_helper(&c, 6, argv, devnull), 0);
    CHECK(c.helper);
    CHECK_STR(c.repo, "demo");
    CHECK_STR(c.ref, "main");
    CHECK_STR(c.path, "sub");
    CHECK_STR(c.mountpoint, "/mnt/x");
    CHECK_STR(c.endpoint, "http://h");
    CHECK_INT(c.cache_size, 32u << 20);
    /* mount.fuse3 adds suid; without --setuid-bits nosuid comes after it */
    int suid = -1, nosuid = -1;
    for (int i = 0; i < c.fuse_argc; i++) {
        if (strcmp(c.fuse_argv[i], "suid") == 0)
            suid = i;
        if (strcmp(c.fuse_argv[i], "nosuid") == 0)
            nosuid = i;
    }
    CHECK(suid > 0 && nosuid > suid);
    lf_config_free(&c);

    char *all[] = {"lakefs://", "/mnt/x", "-o", "endpoint=http://h", NULL};
    CHECK_INT(lf_config_parse_helper(&c, 4, all, devnull), 0);
    CHECK(c.repo == NULL && c.ref == NULL);
    lf_config_free(&c);

    char *other[] = {"lakefs://demo/main", "/mnt/x", "-f", NULL};
    CHECK_INT(lf_config_parse_helper(&c, 3, other, devnull), -EINVAL);
    lf_config_free(&c);
    char *dangling[] = {"lakefs://demo/main", "/mnt/x", "-o", NULL};
    CHECK_INT(lf_config_parse_helper(&c, 3, dangling, devnull), -EINVAL);
    lf_config_free(&c);
    char *alone[] = {"lakefs://demo/main", NULL};
    CHECK_INT(lf_config_parse_helper(&c, 1, alone, devnull), -EINVAL);
    lf_config_free(&c);
    fclose(devnull);
}

/* config= (the fstab form) must be private; --config only warns. */
static void test_private_config(void)
{
    struct lf_config c;
    char path[] = "/tmp/lf-test-private-XXXXXX", opt[64];
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    write_file(path, "credentials:\n  access_key_id: AKFILE\n  secret_access_key: S\n"
                     "server:\n  endpoint_url: http://h\n");
    snprintf(opt, sizeof(opt), "config=%s", path);
    char *by_opt[] = {"mount", "-o", opt, "/mnt", NULL};
    char *by_flag[] = {"mount", "--config", path, "/mnt", NULL};
    CHECK(chmod(path, 0600) == 0);
    CHECK_INT(parse(&c, by_opt), 0);
    CHECK(c.config_private);
    CHECK_STR(c.access_key, "AKFILE");
    lf_config_free(&c);
    CHECK(chmod(path, 0640) == 0);
    CHECK_INT(parse(&c, by_opt), -EACCES);
    lf_config_free(&c);
    CHECK_INT(parse(&c, by_flag), 0);
    lf_config_free(&c);
    unlink(path);
}

int main(void)
{
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
    test_options();
    test_errors();
    test_subdirectory();
    test_fuzz_regressions();
    test_fuse_options();
    test_relative_paths();
    test_nan_refused();
    test_lakectl_file();
    test_mount_options();
    test_helper_form();
    test_private_config();
    return check_summary("test_config");
}
