package gnmi

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/util"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"

	"github.com/p4mesh/p4mesh/controller"
	"github.com/p4mesh/p4mesh/gnmi/oc"
)

// This file makes validation errors name the YANG path of what is wrong,
// keys included, the way a gNMI client addresses it. ygot's own errors
// name schema paths without keys (/device/p4mesh/vpcs/vpc/config/vni),
// which do not say which VPC; the controller's name YAML paths
// (vpcs[red].vni).

// checkSchema validates d against the YANG schema. Leaves are validated
// one by one while walking the tree, so that each error carries the keyed
// path of its leaf; then ygot validates the whole tree for what a leaf
// cannot show. Leafrefs are left to the controller's validation, which
// checks the same references with better messages and knows which of them
// may point to another controller's VPCs.
func checkSchema(d *oc.Device) error {
	var errs []error
	walkLeaves(reflect.ValueOf(d), "", &errs)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := d.Validate(&ytypes.LeafrefOptions{IgnoreMissingData: true}); err != nil {
		return schemaPathErrors(err)
	}
	return nil
}

// walkLeaves validates the leaves under v, a non-nil pointer to a
// generated struct at path.
func walkLeaves(v reflect.Value, path string, errs *[]error) {
	s := v.Elem()
	entry := oc.SchemaTree[s.Type().Name()]
	if entry == nil {
		*errs = append(*errs, fmt.Errorf("%s: no schema for %s", orRoot(path), s.Type().Name()))
		return
	}
	for i := range s.NumField() {
		f, fv := s.Type().Field(i), s.Field(i)
		name := f.Tag.Get("path")
		if name == "" || util.IsValueNil(fv.Interface()) {
			continue
		}
		child := path + "/" + name
		if _, ok := fv.Interface().(orderedMap); ok {
			vals := fv.MethodByName("Values").Call(nil)[0]
			for j := range vals.Len() {
				e := vals.Index(j)
				walkLeaves(e, child+listKeys(e, entry.Dir[name]), errs)
			}
			continue
		}
		if fv.Kind() == reflect.Pointer && fv.Elem().Kind() == reflect.Struct {
			walkLeaves(fv, child, errs)
			continue
		}
		le := entry.Dir[name]
		if le == nil {
			*errs = append(*errs, fmt.Errorf("%s: not in the schema", child))
			continue
		}
		seen := map[string]bool{}
		for _, err := range ytypes.Validate(le, fv.Interface()) {
			msg := leafMessage(le, err)
			if !seen[msg] { // a union reports once per member type
				seen[msg] = true
				*errs = append(*errs, fmt.Errorf("%s: %s", child, msg))
			}
		}
	}
}

// listKeys returns the [key=value] part of the path of list entry e.
func listKeys(e reflect.Value, list *yang.Entry) string {
	kh, ok := e.Interface().(ygot.KeyHelperGoStruct)
	if !ok || list == nil {
		return ""
	}
	keys, err := kh.ΛListKeyMap()
	if err != nil {
		return ""
	}
	var kv []string
	for _, k := range strings.Fields(list.Key) {
		kv = append(kv, k, fmt.Sprint(keys[k]))
	}
	return keyed("", kv...)
}

// leafMessage rewrites ygot's message for a leaf that failed validation
// in the terms of the model: a value that matches no pattern "is not a
// valid mac-address" rather than the regular expression, ranges are
// spelled out, and the schema name ygot prefixes is dropped (the path
// says it).
func leafMessage(le *yang.Entry, err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "schema "); ok {
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			msg = strings.TrimPrefix(rest[len(q):], ": ")
		}
	}
	typ := le
	if r, err := util.ResolveIfLeafRef(le); err == nil {
		typ = r
	}
	if typ.Type == nil {
		return msg
	}
	switch {
	case strings.Contains(msg, "does not match regular expression pattern"):
		if q, err := strconv.QuotedPrefix(msg); err == nil {
			return fmt.Sprintf("%s is not a valid %s", q, typ.Type.Name)
		}
	case strings.HasSuffix(msg, "is outside specified ranges") && len(typ.Type.Range) > 0:
		return fmt.Sprintf("%s range %s", strings.TrimSuffix(msg, " specified ranges"), typ.Type.Range)
	}
	return msg
}

