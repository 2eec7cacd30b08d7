/*
 * tasks.c: a task list shared by two x0x agents in one process.
 *
 *   usage: tasks
 *
 * Agent A starts a network and creates the list "release" with three tasks. Agent B joins the
 * network through A, then joins the list by its id, waits for the tasks to arrive, claims the
 * first one and completes it. A waits until it sees the task done, and both print their copy of
 * the list. Exits non-zero on anything unexpected.
 *
 * Build (from the repository root, after `cargo build --release --lib`):
 *   cc -std=c11 -Iinclude examples/c/tasks.c target/release/libx0x.a \
 *      -lpthread -ldl -lm -lrt -lutil -o tasks
 */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "x0x.h"

/* Every wait is bounded, so a broken network fails the program instead of hanging it. */
#define WAIT_MS 30000
#define POLL_MS 20

static const char *const TITLES[] = {"write release notes", "tag v1.0", "publish packages"};
#define TASK_COUNT 3

/* Blocks on an operation started without a callback. Returns its status (or the status of the
 * wait itself, e.g. X0X_TIMEOUT) and hands over its result, if any, through `result`. */
static X0xStatus finish(const char *what, X0xOp *op, void **result) {
    X0xStatus status = X0X_OK;
    X0xStatus waited = x0x_op_wait(op, WAIT_MS, &status, result);
    if (waited != X0X_OK) {
        fprintf(stderr, "%s: waiting failed: %s\n", what, x0x_status_str(waited));
        status = waited;
    } else if (status != X0X_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, x0x_status_str(status), x0x_op_error_message(op));
    }
    x0x_op_free(op);
    return status;
}

/* Reports a synchronous call that failed; true if it succeeded. */
static bool ok(const char *what, X0xStatus status) {
    if (status != X0X_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, x0x_status_str(status), x0x_last_error_message());
    }
    return status == X0X_OK;
}

/* An agent with the defaults (this machine's key from $HOME/.x0x, a fresh agent key, a free
 * port of every interface), joined to the network (through `bootstrap`, or as its first node
 * when that is NULL). */
