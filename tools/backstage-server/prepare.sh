#!/usr/bin/env bash
# Prepares the single-server portal template for the tests (make
# backstage-server-tools): one installed copy of the template, OUT/portal
# (npm ci from package-lock.json, then `npm run build`), that
# internal/serverlab copies per lab instead of running npm ci per test; and
# npm's cache primed with everything the tests install later, so those
# installs (--prefer-offline) need no registry round trips:
#   - the upgrade to release 1.45.0 (catalog backend 4.0.0), with
#     stagehand-portal-bump, the offline stand-in for versions:bump;
#   - the plugin the plugin-install tests add (PLUGINS below).
# Both happen in a throwaway copy that is removed afterwards.
#
# A stamp holding the lock file's hash, Node's major version and the plugin
# makes a second run a no-op; internal/serverlab checks the same stamp.
#
# Usage: prepare.sh OUT BUMP_BIN MANIFESTS_DIR
set -euo pipefail

# Keep in step with internal/serverlab (PluginPackages, ToRelease).
PLUGINS=(@backstage/plugin-search-backend@2.1.7 @backstage/plugin-search-backend-module-pg@0.5.59)
UPGRADE_RELEASE="1.45.0"

tmpl="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: prepare.sh OUT BUMP_BIN MANIFESTS_DIR}"
bump="${2:?usage: prepare.sh OUT BUMP_BIN MANIFESTS_DIR}"
manifests="${3:?usage: prepare.sh OUT BUMP_BIN MANIFESTS_DIR}"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "backstage-server: node and npm are needed (Node 20+): apt-get install -y nodejs npm" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "backstage-server: Node $(node --version) is too old; Backstage needs Node 20 or newer" >&2
  exit 1
fi

want="$(sha256sum "$tmpl/package-lock.json" | cut -d' ' -f1) node${node_major} $(IFS=,; echo "${PLUGINS[*]}")"
stamp="$out/portal/node_modules/.stagehand-stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "backstage-server: $out/portal up to date (package-lock.json unchanged)"
  exit 0
fi

# The portal's own files: what a checkout of the portal repository holds
# (internal/serverlab copies the same list).
files=(package.json package-lock.json backstage.json app-config.yaml .gitignore scripts packages plugins)

start=$SECONDS
rm -rf "$out/portal" "$out/portal.tmp" "$out/scratch"
mkdir -p "$out/portal.tmp"
for f in "${files[@]}"; do cp -a "$tmpl/$f" "$out/portal.tmp/"; done
echo "backstage-server: npm ci in $out/portal (Backstage backend-defaults, catalog, auth; about 1-2 min)..."
(cd "$out/portal.tmp" && npm ci --prefer-offline --no-audit --no-fund --ignore-scripts)
(cd "$out/portal.tmp" && npm run --silent build)
echo "backstage-server: installed in $((SECONDS - start)) s; priming the npm cache for the upgrade and the plugin..."

step=$SECONDS
cp -a "$out/portal.tmp" "$out/scratch"
(cd "$out/scratch" && "$bump" --manifests "$manifests" versions:bump --release "$UPGRADE_RELEASE" >/dev/null \
  && npm install --prefer-offline --no-audit --no-fund --ignore-scripts)
echo "backstage-server: release $UPGRADE_RELEASE's packages cached in $((SECONDS - step)) s"
step=$SECONDS
(cd "$out/scratch" && npm install --prefer-offline --no-audit --no-fund --ignore-scripts --save-exact -w packages/backend "${PLUGINS[@]}")
echo "backstage-server: ${PLUGINS[*]} cached in $((SECONDS - step)) s"
rm -rf "$out/scratch"

echo "$want" > "$out/portal.tmp/node_modules/.stagehand-stamp"
mv "$out/portal.tmp" "$out/portal"
echo "backstage-server: ready in $((SECONDS - start)) s"
