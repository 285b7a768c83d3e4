/* log: one line per event on stderr (or syslog when daemonised).
 *
 * Messages name what failed and why; they never carry credentials. Callers
 * log object keys and request names, never headers: the Authorization header
 * and the secret key only live inside sigv4/config.
 */
#ifndef LAKEFUSE_LOG_H
#define LAKEFUSE_LOG_H

enum lf_log_level {
    LF_LOG_ERROR = 0,
    LF_LOG_WARN = 1,
    LF_LOG_INFO = 2,
    LF_LOG_DEBUG = 3,
};

void lf_log_set_level(enum lf_log_level level);
enum lf_log_level lf_log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns -EINVAL otherwise. */
int lf_log_parse_level(const char *name);
/* After fork into the background: send lines to syslog instead of stderr. */
void lf_log_use_syslog(int on);
/* Write lines to this descriptor instead of stderr (a --log-file). */
void lf_log_set_fd(int fd);
/* While on, info and debug lines are kept in memory instead of written
 * (errors and warnings still are): a background mount's notes belong in
 * its log, not on the terminal it starts from. Release replays them into
 * the log as it is then (or drops them) and stops holding. */
void lf_log_hold_notes(int on);
void lf_log_release_notes(int replay);

void lf_log(enum lf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define lf_err(...) lf_log(LF_LOG_ERROR, __VA_ARGS__)
#define lf_warn(...) lf_log(LF_LOG_WARN, __VA_ARGS__)
#define lf_info(...) lf_log(LF_LOG_INFO, __VA_ARGS__)
#define lf_dbg(...)                                                          \
    do {                                                                     \
        if (lf_log_get_level() >= LF_LOG_DEBUG)                              \
            lf_log(LF_LOG_DEBUG, __VA_ARGS__);                               \
    } while (0)

#endif
