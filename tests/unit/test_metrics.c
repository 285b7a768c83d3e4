/* metrics: one made-up snapshot rendered three ways. The Prometheus text
 * is parsed back line by line (HELP, TYPE, samples, label escapes), the
 * JSON by the project's own parser; the file writer replaces its file
 * whole and removes it when stopped. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "lakefuse/json.h"
#include "lakefuse/metrics.h"

/* Quotes, a backslash and a newline: every escape the format has. */
static const char MP[] = "/mnt/a \"b\"\\c\nd";

static void snapshot(struct lf_metrics *m)
{
    memset(m, 0, sizeof(*m));
    m->mountpoint = MP;
    m->start_time = 1700000000.25;
    m->uptime = 3723;
    for (unsigned i = 0; i < LF_OP_OTHER; i++)
        m->store.requests[i] = 100 + i;
    m->store.errors[LF_ERR_TIMEOUT] = 3;
    m->store.errors[LF_ERR_SERVER] = 4;
    m->store.retries[LF_ERR_TIMEOUT] = 2;
    m->store.failures = 1;
    m->store.bytes_in = 3 << 20;
    m->store.bytes_out = 1536;
    m->mem.hits = 90;
    m->mem.misses = 10;
    m->mem.evictions = 7;
    m->mem.bytes = 64u << 20;
    m->mem.limit_bytes = 256u << 20;
    m->mem.blocks = 64;
    m->ra_blocks = 30;
    m->ra_wasted = 2;
    m->staged_files = 2;
    m->staged_bytes = 12345;
    m->waiting_files = 1;
    m->waiting_bytes = 345;
    m->uploads = 5;
    m->upload_failures = 6;
    m->open_read = 3;
    m->open_write = 1;
}

/* ---- a parser of the text exposition format, strict where we rely on it -------- */

#define MAXF 64
struct family {
    char name[96];
    char type[16];
    int samples;
};

struct parsed {
    struct family f[MAXF];
    int n;
    int errors;
};

static bool metric_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return false;
    return true;
}

static void bad(struct parsed *p, const char *why, const char *line)
{
    fprintf(stderr, "prometheus: %s: %s\n", why, line);
    p->errors++;
}

/* Labels {a="x",b="y"} at *s: each label's name and unescaped value to fn;
 * *s left after the '}'. */
static bool parse_labels(const char **s, void (*fn)(void *, const char *, const char *),
                         void *arg)
{
    const char *q = *s + 1;
    for (;;) {
        char name[64], value[256];
        size_t n = 0, v = 0;
        while (isalnum((unsigned char)*q) || *q == '_')
            if (n < sizeof(name) - 1)
                name[n++] = *q++;
            else
                return false;
        name[n] = '\0';
        if (!n || isdigit((unsigned char)name[0]) || q[0] != '=' || q[1] != '"')
            return false;
        for (q += 2; *q != '"'; q++) {
            char c = *q;
            if (!c || c == '\n')
                return false;
            if (c == '\\') {
                c = *++q;
                if (c == 'n')
                    c = '\n';
                else if (c != '\\' && c != '"')
                    return false;
            }
            if (v < sizeof(value) - 1)
                value[v++] = c;
        }
        value[v] = '\0';
        fn(arg, name, value);
        q++;
        if (*q == '}')
            break;
        if (*q++ != ',')
            return false;
    }
    *s = q + 1;
    return true;
}

struct want {
    const char *name, *label, *value;
    double v;
    bool found;
    bool mp_ok;     /* every sample's mountpoint label is MP */
    bool cur_match; /* the current sample has label="value" */
};

static void on_label(void *arg, const char *name, const char *value)
{
    struct want *w = arg;
    if (strcmp(name, "mountpoint") == 0) {
        if (strcmp(value, MP) != 0)
            w->mp_ok = false;
    } else if (w->label && strcmp(name, w->label) == 0 && strcmp(value, w->value) == 0) {
        w->cur_match = true;
    }
}

