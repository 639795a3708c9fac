package resolver

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection guards the package map of docs/DESIGN.md: the client path (resolver,
// cache, policy) never pulls in gobgp or gRPC, cache and policy never import each other, the
// resolver never reaches the fabric, and the product binary never links the benchmark's
// plotting (gonum) or the test tools under bench/: they share the module, not the binary.
func TestImportDirection(t *testing.T) {
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"github.com/fleetdns/fleetdns/resolver", []string{"gobgp", "google.golang.org/grpc", "fleetdns/fabric"}},
		{"github.com/fleetdns/fleetdns/cache", []string{"gobgp", "google.golang.org/grpc", "fleetdns/policy", "fleetdns/resolver"}},
		{"github.com/fleetdns/fleetdns/policy", []string{"gobgp", "google.golang.org/grpc", "fleetdns/cache", "fleetdns/resolver"}},
		{"github.com/fleetdns/fleetdns/cmd/fleetdns", []string{"gonum.org", "fleetdns/bench"}},
		// The upstream side knows nothing of the server, the cache or the policy.
		{"github.com/fleetdns/fleetdns/resolver/upstream", []string{"gobgp", "fleetdns/cache", "fleetdns/policy", "github.com/fleetdns/fleetdns/resolver$"}},
	} {
		out, err := exec.Command("go", "list", "-deps", tc.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", tc.pkg, err, out)
		}
		if !strings.Contains(string(out), tc.pkg) {
			t.Fatalf("go list -deps %s does not list the package itself:\n%s", tc.pkg, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range tc.forbidden {
				if exact, ok := strings.CutSuffix(f, "$"); (ok && dep == exact) || (!ok && strings.Contains(dep, f)) {
					t.Errorf("%s depends on %s", tc.pkg, dep)
				}
			}
		}
	}
}
