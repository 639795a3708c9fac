package kernel

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
)

// DefaultDevice is the interface Start creates when Config.Device is empty.
const DefaultDevice = "fleetdns0"

// maxDeviceName is IFNAMSIZ-1: the kernel's interface names are 15 bytes and a NUL.
const maxDeviceName = 15

// Routing tables a prefix may not go into: they are the kernel's own (default, main and
// local), and a route there would be used for forwarding, not only read by the daemon.
const (
	tableDefault = 253
	tableMain    = 254
	tableLocal   = 255
)

// Config says where the prefixes go. The routing daemon on the node must be told the same:
//
//   - Table 0: each prefix is added to Device as an address with the prefix's length, which
//     BIRD exports with `protocol direct` (FRR: `redistribute connected`).
//   - Table N (1 to 2^32-1, but not 253, 254 or 255): each prefix becomes the route
//     "prefix dev Device proto static scope link" in table N, which BIRD learns with
//     `protocol kernel { kernel table N; learn; }` (FRR: `ip import-table N`).
//
// In address mode the node's listeners can bind the addresses, which are local while
// announced. A prefix shorter than /32 or /128 becomes the address at its start (the
// prefix is canonical), and the kernel routes the rest of the prefix to the device: on the
// TUN device, where nothing reads, the node's own traffic to those addresses is dropped;
// on lo, they are all local. In table mode nothing is local: the table is only read by the
// routing daemon, and the addresses the listeners answer on must be configured elsewhere
// (on lo, for instance).
type Config struct {
	Device   string         // default "fleetdns0"; created as a TUN device if it does not exist
	Table    int            // 0: addresses on Device; otherwise routes in this table
	Prefixes []netip.Prefix // at least one; IPv4 and IPv6 may be mixed
}

// DefaultConfig is address mode on fleetdns0, without prefixes.
func DefaultConfig() Config {
	return Config{Device: DefaultDevice}
}

// Validate reports every problem in c at once. An empty Device means DefaultDevice.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Device != "" {
		if err := checkDevice(c.Device); err != nil {
			bad("kernel.device: %q: %w", c.Device, err)
		}
	}
	switch {
	case c.Table < 0 || int64(c.Table) > math.MaxUint32:
		bad("kernel.table: %d: must be 0 (addresses on the device) or a table from 1 to %d", c.Table, uint32(math.MaxUint32))
	case c.Table == tableDefault || c.Table == tableMain || c.Table == tableLocal:
		bad("kernel.table: %d: is one of the kernel's own tables (253 default, 254 main, 255 local); use a table of its own", c.Table)
	}

	if len(c.Prefixes) == 0 {
		bad("kernel.prefixes: at least one prefix is needed")
	}
	seen := make(map[netip.Prefix]int, len(c.Prefixes))
	for i, p := range c.Prefixes {
		if !p.IsValid() || p.Addr().Is4In6() {
			bad("kernel.prefixes[%d]: %v: not a valid IPv4 or IPv6 prefix", i, p)
			continue
		}
		if p != p.Masked() {
			bad("kernel.prefixes[%d]: %v: host bits set (did you mean %v?)", i, p, p.Masked())
			continue
		}
		if j, dup := seen[p]; dup {
			bad("kernel.prefixes[%d]: %v: duplicate of kernel.prefixes[%d]", i, p, j)
			continue
		}
		seen[p] = i
	}
	return errors.Join(errs...)
}

// checkDevice applies the kernel's dev_valid_name, and also refuses '%': the TUN driver
// would take "name%d" as a template and pick a name of its own.
func checkDevice(name string) error {
	switch {
	case len(name) > maxDeviceName:
		return fmt.Errorf("longer than %d bytes", maxDeviceName)
	case name == "." || name == "..":
		return errors.New("not a valid interface name")
	case strings.ContainsAny(name, "/:%\x00"):
		return errors.New("may not contain '/', ':', '%' or NUL")
	case strings.ContainsAny(name, " \t\n\v\f\r"):
		return errors.New("may not contain whitespace")
	}
	return nil
}

// withDefaults returns c with an empty Device replaced by DefaultDevice and its own copy of
// Prefixes.
func (c Config) withDefaults() Config {
	if c.Device == "" {
		c.Device = DefaultDevice
	}
	c.Prefixes = append([]netip.Prefix(nil), c.Prefixes...)
	return c
}
