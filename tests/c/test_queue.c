/*
 * Completion queues: operations that report to a file descriptor an event loop watches, as
 * the Python package uses them. Operations here are x0x_sleep timers (the completion path is
 * the same for every async function).
 */
#define _XOPEN_SOURCE 700

#include <poll.h>
#include <stdint.h>
#include <stdio.h>

#define TEST_NAME "test_queue"
#include "check.h"

/* Whether the queue's descriptor is readable within `timeout_ms`. */
static int readable(const X0xCompletionQueue *queue, int timeout_ms) {
    int32_t fd = -1;
    CHECK_OK(x0x_completion_queue_fd(queue, &fd));
    CHECK(fd >= 0);
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int n = poll(&p, 1, timeout_ms);
    CHECK(n >= 0);
    return n == 1 && (p.revents & POLLIN);
}

static void check_tokens_arrive_when_operations_settle(void) {
    X0xCompletionQueue *queue = NULL;
    CHECK_OK(x0x_completion_queue_new(&queue));
    CHECK(!readable(queue, 0)); /* empty: not readable */

    enum { N = 50 };
    X0xOp *ops[N];
    for (int i = 0; i < N; i++) {
        CHECK_OK(x0x_sleep((uint32_t)(5 + i % 7), NULL, NULL, &ops[i]));
        CHECK_OK(x0x_op_then_queue(ops[i], queue, (uint64_t)i + 1000));
    }
    int seen[N] = {0};
    int total = 0;
    uint64_t deadline = mono_ms() + 10000;
    while (total < N) {
        CHECK(mono_ms() < deadline);
        if (!readable(queue, 100)) continue;
        uint64_t tokens[8];
        size_t count = 0;
        CHECK_OK(x0x_completion_queue_take(queue, tokens, 8, &count));
        CHECK(count > 0); /* readable means tokens wait */
        for (size_t i = 0; i < count; i++) {
            CHECK(tokens[i] >= 1000 && tokens[i] < 1000 + N);
            int index = (int)(tokens[i] - 1000);
            CHECK(!seen[index]); /* each operation reports once */
            seen[index] = 1;
            total++;
            /* Settled: the outcome is there at once. */
            X0xStatus status = X0X_PANIC;
            void *result = (void *)1;
            CHECK_OK(x0x_op_wait(ops[index], 0, &status, &result));
            CHECK(status == X0X_OK);
            CHECK(result == NULL);
        }
    }
    /* All taken: the descriptor is quiet again. */
    CHECK(!readable(queue, 20));
    size_t count = 1;
    CHECK_OK(x0x_completion_queue_take(queue, NULL, 0, &count));
    CHECK(count == 0);
    for (int i = 0; i < N; i++) x0x_op_free(ops[i]);
    x0x_completion_queue_free(queue);
}

static void check_a_settled_operation_reports_at_once_and_a_cancelled_one_too(void) {
    X0xCompletionQueue *queue = NULL;
    CHECK_OK(x0x_completion_queue_new(&queue));
    X0xOp *done = NULL;
    X0xOp *cancelled = NULL;
    CHECK_OK(x0x_sleep(0, NULL, NULL, &done)); /* settles inside the call */
    CHECK_OK(x0x_op_then_queue(done, queue, 1));
    CHECK(readable(queue, 0));
    CHECK_OK(x0x_sleep(60000, NULL, NULL, &cancelled));
    CHECK_OK(x0x_op_then_queue(cancelled, queue, 2));
    CHECK_OK(x0x_op_cancel(cancelled));

    uint64_t tokens[4];
    size_t got = 0;
    uint64_t deadline = mono_ms() + 5000;
    while (got < 2) {
        CHECK(mono_ms() < deadline);
        size_t count = 0;
        if (!readable(queue, 100)) continue;
        CHECK_OK(x0x_completion_queue_take(queue, tokens + got, 4 - got, &count));
        got += count;
    }
    CHECK(tokens[0] == 1 && tokens[1] == 2);
    X0xStatus status = X0X_OK;
    CHECK_OK(x0x_op_wait(cancelled, 0, &status, NULL));
    CHECK(status == X0X_CANCELLED);
    x0x_op_free(done);
    x0x_op_free(cancelled);
    x0x_completion_queue_free(queue);
}

static void check_a_freed_queue_outlives_its_operations(void) {
    X0xCompletionQueue *queue = NULL;
    CHECK_OK(x0x_completion_queue_new(&queue));
    X0xOp *op = NULL;
    CHECK_OK(x0x_sleep(10, NULL, NULL, &op));
    CHECK_OK(x0x_op_then_queue(op, queue, 7));
    x0x_completion_queue_free(queue); /* the operation still holds it */
    X0xStatus status = X0X_PANIC;
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &status, NULL));
    CHECK(status == X0X_OK);
    x0x_op_free(op); /* and with it the last reference to the queue: no leak, no crash */
}

static void on_never(void *user_data, X0xStatus status, void *result, const char *message) {
    (void)user_data;
    (void)status;
    (void)result;
    (void)message;
}

static void check_bad_arguments_are_refused(void) {
    X0xCompletionQueue *queue = NULL;
    CHECK_STATUS(x0x_completion_queue_new(NULL), X0X_INVALID_ARGUMENT);
    CHECK_OK(x0x_completion_queue_new(&queue));
    int32_t fd = 0;
    size_t count = 0;
    uint64_t token = 0;
    CHECK_STATUS(x0x_completion_queue_fd(NULL, &fd), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_completion_queue_fd(queue, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_completion_queue_take(NULL, &token, 1, &count), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_completion_queue_take(queue, &token, 1, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_completion_queue_take(queue, NULL, 1, &count), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("tokens");

    X0xOp *op = NULL;
    CHECK_OK(x0x_sleep(60000, NULL, NULL, &op));
    CHECK_STATUS(x0x_op_then_queue(NULL, queue, 1), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_op_then_queue(op, NULL, 1), X0X_INVALID_ARGUMENT);
    CHECK_OK(x0x_op_then_queue(op, queue, 1));
    /* One waiter per operation: a second queue or a callback is refused. */
    CHECK_STATUS(x0x_op_then_queue(op, queue, 2), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("only one");
    CHECK_STATUS(x0x_op_then(op, on_never, NULL), X0X_INVALID_ARGUMENT);
    CHECK_OK(x0x_op_cancel(op));
    X0xStatus status = X0X_OK;
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &status, NULL));
    CHECK(status == X0X_CANCELLED);
    CHECK_OK(x0x_completion_queue_take(queue, &token, 1, &count));
    CHECK(count == 1 && token == 1); /* reported once, with its own token */
    x0x_op_free(op);
    x0x_completion_queue_free(queue);
    x0x_completion_queue_free(NULL);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(check_tokens_arrive_when_operations_settle);
    RUN(check_a_settled_operation_reports_at_once_and_a_cancelled_one_too);
    RUN(check_a_freed_queue_outlives_its_operations);
    RUN(check_bad_arguments_are_refused);
    printf("%s: %d passed, %d failed\n", TEST_NAME, g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
