package workflows

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Temporal knows a timed-out attempt as TemporalTimeout:<kind>, not by the
// name status shows; listing Timeout must stop those retries too.
func TestNonRetryableTimeoutMapsOntoTemporalNames(t *testing.T) {
	assert.Equal(t, []string{"KubeForbidden", "Timeout", "TemporalTimeout:StartToClose", "TemporalTimeout:Heartbeat"},
		nonRetryableTypes([]string{"KubeForbidden", "Timeout"}))
	assert.Nil(t, nonRetryableTypes(nil))
}
