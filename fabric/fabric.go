// Package fabric holds the control loops of server mode: the health checker whose verdict
// decides whether this node attracts anycast traffic, and the controller that turns that
// verdict (and a planned shutdown) into announcements through an Announcer. It never imports
// the resolver: the checks it runs and the speaker it drives arrive as small interfaces that
// cmd wires.
package fabric

import "context"

// Announcer is what the controller needs from a BGP speaker (fabric/bgp implements it).
type Announcer interface {
	// Announce sends the configured prefixes to every peer; graceful marks them with the
	// GRACEFUL_SHUTDOWN community 65535:0 (RFC 8326) so that routers prefer other paths first.
	Announce(ctx context.Context, graceful bool) error
	// Withdraw takes the prefixes back from every peer.
	Withdraw(ctx context.Context) error
}
