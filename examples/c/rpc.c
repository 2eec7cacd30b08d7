/*
 * rpc.c: one x0x agent serves requests, another sends it requests, over a direct QUIC
 * connection of their own.
 *
 *   usage: rpc
 *
 * Agent S (the server) starts a network and opens its inbox; its requests are answered from
 * the library's callback thread: each completed x0x_inbox_next hands over a batch, every request
 * in it is answered with its payload in upper case (an empty one is refused with a reason), and
 * the callback asks for the next batch. Agent C (the client) joins through S's address, sends a
 * plain message, makes requests one by one and ten at once, and shows how failures arrive: the
 * server's refusal (X0X_REMOTE, with its reason) and an agent nobody knows (X0X_NOT_FOUND).
 * Exits non-zero on anything unexpected.
 *
 * Build (from the repository root, after `cargo build --release --lib`):
 *   cc -std=c11 -Iinclude examples/c/rpc.c target/release/libx0x.a \
 *      -lpthread -ldl -lm -lrt -lutil -o rpc
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "x0x.h"

#define CONCURRENT 10
/* Every wait is bounded, so a broken network fails the program instead of hanging it. */
#define WAIT_MS 30000

/* ---------------------------------------------------------------------------------------------
 * The server: answers requests on the callback thread
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    X0xInbox *inbox;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopped; /* the last x0x_inbox_next has completed: nothing calls back any more */
    int answered;
    int messages;
    bool failed;
} Server;

static void serve_next(Server *server);

/* Answers one message. It is ours (taken from the batch): free it when done. */
static void answer(Server *server, X0xDirectMessage *message) {
    const uint8_t *data = NULL;
    size_t len = 0;
    uint64_t request_id = 0;
    if (x0x_direct_message_payload(message, &data, &len) != X0X_OK ||
        x0x_direct_message_request_id(message, &request_id) != X0X_OK) {
        server->failed = true;
    } else if (request_id == 0) {
        /* A plain message (x0x_agent_send): nothing to answer. */
        printf("S got a message: %.*s\n", (int)len, (const char *)data);
        server->messages++;
    } else if (len == 0) {
        /* The requester's x0x_agent_request completes with X0X_REMOTE and this reason. */
        if (x0x_direct_message_reply_error(message, "empty request: nothing to uppercase") !=
            X0X_OK) {
            server->failed = true;
        }
    } else {
        uint8_t *upper = malloc(len);
        if (upper == NULL) {
            server->failed = true;
        } else {
            for (size_t i = 0; i < len; i++) upper[i] = (uint8_t)toupper(data[i]);
            /* The reply is copied; X0X_CANCELLED would mean the requester gave up meanwhile. */
            X0xStatus status = x0x_direct_message_reply(message, upper, len);
            if (status == X0X_OK) {
                server->answered++;
            } else if (status != X0X_CANCELLED) {
                fprintf(stderr, "reply: %s: %s\n", x0x_status_str(status),
                        x0x_last_error_message());
                server->failed = true;
            }
            free(upper);
        }
    }
    /* Freeing a request that was never answered would refuse it (X0X_REMOTE for its sender). */
    x0x_direct_message_free(message);
}

/* The completion of x0x_inbox_next: runs on the library's callback thread. */
static void on_batch(void *user_data, X0xStatus status, void *result, const char *why) {
    Server *server = user_data;
    if (status != X0X_OK) {
        /* X0X_CLOSED once the inbox is closed: the end of serving. */
        if (status != X0X_CLOSED) {
            fprintf(stderr, "inbox: %s: %s\n", x0x_status_str(status), why);
            server->failed = true;
        }
        pthread_mutex_lock(&server->mu);
        server->stopped = true;
        pthread_cond_broadcast(&server->cv);
        pthread_mutex_unlock(&server->mu);
        return;
    }
    X0xDirectMessageBatch *batch = result; /* ours: take the messages, then free it */
    for (size_t i = 0; i < x0x_direct_message_batch_len(batch); i++) {
        answer(server, x0x_direct_message_batch_take(batch, i));
    }
    x0x_direct_message_batch_free(batch);
    serve_next(server); /* a callback may call any x0x function: ask for the next batch */
}

static void serve_next(Server *server) {
    /* No op handle needed (op_out NULL): the callback runs exactly once either way. */
    if (x0x_inbox_next(server->inbox, 64, on_batch, server, NULL) != X0X_OK) {
        fprintf(stderr, "inbox next: %s\n", x0x_last_error_message());
        server->failed = true;
        pthread_mutex_lock(&server->mu);
        server->stopped = true;
        pthread_cond_broadcast(&server->cv);
        pthread_mutex_unlock(&server->mu);
    }
}

