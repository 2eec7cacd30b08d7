/*
 * C tests of the x0x networking ABI: two real agents in this process, both from the plain
 * default builder, exchange signed messages over QUIC (join, publish, subscribe, events, stats,
 * leave, close), against the committed include/x0x.h.
 *
 * Built by tests/c/Makefile with ASan+UBSan (`make test`) and without sanitizers under valgrind
 * (`make valgrind`). Every check asserts real results; a failing assertion prints where, what,
 * and x0x_last_error_message(), then exits 1. Every wait is bounded (WAIT_MS), so a lost message
 * fails the test instead of hanging it. The agents bind the default 0.0.0.0:0 and reach each
 * other over loopback. Everything the test owns is freed, so the leak checkers see only what the
 * library keeps for the process lifetime. The agents share the machine key in
 * $HOME/.x0x/machine.key, as a user's do: the Makefile runs each test binary with a fresh HOME.
 *
 * The checks run in order and share two agents: A starts a network, B joins through A.
 */
#define _XOPEN_SOURCE 700

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TEST_NAME "test_pubsub"
#include "check.h"
#include "waiter.h"

#define EVENT_LOG_LAST_KIND X0X_EVENT_AGENT_LEFT
#include "event_log.h"
/* How soon A must notice that B left. */
#define LEAVE_NOTICE_MS 10000
/* The join timeout used against a bootstrap peer that never answers. */
#define SILENT_JOIN_TIMEOUT_MS 800

/* ---------------------------------------------------------------------------------------------
 * Assertions and bookkeeping
 * ------------------------------------------------------------------------------------------- */


/* ---------------------------------------------------------------------------------------------
 * Time
 * ------------------------------------------------------------------------------------------- */


/* ---------------------------------------------------------------------------------------------
 * Agents and operations
 * ------------------------------------------------------------------------------------------- */

/* Builds an agent with the default builder, as a user would (the machine key shared through
 * $HOME, a fresh agent key, bind 0.0.0.0:0); `bootstrap` (may be NULL) is the peer it will join
 * through. */
static X0xAgent *new_agent(const char *bootstrap) {
    X0xAgentBuilder *b = x0x_agent_builder_new();
    CHECK(b != NULL);
    if (bootstrap != NULL) CHECK_OK(x0x_agent_builder_with_bootstrap(b, bootstrap));
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_builder_build(b, NULL, NULL, &op));
    x0x_agent_builder_free(b); /* the build took a snapshot */
    void *agent = NULL;
    char msg[512];
    X0xStatus status = finish_op(op, &agent, msg, sizeof msg);
    if (status != X0X_OK) fprintf(stderr, "build failed: %s\n", msg);
    CHECK_OK(status);
    CHECK(agent != NULL);
    return agent;
}

static X0xStatus join(const X0xAgent *agent, uint32_t timeout_ms, char *msg, size_t msg_len) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_join_network(agent, timeout_ms, NULL, NULL, &op));
    return finish_op(op, NULL, msg, msg_len);
}

/* Publishes `text` (without its NUL) and waits for the operation; returns its status. */
static X0xStatus publish(const X0xAgent *agent, const char *topic, const char *text) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_publish(agent, topic, (const uint8_t *)text, strlen(text), NULL, NULL,
                               &op));
    return finish_op(op, NULL, NULL, 0);
}

/* Publishes "<prefix><i>" for i in [first, first + count) on `topic`: starts them all, then
 * waits for each (they complete once queued for signing). */
static void publish_range(const X0xAgent *agent, const char *topic, const char *prefix, int first,
                          int count) {
    X0xOp **ops = calloc((size_t)count, sizeof *ops);
    CHECK(ops != NULL);
    for (int i = 0; i < count; i++) {
        char text[64];
        int len = snprintf(text, sizeof text, "%s%d", prefix, first + i);
        CHECK_OK(x0x_agent_publish(agent, topic, (const uint8_t *)text, (size_t)len, NULL, NULL,
                                   &ops[i]));
    }
    for (int i = 0; i < count; i++) CHECK_OK(finish_op(ops[i], NULL, NULL, 0));
    free(ops);
}

static X0xSubscription *subscribe(const X0xAgent *agent, const char *topic, size_t capacity) {
    X0xSubscription *sub = NULL;
    CHECK_OK(x0x_agent_subscribe(agent, topic, capacity, &sub));
    CHECK(sub != NULL);
    return sub;
}

/* Waits until `agent` has handed at least `target` messages to its subscribers in total. */
static void wait_delivered(const X0xAgent *agent, uint64_t target) {
    uint64_t deadline = mono_ms() + WAIT_MS;
    while (stats(agent).delivered < target) {
        if (mono_ms() >= deadline) {
            fprintf(stderr, "delivered %llu, waited for %llu\n",
                    (unsigned long long)stats(agent).delivered, (unsigned long long)target);
            CHECK(!"messages were not delivered in time");
        }
        sleep_ms(5);
    }
}

/* Checks one received message: topic, payload "<prefix><n>", sender, a recent timestamp. */
static void check_message(const X0xMessage *m, const char *topic, const char *prefix, int n,
                          const X0xId *sender) {
    CHECK(m != NULL);
    char want[64];
    int want_len = snprintf(want, sizeof want, "%s%d", prefix, n);
    CHECK(m->topic != NULL && strcmp(m->topic, topic) == 0);
    if (m->payload_len != (size_t)want_len || memcmp(m->payload, want, m->payload_len) != 0) {
        fprintf(stderr, "got payload \"%.*s\", expected \"%s\"\n", (int)m->payload_len,
                m->payload ? (const char *)m->payload : "", want);
        CHECK(!"payload in order");
    }
    CHECK(m->payload != NULL);
    CHECK(id_eq(&m->sender, sender));
    uint64_t now = wall_ms();
    uint64_t diff = m->timestamp_ms > now ? m->timestamp_ms - now : now - m->timestamp_ms;
    CHECK(diff <= 60000);
    CHECK(m->hops <= 1); /* two agents: its own message (0) or its neighbour's (1) */
}

