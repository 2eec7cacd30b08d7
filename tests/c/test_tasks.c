/*
 * C tests of the x0x task list ABI: local lists and their rules, replicas on real agents in this
 * process converging (racing and partitioned claims, completion, removal, a late joiner with
 * 100 tasks), the agent's list of lists, TASK_UPDATED events, and persistence in a data
 * directory (reload after a restart, a damaged file set aside and reported once), against the
 * committed include/x0x.h.
 *
 * Built by tests/c/Makefile with ASan+UBSan (`make test`) and without sanitizers under valgrind
 * (`make valgrind`). Every check asserts real results; a failing assertion prints where, what,
 * and x0x_last_error_message(), then exits 1. Every wait is bounded (WAIT_MS), so a change that
 * never arrives fails the test instead of hanging it. The agents come from the default builder,
 * as a user's do: bound to 0.0.0.0:0, reaching each other over loopback, sharing the machine key
 * in $HOME/.x0x (the Makefile runs each test binary with a fresh HOME). Everything the test owns
 * is freed, so the leak checkers see only what the library keeps for the process lifetime.
 *
 * The network checks run in order and share agents A and B (B joins through A) and the list
 * "release" that A creates and B joins.
 */
#define _XOPEN_SOURCE 700

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TEST_NAME "test_tasks"
#include "check.h"
#include "waiter.h"

#define EVENT_LOG_LAST_KIND X0X_EVENT_AGENT_LEFT
#include "event_log.h"
/* How often a replica is polled while waiting for it to converge. */
#define POLL_MS 20
/* Tasks claimed back to back on both replicas while connected. */
#define RACE_TASKS 8
/* Tasks a late joiner must receive. */
#define LATE_TASKS 100

/* ---------------------------------------------------------------------------------------------
 * Assertions and bookkeeping
 * ------------------------------------------------------------------------------------------- */


/* ---------------------------------------------------------------------------------------------
 * Time
 * ------------------------------------------------------------------------------------------- */


/* ---------------------------------------------------------------------------------------------
 * Ids, agents and operations
 * ------------------------------------------------------------------------------------------- */

static X0xId id_filled(uint8_t byte) {
    X0xId id;
    memset(id.bytes, byte, sizeof id.bytes);
    return id;
}

static void id_hex(const X0xId *id, char out[X0X_ID_HEX_LEN + 1]) {
    CHECK_OK(x0x_id_to_hex(id, out, X0X_ID_HEX_LEN + 1));
}

typedef struct {
    const char *bootstrap; /* peer to join through, or NULL */
    const char *data_dir;  /* or NULL: lists in memory only */
    const X0xBytes *key;   /* serialized agent key, or NULL: a fresh one */
} AgentConfig;

/* Starts building an agent with the default builder plus `cfg`, as a user would. */
static X0xOp *start_build(const AgentConfig *cfg) {
    X0xAgentBuilder *b = x0x_agent_builder_new();
    CHECK(b != NULL);
    if (cfg->bootstrap != NULL) CHECK_OK(x0x_agent_builder_with_bootstrap(b, cfg->bootstrap));
    if (cfg->data_dir != NULL) CHECK_OK(x0x_agent_builder_with_data_dir(b, cfg->data_dir));
    if (cfg->key != NULL) {
        CHECK_OK(x0x_agent_builder_with_agent_key(b, cfg->key->data, cfg->key->len));
    }
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_builder_build(b, NULL, NULL, &op));
    x0x_agent_builder_free(b); /* the build took a snapshot */
    return op;
}

static X0xAgent *build_agent(const AgentConfig *cfg) {
    void *agent = NULL;
    char msg[512];
    X0xStatus status = finish_op(start_build(cfg), &agent, msg, sizeof msg);
    if (status != X0X_OK) fprintf(stderr, "build failed: %s\n", msg);
    CHECK_OK(status);
    CHECK(agent != NULL);
    return agent;
}

static void leave_ok(const X0xAgent *agent) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_leave_network(agent, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));
}

/* An agent joined to the network: the first node when `bootstrap` is NULL. */
static X0xAgent *joined_agent(const char *bootstrap) {
    AgentConfig cfg = {bootstrap, NULL, NULL};
    X0xAgent *agent = build_agent(&cfg);
    join_ok(agent);
    return agent;
}

static void close_and_free(X0xAgent *agent) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_close(agent, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));
    x0x_agent_free(agent);
}

/* ---------------------------------------------------------------------------------------------
 * Task lists
 * ------------------------------------------------------------------------------------------- */

static X0xId list_id(const X0xTaskList *list) {
    X0xId id = id_filled(0xee);
    CHECK_OK(x0x_task_list_id(list, &id));
    return id;
}

static bool name_is(const X0xTaskList *list, const char *want) {
    X0xBytes name = {(uint8_t *)1, 99};
    CHECK_OK(x0x_task_list_name(list, &name));
    /* Empty buffers are {NULL, 0}. */
    CHECK((name.len == 0) == (name.data == NULL));
    bool same =
        name.len == strlen(want) && (name.len == 0 || memcmp(name.data, want, name.len) == 0);
    x0x_bytes_free(&name);
    CHECK(name.data == NULL && name.len == 0);
    return same;
}

static X0xTaskBatch *snapshot(const X0xTaskList *list) {
    X0xTaskBatch *batch = NULL;
    CHECK_OK(x0x_task_list_tasks(list, &batch));
    CHECK(batch != NULL);
    return batch;
}

static size_t task_count(const X0xTaskList *list) {
    X0xTaskBatch *batch = snapshot(list);
    size_t n = x0x_task_batch_len(batch);
    x0x_task_batch_free(batch);
    return n;
}

static X0xId add_task(const X0xTaskList *list, const char *title, const char *description) {
    X0xId id = id_filled(0);
    CHECK_OK(x0x_task_list_add_task(list, title, description, &id));
    CHECK(!id_is_zero(&id));
    return id;
}

/* The task with `id` in `batch`, or NULL. */
static const X0xTask *find_task(const X0xTaskBatch *batch, const X0xId *id) {
    for (size_t i = 0; i < x0x_task_batch_len(batch); i++) {
        const X0xTask *t = x0x_task_batch_get(batch, i);
        CHECK(t != NULL);
        if (id_eq(&t->id, id)) return t;
    }
    return NULL;
}

/* A copy of one task's fields (the batch's strings are not kept). */
typedef struct {
    bool present;
    int32_t status;
    bool has_assignee;
    X0xId assignee;
    uint64_t created_ms;
    uint64_t updated_ms;
} TaskState;

static TaskState task_state(const X0xTaskList *list, const X0xId *id) {
    TaskState s;
    memset(&s, 0, sizeof s);
    X0xTaskBatch *batch = snapshot(list);
    const X0xTask *t = find_task(batch, id);
    if (t != NULL) {
        s.present = true;
        s.status = t->status;
        s.has_assignee = t->has_assignee;
        s.assignee = t->assignee;
        s.created_ms = t->created_ms;
        s.updated_ms = t->updated_ms;
    }
    x0x_task_batch_free(batch);
    return s;
}

