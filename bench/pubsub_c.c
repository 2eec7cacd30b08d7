/*
 * pubsub_c.c: the C publisher and C subscriber of bench/pubsub.py ("x0x C"): the same phases,
 * message format and measurement as its Python x0x roles, with no Python in either process.
 *
 *   pubsub_c --role x0xc-sub|x0xc-pub --messages N --latency-samples N --gap-ms MS --size B
 *            [--connect ADDR]
 *
 * bench/pubsub.py starts it (`make bench-c` builds it into build/bench/pubsub_c) and drives it
 * over stdin/stdout with the line protocol of its Python roles: this process writes
 * `WORD {json}` lines (subscriber: ready, warm, throughput, latency; publisher: joined, sent,
 * sent), the parent answers with bare words (sent, throughput, latency, quit). Diagnostics go
 * to stderr; any failure exits with status 1.
 *
 * Both agents come from the default builder, as the README shows (this machine's key, an
 * ephemeral agent key, any port). The subscriber subscribes, joins as the first node and
 * reports `x0x_agent_local_addr`; the publisher bootstraps to that address.
 *
 * Message: kind byte ('W' warm-up, 'T' throughput, 'L' latency), u64 sequence number, i64 wall
 * clock ns at publish (all little-endian: Python's struct "<cQq"), zeros up to --size bytes.
 *
 * Publisher: `x0x_agent_publish` completes once the message is queued for the signer, which
 * happens inside the call unless the signer is 8,192 messages behind. So each op is polled
 * (`x0x_op_wait`, timeout 0) and freed; only an op still pending is waited for before the next
 * publish (the back-pressure; publishing past a pending op could reorder messages).
 *
 * Subscriber: one `x0x_subscription_next` (up to X0X_MAX_BATCH messages) at a time, reported to
 * a completion queue whose descriptor is polled together with stdin; after each batch,
 * `x0x_subscription_try_next` drains what else is waiting before the next is armed.
 *
 * CPU time per thread comes from /proc/self/task/STAR/schedstat, as in bench/pubsub.py; this
 * process's main thread is reported as "c-main".
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "x0x.h"

#define TOPIC "bench/pubsub"
#define HEADER_LEN 17 /* <cQq */
#define KIND_WARM 'W'
#define KIND_THROUGHPUT 'T'
#define KIND_LATENCY 'L'
#define WARM_INTERVAL_MS 10
#define SETUP_TIMEOUT_S 60.0
#define DRAIN_IDLE_S 2.0
#define EXIT_TIMEOUT_MS 15000
#define SUB_CAPACITY ((size_t)1 << 20)
#define MAX_THREAD_NAMES 64
#define RUNQ_WAIT "(runq wait)"
#define MAIN_THREAD "c-main"

/* ------------------------------------------------------------------ failures and clocks */

static const char *role_name = "pubsub_c";

/* Reports a failure on stderr (the parent shows it) and exits. */
static void die(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "%s: ", role_name);
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

/* A call that must start (or succeed, for synchronous ones). */
static void check(const char *what, X0xStatus status) {
    if (status != X0X_OK) {
        die("%s: %s: %s", what, x0x_status_str(status), x0x_last_error_message());
    }
}

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* time.time_ns(): the wall clock, in ns since the Unix epoch. */
static int64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