/* Parses text, checking the format; the value of the sample w names, if any. */
static void parse_prom(const char *text, struct parsed *p, struct want *w)
{
    const char *line = text;
    int cur = -1;
    memset(p, 0, sizeof(*p));
    if (w)
        w->mp_ok = true;
    if (!*text || text[strlen(text) - 1] != '\n')
        bad(p, "no final newline", "");
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char l[1024];
        snprintf(l, sizeof(l), "%.*s", (int)len, line);
        line += len + (end != NULL);
        if (strncmp(l, "# HELP ", 7) == 0) {
            char *sp = strchr(l + 7, ' ');
            if (!sp || !sp[1] || !metric_name(l + 7, (size_t)(sp - l - 7)) || p->n == MAXF) {
                bad(p, "bad HELP", l);
                continue;
            }
            cur = p->n++;
            snprintf(p->f[cur].name, sizeof(p->f[cur].name), "%.*s", (int)(sp - l - 7), l + 7);
            for (int i = 0; i < cur; i++)
                if (strcmp(p->f[i].name, p->f[cur].name) == 0)
                    bad(p, "family twice", l);
        } else if (strncmp(l, "# TYPE ", 7) == 0) {
            char name[96], type[16];
            if (cur < 0 || sscanf(l + 7, "%95s %15s", name, type) != 2 ||
                strcmp(name, p->f[cur].name) != 0 || p->f[cur].type[0] ||
                (strcmp(type, "counter") != 0 && strcmp(type, "gauge") != 0))
                bad(p, "bad TYPE", l);
            else
                snprintf(p->f[cur].type, sizeof(p->f[cur].type), "%s", type);
        } else {
            size_t n = strcspn(l, "{ ");
            const char *q = l + n;
            if (cur < 0 || !p->f[cur].type[0] || strncmp(l, p->f[cur].name, n) != 0 ||
                p->f[cur].name[n] != '\0') {
                bad(p, "sample outside its family", l);
                continue;
            }
            if (w)
                w->cur_match = false;
            struct want dummy = {.mp_ok = true};
            if (*q == '{' && !parse_labels(&q, on_label, w ? (void *)w : (void *)&dummy)) {
                bad(p, "bad labels", l);
                continue;
            }
            char *vend;
            if (*q != ' ' || !q[1]) {
                bad(p, "no value", l);
                continue;
            }
            double v = strtod(q + 1, &vend);
            if (*vend) {
                bad(p, "bad value", l);
                continue;
            }
            p->f[cur].samples++;
            if (w && strcmp(p->f[cur].name, w->name) == 0 && (!w->label || w->cur_match)) {
                w->v = v;
                w->found = true;
            }
        }
    }
    for (int i = 0; i < p->n; i++) {
        const char *name = p->f[i].name;
        size_t n = strlen(name);
        bool total = n > 6 && strcmp(name + n - 6, "_total") == 0;
        if (strncmp(name, "lakefuse_", 9) != 0 || !p->f[i].samples ||
            total != (strcmp(p->f[i].type, "counter") == 0))
            bad(p, "family breaks the naming rules or has no samples", name);
    }
}

static double prom_value(const char *text, const char *name, const char *label,
                         const char *value)
{
    struct parsed p;
    struct want w = {.name = name, .label = label, .value = value};
    parse_prom(text, &p, &w);
    CHECK(w.mp_ok);
    if (!w.found)
        fprintf(stderr, "no sample %s{%s=\"%s\"}\n", name, label ? label : "",
                value ? value : "");
    return w.found ? w.v : -1;
}

