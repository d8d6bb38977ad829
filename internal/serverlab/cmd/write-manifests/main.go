// Command write-manifests writes the single-server lab's Backstage release
// manifests (serverlab.Releases) into a directory, for
// `make backstage-server-tools`, which primes the npm cache with an upgrade.
package main

import (
	"fmt"
	"os"

	"github.com/stagehand-dev/stagehand/internal/serverlab"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: write-manifests DIR")
		os.Exit(2)
	}
	if err := serverlab.WriteManifests(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "write-manifests:", err)
		os.Exit(1)
	}
}
