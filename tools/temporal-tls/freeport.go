package main

import (
	"fmt"
	"net"
)

// freePort asks the kernel for a free port for the services other than the
// frontend (whose port the caller chooses).
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
