package gnmi

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/gnmi/oc"
)

// WithState fills d's state containers, in place, from what the
// controller reports: every state container mirrors its config container
// (the configuration in effect, as OpenConfig models it; secrets such as a
// BGP password have no state leaf and stay out), configured routes are of
// static origin, each peering in peerings gets its active flag and
// reason, its mode (direct or through the gateway pool serving the peer)
// with why and the load measured, gateway pools their live members,
// hosts get what their OHC reported (programmed entries, whether
// it is primary on its switch), each VPC's state lists every candidate of
// its RIB (st.RIBs), and the controller's counters come from st.
// Peerings and VPCs that d does not configure are ignored.
//
// d is typically a fresh FromConfig of the configuration the controller
// runs; WithState must not be called on a Device that others read
// concurrently.
func WithState(d *oc.Device, peerings []controller.PeeringStatus, st controller.Stats) {
	if d == nil {
		return
	}
	mirror(reflect.ValueOf(d))
	m := d.GetOrCreateP4Mesh()
	chosen := map[[3]string]controller.RouteStatus{}
	for _, rs := range st.Routes {
		nh := rs.Route.NextHop
		if nh == "" {
			nh = dropNextHop
		}
		chosen[[3]string{rs.Route.VPC, rs.Route.Prefix.String(), nh}] = rs
	}
	for _, r := range routeList(m) {
		if r.Config != nil {
			rst := r.GetOrCreateState()
			rst.Origin = oc.P4Mesh_RouteOrigin_static
			if rs, ok := chosen[[3]string{r.GetVpc(), r.GetPrefix(), r.GetNextHop()}]; ok {
				rst.Chosen = ygot.Bool(rs.Chosen)
				rst.Reason = str(rs.Reason)
			}
		}
	}
	for _, ps := range peerings {
		p := m.GetPeerings().GetPeering(ps.VPC, ps.PeerVPC)
		if p == nil {
			continue
		}
		s := p.GetOrCreateState()
		s.Active = ygot.Bool(ps.Active)
		s.Reason = str(ps.Reason)
		s.Mode, _ = enumOf[oc.E_P4Mesh_P4Mesh_Peerings_Peering_State_Mode](ps.Mode)
		s.ModeReason, s.GatewayPool = str(ps.ModeReason), str(ps.GatewayPool)
		if ps.GatewayPool != "" {
			s.MeasuredPps = ygot.Uint64(ps.PPS)
			s.DirectAbovePps, s.PoolBelowPps = ygot.Uint64(ps.DirectAbovePPS), ygot.Uint64(ps.PoolBelowPPS)
		}
	}
	for _, gp := range st.GatewayPools {
		if x := m.GetGatewayPools().GetGatewayPool(gp.Name); x != nil {
			// Empty rather than absent when no member is live: that is
			// the news.
			x.GetOrCreateState().LiveMembers = append([]string{}, gp.Live...)
		}
	}
	for host, n := range st.HostEntries {
		if h := m.GetHosts().GetHost(host); h != nil {
			h.GetOrCreateState().ProgrammedEntries = ygot.Uint64(n)
		}
	}
	for host, primary := range st.HostSwitchPrimary {
		if h := m.GetHosts().GetHost(host); h != nil {
			h.GetOrCreateState().SwitchPrimary = ygot.Bool(primary)
		}
	}
	if st.RIBs != nil {
		for vpc, cs := range st.RIBs() {
			v := m.GetVpcs().GetVpc(vpc)
			if v == nil {
				continue
			}
			routes := v.GetOrCreateState().GetOrCreateRoutes()
			for _, c := range cs {
				ribRoute(routes, c)
			}
		}
	}
	for _, n := range st.BGPNeighbors {
		x := m.GetBgp().GetNeighbors().GetNeighbor(n.VPC, n.Address.String())
		if x == nil {
			continue
		}
		ns := x.GetOrCreateState()
		ns.SessionState = str(n.State)
		ns.Received, ns.Accepted = ygot.Uint64(n.Received), ygot.Uint64(n.Accepted)
		ns.LastError = str(n.LastError)
		if !n.Since.IsZero() {
			ns.EstablishedSince = ygot.Uint64(uint64(n.Since.UnixNano()))
			ns.Uptime = ygot.Uint64(uint64(time.Since(n.Since) / time.Second))
		}
	}
	s := m.GetOrCreateState()
	s.PublishedServices = ygot.Uint32(clampUint32(st.PublishedServices))
	s.WatchSubscribers = ygot.Uint32(clampUint32(st.Subscribers))
	s.Peerings = ygot.Uint32(clampUint32(st.Peerings))
	s.ActivePeerings = ygot.Uint32(clampUint32(st.ActivePeerings))
}

func clampUint32(n int) uint32 {
	switch {
	case n < 0:
		return 0
	case uint64(n) > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(n)
}

// orderedMap is what the generated ordered maps of lists have in common.
type orderedMap interface{ IsYANGOrderedList() }

// mirror walks the tree under v (a pointer to a generated struct or
// ordered map) and copies every config container's leaves into the state
// container beside it, by field name. Generic over the model so that a
// leaf added to a config grouping needs no code here; what reflection
// finds by name is found once per type (mirrorPlanFor).
func mirror(v reflect.Value) {
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return
	}
	if _, ok := v.Interface().(orderedMap); ok {
		vals := v.MethodByName("Values").Call(nil)[0]
		for i := range vals.Len() {
			mirror(vals.Index(i))
		}
		return
	}
	s := v.Elem()
	if s.Kind() != reflect.Struct {
		return
	}
	p := mirrorPlanFor(s.Type())
	if p.config >= 0 {
		if cfg, st := s.Field(p.config), s.Field(p.state); !cfg.IsNil() {
			if st.IsNil() {
				st.Set(reflect.New(st.Type().Elem()))
			}
			copyLeaves(st.Elem(), cfg.Elem(), p.leaves)
		}
	}
	for _, i := range p.children {
		mirror(s.Field(i))
	}
}

