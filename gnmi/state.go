package gnmi

import (
	"math"
	"reflect"

	"github.com/openconfig/ygot/ygot"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/gnmi/oc"
)

// WithState fills d's state containers, in place, from what the
// controller reports: every state container mirrors its config container
// (the configuration in effect, as OpenConfig models it; secrets such as a
// BGP password have no state leaf and stay out), configured routes are of
// static origin, each peering in peerings gets its active flag and
// reason, and the controller's counters come from st. Peerings that d
// does not configure are ignored.
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
	}
	for host, n := range st.HostEntries {
		if h := m.GetHosts().GetHost(host); h != nil {
			h.GetOrCreateState().ProgrammedEntries = ygot.Uint64(n)
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
// leaf added to a config grouping needs no code here.
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
	if cfg, st := s.FieldByName("Config"), s.FieldByName("State"); cfg.IsValid() && st.IsValid() && !cfg.IsNil() {
		if st.IsNil() {
			st.Set(reflect.New(st.Type().Elem()))
		}
		copyLeaves(st.Elem(), cfg.Elem())
	}
	for i := range s.NumField() {
		switch s.Type().Field(i).Name {
		case "Config", "State":
			continue
		}
		mirror(s.Field(i))
	}
}

// copyLeaves copies the leaves of src into the same-named, same-typed
// fields of dst, sharing no memory with src.
func copyLeaves(dst, src reflect.Value) {
	for i := range src.NumField() {
		f := src.Type().Field(i)
		df := dst.FieldByName(f.Name)
		sf := src.Field(i)
		if !df.IsValid() || df.Type() != f.Type {
			continue
		}
		switch sf.Kind() {
		case reflect.Pointer:
			if sf.IsNil() {
				df.Set(reflect.Zero(f.Type))
				continue
			}
			p := reflect.New(f.Type.Elem())
			p.Elem().Set(sf.Elem())
			df.Set(p)
		case reflect.Slice:
			if sf.IsNil() {
				df.Set(reflect.Zero(f.Type))
				continue
			}
			df.Set(reflect.AppendSlice(reflect.MakeSlice(f.Type, 0, sf.Len()), sf))
		default:
			df.Set(sf)
		}
	}
}