static const char *status_name(int32_t status) {
    switch (status) {
        case X0X_TASK_EMPTY: return "EMPTY";
        case X0X_TASK_CLAIMED: return "CLAIMED";
        case X0X_TASK_DONE: return "DONE";
        default: return "?";
    }
}

static void dump_list(const char *who, const X0xTaskList *list) {
    X0xTaskBatch *batch = snapshot(list);
    size_t n = x0x_task_batch_len(batch);
    fprintf(stderr, "  %s holds %zu tasks:\n", who, n);
    for (size_t i = 0; i < n && i < 12; i++) {
        const X0xTask *t = x0x_task_batch_get(batch, i);
        char hex[X0X_ID_HEX_LEN + 1] = "-";
        if (t->has_assignee) id_hex(&t->assignee, hex);
        fprintf(stderr, "    %-16s %-8s %.8s\n", t->title, status_name(t->status), hex);
    }
    x0x_task_batch_free(batch);
}

/* A condition on one replica's snapshot. */
typedef bool (*BatchPred)(const X0xTaskBatch *batch, const void *ctx);

/* Polls `list` every POLL_MS until `pred` holds (returns that snapshot: free it) or WAIT_MS
 * passed (fails, showing the replica). */
static X0xTaskBatch *await_tasks(const char *what, const X0xTaskList *list, BatchPred pred,
                                 const void *ctx) {
    uint64_t deadline = mono_ms() + WAIT_MS;
    for (;;) {
        X0xTaskBatch *batch = snapshot(list);
        if (pred(batch, ctx)) return batch;
        x0x_task_batch_free(batch);
        if (mono_ms() >= deadline) {
            fprintf(stderr, "no convergence in %d ms: %s\n", WAIT_MS, what);
            dump_list("the replica", list);
            CHECK(!"the replica converged in time");
        }
        sleep_ms(POLL_MS);
    }
}

static void await_free(const char *what, const X0xTaskList *list, BatchPred pred,
                       const void *ctx) {
    x0x_task_batch_free(await_tasks(what, list, pred, ctx));
}

static bool has_count(const X0xTaskBatch *batch, const void *ctx) {
    return x0x_task_batch_len(batch) == *(const size_t *)ctx;
}

typedef struct {
    X0xId id;
    int32_t status;
    X0xId assignee;
} StatusWant;

static bool has_status(const X0xTaskBatch *batch, const void *ctx) {
    const StatusWant *want = ctx;
    const X0xTask *t = find_task(batch, &want->id);
    return t != NULL && t->status == want->status && t->has_assignee &&
           id_eq(&t->assignee, &want->assignee);
}

static bool lacks_task(const X0xTaskBatch *batch, const void *ctx) {
    return find_task(batch, ctx) == NULL;
}

static void await_name(const X0xTaskList *list, const char *want) {
    uint64_t deadline = mono_ms() + WAIT_MS;
    while (!name_is(list, want)) {
        CHECK(mono_ms() < deadline);
        sleep_ms(POLL_MS);
    }
}

