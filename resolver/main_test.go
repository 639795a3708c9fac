package resolver

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (listeners, flights, prefetches, background probes) must have
// exited when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