static X0xAgent *start_agent(const char *bootstrap) {
    X0xAgentBuilder *builder = x0x_agent_builder_new();
    if (builder == NULL) return NULL;
    X0xAgent *agent = NULL;
    X0xOp *op = NULL;
    if ((bootstrap == NULL ||
         ok("builder", x0x_agent_builder_with_bootstrap(builder, bootstrap))) &&
        ok("build", x0x_agent_builder_build(builder, NULL, NULL, &op))) {
        void *result = NULL;
        if (finish("build", op, &result) == X0X_OK) agent = result; /* we own it now */
    }
    x0x_agent_builder_free(builder); /* the build took a snapshot */
    /* 0: the default join timeout (10 s). */
    if (agent != NULL && (!ok("join", x0x_agent_join_network(agent, 0, NULL, NULL, &op)) ||
                          finish("join", op, NULL) != X0X_OK)) {
        x0x_agent_free(agent);
        agent = NULL;
    }
    return agent;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef bool (*Ready)(const X0xTaskBatch *tasks);

static bool has_all_tasks(const X0xTaskBatch *tasks) {
    return x0x_task_batch_len(tasks) == TASK_COUNT;
}

static bool first_is_done(const X0xTaskBatch *tasks) {
    const X0xTask *first = x0x_task_batch_get(tasks, 0);
    return first != NULL && first->status == X0X_TASK_DONE;
}

/* Changes from other replicas arrive in the background, so poll the local replica until it is
 * `ready` or the time is up. Returns the snapshot that was ready (free it), or NULL. */
static X0xTaskBatch *wait_for(const char *who, const X0xTaskList *list, Ready ready) {
    long long deadline = now_ms() + WAIT_MS;
    do {
        X0xTaskBatch *tasks = NULL;
        if (!ok("tasks", x0x_task_list_tasks(list, &tasks))) return NULL;
        if (ready(tasks)) return tasks;
        x0x_task_batch_free(tasks);
        sleep_ms(POLL_MS);
    } while (now_ms() < deadline);
    fprintf(stderr, "%s: the list did not converge within %d ms\n", who, WAIT_MS);
    return NULL;
}

static const char *status_name(int32_t status) {
    switch (status) {
        case X0X_TASK_EMPTY: return "open";
        case X0X_TASK_CLAIMED: return "claimed";
        case X0X_TASK_DONE: return "done";
        default: return "?";
    }
}

/* Prints one replica: title, status and the first 8 hex digits of the assignee. */
static bool print_list(const char *who, const X0xTaskList *list) {
    X0xBytes name = {NULL, 0};
    X0xTaskBatch *tasks = NULL;
    if (!ok("name", x0x_task_list_name(list, &name)) ||
        !ok("tasks", x0x_task_list_tasks(list, &tasks))) {
        x0x_bytes_free(&name);
        return false;
    }
    /* The name is bytes without a NUL: print it with its length. */
    printf("%s's copy of \"%.*s\":\n", who, (int)name.len, (const char *)name.data);
    for (size_t i = 0; i < x0x_task_batch_len(tasks); i++) {
        const X0xTask *t = x0x_task_batch_get(tasks, i);
        char assignee[X0X_ID_HEX_LEN + 1] = "-";
        if (t->has_assignee) x0x_id_to_hex(&t->assignee, assignee, sizeof assignee);
        printf("  %-20s %-8s %.8s\n", t->title, status_name(t->status), assignee);
    }
    x0x_task_batch_free(tasks); /* the titles' memory goes with it */
    x0x_bytes_free(&name);
    return true;
}

int main(void) {
    int exit_code = 1;
    X0xAgent *a = NULL, *b = NULL;
    X0xTaskList *list_a = NULL, *list_b = NULL;
    X0xTaskBatch *tasks = NULL;

    a = start_agent(NULL);
    char addr[X0X_ADDR_STR_LEN];
    if (a == NULL || !ok("local address", x0x_agent_local_addr(a, addr, sizeof addr))) goto out;
    /* "0.0.0.0:PORT" as it is: on the same machine a wildcard address is dialed as loopback. */
    b = start_agent(addr);
    if (b == NULL) goto out;
    X0xId b_id;
    char b_hex[X0X_ID_HEX_LEN + 1];
    x0x_agent_agent_id(b, &b_id);
    x0x_id_to_hex(&b_id, b_hex, sizeof b_hex);
    printf("A listens on %s; B (agent %.8s...) joined through it\n", addr, b_hex);

    /* Task list operations are synchronous: they change A's replica at once. */
    if (!ok("create list", x0x_agent_create_task_list(a, "release", &list_a))) goto out;
    for (int i = 0; i < TASK_COUNT; i++) {
        if (!ok("add task", x0x_task_list_add_task(list_a, TITLES[i], NULL, NULL))) goto out;
    }

    /* The list id is all another agent needs to join; B's replica starts empty and fills up
     * from A's in the background. */
    X0xId list_id;
    if (!ok("list id", x0x_task_list_id(list_a, &list_id)) ||
        !ok("join list", x0x_agent_join_task_list(b, &list_id, &list_b))) {
        goto out;
    }
    tasks = wait_for("B", list_b, has_all_tasks);
    if (tasks == NULL) goto out;

    /* Tasks are in creation order on every replica, so B's first task is A's first task. */
    X0xId first = x0x_task_batch_get(tasks, 0)->id; /* a plain value: copy it out of the batch */
    x0x_task_batch_free(tasks);
    tasks = NULL;
    if (!ok("claim", x0x_task_list_claim_task(list_b, &first, NULL /* B itself */)) ||
        !ok("complete", x0x_task_list_complete_task(list_b, &first))) {
        goto out;
    }

    tasks = wait_for("A", list_a, first_is_done);
    if (tasks == NULL) goto out;
    const X0xTask *seen = x0x_task_batch_get(tasks, 0);
    if (!seen->has_assignee || memcmp(&seen->assignee, &b_id, sizeof b_id) != 0) {
        fprintf(stderr, "A sees the first task done, but not by B\n");
        goto out;
    }
    if (!print_list("A", list_a) || !print_list("B", list_b)) goto out;

    /* Errors come back as a status; the thread's last error message says why. */
    X0xId unknown;
    memset(&unknown, 0x42, sizeof unknown);
    X0xStatus status = x0x_task_list_claim_task(list_a, &unknown, NULL);
    if (status != X0X_NOT_FOUND) {
        fprintf(stderr, "claiming an unknown task gave %s\n", x0x_status_str(status));
        goto out;
    }
    printf("claiming an unknown task: %s: %s\n", x0x_status_str(status), x0x_last_error_message());

    exit_code = 0;

out:
    /* Every *_free accepts NULL, so one cleanup path serves all exits. A list handle may be
     * freed at any time; the agent keeps the list. */
    x0x_task_batch_free(tasks);
    x0x_task_list_free(list_a);
    x0x_task_list_free(list_b);
    X0xAgent *agents[2] = {b, a};
    for (int i = 0; i < 2; i++) {
        X0xOp *op = NULL;
        if (agents[i] != NULL && (!ok("close", x0x_agent_close(agents[i], NULL, NULL, &op)) ||
                                  finish("close", op, NULL) != X0X_OK)) {
            exit_code = 1;
        }
        x0x_agent_free(agents[i]);
    }
    if (exit_code == 0) printf("done\n");
    return exit_code;
}
