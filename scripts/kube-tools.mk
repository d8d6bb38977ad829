# Hooks the kube control-plane targets (kube-tools, kube-up, kube-down) into the
# top-level Makefile, which includes scripts/*.mk. The fragment itself lives with
# the module that builds the binaries.
include tools/kube/kube.mk
