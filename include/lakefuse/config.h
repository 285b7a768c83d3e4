/* config: the command line and environment of `lakefuse mount`.
 *
 * Credentials come only from the environment or lakectl's file (argv is
 * visible to every user through /proc). Every long option is also a mount
 * option (-o cache_dir=DIR, the form /etc/fstab needs), beside the FUSE
 * and kernel options handed to libfuse. The secret is wiped from memory when the config is
 * freed. Every option has one entry in a table that also renders --help,
 * so the help text and the parser cannot disagree.
 */
#ifndef LAKEFUSE_CONFIG_H
#define LAKEFUSE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* --presign: whether object bytes go through presigned URLs of lakeFS's
 * object store (src/presign.c) instead of the gateway. */
enum lf_presign_mode { LF_PRESIGN_AUTO = 0, LF_PRESIGN_ON, LF_PRESIGN_OFF };

struct lf_config {
    char *endpoint;     /* gateway base URL, no trailing /api/v1 */
    char *access_key;
    char *secret_key;
    char *region;
    char *repo;         /* from lakefs://REPO[/REF]; NULL: all repositories */
    char *ref;          /* NULL: the repository's branches */
    char *path;         /* "a/b": only that directory of the ref; NULL: all of it */
    char *mountpoint;
    char *cache_dir;
    char *staging_dir;  /* this mount's own locked area (set by the caller, not parsed) */
    char *log_file;
    char *ca_bundle;
    char *config_file;  /* lakectl's YAML; NULL: ~/.lakectl.yaml */
    char *metrics_file; /* Prometheus text, rewritten every metrics_interval s; NULL: none */
    double metrics_interval;
    char *cred_file;    /* the lakectl file the credentials came from (absolute); NULL: the environment */
    bool insecure;
    bool foreground;
    bool read_only;
    bool pin;           /* mount the commit REF points to at mount time */
    bool setuid_bits;   /* serve stored setuid/setgid/sticky bits; no nosuid */
    bool helper;        /* started by mount(8) (SOURCE MOUNTPOINT -o OPTS): quiet */
    bool config_private; /* config named by -o config=: must be private, not just warned of */
    int log_level;

    double branch_ttl;      /* attributes and listings on branches, s */
    double ref_ttl;         /* tags and ref expressions, s */
    double repo_ttl;        /* repository and branch lists, s */
    size_t cache_size;      /* memory for data blocks, bytes */
    size_t disk_cache_size; /* data blocks under cache_dir/blocks, bytes; 0 = off */
    size_t block_size;
    size_t readahead_init, readahead_max, request_size;
    bool async_read;        /* FUSE_CAP_ASYNC_READ: kernel readahead in parallel */
    bool direct_io;         /* FOPEN_DIRECT_IO on every open for reading */
    bool page_cache;        /* never FOPEN_DIRECT_IO (by default big objects get it) */
    bool no_splice;         /* never splice answers straight to the kernel */
    unsigned max_requests;  /* HTTP requests in flight */
    long timeout_ms;        /* a stalled request fails after this long */
    unsigned retries;       /* extra attempts for idempotent requests */

    size_t staging_max;     /* bytes of staged writes; 0 = automatic */
    size_t part_size;       /* multipart part size, bytes */
    bool keep_staged;       /* do not upload what an earlier run left staged */
    enum lf_presign_mode presign;

    /* Arguments for libfuse (program name, -o options). */
    int fuse_argc;
    char **fuse_argv;
};

/* Parses `lakefuse mount` arguments (argv[0] is "mount"). Returns 0, 1 when
 * --help was printed (exit 0), or -EINVAL after printing why to err. */
int lf_config_parse(struct lf_config *cfg, int argc, char **argv, FILE *err);
/* The form mount(8) runs through fuse3's mount.fuse3: argv is
 * {SOURCE, MOUNTPOINT, "-o", OPTS, ...}, SOURCE a lakefs:// URI. Returns as
 * lf_config_parse does. */
int lf_config_parse_helper(struct lf_config *cfg, int argc, char **argv, FILE *err);
void lf_config_free(struct lf_config *cfg);
/* Reads the credentials of a lakectl file again (a running mount whose
 * key was rotated): 0 with malloc'ed *access_key and *secret_key (the
 * caller wipes the secret), or a negative errno (-ENOKEY: the file has
 * none). */
int lf_config_read_credentials(const char *path, char **access_key, char **secret_key);
/* Wipes and frees the secret once the store's signer holds its own copy. */
void lf_config_forget_secret(struct lf_config *cfg);
void lf_config_usage(FILE *out);

#endif
