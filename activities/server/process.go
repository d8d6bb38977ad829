package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PidFile is what the pid file holds about the supervised process. The
// start time (in clock ticks since boot, /proc/<pid>/stat field 22) is
// what makes the pid safe to signal later: a pid the kernel gave to
// another program after ours exited has another start time.
type PidFile struct {
	Pid       int       `json:"pid"`
	Pgid      int       `json:"pgid"`
	StartTime uint64    `json:"startTime"`
	StartedAt time.Time `json:"startedAt"`
	Command   []string  `json:"command"`
	// Run is the workflow that started it, for a person reading the file.
	Run string `json:"run,omitempty"`
}

// maxPidFileBytes bounds what is read: a pid file is a few hundred bytes,
// anything larger is not ours.
const maxPidFileBytes = 64 << 10

// parsePidFile decodes and checks a pid file's content.
func parsePidFile(b []byte) (PidFile, error) {
	var p PidFile
	if len(b) > maxPidFileBytes {
		return p, fmt.Errorf("%d bytes, more than a pid file holds (%d)", len(b), maxPidFileBytes)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("not a stagehand pid file: %v", err)
	}
	if p.Pid <= 1 || p.Pgid <= 1 || p.StartTime == 0 {
		return p, fmt.Errorf("not a stagehand pid file: pid %d, pgid %d, startTime %d", p.Pid, p.Pgid, p.StartTime)
	}
	return p, nil
}

// readPidFile returns the pid file, ok=false when there is none.
func readPidFile(path string) (PidFile, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return PidFile{}, false, nil
	}
	if err != nil {
		return PidFile{}, false, fmt.Errorf("read pid file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPidFileBytes+1))
	if err != nil {
		return PidFile{}, false, fmt.Errorf("read pid file %s: %w", path, err)
	}
	p, err := parsePidFile(b)
	if err != nil {
		return PidFile{}, false, fmt.Errorf("pid file %s: %w", path, err)
	}
	return p, true, nil
}

// writePidFile replaces the pid file atomically (a temporary file renamed
// over it), so a worker that dies mid-write leaves the old file or the new
// one, never half of one.
func writePidFile(path string, p PidFile) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pid file directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".server.pid-*")
	if err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write pid file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write pid file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write pid file %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

func removePidFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}

// procInfo is what /proc/<pid>/stat says about a process.
type procInfo struct {
	State     byte
	Pgrp      int
	StartTime uint64
}

// live reports whether the process still runs: a zombie has exited, and in
// a container whose init does not reap orphans it stays a zombie forever.
func (p procInfo) live() bool { return p.State != 'Z' && p.State != 'X' }

// parseStat parses the content of /proc/<pid>/stat.
func parseStat(b string) (procInfo, error) {
	// pid (comm) state ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime priority nice
	// num_threads itrealvalue starttime ...; comm may hold spaces and
	// parentheses, so fields are counted from the last ')'.
	i := strings.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, errors.New("no ')' after the command name")
	}
	f := strings.Fields(b[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procInfo{}, fmt.Errorf("%d fields after the command name, want at least 20", len(f))
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return procInfo{}, fmt.Errorf("pgrp %q: %v", f[2], err)
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procInfo{}, fmt.Errorf("starttime %q: %v", f[19], err)
	}
	return procInfo{State: f[0][0], Pgrp: pgrp, StartTime: st}, nil
}

// readStat reads a process's /proc stat; ok is false when there is no such
// process.
func readStat(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	p, err := parseStat(string(b))
	if err != nil {
		return procInfo{}, false
	}
	return p, true
}

// groupMembers lists the live processes of a process group with their
// start times.
func groupMembers(pgid int) map[int]procInfo {
	out := map[int]procInfo{}
	if syscall.Kill(-pgid, 0) != nil {
		return out
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok && st.Pgrp == pgid && st.live() {
			out[pid] = st
		}
	}
	return out
}

// identity says whether the pid file's process still runs, and if not,
// why, in words for outputs and errors.
type identity struct {
	// ours: the pid file's process group still has live members, and
	// every one is the pid file's process or was started after it (so the
	// group is the one we started, not a reused id).
	ours bool
	// leaderAlive: the recorded pid itself runs, with its start time.
	leaderAlive bool
	why         string
}

// identify checks the pid file against the running system.
func identify(p PidFile) identity {
	st, ok := readStat(p.Pid)
	if ok && st.live() {
		if st.StartTime != p.StartTime {
			return identity{why: fmt.Sprintf("pid %d is now another process (started at tick %d, the pid file's at %d): the server exited and the pid was reused",
				p.Pid, st.StartTime, p.StartTime)}
		}
		if st.Pgrp != p.Pgid {
			return identity{why: fmt.Sprintf("pid %d left its process group %d (now in %d)", p.Pid, p.Pgid, st.Pgrp)}
		}
		return identity{ours: true, leaderAlive: true}
	}
	// The leader exited; what it started may still run in its group
	// (yarn exited, node did not). The kernel does not reuse an id that
	// is still some group's id, but check the members' start times too.
	members := groupMembers(p.Pgid)
	if len(members) == 0 {
		return identity{why: fmt.Sprintf("pid %d is not running", p.Pid)}
	}
	for pid, m := range members {
		if m.StartTime < p.StartTime {
			return identity{why: fmt.Sprintf("process group %d now holds pid %d, older than the pid file's process: not ours", p.Pgid, pid)}
		}
	}
	return identity{ours: true}
}
