package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"

	"github.com/p4mesh/p4mesh/controller"
	p4gnmi "github.com/p4mesh/p4mesh/gnmi"
	"github.com/p4mesh/p4mesh/gnmi/oc"
)

// marshal7951 is what Get used to call, and what marshalIETF must equal.
func marshal7951(gs ygot.GoStruct) ([]byte, error) {
	return ygot.Marshal7951(gs, &ygot.RFC7951JSONConfig{AppendModuleName: true})
}

var oddStrings = []string{"", "x", "red-vm1", "10.1.0.0/16", `a<b>&c`, `quo"te\back`, "tab\tnl\n", "ünïcödé", "\xff\xfe bad utf-8", "line\u2028sep", "emoji 😀", "\x00\x1f"}

// fill sets v (a settable value of a generated type) at random: every
// leaf kind, unset and empty containers, lists and leaf-lists included.
func fill(r *rand.Rand, v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.Pointer:
		t := v.Type()
		if r.IntN(5) == 0 {
			return // unset
		}
		if t.Implements(reflect.TypeFor[ygot.GoOrderedMap]()) {
			v.Set(reflect.New(t.Elem()))
			if depth > 4 {
				return
			}
			add := v.MethodByName("AppendNew")
			for i := range r.IntN(4) {
				var args []reflect.Value
				for j := range add.Type().NumIn() {
					args = append(args, reflect.ValueOf(fmt.Sprintf("k%d-%d-%s", i, j, oddStrings[r.IntN(len(oddStrings))])).Convert(add.Type().In(j)))
				}
				out := add.Call(args)
				if out[1].IsNil() {
					fillStruct(r, out[0].Elem(), depth+1, true)
				}
			}
			return
		}
		p := reflect.New(t.Elem())
		if t.Elem().Kind() == reflect.Struct {
			if r.IntN(3) > 0 { // else an empty container
				fillStruct(r, p.Elem(), depth+1, false)
			}
		} else {
			fill(r, p.Elem(), depth)
		}
		v.Set(p)
	case reflect.String:
		v.SetString(oddStrings[r.IntN(len(oddStrings))])
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		edges := []uint64{0, 1, 100, 1<<16 - 1, 1<<32 - 1, 1<<53 + 1, 1<<64 - 1}
		x := edges[r.IntN(len(edges))]
		if r.IntN(2) == 0 {
			x = r.Uint64()
		}
		v.SetUint(x & (^uint64(0) >> (64 - v.Type().Bits())))
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if e, ok := v.Interface().(ygot.GoEnum); ok {
			n := len(e.ΛMap()[v.Type().Name()])
			v.SetInt(int64(r.IntN(n + 1))) // 0: unset
			return
		}
		x := r.Int64()
		if r.IntN(2) == 0 {
			x = -x
		}
		v.SetInt(x >> (64 - v.Type().Bits()))
	case reflect.Slice:
		switch r.IntN(3) {
		case 0: // nil
		case 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			s := reflect.MakeSlice(v.Type(), 1+r.IntN(3), 3)
			for i := range s.Len() {
				fill(r, s.Index(i), depth)
			}
			v.Set(s)
		}
	}
}

func fillStruct(r *rand.Rand, s reflect.Value, depth int, listEntry bool) {
	for i := range s.NumField() {
		if listEntry && s.Type().Field(i).Type.Kind() != reflect.Pointer && s.Type().Field(i).Type.Kind() != reflect.Slice && s.Type().Field(i).Type.Kind() != reflect.Int64 {
			continue
		}
		if depth > 6 && s.Field(i).Kind() == reflect.Pointer && s.Type().Field(i).Type.Elem().Kind() == reflect.Struct {
			continue
		}
		fill(r, s.Field(i), depth)
	}
}

// goStructs is every GoStruct in the tree under v, v included.
func goStructs(v reflect.Value, out *[]ygot.GoStruct) {
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return
	}
	if _, ok := v.Interface().(ygot.GoOrderedMap); ok {
		vals := v.MethodByName("Values").Call(nil)[0]
		for i := range vals.Len() {
			goStructs(vals.Index(i), out)
		}
		return
	}
	gs, ok := v.Interface().(ygot.GoStruct)
	if !ok {
		return
	}
	*out = append(*out, gs)
	for i := range v.Elem().NumField() {
		goStructs(v.Elem().Field(i), out)
	}
}

