# Hooks the real Backstage test backend (tools/backstage) into the top-level
# Makefile, which includes scripts/*.mk: `make tools` and `make test` install
# its pinned npm packages, and `make backstage-up` runs it for a local demo.

.PHONY: backstage-tools
backstage-tools: ## install the pinned Backstage test backend (npm ci into tools/backstage; skipped when up to date)
	@tools/backstage/install.sh

tools: backstage-tools
TEST_PREREQS += backstage-tools

.PHONY: backstage-up
backstage-up: backstage-tools backstage-demo ## run a real Backstage backend on PostgreSQL in the foreground (Ctrl-C stops both)
	$(BIN)/backstage-demo $(BACKSTAGE_DEMO_FLAGS)