/* Closes the inbox and waits until its last callback has run; then the inbox can be freed. */
static bool stop_serving(Server *server) {
    x0x_inbox_close(server->inbox);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&server->mu);
    while (!server->stopped) {
        if (pthread_cond_timedwait(&server->cv, &server->mu, &deadline) != 0) break;
    }
    bool stopped = server->stopped;
    pthread_mutex_unlock(&server->mu);
    return stopped;
}

/* ---------------------------------------------------------------------------------------------
 * The client side, and the plumbing both share
 * ------------------------------------------------------------------------------------------- */

/* Blocks on an operation started without a callback, then frees it. Returns its status (or the
 * wait's own, e.g. X0X_TIMEOUT) and hands over its result, if any, through `result`. Copies its
 * error message to `why` (may be NULL). */
static X0xStatus finish(X0xOp *op, void **result, char *why, size_t why_len) {
    X0xStatus status = X0X_OK;
    X0xStatus waited = x0x_op_wait(op, WAIT_MS, &status, result);
    if (waited != X0X_OK) status = waited;
    if (why != NULL) snprintf(why, why_len, "%s", x0x_op_error_message(op));
    x0x_op_free(op);
    return status;
}

static X0xAgent *build_and_join(const char *bootstrap) {
    X0xAgentBuilder *builder = x0x_agent_builder_new();
    if (builder == NULL) return NULL;
    X0xOp *op = NULL;
    void *agent = NULL;
    char why[512];
    if ((bootstrap != NULL && x0x_agent_builder_with_bootstrap(builder, bootstrap) != X0X_OK) ||
        x0x_agent_builder_build(builder, NULL, NULL, &op) != X0X_OK) {
        fprintf(stderr, "builder: %s\n", x0x_last_error_message());
    } else if (finish(op, &agent, why, sizeof why) != X0X_OK) {
        fprintf(stderr, "build: %s\n", why);
        agent = NULL;
    }
    x0x_agent_builder_free(builder);
    if (agent == NULL) return NULL;
    op = NULL;
    X0xStatus status = x0x_agent_join_network(agent, 0, NULL, NULL, &op);
    if (status != X0X_OK || finish(op, NULL, why, sizeof why) != X0X_OK) {
        fprintf(stderr, "join: %s\n", status != X0X_OK ? x0x_last_error_message() : why);
        x0x_agent_free(agent);
        return NULL;
    }
    return agent;
}

/* Starts a request for `text` (without its NUL); the op is the caller's. */
static X0xOp *start_request(const X0xAgent *client, const X0xId *to, const char *text) {
    X0xOp *op = NULL;
    /* timeout_ms 0: the default, 10 s. */
    if (x0x_agent_request(client, to, (const uint8_t *)text, strlen(text), 0, NULL, NULL, &op) !=
        X0X_OK) {
        fprintf(stderr, "request: %s\n", x0x_last_error_message());
        return NULL;
    }
    return op;
}

/* Waits for a request and checks its reply is `want`. */
static bool expect_reply(X0xOp *op, const char *asked, const char *want) {
    void *result = NULL;
    char why[512];
    X0xStatus status = finish(op, &result, why, sizeof why);
    if (status != X0X_OK) {
        fprintf(stderr, "request \"%s\": %s: %s\n", asked, x0x_status_str(status), why);
        return false;
    }
    X0xBytes *reply = result; /* ours: the struct and its bytes go with x0x_bytes_destroy */
    bool ok = reply->len == strlen(want) && memcmp(reply->data, want, reply->len) == 0;
    printf("C asked \"%s\", S replied \"%.*s\"\n", asked, (int)reply->len,
           reply->data ? (const char *)reply->data : "");
    x0x_bytes_destroy(reply);
    return ok;
}