static void test_prometheus(void)
{
    struct lf_metrics m;
    struct lf_buf b = LF_BUF_INIT;
    struct parsed p;
    snapshot(&m);
    CHECK_INT(lf_metrics_prometheus(&m, &b), 0);
    parse_prom(b.data, &p, NULL);
    CHECK_INT(p.errors, 0);
    CHECK(p.n >= 25);
    CHECK(prom_value(b.data, "lakefuse_requests_total", "op", "GetObject") == 103);
    CHECK(prom_value(b.data, "lakefuse_requests_total", "op", "ListBuckets") == 100);
    /* Every operation, zero or not, but "Other" only once it happened. */
    CHECK(strstr(b.data, "op=\"Other\"") == NULL);
    CHECK(prom_value(b.data, "lakefuse_request_errors_total", "kind", "server") == 4);
    CHECK(prom_value(b.data, "lakefuse_request_errors_total", "kind", "tls") == 0);
    CHECK(prom_value(b.data, "lakefuse_request_retries_total", "kind", "timeout") == 2);
    CHECK(prom_value(b.data, "lakefuse_received_bytes_total", NULL, NULL) == 3 << 20);
    CHECK(prom_value(b.data, "lakefuse_cache_bytes", "tier", "memory") == 64 << 20);
    CHECK(prom_value(b.data, "lakefuse_cache_limit_bytes", "tier", "disk") == 0);
    CHECK(prom_value(b.data, "lakefuse_readahead_wasted_blocks_total", NULL, NULL) == 2);
    CHECK(prom_value(b.data, "lakefuse_uploads_waiting_bytes", NULL, NULL) == 345);
    CHECK(prom_value(b.data, "lakefuse_open_files", "mode", "write") == 1);
    CHECK(prom_value(b.data, "lakefuse_start_time_seconds", NULL, NULL) == 1700000000.25);
    /* The escapes as the format writes them. */
    CHECK(strstr(b.data, "{mountpoint=\"/mnt/a \\\"b\\\"\\\\c\\nd\",op=\"GetObject\"} 103\n"));
    lf_buf_free(&b);

    /* Without a mountpoint: bare names where no other label is. */
    m.mountpoint = NULL;
    CHECK_INT(lf_metrics_prometheus(&m, &b), 0);
    parse_prom(b.data, &p, NULL);
    CHECK_INT(p.errors, 0);
    CHECK(strstr(b.data, "\nlakefuse_uploads_total 5\n") != NULL);
    CHECK(strstr(b.data, "\nlakefuse_cache_hits_total{tier=\"memory\"} 90\n") != NULL);
    lf_buf_free(&b);

    /* The checker itself refuses what the format forbids. */
    const char *broken[] = {
        "# HELP lakefuse_x_total a\n# TYPE lakefuse_x_total counter\nlakefuse_x_total 1", /* newline */
        "lakefuse_x 1\n",                                                    /* no TYPE */
        "# HELP lakefuse_x a\n# TYPE lakefuse_x gauge\nlakefuse_x{a=\"\\q\"} 1\n", /* escape */
        "# HELP lakefuse_x a\n# TYPE lakefuse_x counter\nlakefuse_x 1\n",    /* no _total */
        "# HELP lakefuse_x a\n# TYPE lakefuse_x gauge\nlakefuse_x{a=\"1\" 1\n",
        "# HELP lakefuse_x a\n# TYPE lakefuse_x gauge\nlakefuse_x one\n",
    };
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        parse_prom(broken[i], &p, NULL);
        CHECK(p.errors > 0);
    }
}

static int64_t json_at(const struct lf_json *root, const char *obj, const char *sub,
                       const char *key)
{
    const struct lf_json *o = root, *x;
    int64_t v = -1;
    if (obj && lf_json_get_obj(o, obj, &x) == 0)
        o = x;
    if (sub && lf_json_get_obj(o, sub, &x) == 0)
        o = x;
    if (lf_json_get_int(o, key, &v) != 0)
        return -1;
    return v;
}

