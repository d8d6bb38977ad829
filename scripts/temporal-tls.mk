# Included by the Makefile: the TLS-enabled Temporal server the secured
# connection tests (internal/temporaltlstest) start. Add `temporal-tls` to
# the prerequisites of `tools` and `test`.
.PHONY: temporal-tls
temporal-tls: ## build the TLS/mTLS Temporal test server into bin/temporal-tls (skipped when up to date)
	@scripts/build-temporal-tls.sh $(BIN)
