package resolver

import "github.com/fleetdns/fleetdns/resolver/upstream"

// ZoneConfig is a forward zone as the resolver's Config lists it; the upstream side
// (resolver/upstream) owns it and its rules.
type ZoneConfig = upstream.ZoneConfig
