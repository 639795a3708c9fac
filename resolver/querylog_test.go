package resolver

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestQueryLog(t *testing.T) {
	up := startFault(t, "192.0.2.30", 300)
	var buf lockedBuffer
	s := startServerLog(t, Config{Forward: forwardTo(up), QueryLog: true}, testCacheConfig(),
		slog.New(slog.NewTextHandler(&buf, nil)))
	ask(t, s, "udp", "log.example.test", dns.TypeA)
	ask(t, s, "udp", "log.example.test", dns.TypeA)
	ask(t, s, "udp", "localhost", dns.TypeA)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var queries []string
	for _, l := range lines {
		if strings.Contains(l, "msg=query") {
			queries = append(queries, l)
		}
	}
	want := []string{"source=upstream", "source=cache", "source=local"}
	if len(queries) != len(want) {
		t.Fatalf("query log lines = %q, want %d", queries, len(want))
	}
	for i, l := range queries {
		for _, field := range []string{"client=127.0.0.1:", "type=A", "rcode=NOERROR", "latency=", want[i]} {
			if !strings.Contains(l, field) {
				t.Errorf("line %d = %q, want it to contain %q", i, l, field)
			}
		}
	}
	if !strings.Contains(queries[0], "name=log.example.test.") {
		t.Errorf("line 0 = %q, want the name", queries[0])
	}
}
