# ringloom: `make demo` runs the main job, `make test` runs every test.
# Both work on a fresh machine with the Rust toolchain and Python 3 with venv and pip:
# Python packages come from PyPI into a local .venv, valgrind and redis-server from the
# distribution.

CARGO ?= cargo
SHELL := /bin/bash

.PHONY: demo demo-rust test test-rust test-fallback test-valgrind test-asan test-python redis-server lint clean

# The main job: unmodified `requests` from 10,000 virtual threads against a loopback
# server, then 2,000 files hashed in virtual threads (python/ringloom/demo.py). Same venv
# and variables as test-python (defined below; recipes expand them when they run).
demo:
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q maturin greenlet requests
	$(VENV)/bin/maturin develop -q --release
	$(VENV)/bin/python -m ringloom demo

# The Rust runtime alone: an echo server and 1,000 client connections over loopback.
demo-rust:
	$(CARGO) run --release --example echo -- 1000 5

# The whole suite: Rust and Python, each in both drivers, plus the cancellation test
# under valgrind.
test: lint test-rust test-fallback test-valgrind test-python

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

test-rust:
	$(CARGO) test --workspace

test-fallback:
	RINGLOOM_DRIVER=fallback $(CARGO) test --workspace

# valgrind cannot see what the kernel writes, but it does see every userspace read,
# write and free around cancelled ops (the Ignored lifecycle, discards, fd closing).
# It runs the fallback driver: valgrind 3.19 holds its global lock across io_uring_enter,
# so a program that waits in the ring never gets its other threads run under it (seen
# here: even the smoke test stalls at 0% CPU).
test-valgrind:
	@command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
	$(CARGO) test --test cancel --no-run
	@bin=$$($(CARGO) test --test cancel --no-run --message-format=json 2>/dev/null \
	    | grep -o '"executable":"[^"]*cancel-[^"]*"' | tail -1 | cut -d'"' -f4); \
	echo "valgrind $$bin"; \
	RINGLOOM_DRIVER=fallback valgrind --error-exitcode=9 --quiet "$$bin"

# Optional, where a nightly toolchain exists (not part of `make test`: a fresh machine has
# only stable). Unlike valgrind it runs the io_uring driver too.
test-asan:
	RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR=target/asan \
	    $(CARGO) +nightly test --target x86_64-unknown-linux-gnu --test cancel --test net --test scheduler --test fs

# The Python layer (virtual threads as greenlets on ringloom workers), in a local venv,
# in both drivers. tests/test_redis.py starts and stops its own redis-server (a free
# loopback port, no persistence); RINGLOOM_REQUIRE_REDIS=1 makes a missing one a
# failure, not a skip.
PYTHON ?= python3
VENV ?= .venv
PYTEST = RINGLOOM_REQUIRE_REDIS=1 RINGLOOM_REQUIRE_DASK=1 $(VENV)/bin/python -m pytest -q --durations=10 tests
test-python: redis-server
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q maturin greenlet pytest requests redis ruff distributed
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/maturin develop -q --release
	$(PYTEST)
	RINGLOOM_DRIVER=fallback $(PYTEST)

# The redis-server binary, from the distribution's packages if it is missing (the
# package's own service is not used).
redis-server:
	@command -v redis-server >/dev/null || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

clean:
	$(CARGO) clean

# Benchmarks (issue 5): every workload through ringloom and its peers in one run,
# interleaved; writes benches/RESULTS.md, benches/charts/*.png and the README's headline
# table. The suites install their peers (pip, cargo, apt) themselves.
.PHONY: bench bench-quick bench-setup
# The peers' Rust build (about a minute) runs beside the venv and pip, which mostly wait
# on the network; the rust suite builds again (a no-op then) and reports any failure.
bench-setup:
	@(cd benches/rust && $(CARGO) build --release --quiet 2>/dev/null) & build=$$!; \
	{ test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV); } && \
	$(VENV)/bin/pip install -q maturin greenlet requests matplotlib gevent uvloop && \
	$(VENV)/bin/maturin develop -q --release; status=$$?; wait $$build; exit $$status

bench: bench-setup
	$(VENV)/bin/python benches/run.py

bench-quick: bench-setup
	$(VENV)/bin/python benches/run.py --quick
