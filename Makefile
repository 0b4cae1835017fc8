# txgate: the two set-up commands are `make run` and `make test`.
CARGO ?= cargo
CONFIG ?= gateway.toml

.PHONY: fuzz run test build check lint bench bench-2969 bench-callgrind fmt clean

## make run: build, then start the gateway with a simulated backend for every backend in gateway.toml
run:
	$(CARGO) build --release
	./target/release/txgate check --config $(CONFIG)
	./target/release/txgate serve --config $(CONFIG) --simulate

## make test: the whole test suite (unit, property and socket-level integration tests)
test:
	$(CARGO) build --all-targets
	$(CARGO) test --all-targets -- --test-threads=4
	./target/debug/txgate check --config $(CONFIG)

build:
	$(CARGO) build --release

check:
	$(CARGO) run --quiet -- check --config $(CONFIG)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## make bench: codec micro-benchmarks (criterion)
bench:
	$(CARGO) bench --bench codec

clean:
	$(CARGO) clean

## make bench-2969: catalog section D — 2969 from CUS to SCF: direct vs HAProxy vs txgate (as shipped, and tuned to multiplex), long and short
bench-2969:
	bash benches/bench-2969.sh

## make bench-callgrind: instruction counts of fixed body decode (repeatable on noisy machines)
bench-callgrind:
	bash benches/callgrind.sh

## make fuzz: cargo-fuzz targets (frame, header, fixed body, XML), each for a bounded time
fuzz:
	bash fuzz/run.sh
