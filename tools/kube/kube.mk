# Make fragment for the local Kubernetes control plane (tools/kube, scripts/kube-*.sh).
# Included by the top-level Makefile (via scripts/kube-tools.mk).
#
#   make kube-tools  build etcd, kube-apiserver, kube-controller-manager and
#                    kube-scheduler into bin/kube (skipped when up to date)
#   make kube-up     start them plus the pod simulator; kubeconfig in
#                    .stagehand/kube/kubeconfig (context stagehand-local)
#   make kube-down   stop everything kube-up started

ifndef STAGEHAND_KUBE_MK
STAGEHAND_KUBE_MK := 1

.PHONY: kube-tools
kube-tools: ## build etcd + kube-apiserver/controller-manager/scheduler v1.35.4 into bin/kube (skipped when up to date)
	scripts/kube-build.sh

.PHONY: kube-up
# stagehand-podsim (bin/stagehand-podsim, the kubelet stand-in) is the
# top-level Makefile's rule for tools/stagehand-podsim.
kube-up: kube-tools stagehand-podsim ## start a local control plane + pod simulator (.stagehand/kube)
	scripts/kube-up.sh

.PHONY: kube-down
kube-down: ## stop the local control plane started by kube-up
	scripts/kube-down.sh

# The integration tests of internal/kubetest users need the binaries.
tools: kube-tools
TEST_PREREQS += kube-tools

endif