static void test_json(void)
{
    struct lf_metrics m;
    struct lf_buf b = LF_BUF_INIT;
    struct lf_json *root = NULL;
    const char *mp = NULL;
    snapshot(&m);
    CHECK_INT(lf_metrics_json(&m, &b), 0);
    CHECK(strchr(b.data, '\n') == b.data + b.len - 1); /* one line */
    CHECK_INT(lf_json_parse(b.data, b.len, LF_JSON_MAX, &root, NULL), 0);
    if (!root)
        return;
    CHECK_INT(lf_json_get_str(root, "mountpoint", &mp), 0);
    CHECK_STR(mp, MP);
    uint64_t total = 0;
    for (unsigned i = 0; i < LF_OP_OTHER; i++)
        total += 100 + i;
    CHECK_INT(json_at(root, "requests", NULL, "total"), (int64_t)total);
    CHECK_INT(json_at(root, "requests", "by_op", "PutObject"), 104);
    CHECK_INT(json_at(root, "requests", "by_op", "Other"), -1);
    CHECK_INT(json_at(root, "errors", NULL, "total"), 7);
    CHECK_INT(json_at(root, "errors", "by_kind", "timeout"), 3);
    CHECK_INT(json_at(root, "retries", "by_kind", "throttled"), 0);
    CHECK_INT(json_at(root, NULL, NULL, "failed_operations"), 1);
    CHECK_INT(json_at(root, "bytes", NULL, "sent"), 1536);
    CHECK_INT(json_at(root, "cache", "memory", "limit_bytes"), 256 << 20);
    CHECK_INT(json_at(root, "cache", "disk", "hits"), 0);
    CHECK_INT(json_at(root, "readahead", NULL, "blocks"), 30);
    CHECK_INT(json_at(root, "staging", NULL, "bytes"), 12345);
    CHECK_INT(json_at(root, "uploads", NULL, "waiting_files"), 1);
    CHECK_INT(json_at(root, "uploads", NULL, "failed"), 6);
    CHECK_INT(json_at(root, "open_files", NULL, "read"), 3);
    CHECK_INT(json_at(root, "storage", NULL, "requests"), -1); /* no presigned URLs */
    lf_json_free(root);
    lf_buf_free(&b);
    /* With presigned URLs the storage's counters come beside the gateway's,
     * in every rendering. */
    m.store.storage.on = true;
    m.store.storage.requests = 41;
    m.store.storage.refreshes = 2;
    m.store.storage.bytes_in = 1 << 30;
    CHECK_INT(lf_metrics_json(&m, &b), 0);
    root = NULL;
    CHECK_INT(lf_json_parse(b.data, b.len, LF_JSON_MAX, &root, NULL), 0);
    CHECK_INT(json_at(root, "storage", NULL, "requests"), 41);
    CHECK_INT(json_at(root, "storage", NULL, "url_renewals"), 2);
    CHECK_INT(json_at(root, "storage", "bytes", "received"), 1 << 30);
    CHECK_INT(json_at(root, "open_files", NULL, "read"), 3);
    lf_json_free(root);
    lf_buf_free(&b);
    CHECK_INT(lf_metrics_prometheus(&m, &b), 0);
    CHECK(b.data && strstr(b.data, "\nlakefuse_storage_requests_total{mountpoint=") &&
          strstr(strstr(b.data, "\nlakefuse_storage_requests_total{"), "} 41\n"));
    lf_buf_free(&b);
    CHECK_INT(lf_metrics_text(&m, &b), 0);
    CHECK(b.data && strstr(b.data, "storage     41 requests, 0 retries, 2 URLs renewed"));
    lf_buf_free(&b);
    m.store.storage.on = false;
    m.mountpoint = NULL;
    CHECK_INT(lf_metrics_json(&m, &b), 0);
    CHECK(strncmp(b.data, "{\"mountpoint\":null,", 19) == 0);
    lf_buf_free(&b);
}