static void sleep_s(double seconds) {
    if (seconds <= 0) return;
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Blocks on an op started without a callback; returns its status, hands over its result (if
 * `result` is not NULL) and frees it. */
static X0xStatus finish(const char *what, X0xOp *op, uint32_t timeout_ms, void **result) {
    X0xStatus status = X0X_OK;
    X0xStatus waited = x0x_op_wait(op, timeout_ms, &status, result);
    if (waited != X0X_OK) {
        fprintf(stderr, "%s: %s: waiting failed: %s\n", role_name, what, x0x_status_str(waited));
        status = waited;
    } else if (status != X0X_OK) {
        fprintf(stderr, "%s: %s: %s: %s\n", role_name, what, x0x_status_str(status),
                x0x_op_error_message(op));
    }
    x0x_op_free(op);
    return status;
}

/* ------------------------------------------------------------------ JSON lines */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Text;

static void text_add(Text *t, const char *fmt, ...) {
    for (;;) {
        size_t room = t->cap - t->len;
        va_list args;
        va_start(args, fmt);
        int n = vsnprintf(t->data == NULL ? NULL : t->data + t->len, room, fmt, args);
        va_end(args);
        if (n < 0) die("formatting failed");
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap == 0 ? 4096 : t->cap;
        while (cap - t->len <= (size_t)n) cap *= 2;
        char *grown = realloc(t->data, cap);
        if (grown == NULL) die("out of memory");
        t->data = grown;
        t->cap = cap;
    }
}

/* A JSON number for a double (no NaN or infinity: they are not JSON). */
static void text_double(Text *t, const char *key, double value) {
    text_add(t, "\"%s\": %.9g", key, value == value && value - value == 0 ? value : 0.0);
}

/* One protocol line to the parent: `word {json}`. Frees the text. */
static void say(const char *word, Text *json) {
    printf("%s {%s}\n", word, json->data == NULL ? "" : json->data);
    fflush(stdout);
    free(json->data);
    json->data = NULL;
    json->len = json->cap = 0;
}

#define STATS_FIELDS(X)                                                                          \
    X(published) X(envelopes_signed) X(delivered) X(dropped_bad_signature)                       \
    X(dropped_wrong_sender) X(dropped_malformed) X(dropped_oversized) X(dropped_replay)           \
    X(queue_overflow) X(neighbours) X(bytes_in) X(bytes_out) X(envelopes_received) X(duplicates) \
    X(connections_refused) X(connections) X(identity_conflicts) X(foreign_envelopes_in)          \
    X(foreign_bytes_in) X(direct_out) X(direct_in) X(direct_refused) X(cards_rejected)

static X0xStats stats_of(const X0xAgent *agent) {
    X0xStats stats;
    check("stats", x0x_agent_stats(agent, &stats));
    return stats;
}

/* `"stats": {...}`: every counter's change since `before` (as bench/pubsub.py's agent.stats()
 * differences; the gauges are differences too). */
static void text_stats(Text *t, const X0xStats *before, const X0xStats *after) {
    text_add(t, "\"stats\": {");
    const char *sep = "";
#define STATS_ITEM(name)                                                                \
    text_add(t, "%s\"%s\": %" PRId64, sep, #name,                                       \
             (int64_t)after->name - (int64_t)before->name);                             \
    sep = ", ";
    STATS_FIELDS(STATS_ITEM)
#undef STATS_ITEM
    text_add(t, "}");
}

/* ------------------------------------------------------------------ CPU time by thread */

typedef struct {
    size_t count;
    char names[MAX_THREAD_NAMES][20];
    int64_t ns[MAX_THREAD_NAMES];
} ThreadCpu;

static void cpu_add(ThreadCpu *cpu, const char *name, int64_t ns) {
    for (size_t i = 0; i < cpu->count; i++) {
        if (strcmp(cpu->names[i], name) == 0) {
            cpu->ns[i] += ns;
            return;
        }
    }
    if (cpu->count == MAX_THREAD_NAMES) return;
    char *copy = cpu->names[cpu->count];
    snprintf(copy, sizeof cpu->names[0], "%s", name);
    for (char *c = copy; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '_'; /* JSON-safe */
    }
    cpu->ns[cpu->count++] = ns;
}

static int64_t cpu_get(const ThreadCpu *cpu, const char *name) {
    for (size_t i = 0; i < cpu->count; i++) {
        if (strcmp(cpu->names[i], name) == 0) return cpu->ns[i];
    }
    return 0;
}

/* CPU time so far of this process's threads, summed by thread name, and under RUNQ_WAIT the
 * time they were runnable but waited for a CPU (Linux; empty elsewhere). */
static ThreadCpu thread_cpu(void) {
    ThreadCpu cpu;
    cpu.count = 0;
    DIR *dir = opendir("/proc/self/task");
    if (dir == NULL) return cpu;
    long self = (long)getpid();
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        char *end = NULL;
        long tid = strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0') continue; /* "." and ".." */
        char path[64];
        char name[32] = "";
        unsigned long long on_cpu = 0, waiting = 0;
        snprintf(path, sizeof path, "/proc/self/task/%ld/comm", tid);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue; /* the thread just exited */
        bool named = fgets(name, sizeof name, f) != NULL;
        fclose(f);
        snprintf(path, sizeof path, "/proc/self/task/%ld/schedstat", tid);
        f = fopen(path, "r");
        if (f == NULL) continue;
        bool timed = fscanf(f, "%llu %llu", &on_cpu, &waiting) == 2;
        fclose(f);
        if (!named || !timed) continue;
        name[strcspn(name, "\n")] = '\0';
        cpu_add(&cpu, tid == self ? MAIN_THREAD : name,
                (int64_t)on_cpu);
        cpu_add(&cpu, RUNQ_WAIT, (int64_t)waiting);
    }
    closedir(dir);
    return cpu;
}

