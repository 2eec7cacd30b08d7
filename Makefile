# The two commands of the README:
#   make demo   -- build everything and run the main example (agents on loopback)
#   make test   -- build everything and run every check and test (Rust, C, Python)
# Each sets itself up: a virtualenv in .venv with the package installed (editable) and the
# development tools, and cargo builds of the Rust library.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.x0x-installed
RUST_SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock
PY_SOURCES := $(shell find python/x0x -name '*.py') build_ffi.py setup.py pyproject.toml
PY_CHECKED := python/x0x examples tests/python tests/netns bench scripts/api_md.py scripts/wheel_smoke.py build_ffi.py setup.py
# The build scripts drive untyped setuptools/cffi APIs; everything users import is strict.
# bench/line.py imports tests/netns/harness.py, so that module is also checked with bench.
MYPY_CHECKED := python/x0x examples tests/python bench tests/netns/harness.py scripts/api_md.py scripts/wheel_smoke.py

.PHONY: demo test lint test-rust test-c test-python test-pypy test-wheels wheels test-old-distro test-sdist test-reliability test-fuzz reliability simulate header docs bench bench-c bench-topics bench-line clean

$(STAMP): $(RUST_SOURCES) $(PY_SOURCES) include/x0x.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# Two agents exchange signed messages over QUIC on loopback.
demo: $(STAMP)
	$(PY) examples/pubsub_messaging.py

test: lint test-rust test-c test-c-installed test-python test-pypy wheels test-old-distro test-sdist test-reliability test-fuzz

lint: $(STAMP)
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	# Alone too: with the tests, the dev-dependency turns on `testing`, whose code uses items
	# the shipped library (no features) must not leave unused.
	cargo clippy --lib -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
	$(VENV)/bin/ruff check $(PY_CHECKED)
	$(VENV)/bin/ruff format --check $(PY_CHECKED)
	$(VENV)/bin/mypy $(MYPY_CHECKED)
	$(VENV)/bin/mypy tests/netns  # separately: it has its own conftest module
	$(PY) scripts/api_md.py --check
	$(VENV)/bin/interrogate python/x0x  # docstring coverage >= 95% ([tool.interrogate])

# Includes tests/header.rs: fails if include/x0x.h is not what cbindgen generates. The ignored
# test is the 90 s replay-after-cache-expiry check.
test-rust:
	cargo test --all-targets
	cargo test --test hostile -- --ignored

test-c:
	$(MAKE) -C tests/c test valgrind

# Coverage includes the CLI and helper processes the tests start; below 90% fails.
test-python: $(STAMP)
	$(PY) -m pytest --cov --cov-fail-under=90

# The whole Python suite on PyPy, and the PyPy half of `make wheels`. They need pypy3 (Debian:
# pypy3 pypy3-dev pypy3-venv); without it they are skipped with a message, unless
# X0X_REQUIRE_PYPY=1 (CI sets it) makes that an error.
define need_pypy
	@if ! command -v pypy3 >/dev/null; then 	  if [ -n "$$X0X_REQUIRE_PYPY" ]; then echo "pypy3 is required (X0X_REQUIRE_PYPY)" >&2; exit 1; fi; 	  echo "SKIPPED $@ ($(1)): pypy3 not installed (apt-get install pypy3 pypy3-dev pypy3-venv)"; exit 0; 	fi; $(1)
endef

test-pypy: $(STAMP)
	$(call need_pypy,scripts/test_pypy.sh)

# The CPython manylinux2014 wheel installs and works inside Debian 11 (debootstrap + chroot;
# root only).
test-old-distro: wheels
	scripts/test_old_distro.sh

# The sdist builds and installs in a fresh venv from its own files (the cargo target dir shared).
test-sdist:
	scripts/test_sdist.sh

# The PyPI wheels, manylinux2014_x86_64 (glibc 2.17 via zig, no Docker), into dist/: cp38-abi3
# and, with pypy3, ppXY-pypyXY_ppNN; each checked and smoke-tested in a fresh venv.
wheels:
	scripts/build_wheels.sh cpython
	$(call need_pypy,scripts/build_wheels.sh pypy)

