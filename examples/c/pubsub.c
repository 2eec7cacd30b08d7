/*
 * pubsub.c: two x0x agents in one process exchange signed messages over QUIC.
 *
 *   usage: pubsub
 *
 * Agent A starts a network; agent B joins it through A's address. A subscribes to "greetings",
 * B publishes three messages, A receives and prints them. Exits non-zero on anything unexpected.
 * Both come from the default builder: they share this machine's key ($HOME/.x0x/machine.key,
 * created on first use) and each has its own fresh agent key, which is its identity.
 *
 * Build (from the repository root, after `cargo build --release --lib`):
 *   cc -std=c11 -Iinclude examples/c/pubsub.c target/release/libx0x.a \
 *      -lpthread -ldl -lm -lrt -lutil -o pubsub
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "x0x.h"

#define TOPIC "greetings"
#define COUNT 3
/* Every wait is bounded, so a broken network fails the program instead of hanging it. */
#define WAIT_MS 30000

/* Blocks on an operation started without a callback. Returns its status (or the status of the
 * wait itself, e.g. X0X_TIMEOUT) and hands over its result, if any, through `result`. */
static X0xStatus finish(const char *what, X0xOp *op, void **result) {
    X0xStatus status = X0X_OK;
    X0xStatus waited = x0x_op_wait(op, WAIT_MS, &status, result);
    if (waited != X0X_OK) {
        fprintf(stderr, "%s: waiting failed: %s\n", what, x0x_status_str(waited));
        status = waited;
    } else if (status != X0X_OK) {
        /* An async failure carries its own message, owned by the op. */
        fprintf(stderr, "%s: %s: %s\n", what, x0x_status_str(status), x0x_op_error_message(op));
    }
    x0x_op_free(op);
    return status;
}

/* Reports a call that could not even start (a bad argument); true if it started. */
static bool started(const char *what, X0xStatus status) {
    if (status != X0X_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, x0x_status_str(status), x0x_last_error_message());
    }
    return status == X0X_OK;
}

/* Builds an agent with the defaults (listening on a free port of every interface) and, for
 * every agent but the first, the address of a peer to join through. */
static X0xAgent *build_agent(const char *bootstrap) {
    X0xAgentBuilder *builder = x0x_agent_builder_new();
    if (builder == NULL) return NULL;
    X0xAgent *agent = NULL;
    X0xOp *op = NULL;
    if ((bootstrap != NULL && x0x_agent_builder_with_bootstrap(builder, bootstrap) != X0X_OK) ||
        x0x_agent_builder_build(builder, NULL, NULL, &op) != X0X_OK) {
        fprintf(stderr, "builder: %s\n", x0x_last_error_message());
    } else {
        void *result = NULL;
        if (finish("build", op, &result) == X0X_OK) agent = result; /* we own it now */
    }
    x0x_agent_builder_free(builder); /* the build took a snapshot */
    return agent;
}

static X0xStatus join(X0xAgent *agent) {
    X0xOp *op = NULL;
    /* NULL callback: we block on the op instead. 0 means the default timeout (10 s). */
    if (!started("join", x0x_agent_join_network(agent, 0, NULL, NULL, &op))) {
        return X0X_INVALID_ARGUMENT;
    }
    return finish("join", op, NULL);
}

