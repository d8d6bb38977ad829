#!/usr/bin/env bash
# dev-upgrade.sh is `make dev-upgrade`: it brings up, in the background,
# everything the upgrade runbook acts on and starts an upgrade run that stops
# at its `promote` gate:
#
#   1. the local Kubernetes control plane (scripts/kube-up.sh);
#   2. bin/upgrade-demo (tools/upgrade-demo): a throwaway PostgreSQL (the
#      sandbox's database) and MariaDB (production's), podman's Docker-API
#      service and a local registry, the portal's git remote at Backstage
#      1.44.0 with its first image built and pushed, and namespaces
#      backstage-up-sandbox / backstage-up-prod whose pods run the real
#      Backstage backend of their image (catalog 3.9.1 at 1.44.0, 4.0.0 at
#      1.45.0) on those databases;
#   3. the Temporal dev server + UI and the worker with the demo's config
#      (scripts/dev-up.sh; this replaces the patch demo's worker config);
#   4. an upgrade run to Backstage 1.45.0, requested by alice, approvable by
#      bob or carol, which builds, backs up, rolls and verifies the sandbox
#      (real migrations) and waits at `promote`.
#
# A second run reuses what runs and starts no new upgrade while the last one
# is open. `make dev-down` stops everything.
#
# Environment (defaults in brackets): STAGEHAND_STATE_DIR [.stagehand],
# STAGEHAND_TEMPORAL_PORT [7233], STAGEHAND_UI_PORT [8233],
# STAGEHAND_UPGRADE_SANDBOX_PORT [7107], STAGEHAND_UPGRADE_PROD_PORT [7108],
# STAGEHAND_UPGRADE_RELEASE [1.45.0], STAGEHAND_DEMO_START=0 (start no run).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

state="${STAGEHAND_STATE_DIR:-.stagehand}"
mkdir -p "$state/upgrade"
state_abs="$(cd "$state" && pwd)"
ip="${STAGEHAND_TEMPORAL_IP:-127.0.0.1}"
port="${STAGEHAND_TEMPORAL_PORT:-7233}"
ui_port="${STAGEHAND_UI_PORT:-8233}"
address="$ip:$port"
sandbox_port="${STAGEHAND_UPGRADE_SANDBOX_PORT:-7107}"
prod_port="${STAGEHAND_UPGRADE_PROD_PORT:-7108}"
release="${STAGEHAND_UPGRADE_RELEASE:-1.45.0}"
export KUBE_STATE_DIR="${KUBE_STATE_DIR:-$state_abs/kube}"
kubeconfig="$KUBE_STATE_DIR/kubeconfig"
context=stagehand-local
task_queue="${STAGEHAND_TASK_QUEUE:-stagehand}"
stagehand="$root/bin/stagehand"
demo="$root/bin/upgrade-demo"

# shellcheck source=scripts/dev-lib.sh
source "$root/scripts/dev-lib.sh"

begin=$SECONDS
say() { printf '==> [%3ss] %s\n' "$((SECONDS - begin))" "$*"; }
die() {
	echo "dev-upgrade: error: $*" >&2
	exit 1
}
cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

for p in node kubectl git podman docker-registry mariadbd runc; do
	command -v "$p" >/dev/null || die "$p is needed: run .ci/run's package step (apt-get install -y nodejs kubernetes-client git podman docker-registry mariadb-server runc busybox-static)"
done
for b in "$root/bin/temporal" "$stagehand" "$root/bin/stagehand-worker" "$demo" "$root/bin/stagehand-portal-bump"; do
	[[ -x "$b" ]] || die "$b not found: run \`make dev-upgrade\` (it builds the tools first), not this script alone"
done
trap 'rc=$?; ((rc == 0)) || echo "dev-upgrade: failed after $((SECONDS - begin))s; what started keeps running: \`make dev-down\` stops it" >&2' EXIT

# --- 1. control plane ----------------------------------------------------------
say "starting the local Kubernetes control plane (state $KUBE_STATE_DIR)"
scripts/kube-up.sh

# --- 2. databases, engine, registry, portal, simulated pods --------------------
ready="$state/upgrade/ready.env"
if pid="$(running_pid "$state/upgrade-demo.pid" upgrade-demo)"; then
	say "upgrade-demo already running (pid $pid)"
else
	rm -f "$state/upgrade-demo.pid" "$ready"
	say "starting bin/upgrade-demo: PostgreSQL, MariaDB, podman's Docker API, a registry, the portal and its first image (log $state/upgrade-demo.log)"
	echo "=== $(date -u +%FT%TZ) started by dev-upgrade.sh" >>"$state/upgrade-demo.log"
	setsid "$demo" --state "$state_abs" --kubeconfig "$kubeconfig" --context "$context" \
		--temporal-address "$address" --task-queue "$task_queue" \
		--sandbox-port "$sandbox_port" --prod-port "$prod_port" >>"$state/upgrade-demo.log" 2>&1 </dev/null &
	echo $! >"$state/upgrade-demo.pid"
