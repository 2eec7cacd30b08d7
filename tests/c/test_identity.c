/*
 * C tests of the x0x identity and async-operation ABI, against the committed include/x0x.h.
 *
 * Built by tests/c/Makefile with ASan+UBSan (`make test`) and without sanitizers under valgrind
 * (`make valgrind`). Every check asserts real results; a failing assertion prints where, what,
 * and x0x_last_error_message(), then exits 1. Everything the test owns is freed, so the leak
 * checkers see only what the library itself keeps for the life of the process. Most agents
 * come from the default builder, as a user's do, so their machine key is $HOME/.x0x/machine.key:
 * the Makefile runs each test binary with a fresh temporary HOME.
 */
#define _XOPEN_SOURCE 700

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TEST_NAME "test_identity"
#include "check.h"
#include "waiter.h"

/* ---------------------------------------------------------------------------------------------
 * Assertions and bookkeeping
 * ------------------------------------------------------------------------------------------- */


/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* Starts a callback-less build and blocks on it. Returns the agent (NULL on failure) and the
 * operation's status; on failure copies the operation's message into `msg`. */
static X0xAgent *build_wait(const X0xAgentBuilder *b, X0xStatus *status, char *msg, size_t n) {
    X0xOp *op = NULL;
    void *result = NULL;
    CHECK_OK(x0x_agent_builder_build(b, NULL, NULL, &op));
    CHECK(op != NULL);
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, status, &result));
    if (msg) snprintf(msg, n, "%s", x0x_op_error_message(op));
    if (*status == X0X_OK) {
        CHECK(result != NULL);
        CHECK(strcmp(x0x_op_error_message(op), "") == 0);
        /* The result is handed out once; a second wait gives NULL. */
        void *again = (void *)1;
        X0xStatus status2 = -1;
        CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &status2, &again));
        CHECK(status2 == X0X_OK && again == NULL);
    } else {
        CHECK(result == NULL);
    }
    x0x_op_free(op);
    return result;
}

/* Builds an agent that must succeed. */
static X0xAgent *build_ok(const X0xAgentBuilder *b) {
    X0xStatus status = -1;
    char msg[1024];
    X0xAgent *agent = build_wait(b, &status, msg, sizeof msg);
    if (status != X0X_OK) fprintf(stderr, "build failed: %s\n", msg);
    CHECK_STATUS(status, X0X_OK);
    return agent;
}

/* The builder as a user gets it: the machine key in $HOME/.x0x (the Makefile gives every test
 * binary a fresh HOME), a fresh agent key, bind 0.0.0.0:0. */
static X0xAgentBuilder *default_builder(void) {
    X0xAgentBuilder *b = x0x_agent_builder_new();
    CHECK(b != NULL);
    return b;
}

static X0xAgentBuilder *ephemeral_builder(void) {
    X0xAgentBuilder *b = default_builder();
    CHECK_OK(x0x_agent_builder_with_ephemeral_machine_key(b));
    return b;
}

/* Reads a whole small file; returns its length, or -1. */
static long read_file(const char *path, unsigned char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(buf, 1, cap, f);
    int err = ferror(f);
    fclose(f);
    return err ? -1 : (long)n;
}

static void write_file(const char *path, const unsigned char *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(buf, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

/* Where the default builder keeps the machine key: $HOME/.x0x/machine.key. */
static void home_machine_key(char *out, size_t n) {
    const char *home = getenv("HOME");
    CHECK(home != NULL && home[0] != '\0');
    int len = snprintf(out, n, "%s/.x0x/machine.key", home);
    CHECK(len > 0 && (size_t)len < n);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Closes the agent (which releases its data dir or key file), then frees it. */
static void close_and_free(X0xAgent *agent) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_close(agent, NULL, NULL, &op));
    X0xStatus st = -1;
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &st, NULL));
    CHECK_STATUS(st, X0X_OK);
    x0x_op_free(op);
    x0x_agent_free(agent);
}

/* Starts a build with a callback and waits for both; the build must fail with X0X_IN_USE. The
 * callback's (borrowed, copied) message goes into `msg`. */
static void build_in_use(const X0xAgentBuilder *b, char *msg, size_t n) {
    Waiter w;
    waiter_init(&w);
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_builder_build(b, on_done, &w, &op));
    CHECK(waiter_wait(&w, 30000) >= 1);
    X0xStatus st = -1;
    void *result = (void *)1;
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &st, &result));
    CHECK_STATUS(st, X0X_IN_USE);
    CHECK(result == NULL);
    x0x_op_free(op);
    CHECK(waiter_calls(&w) == 1);
    CHECK(w.status == X0X_IN_USE);
    CHECK(w.result == NULL);
    CHECK(!w.message_was_null);
    snprintf(msg, n, "%s", w.message);
    waiter_destroy(&w);
}

/* ---------------------------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------------------------- */

static void check_version(void) {
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", X0X_VERSION_MAJOR, X0X_VERSION_MINOR,
             X0X_VERSION_PATCH);
    const char *version = x0x_version();
    CHECK(version != NULL);
    CHECK(strcmp(version, expected) == 0);
    /* Static: the same pointer every time. */
    CHECK(x0x_version() == version);
}