int main(void) {
    int exit_code = 1;
    X0xAgent *s = NULL, *c = NULL;
    Server server = {.inbox = NULL};
    bool serving = false;
    pthread_mutex_init(&server.mu, NULL);
    pthread_cond_init(&server.cv, NULL);

    s = build_and_join(NULL); /* S starts the network */
    if (s == NULL) goto out;
    X0xId s_id; /* a plain value: nothing to free */
    char s_hex[X0X_ID_HEX_LEN + 1], addr[X0X_ADDR_STR_LEN];
    x0x_agent_agent_id(s, &s_id);
    x0x_id_to_hex(&s_id, s_hex, sizeof s_hex);
    if (x0x_agent_local_addr(s, addr, sizeof addr) != X0X_OK) goto out;
    /* Until S opens its inbox, senders are refused; 0: the default capacity (1024). */
    if (x0x_agent_inbox(s, 0, &server.inbox) != X0X_OK) {
        fprintf(stderr, "inbox: %s\n", x0x_last_error_message());
        goto out;
    }
    serve_next(&server);
    serving = true;
    printf("S (agent %.16s...) serves on %s\n", s_hex, addr);

    c = build_and_join(addr); /* C joins through S: then S's address is known to it */
    if (c == NULL) goto out;

    /* A plain message completes once it is in S's inbox. */
    X0xOp *op = NULL;
    const char *note = "hello S, requests follow";
    if (x0x_agent_send(c, &s_id, (const uint8_t *)note, strlen(note), 0, NULL, NULL, &op) !=
            X0X_OK ||
        finish(op, NULL, NULL, 0) != X0X_OK) {
        fprintf(stderr, "send failed\n");
        goto out;
    }

    op = start_request(c, &s_id, "hello");
    if (op == NULL || !expect_reply(op, "hello", "HELLO")) goto out;

    /* Requests run concurrently: start them all, then collect each. */
    X0xOp *ops[CONCURRENT] = {NULL};
    char asked[CONCURRENT][32], want[CONCURRENT][32];
    for (int i = 0; i < CONCURRENT; i++) {
        snprintf(asked[i], sizeof asked[i], "request number %d", i);
        snprintf(want[i], sizeof want[i], "REQUEST NUMBER %d", i);
        ops[i] = start_request(c, &s_id, asked[i]);
    }
    bool all = true;
    for (int i = 0; i < CONCURRENT; i++) {
        if (ops[i] == NULL || !expect_reply(ops[i], asked[i], want[i])) all = false;
    }
    if (!all) goto out;

    /* The server's refusal arrives as X0X_REMOTE, its reason as the op's message. */
    op = start_request(c, &s_id, "");
    char why[512];
    X0xStatus status = op ? finish(op, NULL, why, sizeof why) : X0X_INVALID_ARGUMENT;
    if (status != X0X_REMOTE) {
        fprintf(stderr, "an empty request was not refused (%s)\n", x0x_status_str(status));
        goto out;
    }
    printf("S refused an empty request: %s: %s\n", x0x_status_str(status), why);

    /* An agent id nobody in the network has: X0X_NOT_FOUND. */
    X0xId nobody;
    memset(&nobody, 7, sizeof nobody);
    op = start_request(c, &nobody, "anyone?");
    status = op ? finish(op, NULL, why, sizeof why) : X0X_INVALID_ARGUMENT;
    if (status != X0X_NOT_FOUND) {
        fprintf(stderr, "an unknown agent was not NOT_FOUND (%s)\n", x0x_status_str(status));
        goto out;
    }
    printf("unknown agent: %s: %s\n", x0x_status_str(status), why);

    /* Stopped, the server's counts are final (its callbacks ran on the callback thread). */
    serving = false;
    if (!stop_serving(&server)) {
        fprintf(stderr, "the inbox did not stop in time\n");
        goto out;
    }
    X0xStats stats;
    x0x_agent_stats(s, &stats);
    printf("S answered %d requests and got %d message(s); %llu letters in, %llu refused\n",
           server.answered, server.messages, (unsigned long long)stats.direct_in,
           (unsigned long long)stats.direct_refused);
    if (server.answered != CONCURRENT + 1 || server.messages != 1 || stats.direct_refused != 1) {
        goto out;
    }
    exit_code = 0;

out:
    /* Stop serving first: the last callback must have run before the inbox and the server
     * state go away. Then close the agents (async: peers are told), and free the handles. */
    if (serving && !stop_serving(&server)) {
        fprintf(stderr, "the inbox did not stop in time\n");
        exit_code = 1;
        /* A callback may still come: leak the inbox and the state rather than free them. */
        server.inbox = NULL;
    }
    if (server.failed) exit_code = 1;
    x0x_inbox_free(server.inbox);
    X0xAgent *agents[2] = {c, s};
    for (int i = 0; i < 2; i++) {
        X0xOp *close_op = NULL;
        if (agents[i] != NULL && (x0x_agent_close(agents[i], NULL, NULL, &close_op) != X0X_OK ||
                                  finish(close_op, NULL, NULL, 0) != X0X_OK)) {
            exit_code = 1;
        }
        x0x_agent_free(agents[i]);
    }
    pthread_cond_destroy(&server.cv);
    pthread_mutex_destroy(&server.mu);
    if (exit_code == 0) printf("done\n");
    return exit_code;
}
