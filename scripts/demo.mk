# The local patch demo that `make dev` runs (scripts/demo-up.sh): the small
# binaries it needs besides the pinned tools. Included by the top-level
# Makefile, which includes scripts/*.mk and builds each tools/<name>/ into
# bin/<name> with `make <name>`.
#
#   make demo-tools  build bin/patchlab-setup (git remote, CI + Flux hook,
#                    worker config) and bin/backstage-demo (the real Backstage
#                    backend on a throwaway PostgreSQL)

.PHONY: demo-tools
demo-tools: patchlab-setup backstage-demo ## build bin/patchlab-setup and bin/backstage-demo for `make dev`

# The local upgrade demo (scripts/dev-upgrade.sh): bin/upgrade-demo brings up
# the databases, the image engine and registry, the portal and the simulated
# pods that run real Backstage; bin/stagehand-portal-bump is the offline bump.
.PHONY: dev-upgrade
dev-upgrade: temporal-cli build kube-tools stagehand-podsim backstage-tools upgrade-demo stagehand-portal-bump ## run the upgrade demo locally (real image build, PostgreSQL + MariaDB, real Backstage migrations) and start an upgrade run
	@scripts/dev-upgrade.sh
