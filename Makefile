# The two commands the README promises:
#   make demo   set everything up (engine + models, cached) and run a real bakeoff on SmolLM2,
#               ending with a tune: the fastest faithful configuration and its evidence
#   make test   set everything up and run the whole test suite (what CI runs)

BAKEOFF := target/release/bakeoff
MODEL   := SmolLM2-135M-Instruct.Q4_1.gguf
GEMMA   := gemma-3-270m-q4_k_m.gguf

.PHONY: demo test snapshots setup second-build prereqs lint bench

prereqs:
	scripts/install-prereqs

setup: prereqs
	scripts/setup

# A second, older llama.cpp build for the tests that compare two real builds (not needed by demo).
second-build: prereqs
	scripts/setup --second-build

$(BAKEOFF): $(shell find crates -name '*.rs' -o -name Cargo.toml) Cargo.toml
	cargo build --release --locked

demo: setup $(BAKEOFF)
	$(BAKEOFF) doctor --bandwidth
	$(BAKEOFF) plan $(MODEL) --ctx 8192
	$(BAKEOFF) bench --model $(MODEL) --kv f16,q8_0,q4_0 -fa on -p 64 -n 32 -d 0,512 -r 5 --tag demo
	$(BAKEOFF) gate examples/kv-gate.toml --tag demo
	$(BAKEOFF) bench --model $(MODEL),$(GEMMA) -fa on -p 64 -n 32 -r 3 --tag shootout
	$(BAKEOFF) report shootout --shootout
	$(BAKEOFF) tune --model $(MODEL) --ctx 2048 --goal tg --budget 4m --tag demo --save demo --force \
		--only -ctk=f16,q8_0 --only -ctv=f16,q8_0,q4_0 --only -ub=128,512 --pin -b=2048 \
		--only -t=1,2 --pin spec=none --pin -lm=mmap

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

# INSTA_UPDATE=no: a snapshot that differs (or is missing) fails the suite, it is never written or
# accepted. After a deliberate output change, re-accept and review: `make snapshots`.
test: setup second-build lint
	INSTA_UPDATE=no cargo test --workspace --locked

snapshots: setup
	INSTA_UPDATE=always cargo test -p bakeoff-cli --locked --test suite -- snapshots:: load::
	git status --short crates/bakeoff-cli/tests/snapshots

bench: setup $(BAKEOFF)
	scripts/bench-client-vs-server
