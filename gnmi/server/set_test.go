package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/util"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
	"github.com/p4mesh/p4mesh/gnmi/oc"
)

func uintVal(n uint64) *gnmi.TypedValue {
	return &gnmi.TypedValue{Value: &gnmi.TypedValue_UintVal{UintVal: n}}
}

func stringVal(s string) *gnmi.TypedValue {
	return &gnmi.TypedValue{Value: &gnmi.TypedValue_StringVal{StringVal: s}}
}

func ietfVal(s string) *gnmi.TypedValue {
	return &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: []byte(s)}}
}

func redVNI(t *testing.T, ctl *controller.Server) uint32 {
	t.Helper()
	v, ok := ctl.Config().VPC("red")
	if !ok {
		t.Fatal("red is gone")
	}
	return v.VNI
}

// TestSetAtomicAtEachValue: a Set whose first value is good and whose second
// does not fit its leaf is refused whole, by update and by replace. The
// failure is in setting the value on the tree, before the candidate
// configuration exists to be validated: a server that skipped the value
// there would apply the rest and answer OK, and validation would never see
// what it dropped. The bad leaves are ones whose absence is valid, so that
// a replace that deleted its leaf and then skipped the value would be
// applied too; uplink-port, which the controller requires, is the case the
// issue reported.
func TestSetAtomicAtEachValue(t *testing.T) {
	c, ctl := start(t)
	const vni = "/p4mesh/vpcs/vpc[name=red]/config/vni"
	const priority = "/p4mesh/routes/route[vpc=red][prefix=172.16.0.0/12][next-hop=red-router]/config/priority"
	bad := []struct {
		name, path string
		val        *gnmi.TypedValue
		code       codes.Code
	}{
		{"uint16 out of range", "/p4mesh/hosts/host[id=h1]/config/uplink-port", uintVal(65536), codes.InvalidArgument},
		{"uint32 out of range", priority, uintVal(1 << 32), codes.InvalidArgument},
		{"string for a number", "/p4mesh/peerings/peering[vpc=red][peer-vpc=blue]/config/preference", stringVal("high"), codes.InvalidArgument},
		{"JSON string for a number", priority, ietfVal(`"high"`), codes.InvalidArgument},
		{"JSON subtree with a string for a boolean", "/p4mesh/export-policies/export-policy[name=web]",
			ietfVal(`{"p4mesh:name":"web","p4mesh:config":{"name":"web","private-only":"yes"}}`), codes.InvalidArgument},
		// A path the model does not have is NotFound (gNMI specification
		// §3.4.7), refused whole all the same.
		{"unknown leaf", "/p4mesh/vpcs/vpc[name=green]/config/colour", stringVal("blue"), codes.NotFound},
	}
	for _, op := range []string{"update", "replace"} {
		for _, tc := range bad {
			t.Run(op+"/"+tc.name, func(t *testing.T) {
				ups := []*gnmi.Update{{Path: path(t, vni), Val: uintVal(101)}, {Path: path(t, tc.path), Val: tc.val}}
				req := &gnmi.SetRequest{Update: ups}
				if op == "replace" {
					req = &gnmi.SetRequest{Replace: ups}
				}
				before := ctl.Config()
				// Each case starts from the same configuration, whatever a
				// broken server made of the one before.
				defer func() {
					if !ctl.Config().Equal(before) {
						if err := ctl.Apply(before); err != nil {
							t.Fatalf("restore: %v", err)
						}
					}
				}()
				_, err := c.Set(t.Context(), req)
				if status.Code(err) != tc.code || !strings.Contains(err.Error(), pathString(path(t, tc.path))) {
					t.Errorf("Set = %v; want %s naming %s", err, tc.code, tc.path)
				}
				if got := redVNI(t, ctl); got != 100 {
					t.Errorf("red's VNI = %d; want 100: the Set must change nothing", got)
				}
				if !ctl.Config().Equal(before) {
					t.Error("the Set changed the configuration")
				}
			})
		}
	}

	// The first value alone is good: the refusals above are the second's.
	if _, err := c.Set(t.Context(), &gnmi.SetRequest{Update: []*gnmi.Update{{Path: path(t, vni), Val: uintVal(101)}}}); err != nil {
		t.Fatalf("Set of red's VNI alone: %v", err)
	}
	if _, err := c.Set(t.Context(), &gnmi.SetRequest{Replace: []*gnmi.Update{{Path: path(t, vni), Val: uintVal(102)}}}); err != nil {
		t.Fatalf("replace of red's VNI alone: %v", err)
	}
	if got := redVNI(t, ctl); got != 102 {
		t.Errorf("red's VNI = %d; want 102", got)
	}
}

