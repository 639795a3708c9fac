//go:build !linux

package kernel

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
)

// errNotLinux: the TUN device, addresses and tables this package drives are Linux's.
var errNotLinux = errors.New("kernel: announcing through the kernel works on Linux only")

type host struct{}

func openHost(context.Context, Config, *slog.Logger) (*host, error) { return nil, errNotLinux }

func (*host) created() bool                     { return false }
func (*host) close()                            {}
func (*host) add(netip.Prefix) error            { return errNotLinux }
func (*host) remove(netip.Prefix) (bool, error) { return false, errNotLinux }
