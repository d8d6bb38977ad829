// Package localenv holds what the test harnesses (dev server, control plane,
// PostgreSQL, Backstage) share about this machine: where the repository is,
// and how to pick loopback ports nobody is using.
package localenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// RepoRoot walks up from the working directory (a package directory under
// go test) to the directory holding the main module's go.mod. It checks the
// module path, so the separate module in tools/kube is not mistaken for it.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the repository root: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/stagehand-dev/stagehand\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the stagehand repository root (its go.mod) above the working directory")
		}
		dir = parent
	}
}

// FreePorts reserves n distinct loopback ports by listening on port 0, then
// releases them for the caller's servers to bind. The window between release
// and bind is tiny and the kernel does not hand a just-released port out
// again at once, which is good enough on a test machine.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreePort is FreePorts(1).
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// OnFreePort runs start with a free port until it succeeds, at most five
// times: a port picked by the kernel can be taken again before the server
// binds it (other test packages start servers at the same time), so a
// failed start is retried on a fresh port. It gives up early once ctx ends
// and returns the last start's error.
func OnFreePort(ctx context.Context, start func(port int) error) error {
	var lastErr error
	for range 5 {
		port, err := FreePort()
		if err != nil {
			return err
		}
		if lastErr = start(port); lastErr == nil || ctx.Err() != nil {
			break
		}
	}
	return lastErr
}
