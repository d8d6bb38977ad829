#!/usr/bin/env bash
# demo-up.sh is `make dev`: it brings up, in the background, everything the
# patch runbook acts on and starts a patch run that stops at its approval
# gate:
#
#   1. a real Backstage backend (bin/backstage-demo, from tools/backstage-demo)
#      on a throwaway PostgreSQL, on one fixed port; it stands in for the
#      service of both the sandbox and production (the pods themselves are
#      simulated);
#   2. the local Kubernetes control plane (scripts/kube-up.sh: etcd,
#      kube-apiserver, controller-manager, scheduler and the pod simulator)
#      with backstage-sandbox and backstage-prod, the Flux ImagePolicy CRD
#      (deploy/flux/imagepolicy-crd.yaml) and an ImagePolicy `backstage` in
#      backstage-prod whose status names production's current image;
#   3. the portal's git remote with PR branch pr-42 and the CI + Flux
#      stand-in hook, and the worker config (bin/patchlab-setup from
#      tools/patchlab-setup, on package internal/patchlab);
#   4. the Temporal dev server + UI and the worker (scripts/dev-up.sh, with
#      STAGEHAND_CONFIG pointing at that config);
#   5. a patch run of PR #42, requested by alice, approvable by bob or carol.
#
# Idempotent: what already runs is reused. A new patch run is started only
# when the demo's previous one has ended (it is recorded in
# <state>/demo-run); while it is still open (running or waiting at its gate)
# its instructions are printed again. A PR that an earlier run merged is not
# patched twice: patchlab-setup prepares the next one (pr-43, ...) from main.
# scripts/demo-down.sh (`make dev-down`) stops everything.
#
# Environment (defaults in brackets):
#   STAGEHAND_STATE_DIR        state, PIDs, logs [.stagehand]
#   STAGEHAND_TEMPORAL_PORT    Temporal frontend [7233]; STAGEHAND_UI_PORT Web UI [8233]
#   STAGEHAND_BACKSTAGE_PORT   Backstage backend [7007]
#   STAGEHAND_BACKSTAGE_TIMEOUT seconds to wait for Backstage to be ready [240]
#   KUBE_APISERVER_PORT [6443], ETCD_CLIENT_PORT [2379], ETCD_PEER_PORT [2380]
#   KUBE_STATE_DIR             control plane state [<state>/kube]
#   STAGEHAND_DEMO_PR          PR number of a new git remote [42]
#   STAGEHAND_DEMO_START=0     bring everything up but start no patch run
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

state="${STAGEHAND_STATE_DIR:-.stagehand}"
mkdir -p "$state"
state_abs="$(cd "$state" && pwd)"
ip="${STAGEHAND_TEMPORAL_IP:-127.0.0.1}"
port="${STAGEHAND_TEMPORAL_PORT:-7233}"
ui_port="${STAGEHAND_UI_PORT:-8233}"
address="$ip:$port"
bs_port="${STAGEHAND_BACKSTAGE_PORT:-7007}"
bs_timeout="${STAGEHAND_BACKSTAGE_TIMEOUT:-240}"
bs_url="http://127.0.0.1:$bs_port"
export KUBE_STATE_DIR="${KUBE_STATE_DIR:-$state_abs/kube}"
kubeconfig="$KUBE_STATE_DIR/kubeconfig"
context=stagehand-local
prod_ns=backstage-prod
task_queue="${STAGEHAND_TASK_QUEUE:-stagehand}"
temporal="$root/bin/temporal"
stagehand="$root/bin/stagehand"
backstage_demo="$root/bin/backstage-demo"
patchlab_setup="$root/bin/patchlab-setup"

# shellcheck source=scripts/dev-lib.sh
source "$root/scripts/dev-lib.sh"