# The smoke tests of the wheels in dist/ again, without rebuilding them (make wheels runs them).
test-wheels:
	scripts/test_wheels.sh dist/agent_x0x-*.whl

# Fuzzing: every network-reachable decoder and the C ABI's input parsing (fuzz/), each target
# for FUZZ_SECONDS after replaying fuzz/regressions (inputs that once crashed x0x). Installs
# cargo-fuzz on first use (it runs on the stable toolchain with RUSTC_BOOTSTRAP=1, see the script).
FUZZ_SECONDS ?= 15
test-fuzz:
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
	scripts/fuzz.sh $(FUZZ_SECONDS)

# Reliability under faults: agents in network namespaces, nftables loss and partitions, kill -9
# (tests/netns; needs root, ip and nft, else skipped). CI size in `make test`; full and strict:
reliability: $(STAMP)
	X0X_RELIABILITY_STRICT=1 X0X_RELIABILITY=full $(PY) -m pytest tests/netns -s -p no:cacheprovider -rxs
	X0X_RELIABILITY=full cargo test --release --test reliability -- --nocapture

# The simulator's figures at full size (README → Simulated networks); tests/simulator.rs runs
# CI sizes inside test-rust. The last run (10,000 agents) takes over 10 minutes and about 8 GiB
# for now: see the README.
SIM := target/release/x0x-sim
simulate:
	cargo build --release --bin x0x-sim
	for seed in $$(seq 1 20); do $(SIM) --agents 20 --publishers 3 --messages 100 --latency-ms 25..25 --loss 0.05 --seed $$seed 2>/dev/null; done
	$(SIM) --agents 1000 --publishers 10 --messages 50 --rate 5 --latency-ms 10..100 --loss 0.01 --seed 1
	$(SIM) --agents 1000 --publishers 10 --messages 50 --rate 5 --latency-ms 10..100 --loss 0.01 --seed 1 --kill 0.5 --at 4
	for kill in 0.8 0.9; do $(SIM) --agents 1000 --publishers 10 --messages 50 --rate 5 --latency-ms 10..100 --loss 0.01 --seed 1 --kill $$kill --at 4; done
	$(SIM) --agents 1000 --publishers 10 --messages 100 --rate 1 --latency-ms 10..100 --loss 0.01 --seed 1 --partition '1|1' --for 60 --at 5 --tasklist-holders 20
	$(SIM) --agents 100 --publishers 3 --messages 50 --latency-ms 10..100 --seed 1 --settle 1800
	$(SIM) --agents 10000 --publishers 10 --messages 10 --rate 1 --latency-ms 10..100 --loss 0.01 --seed 1
	for topics in 25 50 100 200; do $(SIM) --agents 1000 --publishers $$topics --messages 10 --rate 1 --latency-ms 10..100 --loss 0 --seed 1 --topics $$topics --subscribers 20 2>/dev/null; done
	$(SIM) --agents 1000 --publishers 100 --messages 10 --rate 1 --latency-ms 10..100 --loss 0 --seed 1 --topics 100 --subscribers 20 --hot 10@100
	$(SIM) --agents 10000 --publishers 1000 --messages 10 --rate 1 --latency-ms 10..100 --loss 0 --seed 1 --topics 1000 --subscribers 20 --hot 100@100

test-reliability: $(STAMP)
	$(PY) -m pytest tests/netns -s -p no:cacheprovider -rxs

# Regenerates API.md from the package's source (griffe; lint fails when it is stale) and builds
# the HTML reference of the same names with pdoc into build/docs (git-ignored).
docs: $(STAMP)
	$(PY) scripts/api_md.py
	rm -rf build/docs
	$(VENV)/bin/pdoc --output-directory build/docs x0x

# Regenerates include/x0x.h after a change to src/ffi.
header:
	X0X_BLESS=1 cargo test --test header

bench: $(STAMP) bench-c
	$(PY) bench/ffi_overhead.py
	$(PY) bench/pubsub.py
	$(PY) bench/tasklist_convergence.py

