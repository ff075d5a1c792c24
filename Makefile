# The two commands the README promises:
#   make demo   set everything up (engine + models, cached) and run a real bakeoff on SmolLM2
#   make test   set everything up and run the whole test suite (what CI runs)

BAKEOFF := target/release/bakeoff
MODEL   := SmolLM2-135M-Instruct.Q4_1.gguf

.PHONY: demo test setup prereqs lint bench

prereqs:
	scripts/install-prereqs

setup: prereqs
	scripts/setup

$(BAKEOFF): $(shell find crates -name '*.rs' -o -name Cargo.toml) Cargo.toml
	cargo build --release --locked

demo: setup $(BAKEOFF)
	$(BAKEOFF) doctor
	$(BAKEOFF) bench --model $(MODEL) -ctk f16,q8_0 -ctv f16,q8_0 -fa on -p 64 -n 32 -r 3 --tag demo
	$(BAKEOFF) runs show demo

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

test: setup lint
	cargo test --workspace --locked

bench: setup $(BAKEOFF)
	scripts/bench-client-vs-server
