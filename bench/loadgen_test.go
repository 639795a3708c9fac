package bench

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
)

func startUpstream(t *testing.T) *faultdns.Server {
	t.Helper()
	s, err := faultdns.Start("127.0.0.1:0", netip.MustParseAddr("192.0.2.1"), 300)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestClosedLoop(t *testing.T) {
	up := startUpstream(t)
	r, err := RunLoad(context.Background(), Load{Target: up.Addr, Queries: HitQueries(100), Cycle: true,
		Duration: 300 * time.Millisecond, Window: 20, Sockets: 4})
	if err != nil {
		t.Fatal(err)
	}
	if r.Answered == 0 || r.Lost != 0 || r.Answered != r.Sent {
		t.Fatalf("sent %d answered %d lost %d, want all answered", r.Sent, r.Answered, r.Lost)
	}
	if int64(r.Answered) != up.Queries() {
		t.Errorf("answered %d, upstream saw %d queries", r.Answered, up.Queries())
	}
	if len(r.Latencies) != r.Answered || !slices.IsSorted(r.Latencies) || r.Latencies[0] <= 0 {
		t.Errorf("%d latencies (sorted %v, first %v), want one positive per answer, sorted",
			len(r.Latencies), slices.IsSorted(r.Latencies), r.Latencies[0])
	}
}

func TestClosedLoopStopsAtEndOfQueries(t *testing.T) {
	up := startUpstream(t)
	r, err := RunLoad(context.Background(), Load{Target: up.Addr, Queries: MissQueries("t", 500),
		Duration: 5 * time.Second, Window: 50, Sockets: 5})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 500 || r.Answered != 500 || r.Duration > 4*time.Second {
		t.Errorf("sent %d answered %d in %s, want 500 each, ending when the queries run out", r.Sent, r.Answered, r.Duration)
	}
}

func TestOpenLoopRate(t *testing.T) {
	up := startUpstream(t)
	r, err := RunLoad(context.Background(), Load{Target: up.Addr, Queries: HitQueries(100), Cycle: true,
		Duration: time.Second, Rate: 2000, Sockets: 4})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent < 1900 || r.Sent > 2100 || r.Answered != r.Sent {
		t.Errorf("sent %d answered %d in 1s at 2000/s, want about 2000, all answered", r.Sent, r.Answered)
	}
}

func TestLostQueries(t *testing.T) {
	up := startUpstream(t)
	up.Set(faultdns.Drop, 0)
	r, err := RunLoad(context.Background(), Load{Target: up.Addr, Queries: HitQueries(10), Cycle: true,
		Duration: 200 * time.Millisecond, Window: 10, Sockets: 2, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent == 0 || r.Answered != 0 || r.Lost != r.Sent {
		t.Errorf("sent %d answered %d lost %d, want every query lost", r.Sent, r.Answered, r.Lost)
	}
}

func TestMixQueriesDeterministic(t *testing.T) {
	a, b := MixQueries(7, 1000, 1000), MixQueries(7, 1000, 1000)
	for i := range a {
		if string(a[i]) != string(b[i]) {
			t.Fatalf("query %d differs between two lists with the same seed", i)
		}
	}
}

// TestRecord checks what the chaos lab reads: answers counted by response code, and with
// Record one fate per query sent, lost ones included.
func TestRecord(t *testing.T) {
	up := startUpstream(t)
	up.Set(faultdns.ServFail, 0)
	r, err := RunLoad(context.Background(), Load{Target: up.Addr, Queries: HitQueries(10), Cycle: true,
		Duration: 200 * time.Millisecond, Rate: 500, Sockets: 2, Timeout: 100 * time.Millisecond, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent == 0 || r.Rcodes[2] != r.Answered || r.Answered != r.Sent {
		t.Errorf("sent %d answered %d, rcodes %v, want every answer SERVFAIL (2)", r.Sent, r.Answered, r.Rcodes)
	}
	if len(r.Fates) != r.Sent {
		t.Fatalf("%d fates for %d queries, want one each", len(r.Fates), r.Sent)
	}
	for _, f := range r.Fates {
		if f.Rcode != 2 || f.Latency <= 0 || f.At < 0 || f.At > 300*time.Millisecond {
			t.Fatalf("fate %+v, want SERVFAIL with a latency, sent within the run", f)
		}
	}

	up.Set(faultdns.Drop, 0)
	r, err = RunLoad(context.Background(), Load{Target: up.Addr, Queries: HitQueries(10), Cycle: true,
		Duration: 100 * time.Millisecond, Rate: 500, Sockets: 2, Timeout: 100 * time.Millisecond, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Lost != r.Sent || len(r.Fates) != r.Sent {
		t.Fatalf("sent %d lost %d, %d fates, want all lost, one fate each", r.Sent, r.Lost, len(r.Fates))
	}
	for _, f := range r.Fates {
		if f.Latency != Lost {
			t.Fatalf("fate %+v of a dropped query, want Latency Lost", f)
		}
	}
}
