# Stagehand's build, test and local-run entry points.
#
#   make tools     build the pinned tools the tests and `make dev` need (bin/)
#   make test-unit the fast tier: every unit test, nothing built (go test -short)
#   make test      vet + race-enabled tests, with a pass/fail summary
#   make dev       the local patch demo: Temporal dev server + UI, worker, local
#                  Kubernetes control plane, real Backstage backend, git remote
#                  with a PR branch, CI+Flux stand-in; starts a patch run
#   make dev-down  stop everything make dev started
#   make help      list targets
#
# Extending: other parts of the tree hook in without editing this file by
# dropping a make fragment into scripts/ named *.mk (e.g. scripts/kube-tools.mk)
# that adds prerequisites, for example
#
#   tools: kube-tools
#   TEST_PREREQS += kube-tools
#
# GNU make merges the prerequisites of rules for the same target, so `tools`
# then builds both the Temporal CLI and the kube binaries.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

GO ?= go
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

# The Temporal CLI pinned for the dev server. v1.9.x does not `go install`
# (its go.mod has a replace directive); v1.5.1 does and bundles server 1.29.1
# with a UI whose Start Workflow button works in the dev server.
TEMPORAL_CLI_VERSION := v1.5.1
TEMPORAL := $(BIN)/temporal

# Prerequisites of `make test` besides `tools`; fragments may append.
TEST_PREREQS ?=
# Flags for `go test`; the race detector stays on (workers are concurrent).
GO_TEST_FLAGS ?= -race -count=1 -timeout 30m
# Packages to vet and test; narrow it while iterating, e.g.
# make test TEST_PACKAGES=./internal/...
TEST_PACKAGES ?= ./...

-include $(sort $(wildcard scripts/*.mk))

.PHONY: help
help: ## list targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf "  %-14s %s\n" "<name>" "build tools/<name> into bin/<name>: $(GO_TOOLS)"

.PHONY: tools
tools: temporal-cli ## build every pinned tool into bin/ (extend with `tools: <target>`)

.PHONY: temporal-cli
temporal-cli: ## build the pinned Temporal CLI into bin/temporal (skipped when present)
	@scripts/build-temporal.sh $(TEMPORAL_CLI_VERSION) $(BIN)

.PHONY: build
build: ## build bin/stagehand-worker and bin/stagehand
	$(GO) build -o $(BIN)/stagehand-worker ./worker
	$(GO) build -o $(BIN)/stagehand ./starter

# Every other program is tools/<name>/ and builds bin/<name> with
# `make <name>` (e.g. make stagehand-podsim, make testsummary). Go builds
# are cached, so the targets always run and never leave a stale binary.
# tools/kube and tools/backstage have no main.go here: their own targets
# (kube-tools, backstage-tools) build them.
GO_TOOLS := $(sort $(patsubst tools/%/main.go,%,$(wildcard tools/*/main.go)))
.PHONY: $(GO_TOOLS)
$(GO_TOOLS):
	$(GO) build -o $(BIN)/$@ ./tools/$@

.PHONY: vet
vet: ## go vet every package
	$(GO) vet ./...

# The summariser prints failing tests with their output and a final
# "N passed, N failed, N skipped" line, and exits non-zero on any failure
# (including build failures, which have no test events of their own).
.PHONY: test
test: tools $(TEST_PREREQS) testsummary ## the full test suite: tools, vet, race-enabled tests, summary
	$(GO) vet $(TEST_PACKAGES)
	$(GO) test -json $(GO_TEST_FLAGS) $(TEST_PACKAGES) 2>&1 | $(BIN)/testsummary

