#!/usr/bin/env bash
# Builds the pinned Temporal CLI (the dev server the tests and `make dev` run)
# into bin/temporal, unless that exact version is already there.
#
# Why a script rather than a plain make rule: the build takes about two
# minutes and prints nothing, so we print progress lines; several make
# invocations (or engineers) may race for the same binary, so we take a lock;
# and a binary put there by hand is accepted when `go version -m` proves it is
# the pinned module version, rather than being rebuilt.
set -euo pipefail

version="${1:?usage: build-temporal.sh VERSION BINDIR}"
bindir="${2:?usage: build-temporal.sh VERSION BINDIR}"
module="github.com/temporalio/cli"
pkg="$module/cmd/temporal"
bin="$bindir/temporal"
stamp="$bindir/.temporal-$version"

# Fast path (every `make test` goes through here): stamp and binary present.
if [[ -f "$stamp" && -x "$bin" ]]; then
  exit 0
fi

mkdir -p "$bindir"
exec 9>"$bindir/.temporal-build.lock"
if ! flock -n 9; then
  echo "waiting for another build of the temporal CLI to finish..."
  flock 9
fi

# The binary may have been built (by hand or by a concurrent make) while we
# waited; accept it if it is the pinned version.
if [[ -x "$bin" ]] && go version -m "$bin" 2>/dev/null |
  awk -v m="$module" -v v="$version" '$1=="mod" && $2==m && $3==v {found=1} END {exit !found}'; then
  rm -f "$bindir"/.temporal-v*
  touch "$stamp"
  echo "temporal CLI $version already in $bin"
  exit 0
fi

echo "building temporal CLI $version (about 2 minutes on 2 cores)..."
start=$SECONDS
# Build into a scratch GOBIN and move into place, so an interrupted build never
# leaves a half-written bin/temporal that a later run would trust.
tmp="$(mktemp -d "$bindir/.temporal-build.XXXXXX")"
trap 'rm -rf "$tmp"; [[ -n "${ticker:-}" ]] && kill "$ticker" 2>/dev/null || true' EXIT
# A heartbeat line every 30 s: CI logs and impatient humans both read silence
# as a hang.
(
  while sleep 30; do echo "  ... still building temporal CLI ($((SECONDS - start))s)"; done
) &
ticker=$!
if ! GOBIN="$tmp" go install "$pkg@$version"; then
  echo "error: building temporal CLI $version failed after $((SECONDS - start))s" >&2
  exit 1
fi
kill "$ticker" 2>/dev/null || true
mv -f "$tmp/temporal" "$bin"
rm -f "$bindir"/.temporal-v*
touch "$stamp"
echo "built temporal CLI $version in $((SECONDS - start))s: $bin"
