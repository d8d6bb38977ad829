#!/usr/bin/env bash
# Starts Stagehand locally: a Temporal dev server (SQLite state and logs under
# .stagehand/, the Web UI, Stagehand's search attributes) and the worker, both
# in the background. `make dev` runs it after building; scripts/dev-down.sh
# stops both. Running it again while they run changes nothing.
#
# Environment:
#   STAGEHAND_TEMPORAL_IP     address to bind (default 127.0.0.1)
#   STAGEHAND_TEMPORAL_PORT   frontend gRPC port (default 7233)
#   STAGEHAND_UI_PORT         Web UI port (default 8233)
#   STAGEHAND_CONFIG          worker config (default config/local.yaml)
#   STAGEHAND_STATE_DIR       state, PIDs and logs (default .stagehand)
#   STAGEHAND_START_TIMEOUT   seconds to wait for each process (default 60)
#   STAGEHAND_TASK_QUEUE      task queue to wait for a poller on (default stagehand)
#   STAGEHAND_WORKER_BIN      worker binary (default bin/stagehand-worker)
#   STAGEHAND_DEV_BANNER=0    skip the closing "how to start a run" text
#                             (scripts/demo-up.sh prints its own)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

ip="${STAGEHAND_TEMPORAL_IP:-127.0.0.1}"
port="${STAGEHAND_TEMPORAL_PORT:-7233}"
ui_port="${STAGEHAND_UI_PORT:-8233}"
config="${STAGEHAND_CONFIG:-config/local.yaml}"
state="${STAGEHAND_STATE_DIR:-.stagehand}"
timeout="${STAGEHAND_START_TIMEOUT:-60}"
task_queue="${STAGEHAND_TASK_QUEUE:-stagehand}"
namespace=default
address="$ip:$port"
temporal="$root/bin/temporal"
worker="${STAGEHAND_WORKER_BIN:-$root/bin/stagehand-worker}"

# shellcheck source=scripts/dev-lib.sh
source "$root/scripts/dev-lib.sh"

die() {
  echo "dev-up: error: $*" >&2
  exit 1
}

tail_log() {
  echo "--- last lines of $1 ---" >&2
  tail -n "${2:-30}" "$1" >&2 || true
  echo "---" >&2
}

healthy() {
  "$temporal" operator cluster health --address "$address" --command-timeout 2s >/dev/null 2>&1
}

