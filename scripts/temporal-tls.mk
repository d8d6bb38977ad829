# Included by the Makefile (scripts/*.mk): the TLS-enabled Temporal server
# that the secured-connection tests (internal/temporaltlstest) start. `make
# tools`, and so `make test`, build it. Its package has no main.go on
# purpose: it is a module of its own, which the Makefile's tools/*/main.go
# rule (building inside the main module) cannot build.
.PHONY: temporal-tls
temporal-tls: ## build the TLS/mTLS Temporal test server into bin/temporal-tls (skipped when up to date)
	@scripts/build-temporal-tls.sh $(BIN)

tools: temporal-tls