// applySet is what a Set of req makes of base, worked out without the
// server: base as a tree, changed with ygot in the order the gNMI
// specification gives (deletes, replaces, updates). Deletes expand
// wildcards (§3.4.6); a JSON value merges into what is there (§3.4.4),
// worked out here on JSON documents: what is there marshalled, merged
// with the value member by member and list entry by key, then set in
// place of it. An error means the request cannot be applied as it stands:
// a path or value that does not fit the model. Nothing is validated here,
// so that a test can check each stage of what the server must check on
// its own.
func applySet(root *yang.Entry, base *controller.Config, req *gnmi.SetRequest) (*oc.Device, error) {
	d, err := p4gnmi.FromConfig(base)
	if err != nil {
		return nil, err
	}
	delOne := func(p *gnmi.Path) error {
		nodes, err := ytypes.GetNode(root, d, p, &ytypes.GetHandleWildcards{}, &ytypes.GetPartialKeyMatch{})
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		for _, n := range nodes {
			// Deleting what is not there is no error (specification §3.4.6).
			if err := ytypes.DeleteNode(root, d, n.Path); err != nil && status.Code(err) != codes.NotFound {
				return err
			}
		}
		return nil
	}
	del := func(p *gnmi.Path) error {
		if !slices.ContainsFunc(p.GetElem(), func(e *gnmi.PathElem) bool { return e.GetName() == "*" || e.GetName() == "..." }) {
			return delOne(p)
		}
		// Element wildcards: every configuration node of the schema whose
		// path the pattern matches, keyless (every entry), shallowest
		// first.
		ps := oracleMatches(root, p)
		if len(ps) == 0 {
			return fmt.Errorf("no node of the model matches %v", p)
		}
		for _, q := range ps {
			if err := delOne(q); err != nil {
				return err
			}
		}
		return nil
	}
	set := func(p *gnmi.Path, v *gnmi.TypedValue) error {
		for _, e := range p.GetElem() {
			for _, k := range e.GetKey() {
				if k == "*" {
					return fmt.Errorf("a value set at a wildcard")
				}
			}
		}
		b := v.GetJsonIetfVal()
		if b == nil {
			b = v.GetJsonVal()
		}
		if b == nil {
			return ytypes.SetNode(root, d, p, v, &ytypes.InitMissingElements{})
		}
		e := root
		for _, el := range p.GetElem() {
			if e = e.Dir[el.GetName()]; e == nil {
				return fmt.Errorf("no %s in the model", el.GetName())
			}
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var val any
		if err := dec.Decode(&val); err != nil {
			return err
		}
		conv := oracleIETF
		if e.IsList() { // the path names one entry
			conv = oracleObject
		}
		val, err := conv(e, val)
		if err != nil {
			return err
		}
		if e.IsDir() {
			var cur any = map[string]any{}
			if nodes, err := ytypes.GetNode(root, d, p); err == nil && len(nodes) == 1 {
				if gs, ok := nodes[0].Data.(ygot.GoStruct); ok && !util.IsValueNil(gs) {
					j, err := ygot.Marshal7951(gs)
					if err != nil {
						return err
					}
					if cur, err = decodeNumbers(j); err != nil {
						return err
					}
				}
			}
			if val, err = oracleMerge(e, cur, val); err != nil {
				return err
			}
		}
		merged, err := json.Marshal(val)
		if err != nil {
			return err
		}
		if len(p.GetElem()) == 0 {
			d = &oc.Device{}
			return oc.Unmarshal(merged, d)
		}
		if err := ytypes.DeleteNode(root, d, p); err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		return ytypes.SetNode(root, d, p, &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: merged}}, &ytypes.InitMissingElements{})
	}
	for _, p := range req.GetDelete() {
		if err := del(fullPath(req.GetPrefix(), p)); err != nil {
			return nil, err
		}
	}
	for _, u := range req.GetReplace() {
		p := fullPath(req.GetPrefix(), u.GetPath())
		if err := del(p); err != nil {
			return nil, err
		}
		if err := set(p, u.GetVal()); err != nil {
			return nil, err
		}
	}
	for _, u := range req.GetUpdate() {
		if err := set(fullPath(req.GetPrefix(), u.GetPath()), u.GetVal()); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// oracleMatches lists every node of the schema under root, as a path with
// no keys but those pattern gives, that pattern matches whole: "*" any one
// element, "..." any number, none included; other elements by name. It
// leaves out state, and sorts by depth.
func oracleMatches(root *yang.Entry, pattern *gnmi.Path) []*gnmi.Path {
	var all [][]*yang.Entry
	var walk func(e *yang.Entry, up []*yang.Entry)
	walk = func(e *yang.Entry, up []*yang.Entry) {
		all = append(all, up)
		for _, c := range e.Dir {
			walk(c, append(slices.Clone(up), c))
		}
	}
	walk(root, nil)
	var match func(pe []*gnmi.PathElem, es []*yang.Entry) bool
	match = func(pe []*gnmi.PathElem, es []*yang.Entry) bool {
		if len(pe) == 0 {
			return len(es) == 0
		}
		if pe[0].GetName() == "..." {
			for i := 0; i <= len(es); i++ {
				if match(pe[1:], es[i:]) {
					return true
				}
			}
			return false
		}
		return len(es) > 0 && (pe[0].GetName() == "*" || pe[0].GetName() == es[0].Name) && match(pe[1:], es[1:])
	}
	var out []*gnmi.Path
	for _, es := range all {
		if !match(pattern.GetElem(), es) || slices.ContainsFunc(es, func(e *yang.Entry) bool { return e.Name == "state" }) {
			continue
		}
		q := &gnmi.Path{}
		for i, e := range es {
			el := &gnmi.PathElem{Name: e.Name}
			// Keys the pattern gives at the same depth, when it has no
			// "..." before (keys after one cannot be placed by depth).
			if i < len(pattern.GetElem()) && !slices.ContainsFunc(pattern.GetElem()[:i], func(x *gnmi.PathElem) bool { return x.GetName() == "..." }) {
				el.Key = pattern.GetElem()[i].GetKey()
			}
			q.Elem = append(q.Elem, el)
		}
		out = append(out, q)
	}
	slices.SortStableFunc(out, func(a, b *gnmi.Path) int { return len(a.GetElem()) - len(b.GetElem()) })
	return out
}

func decodeNumbers(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	return v, dec.Decode(&v)
}

// oracleIETF is v, the JSON value of schema node e, in JSON_IETF's form:
// module prefixes dropped, lists given as objects by key made arrays (in
// key order), 64-bit integers quoted.
func oracleIETF(e *yang.Entry, v any) (any, error) {
	switch {
	case e.IsList():
		if m, ok := v.(map[string]any); ok {
			var arr []any
			for _, k := range slices.Sorted(maps.Keys(m)) {
				entry, ok := m[k].(map[string]any)
				if !ok {
					return nil, fmt.Errorf("a list entry that is no object")
				}
				entry = maps.Clone(entry)
				keys := strings.Fields(e.Key)
				if parts := strings.Split(k, " "); len(parts) == len(keys) {
					for i, kn := range keys {
						if _, ok := entry[kn]; !ok {
							entry[kn] = parts[i]
						}
					}
				}
				arr = append(arr, entry)
			}
			v = arr
		}
		arr, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("a list that is no array")
		}
		out := make([]any, len(arr))
		for i, x := range arr {
			var err error
			if out[i], err = oracleObject(e, x); err != nil {
				return nil, err
			}
		}
		return out, nil
	case e.IsDir():
		return oracleObject(e, v)
	case e.Type != nil && (e.Type.Kind == yang.Yint64 || e.Type.Kind == yang.Yuint64):
		if n, ok := v.(json.Number); ok {
			return n.String(), nil
		}
	}
	return v, nil
}

