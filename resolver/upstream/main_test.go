package upstream

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts must have exited when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/fleetdns/fleetdns/resolver/upstream.(*Forwarder).probeDown"))
}
