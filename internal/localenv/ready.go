package localenv

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// WaitHTTPReady polls url until it answers 200 (nil), the process whose
// exit closes exited ends first, or timeout passes. The error says which,
// after how long, and the last answer; callers add their log tail.
func WaitHTTPReady(ctx context.Context, url string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	begin := time.Now()
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready at %s, after %s", url, time.Since(begin).Round(time.Millisecond))
		case <-ctx.Done():
			return fmt.Errorf("not ready at %s after %s (last: %s)", url, time.Since(begin).Round(time.Millisecond), last)
		case <-tick.C:
		}
	}
}
