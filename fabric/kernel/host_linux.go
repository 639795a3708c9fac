package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// host is the device and table the prefixes go to, reached over netlink.
type host struct {
	cfg  Config
	nl   *netlink.Handle
	link netlink.Link
	// tun holds the created device's queue. A non-persistent TUN device lives as long as a
	// descriptor is attached to it: if these were closed (or garbage-collected, which closes
	// them) the device would vanish, so the Announcer keeps them for the process lifetime.
	tun []*os.File
}

// openHost finds cfg.Device or creates it.
func openHost(ctx context.Context, cfg Config, log *slog.Logger) (*host, error) {
	// A handle of our own binds its socket to the network namespace we start in.
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("kernel: open netlink: %w", err)
	}
	h := &host{cfg: cfg, nl: nl}
	if err := h.device(ctx, log); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

func (h *host) device(ctx context.Context, log *slog.Logger) error {
	name := h.cfg.Device
	link, err := h.nl.LinkByName(name)
	if err == nil {
		if link.Attrs().Flags&net.FlagUp == 0 {
			// Not ours to change, but a routing daemon ignores what is on a down interface.
			log.LogAttrs(ctx, slog.LevelWarn, "kernel: device is down; the prefixes will not be exported until it is up",
				slog.String("device", name))
		}
		h.link = link
		return nil
	}
	var nf netlink.LinkNotFoundError
	if !errors.As(err, &nf) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("kernel: look up %s: %w", name, err)
	}

	// Queues must be 1, not 0: with 0, netlink closes the descriptors once the device is
	// made, which deletes a non-persistent device at once. TUN_EXCL (in the defaults) fails
	// rather than attach to a device someone else created since the lookup.
	tun := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: name},
		Mode:       netlink.TUNTAP_MODE_TUN,
		Flags:      netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_NO_PI,
		NonPersist: true,
		Queues:     1,
	}
	if err := h.nl.LinkAdd(tun); err != nil {
		return fmt.Errorf("kernel: create TUN device %s: %w", name, err)
	}
	h.link, h.tun = tun, tun.Fds
	// Nobody reads the queue: packets routed into the device wait there until it is full
	// and are then dropped. Addresses on it are delivered locally, never through it.
	if err := h.nl.LinkSetUp(tun); err != nil {
		return fmt.Errorf("kernel: set %s up: %w", name, err)
	}
	return nil
}

func (h *host) created() bool { return h.tun != nil }

// close releases the device, deleting it if we created it, and the netlink socket.
func (h *host) close() {
	for _, f := range h.tun {
		_ = f.Close() // nothing to do if it fails; the device goes with the process anyway
	}
	h.nl.Close()
	h.tun = nil
}

// add puts p on the device or into the table; already being there is success.
func (h *host) add(p netip.Prefix) error {
	var err error
	if h.cfg.Table == 0 {
		err = h.nl.AddrAdd(h.link, addr(p))
	} else {
		err = h.nl.RouteAdd(h.route(p, netlink.SCOPE_LINK))
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("kernel: add %v to %s: %w", p, where(h.cfg), err)
	}
	return nil
}

// remove takes p off the device or out of the table and reports whether it was there.
// ENODEV counts as gone: the prefixes went with the device.
func (h *host) remove(p netip.Prefix) (bool, error) {
	var err error
	if h.cfg.Table == 0 {
		err = h.nl.AddrDel(h.link, addr(p))
	} else {
		// SCOPE_NOWHERE matches a route of any scope, as `ip route del` does. Device,
		// protocol and table must still match, so an operator's route to p stays.
		err = h.nl.RouteDel(h.route(p, netlink.SCOPE_NOWHERE))
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EADDRNOTAVAIL), errors.Is(err, unix.ESRCH),
		errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV):
		return false, nil
	}
	return false, fmt.Errorf("kernel: remove %v from %s: %w", p, where(h.cfg), err)
}

// addr is p as an address of p's length, global scope.
func addr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipNet(p), Scope: int(netlink.SCOPE_UNIVERSE)}
	if p.Addr().Is6() {
		// Without NODAD an IPv6 address stays tentative while duplicate address detection
		// runs (on devices that do it), and BIRD does not export tentative addresses.
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// route is p as "p dev Device proto static" in the table.
func (h *host) route(p netip.Prefix, scope netlink.Scope) *netlink.Route {
	return &netlink.Route{
		LinkIndex: h.link.Attrs().Index,
		Dst:       ipNet(p),
		Table:     h.cfg.Table,
		Protocol:  unix.RTPROT_STATIC,
		Scope:     scope,
		Type:      unix.RTN_UNICAST,
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