static void check_build_ephemeral(void) {
    char home_key[512];
    home_machine_key(home_key, sizeof home_key);
    bool existed = file_exists(home_key);
    X0xAgentBuilder *b = ephemeral_builder();
    X0xAgent *agent = build_ok(b);
    X0xAgent *other = build_ok(b);
    /* The builder stays usable and may be freed while agents live. */
    x0x_agent_builder_free(b);
    /* A fresh machine key on every build, and never written (the Makefile's fresh HOME has no
     * key yet; run by hand with a used HOME, the key may be there already). */
    X0xId m1 = machine_id(agent), m2 = machine_id(other);
    CHECK(!id_eq(&m1, &m2));
    if (!existed) CHECK(!file_exists(home_key));
    x0x_agent_free(other);

    X0xId aid = agent_id(agent);
    X0xId mid = machine_id(agent);
    CHECK(!id_is_zero(&aid));
    CHECK(!id_is_zero(&mid));
    CHECK(!id_eq(&aid, &mid));
    /* Stable for the agent's life. */
    X0xId aid2 = agent_id(agent);
    CHECK(id_eq(&aid, &aid2));

    X0xBytes pk = {NULL, 0};
    CHECK_OK(x0x_agent_public_key(agent, &pk));
    CHECK(pk.data != NULL);
    CHECK(pk.len == X0X_PUBLIC_KEY_LEN);
    x0x_bytes_free(&pk);
    CHECK(pk.data == NULL && pk.len == 0);
    x0x_bytes_free(&pk); /* a second free is harmless */
    CHECK(pk.data == NULL && pk.len == 0);

    x0x_agent_free(agent);
}

/* Agents from the plain default builder share the machine key in $HOME/.x0x (created at the
 * first build, mode 0600): one machine id, a fresh agent id on every build. */
static void check_build_default(void) {
    char path[512];
    home_machine_key(path, sizeof path);
    X0xAgentBuilder *b = default_builder();
    X0xAgent *first = build_ok(b);
    X0xAgent *second = build_ok(b);
    x0x_agent_builder_free(b);
    X0xId m1 = machine_id(first), m2 = machine_id(second);
    X0xId a1 = agent_id(first), a2 = agent_id(second);
    CHECK(!id_is_zero(&m1));
    CHECK(id_eq(&m1, &m2));
    CHECK(!id_eq(&a1, &a2));

    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(st.st_size == X0X_KEYPAIR_LEN);
    /* It is that file: naming it gives the same machine; an ephemeral key another one. */
    X0xAgentBuilder *named = default_builder();
    CHECK_OK(x0x_agent_builder_with_machine_key(named, path));
    X0xAgent *third = build_ok(named);
    X0xId m3 = machine_id(third);
    CHECK(id_eq(&m1, &m3));
    X0xAgentBuilder *eb = ephemeral_builder();
    X0xAgent *fourth = build_ok(eb);
    X0xId m4 = machine_id(fourth);
    CHECK(!id_eq(&m1, &m4));

    x0x_agent_free(first);
    x0x_agent_free(second);
    x0x_agent_free(third);
    x0x_agent_free(fourth);
    x0x_agent_builder_free(named);
    x0x_agent_builder_free(eb);
}

static void check_build_callback(void) {
    Waiter w;
    waiter_init(&w);
    X0xAgentBuilder *b = default_builder();
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_builder_build(b, on_done, &w, &op));
    CHECK(op != NULL);
    x0x_agent_builder_free(b); /* allowed at once: the build uses a snapshot */

    CHECK(waiter_wait(&w, 30000) >= 1);
    /* Settled means the callback has returned; after that the count must still be 1. */
    X0xStatus op_status = -1;
    void *result = (void *)1;
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &op_status, &result));
    CHECK(op_status == X0X_OK);
    CHECK(result == NULL); /* with a callback, the callback got the result, not the waiter */
    x0x_op_free(op);

    pthread_mutex_lock(&w.mu);
    int calls = w.calls;
    X0xStatus status = w.status;
    X0xAgent *agent = w.result;
    bool message_was_null = w.message_was_null;
    bool other_thread = !pthread_equal(w.thread, pthread_self());
    pthread_mutex_unlock(&w.mu);

    CHECK(calls == 1);
    CHECK(status == X0X_OK);
    CHECK(agent != NULL);
    CHECK(message_was_null);
    CHECK(other_thread);

    X0xId aid = agent_id(agent);
    CHECK(!id_is_zero(&aid));
    x0x_agent_free(agent);
    waiter_destroy(&w);
}

/* A temp directory for the machine-key checks. */
static char g_tmp[] = "/tmp/x0x-c-test-XXXXXX";

static void path_in_tmp(char *out, size_t n, const char *rel) {
    int len = snprintf(out, n, "%s/%s", g_tmp, rel);
    CHECK(len > 0 && (size_t)len < n);
}

static void check_machine_key_persisted(void) {
    CHECK(mkdtemp(g_tmp) != NULL);
    char path[512];
    /* "keys/" does not exist yet: the library creates it. */
    path_in_tmp(path, sizeof path, "keys/machine.key");

    X0xAgentBuilder *b = x0x_agent_builder_new();
    CHECK(b != NULL);
    CHECK_OK(x0x_agent_builder_with_machine_key(b, path));
    X0xAgent *first = build_ok(b);
    X0xAgent *second = build_ok(b);
    X0xId m1 = machine_id(first), m2 = machine_id(second);
    X0xId a1 = agent_id(first), a2 = agent_id(second);
    CHECK(!id_is_zero(&m1));
    CHECK(id_eq(&m1, &m2));  /* the machine key was read back from the file */
    CHECK(!id_eq(&a1, &a2)); /* agent keys are fresh unless given */
    x0x_agent_free(first);
    x0x_agent_free(second);

    /* A fresh builder with the same path sees the same machine. */
    X0xAgentBuilder *b2 = x0x_agent_builder_new();
    CHECK(b2 != NULL);
    CHECK_OK(x0x_agent_builder_with_machine_key(b2, path));
    X0xAgent *third = build_ok(b2);
    X0xId m3 = machine_id(third);
    CHECK(id_eq(&m1, &m3));
    x0x_agent_free(third);
    x0x_agent_builder_free(b2);
    x0x_agent_builder_free(b);

    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(st.st_size == X0X_KEYPAIR_LEN);

    /* Nothing but the key is left in the directory (no temporary files). */
    char dir[512];
    path_in_tmp(dir, sizeof dir, "keys");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int entries = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        entries++;
        CHECK(strcmp(e->d_name, "machine.key") == 0);
    }
    closedir(d);
    CHECK(entries == 1);
}