func oracleObject(e *yang.Entry, v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return v, nil // ygot says what is wrong
	}
	out := map[string]any{}
	for k, x := range m {
		if i := strings.IndexByte(k, ':'); i >= 0 {
			k = k[i+1:]
		}
		c := e.Dir[k]
		if c == nil {
			return nil, fmt.Errorf("no %s in %s", k, e.Name)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s twice", k)
		}
		var err error
		if out[k], err = oracleIETF(c, x); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// oracleMerge merges JSON_IETF value v of container or list entry e into
// cur: members of v replace cur's, containers and list entries (by key)
// merge.
func oracleMerge(e *yang.Entry, cur, v any) (any, error) {
	cm, ok1 := cur.(map[string]any)
	vm, ok2 := v.(map[string]any)
	if !ok1 || !ok2 {
		return v, nil
	}
	out := map[string]any{}
	for k, x := range cm {
		if i := strings.IndexByte(k, ':'); i >= 0 {
			k = k[i+1:]
		}
		out[k] = x
	}
	for k, x := range vm {
		c := e.Dir[k]
		old, had := out[k]
		switch {
		case !had || c == nil:
			out[k] = x
		case c.IsList():
			olds, _ := old.([]any)
			news, _ := x.([]any)
			keyOf := func(x any) string {
				m, _ := x.(map[string]any)
				var ks []string
				for _, kn := range strings.Fields(c.Key) {
					ks = append(ks, fmt.Sprint(m[kn]))
				}
				return strings.Join(ks, "\x00")
			}
			merged := slices.Clone(olds)
			for _, n := range news {
				i := slices.IndexFunc(merged, func(o any) bool { return keyOf(o) == keyOf(n) })
				if i < 0 {
					merged = append(merged, n)
					continue
				}
				m, err := oracleMerge(c, merged[i], n)
				if err != nil {
					return nil, err
				}
				merged[i] = m
			}
			out[k] = merged
		case c.IsDir():
			m, err := oracleMerge(c, old, x)
			if err != nil {
				return nil, err
			}
			out[k] = m
		default:
			out[k] = x
		}
	}
	return out, nil
}

// checkYANG validates d against the YANG model with ygot. References
// (leafrefs) to what is missing are left to the controller's rules, as the
// server leaves them: they know that a peer VPC may be another
// controller's.
func checkYANG(d *oc.Device) error {
	return d.Validate(&ytypes.LeafrefOptions{IgnoreMissingData: true})
}

// TestSetChecksYANG: a Set is refused for what only the YANG model
// forbids. Each value here converts to the controller's configuration and
// passes the controller's own rules, which are laxer about spelling (a MAC
// net.ParseMAC reads, a protocol number strconv reads) or do not look at
// all (the VPC names of another controller's directory entry, which the
// model keeps to the characters of names so that they cannot clash with
// the separators of paths and watch keys); without the schema check they
// would be applied.
func TestSetChecksYANG(t *testing.T) {
	c, ctl := start(t)
	root := oc.SchemaTree["Device"]
	for _, tc := range []struct {
		name string
		up   *gnmi.Update
	}{
		{"MAC with dashes", &gnmi.Update{Path: path(t, "/p4mesh/hosts/host[id=h1]/config/mac"), Val: stringVal("02-aa-00-00-00-09")}},
		{"protocol number of four digits", &gnmi.Update{Path: path(t, "/p4mesh/export-policies/export-policy[name=all]/config/protocols"), Val: ietfVal(`["0006"]`)}},
		{"VPC name with a slash", &gnmi.Update{Path: path(t, "/p4mesh/directory/controllers/controller[name=c2]"),
			Val: ietfVal(`{"p4mesh:name":"c2","p4mesh:config":{"name":"c2","address":"127.0.0.1:7002","vpcs":["blue/x"]}}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &gnmi.SetRequest{Update: []*gnmi.Update{tc.up}}
			before := ctl.Config()
			defer func() {
				if !ctl.Config().Equal(before) {
					if err := ctl.Apply(before); err != nil {
						t.Fatalf("restore: %v", err)
					}
				}
			}()
			// The case is worth something only while YANG alone refuses it.
			d, err := applySet(root, before, req)
			if err != nil {
				t.Fatalf("the value does not fit its leaf: %v", err)
			}
			if checkYANG(d) == nil {
				t.Fatal("the YANG model accepts the result")
			}
			if cfg, err := p4gnmi.ToConfig(d); err != nil {
				t.Fatalf("the result does not convert: %v", err)
			} else if err := cfg.Validate(); err != nil {
				t.Fatalf("the controller's rules refuse the result too: %v", err)
			}

			_, err = c.Set(t.Context(), req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "is not a valid") {
				t.Errorf("Set = %v; want InvalidArgument: the value is not valid in the model", err)
			}
			if !ctl.Config().Equal(before) {
				t.Error("the Set changed the configuration")
			}
		})
	}
}