func checkSame(t *testing.T, what string, gs ygot.GoStruct) {
	t.Helper()
	want, werr := marshal7951(gs)
	got, gerr := marshalIETF(gs)
	if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("%s (%T):\nmarshalIETF = %s, %v\nMarshal7951 = %s, %v", what, gs, got, gerr, want, werr)
	}
	if werr == nil {
		if _, ok := fastIETF(gs); !ok {
			t.Fatalf("%s (%T): the direct writer gave up on %s", what, gs, want)
		}
	}
}

// TestMarshalIETFMatchesYgot: the direct writer writes Marshal7951's
// bytes, for every subtree of random trees holding every kind of member
// of the model (empty containers, lists and leaf-lists, unset enums,
// strings JSON must escape, 64-bit numbers) and of real ones.
func TestMarshalIETFMatchesYgot(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		d := &oc.Device{}
		fillStruct(r, reflect.ValueOf(d).Elem(), 0, false)
		var all []ygot.GoStruct
		goStructs(reflect.ValueOf(d), &all)
		for j, gs := range all {
			checkSame(t, fmt.Sprintf("tree %d, subtree %d", i, j), gs)
		}
	}
	empty := &oc.Device{}
	checkSame(t, "empty device", empty)
	ygot.BuildEmptyTree(empty)
	checkSame(t, "empty tree", empty)

	srv, _, _ := fuzzServer(t)
	d, err := srv.device()
	if err != nil {
		t.Fatal(err)
	}
	var all []ygot.GoStruct
	goStructs(reflect.ValueOf(d), &all)
	for j, gs := range all {
		checkSame(t, fmt.Sprintf("red-blue subtree %d", j), gs)
	}

	// What it cannot write, ygot does: an enum value outside its type is
	// Marshal7951's error.
	bad := &oc.P4Mesh_P4Mesh_Endpoints_Endpoint_Config{Kind: 99}
	if _, ok := fastIETF(bad); ok {
		t.Error("the direct writer wrote an unknown enum value")
	}
	checkSame(t, "unknown enum", bad)
}

// getRef is Get the straightforward way: a fresh tree, ygot's encoders.
func getRef(t *testing.T, ctl *controller.Server, p *gnmi.Path, enc gnmi.Encoding) []*gnmi.Update {
	t.Helper()
	d, err := p4gnmi.FromConfig(ctl.Config())
	if err != nil {
		t.Fatal(err)
	}
	p4gnmi.WithState(d, ctl.Peerings(), ctl.Stats())
	d.PopulateDefaults() // defaults in use are read (§3.3.4)
	schema, err := oc.Schema()
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := ytypes.GetNode(schema.RootSchema(), d, p, &ytypes.GetHandleWildcards{}, &ytypes.GetPartialKeyMatch{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*gnmi.Update
	for _, n := range nodes {
		if isNil(n.Data) {
			continue
		}
		var val *gnmi.TypedValue
		switch gs, ok := n.Data.(ygot.GoStruct); {
		case !ok:
			val, err = ygot.EncodeTypedValue(n.Data, enc)
		case enc == gnmi.Encoding_JSON:
			var j map[string]any
			if j, err = ygot.ConstructInternalJSON(gs); err == nil {
				var b []byte
				b, err = json.Marshal(j)
				val = &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonVal{JsonVal: b}}
			}
		default:
			var b []byte
			b, err = marshal7951(gs)
			val = &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: b}}
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &gnmi.Update{Path: n.Path, Val: val})
	}
	return out
}

