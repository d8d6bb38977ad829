# The local patch demo that `make dev` runs (scripts/demo-up.sh): the small
# binaries it needs besides the pinned tools. Included by the top-level
# Makefile, which includes scripts/*.mk.
#
#   make demo-tools  build bin/patchlab-setup (git remote, CI + Flux hook,
#                    worker config) and bin/backstage-demo (the real Backstage
#                    backend on a throwaway PostgreSQL)

.PHONY: demo-tools
demo-tools: ## build bin/patchlab-setup and bin/backstage-demo for `make dev`
	$(or $(GO),go) build -o bin/patchlab-setup ./internal/patchlab/cmd/patchlab-setup
	$(or $(GO),go) build -o bin/backstage-demo ./internal/backstagetest/cmd/backstage-demo