int main(void) {
    int exit_code = 1;
    X0xAgent *a = NULL, *b = NULL;
    X0xSubscription *sub = NULL;
    uint8_t *big = NULL;

    /* A starts the network: no bootstrap peers, so joining completes at once. */
    a = build_agent(NULL);
    if (a == NULL || join(a) != X0X_OK) goto out;
    char addr[X0X_ADDR_STR_LEN];
    if (!started("local address", x0x_agent_local_addr(a, addr, sizeof addr))) goto out;
    printf("A listens on %s\n", addr);
    /* Agents on other machines need a real address: one per line, loopback first. */
    X0xBytes addrs = {NULL, 0};
    if (!started("local addresses", x0x_agent_local_addrs(a, &addrs))) goto out;
    /* Bytes, not a C string (no NUL): print them with their length. */
    printf("A can be reached at:\n%.*s\n", (int)addrs.len, (const char *)addrs.data);
    x0x_bytes_free(&addrs);

    /* B joins through A's address as it is (on the same machine, 0.0.0.0 is dialed as
     * loopback); once the join completes, B and A are neighbours. */
    b = build_agent(addr);
    if (b == NULL || join(b) != X0X_OK) goto out;
    X0xId b_id; /* a plain value: nothing to free */
    char b_hex[X0X_ID_HEX_LEN + 1];
    x0x_agent_agent_id(b, &b_id);
    x0x_id_to_hex(&b_id, b_hex, sizeof b_hex);
    printf("B (agent %s) joined through A\n", b_hex);

    /* Subscribe before anything is published: a subscription sees messages from then on. */
    if (!started("subscribe", x0x_agent_subscribe(a, TOPIC, 0 /* default capacity */, &sub))) {
        goto out;
    }

    for (int i = 0; i < COUNT; i++) {
        char text[32];
        int len = snprintf(text, sizeof text, "hello #%d from B", i + 1);
        X0xOp *op = NULL;
        /* The payload is copied, so `text` may go away once publish returns. */
        if (!started("publish", x0x_agent_publish(b, TOPIC, (const uint8_t *)text, (size_t)len,
                                                  NULL, NULL, &op)) ||
            finish("publish", op, NULL) != X0X_OK) {
            goto out;
        }
    }

    /* A batch holds whatever has arrived (at least one message): keep asking until we have all. */
    int received = 0;
    while (received < COUNT) {
        X0xOp *op = NULL;
        void *result = NULL;
        if (!started("receive", x0x_subscription_next(sub, 16, NULL, NULL, &op)) ||
            finish("receive", op, &result) != X0X_OK) {
            goto out;
        }
        X0xMessageBatch *batch = result;
        for (size_t i = 0; i < x0x_message_batch_len(batch); i++) {
            const X0xMessage *m = x0x_message_batch_get(batch, i);
            char sender[X0X_ID_HEX_LEN + 1];
            x0x_id_to_hex(&m->sender, sender, sizeof sender);
            /* The payload is bytes, not a C string: print it with its length. */
            printf("A got from %s: %.*s\n", sender, (int)m->payload_len,
                   (const char *)m->payload);
            /* The sender id is verified by its signature; B's messages arrive in order. */
            char want[32];
            int want_len = snprintf(want, sizeof want, "hello #%d from B", received + 1);
            bool expected = memcmp(&m->sender, &b_id, sizeof b_id) == 0 &&
                            m->payload_len == (size_t)want_len &&
                            memcmp(m->payload, want, m->payload_len) == 0;
            received++;
            if (!expected) {
                fprintf(stderr, "unexpected message (wanted \"%s\" from B)\n", want);
                x0x_message_batch_free(batch);
                goto out;
            }
        }
        x0x_message_batch_free(batch); /* the messages' memory goes with it */
    }

    /* Errors come back as a status; the thread's last error message says why. Payloads are
     * limited to X0X_MAX_PAYLOAD_LEN bytes, checked before anything is sent. */
    big = calloc(X0X_MAX_PAYLOAD_LEN + 1, 1);
    if (big == NULL) goto out;
    X0xStatus status = x0x_agent_publish(b, TOPIC, big, X0X_MAX_PAYLOAD_LEN + 1, NULL, NULL, NULL);
    if (status != X0X_INVALID_ARGUMENT) {
        fprintf(stderr, "an oversized payload was not refused (%s)\n", x0x_status_str(status));
        goto out;
    }
    printf("oversized payload refused as expected: %s: %s\n", x0x_status_str(status),
           x0x_last_error_message());

    exit_code = 0;

out:
    /* Closing is asynchronous (peers are told we leave): wait for it, then free the handles.
     * Every *_free accepts NULL, so one cleanup path serves all exits. */
    x0x_subscription_free(sub);
    X0xAgent *agents[2] = {b, a};
    for (int i = 0; i < 2; i++) {
        X0xOp *op = NULL;
        if (agents[i] != NULL && (!started("close", x0x_agent_close(agents[i], NULL, NULL, &op)) ||
                                  finish("close", op, NULL) != X0X_OK)) {
            exit_code = 1;
        }
        x0x_agent_free(agents[i]);
    }
    free(big);
    if (exit_code == 0) printf("done\n");
    return exit_code;
}