/* Checks that two snapshots hold the same tasks in the same order. */
static void check_same_tasks(const X0xTaskBatch *x, const X0xTaskBatch *y) {
    size_t n = x0x_task_batch_len(x);
    CHECK(x0x_task_batch_len(y) == n);
    for (size_t i = 0; i < n; i++) {
        const X0xTask *a = x0x_task_batch_get(x, i), *b = x0x_task_batch_get(y, i);
        CHECK(a != NULL && b != NULL);
        CHECK(id_eq(&a->id, &b->id));
        CHECK(strcmp(a->title, b->title) == 0);
        CHECK(strcmp(a->description, b->description) == 0);
        CHECK(a->status == b->status);
        CHECK(a->has_assignee == b->has_assignee);
        CHECK(id_eq(&a->assignee, &b->assignee));
        CHECK(a->created_ms == b->created_ms);
        CHECK(a->updated_ms == b->updated_ms);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------------------------- */

#define ANY_STATUS (-1)

/* What a TASK_UPDATED event must say. */
typedef struct {
    X0xId list;
    X0xId task;
    int32_t status; /* ANY_STATUS: not checked */
    bool removed;
    bool remote;
} TaskEventWant;

static const X0xEvent *find_task_event(const EventLog *log, const TaskEventWant *want) {
    for (size_t i = 0; i < log->len; i++) {
        const X0xEvent *e = &log->events[i];
        if (e->kind == X0X_EVENT_TASK_UPDATED && id_eq(&e->list_id, &want->list) &&
            id_eq(&e->task_id, &want->task) &&
            (want->status == ANY_STATUS || e->task_status == want->status) &&
            e->removed == want->removed && e->remote == want->remote) {
            return e;
        }
    }
    return NULL;
}

/* Pulls events from `stream` into `log` until a matching TASK_UPDATED is there or WAIT_MS
 * passed. Returns it (valid until the log grows), or NULL on timeout. */
static const X0xEvent *await_task_event(const X0xEventStream *stream, EventLog *log,
                                        const TaskEventWant *want) {
    uint64_t deadline = mono_ms() + WAIT_MS;
    for (;;) {
        const X0xEvent *found = find_task_event(log, want);
        if (found != NULL) return found;
        uint32_t left = left_ms(deadline);
        if (left == 0) return NULL;
        pull_events(stream, log, 64, left);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------------------------- */

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Reads a whole file into a malloc'd buffer. */
static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long size = ftell(f);
    CHECK(size > 0);
    CHECK(fseek(f, 0, SEEK_SET) == 0);
    uint8_t *bytes = malloc((size_t)size);
    CHECK(bytes != NULL);
    CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size);
    CHECK(fclose(f) == 0);
    *len = (size_t)size;
    return bytes;
}

static void write_file(const char *path, const uint8_t *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(bytes, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

/* Removes `dir/sub` and the files in it (no deeper levels are expected), the agent's key and
 * lock files, then `dir`. */
static void remove_tree(const char *dir, const char *sub) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *entry;
        while ((entry = readdir(d)) != NULL) {
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
            char file[1280];
            snprintf(file, sizeof file, "%s/%s", path, entry->d_name);
            CHECK(unlink(file) == 0);
        }
        closedir(d);
        CHECK(rmdir(path) == 0);
    }
    for (const char *const *name = (const char *const[]){"agent.key", "agent.lock", NULL}; *name;
         name++) {
        snprintf(path, sizeof path, "%s/%s", dir, *name);
        unlink(path);
    }
    CHECK(rmdir(dir) == 0);
}

/* ---------------------------------------------------------------------------------------------
 * Shared state: A starts the network, B joins through it
 * ------------------------------------------------------------------------------------------- */

static X0xAgent *g_a, *g_b;
static X0xId g_a_agent, g_b_agent;
static char g_a_addr[X0X_ADDR_STR_LEN];
static X0xEventStream *g_a_events, *g_b_events;
static EventLog g_a_log, g_b_log;
/* "release": created by A, joined by B. */
static X0xTaskList *g_list_a, *g_list_b;
static X0xId g_release;
static X0xId g_release_tasks[3];
/* "backlog": A's second list (the late joiner's). */
static X0xId g_backlog;

/* ---------------------------------------------------------------------------------------------
 * Checks: a local list
 * ------------------------------------------------------------------------------------------- */

/* The list's rules on one replica: creation order, claims, completion, removal, errors. */
static void check_local_list(void) {
    X0xTaskList *list = NULL;
    CHECK_OK(x0x_task_list_new_local("groceries \xe2\x9c\x93", &list));
    CHECK(list != NULL);
    CHECK(name_is(list, "groceries \xe2\x9c\x93"));
    X0xId id = list_id(list);
    CHECK(!id_is_zero(&id));
    X0xTaskList *other = NULL;
    CHECK_OK(x0x_task_list_new_local("groceries \xe2\x9c\x93", &other));
    X0xId other_id = list_id(other);
    CHECK(!id_eq(&id, &other_id)); /* every list gets a fresh random id */
    x0x_task_list_free(other);

    X0xTaskBatch *empty = snapshot(list);
    CHECK(x0x_task_batch_len(empty) == 0);
    CHECK(x0x_task_batch_get(empty, 0) == NULL);
    x0x_task_batch_free(empty);

    /* Three tasks; a NULL description reads as "". */
    uint64_t before = wall_ms();
    X0xId milk = add_task(list, "milk", "2 l, semi-skimmed");
    X0xId eggs = add_task(list, "eggs \xc3\xa9\xc3\xa9", NULL);
    X0xId bread = add_task(list, "bread", "");
    uint64_t after = wall_ms();
    CHECK(!id_eq(&milk, &eggs) && !id_eq(&eggs, &bread) && !id_eq(&milk, &bread));
    X0xTaskBatch *b = snapshot(list);
    CHECK(x0x_task_batch_len(b) == 3);
    const X0xTask *t0 = x0x_task_batch_get(b, 0), *t1 = x0x_task_batch_get(b, 1),
                  *t2 = x0x_task_batch_get(b, 2);
    CHECK(t0 != NULL && t1 != NULL && t2 != NULL);
    CHECK(x0x_task_batch_get(b, 3) == NULL);
    CHECK(id_eq(&t0->id, &milk) && id_eq(&t1->id, &eggs) && id_eq(&t2->id, &bread));
    CHECK(strcmp(t0->title, "milk") == 0 && strcmp(t0->description, "2 l, semi-skimmed") == 0);
    CHECK(strcmp(t1->title, "eggs \xc3\xa9\xc3\xa9") == 0);
    CHECK(t1->description != NULL && strcmp(t1->description, "") == 0);
    CHECK(strcmp(t2->title, "bread") == 0 && strcmp(t2->description, "") == 0);
    for (size_t i = 0; i < 3; i++) {
        const X0xTask *t = x0x_task_batch_get(b, i);
        CHECK(t->status == X0X_TASK_EMPTY);
        CHECK(!t->has_assignee && id_is_zero(&t->assignee));
        /* The list's clock may run a millisecond ahead per task in a burst. */
        CHECK(t->created_ms >= before && t->created_ms <= after + 3);
        CHECK(t->updated_ms == t->created_ms);
    }
    CHECK(t0->created_ms < t1->created_ms && t1->created_ms < t2->created_ms);
    /* A snapshot does not change afterwards; `b` is checked again below. */

    /* A burst of adds keeps creation order. */
    X0xId burst[20];
    for (int i = 0; i < 20; i++) {
        char title[16];
        snprintf(title, sizeof title, "burst %02d", i);
        burst[i] = add_task(list, title, NULL);
    }
    X0xTaskBatch *all = snapshot(list);
    CHECK(x0x_task_batch_len(all) == 23);
    for (int i = 0; i < 20; i++) {
        const X0xTask *t = x0x_task_batch_get(all, 3 + (size_t)i);
        char title[16];
        snprintf(title, sizeof title, "burst %02d", i);
        CHECK(id_eq(&t->id, &burst[i]) && strcmp(t->title, title) == 0);
    }
    x0x_task_batch_free(all);

    /* Claim for this list's own agent (NULL): claimed, with an assignee. */
    CHECK_OK(x0x_task_list_claim_task(list, &milk, NULL));
    TaskState s = task_state(list, &milk);
    CHECK(s.present && s.status == X0X_TASK_CLAIMED && s.has_assignee);
    CHECK(!id_is_zero(&s.assignee));
    CHECK(s.updated_ms > s.created_ms);
    X0xId me = s.assignee;
    /* A later claim, even for someone else, does not steal it. */
    X0xId someone = id_filled(0x01);
    CHECK_OK(x0x_task_list_claim_task(list, &milk, &someone));
    s = task_state(list, &milk);
    CHECK(s.status == X0X_TASK_CLAIMED && id_eq(&s.assignee, &me));

    /* Completing an unclaimed task is allowed: done by this list's agent. */
    CHECK_OK(x0x_task_list_complete_task(list, &eggs));
    s = task_state(list, &eggs);
    CHECK(s.status == X0X_TASK_DONE && s.has_assignee && id_eq(&s.assignee, &me));

    /* A claim with an explicit agent id; a later claim for another agent does not steal it. */
    X0xId worker = id_filled(0xa7);
    X0xId late = id_filled(0x00); /* the lowest id, but later */
    CHECK_OK(x0x_task_list_claim_task(list, &bread, &worker));
    s = task_state(list, &bread);
    CHECK(s.status == X0X_TASK_CLAIMED && s.has_assignee && id_eq(&s.assignee, &worker));
    CHECK_OK(x0x_task_list_claim_task(list, &bread, &late));
    s = task_state(list, &bread);
    CHECK(s.status == X0X_TASK_CLAIMED && id_eq(&s.assignee, &worker));
    /* Done beats Claimed: completing records who completed it. */
    CHECK_OK(x0x_task_list_complete_task(list, &bread));
    s = task_state(list, &bread);
    CHECK(s.status == X0X_TASK_DONE && id_eq(&s.assignee, &me));
    /* ... and no claim undoes Done. */
    CHECK_OK(x0x_task_list_claim_task(list, &bread, &worker));
    s = task_state(list, &bread);
    CHECK(s.status == X0X_TASK_DONE && id_eq(&s.assignee, &me));

    /* The first snapshot still shows the state at the time. */
    CHECK(x0x_task_batch_len(b) == 3);
    for (size_t i = 0; i < 3; i++) {
        CHECK(x0x_task_batch_get(b, i)->status == X0X_TASK_EMPTY);
    }
    x0x_task_batch_free(b);

    /* Remove: gone, the others keep their order; the removed id is not found any more. */
    CHECK_OK(x0x_task_list_remove_task(list, &eggs));
    b = snapshot(list);
    CHECK(x0x_task_batch_len(b) == 22);
    CHECK(id_eq(&x0x_task_batch_get(b, 0)->id, &milk));
    CHECK(id_eq(&x0x_task_batch_get(b, 1)->id, &bread));
    CHECK(id_eq(&x0x_task_batch_get(b, 2)->id, &burst[0]));
    CHECK(find_task(b, &eggs) == NULL);
    x0x_task_batch_free(b);
    char eggs_hex[X0X_ID_HEX_LEN + 1];
    id_hex(&eggs, eggs_hex);
    CHECK_STATUS(x0x_task_list_claim_task(list, &eggs, NULL), X0X_NOT_FOUND);
    CHECK_LAST_ERROR_HAS(eggs_hex);
    CHECK_STATUS(x0x_task_list_complete_task(list, &eggs), X0X_NOT_FOUND);
    CHECK_LAST_ERROR_HAS(eggs_hex);
    CHECK_STATUS(x0x_task_list_remove_task(list, &eggs), X0X_NOT_FOUND);
    CHECK_LAST_ERROR_HAS(eggs_hex);

    /* Ids that never named a task (a made-up one, the list's own) are not found either. */
    X0xId unknown = id_filled(0x5a);
    CHECK_STATUS(x0x_task_list_claim_task(list, &unknown, NULL), X0X_NOT_FOUND);
    CHECK_STATUS(x0x_task_list_claim_task(list, &unknown, &worker), X0X_NOT_FOUND);
    CHECK_STATUS(x0x_task_list_complete_task(list, &unknown), X0X_NOT_FOUND);
    CHECK_STATUS(x0x_task_list_remove_task(list, &unknown), X0X_NOT_FOUND);
    CHECK_LAST_ERROR_HAS("5a5a5a5a");
    CHECK_STATUS(x0x_task_list_claim_task(list, &id, NULL), X0X_NOT_FOUND);
    CHECK(task_count(list) == 22);

    /* Bad arguments: X0X_INVALID_ARGUMENT, with a message, and nothing changes. */
    const char bad_utf8[] = {'t', (char)0xff, 'x', 0};
    X0xTaskList *none = NULL;
    CHECK_STATUS(x0x_task_list_new_local(NULL, &none), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("name");
    CHECK_STATUS(x0x_task_list_new_local(bad_utf8, &none), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("not valid UTF-8");
    CHECK_STATUS(x0x_task_list_new_local("x", NULL), X0X_INVALID_ARGUMENT);
    CHECK(none == NULL);
    X0xId out = id_filled(0x77);
    CHECK_STATUS(x0x_task_list_add_task(list, NULL, "d", &out), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("title");
    CHECK_STATUS(x0x_task_list_add_task(list, bad_utf8, "d", &out), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("not valid UTF-8");
    CHECK_STATUS(x0x_task_list_add_task(list, "t", bad_utf8, &out), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("description");
    CHECK_STATUS(x0x_task_list_add_task(NULL, "t", "d", &out), X0X_INVALID_ARGUMENT);
    CHECK(task_count(list) == 22);
    /* task_id_out may be NULL. */
    CHECK_OK(x0x_task_list_add_task(list, "no id wanted", NULL, NULL));
    CHECK(task_count(list) == 23);

    CHECK_STATUS(x0x_task_list_claim_task(list, NULL, NULL), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("task_id");
    CHECK_STATUS(x0x_task_list_claim_task(NULL, &milk, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_task_list_complete_task(list, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_task_list_complete_task(NULL, &milk), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_task_list_remove_task(list, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_task_list_remove_task(NULL, &milk), X0X_INVALID_ARGUMENT);
    X0xTaskBatch *nb = NULL;
    CHECK_STATUS(x0x_task_list_tasks(list, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_task_list_tasks(NULL, &nb), X0X_INVALID_ARGUMENT);
    CHECK(nb == NULL);
    X0xBytes name = {NULL, 0};
    /* Regression: this once leaked the name it built before checking `out`. */
    CHECK_STATUS(x0x_task_list_name(list, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_task_list_name(NULL, &name), X0X_INVALID_ARGUMENT);
    CHECK(name.data == NULL);
    CHECK_STATUS(x0x_task_list_id(list, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_task_list_id(NULL, &out), X0X_INVALID_ARGUMENT);
    s = task_state(list, &milk);
    CHECK(s.status == X0X_TASK_CLAIMED && id_eq(&s.assignee, &me));

    CHECK(x0x_task_batch_len(NULL) == 0);
    CHECK(x0x_task_batch_get(NULL, 0) == NULL);
    x0x_task_batch_free(NULL);
    x0x_task_list_free(NULL);
    x0x_task_list_free(list);
}

/* ---------------------------------------------------------------------------------------------
 * Checks: replicas on two agents
 * ------------------------------------------------------------------------------------------- */

/* A starts a network; B joins through A. Both watch their events from the start. */
static void check_join(void) {
    AgentConfig cfg = {NULL, NULL, NULL};
    g_a = build_agent(&cfg);
    g_a_agent = agent_id(g_a);
    CHECK_OK(x0x_agent_events(g_a, &g_a_events));
    join_ok(g_a);
    /* The default bind's address, given to B as it is (dialed as loopback). */
    CHECK_OK(x0x_agent_local_addr(g_a, g_a_addr, sizeof g_a_addr));
    CHECK(strncmp(g_a_addr, "0.0.0.0:", 8) == 0);
    /* The dialable addresses start with loopback, on the same port. */
    X0xBytes addrs = {NULL, 0};
    CHECK_OK(x0x_agent_local_addrs(g_a, &addrs));
    char loopback[X0X_ADDR_STR_LEN];
    int len = snprintf(loopback, sizeof loopback, "127.0.0.1:%s", g_a_addr + 8);
    CHECK(addrs.len >= (size_t)len && memcmp(addrs.data, loopback, (size_t)len) == 0);
    CHECK(addrs.len == (size_t)len || addrs.data[len] == '\n');
    x0x_bytes_free(&addrs);

    cfg.bootstrap = g_a_addr;
    g_b = build_agent(&cfg);
    g_b_agent = agent_id(g_b);
    CHECK(!id_eq(&g_a_agent, &g_b_agent));
    CHECK_OK(x0x_agent_events(g_b, &g_b_events));
    join_ok(g_b);
    CHECK(is_connected(g_b));

    /* Without a data dir there is nothing to warn about. */
    X0xBytes warnings = {(uint8_t *)1, 1};
    CHECK_OK(x0x_agent_take_warnings(g_a, &warnings));
    CHECK(warnings.data == NULL && warnings.len == 0);
    CHECK_STATUS(x0x_agent_take_warnings(g_a, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_take_warnings(NULL, &warnings), X0X_INVALID_ARGUMENT);
    size_t count = 99;
    CHECK_OK(x0x_agent_task_lists(g_a, NULL, 0, &count));
    CHECK(count == 0);
}

/* A creates "release" with three tasks; B joins it by id and receives them, and the name. */
static void check_shared_list(void) {
    CHECK_OK(x0x_agent_create_task_list(g_a, "release", &g_list_a));
    CHECK(g_list_a != NULL);
    CHECK(name_is(g_list_a, "release"));
    g_release = list_id(g_list_a);
    CHECK(!id_is_zero(&g_release));

    const char *titles[3] = {"write notes", "tag v1.0", "publish"};
    for (int i = 0; i < 3; i++) g_release_tasks[i] = add_task(g_list_a, titles[i], "for 1.0");

    CHECK_OK(x0x_agent_join_task_list(g_b, &g_release, &g_list_b));
    CHECK(g_list_b != NULL);
    X0xId joined = list_id(g_list_b);
    CHECK(id_eq(&joined, &g_release));
    /* Joining again gives the same list, not a second one. */
    X0xTaskList *again = NULL;
    CHECK_OK(x0x_agent_join_task_list(g_b, &g_release, &again));
    X0xId again_id = list_id(again);
    CHECK(id_eq(&again_id, &g_release));
    /* So does joining one's own list. */
    X0xTaskList *own = NULL;
    CHECK_OK(x0x_agent_join_task_list(g_a, &g_release, &own));
    CHECK(name_is(own, "release") && task_count(own) == 3);
    x0x_task_list_free(own);

    uint64_t start = mono_ms();
    size_t three = 3;
    X0xTaskBatch *on_b = await_tasks("B receives the 3 tasks", g_list_b, has_count, &three);
    printf("     (B received 3 tasks after %llu ms)\n", (unsigned long long)(mono_ms() - start));
    X0xTaskBatch *on_a = snapshot(g_list_a);
    check_same_tasks(on_a, on_b);
    for (size_t i = 0; i < 3; i++) {
        const X0xTask *t = x0x_task_batch_get(on_b, i);
        CHECK(id_eq(&t->id, &g_release_tasks[i]) && strcmp(t->title, titles[i]) == 0);
        CHECK(strcmp(t->description, "for 1.0") == 0 && t->status == X0X_TASK_EMPTY);
    }
    x0x_task_batch_free(on_a);
    x0x_task_batch_free(on_b);
    await_name(g_list_b, "release");
    CHECK(task_count(again) == 3); /* the second handle is the same replica */
    x0x_task_list_free(again);

    /* Joining with bad arguments. */
    X0xTaskList *none = NULL;
    CHECK_STATUS(x0x_agent_join_task_list(g_b, NULL, &none), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_join_task_list(g_b, &g_release, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_join_task_list(NULL, &g_release, &none), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_create_task_list(g_a, NULL, &none), X0X_INVALID_ARGUMENT);
    const char bad_utf8[] = {'r', (char)0xc3, 0};
    CHECK_STATUS(x0x_agent_create_task_list(g_a, bad_utf8, &none), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("not valid UTF-8");
    CHECK_STATUS(x0x_agent_create_task_list(g_a, "x", NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_create_task_list(NULL, "x", &none), X0X_INVALID_ARGUMENT);
    CHECK(none == NULL);
}

/* A claims a task: A's stream reports a local change, B's a remote one, with every field. */
static void check_claim_events(void) {
    X0xId task = g_release_tasks[0];
    CHECK_OK(x0x_task_list_claim_task(g_list_a, &task, NULL));

    /* B's view of the adds came first, as remote EMPTY updates. */
    TaskEventWant added = {g_release, g_release_tasks[2], X0X_TASK_EMPTY, false, true};
    CHECK(await_task_event(g_b_events, &g_b_log, &added) != NULL);

    TaskEventWant want = {g_release, task, X0X_TASK_CLAIMED, false, true};
    const X0xEvent *e = await_task_event(g_b_events, &g_b_log, &want);
    CHECK(e != NULL);
    CHECK(e->kind == X0X_EVENT_TASK_UPDATED);
    CHECK(id_eq(&e->list_id, &g_release));
    CHECK(id_eq(&e->task_id, &task));
    CHECK(e->task_status == X0X_TASK_CLAIMED);
    CHECK(e->has_assignee && id_eq(&e->assignee, &g_a_agent));
    CHECK(!e->removed && e->remote);
    CHECK(id_is_zero(&e->peer) && e->neighbours == 0);

    want.remote = false;
    e = await_task_event(g_a_events, &g_a_log, &want);
    CHECK(e != NULL);
    CHECK(e->has_assignee && id_eq(&e->assignee, &g_a_agent));
    /* A's own change is never reported to A as remote. */
    want.remote = true;
    CHECK(find_task_event(&g_a_log, &want) == NULL);

    StatusWant claimed = {task, X0X_TASK_CLAIMED, g_a_agent};
    await_free("B sees A's claim", g_list_b, has_status, &claimed);
}

/* Claims that race on a connected network: A and B claim the same task back to back (neither
 * waits for the other), alternating who goes first. Both replicas settle on the same assignee,
 * the earliest claim (ties: the lowest agent id). */
static void check_racing_claims(void) {
    X0xId tasks[RACE_TASKS];
    for (int i = 0; i < RACE_TASKS; i++) {
        char title[16];
        snprintf(title, sizeof title, "race %d", i);
        tasks[i] = add_task(g_list_a, title, NULL);
    }
    size_t want = 3 + RACE_TASKS;
    await_free("B receives the race tasks", g_list_b, has_count, &want);
    /* Let the wall clock pass the creation times, so a claim's time is its updated_ms. */
    sleep_ms(20);

    X0xId expected[RACE_TASKS];
    int concurrent = 0, ties = 0;
    for (int i = 0; i < RACE_TASKS; i++) {
        bool a_first = i % 2 == 0;
        const X0xTaskList *first = a_first ? g_list_a : g_list_b;
        const X0xTaskList *second = a_first ? g_list_b : g_list_a;
        X0xId first_agent = a_first ? g_a_agent : g_b_agent;
        X0xId second_agent = a_first ? g_b_agent : g_a_agent;

        CHECK_OK(x0x_task_list_claim_task(first, &tasks[i], NULL));
        TaskState f = task_state(first, &tasks[i]);
        CHECK_OK(x0x_task_list_claim_task(second, &tasks[i], NULL));
        TaskState s = task_state(second, &tasks[i]);
        CHECK(f.status == X0X_TASK_CLAIMED && id_eq(&f.assignee, &first_agent));
        CHECK(f.updated_ms > f.created_ms);
        CHECK(s.status == X0X_TASK_CLAIMED && s.has_assignee);
        if (id_eq(&s.assignee, &second_agent)) {
            /* The second claim was made before the first one arrived: a real race. The rule
             * picks the earlier (time, agent id). */
            concurrent++;
            CHECK(s.updated_ms > s.created_ms);
            if (s.updated_ms == f.updated_ms) ties++;
            bool second_wins =
                s.updated_ms < f.updated_ms ||
                (s.updated_ms == f.updated_ms &&
                 memcmp(second_agent.bytes, first_agent.bytes, X0X_ID_LEN) < 0);
            expected[i] = second_wins ? second_agent : first_agent;
        } else {
            /* The first claim had already arrived, and the later claim did not steal it. */
            CHECK(id_eq(&s.assignee, &first_agent));
            expected[i] = first_agent;
        }
    }

    /* Converged: both replicas, every task, the same assignee, the one the rule predicts. */
    uint64_t deadline = mono_ms() + WAIT_MS;
    for (int i = 0; i < RACE_TASKS; i++) {
        for (;;) {
            TaskState a = task_state(g_list_a, &tasks[i]), b = task_state(g_list_b, &tasks[i]);
            CHECK(a.present && b.present);
            CHECK(a.status == X0X_TASK_CLAIMED && b.status == X0X_TASK_CLAIMED);
            CHECK(a.has_assignee && b.has_assignee);
            if (id_eq(&a.assignee, &b.assignee)) {
                CHECK(id_eq(&a.assignee, &g_a_agent) || id_eq(&a.assignee, &g_b_agent));
                if (!id_eq(&a.assignee, &expected[i])) {
                    fprintf(stderr, "race %d: the rule picks another winner\n", i);
                    CHECK(!"the earliest claim (ties: lowest agent id) wins");
                }
                CHECK(a.updated_ms == b.updated_ms);
                break;
            }
            if (mono_ms() >= deadline) {
                dump_list("A", g_list_a);
                dump_list("B", g_list_b);
                CHECK(!"racing claims converged in time");
            }
            sleep_ms(POLL_MS);
        }
    }
    printf("     (%d of %d claims raced, %d in the same millisecond)\n", concurrent, RACE_TASKS,
           ties);
}

/* Claims that are concurrent for sure: B leaves the network, both claim, B rejoins. The
 * full-state exchange on reconnecting converges them on the earlier claim. */
static void check_partitioned_claims(void) {
    X0xId p = add_task(g_list_a, "partition p", NULL);
    X0xId q = add_task(g_list_a, "partition q", NULL);
    size_t want = 3 + RACE_TASKS + 2;
    await_free("B receives the partition tasks", g_list_b, has_count, &want);
    sleep_ms(20);

    leave_ok(g_b);
    CHECK(!is_connected(g_b));
    /* p: B claims first; q: A claims first. 5 ms apart, so the times differ. */
    CHECK_OK(x0x_task_list_claim_task(g_list_b, &p, NULL));
    sleep_ms(5);
    CHECK_OK(x0x_task_list_claim_task(g_list_a, &p, NULL));
    CHECK_OK(x0x_task_list_claim_task(g_list_a, &q, NULL));
    sleep_ms(5);
    CHECK_OK(x0x_task_list_claim_task(g_list_b, &q, NULL));
    /* Each replica has only its own claims so far. */
    sleep_ms(200);
    TaskState s = task_state(g_list_a, &p);
    CHECK(s.status == X0X_TASK_CLAIMED && id_eq(&s.assignee, &g_a_agent));
    s = task_state(g_list_b, &q);
    CHECK(s.status == X0X_TASK_CLAIMED && id_eq(&s.assignee, &g_b_agent));

    uint64_t start = mono_ms();
    join_ok(g_b);
    StatusWant p_b = {p, X0X_TASK_CLAIMED, g_b_agent};
    StatusWant q_a = {q, X0X_TASK_CLAIMED, g_a_agent};
    await_free("A takes B's earlier claim of p", g_list_a, has_status, &p_b);
    await_free("B takes A's earlier claim of q", g_list_b, has_status, &q_a);
    printf("     (healed in %llu ms)\n", (unsigned long long)(mono_ms() - start));
    /* Neither replica changed its mind about the other task. */
    s = task_state(g_list_b, &p);
    CHECK(s.status == X0X_TASK_CLAIMED && id_eq(&s.assignee, &g_b_agent));
    s = task_state(g_list_a, &q);
    CHECK(s.status == X0X_TASK_CLAIMED && id_eq(&s.assignee, &g_a_agent));
}

/* Completion and removal made on one replica reach the other. */
static void check_complete_and_remove(void) {
    /* B completes the task A claimed: Done beats Claimed, done by B. */
    X0xId task = g_release_tasks[0];
    CHECK_OK(x0x_task_list_complete_task(g_list_b, &task));
    StatusWant done = {task, X0X_TASK_DONE, g_b_agent};
    await_free("A sees B's completion", g_list_a, has_status, &done);
    /* A claiming it again changes nothing. */
    CHECK_OK(x0x_task_list_claim_task(g_list_a, &task, NULL));
    TaskState s = task_state(g_list_a, &task);
    CHECK(s.status == X0X_TASK_DONE && id_eq(&s.assignee, &g_b_agent));

    /* A completes an unclaimed task: B sees it done by A. */
    X0xId unclaimed = g_release_tasks[1];
    CHECK_OK(x0x_task_list_complete_task(g_list_a, &unclaimed));
    StatusWant done_a = {unclaimed, X0X_TASK_DONE, g_a_agent};
    await_free("B sees A complete an unclaimed task", g_list_b, has_status, &done_a);

    /* B removes a task: A loses it, reports it as removed, and no longer finds it. */
    X0xId gone = g_release_tasks[2];
    size_t before = task_count(g_list_a);
    CHECK_OK(x0x_task_list_remove_task(g_list_b, &gone));
    CHECK(task_count(g_list_b) == before - 1);
    await_free("A loses the removed task", g_list_a, lacks_task, &gone);
    CHECK(task_count(g_list_a) == before - 1);
    TaskEventWant removed = {g_release, gone, ANY_STATUS, true, true};
    const X0xEvent *e = await_task_event(g_a_events, &g_a_log, &removed);
    CHECK(e != NULL);
    CHECK(!e->has_assignee);
    CHECK_STATUS(x0x_task_list_claim_task(g_list_a, &gone, NULL), X0X_NOT_FOUND);
    CHECK_STATUS(x0x_task_list_remove_task(g_list_a, &gone), X0X_NOT_FOUND);

    /* Both replicas hold the same tasks in the same order. */
    X0xTaskBatch *a = snapshot(g_list_a), *b = snapshot(g_list_b);
    check_same_tasks(a, b);
    x0x_task_batch_free(a);
    x0x_task_batch_free(b);
}

/* A fills a new list with 100 tasks; C, started afterwards, joins it and gets them all. */
static void check_late_joiner(void) {
    X0xTaskList *backlog = NULL;
    CHECK_OK(x0x_agent_create_task_list(g_a, "backlog", &backlog));
    g_backlog = list_id(backlog);
    for (int i = 0; i < LATE_TASKS; i++) {
        char title[32], description[48];
        snprintf(title, sizeof title, "item %03d", i);
        snprintf(description, sizeof description, "backlog item %d of %d", i + 1, LATE_TASKS);
        add_task(backlog, title, description);
    }
    X0xTaskBatch *on_a = snapshot(backlog);
    CHECK(x0x_task_batch_len(on_a) == LATE_TASKS);
    X0xId seventh = x0x_task_batch_get(on_a, 7)->id;
    CHECK_OK(x0x_task_list_claim_task(backlog, &seventh, NULL));
    x0x_task_batch_free(on_a);
    on_a = snapshot(backlog);

    uint64_t start = mono_ms();
    X0xAgent *c = joined_agent(g_a_addr);
    X0xTaskList *on_c = NULL;
    CHECK_OK(x0x_agent_join_task_list(c, &g_backlog, &on_c));
    size_t want = LATE_TASKS;
    StatusWant claimed = {seventh, X0X_TASK_CLAIMED, g_a_agent};
    await_free("C receives 100 tasks", on_c, has_count, &want);
    X0xTaskBatch *got = await_tasks("C sees the claim", on_c, has_status, &claimed);
    printf("     (C joined and received %d tasks in %llu ms)\n", LATE_TASKS,
           (unsigned long long)(mono_ms() - start));
    /* Same ids, titles, descriptions, states, in the same (creation) order. */
    check_same_tasks(on_a, got);
    for (int i = 0; i < LATE_TASKS; i++) {
        char title[32];
        snprintf(title, sizeof title, "item %03d", i);
        CHECK(strcmp(x0x_task_batch_get(got, (size_t)i)->title, title) == 0);
    }
    x0x_task_batch_free(got);
    x0x_task_batch_free(on_a);
    await_name(on_c, "backlog");

    /* C knows only this list. */
    size_t count = 0;
    X0xTaskList *lists[2] = {NULL, NULL};
    CHECK_OK(x0x_agent_task_lists(c, lists, 2, &count));
    CHECK(count == 1 && lists[0] != NULL && lists[1] == NULL);
    X0xId only = list_id(lists[0]);
    CHECK(id_eq(&only, &g_backlog));
    x0x_task_list_free(lists[0]);

    /* A list nobody else has: joining works, but no replica answers, so it stays nameless and
     * empty (checked after a full-state exchange with A had time to happen). */
    X0xId nobody = id_filled(0x3c);
    X0xTaskList *lonely = NULL;
    CHECK_OK(x0x_agent_join_task_list(c, &nobody, &lonely));
    X0xId lonely_id = list_id(lonely);
    CHECK(id_eq(&lonely_id, &nobody));
    sleep_ms(200);
    CHECK(name_is(lonely, "") && task_count(lonely) == 0);
    CHECK_OK(x0x_agent_task_lists(c, NULL, 0, &count));
    CHECK(count == 2);
    x0x_task_list_free(lonely);

    x0x_task_list_free(on_c);
    close_and_free(c);
    x0x_task_list_free(backlog);
}

/* x0x_agent_task_lists: the count, and a handle per list, ordered by id. */
static void check_task_lists(void) {
    /* A has "release" and "backlog". */
    size_t count = 99;
    CHECK_OK(x0x_agent_task_lists(g_a, NULL, 0, &count));
    CHECK(count == 2);
    /* Marks the slots the call must not write. */
    static char sentinel_byte;
    X0xTaskList *const sentinel = (X0xTaskList *)&sentinel_byte;
    X0xTaskList *lists[3] = {sentinel, sentinel, sentinel};
    /* Capacity 1: one handle, but the full count. */
    count = 0;
    CHECK_OK(x0x_agent_task_lists(g_a, lists, 1, &count));
    CHECK(count == 2);
    CHECK(lists[0] != NULL && lists[0] != sentinel && lists[1] == sentinel);
    X0xId first = list_id(lists[0]);
    x0x_task_list_free(lists[0]);
    lists[0] = sentinel;

    count = 0;
    CHECK_OK(x0x_agent_task_lists(g_a, lists, 3, &count));
    CHECK(count == 2);
    CHECK(lists[0] != sentinel && lists[1] != sentinel && lists[2] == sentinel);
    X0xId ids[2] = {list_id(lists[0]), list_id(lists[1])};
    CHECK(id_eq(&ids[0], &first));
    CHECK(memcmp(ids[0].bytes, ids[1].bytes, X0X_ID_LEN) < 0); /* ordered by id */
    bool release_first = id_eq(&ids[0], &g_release);
    CHECK(id_eq(&ids[release_first ? 0 : 1], &g_release));
    CHECK(id_eq(&ids[release_first ? 1 : 0], &g_backlog));
    CHECK(name_is(lists[release_first ? 0 : 1], "release"));
    CHECK(name_is(lists[release_first ? 1 : 0], "backlog"));
    CHECK(task_count(lists[release_first ? 1 : 0]) == LATE_TASKS);
    /* The handle is the same replica as g_list_a. */
    X0xId extra = add_task(lists[release_first ? 0 : 1], "added through a second handle", NULL);
    TaskState s = task_state(g_list_a, &extra);
    CHECK(s.present && s.status == X0X_TASK_EMPTY);
    x0x_task_list_free(lists[0]);
    x0x_task_list_free(lists[1]);

    /* B joined "release" twice: still one list. */
    CHECK_OK(x0x_agent_task_lists(g_b, NULL, 0, &count));
    CHECK(count == 1);

    /* A freed handle does not stop the replica: B drops its handles, A adds a task, and a
     * fresh handle from B's agent has it. */
    x0x_task_list_free(g_list_b);
    g_list_b = NULL;
    X0xTaskList *b_list = NULL;
    CHECK_OK(x0x_agent_task_lists(g_b, &b_list, 1, &count));
    CHECK(count == 1 && b_list != NULL);
    X0xId b_id = list_id(b_list);
    CHECK(id_eq(&b_id, &g_release));
    x0x_task_list_free(b_list);
    X0xId later = add_task(g_list_a, "after B freed its handle", NULL);
    uint64_t deadline = mono_ms() + WAIT_MS;
    for (;;) {
        b_list = NULL;
        CHECK_OK(x0x_agent_task_lists(g_b, &b_list, 1, &count));
        TaskState t = task_state(b_list, &later);
        x0x_task_list_free(b_list);
        if (t.present) break;
        CHECK(mono_ms() < deadline);
        sleep_ms(POLL_MS);
    }

    /* Bad arguments: nothing is written. */
    lists[0] = lists[1] = lists[2] = sentinel;
    CHECK_STATUS(x0x_agent_task_lists(g_a, NULL, 1, &count), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("lists");
    CHECK_STATUS(x0x_agent_task_lists(g_a, lists, 3, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_task_lists(NULL, lists, 3, &count), X0X_INVALID_ARGUMENT);
    CHECK(lists[0] == sentinel && lists[1] == sentinel && lists[2] == sentinel);
}

/* Closed agents refuse new lists; everything is freed. */
static void check_close(void) {
    x0x_task_list_free(g_list_a);
    g_list_a = NULL;
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_close(g_b, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));
    CHECK_OK(x0x_agent_close(g_a, NULL, NULL, &op));
    CHECK_OK(finish_op(op, NULL, NULL, 0));

    X0xTaskList *none = NULL;
    CHECK_STATUS(x0x_agent_create_task_list(g_a, "late", &none), X0X_CLOSED);
    CHECK_STATUS(x0x_agent_join_task_list(g_b, &g_release, &none), X0X_CLOSED);
    CHECK(none == NULL);

    x0x_event_stream_free(g_a_events);
    x0x_event_stream_free(g_b_events);
    g_a_events = g_b_events = NULL;
    log_free(&g_a_log);
    log_free(&g_b_log);
    x0x_agent_free(g_a);
    x0x_agent_free(g_b);
    g_a = g_b = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Checks: persistence
 * ------------------------------------------------------------------------------------------- */

/* Lists in a data directory survive a restart; a damaged file is set aside and reported once. */
static void check_persistence(void) {
    char dir[] = "/tmp/x0x-test-tasks-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    /* One agent key for every run, so the restarted agent is the same agent. */
    X0xBytes key = {NULL, 0};
    CHECK_OK(x0x_agent_key_generate(&key));
    AgentConfig cfg = {NULL, dir, &key};

    X0xAgent *p = build_agent(&cfg);
    X0xId me = agent_id(p);
    X0xBytes warnings = {(uint8_t *)1, 1};
    CHECK_OK(x0x_agent_take_warnings(p, &warnings));
    CHECK(warnings.data == NULL && warnings.len == 0);
    X0xTaskList *list = NULL;
    CHECK_OK(x0x_agent_create_task_list(p, "persisted \xe2\x9c\x93", &list));
    X0xId id = list_id(list);
    X0xId kept = add_task(list, "remember me", "across restarts");
    add_task(list, "and me", NULL);
    X0xId dropped = add_task(list, "not me", NULL);
    CHECK_OK(x0x_task_list_claim_task(list, &kept, NULL));
    CHECK_OK(x0x_task_list_remove_task(list, &dropped));
    X0xTaskBatch *before = snapshot(list);
    CHECK(x0x_task_batch_len(before) == 2);

    char hex[X0X_ID_HEX_LEN + 1];
    id_hex(&id, hex);
    char path[512], aside[600];
    snprintf(path, sizeof path, "%s/tasklists/%s.x0xl", dir, hex);
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    /* Written in the background shortly after a change, without waiting for close. */
    uint64_t deadline = mono_ms() + WAIT_MS;
    while (!file_exists(path)) {
        CHECK(mono_ms() < deadline);
        sleep_ms(POLL_MS);
    }
    x0x_task_list_free(list);
    close_and_free(p);

    /* Restart: the same list, name, tasks and states. */
    p = build_agent(&cfg);
    CHECK(!id_is_zero(&me));
    X0xId me_again = agent_id(p);
    CHECK(id_eq(&me, &me_again));
    warnings = (X0xBytes){(uint8_t *)1, 1};
    CHECK_OK(x0x_agent_take_warnings(p, &warnings));
    CHECK(warnings.data == NULL && warnings.len == 0);
    size_t count = 0;
    list = NULL;
    CHECK_OK(x0x_agent_task_lists(p, &list, 1, &count));
    CHECK(count == 1 && list != NULL);
    X0xId reloaded = list_id(list);
    CHECK(id_eq(&reloaded, &id));
    CHECK(name_is(list, "persisted \xe2\x9c\x93"));
    X0xTaskBatch *after = snapshot(list);
    check_same_tasks(before, after);
    const X0xTask *t = x0x_task_batch_get(after, 0);
    CHECK(id_eq(&t->id, &kept) && strcmp(t->title, "remember me") == 0);
    CHECK(strcmp(t->description, "across restarts") == 0);
    CHECK(t->status == X0X_TASK_CLAIMED && t->has_assignee && id_eq(&t->assignee, &me));
    CHECK(find_task(after, &dropped) == NULL);
    x0x_task_batch_free(after);
    x0x_task_batch_free(before);
    /* Still a working list: changes are saved again. */
    CHECK_OK(x0x_task_list_complete_task(list, &kept));
    x0x_task_list_free(list);
    close_and_free(p);
    p = build_agent(&cfg);
    list = NULL;
    CHECK_OK(x0x_agent_task_lists(p, &list, 1, &count));
    CHECK(count == 1);
    TaskState s = task_state(list, &kept);
    CHECK(s.present && s.status == X0X_TASK_DONE && id_eq(&s.assignee, &me));
    CHECK(task_count(list) == 2);
    x0x_task_list_free(list);
    close_and_free(p);
    CHECK(!file_exists(aside));

    /* Damage one byte in the middle of the file. */
    size_t len = 0;
    uint8_t *bytes = read_file(path, &len);
    CHECK(len > 64);
    bytes[len / 2] ^= 0xff;
    write_file(path, bytes, len);

    p = build_agent(&cfg);
    count = 99;
    CHECK_OK(x0x_agent_task_lists(p, NULL, 0, &count));
    CHECK(count == 0);
    warnings = (X0xBytes){NULL, 0};
    CHECK_OK(x0x_agent_take_warnings(p, &warnings));
    CHECK(warnings.data != NULL && warnings.len > 0);
    char *text = malloc(warnings.len + 1);
    CHECK(text != NULL);
    memcpy(text, warnings.data, warnings.len);
    text[warnings.len] = 0;
    printf("     (warning: %s)\n", text);
    CHECK(strlen(text) == warnings.len);   /* no NUL inside */
    CHECK(strchr(text, '\n') == NULL);     /* one problem, one line */
    CHECK(strstr(text, "corrupt") != NULL);
    CHECK(strstr(text, path) != NULL);
    CHECK(strstr(text, aside) != NULL);
    free(text);
    x0x_bytes_free(&warnings);
    /* Set aside unchanged, under the new name; the original name is free. */
    CHECK(!file_exists(path));
    size_t aside_len = 0;
    uint8_t *aside_bytes = read_file(aside, &aside_len);
    CHECK(aside_len == len && memcmp(aside_bytes, bytes, len) == 0);
    free(aside_bytes);
    free(bytes);
    /* Reported once. */
    warnings = (X0xBytes){(uint8_t *)1, 1};
    CHECK_OK(x0x_agent_take_warnings(p, &warnings));
    CHECK(warnings.data == NULL && warnings.len == 0);
    close_and_free(p);
    CHECK(!file_exists(path));

    /* Data dir arguments. */
    X0xAgentBuilder *b = x0x_agent_builder_new();
    CHECK(b != NULL);
    CHECK_STATUS(x0x_agent_builder_with_data_dir(b, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_builder_with_data_dir(b, ""), X0X_INVALID_ARGUMENT);
    const char bad_utf8[] = {'/', (char)0xfe, 0};
    CHECK_STATUS(x0x_agent_builder_with_data_dir(b, bad_utf8), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_builder_with_data_dir(NULL, dir), X0X_INVALID_ARGUMENT);
    x0x_agent_builder_free(b);

    /* A data dir that cannot be a directory (a file is in the way): the build fails. */
    char blocker[600];
    snprintf(blocker, sizeof blocker, "%s/tasklists/blocker", dir);
    write_file(blocker, (const uint8_t *)"x", 1);
    AgentConfig blocked = {NULL, blocker, NULL};
    char msg[512];
    X0xStatus status = finish_op(start_build(&blocked), NULL, msg, sizeof msg);
    CHECK_STATUS(status, X0X_IO);
    CHECK(strstr(msg, blocker) != NULL);

    x0x_bytes_free(&key);
    remove_tree(dir, "tasklists");
    CHECK(!file_exists(dir));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(check_local_list);
    RUN(check_join);
    RUN(check_shared_list);
    RUN(check_claim_events);
    RUN(check_racing_claims);
    RUN(check_partitioned_claims);
    RUN(check_complete_and_remove);
    RUN(check_late_joiner);
    RUN(check_task_lists);
    RUN(check_close);
    RUN(check_persistence);
    printf("test_tasks: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
