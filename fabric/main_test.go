package fabric

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (health loops, controllers, failover, endpoints, nodes) must have
// exited when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