// schemaPathErrors makes ygot's whole-tree validation errors readable:
// each names its schema path once, without the fake root, in place of the
// chain of parents ygot prefixes.
func schemaPathErrors(err error) error {
	var list util.Errors
	if !errors.As(err, &list) {
		list = util.Errors{err}
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		msg := e.Error()
		if i := strings.LastIndex(msg, "/device/"); i >= 0 {
			msg = msg[i+len("/device"):]
		}
		out = append(out, errors.New(msg))
	}
	return errors.Join(out...)
}

// TranslateErrors is ValidateConfig's wording of errs, the errors
// Validate gave (controller.InvalidConfigError's), with view in place of
// the configuration that was validated. What the translation reads of it
// is a small part: the short lists (directory, VPCs, hosts,
// export policies, peerings, gateway pools), the load balancers that may
// have a backend without a name, the routes of each VPC and prefix errs
// name a route by, and which item of a list has no name (named by index).
// A view with those gives the words the whole configuration gives.
func TranslateErrors(view *controller.Config, errs error) error {
	return translateErrors(view, errs)
}

// RouteGroup is a VPC and prefix (as the controller formats it) that an
// error names a route by.
type RouteGroup struct{ VPC, Prefix string }

// RoutesNamed are the groups errs's paths name a route by, each once: a
// view for TranslateErrors holds every route of each.
func RoutesNamed(errs error) []RouteGroup {
	var out []RouteGroup
	for _, e := range errorList(errs) {
		path, _, ok := strings.Cut(e.Error(), ": ")
		if !ok {
			continue
		}
		segs, ok := splitPath(path)
		if !ok || segs[0].name != "routes" || !segs[0].keyed {
			continue
		}
		if vpc, prefix, ok := strings.Cut(segs[0].key, " "); ok && !slices.Contains(out, RouteGroup{vpc, prefix}) {
			out = append(out, RouteGroup{vpc, prefix})
		}
	}
	return out
}

