package secrets

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRedactor(t *testing.T) {
	r := NewRedactor("***", 4)
	r.Add("abc", "hunter2", "hunter2-long", "")
	assert.Equal(t, "pw=*** and *** but abc stays", r.Clean("pw=hunter2 and hunter2-long but abc stays"),
		"the longer value is replaced whole, a value under the minimum length is ignored")
	assert.Equal(t, len("hunter2-long"), r.Longest())

	var none *Redactor
	assert.Equal(t, "hunter2", none.Clean("hunter2"), "a nil Redactor cleans nothing")
	assert.Equal(t, 0, none.Longest())

	one := NewRedactor("REDACTED", 0)
	one.Add("x")
	assert.Equal(t, "REDACTED-y", one.Clean("x-y"), "a minimum below 1 still ignores only the empty value")
}

func TestRedactorConcurrent(t *testing.T) {
	r := NewRedactor("***", 1)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); r.Add(strings.Repeat("s", i+1)) }()
		go func() { defer wg.Done(); _ = r.Clean("sss") }()
	}
	wg.Wait()
	assert.Equal(t, "***", r.Clean("ssss"))
}