begin=$SECONDS
say() { printf '==> [%3ss] %s\n' "$((SECONDS - begin))" "$*"; }
die() {
	echo "demo-up: error: $*" >&2
	exit 1
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
k() { kubectl --kubeconfig="$kubeconfig" --context="$context" "$@"; }

# --- prerequisites -----------------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	die "node and npm are needed for the Backstage backend (Node 20+): apt-get install -y nodejs npm, or install Node 20+ from https://nodejs.org"
fi
command -v kubectl >/dev/null || die "kubectl is needed: apt-get install -y kubernetes-client"
command -v git >/dev/null || die "git is needed: apt-get install -y git"
command -v curl >/dev/null || die "curl is needed: apt-get install -y curl"
if [[ ! -x "${PGTEST_BINDIR:-/usr/lib/postgresql/15/bin}/initdb" ]] && ! command -v initdb >/dev/null; then
	die "PostgreSQL 15 server programs are needed for the Backstage backend: apt-get install -y postgresql-15 (or set PGTEST_BINDIR)"
fi
for b in "$temporal" "$stagehand" "$root/bin/stagehand-worker" "$backstage_demo" "$patchlab_setup"; do
	[[ -x "$b" ]] || die "$b not found: run \`make dev\` (it builds the tools first), not this script alone"
done

# Something this demo started earlier with other ports would be reused as
# is, and the worker config would point past it: refuse, saying what to do.
cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }
check_port() { # PIDFILE NAME WANT(substring of its command line) WHAT
	local pid
	pid="$(running_pid "$1" "$2")" || return 0
	if [[ " $(cmdline_of "$pid")" != *" $3"* ]]; then
		die "the $4 from an earlier \`make dev\` (pid $pid) runs with other ports than asked ($3); run \`make dev-down\` first"
	fi
}
check_port "$state/backstage.pid" backstage-demo "--port $bs_port " "Backstage backend"
check_port "$state/temporal.pid" "temporal server start-dev" "--port $port " "Temporal dev server"
check_port "$KUBE_STATE_DIR/pids/kube-apiserver.pid" kube-apiserver "--secure-port=${KUBE_APISERVER_PORT:-6443} " "kube-apiserver"

# On failure, what did start keeps running (that is what lets a second run
# reuse it): say how to stop it.
trap 'rc=$?; ((rc == 0)) || echo "demo-up: failed after $((SECONDS - begin))s; what started keeps running: \`make dev-down\` stops it" >&2' EXIT

# --- 1. Backstage (started first: it boots while the control plane comes up) --
if pid="$(running_pid "$state/backstage.pid" backstage-demo)"; then
	say "Backstage backend already running (pid $pid) on $bs_url"
else
	rm -f "$state/backstage.pid"
	if port_busy "$bs_port"; then
		die "port $bs_port is in use by something \`make dev\` did not start; stop it, or pick another port with STAGEHAND_BACKSTAGE_PORT"
	fi
	say "starting the real Backstage backend on PostgreSQL 15 at $bs_url (log $state/backstage.log)"
	echo "=== $(date -u +%FT%TZ) started by demo-up.sh" >>"$state/backstage.log"
	# setsid: it must outlive make; SIGTERM to it stops node and PostgreSQL.
	setsid "$backstage_demo" --port "$bs_port" >>"$state/backstage.log" 2>&1 </dev/null &
	echo $! >"$state/backstage.pid"
fi

# --- 2. Kubernetes control plane, ImagePolicy CRD and policy -----------------
say "starting the local Kubernetes control plane (state $KUBE_STATE_DIR)"
scripts/kube-up.sh

say "applying the Flux ImagePolicy CRD (deploy/flux/imagepolicy-crd.yaml)"
k apply -f deploy/flux/imagepolicy-crd.yaml >/dev/null
k wait --for=condition=Established crd/imagepolicies.image.toolkit.fluxcd.io --timeout=60s >/dev/null
k apply -f - >/dev/null <<EOF
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: backstage
  namespace: $prod_ns
spec:
  imageRepositoryRef:
    name: backstage
  filterTags:
    pattern: '^prod-[a-f0-9]+-(?P<ts>[0-9]+)'
    extract: '\$ts'
  policy:
    numerical:
      order: asc
