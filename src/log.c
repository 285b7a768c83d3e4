/* log: level filter and a single write(2) per line so lines from the FUSE
 * worker threads never interleave mid-line.
 *
 * Before a background mount forks, stderr is the user's terminal, yet the
 * log proper is syslog from the fork on. Notes (info and debug) logged
 * in between are held in memory and replayed into the log once it is
 * there, so the terminal shows only warnings and errors. */
#include "lakefuse/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_level = LF_LOG_INFO;
static atomic_int g_syslog;
static atomic_int g_fd = STDERR_FILENO;
static atomic_int g_hold;

/* Held lines, "<level digit><text>\0" each; later lines that do not fit
 * are dropped and counted. */
static pthread_mutex_t g_held_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_held[16384];
static size_t g_held_len;
static unsigned g_held_dropped;

void lf_log_hold_notes(int on) { atomic_store(&g_hold, on); }

void lf_log_release_notes(int replay)
{
    pthread_mutex_lock(&g_held_lock);
    atomic_store(&g_hold, 0);
    for (size_t i = 0; replay && i < g_held_len; i += strlen(g_held + i) + 1)
        lf_log((enum lf_log_level)(g_held[i] - '0'), "%s", g_held + i + 1);
    if (replay && g_held_dropped)
        lf_log(LF_LOG_INFO, "(%u earlier notes did not fit in memory)", g_held_dropped);
    g_held_len = 0;
    g_held_dropped = 0;
    pthread_mutex_unlock(&g_held_lock);
}

/* Keeps one note while notes are held; false when not holding. */
__attribute__((format(printf, 2, 0)))
static bool hold(enum lf_log_level level, const char *fmt, va_list ap)
{
    if (level < LF_LOG_INFO || !atomic_load(&g_hold))
        return false;
    char text[1024];
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(text))
        n = (int)sizeof(text) - 1;
    pthread_mutex_lock(&g_held_lock);
    if (g_held_len + (size_t)n + 2 <= sizeof(g_held)) {
        g_held[g_held_len] = (char)('0' + level);
        memcpy(g_held + g_held_len + 1, text, (size_t)n + 1);
        g_held_len += (size_t)n + 2;
    } else {
        g_held_dropped++;
    }
    pthread_mutex_unlock(&g_held_lock);
    return true;
}

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
    if (hold(level, fmt, ap)) {
        va_end(ap);
        return;
    }
    va_end(ap);
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
