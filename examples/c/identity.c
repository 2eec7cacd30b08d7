/*
 * identity.c: build an x0x agent and print who it is.
 *
 *   usage: identity [MACHINE_KEY_PATH]
 *
 * The machine key identifies this host and is kept in a file (created on first use, mode 0600),
 * so running this twice with the same path prints the same machine id. Without a path the key
 * goes to a fresh temporary directory that is removed again at the end.
 *
 * Build (from the repository root, after `cargo build --release --lib`):
 *   cc -std=c11 -Iinclude examples/c/identity.c target/release/libx0x.a \
 *      -lpthread -ldl -lm -lrt -lutil -o identity
 */
#define _XOPEN_SOURCE 700 /* for mkdtemp */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "x0x.h"

/* Prints an id as 64 hex digits. */
static void print_id(const char *label, const X0xId *id) {
    char hex[X0X_ID_HEX_LEN + 1]; /* + 1 for the NUL */
    if (x0x_id_to_hex(id, hex, sizeof hex) == X0X_OK) printf("%-11s %s\n", label, hex);
}

int main(int argc, char **argv) {
    int exit_code = 1;
    char tmp_dir[] = "/tmp/x0x-example-XXXXXX";
    char tmp_key[sizeof tmp_dir + 16] = "";
    const char *key_path;
    X0xAgentBuilder *builder = NULL;
    X0xAgent *agent = NULL;
    X0xOp *op = NULL;
    X0xStatus status = X0X_OK;

    /* A header/library mismatch would make everything below unreliable: check it first. */
    char header_version[32];
    snprintf(header_version, sizeof header_version, "%d.%d.%d", X0X_VERSION_MAJOR,
             X0X_VERSION_MINOR, X0X_VERSION_PATCH);
    if (strcmp(x0x_version(), header_version) != 0) {
        fprintf(stderr, "x0x.h is %s but the library is %s\n", header_version, x0x_version());
        return 1;
    }
    printf("x0x %s\n", x0x_version());

    if (argc > 1) {
        key_path = argv[1];
    } else {
        if (mkdtemp(tmp_dir) == NULL) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(tmp_key, sizeof tmp_key, "%s/machine.key", tmp_dir);
        key_path = tmp_key;
    }

    builder = x0x_agent_builder_new();
    if (builder == NULL) {
        fprintf(stderr, "x0x_agent_builder_new: %s\n", x0x_last_error_message());
        goto out;
    }
    /* Synchronous calls return a status; x0x_last_error_message() says why one failed. */
    if (x0x_agent_builder_with_machine_key(builder, key_path) != X0X_OK) {
        fprintf(stderr, "machine key path: %s\n", x0x_last_error_message());
        goto out;
    }

    /* Building reads or creates the key file, so it is asynchronous. With a NULL callback we
     * simply block on the operation; x0x_op_wait then hands us the result. */
    void *result = NULL;
    if (x0x_agent_builder_build(builder, NULL, NULL, &op) != X0X_OK ||
        x0x_op_wait(op, X0X_WAIT_FOREVER, &status, &result) != X0X_OK) {
        fprintf(stderr, "build: %s\n", x0x_last_error_message());
        goto out;
    }
    if (status != X0X_OK) {
        /* An async failure carries its own message, e.g. X0X_CORRUPT for a damaged key file. */
        fprintf(stderr, "build failed: %s: %s\n", x0x_status_str(status),
                x0x_op_error_message(op));
        goto out;
    }
    agent = result; /* we own it now: x0x_agent_free below */

    X0xId agent_id, machine_id; /* plain values: nothing to free */
    x0x_agent_agent_id(agent, &agent_id);
    x0x_agent_machine_id(agent, &machine_id);
    printf("machine key %s\n", key_path);
    print_id("agent id", &agent_id);
    print_id("machine id", &machine_id);

    /* Errors are caught by their status: a bootstrap peer needs "host:port". */
    status = x0x_agent_builder_with_bootstrap(builder, "bootstrap.example");
    if (status == X0X_INVALID_ARGUMENT) {
        printf("rejected bad bootstrap address as expected: %s: %s\n", x0x_status_str(status),
               x0x_last_error_message());
    } else {
        fprintf(stderr, "a bootstrap address without a port was accepted (%s)\n",
                x0x_status_str(status));
        goto out;
    }

    exit_code = 0;

out:
    /* Every *_free accepts NULL, so one cleanup path serves all exits. */
    x0x_op_free(op);
    op = NULL;
    /* Close before free: closing waits until the agent has left and its socket is closed;
     * freeing alone lets that happen in the background, maybe while the process exits. */
    if (agent != NULL) {
        if (x0x_agent_close(agent, NULL, NULL, &op) != X0X_OK ||
            x0x_op_wait(op, X0X_WAIT_FOREVER, &status, NULL) != X0X_OK) {
            fprintf(stderr, "close: %s\n", x0x_last_error_message());
            exit_code = 1;
        } else if (status != X0X_OK) {
            fprintf(stderr, "close: %s: %s\n", x0x_status_str(status), x0x_op_error_message(op));
            exit_code = 1;
        }
    }
    x0x_op_free(op);
    x0x_agent_free(agent);
    x0x_agent_builder_free(builder);
    if (tmp_key[0] != '\0') { /* only remove what we created */
        unlink(tmp_key);
        rmdir(tmp_dir);
    }
    return exit_code;
}
