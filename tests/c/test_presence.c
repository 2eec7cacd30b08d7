/*
 * Presence and capability discovery through the C ABI: agents built as a user would (default
 * builder, bootstrap to the address the library reports), a card with capabilities and info,
 * x0x_agent_find across the network, x0x_agent_peers, x0x_agent_advertise, and every bad
 * argument.
 */
#define _XOPEN_SOURCE 700

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEST_NAME "test_presence"
#include "check.h"

/* The bound on every wait for the network (generous: valgrind is much slower). */
#define WAIT_MS 30000

static X0xStatus finish_op(X0xOp *op, void **result) {
    CHECK(op != NULL);
    X0xStatus status = -1;
    CHECK_OK(x0x_op_wait(op, WAIT_MS, &status, result));
    if (status != X0X_OK) fprintf(stderr, "operation failed: %s\n", x0x_op_error_message(op));
    x0x_op_free(op);
    return status;
}

static X0xAgent *build(X0xAgentBuilder *b) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_builder_build(b, NULL, NULL, &op));
    x0x_agent_builder_free(b);
    void *agent = NULL;
    CHECK_OK(finish_op(op, &agent));
    CHECK(agent != NULL);
    return agent;
}

static void join(const X0xAgent *agent) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_join_network(agent, WAIT_MS, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL));
}

static void close_agent(X0xAgent *agent) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_close(agent, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL));
    x0x_agent_free(agent);
}

static X0xId agent_id(const X0xAgent *agent) {
    X0xId id;
    CHECK_OK(x0x_agent_agent_id(agent, &id));
    return id;
}

static bool id_eq(const X0xId *a, const X0xId *b) {
    return memcmp(a->bytes, b->bytes, X0X_ID_LEN) == 0;
}

/* Starts a find and waits for it; the list (caller frees) or NULL on failure with `*status`. */
static X0xAgentInfoList *find(const X0xAgent *agent, const char *capability, uint32_t timeout_ms,
                              size_t limit, X0xStatus *status) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_find(agent, capability, timeout_ms, limit, NULL, NULL, &op));
    void *list = NULL;
    *status = finish_op(op, &list);
    return list;
}

static X0xAgent *g_a, *g_b;
static char g_a_addr[X0X_ADDR_STR_LEN];

