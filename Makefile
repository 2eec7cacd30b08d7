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
PY_CHECKED := python/x0x examples tests/python bench build_ffi.py setup.py
# The build scripts drive untyped setuptools/cffi APIs; everything users import is strict.
MYPY_CHECKED := python/x0x examples tests/python bench

.PHONY: demo test lint test-rust test-c test-python header bench clean

$(STAMP): $(RUST_SOURCES) $(PY_SOURCES) include/x0x.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# Two agents exchange signed messages over QUIC on loopback.
demo: $(STAMP)
	$(PY) examples/pubsub_messaging.py

test: lint test-rust test-c test-python

lint: $(STAMP)
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check $(PY_CHECKED)
	$(VENV)/bin/ruff format --check $(PY_CHECKED)
	$(VENV)/bin/mypy $(MYPY_CHECKED)

# Includes tests/header.rs: fails if include/x0x.h is not what cbindgen generates. The ignored
# test is the 90 s replay-after-cache-expiry check.
test-rust:
	cargo test --all-targets
	cargo test --test hostile -- --ignored

test-c:
	$(MAKE) -C tests/c test valgrind

test-python: $(STAMP)
	$(PY) -m pytest

# Regenerates include/x0x.h after a change to src/ffi.
header:
	X0X_BLESS=1 cargo test --test header

bench: $(STAMP)
	$(PY) bench/ffi_overhead.py
	$(PY) bench/pubsub.py
	$(PY) bench/tasklist_convergence.py

clean:
	rm -rf build dist target $(VENV) python/x0x/_x0x_cffi.* tests/c/build
