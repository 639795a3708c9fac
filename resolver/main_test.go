package resolver

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (listeners, flights, prefetches) must have exited when the
// tests end. A background probe of a down upstream (upstream.Forwarder.probeDown) outlives its query by
// design, bounded by the upstream's RTO (at most 4 s): one started by the last test may still
// be waiting.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/fleetdns/fleetdns/resolver/upstream.(*Forwarder).probeDown"))
}