/* `"key": {"thread": ns, ...}`: CPU time since `before`. */
static void text_cpu_since(Text *t, const char *key, const ThreadCpu *before) {
    ThreadCpu after = thread_cpu();
    text_add(t, "\"%s\": {", key);
    for (size_t i = 0; i < after.count; i++) {
        text_add(t, "%s\"%s\": %" PRId64, i ? ", " : "", after.names[i],
                 after.ns[i] - cpu_get(before, after.names[i]));
    }
    text_add(t, "}");
}

/* ------------------------------------------------------------------ the parent's words */

static char line_buf[256];
static size_t line_len;

/* Reads what stdin has (call when it is readable); dies once the parent has gone. */
static void read_stdin(void) {
    if (line_len == sizeof line_buf) die("an overlong line from the parent");
    ssize_t n = read(STDIN_FILENO, line_buf + line_len, sizeof line_buf - line_len);
    if (n == 0) die("the parent went away");
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) return;
        die("reading stdin: %s", strerror(errno));
    }
    line_len += (size_t)n;
}

/* If a whole line has arrived: checks it is `word` and consumes it. */
static bool take_word(const char *word) {
    char *end = memchr(line_buf, '\n', line_len);
    if (end == NULL) return false;
    size_t len = (size_t)(end - line_buf);
    if (len != strlen(word) || memcmp(line_buf, word, len) != 0) {
        die("expected '%s' from the parent, got '%.*s'", word, (int)len, line_buf);
    }
    line_len -= len + 1;
    memmove(line_buf, end + 1, line_len);
    return true;
}

static int poll_ms(double seconds) {
    if (seconds <= 0) return 0;
    return seconds > 3600 ? 3600000 : (int)(seconds * 1000) + 1;
}

/* ------------------------------------------------------------------ arguments */

typedef struct {
    const char *role;
    long messages;
    long samples;
    double gap_ms;
    long size;
    const char *connect;
} Args;

static Args parse_args(int argc, char **argv) {
    Args a = {NULL, 100000, 2000, 1.0, 256, NULL};
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (i + 1 >= argc) die("%s needs a value", flag);
        const char *value = argv[++i];
        char *end = NULL;
        if (strcmp(flag, "--role") == 0) {
            a.role = value;
        } else if (strcmp(flag, "--connect") == 0) {
            a.connect = value;
        } else if (strcmp(flag, "--gap-ms") == 0) {
            a.gap_ms = strtod(value, &end);
        } else {
            long n = strtol(value, &end, 10);
            if (strcmp(flag, "--messages") == 0) {
                a.messages = n;
            } else if (strcmp(flag, "--latency-samples") == 0) {
                a.samples = n;
            } else if (strcmp(flag, "--size") == 0) {
                a.size = n;
            } else {
                die("unknown argument %s", flag);
            }
        }
        if (end != NULL && (*end != '\0' || end == value)) die("%s: not a number: %s", flag, value);
    }
    if (a.role == NULL) die("--role is required");
    role_name = a.role;
    if (a.messages < 1 || a.samples < 1 || a.gap_ms < 0) die("bad --messages/--latency-samples/--gap-ms");
    if (a.size < HEADER_LEN || a.size > X0X_MAX_PAYLOAD_LEN) die("--size out of range");
    return a;
}

