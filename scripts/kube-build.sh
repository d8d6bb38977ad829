#!/usr/bin/env bash
# kube-build.sh builds the real Kubernetes control plane (kube-apiserver,
# kube-controller-manager, kube-scheduler) and etcd from the separate Go module in
# tools/kube into bin/kube/. Nothing here downloads prebuilt binaries: everything
# comes from the Go module proxy and is compiled locally.
#
# A stamp file records what was built (versions, the module's go.sum, the Go
# toolchain); when it matches and every binary is present the build is skipped,
# because a cold build takes several minutes on a 2-core machine.
#
# Environment:
#   KUBE_BIN_DIR   output directory (default: <repo>/bin/kube)
#   KUBE_FORCE=1   rebuild even if the stamp matches
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$repo/tools/kube"
out="${KUBE_BIN_DIR:-$repo/bin/kube}"
kube_version="v1.35.4"
etcd_version="v3.6.5"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
stamp="$out/.stamp"

want_stamp() {
	# The stamp covers everything that changes the output: pinned versions, the
	# exact dependency set and the compiler.
	printf 'kube=%s etcd=%s go=%s sum=%s\n' "$kube_version" "$etcd_version" \
		"$(go env GOVERSION)" "$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -d' ' -f1)"
}

binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler)

all_present() {
	local b
	for b in "${binaries[@]}"; do
		[[ -x "$out/$b" ]] || return 1
	done
}

if [[ "${KUBE_FORCE:-}" != 1 ]] && all_present && [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$(want_stamp)" ]]; then
	echo "kube-build: bin/kube is up to date ($kube_version, etcd $etcd_version); skipping"
	exit 0
fi

# Component versions are baked in so /version and discovery report v1.35.4 rather
# than the placeholder v0.0.0-master a plain `go build` would give.
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$kube_version \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=35 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$kube_version \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=35"

build() {
	local name="$1" pkg="$2" version="$3" estimate="$4"
	local start end
	echo "kube-build: building $name $version ($estimate on 2 cores)..."
	start=$(date +%s)
	# Build into a temporary name and rename, so an interrupted build never
	# leaves a truncated binary that a later run would take for a good one.
	(cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$out/.$name.tmp" "$pkg")
	mv -f "$out/.$name.tmp" "$out/$name"
	end=$(date +%s)
	echo "kube-build: built $name in $((end - start))s"
}

total_start=$(date +%s)
rm -f "$stamp"
(cd "$mod" && echo "kube-build: downloading modules (first run only)..." && go mod download)
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_version" "about 2.5 minutes"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kube_version" "about 1 minute"
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$kube_version" "under a minute"
build etcd go.etcd.io/etcd/server/v3 "$etcd_version" "under a minute"
want_stamp >"$stamp"
echo "kube-build: done in $(($(date +%s) - total_start))s; binaries in $out"
