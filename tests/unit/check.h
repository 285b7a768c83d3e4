/* check: the unit tests' harness. A failed CHECK prints where and why and
 * marks the test failed; the test keeps running so one run shows every
 * failure. main() returns check_summary(). */
#ifndef LAKEFUSE_TEST_CHECK_H
#define LAKEFUSE_TEST_CHECK_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Atomic: checks run from several threads in some tests. */
static int check_failures;
static int check_count;

#define CHECK(cond)                                                          \
    do {                                                                     \
        __atomic_add_fetch(&check_count, 1, __ATOMIC_RELAXED);               \
        if (!(cond)) {                                                       \
            __atomic_add_fetch(&check_failures, 1, __ATOMIC_RELAXED);        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

#define CHECK_INT(a, b)                                                      \
    do {                                                                     \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);      \
        __atomic_add_fetch(&check_count, 1, __ATOMIC_RELAXED);               \
        if (check_a_ != check_b_) {                                          \
            __atomic_add_fetch(&check_failures, 1, __ATOMIC_RELAXED);        \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n",      \
                    __FILE__, __LINE__, #a, check_a_, #b, check_b_);         \
        }                                                                    \
    } while (0)

#define CHECK_STR(a, b)                                                      \
    do {                                                                     \
        const char *check_a_ = (a), *check_b_ = (b);                         \
        __atomic_add_fetch(&check_count, 1, __ATOMIC_RELAXED);               \
        if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {     \
            __atomic_add_fetch(&check_failures, 1, __ATOMIC_RELAXED);        \
            fprintf(stderr, "%s:%d: %s\n    got:      \"%s\"\n"              \
                    "    expected: \"%s\"\n", __FILE__, __LINE__, #a,        \
                    check_a_ ? check_a_ : "(null)",                          \
                    check_b_ ? check_b_ : "(null)");                         \
        }                                                                    \
    } while (0)

/* Reads until n bytes arrived or the descriptor has no more (a pipe the
 * code under test filled); returns how many arrived. */
static inline size_t test_read_full(int fd, void *dst, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)dst + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

static inline int check_summary(const char *name)
{
    int failed = __atomic_load_n(&check_failures, __ATOMIC_SEQ_CST);
    printf("%s: %d checks, %d failed\n", name, __atomic_load_n(&check_count, __ATOMIC_SEQ_CST),
           failed);
    return failed ? 1 : 0;
}

#endif