static void check_machine_key_corrupt(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "keys/machine.key");
    unsigned char original[256], corrupted[256], after[256];
    long len = read_file(path, original, sizeof original);
    CHECK(len == X0X_KEYPAIR_LEN);
    memcpy(corrupted, original, (size_t)len);
    corrupted[20] ^= 0x01; /* a seed byte: only the checksum can notice */
    write_file(path, corrupted, (size_t)len);

    Waiter w;
    waiter_init(&w);
    X0xAgentBuilder *b = x0x_agent_builder_new();
    CHECK(b != NULL);
    CHECK_OK(x0x_agent_builder_with_machine_key(b, path));
    X0xOp *op = NULL;
    CHECK_OK(x0x_agent_builder_build(b, on_done, &w, &op));
    CHECK(waiter_wait(&w, 30000) >= 1);
    X0xStatus op_status = -1;
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &op_status, NULL));
    CHECK(op_status == X0X_CORRUPT);
    /* The op keeps the message after the callback's borrowed copy is gone. */
    CHECK(strstr(x0x_op_error_message(op), path) != NULL);
    x0x_op_free(op);

    CHECK(w.calls == 1);
    CHECK(w.status == X0X_CORRUPT);
    CHECK(w.result == NULL);
    CHECK(!w.message_was_null);
    CHECK(strstr(w.message, path) != NULL);
    CHECK(strstr(w.message, "corrupt") != NULL);
    printf("     (message: %s)\n", w.message);

    /* The damaged file was left exactly as it was. */
    CHECK(read_file(path, after, sizeof after) == len);
    CHECK(memcmp(after, corrupted, (size_t)len) == 0);

    /* A truncated file is corrupt too (not silently replaced). */
    write_file(path, original, 10);
    X0xStatus status = -1;
    char msg[1024];
    X0xAgent *none = build_wait(b, &status, msg, sizeof msg);
    CHECK(none == NULL);
    CHECK_STATUS(status, X0X_CORRUPT);
    CHECK(strstr(msg, path) != NULL);
    CHECK(read_file(path, after, sizeof after) == 10);

    x0x_agent_builder_free(b);
    waiter_destroy(&w);
}

static void check_machine_key_io_error(void) {
    char file[512], path[512];
    path_in_tmp(file, sizeof file, "file");
    path_in_tmp(path, sizeof path, "file/machine.key");
    const unsigned char junk[] = "not a directory";
    write_file(file, junk, sizeof junk);

    X0xAgentBuilder *b = x0x_agent_builder_new();
    CHECK(b != NULL);
    CHECK_OK(x0x_agent_builder_with_machine_key(b, path));
    X0xStatus status = -1;
    char msg[1024];
    X0xAgent *none = build_wait(b, &status, msg, sizeof msg);
    CHECK(none == NULL);
    CHECK_STATUS(status, X0X_IO);
    CHECK(strstr(msg, path) != NULL);
    printf("     (message: %s)\n", msg);
    x0x_agent_builder_free(b);

    /* Clean up the temp dir. */
    char key[512], keys[512];
    path_in_tmp(key, sizeof key, "keys/machine.key");
    path_in_tmp(keys, sizeof keys, "keys");
    CHECK(unlink(file) == 0);
    CHECK(unlink(key) == 0);
    CHECK(rmdir(keys) == 0);
    CHECK(rmdir(g_tmp) == 0);
}

static void check_agent_key(void) {
    X0xBytes key = {NULL, 0};
    CHECK_OK(x0x_agent_key_generate(&key));
    CHECK(key.data != NULL);
    CHECK(key.len == X0X_KEYPAIR_LEN);
    CHECK(memcmp(key.data, "x0xk", 4) == 0);
    CHECK(key.data[4] == 1 && key.data[5] == 1 && key.data[6] == 0 && key.data[7] == 0);

    /* Two builders each given the key: the same agent id, different machines (ephemeral keys:
     * the agent id must not depend on the machine key). */
    X0xAgentBuilder *b1 = ephemeral_builder();
    X0xAgentBuilder *b2 = ephemeral_builder();
    CHECK_OK(x0x_agent_builder_with_agent_key(b1, key.data, key.len));
    CHECK_OK(x0x_agent_builder_with_agent_key(b2, key.data, key.len));
    X0xAgent *a1 = build_ok(b1);
    X0xAgent *a2 = build_ok(b2);
    X0xId id1 = agent_id(a1), id2 = agent_id(a2);
    X0xId m1 = machine_id(a1), m2 = machine_id(a2);
    CHECK(id_eq(&id1, &id2));
    CHECK(!id_eq(&m1, &m2));

    /* The agent hands the same key back. */
    X0xBytes back = {NULL, 0};
    CHECK_OK(x0x_agent_keypair_bytes(a1, &back));
    CHECK(back.len == key.len);
    CHECK(memcmp(back.data, key.data, key.len) == 0);
    x0x_bytes_free(&back);

    /* A different generated key gives a different agent. */
    X0xBytes other = {NULL, 0};
    CHECK_OK(x0x_agent_key_generate(&other));
    CHECK(other.len == X0X_KEYPAIR_LEN);
    CHECK(memcmp(other.data + 8, key.data + 8, 32) != 0);
    X0xAgentBuilder *b3 = default_builder();
    CHECK_OK(x0x_agent_builder_with_agent_key(b3, other.data, other.len));
    X0xAgent *a3 = build_ok(b3);
    X0xId id3 = agent_id(a3);
    CHECK(!id_eq(&id1, &id3));
    x0x_agent_free(a3);
    x0x_agent_builder_free(b3);
    x0x_bytes_free(&other);

    x0x_agent_free(a1);
    x0x_agent_free(a2);
    x0x_agent_builder_free(b1);
    x0x_agent_builder_free(b2);
    x0x_bytes_free(&key);
}