EOF
prod_image="$(k -n "$prod_ns" get deployment backstage -o jsonpath='{.spec.template.spec.containers[?(@.name=="backstage")].image}')"
policy_image="$(k -n "$prod_ns" get imagepolicy backstage -o jsonpath='{.status.latestImage}')"
# Set once, on a fresh policy; after that only the CI + Flux stand-in moves
# it (re-setting it here could race a run's prod verification).
if [[ -z "$policy_image" ]]; then
	k -n "$prod_ns" patch imagepolicy backstage --subresource status --type merge \
		-p "{\"status\":{\"latestImage\":\"$prod_image\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"Succeeded\",\"message\":\"Latest image tag resolved to ${prod_image##*:}\",\"lastTransitionTime\":\"$(date -u +%FT%TZ)\"}]}}" >/dev/null
	policy_image="$prod_image"
fi
say "ImagePolicy $prod_ns/backstage: latestImage $policy_image (Deployment runs $prod_image)"

# --- wait for Backstage --------------------------------------------------------
pid="$(cat "$state/backstage.pid")"
start=$SECONDS
until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$bs_url/.backstage/health/v1/readiness")" == 200 ]]; do
	if ! alive "$pid"; then
		rm -f "$state/backstage.pid"
		echo "--- last lines of $state/backstage.log ---" >&2
		tail -n 40 "$state/backstage.log" >&2 || true
		die "the Backstage backend exited during start-up (see $state/backstage.log; \`make backstage-tools\` reinstalls its npm packages)"
	fi
	if ((SECONDS - start >= bs_timeout)); then
		die "Backstage not ready at $bs_url within ${bs_timeout}s (STAGEHAND_BACKSTAGE_TIMEOUT; log $state/backstage.log; \`make dev-down\` stops everything)"
	fi
	sleep 0.5
done
say "Backstage backend ready at $bs_url (pid $pid)"

# --- 3. git remote, CI + Flux hook, worker config -------------------------------
say "preparing the portal's git remote, the CI + Flux stand-in and the worker config"
setup_out="$("$patchlab_setup" --state "$state_abs" --config "$state_abs/worker.yaml" \
	--temporal-address "$address" --task-queue "$task_queue" \
	--kubeconfig "$kubeconfig" --context "$context" \
	--sandbox-url "$bs_url" --prod-url "$bs_url" --pr "${STAGEHAND_DEMO_PR:-42}")"
# Sets remote, pr, pr_branch, pr_head, image, now, run_id, worker_config,
# config_changed, ci_log.
eval "$setup_out"

# A worker started with an older config (other ports, say) or another one
# (config/local.yaml from a plain scripts/dev-up.sh) would act on the wrong
# places: restart it.
if wpid="$(running_pid "$state/worker.pid" stagehand-worker)" &&
	[[ "$config_changed" == true || " $(cmdline_of "$wpid") " != *" --config $worker_config "* ]]; then
	say "the running worker (pid $wpid) has another config; restarting it with $state/worker.yaml"
	kill -TERM "$wpid" 2>/dev/null || true
	for _ in $(seq 1 150); do alive "$wpid" || break; sleep 0.2; done
	alive "$wpid" && kill -KILL "$wpid" 2>/dev/null || true
	rm -f "$state/worker.pid"
fi

# --- 4. Temporal dev server + UI, worker -----------------------------------------
say "starting the Temporal dev server and the worker (config $state/worker.yaml)"
STAGEHAND_CONFIG="$worker_config" STAGEHAND_DEV_BANNER=0 scripts/dev-up.sh