/* Receives exactly messages "<prefix><first>" .. "<prefix><first + count - 1>", in order, from
 * `sender`, with x0x_subscription_next (batches of at most `max`). Returns the batch count. */
static int expect_messages(const X0xSubscription *sub, const char *topic, const char *prefix,
                           int first, int count, const X0xId *sender, size_t max) {
    int got = 0, batches = 0;
    uint64_t deadline = mono_ms() + WAIT_MS;
    while (got < count) {
        X0xOp *op = NULL;
        CHECK_OK(x0x_subscription_next(sub, max, NULL, NULL, &op));
        X0xStatus status = -1;
        void *result = NULL;
        X0xStatus waited = x0x_op_wait(op, left_ms(deadline), &status, &result);
        if (waited == X0X_TIMEOUT) {
            fprintf(stderr, "topic %s: received %d of %d messages within %d ms\n", topic, got,
                    count, WAIT_MS);
            CHECK(!"all messages received in time");
        }
        CHECK_OK(waited);
        CHECK_STATUS(status, X0X_OK);
        CHECK(result != NULL);
        CHECK(strcmp(x0x_op_error_message(op), "") == 0);
        x0x_op_free(op);
        X0xMessageBatch *batch = result;
        size_t n = x0x_message_batch_len(batch);
        CHECK(n >= 1 && n <= max);
        CHECK(got + (int)n <= count);
        for (size_t i = 0; i < n; i++) {
            check_message(x0x_message_batch_get(batch, i), topic, prefix, first + got, sender);
            got++;
        }
        CHECK(x0x_message_batch_get(batch, n) == NULL);
        x0x_message_batch_free(batch);
        batches++;
    }
    return batches;
}

/* Checks that nothing is waiting on `sub` (and it is still open). */
static void expect_empty(const X0xSubscription *sub) {
    X0xMessageBatch *batch = (X0xMessageBatch *)1;
    CHECK_OK(x0x_subscription_try_next(sub, 100, &batch));
    CHECK(batch == NULL);
}

/* x0x_agent_local_addrs of an agent bound to 0.0.0.0:`port`: lines of ip:port, all with that
 * port, loopback first; NULL arguments are refused and leave `out` alone. */
