#include "check.h"
#include "lakefuse/buf.h"

#include <stdlib.h>

int main(void)
{
    struct lf_buf b = LF_BUF_INIT;
    /* Reserving alone already yields an empty string (callers print it). */
    CHECK_INT(lf_buf_reserve(&b, 100), 0);
    CHECK_STR(b.data, "");
    lf_buf_free(&b);
    CHECK_INT(lf_buf_puts(&b, "ab"), 0);
    CHECK_INT(lf_buf_printf(&b, "-%d-", 42), 0);
    CHECK_STR(b.data, "ab-42-");
    CHECK_INT(b.len, 6);
    for (int i = 0; i < 10000; i++)
        CHECK_INT(lf_buf_append(&b, "x", 1), 0);
    CHECK_INT(b.len, 10006);
    CHECK_INT(b.data[b.len], 0);
    lf_buf_reset(&b);
    CHECK_INT(b.len, 0);
    char *s = lf_buf_steal(&b);
    CHECK_STR(s, "");
    CHECK(b.data == NULL);
    free(s);
    lf_buf_free(&b);
    return check_summary("test_buf");
}