# The C publisher and subscriber of bench/pubsub.py ("x0x C"; it runs this target itself),
# linked against the shipped static library as tests/c/Makefile builds it (its `lib` target:
# cargo build --release --lib, then scripts/static_lib.sh into <cargo target dir>/release/dist).
BENCH_C := build/bench/pubsub_c
BENCH_C_LIB := $(abspath $(or $(CARGO_TARGET_DIR),target))/release/dist/libx0x.a
bench-c:
	$(MAKE) -C tests/c lib
	@$(MAKE) --no-print-directory $(BENCH_C)

$(BENCH_C): bench/pubsub_c.c include/x0x.h $(BENCH_C_LIB)
	mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror -pedantic -O2 -Iinclude -o $@ $< $(BENCH_C_LIB) \
	  -lpthread -ldl -lm -lrt -lutil

# What agents receive for topics they are not on, and N agent processes' idle cost and latency
# (bench/README.md). Not in `bench`: the scale runs start up to 50 agent processes.
bench-topics: $(STAMP)
	$(PY) bench/topics.py --scenario split
	$(PY) bench/topics.py --scenario scale

# Issue 18's line figure: x0x across a 5-agent line (a network namespace per agent, the middle
# three relay) against pyzmq one hop, in one run (bench/README.md). Not in `bench`: it needs
# root, ip and nft (network namespaces); without them it says why and exits 0.
bench-line: $(STAMP)
	$(PY) bench/line.py

clean:
	rm -rf build dist target $(VENV) .venv-wheels .venv-wheels-pypy python/x0x/_x0x_cffi.* tests/c/build examples/c/build

# make install [PREFIX=/usr/local] [DESTDIR=] [NO_BUILD=1]
#   builds the library (cargo build --release --lib; NO_BUILD=1 skips it) and installs
#   include/x0x.h, lib/libx0x.a, lib/libx0x.so and lib/pkgconfig/x0x.pc (scripts/install.sh).
# make test-c-installed
#   installs into a fresh build/prefix, checks the installed x0x.pc and header against
#   Cargo.toml's version, then builds examples/c with pkg-config and runs them (ASan+UBSan),
#   linked statically (libx0x.a) and then dynamically (libx0x.so).
.PHONY: install test-c-installed

install:
	PREFIX='$(or $(PREFIX),/usr/local)' DESTDIR='$(DESTDIR)' NO_BUILD='$(NO_BUILD)' scripts/install.sh

test-c-installed:
	rm -rf build/prefix
	PREFIX='$(CURDIR)/build/prefix' DESTDIR= NO_BUILD= scripts/install.sh
	@set -e; \
	export PKG_CONFIG_PATH='$(CURDIR)/build/prefix/lib/pkgconfig'; \
	command -v pkg-config >/dev/null || { echo "FAIL: pkg-config is not installed"; exit 1; }; \
	want=$$(cargo pkgid --manifest-path '$(CURDIR)/Cargo.toml' | sed 's/.*[#@:]//'); \
	prefix=$$(pkg-config --variable=prefix x0x); \
	pc=$$(pkg-config --modversion x0x); \
	hdr=$$(printf '#include <x0x.h>\n' | $(CC) $$(pkg-config --cflags x0x) -E -dM -x c - | \
	  awk '$$2 == "X0X_VERSION_MAJOR" { M = $$3 } $$2 == "X0X_VERSION_MINOR" { m = $$3 } \
	       $$2 == "X0X_VERSION_PATCH" { p = $$3 } END { print M "." m "." p }'); \
	echo "Cargo.toml version $$want; pkg-config: prefix $$prefix, version $$pc; x0x.h: $$hdr"; \
	[ "$$prefix" = '$(CURDIR)/build/prefix' ] || { echo "FAIL: pkg-config found another x0x.pc"; exit 1; }; \
	[ "$$pc" = "$$want" ] || { echo "FAIL: x0x.pc version $$pc != $$want"; exit 1; }; \
	[ "$$hdr" = "$$want" ] || { echo "FAIL: installed x0x.h X0X_VERSION_* $$hdr != $$want"; exit 1; }
	PKG_CONFIG_PATH='$(CURDIR)/build/prefix/lib/pkgconfig' $(MAKE) -C examples/c run SANITIZE=1
	PKG_CONFIG_PATH='$(CURDIR)/build/prefix/lib/pkgconfig' $(MAKE) -C examples/c run SANITIZE=1 LINK=shared
