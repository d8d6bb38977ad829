#!/usr/bin/env bash
# Builds tools/temporal-tls (a Temporal server whose frontend requires TLS /
# mutual TLS, for the secured-connection tests) into bin/temporal-tls, unless
# a binary built from the same sources is already there.
#
# The pinned temporal CLI's dev server has no TLS options, so this is the
# same server (go.temporal.io/server v1.29.1, what CLI v1.5.1 embeds) built
# from its own module: the main go.mod never sees the server's dependencies.
# Like build-temporal.sh: progress lines (the build is silent for a minute or
# more), a lock against concurrent builds, and a scratch directory so an
# interrupted build never leaves a half-written binary. The stamp is a hash
# of the tool's sources, so editing them rebuilds and nothing else does.
set -euo pipefail

bindir="${1:?usage: build-temporal-tls.sh BINDIR}"
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$bindir"
bindir="$(cd "$bindir" && pwd)" # the build runs in the tool's directory
src="$root/tools/temporal-tls"
bin="$bindir/temporal-tls"
hash="$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -c1-16)"
stamp="$bindir/.temporal-tls-stamp-$hash"

if [[ -f "$stamp" && -x "$bin" ]]; then
  exit 0
fi

exec 9>"$bindir/.temporal-tls-build.lock"
if ! flock -n 9; then
  echo "waiting for another build of temporal-tls to finish..."
  flock 9
fi
if [[ -f "$stamp" && -x "$bin" ]]; then
  exit 0
fi

echo "building temporal-tls (Temporal server v1.29.1 with TLS; about 1 minute warm, 3-5 minutes cold on 2 cores)..."
start=$SECONDS
tmp="$(mktemp -d "$bindir/.temporal-tls-build.XXXXXX")"
trap 'rm -rf "$tmp"; [[ -n "${ticker:-}" ]] && kill "$ticker" 2>/dev/null || true' EXIT
(
  while sleep 30; do echo "  ... still building temporal-tls ($((SECONDS - start))s)"; done
) 9>&- &
ticker=$!
if ! (cd "$src" && go build -o "$tmp/temporal-tls" .); then
  echo "error: building temporal-tls failed after $((SECONDS - start))s" >&2
  exit 1
fi
kill "$ticker" 2>/dev/null || true
mv -f "$tmp/temporal-tls" "$bin"
rm -f "$bindir"/.temporal-tls-stamp-*
touch "$stamp"
echo "built temporal-tls in $((SECONDS - start))s: $bin"