static void check_builder_arguments(void) {
    X0xAgentBuilder *b = x0x_agent_builder_new();
    CHECK(b != NULL);
    const char *caps[] = {"summarize", "translate:fr"};
    CHECK_STATUS(x0x_agent_builder_with_capabilities(NULL, caps, 2), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_builder_with_capabilities(b, NULL, 2), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("capabilities must not be NULL");
    const char *with_null[] = {"ok", NULL};
    CHECK_STATUS(x0x_agent_builder_with_capabilities(b, with_null, 2), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("capabilities[1]");
    const char *bad_utf8[] = {"\xff\xfe"};
    CHECK_STATUS(x0x_agent_builder_with_capabilities(b, bad_utf8, 1), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("UTF-8");
    const char *spaced[] = {"two words"};
    CHECK_STATUS(x0x_agent_builder_with_capabilities(b, spaced, 1), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("no spaces");
    char long_cap[200];
    memset(long_cap, 'x', sizeof long_cap - 1);
    long_cap[sizeof long_cap - 1] = '\0';
    const char *too_long[] = {long_cap};
    CHECK_STATUS(x0x_agent_builder_with_capabilities(b, too_long, 1), X0X_INVALID_ARGUMENT);
    CHECK_OK(x0x_agent_builder_with_capabilities(b, NULL, 0));
    CHECK_OK(x0x_agent_builder_with_capabilities(b, caps, 2));
    const char *keys[] = {"model"};
    const char *values[] = {"small"};
    CHECK_STATUS(x0x_agent_builder_with_info(b, keys, NULL, 1), X0X_INVALID_ARGUMENT);
    CHECK_OK(x0x_agent_builder_with_info(b, keys, values, 1));
    g_a = build(b);
    CHECK_OK(x0x_agent_local_addr(g_a, g_a_addr, sizeof g_a_addr));

    /* Before joining there is nothing to ask. */
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_find(g_a, "summarize", 100, 0, NULL, NULL, &op));
    CHECK_STATUS(finish_op(op, NULL), X0X_NOT_CONNECTED);
    CHECK_STATUS(x0x_agent_find(g_a, NULL, 100, 0, NULL, NULL, &op), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_find(g_a, "", 100, 0, NULL, NULL, &op), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_find(NULL, "x", 100, 0, NULL, NULL, &op), X0X_INVALID_ARGUMENT);
    X0xAgentInfoList *list = NULL;
    CHECK_STATUS(x0x_agent_peers(g_a, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_peers(NULL, &list), X0X_INVALID_ARGUMENT);
    CHECK_OK(x0x_agent_peers(g_a, &list));
    CHECK(x0x_agent_info_list_len(list) == 0);
    CHECK(x0x_agent_info_list_get(list, 0) == NULL);
    x0x_agent_info_list_free(list);
    x0x_agent_info_list_free(NULL);
    CHECK(x0x_agent_info_list_len(NULL) == 0);
}

static void check_find(void) {
    join(g_a);
    X0xAgentBuilder *b = x0x_agent_builder_new();
    CHECK_OK(x0x_agent_builder_with_bootstrap(b, g_a_addr));
    g_b = build(b);
    join(g_b);
    X0xStatus status;
    X0xAgentInfoList *list = find(g_b, "translate:fr", 5000, 0, &status);
    CHECK_OK(status);
    CHECK(x0x_agent_info_list_len(list) == 1);
    const X0xAgentInfo *info = x0x_agent_info_list_get(list, 0);
    X0xId a = agent_id(g_a);
    X0xId a_machine;
    CHECK_OK(x0x_agent_machine_id(g_a, &a_machine));
    CHECK(id_eq(&info->agent_id, &a));
    CHECK(id_eq(&info->machine_id, &a_machine));
    CHECK(info->capability_count == 2);
    CHECK(strcmp(info->capabilities[0], "summarize") == 0);
    CHECK(strcmp(info->capabilities[1], "translate:fr") == 0);
    CHECK(info->info_count == 1);
    CHECK(strcmp(info->info_keys[0], "model") == 0 && strcmp(info->info_values[0], "small") == 0);
    CHECK(info->address_count >= 1 && strchr(info->addresses[0], ':') != NULL);
    CHECK(info->last_seen_ms > 0);
    x0x_agent_info_list_free(list);

    /* Known now: peers lists it. */
    CHECK_OK(x0x_agent_peers(g_b, &list));
    bool listed = false;
    for (size_t i = 0; i < x0x_agent_info_list_len(list); i++) {
        listed |= id_eq(&x0x_agent_info_list_get(list, i)->agent_id, &a);
    }
    CHECK(listed);
    x0x_agent_info_list_free(list);

    list = find(g_b, "nobody-does-this", 300, 0, &status);
    CHECK_OK(status);
    CHECK(x0x_agent_info_list_len(list) == 0);
    x0x_agent_info_list_free(list);
}

static void check_advertise(void) {
    const char *caps[] = {"review"};
    CHECK_STATUS(x0x_agent_advertise(NULL, caps, 1, NULL, NULL, 0), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_advertise(g_a, NULL, 1, NULL, NULL, 0), X0X_INVALID_ARGUMENT);
    const char *keys[] = {"model", "owner"};
    CHECK_STATUS(x0x_agent_advertise(g_a, caps, 1, keys, NULL, 2), X0X_INVALID_ARGUMENT);
    const char *values[] = {"large", "ops"};
    CHECK_OK(x0x_agent_advertise(g_a, caps, 1, keys, values, 2));
    X0xId a = agent_id(g_a);
    uint64_t deadline = mono_ms() + WAIT_MS;
    for (;;) {
        X0xStatus status;
        X0xAgentInfoList *list = find(g_b, "review", 2000, 1, &status);
        CHECK_OK(status);
        bool found = x0x_agent_info_list_len(list) == 1 &&
                     id_eq(&x0x_agent_info_list_get(list, 0)->agent_id, &a) &&
                     x0x_agent_info_list_get(list, 0)->info_count == 2;
        x0x_agent_info_list_free(list);
        if (found) break;
        CHECK(mono_ms() < deadline);
        nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 50000000L}, NULL);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(check_builder_arguments);
    RUN(check_find);
    RUN(check_advertise);
    close_agent(g_b);
    close_agent(g_a);
    printf("test_presence: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
