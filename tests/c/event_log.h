/*
 * The events a C test pulled from an X0xEventStream, kept so that it can look for one later.
 * Include after check.h, with EVENT_LOG_LAST_KIND defined as the highest X0X_EVENT_* kind the
 * test may see (anything above it fails the test).
 */
#ifndef X0X_TEST_EVENT_LOG_H
#define X0X_TEST_EVENT_LOG_H

#include <stdlib.h>
#include <string.h>

#ifndef EVENT_LOG_LAST_KIND
#error "define EVENT_LOG_LAST_KIND before including event_log.h"
#endif

typedef struct {
    X0xEvent *events;
    size_t len, cap;
} EventLog;

/* Appends every event of `batch` (checked) to `log`, and frees the batch. */
static void log_batch(EventLog *log, X0xEventBatch *batch) {
    size_t n = x0x_event_batch_len(batch);
    CHECK(n >= 1);
    for (size_t i = 0; i < n; i++) {
        const X0xEvent *e = x0x_event_batch_get(batch, i);
        CHECK(e != NULL);
        CHECK(e->kind >= X0X_EVENT_CONNECTED && e->kind <= EVENT_LOG_LAST_KIND);
        if (log->len == log->cap) {
            log->cap = log->cap ? log->cap * 2 : 64;
            log->events = realloc(log->events, log->cap * sizeof *log->events);
            CHECK(log->events != NULL);
        }
        log->events[log->len++] = *e;
    }
    CHECK(x0x_event_batch_get(batch, n) == NULL);
    x0x_event_batch_free(batch);
}

static void log_free(EventLog *log) {
    free(log->events);
    memset(log, 0, sizeof *log);
}

/* One x0x_event_stream_next of up to `max` events, waited for up to `left` ms; what it got goes
 * into `log`. On timeout the next is cancelled, keeping anything that raced with the cancel. */
static void pull_events(const X0xEventStream *stream, EventLog *log, size_t max, uint32_t left) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_event_stream_next(stream, max, NULL, NULL, &op));
    X0xStatus status = -1;
    void *result = NULL;
    X0xStatus waited = x0x_op_wait(op, left, &status, &result);
    if (waited == X0X_TIMEOUT) {
        CHECK_OK(x0x_op_cancel(op));
        CHECK_OK(x0x_op_wait(op, WAIT_MS, &status, &result));
        CHECK(status == X0X_OK || status == X0X_CANCELLED);
    } else {
        CHECK_OK(waited);
        CHECK_STATUS(status, X0X_OK);
    }
    x0x_op_free(op);
    if (status == X0X_OK) {
        CHECK(result != NULL);
        log_batch(log, result);
    } else {
        CHECK(result == NULL);
    }
}

#endif
