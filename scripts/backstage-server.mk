# Hooks the single-server portal template (tools/backstage-server) into the
# top-level Makefile: `make tools` and `make test` prepare one installed,
# built copy of it (bin/backstage-server/portal) that internal/serverlab
# copies per lab, and prime npm's cache with the upgrade's packages and the
# plugin the plugin-install tests add. A stamp makes a second run a no-op.

BACKSTAGE_SERVER_DIR ?= $(BIN)/backstage-server

.PHONY: backstage-server-tools
backstage-server-tools: stagehand-portal-bump ## install the single-server portal template once (bin/backstage-server) and prime the npm cache
	@mkdir -p $(BACKSTAGE_SERVER_DIR)/manifests
	@$(GO) run ./internal/serverlab/cmd/write-manifests $(BACKSTAGE_SERVER_DIR)/manifests
	@tools/backstage-server/prepare.sh $(BACKSTAGE_SERVER_DIR) $(BIN)/stagehand-portal-bump $(BACKSTAGE_SERVER_DIR)/manifests

tools: backstage-server-tools
TEST_PREREQS += backstage-server-tools
