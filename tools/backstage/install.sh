#!/usr/bin/env bash
# Installs the pinned Backstage test backend's packages into
# tools/backstage/node_modules with `npm ci` (exact versions from
# package-lock.json). A stamp holding the lock file's hash and Node's major
# version makes a second run a no-op; a changed lock file or Node reinstalls.
# internal/backstagetest checks the same stamp before starting the backend.
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$dir"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "backstage-tools: node and npm are needed (Node 20+): apt-get install -y nodejs npm, or install Node 20 from nodejs.org" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "backstage-tools: Node $(node --version) is too old; Backstage needs Node 20 or newer" >&2
  exit 1
fi

want="$(sha256sum package-lock.json | cut -d' ' -f1) node${node_major}"
stamp=node_modules/.stagehand-stamp
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "backstage-tools: node_modules up to date (package-lock.json unchanged)"
  exit 0
fi

echo "backstage-tools: npm ci in tools/backstage (Backstage backend-defaults, catalog, auth; about 30-70 s)..."
start=$SECONDS
# --no-audit/--no-fund: no extra registry round trips; progress stays on so a
# person sees it is working. Install scripts (core-js, protobufjs banners)
# are not needed by the backend.
npm ci --no-audit --no-fund --ignore-scripts
echo "$want" > "$stamp"
echo "backstage-tools: installed in $((SECONDS - start)) s"
