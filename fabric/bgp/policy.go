package bgp

import (
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Names of the gobgp policy objects this package owns.
const (
	importPolicyName = "fleetdns-import"
	exportPolicyName = "fleetdns-export"
	ebgpSetName      = "fleetdns-ebgp-peers"
	secondaryV4Name  = "fleetdns-secondary-v4"
	secondaryV6Name  = "fleetdns-secondary-v6"
	// globalTable is gobgp's name for the global RIB's policy assignments (table.GLOBAL_RIB_NAME).
	globalTable = "global"
)

// gracefulShutdown is the well-known community 65535:0 (RFC 8326).
const gracefulShutdown uint32 = 0xFFFF0000

var (
	familyV4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyV6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

func family(a netip.Addr) *api.Family {
	if a.Is4() {
		return familyV4
	}
	return familyV6
}

// policies builds what makes the speaker send only its own prefixes, marked per peer.
//
// gobgp v3 has per-peer policies only for route-server clients; for ordinary peers the one
// global export policy runs once per destination peer, and a neighbor-set condition then
// matches the destination. So the per-peer choice (prepend on eBGP, never on iBGP, where an
// AS path holding the peer's own ASN is silently dropped) is a neighbor set of the eBGP
// peers. LOCAL_PREF needs no policy: it travels on the path and gobgp strips it towards
// eBGP peers by itself.
//
// Learned routes are rejected by route type, on import (they never reach the RIB) and on
// export (belt and braces). A default-reject import policy would reject our own AddPath
// routes too, since gobgp runs local paths through the global import policy.
func policies(cfg Config) (sets []*api.DefinedSet, pols []*api.Policy, assign []*api.PolicyAssignment) {
	rejectLearned := []*api.Statement{
		routeTypeReject("reject-external", api.Conditions_ROUTE_TYPE_EXTERNAL),
		routeTypeReject("reject-internal", api.Conditions_ROUTE_TYPE_INTERNAL),
	}
	imp := &api.Policy{Name: importPolicyName, Statements: rejectLearned}
	exp := &api.Policy{Name: exportPolicyName, Statements: clone(rejectLearned)}

	var ebgp []string
	for _, p := range cfg.Peers {
		if p.ASN != cfg.ASN {
			ebgp = append(ebgp, netip.PrefixFrom(p.Address, p.Address.BitLen()).String())
		}
	}
	// gobgp matches an empty neighbor set against every peer, and a prefix set holds one
	// address family only: add the statements only when their sets are non-empty.
	if len(ebgp) > 0 {
		var v4, v6 []*api.Prefix
		for _, p := range cfg.Prefixes {
			if !p.Secondary {
				continue
			}
			bits := uint32(p.Prefix.Bits())
			ap := &api.Prefix{IpPrefix: p.Prefix.String(), MaskLengthMin: bits, MaskLengthMax: bits}
			if p.Prefix.Addr().Is4() {
				v4 = append(v4, ap)
			} else {
				v6 = append(v6, ap)
			}
		}
		for _, fam := range []struct {
			name     string
			prefixes []*api.Prefix
		}{{secondaryV4Name, v4}, {secondaryV6Name, v6}} {
			if len(fam.prefixes) == 0 {
				continue
			}
			sets = append(sets, &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: fam.name, Prefixes: fam.prefixes})
			exp.Statements = append(exp.Statements, &api.Statement{
				Name: "prepend-" + fam.name,
				Conditions: &api.Conditions{
					PrefixSet:   &api.MatchSet{Type: api.MatchSet_ANY, Name: fam.name},
					NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: ebgpSetName},
				},
				Actions: &api.Actions{
					// NONE: modify and fall through to the default accept.
					RouteAction: api.RouteAction_NONE,
					AsPrepend:   &api.AsPrependAction{Asn: cfg.ASN, Repeat: uint32(cfg.SecondaryPrepend)},
				},
			})
		}
		if len(v4)+len(v6) > 0 {
			sets = append([]*api.DefinedSet{{DefinedType: api.DefinedType_NEIGHBOR, Name: ebgpSetName, List: ebgp}}, sets...)
		}
	}

	pols = []*api.Policy{imp, exp}
	assign = []*api.PolicyAssignment{
		{Name: globalTable, Direction: api.PolicyDirection_IMPORT, Policies: []*api.Policy{{Name: importPolicyName}}, DefaultAction: api.RouteAction_ACCEPT},
		{Name: globalTable, Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: exportPolicyName}}, DefaultAction: api.RouteAction_ACCEPT},
	}
	return sets, pols, assign
}

func routeTypeReject(name string, t api.Conditions_RouteType) *api.Statement {
	return &api.Statement{
		Name:       name,
		Conditions: &api.Conditions{RouteType: t},
		Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
	}
}

func clone(sts []*api.Statement) []*api.Statement {
	out := make([]*api.Statement, len(sts))
	for i, s := range sts {
		c := proto.Clone(s).(*api.Statement)
		c.Name = exportPolicyName + "-" + s.Name
		out[i] = c
	}
	return out
}

// path builds the announcement of p. Its next hop is unspecified (0.0.0.0 or ::), which
// gobgp replaces with the session's local address per peer: next-hop self on both iBGP and
// eBGP. LOCAL_PREF rides on the path; gobgp removes it towards eBGP peers.
func path(p Prefix, secondaryLocalPref uint32, graceful bool) (*api.Path, error) {
	fam := family(p.Prefix.Addr())
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Prefix.Addr().String(), PrefixLen: uint32(p.Prefix.Bits())})
	if err != nil {
		return nil, err
	}
	var nh proto.Message = &api.NextHopAttribute{NextHop: "0.0.0.0"}
	if !p.Prefix.Addr().Is4() {
		nh = &api.MpReachNLRIAttribute{Family: fam, NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri}}
	}
	pref := uint32(primaryLocalPref)
	if p.Secondary {
		pref = secondaryLocalPref
	}
	attrs := []proto.Message{
		&api.OriginAttribute{Origin: 0}, // IGP
		nh,
		&api.LocalPrefAttribute{LocalPref: pref},
	}
	comms, err := communities(p.Communities, graceful)
	if err != nil {
		return nil, err
	}
	if len(comms) > 0 {
		attrs = append(attrs, &api.CommunitiesAttribute{Communities: comms})
	}
	pattrs := make([]*anypb.Any, 0, len(attrs))
	for _, a := range attrs {
		x, err := anypb.New(a)
		if err != nil {
			return nil, err
		}
		pattrs = append(pattrs, x)
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: pattrs}, nil
}

func communities(ss []string, graceful bool) ([]uint32, error) {
	out := make([]uint32, 0, len(ss)+1)
	for _, s := range ss {
		c, err := parseCommunity(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if graceful {
		out = append(out, gracefulShutdown)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