fi
pid="$(cat "$state/upgrade-demo.pid")"
start=$SECONDS
last=""
until [[ -f "$ready" ]]; do
	if ! alive "$pid"; then
		rm -f "$state/upgrade-demo.pid"
		echo "--- last lines of $state/upgrade-demo.log ---" >&2
		tail -n 40 "$state/upgrade-demo.log" >&2 || true
		die "upgrade-demo exited during start-up (see $state/upgrade-demo.log)"
	fi
	((SECONDS - start < 600)) || die "upgrade-demo not ready within 600s (log $state/upgrade-demo.log)"
	line="$(grep 'upgrade-demo:' "$state/upgrade-demo.log" | tail -n 1 || true)"
	if [[ "$line" != "$last" ]]; then
		say "${line#* upgrade-demo: }"
		last="$line"
	fi
	sleep 1
done
# shellcheck disable=SC1090
source "$ready"
export STAGEHAND_DEMO_MARIADB_PASSWORD="$mariadb_password"
say "sandbox portal $sandbox_url (PostgreSQL), production portal $prod_url (MariaDB), registry $registry"

# --- 3. Temporal + worker --------------------------------------------------------
# A worker with another config (the patch demo's), or without this
# MariaDB's password in its environment, would act on the wrong places.
if wpid="$(running_pid "$state/worker.pid" stagehand-worker)"; then
	if [[ " $(cmdline_of "$wpid") " != *" --config $worker_config "* ]] ||
		! tr '\0' '\n' <"/proc/$wpid/environ" 2>/dev/null | grep -qxF "STAGEHAND_DEMO_MARIADB_PASSWORD=$mariadb_password"; then
		say "the running worker (pid $wpid) has another config; restarting it with $worker_config"
		kill -TERM "$wpid" 2>/dev/null || true
		for _ in $(seq 1 150); do alive "$wpid" || break; sleep 0.2; done
		alive "$wpid" && kill -KILL "$wpid" 2>/dev/null || true
		rm -f "$state/worker.pid"
	fi
fi
say "starting the Temporal dev server and the worker (config $worker_config)"
STAGEHAND_CONFIG="$worker_config" STAGEHAND_DEV_BANNER=0 scripts/dev-up.sh

# --- 4. the upgrade run ----------------------------------------------------------
run_open() {
	"$root/bin/temporal" workflow describe --address "$address" --workflow-id "$1" -o json 2>/dev/null |
		grep -q '"status": *"WORKFLOW_EXECUTION_STATUS_RUNNING"'
}
last_run=""
[[ -f "$state/upgrade-run" ]] && read -r last_run <"$state/upgrade-run"
if [[ -n "$last_run" ]] && run_open "$last_run"; then
	id="$last_run"
	say "the demo's upgrade run $id is still open: not starting another"
elif [[ "${STAGEHAND_DEMO_START:-1}" == 0 ]]; then
	id=""
	say "STAGEHAND_DEMO_START=0: no upgrade run started"
else
	id="upgrade-demo-$(date +%s)"
	say "starting the upgrade run $id: Backstage 1.44.0 -> $release"
	"$stagehand" start upgrade --address "$address" --task-queue "$task_queue" \
		--param "release=$release" --requested-by alice --id "$id"
	echo "$id" >"$state/upgrade-run"
	say "waiting for it to reach the promote gate (bump, build, push, backup, rollout, migrations, smoke checks: a few minutes)"
	rc=0
	timeout 900 "$stagehand" watch "$id" --address "$address" || rc=$?
	((rc == 5)) || die "the upgrade run did not reach its gate (watch exited $rc): bin/stagehand status $id --address $address"
fi

ui="http://$ip:$ui_port"
cat <<EOF

================================================================================
Stagehand upgrade demo is up ($((SECONDS - begin))s).

  Temporal UI       $ui   (frontend $address, task queue $task_queue)
  sandbox portal    $sandbox_url  (namespace backstage-up-sandbox, PostgreSQL)
  production portal $prod_url  (namespace backstage-up-prod, MariaDB)
  Kubernetes        KUBECONFIG=$kubeconfig  (context $context)
  git remote        $remote
  registry          $registry   (image engine $docker_host)
  worker config     $worker_config
  logs              $state/{temporal,worker,upgrade-demo}.log
EOF
if [[ -n "$id" ]]; then
	cat <<EOF

Upgrade run: $id   (runbook upgrade, release $release, requested by alice)
  $ui/namespaces/default/workflows/$id

  It checked out the portal, bumped it on branch upgrade-$release, built and pushed
  the image, backed up the sandbox's PostgreSQL, rolled the image, verified the
  catalog's two new migrations, ran the smoke checks, and waits at "promote":
    bin/stagehand status $id
  Promote it (as bob or carol):
    bin/stagehand approve $id --gate promote --as bob
  or: bin/temporal workflow update execute --workflow-id $id --name approve \\
        --input '{"gate":"promote","decision":"approve","by":"bob"}'
  Production's MariaDB is then backed up and migrated the same way; afterwards:
    bin/stagehand audit --runbook upgrade
    bin/stagehand audit show $id
EOF
fi
cat <<EOF

Real: Temporal, git, the Kubernetes control plane, the image build (podman's
Docker API running the Dockerfile's RUN steps) and the registry push, PostgreSQL,
MariaDB, the Backstage backends and their migrations, backups and restores.
Simulated: the pods (a pod simulator plays the kubelet and runs the Backstage
version each image's package.json names as a local process), and the bump (an
offline stand-in for \`yarn backstage-cli versions:bump\` reading local release
manifests).
Stop everything with: make dev-down
================================================================================
EOF