port_busy() {
  # bash's /dev/tcp connects without needing nc or ss on the machine.
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

[[ -x "$temporal" ]] || die "bin/temporal not found: run \`make tools\`"
mkdir -p "$state"

# --- Temporal dev server ---------------------------------------------------
if pid="$(running_pid "$state/temporal.pid" "temporal server start-dev")"; then
  echo "Temporal dev server already running (pid $pid) on $address"
else
  rm -f "$state/temporal.pid"
  for p in "$port" "$ui_port"; do
    if port_busy "$ip" "$p"; then
      die "port $p on $ip is already in use by something \`make dev\` did not start; stop it, or choose other ports with STAGEHAND_TEMPORAL_PORT / STAGEHAND_UI_PORT"
    fi
  done
  sa_args=()
  while IFS= read -r def; do
    sa_args+=(--search-attribute "$def")
  done < <(go run ./tools/searchattrs)

  echo "starting Temporal dev server on $address (state in $state/temporal.db, log in $state/temporal.log)"
  echo "=== $(date -u +%FT%TZ) started by dev-up.sh" >>"$state/temporal.log"
  # setsid: the server must survive the make that started it, and a Ctrl-C
  # in that terminal must not reach it.
  setsid "$temporal" server start-dev \
    --ip "$ip" --port "$port" --ui-port "$ui_port" \
    --db-filename "$state/temporal.db" \
    --namespace "$namespace" \
    --log-level warn \
    "${sa_args[@]}" \
    >>"$state/temporal.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$state/temporal.pid"

  start=$SECONDS
  until healthy; do
    if ! alive "$pid"; then
      rm -f "$state/temporal.pid"
      tail_log "$state/temporal.log"
      die "Temporal dev server exited during start-up (see $state/temporal.log)"
    fi
    if ((SECONDS - start >= timeout)); then
      kill -INT "$pid" 2>/dev/null || true
      rm -f "$state/temporal.pid"
      tail_log "$state/temporal.log"
      die "Temporal dev server did not become healthy on $address within ${timeout}s (STAGEHAND_START_TIMEOUT)"
    fi
    sleep 0.5
  done
  echo "Temporal dev server ready in $((SECONDS - start))s (pid $pid)"
fi

# --search-attribute only takes effect when the SQLite file is new: a server
# restarted on an existing .stagehand/temporal.db ignores attributes added to
# the workflows since. Register whatever is missing.
registered="$("$temporal" operator search-attribute list --address "$address" --namespace "$namespace" -o json)"
while IFS='=' read -r name type; do
  if ! grep -q "\"$name\"" <<<"$registered"; then
    echo "registering search attribute $name ($type)"
    "$temporal" operator search-attribute create --address "$address" --namespace "$namespace" \
      --name "$name" --type "$type" >/dev/null
  fi
done < <(go run ./tools/searchattrs)

# --- worker ------------------------------------------------------------------
if pid="$(running_pid "$state/worker.pid" "$(basename "$worker")")"; then
  echo "worker already running (pid $pid)"
else
  rm -f "$state/worker.pid"
  [[ -x "$worker" ]] || die "bin/stagehand-worker not found: run \`make build\` (the Temporal server is running; \`make dev-down\` stops it)"
  [[ -f "$config" ]] || die "worker config $config not found (set STAGEHAND_CONFIG)"
  echo "starting worker (config $config, log in $state/worker.log)"
  echo "=== $(date -u +%FT%TZ) started by dev-up.sh" >>"$state/worker.log"
  # TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE carry the server we just started
  # even when the ports were overridden and the config still says 7233.
  TEMPORAL_ADDRESS="$address" TEMPORAL_NAMESPACE="$namespace" \
    setsid "$worker" --config "$config" >>"$state/worker.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$state/worker.pid"

  # Ready means polling: the task queue shows a poller from this worker.
  start=$SECONDS
  until "$temporal" task-queue describe --address "$address" --namespace "$namespace" \
    --task-queue "$task_queue" -o json 2>/dev/null | grep -q '"identity"'; do
    if ! alive "$pid"; then
      rm -f "$state/worker.pid"
      tail_log "$state/worker.log"
      die "worker exited during start-up (see $state/worker.log; the Temporal server is still running, \`make dev-down\` stops it)"
    fi
    if ((SECONDS - start >= timeout)); then
      tail_log "$state/worker.log"
      die "worker (pid $pid) started but no poller appeared on task queue $task_queue within ${timeout}s; is its taskQueue in $config \"$task_queue\"? (\`make dev-down\` stops everything)"
    fi
    sleep 0.5
  done
  echo "worker ready in $((SECONDS - start))s (pid $pid)"
fi

[[ "${STAGEHAND_DEV_BANNER:-1}" == 0 ]] && exit 0

cat <<EOF

Stagehand is running.
  Temporal UI:   http://$ip:$ui_port
  Temporal gRPC: $address (namespace $namespace, task queue $task_queue)
  Logs:          $state/temporal.log, $state/worker.log

Start a run from the UI (Start Workflow: type RunbookWorkflow, task queue
$task_queue, input {"runbook":"patch","params":{...},"requestedBy":"you"}), or:
  bin/stagehand runbooks        # the runbooks and step types the worker knows
  bin/stagehand start patch --param environment=sandbox --param image=...
  bin/temporal workflow start --address $address --type RunbookWorkflow \\
    --task-queue $task_queue --input '{"runbook":"patch","params":{"environment":"sandbox"},"requestedBy":"$USER"}'

Stop with: make dev-down
EOF