static void check_local_addrs(const X0xAgent *agent, const char *port) {
    X0xBytes addrs = {NULL, 0};
    CHECK_OK(x0x_agent_local_addrs(agent, &addrs));
    CHECK(addrs.data != NULL && addrs.len > 0);
    char *text = malloc(addrs.len + 1);
    CHECK(text != NULL);
    memcpy(text, addrs.data, addrs.len);
    text[addrs.len] = 0;
    CHECK(strlen(text) == addrs.len); /* no NUL inside */
    char first[X0X_ADDR_STR_LEN];
    snprintf(first, sizeof first, "127.0.0.1:%s", port);
    size_t first_len = strlen(first);
    CHECK(strncmp(text, first, first_len) == 0);
    CHECK(text[first_len] == '\n' || text[first_len] == '\0');
    char suffix[16];
    int suffix_len = snprintf(suffix, sizeof suffix, ":%s", port);
    for (char *line = text, *end; line != NULL; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        CHECK(len > (size_t)suffix_len);
        CHECK(memcmp(line + len - (size_t)suffix_len, suffix, (size_t)suffix_len) == 0);
    }
    for (char *nl = strchr(text, '\n'); nl != NULL; nl = strchr(nl, '\n')) *nl = ' ';
    printf("     (local_addrs: %s)\n", text);
    free(text);
    x0x_bytes_free(&addrs);

    X0xBytes untouched = {(uint8_t *)1, 1};
    CHECK_STATUS(x0x_agent_local_addrs(NULL, &untouched), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("agent must not be NULL");
    CHECK(untouched.data == (uint8_t *)1 && untouched.len == 1);
    CHECK_STATUS(x0x_agent_local_addrs(agent, NULL), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("out must not be NULL");
}

/* ---------------------------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------------------------- */

static const X0xEvent *find_event(const EventLog *log, int32_t kind, const X0xId *peer) {
    for (size_t i = 0; i < log->len; i++) {
        const X0xEvent *e = &log->events[i];
        if (e->kind == kind && (peer == NULL || id_eq(&e->peer, peer))) return e;
    }
    return NULL;
}

/* Pulls events from `stream` into `log` until one of `kind` (from `peer`, unless NULL) is there
 * or `timeout_ms` passed. Returns it, or NULL on timeout. */
static const X0xEvent *await_event(const X0xEventStream *stream, EventLog *log, int32_t kind,
                                   const X0xId *peer, uint32_t timeout_ms) {
    uint64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        const X0xEvent *found = find_event(log, kind, peer);
        if (found != NULL) return found;
        uint32_t left = left_ms(deadline);
        if (left == 0) return NULL;
        pull_events(stream, log, 16, left);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Shared state: A starts the network, B joins through it
 * ------------------------------------------------------------------------------------------- */

static X0xAgent *g_a, *g_b;
static X0xId g_a_agent, g_b_agent, g_a_machine, g_b_machine;
static X0xEventStream *g_a_events, *g_b_events;
static EventLog g_a_log, g_b_log;

/* ---------------------------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------------------------- */

/* Argument errors are reported synchronously and no callback runs; publishing before joining
 * fails through the operation. */
static void check_errors_before_join(void) {
    X0xAgent *x = new_agent(NULL);
    CHECK(!is_connected(x));

    /* Not joined: the operation fails with X0X_NOT_CONNECTED, both ways of waiting. */
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_publish(x, "t", (const uint8_t *)"x", 1, NULL, NULL, &op));
    char msg[512];
    CHECK_STATUS(finish_op(op, NULL, msg, sizeof msg), X0X_NOT_CONNECTED);
    CHECK(strlen(msg) > 0);
    Waiter w;
    waiter_init(&w);
    op = NULL;
    CHECK_OK(x0x_agent_publish(x, "t", (const uint8_t *)"x", 1, on_done, &w, &op));
    CHECK(waiter_wait(&w, WAIT_MS) == 1);
    CHECK(w.status == X0X_NOT_CONNECTED);
    CHECK(w.result == NULL);
    CHECK(!w.message_was_null && strlen(w.message) > 0);
    X0xStatus status = -1;
    CHECK_OK(x0x_op_wait(op, WAIT_MS, &status, NULL));
    CHECK(status == X0X_NOT_CONNECTED);
    x0x_op_free(op);

    /* Bad arguments: X0X_INVALID_ARGUMENT at once, with a message; no callback ever runs. */
    Waiter never;
    waiter_init(&never);
    uint8_t *big = calloc(X0X_MAX_PAYLOAD_LEN + 1, 1);
    CHECK(big != NULL);
    CHECK_STATUS(x0x_agent_publish(x, "t", big, X0X_MAX_PAYLOAD_LEN + 1, on_done, &never, NULL),
                 X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("262145");
    free(big);
    CHECK_STATUS(x0x_agent_publish(x, NULL, (const uint8_t *)"x", 1, on_done, &never, NULL),
                 X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("topic");
    const char bad_utf8[] = {'t', (char)0xff, 'x', 0};
    CHECK_STATUS(x0x_agent_publish(x, bad_utf8, (const uint8_t *)"x", 1, on_done, &never, NULL),
                 X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("not valid UTF-8");
    CHECK_STATUS(x0x_agent_publish(x, "", (const uint8_t *)"x", 1, on_done, &never, NULL),
                 X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("topic");
    char long_topic[258];
    memset(long_topic, 'a', 257);
    long_topic[257] = 0; /* 257 bytes: one over the limit */
    CHECK_STATUS(x0x_agent_publish(x, long_topic, (const uint8_t *)"x", 1, on_done, &never, NULL),
                 X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_publish(x, "t", NULL, 1, on_done, &never, NULL),
                 X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_publish(NULL, "t", (const uint8_t *)"x", 1, on_done, &never, NULL),
                 X0X_INVALID_ARGUMENT);

    /* The same topic rules for subscribing; 256 bytes is the longest topic. */
    X0xSubscription *sub = NULL;
    CHECK_STATUS(x0x_agent_subscribe(x, NULL, 0, &sub), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_subscribe(x, bad_utf8, 0, &sub), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("not valid UTF-8");
    CHECK_STATUS(x0x_agent_subscribe(x, "", 0, &sub), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_subscribe(x, long_topic, 0, &sub), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_subscribe(x, "t", 0, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_subscribe(NULL, "t", 0, &sub), X0X_INVALID_ARGUMENT);
    CHECK(sub == NULL);
    long_topic[256] = 0;
    sub = subscribe(x, long_topic, 0);
    x0x_subscription_free(sub);

    drain_callbacks();
    CHECK(waiter_calls(&never) == 0);
    waiter_destroy(&never);
    waiter_destroy(&w);

    op = NULL;
    CHECK_OK(x0x_agent_close(x, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));
    x0x_agent_free(x);
}

/* What the log callback saw: whether a record from x0x contained `g_log_want`. */
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_log_want[128];
static bool g_log_found;

static void on_log(void *user_data, int32_t level, const char *target, const char *message) {
    (void)user_data;
    pthread_mutex_lock(&g_log_lock);
    if (level == X0X_LOG_DEBUG && strncmp(target, "x0x", 3) == 0 && strstr(message, g_log_want))
        g_log_found = true;
    pthread_mutex_unlock(&g_log_lock);
}

static bool log_found(void) {
    pthread_mutex_lock(&g_log_lock);
    bool found = g_log_found;
    pthread_mutex_unlock(&g_log_lock);
    return found;
}

/* Joining through a bootstrap peer that never answers times out, naming the peer; the failed
 * dial is logged to the log callback. */
static void check_join_timeout(void) {
    /* A UDP socket that is bound but never read: QUIC handshakes to it go unanswered. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    socklen_t sa_len = sizeof sa;
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &sa_len) == 0);
    char silent[X0X_ADDR_STR_LEN];
    snprintf(silent, sizeof silent, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));

    snprintf(g_log_want, sizeof g_log_want, "dial to %s failed", silent);
    CHECK_OK(x0x_set_log_callback(X0X_LOG_DEBUG, on_log, NULL));
    X0xAgent *x = new_agent(silent);
    char msg[512];
    uint64_t start = mono_ms();
    X0xStatus status = join(x, SILENT_JOIN_TIMEOUT_MS, msg, sizeof msg);
    uint64_t took = mono_ms() - start;
    printf("     (%s after %llu ms: %s)\n", x0x_status_str(status), (unsigned long long)took, msg);
    CHECK_STATUS(status, X0X_TIMEOUT);
    CHECK(strstr(msg, silent) != NULL);
    CHECK(took >= SILENT_JOIN_TIMEOUT_MS - 50);
    CHECK(took < WAIT_MS);
    CHECK(!is_connected(x));
    /* The dial gives up after its own timeout; its failure reaches the log callback. */
    for (uint64_t waited = 0; !log_found() && waited < WAIT_MS; waited += 10) sleep_ms(10);
    CHECK(log_found());
    CHECK_STATUS(x0x_set_log_callback(X0X_LOG_TRACE + 1, on_log, NULL), X0X_INVALID_ARGUMENT);
    CHECK_OK(x0x_set_log_callback(X0X_LOG_OFF, NULL, NULL));

    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_close(x, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));
    x0x_agent_free(x);
    close(fd);
}

/* A starts a network, B joins through the address A reports and publishes at once: A gets it;
 * then A publishes and B gets it. Same machine (one machine key in $HOME), two agents. */
static void check_join(void) {
    g_a = new_agent(NULL);
    g_a_agent = agent_id(g_a);
    g_a_machine = machine_id(g_a);
    CHECK_OK(x0x_agent_events(g_a, &g_a_events));
    CHECK(g_a_events != NULL);

    join_ok(g_a); /* the first node: nobody to wait for */
    CHECK(!is_connected(g_a));
    char addr[X0X_ADDR_STR_LEN];
    CHECK_OK(x0x_agent_local_addr(g_a, addr, sizeof addr));
    /* The default bind: the wildcard address, with the port the system picked. */
    CHECK(strncmp(addr, "0.0.0.0:", 8) == 0);
    const char *port = addr + 8;
    CHECK(atoi(port) > 0);
    char tiny[8];
    CHECK_STATUS(x0x_agent_local_addr(g_a, tiny, sizeof tiny), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_local_addr(g_a, NULL, sizeof addr), X0X_INVALID_ARGUMENT);
    check_local_addrs(g_a, port);
    printf("     (A listens on %s)\n", addr);

    X0xSubscription *first = subscribe(g_a, "first", 0);
    g_b = new_agent(addr);
    g_b_agent = agent_id(g_b);
    g_b_machine = machine_id(g_b);
    CHECK(!id_eq(&g_a_agent, &g_b_agent));
    CHECK(id_eq(&g_a_machine, &g_b_machine)); /* one machine key, in $HOME */
    CHECK_OK(x0x_agent_events(g_b, &g_b_events));
    join_ok(g_b);
    /* Joined means connected: B has its first neighbour, and what it publishes now reaches A. */
    CHECK(is_connected(g_b));
    CHECK_OK(publish(g_b, "first", "hello0"));
    expect_messages(first, "first", "hello", 0, 1, &g_b_agent, 16);
    expect_empty(first);
    x0x_subscription_free(first);
    /* And the other way: A's message reaches B, signed by A's agent key. */
    X0xSubscription *back = subscribe(g_b, "back", 0);
    uint64_t deadline = mono_ms() + WAIT_MS;
    while (!is_connected(g_a)) {
        CHECK(mono_ms() < deadline);
        sleep_ms(5);
    }
    CHECK_OK(publish(g_a, "back", "reply0"));
    expect_messages(back, "back", "reply", 0, 1, &g_a_agent, 16);
    expect_empty(back);
    x0x_subscription_free(back);

    /* Joining again is harmless. */
    join_ok(g_b);
    join_ok(g_a);
}

/* The events of the join, on both sides. */
static void check_join_events(void) {
    const X0xEvent *e = await_event(g_a_events, &g_a_log, X0X_EVENT_PEER_JOINED, &g_b_agent,
                                    WAIT_MS);
    CHECK(e != NULL);
    CHECK(e->neighbours == 0);
    e = await_event(g_a_events, &g_a_log, X0X_EVENT_CONNECTED, NULL, WAIT_MS);
    CHECK(e != NULL);
    CHECK(e->neighbours >= 1);
    CHECK(find_event(&g_a_log, X0X_EVENT_PEER_LEFT, NULL) == NULL);
    CHECK(find_event(&g_a_log, X0X_EVENT_DISCONNECTED, NULL) == NULL);

    e = await_event(g_b_events, &g_b_log, X0X_EVENT_PEER_JOINED, &g_a_agent, WAIT_MS);
    CHECK(e != NULL);
    CHECK(await_event(g_b_events, &g_b_log, X0X_EVENT_CONNECTED, NULL, WAIT_MS) != NULL);

    CHECK(is_connected(g_a));
    CHECK(stats(g_a).neighbours >= 1);
    CHECK(stats(g_b).neighbours >= 1);

    /* A second stream sees events from its creation on only: nothing yet. */
    X0xEventStream *later = NULL;
    CHECK_OK(x0x_agent_events(g_a, &later));
    X0xEventBatch *batch = (X0xEventBatch *)1;
    CHECK_OK(x0x_event_stream_try_next(later, 16, &batch));
    CHECK(batch == NULL);
    CHECK_OK(x0x_event_stream_close(later));
    CHECK_OK(x0x_event_stream_close(later)); /* idempotent */
    CHECK_STATUS(x0x_event_stream_try_next(later, 16, &batch), X0X_CLOSED);
    CHECK(batch == NULL);
    X0xOp *op = NULL;
    CHECK_OK(x0x_event_stream_next(later, 16, NULL, NULL, &op));
    CHECK_STATUS(finish_op(op, NULL, NULL, 0), X0X_CLOSED);
    x0x_event_stream_free(later);
}

/* B publishes m0..m99: two subscriptions on A and B's own each get all 100, in order; a
 * subscription to another topic gets none. */
static void check_hundred_messages(void) {
    X0xSubscription *a1 = subscribe(g_a, "t", 0);
    X0xSubscription *a2 = subscribe(g_a, "t", 0);
    X0xSubscription *a_other = subscribe(g_a, "other", 0);
    X0xSubscription *b_own = subscribe(g_b, "t", 0);
    expect_empty(a1);

    uint64_t start = mono_ms();
    publish_range(g_b, "t", "m", 0, 100);
    int batches = expect_messages(a1, "t", "m", 0, 100, &g_b_agent, 1000);
    uint64_t took = mono_ms() - start;
    expect_messages(a2, "t", "m", 0, 100, &g_b_agent, 7);
    expect_messages(b_own, "t", "m", 0, 100, &g_b_agent, 1000);
    printf("     (100 messages B -> A in %llu ms, %d batches)\n", (unsigned long long)took,
           batches);

    /* Nothing more, and nothing at all on the other topic. */
    drain_callbacks();
    expect_empty(a1);
    expect_empty(a2);
    expect_empty(b_own);
    expect_empty(a_other);
    uint64_t dropped = 99;
    CHECK_OK(x0x_subscription_dropped(a1, &dropped));
    CHECK(dropped == 0);

    x0x_subscription_free(a1);
    x0x_subscription_free(a2);
    x0x_subscription_free(a_other);
    x0x_subscription_free(b_own);
}

/* try_next gives NULL when empty; batches hold at most `max` messages. */
static void check_batches(void) {
    X0xSubscription *sub = subscribe(g_a, "batch", 0);
    expect_empty(sub);
    X0xMessageBatch *batch = (X0xMessageBatch *)1;
    CHECK_STATUS(x0x_subscription_try_next(sub, 10, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_subscription_try_next(NULL, 10, &batch), X0X_INVALID_ARGUMENT);

    uint64_t before = stats(g_a).delivered;
    publish_range(g_b, "batch", "b", 0, 10);
    wait_delivered(g_a, before + 10);

    /* All 10 are waiting: try_next(3) takes exactly 3, the oldest. */
    CHECK_OK(x0x_subscription_try_next(sub, 3, &batch));
    CHECK(batch != NULL);
    CHECK(x0x_message_batch_len(batch) == 3);
    for (int i = 0; i < 3; i++)
        check_message(x0x_message_batch_get(batch, (size_t)i), "batch", "b", i, &g_b_agent);
    CHECK(x0x_message_batch_get(batch, 3) == NULL);
    x0x_message_batch_free(batch);

    /* next(4) with 7 waiting: exactly 4. */
    X0xOp *op = NULL;
    void *result = NULL;
    CHECK_OK(x0x_subscription_next(sub, 4, NULL, NULL, &op));
    CHECK_OK(finish_op(op, &result, NULL, 0));
    CHECK(result != NULL);
    batch = result;
    CHECK(x0x_message_batch_len(batch) == 4);
    for (int i = 0; i < 4; i++)
        check_message(x0x_message_batch_get(batch, (size_t)i), "batch", "b", 3 + i, &g_b_agent);
    x0x_message_batch_free(batch);

    /* The remaining 3 with a larger max; then empty again. */
    CHECK_OK(x0x_subscription_try_next(sub, 100, &batch));
    CHECK(x0x_message_batch_len(batch) == 3);
    for (int i = 0; i < 3; i++)
        check_message(x0x_message_batch_get(batch, (size_t)i), "batch", "b", 7 + i, &g_b_agent);
    x0x_message_batch_free(batch);
    expect_empty(sub);

    CHECK(x0x_message_batch_len(NULL) == 0);
    CHECK(x0x_message_batch_get(NULL, 0) == NULL);
    x0x_message_batch_free(NULL);
    x0x_subscription_free(sub);
}

/* A callback-based next runs its callback exactly once, with the batch. */
static void check_next_callback(void) {
    X0xSubscription *sub = subscribe(g_a, "cb", 0);
    Waiter w;
    waiter_init(&w);
    X0xOp *op = NULL;
    CHECK_OK(x0x_subscription_next(sub, 16, on_done, &w, &op));
    CHECK(op != NULL);
    /* Nothing published yet: still pending. */
    X0xStatus status = -1;
    CHECK_STATUS(x0x_op_wait(op, 0, &status, NULL), X0X_TIMEOUT);
    CHECK(waiter_calls(&w) == 0);

    CHECK_OK(publish(g_b, "cb", "c0"));
    CHECK(waiter_wait(&w, WAIT_MS) == 1);
    CHECK_OK(x0x_op_wait(op, WAIT_MS, &status, NULL));
    CHECK(status == X0X_OK);
    x0x_op_free(op);
    drain_callbacks();
    CHECK(waiter_calls(&w) == 1);
    CHECK(w.status == X0X_OK);
    CHECK(w.message_was_null);
    CHECK(w.result != NULL);
    X0xMessageBatch *batch = w.result; /* the callback got ownership; we took it over */
    CHECK(x0x_message_batch_len(batch) == 1);
    check_message(x0x_message_batch_get(batch, 0), "cb", "c", 0, &g_b_agent);
    CHECK(x0x_message_batch_get(batch, 0)->hops == 1); /* B published, A received */
    x0x_message_batch_free(batch);
    expect_empty(sub);

    /* x0x_op_then on a callback-less next works the same way. */
    Waiter w2;
    waiter_init(&w2);
    op = NULL;
    CHECK_OK(x0x_subscription_next(sub, 16, NULL, NULL, &op));
    CHECK_OK(x0x_op_then(op, on_done, &w2));
    CHECK_OK(publish(g_b, "cb", "c1"));
    CHECK(waiter_wait(&w2, WAIT_MS) == 1);
    CHECK(w2.status == X0X_OK && w2.result != NULL);
    check_message(x0x_message_batch_get(w2.result, 0), "cb", "c", 1, &g_b_agent);
    x0x_message_batch_free(w2.result);
    x0x_op_free(op);

    waiter_destroy(&w);
    waiter_destroy(&w2);
    x0x_subscription_free(sub);
}

/* Cancelling a pending next: callback once with X0X_CANCELLED, and no message is lost. */
static void check_cancel_next(void) {
    X0xSubscription *sub = subscribe(g_a, "cancel", 0);
    Waiter w;
    waiter_init(&w);
    X0xOp *op = NULL;
    CHECK_OK(x0x_subscription_next(sub, 16, on_done, &w, &op));
    X0xStatus status = -1;
    CHECK_STATUS(x0x_op_wait(op, 0, &status, NULL), X0X_TIMEOUT);
    CHECK_OK(x0x_op_cancel(op));
    CHECK(waiter_wait(&w, WAIT_MS) == 1);
    CHECK_OK(x0x_op_cancel(op)); /* idempotent, also after completion */
    CHECK_OK(x0x_op_wait(op, WAIT_MS, &status, NULL));
    CHECK(status == X0X_CANCELLED);
    CHECK(strlen(x0x_op_error_message(op)) > 0);
    x0x_op_free(op);

    /* Published after the cancel: the next call gets it. */
    CHECK_OK(publish(g_b, "cancel", "k0"));
    expect_messages(sub, "cancel", "k", 0, 1, &g_b_agent, 16);
    drain_callbacks();
    CHECK(waiter_calls(&w) == 1);
    CHECK(w.status == X0X_CANCELLED);
    CHECK(w.result == NULL);
    CHECK(!w.message_was_null && strlen(w.message) > 0);
    waiter_destroy(&w);

    /* Cancel racing with arrival (A's own messages, delivered by its signer thread): each
     * message comes out exactly once, either in the cancelled call or in the next one. */
    int raced_ok = 0, raced_cancelled = 0;
    for (int i = 1; i <= 20; i++) {
        Waiter r;
        waiter_init(&r);
        op = NULL;
        CHECK_OK(x0x_subscription_next(sub, 16, on_done, &r, &op));
        char text[16];
        snprintf(text, sizeof text, "k%d", i);
        X0xOp *pub = NULL;
        CHECK_OK(x0x_agent_publish(g_a, "cancel", (const uint8_t *)text, strlen(text), NULL,
                                   NULL, &pub));
        if (i % 2 == 0) sleep_ms(1);
        CHECK_OK(x0x_op_cancel(op));
        CHECK(waiter_wait(&r, WAIT_MS) == 1);
        CHECK_OK(x0x_op_wait(op, WAIT_MS, &status, NULL));
        CHECK(status == r.status);
        CHECK_OK(finish_op(pub, NULL, NULL, 0));
        if (r.status == X0X_OK) {
            raced_ok++;
            CHECK(x0x_message_batch_len(r.result) == 1);
            check_message(x0x_message_batch_get(r.result, 0), "cancel", "k", i, &g_a_agent);
            x0x_message_batch_free(r.result);
        } else {
            raced_cancelled++;
            CHECK(r.status == X0X_CANCELLED && r.result == NULL);
            expect_messages(sub, "cancel", "k", i, 1, &g_a_agent, 16);
        }
        expect_empty(sub);
        x0x_op_free(op);
        waiter_destroy(&r);
    }
    printf("     (race: %d delivered to the cancelled call, %d to the next)\n", raced_ok,
           raced_cancelled);
    x0x_subscription_free(sub);
}

/* A full subscription drops its oldest messages and counts them. */
static void check_capacity(void) {
    X0xSubscription *sub = subscribe(g_a, "cap", 4);
    X0xStats before = stats(g_a);
    publish_range(g_b, "cap", "q", 0, 10);
    wait_delivered(g_a, before.delivered + 10);
    X0xStats after = stats(g_a);
    CHECK(after.queue_overflow - before.queue_overflow == 6);

    uint64_t dropped = 0;
    CHECK_OK(x0x_subscription_dropped(sub, &dropped));
    CHECK(dropped == 6);
    X0xMessageBatch *batch = NULL;
    CHECK_OK(x0x_subscription_try_next(sub, 100, &batch));
    CHECK(x0x_message_batch_len(batch) == 4);
    for (int i = 0; i < 4; i++)
        check_message(x0x_message_batch_get(batch, (size_t)i), "cap", "q", 6 + i, &g_b_agent);
    x0x_message_batch_free(batch);
    expect_empty(sub);
    CHECK_STATUS(x0x_subscription_dropped(sub, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_subscription_dropped(NULL, &dropped), X0X_INVALID_ARGUMENT);
    x0x_subscription_free(sub);
}

/* Closing ends a subscription after what is queued; freeing ends a pending next. */
static void check_close_and_free(void) {
    /* Closed while empty: next completes with X0X_CLOSED. */
    X0xSubscription *sub = subscribe(g_a, "closing", 0);
    CHECK_OK(x0x_subscription_close(sub));
    CHECK_OK(x0x_subscription_close(sub)); /* idempotent */
    X0xOp *op = NULL;
    CHECK_OK(x0x_subscription_next(sub, 16, NULL, NULL, &op));
    char msg[512];
    CHECK_STATUS(finish_op(op, NULL, msg, sizeof msg), X0X_CLOSED);
    CHECK(strlen(msg) > 0);
    X0xMessageBatch *batch = (X0xMessageBatch *)1;
    CHECK_STATUS(x0x_subscription_try_next(sub, 16, &batch), X0X_CLOSED);
    CHECK(batch == NULL);
    x0x_subscription_free(sub);

    /* Closed with messages queued: they can still be read, then X0X_CLOSED. Later messages on
     * the topic no longer reach it. */
    sub = subscribe(g_a, "closing", 0);
    uint64_t before = stats(g_a).delivered;
    publish_range(g_b, "closing", "z", 0, 2);
    wait_delivered(g_a, before + 2);
    CHECK_OK(x0x_subscription_close(sub));
    X0xSubscription *witness = subscribe(g_a, "closing", 0);
    CHECK_OK(publish(g_b, "closing", "z2"));
    expect_messages(witness, "closing", "z", 2, 1, &g_b_agent, 16);
    expect_messages(sub, "closing", "z", 0, 2, &g_b_agent, 16);
    op = NULL;
    CHECK_OK(x0x_subscription_next(sub, 16, NULL, NULL, &op));
    CHECK_STATUS(finish_op(op, NULL, NULL, 0), X0X_CLOSED);
    x0x_subscription_free(sub);
    x0x_subscription_free(witness);

    /* Freed with a next pending (with a callback): that next completes with X0X_CLOSED. */
    sub = subscribe(g_a, "freeing", 0);
    Waiter w;
    waiter_init(&w);
    op = NULL;
    CHECK_OK(x0x_subscription_next(sub, 16, on_done, &w, &op));
    X0xStatus status = -1;
    CHECK_STATUS(x0x_op_wait(op, 0, &status, NULL), X0X_TIMEOUT);
    x0x_subscription_free(sub);
    CHECK(waiter_wait(&w, WAIT_MS) == 1);
    CHECK_OK(x0x_op_wait(op, WAIT_MS, &status, NULL));
    CHECK(status == X0X_CLOSED);
    CHECK(w.status == X0X_CLOSED && w.result == NULL && !w.message_was_null);
    x0x_op_free(op);
    drain_callbacks();
    CHECK(waiter_calls(&w) == 1);
    waiter_destroy(&w);

    /* The same without a callback, the op freed before the subscription. */
    sub = subscribe(g_a, "freeing", 0);
    op = NULL;
    CHECK_OK(x0x_subscription_next(sub, 16, NULL, NULL, &op));
    x0x_subscription_free(sub);
    CHECK_STATUS(finish_op(op, NULL, NULL, 0), X0X_CLOSED);

    x0x_subscription_free(NULL);
    CHECK_STATUS(x0x_subscription_close(NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_subscription_next(NULL, 16, NULL, NULL, &op), X0X_INVALID_ARGUMENT);
}

/* The largest payload crosses the network intact; one byte more is refused at once. */
static void check_max_payload(void) {
    X0xSubscription *sub = subscribe(g_a, "big", 0);
    uint8_t *big = malloc(X0X_MAX_PAYLOAD_LEN + 1);
    CHECK(big != NULL);
    for (size_t i = 0; i <= X0X_MAX_PAYLOAD_LEN; i++) big[i] = (uint8_t)(i * 7 + (i >> 8));

    Waiter never;
    waiter_init(&never);
    X0xOp *op = NULL;
    CHECK_STATUS(x0x_agent_publish(g_b, "big", big, X0X_MAX_PAYLOAD_LEN + 1, on_done, &never, &op),
                 X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("limit");

    CHECK_OK(x0x_agent_publish(g_b, "big", big, X0X_MAX_PAYLOAD_LEN, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));
    op = NULL;
    void *result = NULL;
    CHECK_OK(x0x_subscription_next(sub, 16, NULL, NULL, &op));
    CHECK_OK(finish_op(op, &result, NULL, 0));
    CHECK(x0x_message_batch_len(result) == 1);
    const X0xMessage *m = x0x_message_batch_get(result, 0);
    CHECK(m->payload_len == X0X_MAX_PAYLOAD_LEN);
    CHECK(memcmp(m->payload, big, X0X_MAX_PAYLOAD_LEN) == 0);
    CHECK(id_eq(&m->sender, &g_b_agent));
    x0x_message_batch_free(result);

    /* An empty payload is a message too: payload NULL, length 0. */
    CHECK_OK(x0x_agent_publish(g_b, "big", NULL, 0, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));
    CHECK_OK(x0x_subscription_next(sub, 16, NULL, NULL, &op));
    result = NULL;
    CHECK_OK(finish_op(op, &result, NULL, 0));
    CHECK(x0x_message_batch_len(result) == 1);
    m = x0x_message_batch_get(result, 0);
    CHECK(m->payload_len == 0 && m->payload == NULL);
    x0x_message_batch_free(result);

    drain_callbacks();
    CHECK(waiter_calls(&never) == 0);
    waiter_destroy(&never);
    free(big);
    x0x_subscription_free(sub);
}

/* The counters after the exchange. */
static void check_stats(void) {
    X0xStats a = stats(g_a), b = stats(g_b);
    printf("     (A: delivered %llu, in %llu B; B: published %llu in %llu envelopes, out %llu B)\n",
           (unsigned long long)a.delivered, (unsigned long long)a.bytes_in,
           (unsigned long long)b.published, (unsigned long long)b.envelopes_signed,
           (unsigned long long)b.bytes_out);
    CHECK(a.delivered >= 100);
    CHECK(b.published >= 100);
    CHECK(b.envelopes_signed >= 1 && b.envelopes_signed <= b.published);
    CHECK(a.published >= 20); /* the cancel race */
    CHECK(a.dropped_bad_signature == 0 && b.dropped_bad_signature == 0);
    CHECK(a.dropped_wrong_sender == 0 && b.dropped_wrong_sender == 0);
    CHECK(a.dropped_malformed == 0 && b.dropped_malformed == 0);
    CHECK(a.dropped_oversized == 0 && b.dropped_oversized == 0);
    /* Same machine, different agent keys: no identity clash. */
    CHECK(a.identity_conflicts == 0 && b.identity_conflicts == 0);
    CHECK(a.queue_overflow == 6); /* only check_capacity overflowed */
    CHECK(a.neighbours >= 1 && b.neighbours >= 1);
    /* Two agents: every envelope arrives once; A receives B's. */
    CHECK(a.envelopes_received >= 1 && a.envelopes_received <= b.envelopes_signed);
    CHECK(a.duplicates == 0 && b.duplicates == 0);
    CHECK(a.bytes_in > X0X_MAX_PAYLOAD_LEN && b.bytes_out > X0X_MAX_PAYLOAD_LEN);
    CHECK_STATUS(x0x_agent_stats(g_a, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_stats(NULL, &a), X0X_INVALID_ARGUMENT);

    /* Per topic: A subscribed to "big" (the subscription is gone; its counts stay), B sent on it.
     * The empty message reached A as an origin frame, ahead of its signed envelope: wait for
     * that envelope (B signs at a lower priority; under valgrind it can come well after). */
    X0xTopicStats in, out;
    uint64_t deadline = mono_ms() + WAIT_MS;
    for (;;) {
        CHECK_OK(x0x_agent_topic_stats(g_a, "big", &in));
        if (in.envelopes_in >= 2 || mono_ms() >= deadline) break;
        sleep_ms(5);
    }
    CHECK_OK(x0x_agent_topic_stats(g_b, "big", &out));
    CHECK(in.envelopes_in >= 2 && in.bytes_in > X0X_MAX_PAYLOAD_LEN && in.envelopes_out == 0);
    CHECK(out.envelopes_out >= 2 && out.bytes_out >= in.bytes_in && out.envelopes_in == 0);
    CHECK_STATUS(x0x_agent_topic_stats(g_a, "never used", &in), X0X_NOT_FOUND);
    CHECK_STATUS(x0x_agent_topic_stats(g_a, "\xff", &in), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_topic_stats(g_a, NULL, &in), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_topic_stats(g_a, "big", NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_topic_stats(NULL, "big", &in), X0X_INVALID_ARGUMENT);
}

/* B leaves: A sees it go within LEAVE_NOTICE_MS; B can no longer publish. */
static void check_leave(void) {
    uint64_t start = mono_ms();
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_leave_network(g_b, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));
    CHECK(!is_connected(g_b));
    CHECK_STATUS(publish(g_b, "t", "after leave"), X0X_NOT_CONNECTED);

    uint64_t used = mono_ms() - start;
    uint32_t left = used >= LEAVE_NOTICE_MS ? 0 : (uint32_t)(LEAVE_NOTICE_MS - used);
    const X0xEvent *e = await_event(g_a_events, &g_a_log, X0X_EVENT_PEER_LEFT, &g_b_agent, left);
    uint64_t took = mono_ms() - start;
    printf("     (A saw B leave after %llu ms)\n", (unsigned long long)took);
    CHECK(e != NULL);
    CHECK(took <= LEAVE_NOTICE_MS);
    /* B was A's only neighbour. */
    CHECK(await_event(g_a_events, &g_a_log, X0X_EVENT_DISCONNECTED, NULL, WAIT_MS) != NULL);
    CHECK(!is_connected(g_a));
    CHECK(stats(g_a).neighbours == 0);

    /* B's own view: it lost A and is disconnected. */
    CHECK(await_event(g_b_events, &g_b_log, X0X_EVENT_PEER_LEFT, &g_a_agent, WAIT_MS) != NULL);
    CHECK(await_event(g_b_events, &g_b_log, X0X_EVENT_DISCONNECTED, NULL, WAIT_MS) != NULL);

    /* A, alone but still joined, still delivers its own messages. */
    X0xSubscription *sub = subscribe(g_a, "alone", 0);
    CHECK_OK(publish(g_a, "alone", "s0"));
    expect_messages(sub, "alone", "s", 0, 1, &g_a_agent, 16);
    x0x_subscription_free(sub);
}

/* Closing an agent ends its streams and subscriptions; a closed agent refuses new work. */
static void check_close(void) {
    X0xSubscription *sub = subscribe(g_a, "t", 0);
    X0xOp *pending = NULL;
    CHECK_OK(x0x_subscription_next(sub, 16, NULL, NULL, &pending));
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_close(g_a, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));
    CHECK_OK(x0x_agent_close(g_b, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));

    CHECK_STATUS(finish_op(pending, NULL, NULL, 0), X0X_CLOSED);
    /* The event stream ends too (after any events still queued). */
    X0xStatus status = X0X_OK;
    for (int i = 0; i < 10 && status == X0X_OK; i++) {
        void *result = NULL;
        CHECK_OK(x0x_event_stream_next(g_a_events, 16, NULL, NULL, &op));
        status = finish_op(op, &result, NULL, 0);
        if (status == X0X_OK) log_batch(&g_a_log, result);
    }
    CHECK_STATUS(status, X0X_CLOSED);

    X0xSubscription *late = NULL;
    CHECK_STATUS(x0x_agent_subscribe(g_a, "t", 0, &late), X0X_CLOSED);
    X0xEventStream *late_events = NULL;
    CHECK_STATUS(x0x_agent_events(g_a, &late_events), X0X_CLOSED);
    CHECK_STATUS(publish(g_a, "t", "closed"), X0X_CLOSED);
    char msg[512];
    CHECK_STATUS(join(g_a, 1000, msg, sizeof msg), X0X_CLOSED);
    CHECK_OK(x0x_agent_close(g_a, NULL, NULL, &op)); /* idempotent */
    CHECK_OK(finish_op(op, NULL, NULL, 0));

    x0x_subscription_free(sub);
    x0x_event_stream_free(g_a_events);
    x0x_event_stream_free(g_b_events);
    log_free(&g_a_log);
    log_free(&g_b_log);
    x0x_event_stream_free(NULL);
    x0x_event_batch_free(NULL);
    x0x_agent_free(g_a);
    x0x_agent_free(g_b);
    g_a = g_b = NULL;
    g_a_events = g_b_events = NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(check_errors_before_join);
    RUN(check_join_timeout);
    RUN(check_join);
    RUN(check_join_events);
    RUN(check_hundred_messages);
    RUN(check_batches);
    RUN(check_next_callback);
    RUN(check_cancel_next);
    RUN(check_capacity);
    RUN(check_close_and_free);
    RUN(check_max_payload);
    RUN(check_stats);
    RUN(check_leave);
    RUN(check_close);
    printf("test_pubsub: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
