/*
 * libx0x.a links next to other static code that defines the names a Rust or BLAKE3 static
 * library exports. Cargo's staticlib made ~14,000 symbols global (Rust's std, blake3_*, aws-lc,
 * rust_eh_personality), so this program failed to link ("multiple definition of ..."); the
 * libx0x.a the tests use and `make install` ships (scripts/static_lib.sh) exports only x0x_*.
 */
#define _XOPEN_SOURCE 700

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TEST_NAME "test_symbols"
#include "check.h"

/* Names of the kind another Rust or BLAKE3 library defines; not theirs, and not x0x's. */
int blake3_hash_many_sse2(int x);
int blake3_hash_many_sse2(int x) { return x + 1; }
void rust_eh_personality(void);
void rust_eh_personality(void) {}

/* Both definitions are ours, and x0x still works: it uses its own (now private) ones. */
static void check_both_links_work(void) {
    CHECK(blake3_hash_many_sse2(1) == 2);
    rust_eh_personality();
    X0xBytes key;
    memset(&key, 0, sizeof key);
    CHECK_OK(x0x_agent_key_generate(&key));
    CHECK(key.len == X0X_KEYPAIR_LEN);
    x0x_bytes_free(&key);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(check_both_links_work);
    printf("%s: %d passed, %d failed\n", TEST_NAME, g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
