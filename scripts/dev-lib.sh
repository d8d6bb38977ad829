# Shared by dev-up.sh and dev-down.sh (sourced, not run).

# running_pid PIDFILE NAME prints the PID in PIDFILE and succeeds if that
# process is alive and is still the program NAME. Checking the command line
# matters because PIDs are reused: after a reboot the file may name some
# unrelated process that must not be reported as ours, let alone killed.
running_pid() {
  local file="$1" name="$2" pid
  [[ -f "$file" ]] || return 1
  pid="$(<"$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
  echo "$pid"
}

# alive PID succeeds if the process exists and has not exited. kill -0 alone
# is not enough: a child that died but was not yet reaped (a zombie of the
# script that started it) still accepts signals.
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat%% *}" != Z ]]
}
