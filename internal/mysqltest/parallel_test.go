package mysqltest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/internal/localenv"
)

// Tests that start servers of their own run in parallel (the upgrade
// end-to-end tests start one per scenario); their installs must not
// collide in the shared system temp directory, as they did before
// mariadb-install-db got a --tmpdir of its own (2 of 3 runs failed).
func TestParallelStarts(t *testing.T) {
	localenv.SkipIfShort(t, "MariaDB")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Start(ctx)
			errs[i] = err
			if err == nil {
				_ = s.Stop()
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("server %d: %v", i, err)
		}
	}
}