/* bench/pubsub.py's phase_timeout: the throughput phase at 2,000 msg/s, the latency phase at
 * 5x its nominal length. */
static double phase_timeout(const Args *a) {
    return SETUP_TIMEOUT_S + (double)a->messages / 2000 + (double)a->samples * a->gap_ms / 200;
}

/* ------------------------------------------------------------------ agents */

static X0xAgent *build_agent(const char *bootstrap) {
    X0xAgentBuilder *builder = x0x_agent_builder_new();
    if (builder == NULL) die("builder: %s", x0x_last_error_message());
    if (bootstrap != NULL) check("bootstrap", x0x_agent_builder_with_bootstrap(builder, bootstrap));
    X0xOp *op = NULL;
    check("build", x0x_agent_builder_build(builder, NULL, NULL, &op));
    x0x_agent_builder_free(builder);
    void *agent = NULL;
    if (finish("build", op, (uint32_t)(SETUP_TIMEOUT_S * 1000), &agent) != X0X_OK) exit(1);
    return agent;
}

static void join(X0xAgent *agent) {
    X0xOp *op = NULL;
    uint32_t timeout_ms = (uint32_t)(SETUP_TIMEOUT_S * 1000);
    check("join", x0x_agent_join_network(agent, timeout_ms, NULL, NULL, &op));
    if (finish("join", op, timeout_ms + 5000, NULL) != X0X_OK) exit(1);
}

/* Closes (waiting for it), then frees. */
static int close_agent(X0xAgent *agent) {
    X0xOp *op = NULL;
    int failed = x0x_agent_close(agent, NULL, NULL, &op) != X0X_OK ||
                 finish("close", op, EXIT_TIMEOUT_MS, NULL) != X0X_OK;
    x0x_agent_free(agent);
    return failed;
}

static void put_header(uint8_t *buf, char kind, uint64_t seq, int64_t ns) {
    buf[0] = (uint8_t)kind;
    for (int i = 0; i < 8; i++) buf[1 + i] = (uint8_t)(seq >> (8 * i));
    uint64_t t = (uint64_t)ns;
    for (int i = 0; i < 8; i++) buf[9 + i] = (uint8_t)(t >> (8 * i));
}

/* ------------------------------------------------------------------ subscriber */

typedef struct {
    const Args *args;
    X0xSubscription *sub;
    X0xCompletionQueue *queue;
    int queue_fd;
    X0xOp *next; /* the outstanding x0x_subscription_next */
    bool warm;
    uint64_t count, duplicates, reordered, next_seq, batches;
    uint8_t *seen;
    double first, last, active; /* monotonic s: first/last throughput message, last of any */
    int64_t *latencies;
    uint8_t *latency_seen;
    uint64_t latency_count;
} Receiver;

static void arm(Receiver *rx) {
    check("subscription next", x0x_subscription_next(rx->sub, X0X_MAX_BATCH, NULL, NULL, &rx->next));
    check("then queue", x0x_op_then_queue(rx->next, rx->queue, 1));
}

static void on_batch(Receiver *rx, X0xMessageBatch *batch) {
    double now = monotonic_s();
    int64_t now_ns = wall_ns(); /* the batch's messages were handed over together */
    size_t n = x0x_message_batch_len(batch);
    rx->batches++;
    rx->active = now;
    for (size_t i = 0; i < n; i++) {
        const X0xMessage *m = x0x_message_batch_get(batch, i);
        if (m->payload_len < HEADER_LEN) die("a message of %zu bytes", m->payload_len);
        const uint8_t *p = m->payload;
        uint64_t seq = 0, sent = 0;
        for (int b = 7; b >= 0; b--) seq = (seq << 8) | p[1 + b];
        for (int b = 7; b >= 0; b--) sent = (sent << 8) | p[9 + b];
        switch (p[0]) {
            case KIND_THROUGHPUT:
                if (seq >= (uint64_t)rx->args->messages) die("sequence %" PRIu64 " out of range", seq);
                if (rx->count == 0) rx->first = now;
                rx->last = now;
                if (rx->seen[seq]) {
                    rx->duplicates++;
                    break;
                }
                rx->seen[seq] = 1;
                rx->count++;
                if (seq < rx->next_seq) rx->reordered++;
                rx->next_seq = seq + 1;
                break;
            case KIND_LATENCY:
                if (seq >= (uint64_t)rx->args->samples) die("sample %" PRIu64 " out of range", seq);
                if (!rx->latency_seen[seq]) {
                    rx->latency_seen[seq] = 1;
                    rx->latencies[rx->latency_count++] = now_ns - (int64_t)sent;
                }
                break;
            case KIND_WARM:
                rx->warm = true;
                break;
            default:
                die("a message of unknown kind %d", p[0]);
        }
    }
    x0x_message_batch_free(batch);
}