# --- 5. the patch run -----------------------------------------------------------
tp() { [[ "$address" == 127.0.0.1:7233 ]] && echo "" || echo "TEMPORAL_ADDRESS=$address "; }
ta() { [[ "$address" == 127.0.0.1:7233 ]] && echo "" || echo " --address $address"; }
run_open() {
	"$temporal" workflow describe --address "$address" --workflow-id "$1" -o json 2>/dev/null |
		grep -q '"status": *"WORKFLOW_EXECUTION_STATUS_RUNNING"'
}
# <state>/demo-run: "<workflow id> <PR> <PR branch>" of the demo's last run.
last_run="" last_pr="" last_branch=""
[[ -f "$state/demo-run" ]] && read -r last_run last_pr last_branch <"$state/demo-run"
if [[ -n "$last_run" ]] && run_open "$last_run"; then
	id="$last_run"
	# The open run's PR, not the one patchlab-setup would pick next.
	pr="${last_pr:-$pr}" pr_branch="${last_branch:-$pr_branch}"
	pr_head="$(git --git-dir "$remote" rev-parse "refs/heads/$pr_branch" 2>/dev/null || echo "$pr_head")"
	say "the demo's patch run $id (PR #$pr) is still open: not starting another (it holds the sandbox)"
elif [[ "${STAGEHAND_DEMO_START:-1}" == 0 ]]; then
	id=""
	say "STAGEHAND_DEMO_START=0: no patch run started"
else
	id="$run_id"
	say "starting the patch run $id: PR #$pr ($pr_branch, head ${pr_head:0:8}), image $image"
	"$stagehand" start patch --address "$address" --task-queue "$task_queue" \
		--param "image=$image" --param "pr=$pr" --requested-by alice --id "$id"
	echo "$id $pr $pr_branch" >"$state/demo-run"
fi

ui="http://$ip:$ui_port"
cat <<EOF

================================================================================
Stagehand patch demo is up ($((SECONDS - begin))s).

  Temporal UI       $ui   (frontend $address, namespace default, task queue $task_queue)
  Backstage         $bs_url  (sandbox AND production URL: one real backend stands in for both)
  Kubernetes        KUBECONFIG=$kubeconfig  (context $context; namespaces backstage-sandbox, $prod_ns)
  git remote        $remote  (PR #$pr = branch $pr_branch, head ${pr_head:0:8})
  worker config     $state/worker.yaml
  logs              $state/{temporal,worker,backstage,ci-sim}.log, $KUBE_STATE_DIR/logs/
EOF
if [[ -n "$id" ]]; then
	cat <<EOF

Patch run: $id   (runbook patch, PR #$pr, requested by alice; approvers bob, carol)
  $ui/namespaces/default/workflows/$id

  1. It sets the PR image on backstage-sandbox, waits for the rollout, checks pods
     (20s soak), events, readiness and the sign-in + catalog smoke checks, then
     waits at the gate "merge" (about a minute). Follow it:
       $(tp)bin/stagehand watch $id        # exits 5 at the gate
       $(tp)bin/stagehand status $id
  2. Approve it (as bob or carol; alice requested it, so she may not), either
     from the CLI:
       $(tp)bin/stagehand approve $id --gate merge --as bob
     or in the UI: open the run, "Send a Signal", name  approval , input
       {"gate":"merge","decision":"approve","by":"bob"}
     or with the Temporal CLI:
       bin/temporal workflow signal$(ta) --workflow-id $id --name approval \\
         --input '{"gate":"merge","decision":"approve","by":"bob"}'
  3. Then it merges $pr_branch into main of $remote; the simulated CI "builds"
     ${image%%:*}:prod-<merge sha8>-<unix> and the simulated Flux sets it on the
     ImagePolicy and rolls it to $prod_ns ($state/ci-sim.log); the run checks that
     production runs that image (rollout, pods, events, smoke checks) and
     completes. Check afterwards:
       git --git-dir $remote log --oneline -3 main
       kubectl --kubeconfig $kubeconfig -n $prod_ns get deploy backstage -o wide
EOF
fi
cat <<EOF

Real: Temporal (dev server, UI, the worker, every step), git (the remote, the merge),
the Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler:
Deployments, ReplicaSets, rollouts, events), the Backstage backend and its PostgreSQL.
Simulated: the pods (bin/stagehand-podsim plays the kubelet; no containers run), the
image builds (a tag name), CI and Flux (a git post-receive hook on the remote that
runs kubectl), and one Backstage process serving both environments' URLs.

A second \`make dev\` reuses all of this (and starts a new patch run, of the next
PR, once this one has ended). Stop everything with: make dev-down
================================================================================
EOF