static void test_text(void)
{
    struct lf_metrics m;
    struct lf_buf b = LF_BUF_INIT;
    char h[32];
    snapshot(&m);
    m.mountpoint = "/mnt/x";
    CHECK_INT(lf_metrics_text(&m, &b), 0);
    CHECK(strncmp(b.data, "lakefuse stats of /mnt/x, up 1h 02m\n", 36) == 0);
    CHECK(strstr(b.data, "\nerrors      7 (timeout 3, server 4)\n") != NULL);
    CHECK(strstr(b.data, "\nretries     2 (timeout 2)\n") != NULL);
    CHECK(strstr(b.data, "GetObject 103, PutObject 104") != NULL);
    CHECK(strstr(b.data, "3.0 MiB received, 1.5 KiB sent") != NULL);
    CHECK(strstr(b.data, "(90.0% hits)") != NULL);
    CHECK(strstr(b.data, "            disk off\n") != NULL);
    CHECK(strstr(b.data, "\nuploads     1 waiting (345 B), 5 done (0 parts), 6 failed\n"));
    CHECK(strstr(b.data, "\nopen files  4 (1 for writing)\n") != NULL);
    lf_buf_free(&b);
    m.store = (struct lf_store_stats){0};
    CHECK_INT(lf_metrics_text(&m, &b), 0);
    CHECK(strstr(b.data, "\nerrors      0\n") != NULL);
    lf_buf_free(&b);
    CHECK_STR(lf_human_bytes(0, h, sizeof(h)), "0 B");
    CHECK_STR(lf_human_bytes(1023, h, sizeof(h)), "1023 B");
    CHECK_STR(lf_human_bytes(1024, h, sizeof(h)), "1.0 KiB");
    CHECK_STR(lf_human_bytes(3u << 29, h, sizeof(h)), "1.5 GiB");
}

static int ticks;
static void counting(void *arg, struct lf_metrics *m)
{
    (void)arg;
    snapshot(m);
    m->uploads = (uint64_t)__atomic_add_fetch(&ticks, 1, __ATOMIC_SEQ_CST);
}

static void test_file(void)
{
    char dir[] = "/tmp/lf-metrics-test-XXXXXX", path[128], tmp[160];
    struct lf_metrics m;
    struct stat st;
    if (!mkdtemp(dir)) {
        CHECK(false);
        return;
    }
    snprintf(path, sizeof(path), "%s/lakefuse.prom", dir);
    snapshot(&m);
    CHECK_INT(lf_metrics_check_file(path), 0);
    CHECK(stat(path, &st) != 0); /* the check leaves nothing behind */
    CHECK_INT(lf_metrics_check_file(dir), -EISDIR);
    snprintf(tmp, sizeof(tmp), "%s/missing/x.prom", dir);
    CHECK_INT(lf_metrics_check_file(tmp), -ENOENT);
    CHECK_INT(lf_metrics_write_file(tmp, &m), -ENOENT);

    CHECK_INT(lf_metrics_write_file(path, &m), 0);
    struct lf_buf want = LF_BUF_INIT;
    CHECK_INT(lf_metrics_prometheus(&m, &want), 0);
    char got[16384];
    FILE *fp = fopen(path, "r");
    size_t n = fp ? fread(got, 1, sizeof(got) - 1, fp) : 0;
    if (fp)
        fclose(fp);
    got[n] = '\0';
    CHECK_STR(got, want.data);
    lf_buf_free(&want);
    snprintf(tmp, sizeof(tmp), "%s/lakefuse.prom.%ld.tmp", dir, (long)getpid());
    CHECK(stat(tmp, &st) != 0);

    /* The writer: a fresh snapshot each interval, the file gone at stop. */
    struct lf_metrics_writer *w = lf_metrics_writer_start(path, 0.02, counting, NULL);
    CHECK(w != NULL);
    double seen = 0;
    for (int i = 0; i < 500 && seen < 3; i++) {
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        if (!(fp = fopen(path, "r")))
            continue; /* not written yet */
        n = fread(got, 1, sizeof(got) - 1, fp);
        fclose(fp);
        got[n] = '\0';
        struct parsed p;
        parse_prom(got, &p, NULL);
        CHECK_INT(p.errors, 0); /* never a partial file */
        seen = prom_value(got, "lakefuse_uploads_total", NULL, NULL);
    }
    CHECK(seen >= 3);
    lf_metrics_writer_stop(w);
    CHECK(stat(path, &st) != 0);
    CHECK(rmdir(dir) == 0); /* and no temporary file either */
}

int main(void)
{
    test_prometheus();
    test_json();
    test_text();
    test_file();
    return check_summary("test_metrics");
}