/* Waits up to `seconds` for stdin or messages; takes every message that is waiting. */
static void pump(Receiver *rx, double seconds) {
    struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {rx->queue_fd, POLLIN, 0}};
    int ready = poll(fds, 2, poll_ms(seconds));
    if (ready < 0) {
        if (errno == EINTR) return;
        die("poll: %s", strerror(errno));
    }
    if (fds[0].revents) read_stdin();
    if (!fds[1].revents) return;
    uint64_t token;
    size_t taken = 0;
    check("queue take", x0x_completion_queue_take(rx->queue, &token, 1, &taken));
    if (taken == 0) return;
    X0xStatus status = X0X_OK;
    void *result = NULL;
    check("wait", x0x_op_wait(rx->next, 0, &status, &result));
    if (status != X0X_OK) die("receive: %s: %s", x0x_status_str(status), x0x_op_error_message(rx->next));
    x0x_op_free(rx->next);
    rx->next = NULL;
    on_batch(rx, result);
    /* What else has arrived meanwhile, without a wake-up per batch. */
    for (;;) {
        X0xMessageBatch *batch = NULL;
        check("try_next", x0x_subscription_try_next(rx->sub, X0X_MAX_BATCH, &batch));
        if (batch == NULL) break;
        on_batch(rx, batch);
    }
    arm(rx);
}

static void expect_word_rx(Receiver *rx, const char *word, double timeout) {
    double deadline = monotonic_s() + timeout;
    while (!take_word(word)) {
        double left = deadline - monotonic_s();
        if (left <= 0) die("no '%s' from the parent within %.0f s", word, timeout);
        pump(rx, left);
    }
}

/* Returns once `*have >= want` or nothing arrived for DRAIN_IDLE_S (bounded by max_wait). */
static void settle(Receiver *rx, const uint64_t *have, uint64_t want, double max_wait) {
    double start = monotonic_s();
    while (*have < want) {
        double now = monotonic_s();
        double since = now - (rx->active > start ? rx->active : start);
        if (since > DRAIN_IDLE_S || now - start > max_wait) return;
        pump(rx, DRAIN_IDLE_S - since);
    }
}

