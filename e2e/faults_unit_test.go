package e2e

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// The fault suite's secret search must find a value hidden the way history
// hides payloads (base64 in the CLI's JSON), or its silence proves nothing.
func TestSecretSearchSeesIntoPayloads(t *testing.T) {
	s := newPlantedSecrets()
	for what, v := range s.values() {
		if len(v) < 30 || strings.Count(v, v[:12]) != 1 {
			t.Errorf("%s %q is not distinctive", what, v)
		}
	}
	payload := base64.StdEncoding.EncodeToString([]byte(`{"with":{"remote":"http://x-access-token:` + s.gitToken + `@git.local/portal.git"}}`))
	hist := []byte(fmt.Sprintf(`{"events":[{"eventId":"9","input":{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":%q}]}}]}`, payload))
	places := map[string]string{"history JSON": string(hist), "history payloads": decodedPayloads(t, hist), "clean log": "level=INFO msg=merged"}
	leaks := findLeaks(places, s.values())
	if len(leaks) != 1 || !strings.Contains(leaks[0], "git token is in the history payloads") {
		t.Errorf("leaks %q, want exactly the git token in the decoded payloads", leaks)
	}
}
