package policy

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", 64) + ".example.com" // a label of 64 octets
	dc := SynthDC{Label: "dc", Local: "dc1", Domains: []string{"prd.example.com"}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for none
	}{
		{"zero", Config{}, ""},
		{"every rule", Config{
			AccessControl: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			LocalZones: []LocalZone{{Name: "a.test", Type: "static"}, {Name: "b.test.", Type: "transparent"},
				{Name: "c.test", Type: "typetransparent"}, {Name: "d.test", Type: "redirect"},
				{Name: "e.test", Type: "refuse"}, {Name: "f.test", Type: "always_nxdomain"}},
			BlockAAAA: BlockAAAA{Suffixes: []string{"prd.example.com"}},
			SynthIP:   SynthIP{Domain: "ip.example.com", TTL: time.Minute},
			SynthDC:   dc,
			JunkGuard: []string{"prd.example.com", "tst.example.com"},
		}, ""},
		{"invalid prefix", Config{AccessControl: []netip.Prefix{{}}}, "access_control"},
		{"unknown zone type", Config{LocalZones: []LocalZone{{Name: "a.test", Type: "stattic"}}}, `a.test: type "stattic"`},
		{"zone type case", Config{LocalZones: []LocalZone{{Name: "a.test", Type: "Static"}}}, `type "Static"`},
		{"zone type missing", Config{LocalZones: []LocalZone{{Name: "a.test"}}}, `type ""`},
		{"unbound type not built", Config{LocalZones: []LocalZone{{Name: "a.test", Type: "deny"}}}, `type "deny"`},
		{"zone name empty label", Config{LocalZones: []LocalZone{{Name: "a..test", Type: "static"}}}, `"a..test" is not a domain name`},
		{"zone name empty", Config{LocalZones: []LocalZone{{Name: "", Type: "static"}}}, `"" is not a domain name`},
		{"zone name label too long", Config{LocalZones: []LocalZone{{Name: long, Type: "static"}}}, "is not a domain name"},
		{"block_aaaa suffix", Config{BlockAAAA: BlockAAAA{Suffixes: []string{"a..test"}}}, `"a..test" is not a domain name`},
		{"block_aaaa suffix empty", Config{BlockAAAA: BlockAAAA{Suffixes: []string{""}}}, `"" is not a domain name`},
		{"junk_guard suffix", Config{JunkGuard: []string{long}}, "is not a domain name"},
		{"synthesize.dc domain", Config{SynthDC: SynthDC{Label: "dc", Local: "dc1", Domains: []string{"a..test"}}}, `"a..test" is not a domain name`},
		{"synthesize.ip negative ttl", Config{SynthIP: SynthIP{Domain: "ip.example.com", TTL: -time.Second}}, "synthesize.ip.ttl"},
		{"synthesize.dc without local", Config{SynthDC: SynthDC{Label: "dc", Domains: []string{"prd.example.com"}}}, "synthesize.dc"},
		{"synthesize.dc without domains", Config{SynthDC: SynthDC{Label: "dc", Local: "dc1"}}, "synthesize.dc"},
		// Names New turns into wire format must be checked too: a synthesize.ip domain that does
		// not pack becomes the root, and then every question is NXDOMAIN.
		{"synthesize.ip domain", Config{SynthIP: SynthIP{Domain: "ip..example.com"}}, "synthesize.ip"},
		{"synthesize.dc local", Config{SynthDC: SynthDC{Label: "dc", Local: "dc..1", Domains: dc.Domains}}, "synthesize.dc"},
		{"synthesize.dc label of two labels", Config{SynthDC: SynthDC{Label: "dc.x", Local: "dc1", Domains: dc.Domains}}, "synthesize.dc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && err == nil:
				t.Errorf("Validate() = nil, want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			// New checks the same, before reading any file.
			_, err = New(tc.cfg)
			if (err == nil) != (tc.want == "") {
				t.Errorf("New() error = %v, want error %v", err, tc.want != "")
			}
		})
	}
}

func TestNewLocalDataErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []string
		want []string // substrings of the error
	}{
		{"bad address", []string{"www.example.test. 300 IN A 192.0.2.300"}, []string{"local_data[0]", "192.0.2.300"}},
		{"unknown type", []string{"www.example.test. 300 IN BOGUS x"}, []string{"local_data[0]", "BOGUS"}},
		{"second entry", []string{"www.example.test. 300 IN A 192.0.2.1", "www.example.test. 300 IN AAAA 192.0.2.1"},
			[]string{"local_data[1]", "AAAA"}},
		// Parsed without error (empty RDATA is for dynamic updates), but served it is an A or
		// MX with RDLENGTH 0, which no client can parse.
		{"missing rdata A", []string{"www.example.test. 300 IN A"}, []string{"local_data[0]"}},
		{"missing rdata MX", []string{"www.example.test. 300 IN MX"}, []string{"local_data[0]"}},
		{"empty", []string{""}, []string{"local_data[0]"}},
		{"comment only", []string{"; nothing here"}, []string{"local_data[0]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{LocalData: tc.data})
			if err == nil {
				t.Fatalf("New(local_data %q) error = nil, want an error containing %q", tc.data, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New(local_data %q) error = %q, want it to contain %q", tc.data, err, w)
				}
			}
		})
	}
}