static int run_subscriber(const Args *args) {
    double timeout = phase_timeout(args);
    Receiver rx;
    memset(&rx, 0, sizeof rx);
    rx.args = args;
    rx.seen = calloc((size_t)args->messages, 1);
    rx.latencies = calloc((size_t)args->samples, sizeof *rx.latencies);
    rx.latency_seen = calloc((size_t)args->samples, 1);
    if (rx.seen == NULL || rx.latencies == NULL || rx.latency_seen == NULL) die("out of memory");

    X0xAgent *agent = build_agent(NULL);
    check("subscribe", x0x_agent_subscribe(agent, TOPIC, SUB_CAPACITY, &rx.sub));
    join(agent);
    char address[X0X_ADDR_STR_LEN];
    check("local address", x0x_agent_local_addr(agent, address, sizeof address));
    check("queue", x0x_completion_queue_new(&rx.queue));
    int32_t fd = -1;
    check("queue fd", x0x_completion_queue_fd(rx.queue, &fd));
    rx.queue_fd = fd;
    arm(&rx);

    Text out = {NULL, 0, 0};
    text_add(&out, "\"address\": \"%s\"", address);
    say("ready", &out);
    double deadline = monotonic_s() + SETUP_TIMEOUT_S;
    while (!rx.warm) {
        double left = deadline - monotonic_s();
        if (left <= 0) die("no warm-up message arrived");
        pump(&rx, left);
    }
    X0xStats before = stats_of(agent);
    ThreadCpu cpu = thread_cpu();
    uint64_t batches = rx.batches;
    say("warm", &out);

    expect_word_rx(&rx, "sent", timeout);
    settle(&rx, &rx.count, (uint64_t)args->messages, timeout);
    uint64_t dropped = 0;
    check("dropped", x0x_subscription_dropped(rx.sub, &dropped));
    double span = rx.count > 1 ? rx.last - rx.first : 0.0;
    text_add(&out, "\"received\": %" PRIu64 ", \"lost\": %" PRId64 ", \"duplicates\": %" PRIu64
                   ", \"reordered\": %" PRIu64 ", ",
             rx.count, (int64_t)args->messages - (int64_t)rx.count, rx.duplicates, rx.reordered);
    text_double(&out, "seconds", span);
    text_add(&out, ", ");
    text_double(&out, "rate", span > 0 ? (double)(rx.count - 1) / span : 0.0);
    text_add(&out, ", \"batches\": %" PRIu64 ", ", rx.batches - batches);
    text_cpu_since(&out, "cpu", &cpu);
    text_add(&out, ", \"dropped\": %" PRIu64 ", ", dropped);
    X0xStats after = stats_of(agent);
    text_stats(&out, &before, &after);
    say("throughput", &out);

    cpu = thread_cpu();
    expect_word_rx(&rx, "sent", timeout);
    settle(&rx, &rx.latency_count, (uint64_t)args->samples, timeout);
    text_add(&out, "\"received\": %" PRIu64 ", \"ns\": [", rx.latency_count);
    for (uint64_t i = 0; i < rx.latency_count; i++) {
        text_add(&out, "%s%" PRId64, i ? ", " : "", rx.latencies[i]);
    }
    text_add(&out, "], ");
    text_cpu_since(&out, "cpu", &cpu);
    say("latency", &out);
    expect_word_rx(&rx, "quit", timeout);

    /* The outstanding receive ends with X0X_CANCELLED; then everything is released. */
    x0x_op_cancel(rx.next);
    X0xStatus status = X0X_OK;
    void *result = NULL;
    if (x0x_op_wait(rx.next, EXIT_TIMEOUT_MS, &status, &result) != X0X_OK) die("receive did not stop");
    x0x_message_batch_free(result); /* a batch if it settled before the cancel */
    x0x_op_free(rx.next);
    x0x_subscription_free(rx.sub);
    x0x_completion_queue_free(rx.queue);
    int failed = close_agent(agent);
    free(rx.seen);
    free(rx.latencies);
    free(rx.latency_seen);
    return failed;
}

/* ------------------------------------------------------------------ publisher */