func errorList(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// translateErrors rewrites the controller's validation errors, which name
// YAML paths ("vpcs[red].subnets[1]: …"), to name YANG paths
// ("/p4mesh/vpcs/vpc[name=red]/config/subnets: …"). c is the configuration
// that was validated: list items the controller names by index are looked
// up in it. A path it cannot translate is left as it is.
func translateErrors(c *controller.Config, err error) error {
	list := errorList(err)
	out := make([]error, 0, len(list))
	for _, e := range list {
		path, msg, ok := strings.Cut(e.Error(), ": ")
		if ok {
			if y, ok := yangPath(c, path); ok {
				out = append(out, fmt.Errorf("%s: %s", y, msg))
				continue
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// segment is one step of a controller path: a field or list name and,
// for a list item, what is between its brackets.
type segment struct {
	name, key string
	keyed     bool
}

// splitPath splits a controller path ("hosts[h1].underlay_routes[0].port")
// into segments. Brackets may hold dots (names can) but no ']'.
func splitPath(p string) ([]segment, bool) {
	var segs []segment
	for p != "" {
		i := strings.IndexAny(p, ".[")
		if i < 0 {
			segs = append(segs, segment{name: p})
			break
		}
		s := segment{name: p[:i]}
		if p[i] == '[' {
			j := strings.IndexByte(p[i:], ']')
			if j < 0 {
				return nil, false
			}
			s.key, s.keyed = p[i+1:i+j], true
			i += j + 1
			if i < len(p) && p[i] != '.' {
				return nil, false
			}
		}
		segs = append(segs, s)
		if i < len(p) {
			i++ // the '.'
		}
		p = p[i:]
	}
	return segs, len(segs) > 0
}

// yangPath translates one controller path.
func yangPath(c *controller.Config, p string) (string, bool) {
	segs, ok := splitPath(p)
	if !ok {
		return "", false
	}
	top, rest := segs[0], segs[1:]
	var base string
	switch top.name {
	case "controller":
		return "/p4mesh/controller/config/name", !top.keyed && len(rest) == 0
	case "directory":
		base = directoryPath(itemName(top, names(c.Directory, func(e controller.ControllerEntry) string { return e.Name })))
	case "vpcs":
		base = vpcPath(itemName(top, names(c.VPCs, func(v controller.VPC) string { return v.Name })))
	case "hosts":
		id := itemName(top, names(c.Hosts, func(h controller.Host) string { return h.ID }))
		base = hostPath(id)
		if len(rest) > 0 && rest[0].name == "underlay_routes" && rest[0].keyed {
			h, _ := c.Host(id)
			k, err := strconv.Atoi(rest[0].key)
			if err != nil || k < 0 || k >= len(h.UnderlayRoutes) {
				return "", false
			}
			base, rest = underlayRoutePath(id, text(h.UnderlayRoutes[k].Prefix)), rest[1:]
		}
	case "endpoints":
		base = endpointPath(itemName(top, names(c.Endpoints, func(e controller.Endpoint) string { return e.ID })))
	case "load_balancers":
		name := itemName(top, names(c.LoadBalancers, func(lb controller.LoadBalancer) string { return lb.Name }))
		base = lbPath(name)
		if len(rest) > 0 && rest[0].name == "backends" && rest[0].keyed {
			lb, _ := c.LoadBalancer(name)
			ep := itemName(rest[0], names(lb.Backends, func(b controller.LBBackend) string { return b.Endpoint }))
			base, rest = backendPath(name, ep), rest[1:]
		}
	case "export_policies":
		base = policyPath(itemName(top, names(c.ExportPolicies, func(p controller.ExportPolicy) string { return p.Name })))
	case "routes":
		base, ok = routeItemPath(c, top.key)
		if !ok {
			return "", false
		}
	case "peerings":
		vpc, peer, ok := strings.Cut(top.key, "->")
		if !ok {
			return "", false
		}
		base = peeringPath(vpc, peer)
	case "bgp":
		return bgpYANGPath(rest)
	case "gateway_pools":
		base = poolPath(itemName(top, names(c.GatewayPools, func(p controller.GatewayPool) string { return p.Name })))
	default:
		return "", false
	}
	switch {
	case len(rest) == 0:
		return base, true
	case len(rest) > 1:
		return "", false
	case rest[0].name == "backends" || rest[0].name == "underlay_routes":
		return base + "/" + strings.ReplaceAll(rest[0].name, "_", "-"), true
	default:
		// A field, or an element of a leaf-list: gNMI addresses the
		// leaf-list as a whole, and the message names the value.
		return base + "/config/" + strings.ReplaceAll(rest[0].name, "_", "-"), true
	}
}

// routeItemPath translates what the controller puts between the brackets
// of a route, "VPC PREFIX" or an index, to the route's path, with the next
// hop when that makes it one route.
func routeItemPath(c *controller.Config, key string) (string, bool) {
	var match []controller.Route
	if vpc, prefix, ok := strings.Cut(key, " "); ok {
		for _, r := range c.Routes {
			if r.VPC == vpc && text(r.Prefix) == prefix {
				match = append(match, r)
			}
		}
		if len(match) != 1 {
			return keyed("/p4mesh/routes/route", "vpc", vpc, "prefix", prefix), true
		}
	} else {
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= len(c.Routes) {
			return "", false
		}
		match = c.Routes[i : i+1]
	}
	r := match[0]
	nh := r.NextHop
	if nh == "" {
		nh = dropNextHop
	}
	return routePath(r.VPC, text(r.Prefix), nh), true
}

// itemName resolves what the controller put between the brackets of a
// list item: the item's name, or its index when the name is empty.
func itemName(s segment, names []string) string {
	for _, n := range names {
		if n == s.key {
			return n
		}
	}
	if i, err := strconv.Atoi(s.key); err == nil && i >= 0 && i < len(names) && names[i] == "" {
		return ""
	}
	return s.key
}

func names[T any](items []T, name func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = name(it)
	}
	return out
}

func orRoot(path string) string {
	if path == "" {
		return "/"
	}
	return path
}

// bgpYANGPath translates the rest of a controller path under bgp.
func bgpYANGPath(rest []segment) (string, bool) {
	leaf := func(s segment) string {
		if s.name == "password" {
			return "auth-password"
		}
		return strings.ReplaceAll(s.name, "_", "-")
	}
	switch {
	case len(rest) == 0:
		return "/p4mesh/bgp", true
	case !rest[0].keyed && len(rest) == 1:
		return "/p4mesh/bgp/config/" + leaf(rest[0]), true
	case rest[0].name == "vpcs" && rest[0].keyed:
		base := bgpVPCPath(rest[0].key)
		if len(rest) == 1 {
			return base, true
		}
		return base + "/config/" + leaf(rest[1]), len(rest) == 2
	case rest[0].name == "neighbors" && rest[0].keyed:
		vpc, addr, ok := strings.Cut(rest[0].key, "/")
		if !ok {
			return "", false
		}
		base := neighborPath(vpc, addr)
		switch {
		case len(rest) == 1:
			return base, true
		case rest[1].name == "import":
			return base + "/import-filters", true
		case len(rest) == 2:
			return base + "/config/" + leaf(rest[1]), true
		}
	}
	return "", false
}
