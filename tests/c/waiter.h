/*
 * The callback, operation and id helpers the C tests share. Include it after check.h.
 *
 * Waiter: a completion callback (on_done) that records what it got, with a mutex + condvar to
 * wait for it. finish_op: waits for a callback-less operation; join_ok joins with it. Then
 * small id and agent getters.
 * All static inline, so a test that uses only some of them builds without unused warnings.
 */
#ifndef X0X_TEST_WAITER_H
#define X0X_TEST_WAITER_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "x0x.h"

#ifndef X0X_TEST_CHECK_H
#error "include check.h before waiter.h"
#endif

/* The bound on every wait for the network (generous: valgrind is much slower). */
#ifndef WAIT_MS
#define WAIT_MS 30000
#endif

/* ---------------------------------------------------------------------------------------------
 * A callback that records what it got, with a mutex + condvar to wait for it
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    X0xStatus status;
    void *result;
    bool message_was_null;
    char message[1024];
    pthread_t thread; /* the thread the callback ran on */
} Waiter;

static inline void waiter_init(Waiter *w) {
    memset(w, 0, sizeof *w);
    CHECK(pthread_mutex_init(&w->mu, NULL) == 0);
    CHECK(pthread_cond_init(&w->cv, NULL) == 0);
    w->status = -1;
}

static inline void waiter_destroy(Waiter *w) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static inline void on_done(void *user_data, X0xStatus status, void *result, const char *message) {
    Waiter *w = user_data;
    pthread_mutex_lock(&w->mu);
    w->calls++;
    w->status = status;
    w->result = result;
    w->thread = pthread_self();
    w->message_was_null = message == NULL;
    /* `message` is borrowed for the duration of the call only: copy it. */
    snprintf(w->message, sizeof w->message, "%s", message ? message : "");
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits until the callback has run at least once or `timeout_ms` passed; returns the call count. */
static inline int waiter_wait(Waiter *w, int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (w->calls == 0) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &deadline) == ETIMEDOUT) break;
    }
    int calls = w->calls;
    pthread_mutex_unlock(&w->mu);
    return calls;
}

static inline int waiter_calls(Waiter *w) {
    pthread_mutex_lock(&w->mu);
    int calls = w->calls;
    pthread_mutex_unlock(&w->mu);
    return calls;
}

/* Lets queued callbacks run: callbacks run in order on one thread, so once a later operation's
 * callback has run, any (buggy) extra callback queued before it would have run too. */
static inline void drain_callbacks(void) {
    Waiter w;
    waiter_init(&w);
    CHECK_OK(x0x_sleep(20, on_done, &w, NULL));
    CHECK(waiter_wait(&w, WAIT_MS) == 1);
    waiter_destroy(&w);
}

/* Waits (bounded) for a callback-less operation, then frees it. Returns the operation's status
 * and its result through `result` (may be NULL); copies its error message into `msg`. */
static inline X0xStatus finish_op(X0xOp *op, void **result, char *msg, size_t msg_len) {
    CHECK(op != NULL);
    X0xStatus status = -1;
    CHECK_OK(x0x_op_wait(op, WAIT_MS, &status, result));
    if (msg != NULL) snprintf(msg, msg_len, "%s", x0x_op_error_message(op));
    x0x_op_free(op);
    return status;
}

/* Joins the network (bounded by WAIT_MS); a failure prints the operation's message. */
static inline void join_ok(const X0xAgent *agent) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_join_network(agent, WAIT_MS, NULL, NULL, &op));
    char msg[512];
    X0xStatus status = finish_op(op, NULL, msg, sizeof msg);
    if (status != X0X_OK) fprintf(stderr, "join failed: %s\n", msg);
    CHECK_OK(status);
}

/* ---------------------------------------------------------------------------------------------
 * Ids and agents
 * ------------------------------------------------------------------------------------------- */

static inline bool id_eq(const X0xId *a, const X0xId *b) {
    return memcmp(a->bytes, b->bytes, X0X_ID_LEN) == 0;
}

static inline bool id_is_zero(const X0xId *id) {
    static const X0xId zero;
    return id_eq(id, &zero);
}

static inline X0xId agent_id(const X0xAgent *agent) {
    X0xId id;
    memset(&id, 0, sizeof id);
    CHECK_OK(x0x_agent_agent_id(agent, &id));
    return id;
}

static inline X0xId machine_id(const X0xAgent *agent) {
    X0xId id;
    memset(&id, 0, sizeof id);
    CHECK_OK(x0x_agent_machine_id(agent, &id));
    return id;
}

static inline X0xStats stats(const X0xAgent *agent) {
    X0xStats s;
    memset(&s, 0, sizeof s);
    CHECK_OK(x0x_agent_stats(agent, &s));
    return s;
}

static inline bool is_connected(const X0xAgent *agent) {
    bool connected = false;
    CHECK_OK(x0x_agent_is_connected(agent, &connected));
    return connected;
}

#endif