static void expect_word(const char *word, double timeout) {
    double deadline = monotonic_s() + timeout;
    while (!take_word(word)) {
        double left = deadline - monotonic_s();
        if (left <= 0) die("no '%s' from the parent within %.0f s", word, timeout);
        struct pollfd fds[1] = {{STDIN_FILENO, POLLIN, 0}};
        int ready = poll(fds, 1, poll_ms(left));
        if (ready < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        if (ready > 0) read_stdin();
    }
}

/* Publishes that had to wait for the signer, and how long they waited in all. */
static uint64_t blocked;
static double blocked_s;

/* Publishes one message. The op almost always settles inside the call (the message is queued
 * for the signer); one that is still pending means the signer is far behind: wait for it. */
static void publish(const X0xAgent *agent, const uint8_t *data, size_t len) {
    X0xOp *op = NULL;
    check("publish", x0x_agent_publish(agent, TOPIC, data, len, NULL, NULL, &op));
    X0xStatus status = X0X_OK;
    X0xStatus waited = x0x_op_wait(op, 0, &status, NULL);
    if (waited == X0X_TIMEOUT) {
        double start = monotonic_s();
        waited = x0x_op_wait(op, X0X_WAIT_FOREVER, &status, NULL);
        blocked++;
        blocked_s += monotonic_s() - start;
    }
    if (waited != X0X_OK || status != X0X_OK) {
        die("publish: %s: %s", x0x_status_str(waited != X0X_OK ? waited : status),
            x0x_op_error_message(op));
    }
    x0x_op_free(op);
}

static int run_publisher(const Args *args) {
    if (args->connect == NULL) die("--connect is required");
    double timeout = phase_timeout(args);
    size_t size = (size_t)args->size;
    uint8_t *buf = calloc(size, 1);
    if (buf == NULL) die("out of memory");
    X0xAgent *agent = build_agent(args->connect);
    join(agent);
    Text out = {NULL, 0, 0};
    say("joined", &out);

    /* Warm-up: one message every WARM_INTERVAL_MS until the parent says "throughput". */
    double deadline = monotonic_s() + SETUP_TIMEOUT_S;
    for (uint64_t seq = 0; !take_word("throughput"); seq++) {
        if (monotonic_s() > deadline) die("no 'throughput' from the parent");
        put_header(buf, KIND_WARM, seq, wall_ns());
        publish(agent, buf, size);
        struct pollfd fds[1] = {{STDIN_FILENO, POLLIN, 0}};
        int ready = poll(fds, 1, WARM_INTERVAL_MS);
        if (ready < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        if (ready > 0) read_stdin();
    }

    X0xStats before = stats_of(agent);
    ThreadCpu cpu = thread_cpu();
    blocked = 0;
    blocked_s = 0;
    double start = monotonic_s();
    for (long seq = 0; seq < args->messages; seq++) {
        put_header(buf, KIND_THROUGHPUT, (uint64_t)seq, wall_ns());
        publish(agent, buf, size);
    }
    double elapsed = monotonic_s() - start;
    /* publish returns once a message is queued for the signer: also time the signing. */
    double signed_deadline = monotonic_s() + timeout;
    X0xStats after = stats_of(agent);
    while (after.published - before.published < (uint64_t)args->messages) {
        if (monotonic_s() > signed_deadline) die("the signer did not catch up");
        sleep_s(0.001);
        after = stats_of(agent);
    }
    double signed_seconds = monotonic_s() - start;
    text_double(&out, "seconds", elapsed);
    text_add(&out, ", ");
    text_double(&out, "rate", (double)args->messages / elapsed);
    text_add(&out, ", ");
    text_double(&out, "signed_seconds", signed_seconds);
    text_add(&out, ", \"blocked\": %" PRIu64 ", ", blocked);
    text_double(&out, "blocked_seconds", blocked_s);
    text_add(&out, ", ");
    text_stats(&out, &before, &after);
    say("sent", &out);

    expect_word("latency", timeout);
    /* The subscriber has everything by now: nothing is left to send. */
    Text tp_cpu = {NULL, 0, 0};
    text_cpu_since(&tp_cpu, "throughput_cpu", &cpu);
    cpu = thread_cpu();
    for (long seq = 0; seq < args->samples; seq++) {
        put_header(buf, KIND_LATENCY, (uint64_t)seq, wall_ns());
        publish(agent, buf, size);
        sleep_s(args->gap_ms / 1000);
    }
    sleep_s(0.05); /* the last message leaves */
    text_cpu_since(&out, "cpu", &cpu);
    text_add(&out, ", %s", tp_cpu.data);
    free(tp_cpu.data);
    say("sent", &out);
    expect_word("quit", timeout);
    int failed = close_agent(agent);
    free(buf);
    return failed;
}

int main(int argc, char **argv) {
    Args args = parse_args(argc, argv);
    size_t len = strlen(args.role);
    if (len > 4 && strcmp(args.role + len - 4, "-sub") == 0) return run_subscriber(&args);
    if (len > 4 && strcmp(args.role + len - 4, "-pub") == 0) return run_publisher(&args);
    die("--role must end in -sub or -pub");
    return 1;
}
