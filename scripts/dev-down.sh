#!/usr/bin/env bash
# Stops what scripts/dev-up.sh started: the worker first (so it does not log
# a storm of connection errors), then the Temporal dev server. Each gets a
# graceful signal and time to finish before being killed. State in
# .stagehand/temporal.db is kept for the next `make dev`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="${STAGEHAND_STATE_DIR:-.stagehand}"

# shellcheck source=scripts/dev-lib.sh
source "$root/scripts/dev-lib.sh"

# stop NAME PIDFILE SIGNAL GRACE_SECONDS
stop() {
  local name="$1" file="$2" sig="$3" grace="$4" pid start
  if ! pid="$(running_pid "$file" "$name")"; then
    [[ -f "$file" ]] && echo "$name was not running (removing stale $file)"
    rm -f "$file"
    return 0
  fi
  stopped=$((stopped + 1))
  echo "stopping $name (pid $pid)"
  kill "-$sig" "$pid" 2>/dev/null || true
  start=$SECONDS
  while alive "$pid"; do
    if ((SECONDS - start >= grace)); then
      echo "$name did not exit within ${grace}s of SIG$sig; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$file"
}

stopped=0
stop "$(basename "${STAGEHAND_WORKER_BIN:-stagehand-worker}")" "$state/worker.pid" TERM 30
# The dev server shuts down on SIGINT, as on Ctrl-C; it takes ~5 s.
stop "temporal server start-dev" "$state/temporal.pid" INT 30
if ((stopped == 0)); then
  echo "nothing was running"
else
  echo "stopped"
fi
