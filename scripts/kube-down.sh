#!/usr/bin/env bash
# kube-down.sh stops everything scripts/kube-up.sh started, newest first:
# SIGTERM to each component's process group, SIGKILL after a grace period, and
# waits until none is left. State (etcd data, certificates, kubeconfig) is kept
# so the next kube-up comes back with the same cluster; KUBE_DOWN_PURGE=1
# removes it as well.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${KUBE_STATE_DIR:-$repo/.stagehand/kube}"
grace="${KUBE_DOWN_GRACE:-10}"

log() { echo "kube-down: $*"; }

# group_alive PGID: any process is still in the group.
group_alive() { kill -0 -- "-$1" 2>/dev/null; }

stop() {
	local name="$1" pidfile="$state/pids/$1.pid" pgid
	[[ -f "$pidfile" ]] || return 0
	pgid="$(cat "$pidfile")"
	# Each component was started with setsid, so its pid is its process group.
	if group_alive "$pgid"; then
		local started=${EPOCHREALTIME/./}
		kill -TERM -- "-$pgid" 2>/dev/null || true
		local deadline=$((SECONDS + grace))
		while group_alive "$pgid" && ((SECONDS < deadline)); do
			sleep 0.1
		done
		if group_alive "$pgid"; then
			log "$name did not stop within ${grace}s; killing"
			kill -KILL -- "-$pgid" 2>/dev/null || true
			while group_alive "$pgid"; do sleep 0.1; done
		fi
		log "stopped $name (pid $pgid, $(((${EPOCHREALTIME/./} - started) / 1000))ms)"
	fi
	rm -f "$pidfile"
}

if [[ -d "$state/pids" ]]; then
	for name in stagehand-podsim kube-scheduler kube-controller-manager kube-apiserver etcd; do
		stop "$name"
	done
else
	log "nothing to stop ($state/pids not found)"
fi

if [[ "${KUBE_DOWN_PURGE:-}" == 1 ]]; then
	rm -rf "$state"
	log "removed $state"
fi
