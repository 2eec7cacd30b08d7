/*
 * The assertion and timing helpers every C test shares. Define TEST_NAME ("test_x") before
 * including it; the summary line is "TEST_NAME: N passed, M failed".
 *
 * A failing check prints where, what and x0x_last_error_message(), then exits 1 at once with
 * _exit (skipping atexit and the leak report, which would only bury the real failure).
 */
#ifndef X0X_TEST_CHECK_H
#define X0X_TEST_CHECK_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "x0x.h"

#ifndef TEST_NAME
#error "define TEST_NAME before including check.h"
#endif

/* The Makefile defines X0X_TEST_EXPECT_ASAN for the sanitizer build: make sure it is real. */
#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(X0X_TEST_EXPECT_ASAN) && !defined(__SANITIZE_ADDRESS__) && \
    !__has_feature(address_sanitizer)
#error "X0X_TEST_EXPECT_ASAN is set but this compiler is not building with AddressSanitizer"
#endif

static int g_passed;
static int g_failed;
static const char *g_current = "(none)";

static inline _Noreturn void fail_now(void) {
    g_failed++;
    printf("FAIL %s\n", g_current);
    printf("%s: %d passed, %d failed\n", TEST_NAME, g_passed, g_failed);
    fflush(stdout);
    fflush(stderr);
    _exit(1);
}

static inline _Noreturn void fail_expr(const char *file, int line, const char *expr) {
    fprintf(stderr, "%s:%d: check failed: %s\n  x0x_last_error_message(): \"%s\"\n", file, line,
            expr, x0x_last_error_message());
    fail_now();
}

static inline _Noreturn void fail_status(const char *file, int line, const char *expr,
                                         X0xStatus got, X0xStatus want) {
    fprintf(stderr,
            "%s:%d: %s\n  returned %s (%d), expected %s (%d)\n"
            "  x0x_last_error_message(): \"%s\"\n",
            file, line, expr, x0x_status_str(got), (int)got, x0x_status_str(want), (int)want,
            x0x_last_error_message());
    fail_now();
}

#define CHECK(expr)                                        \
    do {                                                   \
        if (!(expr)) fail_expr(__FILE__, __LINE__, #expr); \
    } while (0)

#define CHECK_STATUS(expr, want)                                                  \
    do {                                                                          \
        X0xStatus got_ = (expr);                                                  \
        if (got_ != (want)) fail_status(__FILE__, __LINE__, #expr, got_, (want)); \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, X0X_OK)

/* Checks that the thread's last error message contains `needle`. */
#define CHECK_LAST_ERROR_HAS(needle) CHECK(strstr(x0x_last_error_message(), (needle)) != NULL)

static inline uint64_t clock_ms(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* For measuring and deadlines. */
static inline uint64_t mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

/* Milliseconds since the Unix epoch, like X0xMessage.timestamp_ms. */
static inline uint64_t wall_ms(void) { return clock_ms(CLOCK_REALTIME); }

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* What is left of `deadline` (mono_ms), for x0x_op_wait; 0 once it has passed. */
static inline uint32_t left_ms(uint64_t deadline) {
    uint64_t now = mono_ms();
    return now >= deadline ? 0 : (uint32_t)(deadline - now);
}

/* Runs one check function (named check_*), printing its name and how long it took. */
#define RUN(fn)                                                                            \
    do {                                                                                   \
        g_current = #fn;                                                                   \
        uint64_t start_ = mono_ms();                                                       \
        fn();                                                                              \
        g_passed++;                                                                        \
        printf("ok   %-28s %6llu ms\n", #fn + 6, (unsigned long long)(mono_ms() - start_)); \
        fflush(stdout);                                                                    \
    } while (0)

#endif /* X0X_TEST_CHECK_H */
