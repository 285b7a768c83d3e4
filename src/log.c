/* log: level filter and a single write(2) per line so lines from the FUSE
 * worker threads never interleave mid-line. */
#include "lakefuse/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_level = LF_LOG_INFO;
static atomic_int g_syslog;
static atomic_int g_fd = STDERR_FILENO;

void lf_log_set_fd(int fd) { atomic_store(&g_fd, fd); }

void lf_log_set_level(enum lf_log_level level) { atomic_store(&g_level, level); }

enum lf_log_level lf_log_get_level(void) { return atomic_load(&g_level); }

void lf_log_use_syslog(int on) { atomic_store(&g_syslog, on); }

int lf_log_parse_level(const char *name)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -EINVAL;
}

void lf_log(enum lf_log_level level, const char *fmt, ...)
{
    static const char *const tags[] = {"error", "warn", "info", "debug"};
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    char line[2048];
    va_list ap;
    int n = 0;

    if ((int)level > atomic_load(&g_level))
        return;
    va_start(ap, fmt);
    if (atomic_load(&g_syslog)) {
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        syslog(prio[level], "%s", line);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld lakefuse %s: ",
                 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 tags[level]);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(atomic_load(&g_fd), line, (size_t)n);
    (void)w;
}