# The fast tier, for the inner loop: every unit test with nothing built.
# -short makes the harnesses (internal/devserver, kubetest, pgtest,
# backstagetest, gittest, e2e) skip what would start a server, a control
# plane, Node or git remotes; `make test` above never passes it, so there a
# missing tool still fails. Results are cached between runs, as plain
# `go test` caches them. No -race here: on the 2-core build machine a full
# rerun took 43 s without it and 85 s with it (and the first race build of
# the dependencies ~13 CPU-minutes), which breaks the under-a-minute promise;
# `make test` keeps the race detector, and
# `make test-unit UNIT_TEST_FLAGS='-short -race'` runs this tier with it.
UNIT_TEST_FLAGS ?= -short
.PHONY: test-unit
test-unit: ## the fast tier: every unit test with nothing built (go test -short)
	$(GO) test $(UNIT_TEST_FLAGS) $(TEST_PACKAGES)

# Benchmarks print ratios against a baseline measured in the same run, each
# its own log first, then all figures as one table (tools/benchtable reads
# what they recorded through internal/benchreport in $STAGEHAND_BENCH_REPORT):
# the interpreter against a hand-written workflow (one dev server: time and
# history events of a 50-step run; throughput of 200 concurrent 10-step
# runs); the worker process (built from ./worker, default settings) with
# 1,000, 5,000 and 10,000 runs parked at a gate: RSS against the idle
# worker's (target <= 256 MiB at 10,000) and approval-to-completion of the
# oldest parked run (at 5,000 and 10,000 evicted from the sticky cache)
# against the newest; the
# Kubernetes failure detection against `kubectl rollout status` (one control
# plane); db.snapshot of 10 plugin databases with 500 migrations against
# `pg_dump --schema-only` of the same databases (one PostgreSQL; target
# under 2 s). BENCH_RUNS sets the repetitions of the interpreter benchmarks
# (each throughput repetition is 400 runs) and of db.snapshot. About 15-25
# minutes on 2 cores, the parked runs a third of it (progress every 1,000).
BENCH_RUNS ?= 5
.PHONY: bench
bench: temporal-cli kube-tools benchtable ## benchmarks, then one table: interpreter overhead and throughput, parked-run RSS, failure-detection latency, db.snapshot
	@report="$$(mktemp -t stagehand-bench-XXXXXX.jsonl)"; trap 'rm -f "$$report"' EXIT; \
	export STAGEHAND_BENCH_REPORT="$$report"; \
	$(GO) test -run '^$$' -bench 'BenchmarkInterpreterOverhead|BenchmarkThroughput' -benchtime $(BENCH_RUNS)x -timeout 60m -v ./workflows/ | grep --line-buffered -v '^20[0-9][0-9]/'; \
	$(GO) test -run '^$$' -bench BenchmarkParkedRuns -benchtime 1x -timeout 40m -v ./e2e/parked/ | grep --line-buffered -v '^20[0-9][0-9]/'; \
	$(GO) test -run '^$$' -bench . -benchtime 1x -v ./activities/kube/; \
	$(GO) test -run '^$$' -bench BenchmarkSnapshot -benchtime $(BENCH_RUNS)x -v ./activities/db/; \
	echo; $(BIN)/benchtable "$$report"

# The patch demo (scripts/demo-up.sh): Temporal dev server + UI, the worker,
# the local Kubernetes control plane, a real Backstage backend, a git remote
# with a PR and a CI + Flux stand-in, then a patch run waiting for approval.
# The tools build once (Temporal CLI ~2 min, kube ~4 min, npm ci ~30 s) and
# are skipped afterwards.
.PHONY: dev
dev: temporal-cli build kube-tools stagehand-podsim backstage-tools demo-tools ## run the patch demo locally in the background (Temporal UI on :8233) and start a patch run
	@scripts/demo-up.sh

.PHONY: dev-down
dev-down: ## stop everything `make dev` started
	@scripts/demo-down.sh

.PHONY: fmt-check
fmt-check: ## fail if any Go file is not gofmt-ed
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [[ -n "$$out" ]]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi

.PHONY: clean
clean: ## remove built binaries except the slow-to-build tools
	rm -f $(BIN)/stagehand-worker $(BIN)/stagehand $(addprefix $(BIN)/,$(GO_TOOLS))