// jsonValue is an update's value for comparison: JSON parsed, scalars as
// their text.
func jsonValue(t *testing.T, v *gnmi.TypedValue) any {
	t.Helper()
	b := v.GetJsonIetfVal()
	if b == nil {
		b = v.GetJsonVal()
	}
	if b == nil {
		return v.String()
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return x
}

// TestGetMatchesStraightforward: Get, from the shared tree and the direct
// writer, answers what a fresh tree and ygot's encoders give, for the
// whole tree, lists, a leaf and wildcards, in both encodings; and again
// after a Set, and with many endpoints.
func TestGetMatchesStraightforward(t *testing.T) {
	srv, ctl, _ := fuzzServer(t)
	paths := []string{"/", "/p4mesh", "/p4mesh/endpoints", "/p4mesh/vpcs/vpc", "/p4mesh/vpcs/vpc[name=red]",
		"/p4mesh/vpcs/vpc[name=red]/config/vni", "/p4mesh/vpcs/vpc[name=*]/config", "/p4mesh/hosts/host[id=*]/state",
		"/p4mesh/routes/route[vpc=red][prefix=*][next-hop=*]", "/p4mesh/peerings/peering/state/active", "/p4mesh/state"}
	check := func(t *testing.T) {
		for _, enc := range []gnmi.Encoding{gnmi.Encoding_JSON_IETF, gnmi.Encoding_JSON} {
			for _, ps := range paths {
				p := path(t, ps)
				resp, err := srv.Get(t.Context(), &gnmi.GetRequest{Path: []*gnmi.Path{p}, Encoding: enc})
				if err != nil {
					t.Fatalf("Get %s: %v", ps, err)
				}
				got := resp.GetNotification()[0].GetUpdate()
				want := getRef(t, ctl, p, enc)
				if len(got) != len(want) {
					t.Fatalf("Get %s %s: %d updates, want %d", ps, enc, len(got), len(want))
				}
				for i := range got {
					if pathString(got[i].GetPath()) != pathString(want[i].GetPath()) {
						t.Errorf("Get %s %s: update %d at %s, want %s", ps, enc, i, pathString(got[i].GetPath()), pathString(want[i].GetPath()))
					}
					if g, w := jsonValue(t, got[i].GetVal()), jsonValue(t, want[i].GetVal()); !reflect.DeepEqual(g, w) {
						t.Errorf("Get %s %s: update %d = %v\nwant %v", ps, enc, i, g, w)
					}
				}
			}
		}
	}
	t.Run("red-blue", check)
	t.Run("cached", check)
	// A Set makes a new configuration, and the next Get must see it.
	leaf := path(t, "/p4mesh/vpcs/vpc[name=red]/config/vni")
	if _, err := srv.Set(t.Context(), &gnmi.SetRequest{Update: []*gnmi.Update{{Path: leaf, Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_UintVal{UintVal: 777}}}}}); err != nil {
		t.Fatal(err)
	}
	t.Run("after set", check)
	resp, err := srv.Get(t.Context(), &gnmi.GetRequest{Path: []*gnmi.Path{leaf}})
	if err != nil || resp.GetNotification()[0].GetUpdate()[0].GetVal().GetUintVal() != 777 {
		t.Fatalf("VNI after Set = %v, %v", resp, err)
	}
	cfg := ctl.Config().Clone()
	for i := range 1000 {
		port := 10 + i/3
		if port >= 255 { // the CPU port
			port++
		}
		cfg.Endpoints = append(cfg.Endpoints, controller.Endpoint{ID: fmt.Sprintf("vm-%d", i), VPC: "green", Kind: controller.KindVM,
			IP:  netip.AddrFrom4([4]byte{10, 3, byte(1 + i/250), byte(1 + i%250)}),
			MAC: controller.MAC{2, 3, 1, 0, byte(i >> 8), byte(i)}, Host: fmt.Sprintf("h%d", 1+i%3), Port: uint16(port)})
	}
	if err := ctl.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Run("many endpoints", check)
}

// TestGetConcurrent: Gets share the tree while Sets replace it (run with
// -race).
func TestGetConcurrent(t *testing.T) {
	srv, _, _ := fuzzServer(t)
	leaf := path(t, "/p4mesh/vpcs/vpc[name=red]/config/vni")
	done := make(chan error, 4)
	for range 4 {
		go func() {
			for range 20 {
				for _, p := range []*gnmi.Path{{}, leaf, path(t, "/p4mesh/vpcs/vpc[name=*]/state")} {
					if _, err := srv.Get(t.Context(), &gnmi.GetRequest{Path: []*gnmi.Path{p}}); err != nil {
						done <- err
						return
					}
				}
			}
			done <- nil
		}()
	}
	for i := range 10 {
		if _, err := srv.Set(t.Context(), &gnmi.SetRequest{Update: []*gnmi.Update{{Path: leaf, Val: &gnmi.TypedValue{Value: &gnmi.TypedValue_UintVal{UintVal: uint64(500 + i)}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	resp, err := srv.Get(t.Context(), &gnmi.GetRequest{Path: []*gnmi.Path{leaf}})
	if err != nil || resp.GetNotification()[0].GetUpdate()[0].GetVal().GetUintVal() != 509 {
		t.Fatalf("VNI after the Sets = %v, %v", resp, err)
	}
}
