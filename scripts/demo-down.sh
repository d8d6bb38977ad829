#!/usr/bin/env bash
# demo-down.sh is `make dev-down`: it stops everything scripts/demo-up.sh
# (`make dev`) started — the worker and the Temporal dev server
# (scripts/dev-down.sh), the Backstage backend with its PostgreSQL, and the
# Kubernetes control plane with the pod simulator (scripts/kube-down.sh) —
# and checks that none of their processes is left.
#
# State is kept for the next `make dev`: Temporal's history
# (<state>/temporal.db), the control plane's etcd data, the git remote and the
# worker config. Backstage's PostgreSQL is throwaway and goes with it.
# Same environment as demo-up.sh (STAGEHAND_STATE_DIR, KUBE_STATE_DIR).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="${STAGEHAND_STATE_DIR:-.stagehand}"
state_abs="$(cd "$state" 2>/dev/null && pwd || echo "$root/$state")"
export KUBE_STATE_DIR="${KUBE_STATE_DIR:-$state_abs/kube}"

# shellcheck source=scripts/dev-lib.sh
source "$root/scripts/dev-lib.sh"

# What is running now, to check at the end that all of it is gone. Only our
# own PIDs: other checkouts and tests on this machine run the same binaries.
watch_pids=()
for f in "$state/temporal.pid" "$state/worker.pid" "$state/backstage.pid" "$state/upgrade-demo.pid" "$KUBE_STATE_DIR"/pids/*.pid; do
	[[ -f "$f" ]] || continue
	p="$(<"$f")"
	[[ "$p" =~ ^[0-9]+$ ]] && alive "$p" || continue
	watch_pids+=("$p")
	# Children: node under backstage-demo, kube components' helpers.
	for c in $(pgrep -P "$p" || true); do watch_pids+=("$c"); done
done

# Each part is stopped even if stopping another failed.
rc=0

# Worker first (it would log connection errors once the server is gone).
scripts/dev-down.sh || rc=1

# Backstage: SIGTERM lets backstage-demo stop node and PostgreSQL (pg_ctl
# stop) and remove their temporary files.
if pid="$(running_pid "$state/backstage.pid" backstage-demo)"; then
	echo "stopping the Backstage backend and its PostgreSQL (pid $pid)"
	# The PostgreSQL it started, in case it has to be killed: its DSN is in
	# the log ("PostgreSQL at postgres://postgres@127.0.0.1:PORT/...").
	pg_port="$(grep -o 'PostgreSQL at postgres://[^ ]*' "$state/backstage.log" 2>/dev/null | tail -n 1 | sed -E 's#.*:([0-9]+)/.*#\1#')"
	kill -TERM "$pid" 2>/dev/null || true
	start=$SECONDS
	while alive "$pid"; do
		if ((SECONDS - start >= 45)); then
			echo "backstage-demo did not exit within 45s; killing it and what it started"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.2
	done
	# After a KILL, node (own process group) and postgres (pg_ctl detaches
	# it) would be orphans: find them by what the demo gave them.
	if [[ -n "$pg_port" ]]; then
		for p in $(pgrep -f -- "postgres .*-p $pg_port -k /tmp/pgtest-" || true); do
			datadir="$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | sed -n '/^-D$/{n;p}')"
			echo "stopping PostgreSQL left on port $pg_port (pid $p)"
			kill -QUIT "$p" 2>/dev/null || true
			[[ -n "$datadir" ]] && rm -rf "$(dirname "$datadir")"
		done
	fi
	echo "stopped the Backstage backend in $((SECONDS - start))s"
else
	[[ -f "$state/backstage.pid" ]] && echo "Backstage backend was not running (removing stale $state/backstage.pid)"
fi
rm -f "$state/backstage.pid"
# node runs in its own process group under backstage-demo; after a KILL of
# backstage-demo it would be left: its command line names the demo's config.
for p in $(pgrep -f -- 'node index.js --config /tmp/backstagetest-' || true); do
	if [[ "$(readlink "/proc/$p/cwd" 2>/dev/null)" == "$root/tools/backstage" ]]; then
		echo "stopping an orphaned Backstage node process (pid $p)"
		kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
	fi
done

# The upgrade demo (make dev-upgrade): SIGTERM lets it stop its Backstage
# backends, PostgreSQL, MariaDB, podman's service and the registry.
if pid="$(running_pid "$state/upgrade-demo.pid" upgrade-demo)"; then
	echo "stopping the upgrade demo (pid $pid): Backstage backends, PostgreSQL, MariaDB, podman, registry"
	kill -TERM "$pid" 2>/dev/null || true
	start=$SECONDS
	while alive "$pid"; do
		if ((SECONDS - start >= 60)); then
			echo "upgrade-demo did not exit within 60s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.2
	done
	echo "stopped the upgrade demo in $((SECONDS - start))s"
fi
rm -f "$state/upgrade-demo.pid"

# The control plane and the pod simulator.
scripts/kube-down.sh || rc=1

# Check: nothing this checkout's demo started is left.
sleep 0.5
left=()
for p in "${watch_pids[@]}"; do
	alive "$p" && left+=("$p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-120)")
done
if [[ -n "${pg_port:-}" ]]; then
	for p in $(pgrep -f -- "postgres .*-p $pg_port -k /tmp/pgtest-" || true); do left+=("$p postgres on port $pg_port"); done
fi
if ((${#left[@]} > 0)); then
	echo "dev-down: still running:" >&2
	printf '  %s\n' "${left[@]}" >&2
	exit 1
fi
echo "dev-down: everything \`make dev\` started is stopped (${#watch_pids[@]} processes; state kept in $state)"
exit "$rc"
