/* log: notes held while a background mount still writes to the terminal,
 * then replayed into the log (or dropped); warnings never wait. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "lakefuse/log.h"

/* Everything written to fd so far, from the start. */
static char *contents(FILE *fp)
{
    static char buf[65536];
    fflush(fp);
    rewind(fp);
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fseek(fp, 0, SEEK_END);
    return buf;
}

static void test_hold_and_replay(void)
{
    FILE *fp = tmpfile();
    lf_log_set_fd(fileno(fp));
    lf_log_set_level(LF_LOG_DEBUG);

    lf_log_hold_notes(1);
    lf_info("note %d", 1);
    lf_warn("a warning");
    lf_dbg("detail %s", "x");
    lf_err("an error");
    const char *got = contents(fp);
    CHECK(strstr(got, "warn: a warning") != NULL);
    CHECK(strstr(got, "error: an error") != NULL);
    CHECK(strstr(got, "note 1") == NULL);
    CHECK(strstr(got, "detail x") == NULL);

    lf_log_release_notes(1);
    got = contents(fp);
    const char *n1 = strstr(got, "info: note 1"), *d = strstr(got, "debug: detail x");
    CHECK(n1 != NULL && d != NULL && n1 < d); /* in their order, with their levels */
    lf_info("after");
    CHECK(strstr(contents(fp), "info: after") != NULL); /* no longer held */

    /* Dropped when asked to. */
    lf_log_hold_notes(1);
    lf_info("never shown");
    lf_log_release_notes(0);
    lf_log_release_notes(1);
    CHECK(strstr(contents(fp), "never shown") == NULL);

    /* More than fits: the rest is counted, not lost silently. */
    lf_log_hold_notes(1);
    char big[900];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 40; i++)
        lf_info("%d %s", i, big);
    lf_log_release_notes(1);
    got = contents(fp);
    CHECK(strstr(got, "0 zzz") != NULL);
    CHECK(strstr(got, "earlier notes did not fit in memory") != NULL);

    lf_log_set_fd(STDERR_FILENO);
    fclose(fp);
}

int main(void)
{
    test_hold_and_replay();
    return check_summary("test_log");
}
