package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"
)

// FuzzZoneFile feeds arbitrary bytes as a local_data_files zone file through the parser
// fleetdns loads them with. A bad file must be an error, never a panic; a good one must give a
// policy whose answers for the file's names are whole and pack.
func FuzzZoneFile(f *testing.F) {
	// Every zone file of the repository's tests, good and bad; testdata/fuzz/FuzzZoneFile holds
	// the slightly broken ones and the regressions.
	for _, pattern := range []string{"testdata/*/*.zone", "../cmd/fleetdns/testdata/*.zone", "../cmd/fleetdns/testdata/*/*.zone"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.addZone(bytes.NewReader(data), "fuzz.zone"); err != nil {
			return
		}
		// Ask for the names the file has (the parser accepted it, so it reads again), a name
		// below each, and the types that take different branches.
		zp := dns.NewZoneParser(bytes.NewReader(data), "", "fuzz.zone")
		asked := 0
		for rr, ok := zp.Next(); ok && asked < 64; rr, ok = zp.Next() {
			for _, name := range []string{rr.Header().Name, "x." + rr.Header().Name} {
				for _, qtype := range []uint16{rr.Header().Rrtype, dns.TypeA, dns.TypeCNAME, dns.TypeSOA, dns.TypeANY} {
					asked++
					q := Question{Name: wireName(name), Type: qtype, Class: dns.ClassINET}
					v := p.Decide(&q)
					if (v.Action == Answer || v.Action == Chase) && (v.Msg == nil || len(v.Msg.Question) != 1) {
						t.Fatalf("Decide(%s %s) = %v with message %v, want a message with the question", name,
							dns.TypeToString[qtype], v.Action, v.Msg)
					}
					if v.Msg != nil {
						if _, err := v.Msg.Pack(); err != nil {
							t.Fatalf("Decide(%s %s): answer does not pack: %v", name, dns.TypeToString[qtype], err)
						}
					}
				}
			}
		}
	})
}
