package main

import (
	"os"
	"testing"
)

func TestNewTrust(t *testing.T) {
	euid := uint32(os.Geteuid())
	tests := []struct {
		name     string
		user     string
		explicit bool
		wantErr  bool
		trusted  []uint32 // besides root and the effective user
	}{
		{name: "default user missing", user: "fleetdns-no-such-user", explicit: false},
		{name: "named user missing", user: "fleetdns-no-such-user", explicit: true, wantErr: true},
		{name: "uid without an entry", user: "4242", explicit: true, trusted: []uint32{4242}},
		{name: "user by name", user: "root", explicit: true},
		{name: "none", user: "", explicit: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := newTrust(tc.user, tc.explicit)
			if (err != nil) != tc.wantErr {
				t.Fatalf("newTrust(%q, %v) error = %v, want error %v", tc.user, tc.explicit, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			want := map[uint32]bool{0: true, euid: true}
			for _, u := range tc.trusted {
				want[u] = true
			}
			if len(tr.uids) != len(want) {
				t.Errorf("newTrust(%q, %v) trusts %v, want %v", tc.user, tc.explicit, tr.uids, want)
			}
			for u := range want {
				if !tr.uids[u] {
					t.Errorf("newTrust(%q, %v) trusts %v, want %v", tc.user, tc.explicit, tr.uids, want)
				}
			}
		})
	}
}
