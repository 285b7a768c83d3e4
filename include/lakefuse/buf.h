/* buf: a growable byte buffer, the one value type shared by the modules.
 * Always NUL-terminated after len so text users can treat data as a string.
 * A buffer owns its data; lf_buf_free releases it and leaves an empty one.
 */
#ifndef LAKEFUSE_BUF_H
#define LAKEFUSE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct lf_buf {
    char *data;
    size_t len;
    size_t cap;
};

#define LF_BUF_INIT {NULL, 0, 0}

/* All return 0 or -ENOMEM. */
int lf_buf_reserve(struct lf_buf *b, size_t extra);
int lf_buf_append(struct lf_buf *b, const void *p, size_t n);
int lf_buf_puts(struct lf_buf *b, const char *s);
int lf_buf_printf(struct lf_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void lf_buf_reset(struct lf_buf *b);
void lf_buf_free(struct lf_buf *b);
/* Hands the data to the caller (who frees it) and empties the buffer. */
char *lf_buf_steal(struct lf_buf *b);

#endif