static void check_agent_key_invalid(void) {
    X0xBytes key = {NULL, 0};
    CHECK_OK(x0x_agent_key_generate(&key));
    X0xAgentBuilder *b = default_builder();
    CHECK_OK(x0x_agent_builder_with_agent_key(b, key.data, key.len));

    /* Wrong length, both ways. */
    CHECK_STATUS(x0x_agent_builder_with_agent_key(b, key.data, key.len - 1), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("expected 72 bytes");
    unsigned char longer[X0X_KEYPAIR_LEN + 1];
    memcpy(longer, key.data, key.len);
    longer[X0X_KEYPAIR_LEN] = 0;
    CHECK_STATUS(x0x_agent_builder_with_agent_key(b, longer, sizeof longer), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("expected 72 bytes");

    /* One flipped bit anywhere in the seed or checksum is caught by the checksum. */
    unsigned char damaged[X0X_KEYPAIR_LEN];
    size_t positions[] = {8, 39, 40, X0X_KEYPAIR_LEN - 1};
    for (size_t i = 0; i < sizeof positions / sizeof positions[0]; i++) {
        memcpy(damaged, key.data, key.len);
        damaged[positions[i]] ^= 0x80;
        CHECK_STATUS(x0x_agent_builder_with_agent_key(b, damaged, sizeof damaged),
                     X0X_INVALID_ARGUMENT);
        CHECK_LAST_ERROR_HAS("checksum");
    }
    /* Not an x0x key at all. */
    memcpy(damaged, key.data, key.len);
    damaged[0] = 'y';
    CHECK_STATUS(x0x_agent_builder_with_agent_key(b, damaged, sizeof damaged), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("magic");

    /* The builder was left unchanged by the failures: it still builds the good key's agent. */
    X0xAgent *agent = build_ok(b);
    X0xBytes back = {NULL, 0};
    CHECK_OK(x0x_agent_keypair_bytes(agent, &back));
    CHECK(back.len == key.len && memcmp(back.data, key.data, key.len) == 0);
    x0x_bytes_free(&back);
    x0x_agent_free(agent);

    x0x_agent_builder_free(b);
    x0x_bytes_free(&key);
}

/* A data dir is one agent's home: a second build with it while the first agent runs fails with
 * X0X_IN_USE naming the dir and this process; after a close the same agent builds again. */
static void check_data_dir_in_use(void) {
    char base[] = "/tmp/x0x-c-test-XXXXXX";
    CHECK(mkdtemp(base) != NULL);
    char dir[512];
    /* Missing: the build creates it. */
    CHECK((size_t)snprintf(dir, sizeof dir, "%s/home", base) < sizeof dir);
    X0xAgentBuilder *b = default_builder();
    CHECK_OK(x0x_agent_builder_with_data_dir(b, dir));
    X0xAgent *first = build_ok(b);
    X0xId id1 = agent_id(first);

    char msg[1024], pid[32];
    build_in_use(b, msg, sizeof msg);
    printf("     (message: %s)\n", msg);
    CHECK(strstr(msg, dir) != NULL);
    snprintf(pid, sizeof pid, "process %ld", (long)getpid());
    CHECK(strstr(msg, pid) != NULL);
    /* A fresh builder is refused the same way: the lock is on the dir, not the builder. */
    X0xAgentBuilder *b2 = default_builder();
    CHECK_OK(x0x_agent_builder_with_data_dir(b2, dir));
    build_in_use(b2, msg, sizeof msg);
    CHECK(strstr(msg, dir) != NULL);
    x0x_agent_builder_free(b2);

    close_and_free(first);
    X0xAgent *again = build_ok(b);
    X0xId id2 = agent_id(again);
    CHECK(id_eq(&id1, &id2)); /* its key is in the dir */
    close_and_free(again);
    x0x_agent_builder_free(b);

    char path[600];
    const char *files[] = {"agent.key", "agent.lock"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        CHECK(unlink(path) == 0);
    }
    snprintf(path, sizeof path, "%s/tasklists", dir);
    CHECK(rmdir(path) == 0);
    CHECK(rmdir(dir) == 0);
    CHECK(rmdir(base) == 0);
}

/* An agent key file keeps the agent's id across builds; it is locked while the agent runs. */
static void check_agent_key_file(void) {
    char dir[] = "/tmp/x0x-c-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[512], lock[600];
    CHECK((size_t)snprintf(path, sizeof path, "%s/agent.key", dir) < sizeof path);
    snprintf(lock, sizeof lock, "%s.lock", path);

    X0xAgentBuilder *b = default_builder();
    CHECK_STATUS(x0x_agent_builder_with_agent_key_file(NULL, path), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("builder must not be NULL");
    CHECK_STATUS(x0x_agent_builder_with_agent_key_file(b, NULL), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("path must not be NULL");
    CHECK_STATUS(x0x_agent_builder_with_agent_key_file(b, ""), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("empty");
    const char bad_path[] = {'/', 't', 'm', 'p', '/', (char)0xc3, 0};
    CHECK_STATUS(x0x_agent_builder_with_agent_key_file(b, bad_path), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("not valid UTF-8");
    /* The failures touched nothing: no file yet. */
    CHECK(!file_exists(path));

    CHECK_OK(x0x_agent_builder_with_agent_key_file(b, path));
    X0xAgent *first = build_ok(b);
    X0xId id1 = agent_id(first);
    /* Created 0600, holding this agent's key. */
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    unsigned char stored[256];
    CHECK(read_file(path, stored, sizeof stored) == X0X_KEYPAIR_LEN);
    X0xBytes key = {NULL, 0};
    CHECK_OK(x0x_agent_keypair_bytes(first, &key));
    CHECK(key.len == X0X_KEYPAIR_LEN && memcmp(key.data, stored, key.len) == 0);
    x0x_bytes_free(&key);

    char msg[1024];
    build_in_use(b, msg, sizeof msg);
    CHECK(strstr(msg, path) != NULL);

    close_and_free(first);
    X0xAgent *second = build_ok(b);
    X0xId id2 = agent_id(second);
    CHECK(id_eq(&id1, &id2));
    close_and_free(second);
    x0x_agent_builder_free(b);

    CHECK(unlink(path) == 0);
    CHECK(unlink(lock) == 0);
    CHECK(rmdir(dir) == 0);
}

static void check_hex(void) {
    X0xAgentBuilder *b = default_builder();
    X0xAgent *agent = build_ok(b);
    X0xId id = agent_id(agent);
    x0x_agent_free(agent);
    x0x_agent_builder_free(b);

    char hex[X0X_ID_HEX_LEN + 1];
    memset(hex, 'Z', sizeof hex);
    CHECK_OK(x0x_id_to_hex(&id, hex, sizeof hex));
    CHECK(strlen(hex) == X0X_ID_HEX_LEN);
    for (size_t i = 0; i < X0X_ID_HEX_LEN; i++)
        CHECK((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
    /* Byte 0 is the first two digits. */
    char first[3];
    snprintf(first, sizeof first, "%02x", id.bytes[0]);
    CHECK(strncmp(hex, first, 2) == 0);

    X0xId parsed;
    memset(&parsed, 0, sizeof parsed);
    CHECK_OK(x0x_id_from_hex(hex, &parsed));
    CHECK(id_eq(&id, &parsed));

    /* Upper case parses to the same id. */
    char upper[X0X_ID_HEX_LEN + 1];
    for (size_t i = 0; i <= X0X_ID_HEX_LEN; i++)
        upper[i] = (hex[i] >= 'a' && hex[i] <= 'f') ? (char)(hex[i] - 'a' + 'A') : hex[i];
    memset(&parsed, 0, sizeof parsed);
    CHECK_OK(x0x_id_from_hex(upper, &parsed));
    CHECK(id_eq(&id, &parsed));

    /* Bad hex: error, message, and *out unchanged. */
    X0xId untouched;
    memset(&untouched, 0xAA, sizeof untouched);
    X0xId sentinel = untouched;
    char bad[X0X_ID_HEX_LEN + 1];
    memcpy(bad, hex, sizeof bad);
    bad[10] = 'g';
    CHECK_STATUS(x0x_id_from_hex(bad, &untouched), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("non-hex");
    CHECK(id_eq(&untouched, &sentinel));
    CHECK_STATUS(x0x_id_from_hex("abc", &untouched), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("expected 64 hex digits");
    CHECK_STATUS(x0x_id_from_hex("", &untouched), X0X_INVALID_ARGUMENT);
    char longer[X0X_ID_HEX_LEN + 3];
    snprintf(longer, sizeof longer, "%s00", hex);
    CHECK_STATUS(x0x_id_from_hex(longer, &untouched), X0X_INVALID_ARGUMENT);
    CHECK(id_eq(&untouched, &sentinel));

    /* Buffer too small (no room for the NUL): error, and nothing written. */
    char small[X0X_ID_HEX_LEN + 1];
    memset(small, 'Z', sizeof small);
    CHECK_STATUS(x0x_id_to_hex(&id, small, X0X_ID_HEX_LEN), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("65");
    for (size_t i = 0; i < sizeof small; i++) CHECK(small[i] == 'Z');
    CHECK_STATUS(x0x_id_to_hex(&id, small, 0), X0X_INVALID_ARGUMENT);
    /* A bigger buffer is fine. */
    char big[128];
    CHECK_OK(x0x_id_to_hex(&id, big, sizeof big));
    CHECK(strcmp(big, hex) == 0);
}

static void check_null_arguments(void) {
    X0xAgentBuilder *b = default_builder();
    X0xAgent *agent = build_ok(b);
    X0xId id;
    X0xBytes bytes = {NULL, 0};
    X0xStatus st;
    char buf[X0X_ID_HEX_LEN + 1];
    Waiter w;
    waiter_init(&w);

    CHECK_STATUS(x0x_agent_agent_id(NULL, &id), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("must not be NULL");
    CHECK_STATUS(x0x_agent_agent_id(agent, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_machine_id(NULL, &id), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_machine_id(agent, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_public_key(NULL, &bytes), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_keypair_bytes(NULL, &bytes), X0X_INVALID_ARGUMENT);
    /* Regression: these once leaked the buffer they built before checking `out`. */
    CHECK_STATUS(x0x_agent_public_key(agent, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_keypair_bytes(agent, NULL), X0X_INVALID_ARGUMENT);
    CHECK(bytes.data == NULL && bytes.len == 0);

    CHECK_STATUS(x0x_agent_builder_with_machine_key(NULL, "/tmp/x"), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_builder_with_machine_key(b, NULL), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("path must not be NULL");
    CHECK_STATUS(x0x_agent_builder_with_machine_key(b, ""), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("empty");
    CHECK_STATUS(x0x_agent_builder_with_ephemeral_machine_key(NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_builder_with_agent_key(NULL, NULL, 0), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_builder_with_agent_key(b, NULL, X0X_KEYPAIR_LEN), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("key must not be NULL");
    CHECK_STATUS(x0x_agent_builder_with_agent_key(b, NULL, 0), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("expected 72 bytes");
    CHECK_STATUS(x0x_agent_builder_with_bind(NULL, "127.0.0.1:0"), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_builder_with_bind(b, NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_builder_with_bootstrap(NULL, "127.0.0.1:5483"), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_builder_with_bootstrap(b, NULL), X0X_INVALID_ARGUMENT);

    CHECK_STATUS(x0x_id_to_hex(NULL, buf, sizeof buf), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_id_to_hex(&id, NULL, sizeof buf), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_id_from_hex(NULL, &id), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_id_from_hex("00", NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_agent_key_generate(NULL), X0X_INVALID_ARGUMENT);

    CHECK_STATUS(x0x_op_cancel(NULL), X0X_INVALID_ARGUMENT);
    CHECK_STATUS(x0x_op_wait(NULL, 0, &st, NULL), X0X_INVALID_ARGUMENT);
    CHECK(x0x_op_error_message(NULL) == NULL);

    /* Async starters with a NULL handle fail synchronously, give no op and never call back. */
    X0xOp *op = NULL;
    CHECK_STATUS(x0x_agent_builder_build(NULL, on_done, &w, &op), X0X_INVALID_ARGUMENT);
    CHECK(op == NULL);
    CHECK_STATUS(x0x_agent_close(NULL, on_done, &w, &op), X0X_INVALID_ARGUMENT);
    CHECK(op == NULL);

    /* x0x_op_wait with a NULL status pointer on a real op. */
    CHECK_OK(x0x_sleep(0, NULL, NULL, &op));
    CHECK(op != NULL);
    CHECK_STATUS(x0x_op_wait(op, X0X_WAIT_FOREVER, NULL, NULL), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("op_status_out");
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &st, NULL));
    CHECK(st == X0X_OK);
    x0x_op_free(op);

    /* Callbacks are delivered in order on one thread: once a later op has called back, any
     * stray callback from the failed starts above would have run already. */
    Waiter later;
    waiter_init(&later);
    CHECK_OK(x0x_sleep(20, on_done, &later, NULL));
    CHECK(waiter_wait(&later, 10000) == 1);
    CHECK(waiter_calls(&w) == 0);
    waiter_destroy(&later);

    x0x_agent_free(agent);
    x0x_agent_builder_free(b);
    waiter_destroy(&w);
}

static void check_strings(void) {
    X0xAgentBuilder *b = x0x_agent_builder_new();
    CHECK(b != NULL);
    const char bad_utf8[] = {'1', '2', '7', '.', (char)0xff, '.', '0', '.', '1', ':', '0', 0};
    CHECK_STATUS(x0x_agent_builder_with_bind(b, bad_utf8), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("not valid UTF-8");
    CHECK_STATUS(x0x_agent_builder_with_bootstrap(b, bad_utf8), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("not valid UTF-8");
    const char bad_path[] = {'/', 't', 'm', 'p', '/', (char)0xc3, 0};
    CHECK_STATUS(x0x_agent_builder_with_machine_key(b, bad_path), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("not valid UTF-8");
    CHECK_STATUS(x0x_id_from_hex(bad_utf8, &(X0xId){{0}}), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("not valid UTF-8");

    CHECK_STATUS(x0x_agent_builder_with_bind(b, "localhost:0"), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("expected ip:port");
    CHECK_STATUS(x0x_agent_builder_with_bootstrap(b, "127.0.0.1"), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("expected host:port");
    CHECK_STATUS(x0x_agent_builder_with_bootstrap(b, "host:99999"), X0X_INVALID_ARGUMENT);

    /* Success leaves the last error alone, like errno. */
    const char *before = x0x_last_error_message();
    char saved[512];
    snprintf(saved, sizeof saved, "%s", before);
    CHECK_OK(x0x_agent_builder_with_bind(b, "127.0.0.1:0"));
    CHECK_OK(x0x_agent_builder_with_bind(b, "[::1]:0"));
    CHECK_OK(x0x_agent_builder_with_bootstrap(b, "127.0.0.1:5483"));
    CHECK_OK(x0x_agent_builder_with_bootstrap(b, "node.example:5483"));
    CHECK(strcmp(x0x_last_error_message(), saved) == 0);

    /* UTF-8 that is valid but not ASCII is fine in a path (no file is touched until build). */
    CHECK_OK(x0x_agent_builder_with_machine_key(b, "/tmp/x0x-\xc3\xa9t\xc3\xa9/machine.key"));

    x0x_agent_builder_free(b);
}

static void *fail_on_other_thread(void *arg) {
    char *out = arg;
    if (x0x_id_from_hex("xyz", &(X0xId){{0}}) != X0X_INVALID_ARGUMENT) return NULL;
    snprintf(out, 256, "%s", x0x_last_error_message());
    return out;
}

static void check_last_error_per_thread(void) {
    CHECK_STATUS(x0x_agent_builder_with_machine_key(NULL, "/tmp/k"), X0X_INVALID_ARGUMENT);
    CHECK_LAST_ERROR_HAS("builder must not be NULL");
    char other[256] = "";
    pthread_t t;
    void *ret = NULL;
    CHECK(pthread_create(&t, NULL, fail_on_other_thread, other) == 0);
    CHECK(pthread_join(t, &ret) == 0);
    CHECK(ret == other);
    CHECK(strstr(other, "expected 64 hex digits") != NULL);
    /* The other thread's failure did not touch this thread's message. */
    CHECK_LAST_ERROR_HAS("builder must not be NULL");
}

static void check_free_null(void) {
    x0x_agent_free(NULL);
    x0x_agent_builder_free(NULL);
    x0x_bytes_free(NULL);
    x0x_op_free(NULL);
    X0xBytes empty = {NULL, 0};
    x0x_bytes_free(&empty);
    CHECK(empty.data == NULL && empty.len == 0);
}

static void check_cancel(void) {
    Waiter w;
    waiter_init(&w);
    X0xOp *op = NULL;
    CHECK_OK(x0x_sleep(60000, on_done, &w, &op));
    CHECK(op != NULL);
    /* Still pending: polling times out and the message is "". */
    X0xStatus st = -1;
    CHECK_STATUS(x0x_op_wait(op, 0, &st, NULL), X0X_TIMEOUT);
    CHECK(strcmp(x0x_op_error_message(op), "") == 0);

    CHECK_OK(x0x_op_cancel(op));
    CHECK(waiter_wait(&w, 10000) >= 1);
    CHECK_OK(x0x_op_cancel(op)); /* idempotent, also after completion */
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &st, NULL));
    CHECK(st == X0X_CANCELLED);
    CHECK(strlen(x0x_op_error_message(op)) > 0);

    CHECK(waiter_calls(&w) == 1);
    CHECK(w.status == X0X_CANCELLED);
    CHECK(w.result == NULL);
    CHECK(!w.message_was_null && strlen(w.message) > 0);
    x0x_op_free(op);
    waiter_destroy(&w);
}

/* One slot per operation for the race check. */
typedef struct {
    pthread_mutex_t *mu;
    int calls;
    X0xStatus status;
} Slot;

static void on_slot(void *user_data, X0xStatus status, void *result, const char *message) {
    Slot *s = user_data;
    (void)message;
    pthread_mutex_lock(s->mu);
    s->calls++;
    s->status = result == NULL ? status : -100; /* sleep never has a result */
    pthread_mutex_unlock(s->mu);
}

#define RACES 200

static void check_cancel_race(void) {
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    Slot *slots = calloc(RACES, sizeof *slots);
    X0xOp **ops = calloc(RACES, sizeof *ops);
    CHECK(slots != NULL && ops != NULL);
    for (int i = 0; i < RACES; i++) {
        slots[i].mu = &mu;
        slots[i].status = -1;
        CHECK_OK(x0x_sleep(0, on_slot, &slots[i], &ops[i]));
        CHECK_OK(x0x_op_cancel(ops[i]));
    }
    int ok = 0, cancelled = 0;
    for (int i = 0; i < RACES; i++) {
        X0xStatus st = -1;
        CHECK_OK(x0x_op_wait(ops[i], X0X_WAIT_FOREVER, &st, NULL));
        pthread_mutex_lock(&mu);
        int calls = slots[i].calls;
        X0xStatus seen = slots[i].status;
        pthread_mutex_unlock(&mu);
        CHECK(calls == 1);
        CHECK(seen == st);
        CHECK(st == X0X_OK || st == X0X_CANCELLED);
        if (st == X0X_OK) ok++;
        else cancelled++;
        x0x_op_free(ops[i]);
    }
    printf("     (%d completed, %d cancelled)\n", ok, cancelled);

    /* Cancelling an operation that has already completed changes nothing. */
    for (int i = 0; i < 20; i++) {
        Slot *s = &slots[i];
        X0xStatus st = -1;
        CHECK_OK(x0x_sleep(0, on_slot, s, &ops[i]));
        CHECK_OK(x0x_op_wait(ops[i], X0X_WAIT_FOREVER, &st, NULL));
        CHECK(st == X0X_OK);
        CHECK_OK(x0x_op_cancel(ops[i]));
        CHECK_OK(x0x_op_wait(ops[i], X0X_WAIT_FOREVER, &st, NULL));
        CHECK(st == X0X_OK);
        CHECK(strcmp(x0x_op_error_message(ops[i]), "") == 0);
        x0x_op_free(ops[i]);
        ops[i] = NULL;
        pthread_mutex_lock(&mu);
        CHECK(s->calls == 2 && s->status == X0X_OK); /* one call from each phase */
        pthread_mutex_unlock(&mu);
    }
    /* Give any (buggy) second callback a chance to show up before the slots go away. */
    Waiter w;
    waiter_init(&w);
    CHECK_OK(x0x_sleep(10, on_done, &w, NULL));
    CHECK(waiter_wait(&w, 10000) == 1);
    waiter_destroy(&w);
    for (int i = 0; i < RACES; i++) CHECK(slots[i].calls == (i < 20 ? 2 : 1));
    free(ops);
    free(slots);
    pthread_mutex_destroy(&mu);
}

static void check_free_pending_op(void) {
    Waiter w;
    waiter_init(&w);
    X0xOp *op = NULL;
    CHECK_OK(x0x_sleep(50, on_done, &w, &op));
    x0x_op_free(op); /* releases the handle only; does not cancel */
    CHECK(waiter_wait(&w, 10000) == 1);
    CHECK(w.status == X0X_OK);
    CHECK(w.result == NULL);
    CHECK(w.message_was_null);

    /* A callback-less op freed while pending: its (empty) result is dropped, nothing leaks. */
    X0xOp *op2 = NULL;
    CHECK_OK(x0x_sleep(10, NULL, NULL, &op2));
    x0x_op_free(op2);
    /* And an unclaimed agent from a callback-less build is freed by x0x_op_free. */
    X0xAgentBuilder *b = default_builder();
    X0xOp *op3 = NULL;
    CHECK_OK(x0x_agent_builder_build(b, NULL, NULL, &op3));
    X0xStatus st = -1;
    CHECK_OK(x0x_op_wait(op3, X0X_WAIT_FOREVER, &st, NULL)); /* result_out NULL: not claimed */
    CHECK(st == X0X_OK);
    x0x_op_free(op3);
    x0x_agent_builder_free(b);
    waiter_destroy(&w);
}

static void check_wait_timeout(void) {
    X0xOp *op = NULL;
    CHECK_OK(x0x_sleep(500, NULL, NULL, &op));
    X0xStatus st = -1;
    void *result = (void *)1;
    CHECK_STATUS(x0x_op_wait(op, 0, &st, &result), X0X_TIMEOUT);
    CHECK_LAST_ERROR_HAS("not finished");
    CHECK(st == -1);              /* untouched on timeout */
    CHECK(result == (void *)1);
    CHECK_STATUS(x0x_op_wait(op, 20, &st, &result), X0X_TIMEOUT);
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &st, &result));
    CHECK(st == X0X_OK);
    CHECK(result == NULL);
    x0x_op_free(op);
}

static void check_agent_close(void) {
    X0xAgentBuilder *b = default_builder();
    X0xAgent *agent = build_ok(b);
    x0x_agent_builder_free(b);

    Waiter w;
    waiter_init(&w);
    X0xOp *op = NULL, *op2 = NULL;
    CHECK_OK(x0x_agent_close(agent, on_done, &w, &op));
    CHECK_OK(x0x_agent_close(agent, NULL, NULL, &op2)); /* idempotent */
    x0x_agent_free(agent); /* safe while the closes are pending: they hold their own reference */

    CHECK(waiter_wait(&w, 10000) >= 1);
    X0xStatus st = -1, st2 = -1;
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &st, NULL));
    CHECK_OK(x0x_op_wait(op2, X0X_WAIT_FOREVER, &st2, NULL));
    CHECK(st == X0X_OK);
    CHECK(st2 == X0X_OK);
    CHECK(waiter_calls(&w) == 1);
    CHECK(w.status == X0X_OK);
    CHECK(w.result == NULL);
    CHECK(w.message_was_null);
    x0x_op_free(op);
    x0x_op_free(op2);
    waiter_destroy(&w);
}

static void check_status_str(void) {
    CHECK(strcmp(x0x_status_str(X0X_CORRUPT), "CORRUPT") == 0);
    CHECK(strcmp(x0x_status_str(X0X_OK), "OK") == 0);
    CHECK(strcmp(x0x_status_str(X0X_INVALID_ARGUMENT), "INVALID_ARGUMENT") == 0);
    CHECK(strcmp(x0x_status_str(X0X_CANCELLED), "CANCELLED") == 0);
    CHECK(strcmp(x0x_status_str(X0X_TIMEOUT), "TIMEOUT") == 0);
    CHECK(strcmp(x0x_status_str(X0X_PANIC), "PANIC") == 0);
    CHECK(strcmp(x0x_status_str(X0X_IN_USE), "IN_USE") == 0);
    CHECK(strcmp(x0x_status_str(X0X_REMOTE), "REMOTE") == 0);
    CHECK(strcmp(x0x_status_str(X0X_REMOTE + 1), "UNKNOWN") == 0);
    CHECK(strcmp(x0x_status_str(-1), "UNKNOWN") == 0);
}

/* Last: after x0x_shutdown no callback runs, but operations still settle. */
static void check_shutdown(void) {
    CHECK_OK(x0x_shutdown(5000));
    Waiter w;
    waiter_init(&w);
    X0xOp *op = NULL;
    CHECK_OK(x0x_sleep(0, on_done, &w, &op));
    X0xStatus st = -1;
    CHECK_OK(x0x_op_wait(op, X0X_WAIT_FOREVER, &st, NULL));
    CHECK(st == X0X_OK);
    CHECK(waiter_calls(&w) == 0);
    x0x_op_free(op);
    waiter_destroy(&w);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(check_version);
    RUN(check_build_ephemeral);
    RUN(check_build_default);
    RUN(check_build_callback);
    RUN(check_machine_key_persisted);
    RUN(check_machine_key_corrupt);
    RUN(check_machine_key_io_error);
    RUN(check_agent_key);
    RUN(check_agent_key_invalid);
    RUN(check_data_dir_in_use);
    RUN(check_agent_key_file);
    RUN(check_hex);
    RUN(check_null_arguments);
    RUN(check_strings);
    RUN(check_last_error_per_thread);
    RUN(check_free_null);
    RUN(check_cancel);
    RUN(check_cancel_race);
    RUN(check_free_pending_op);
    RUN(check_wait_timeout);
    RUN(check_agent_close);
    RUN(check_status_str);
    RUN(check_shutdown);
    printf("test_identity: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
