package kernel

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestValidate(t *testing.T) {
	good := prefixes("198.51.100.53/32", "2001:db8:5353::53/128")
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none: valid
	}{
		{name: "default", cfg: Config{Device: DefaultDevice, Prefixes: good}},
		{name: "empty device means default", cfg: Config{Prefixes: good}},
		{name: "lo, table 100", cfg: Config{Device: "lo", Table: 100, Prefixes: good}},
		{name: "15-byte name, largest table", cfg: Config{Device: "abcdefghijklmno", Table: 1<<32 - 1, Prefixes: good}},
		{name: "shorter prefixes", cfg: Config{Prefixes: prefixes("198.51.100.0/24", "2001:db8::/32")}},

		{name: "negative table", cfg: Config{Table: -1, Prefixes: good}, want: []string{"kernel.table: -1:"}},
		{name: "table above 2^32-1", cfg: Config{Table: 1 << 32, Prefixes: good}, want: []string{"kernel.table: 4294967296:"}},
		{name: "main table", cfg: Config{Table: 254, Prefixes: good}, want: []string{"kernel.table: 254:"}},
		{name: "local table", cfg: Config{Table: 255, Prefixes: good}, want: []string{"kernel.table: 255:"}},
		{name: "default table", cfg: Config{Table: 253, Prefixes: good}, want: []string{"kernel.table: 253:"}},
		{name: "device too long", cfg: Config{Device: "abcdefghijklmnop", Prefixes: good}, want: []string{`kernel.device: "abcdefghijklmnop": longer than 15 bytes`}},
		{name: "device with slash", cfg: Config{Device: "a/b", Prefixes: good}, want: []string{`kernel.device: "a/b":`}},
		{name: "device with space", cfg: Config{Device: "fleet dns", Prefixes: good}, want: []string{`kernel.device: "fleet dns": may not contain whitespace`}},
		{name: "device with tab", cfg: Config{Device: "fleet\tdns", Prefixes: good}, want: []string{"kernel.device:"}},
		{name: "device template", cfg: Config{Device: "tun%d", Prefixes: good}, want: []string{`kernel.device: "tun%d":`}},
		{name: "device dot", cfg: Config{Device: ".", Prefixes: good}, want: []string{`kernel.device: ".":`}},
		{name: "no prefixes", cfg: Config{}, want: []string{"kernel.prefixes: at least one"}},
		{name: "host bits set", cfg: Config{Prefixes: prefixes("2001:db8::53/128", "198.51.100.53/24")},
			want: []string{"kernel.prefixes[1]: 198.51.100.53/24: host bits set (did you mean 198.51.100.0/24?)"}},
		{name: "duplicate", cfg: Config{Prefixes: prefixes("198.51.100.53/32", "2001:db8::53/128", "198.51.100.53/32")},
			want: []string{"kernel.prefixes[2]: 198.51.100.53/32: duplicate of kernel.prefixes[0]"}},
		{name: "invalid prefix", cfg: Config{Prefixes: []netip.Prefix{{}}}, want: []string{"kernel.prefixes[0]:"}},
		{name: "IPv4-mapped", cfg: Config{Prefixes: prefixes("::ffff:198.51.100.53/128")}, want: []string{"kernel.prefixes[0]: ::ffff:198.51.100.53/128: not a valid IPv4 or IPv6 prefix"}},
		{name: "every error at once", cfg: Config{Device: "a b", Table: 254},
			want: []string{"kernel.device:", "kernel.table:", "kernel.prefixes:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// New, Status, and the methods before Start touch nothing, so they run without root.
func TestNotStarted(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := New(Config{}, log); err == nil || !strings.Contains(err.Error(), "kernel.prefixes") {
		t.Errorf("New(empty config) error = %v, want one naming kernel.prefixes", err)
	}
	cfg := DefaultConfig()
	cfg.Prefixes = prefixes("198.51.100.53/32")
	if _, err := New(cfg, nil); err == nil {
		t.Error("New(cfg, nil logger) = nil error, want one")
	}
	a, err := New(Config{Table: 100, Prefixes: cfg.Prefixes}, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := context.Background()
	if err := a.Announce(ctx, false); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Announce before Start = %v, want ErrNotStarted", err)
	}
	if err := a.Withdraw(ctx); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Withdraw before Start = %v, want ErrNotStarted", err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Errorf("Stop before Start = %v, want nil", err)
	}
	got := a.Status()
	if got.Device != DefaultDevice || got.Table != 100 || got.Created || got.Announced ||
		len(got.Prefixes) != 1 || got.Prefixes[0] != "198.51.100.53/32" {
		t.Errorf("Status() = %+v, want device %s, table 100, not created, not announced, [198.51.100.53/32]", got, DefaultDevice)
	}
}