// mirrorPlan is what mirror does with one struct type.
type mirrorPlan struct {
	// config and state are the indices of the Config and State fields,
	// -1 unless the type has both.
	config, state int
	// leaves pairs the config container's fields with the state
	// container's same-named, same-typed ones: [config index, state index].
	leaves [][2]int
	// children are the indices of the other fields, to walk.
	children []int
}

var mirrorPlans sync.Map // reflect.Type → *mirrorPlan

func mirrorPlanFor(t reflect.Type) *mirrorPlan {
	if p, ok := mirrorPlans.Load(t); ok {
		return p.(*mirrorPlan)
	}
	p := &mirrorPlan{config: -1, state: -1}
	cfg, okc := t.FieldByName("Config")
	st, oks := t.FieldByName("State")
	if okc && oks && len(cfg.Index) == 1 && len(st.Index) == 1 {
		p.config, p.state = cfg.Index[0], st.Index[0]
		// copyLeaves is only reached with both set, both pointers to
		// structs (generated containers).
		if cfg.Type.Kind() == reflect.Pointer && cfg.Type.Elem().Kind() == reflect.Struct &&
			st.Type.Kind() == reflect.Pointer && st.Type.Elem().Kind() == reflect.Struct {
			src, dst := cfg.Type.Elem(), st.Type.Elem()
			for i := range src.NumField() {
				f := src.Field(i)
				df, ok := dst.FieldByName(f.Name)
				if !ok || len(df.Index) != 1 || df.Type != f.Type {
					continue
				}
				p.leaves = append(p.leaves, [2]int{i, df.Index[0]})
			}
		}
	}
	for i := range t.NumField() {
		switch t.Field(i).Name {
		case "Config", "State":
			continue
		}
		p.children = append(p.children, i)
	}
	mirrorPlans.Store(t, p)
	return p
}

// copyLeaves copies the leaves of src into the same-named, same-typed
// fields of dst (the pairs in leaves), sharing no memory with src.
func copyLeaves(dst, src reflect.Value, leaves [][2]int) {
	for _, l := range leaves {
		sf, df := src.Field(l[0]), dst.Field(l[1])
		switch sf.Kind() {
		case reflect.Pointer:
			if sf.IsNil() {
				df.SetZero()
				continue
			}
			p := reflect.New(sf.Type().Elem())
			p.Elem().Set(sf.Elem())
			df.Set(p)
		case reflect.Slice:
			if sf.IsNil() {
				df.SetZero()
				continue
			}
			df.Set(reflect.AppendSlice(reflect.MakeSlice(sf.Type(), 0, sf.Len()), sf))
		default:
			df.Set(sf)
		}
	}
}

// RIBRoutes adds candidates cs of one VPC's RIB (by prefix, each
// prefix's best first, as controller.Server.RIB lists them) to routes:
// what WithState does for each VPC's whole RIB, for a reader that shows
// part of one (a prefix, or a part at a time).
func RIBRoutes(routes *oc.P4Mesh_P4Mesh_Vpcs_Vpc_State_Routes, cs []controller.Candidate) {
	for _, c := range cs {
		ribRoute(routes, c)
	}
}

// ribRoute adds candidate c to a VPC's state routes.
func ribRoute(routes *oc.P4Mesh_P4Mesh_Vpcs_Vpc_State_Routes, c controller.Candidate) {
	origin, _ := enumOf[oc.E_P4Mesh_RouteOrigin](c.Origin.String())
	source := c.Source
	if source == "" {
		source = dropNextHop // a static drop route, as its key says in config
	}
	// Candidates come by prefix, best first: appended in that order.
	r, err := routes.AppendNewRoute(c.Prefix.String(), origin, source)
	if err != nil {
		return // (prefix, origin, source) is unique in a RIB
	}
	r.Chosen, r.Reason = ygot.Bool(c.Chosen), str(c.Reason)
	for _, h := range c.NextHops {
		r.NextHops = append(r.NextHops, h.String())
	}
	switch c.Origin {
	case controller.OriginStatic:
		r.Priority = ygot.Uint32(c.Priority)
	case controller.OriginBGP:
		r.LocalPref, r.Med = ygot.Uint32(c.LocalPref), ygot.Uint32(c.MED)
		if c.BGPNextHop.IsValid() {
			r.BgpNextHop = str(c.BGPNextHop.String())
		}
		as := make([]string, len(c.ASPath))
		for i, n := range c.ASPath {
			as[i] = strconv.FormatUint(uint64(n), 10)
		}
		r.AsPath = str(strings.Join(as, " "))
	case controller.OriginPeer:
		r.Priority, r.PeerVni = ygot.Uint32(c.Priority), ygot.Uint32(c.PeerVNI)
		r.Preference = ygot.Int32(int32(max(min(c.Preference, math.MaxInt32), math.MinInt32)))
		if c.PeerOrigin != "" {
			r.PeerOrigin = str(c.PeerOrigin)
		}
	}
}
