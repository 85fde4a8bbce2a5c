package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"github.com/openconfig/ygot/ygot"
	"github.com/openconfig/ygot/ytypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/gnmi/oc"
)

// This file sets a JSON value into the tree. ygot alone cannot: it takes
// no JSON (only JSON_IETF), while gnmic and pygnmi send JSON by default
// and Get hands lists back in JSON as objects keyed by the entries' keys
// (§2.3.1: both MUST be supported); and it unmarshals into what exists,
// which for the model's ordered lists fails on any entry already there,
// where an update must merge (§3.4.4). So a value is first checked and
// brought to JSON_IETF's form against the schema here, with refusals in
// the model's words, then unmarshalled into a fresh struct of the node's
// type, and that is merged into the tree.

// decodeJSON parses a JSON or JSON_IETF value, numbers kept as written.
func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return v, nil
}

// setJSON sets doc, a decoded JSON(_IETF) value, at p in dev; e is p's
// schema entry. Containers and list entries merge into what is there; a
// leaf or leaf-list is replaced. A replace deletes p first and so merges
// into nothing.
func (s *Server) setJSON(dev *oc.Device, p *gnmi.Path, e *yang.Entry, doc any) error {
	at := pathString(p)
	target := p
	if !e.IsDir() {
		// A leaf is set as its container holding it, so that every value
		// takes one way in.
		last := p.GetElem()[len(p.GetElem())-1]
		target = &gnmi.Path{Elem: p.GetElem()[:len(p.GetElem())-1]}
		doc = map[string]any{last.GetName(): doc}
		e = e.Parent
	}
	var pathKeys map[string]string
	if e.IsList() {
		last := p.GetElem()[len(target.GetElem())-1]
		if s.wildcard(target) {
			return setError(codes.InvalidArgument, p, "a value is set in one list entry, named by all its keys (%s), not in a list or a wildcard", quoteAll(strings.Fields(e.Key)))
		}
		pathKeys = last.GetKey()
	}
	obj, err := normEntry(e, doc, at, pathKeys)
	if err != nil {
		return err
	}
	var node ygot.GoStruct = dev
	if len(target.GetElem()) > 0 {
		n, _, err := ytypes.GetOrCreateNode(s.schema.RootSchema(), dev, target)
		if err != nil {
			return setError(codes.InvalidArgument, p, "%s", plain(err))
		}
		gs, ok := n.(ygot.GoStruct)
		if !ok {
			return setError(codes.Internal, p, "the node is not a container")
		}
		node = gs
	}
	fresh := reflect.New(reflect.TypeOf(node).Elem()).Interface().(ygot.GoStruct)
	if err := ytypes.Unmarshal(e, fresh, obj); err != nil {
		return setError(codes.InvalidArgument, p, "the value does not fit the model: %s", plain(err))
	}
	if err := merge(e, reflect.ValueOf(node), reflect.ValueOf(fresh), obj); err != nil {
		return setError(codes.InvalidArgument, p, "%s", plain(err))
	}
	return nil
}

// normEntry checks obj, the JSON of container or list entry e at path at,
// against the schema and returns it in JSON_IETF's form: lists as arrays
// (JSON gives them as objects keyed by the entries' keys), 64-bit numbers
// as strings, numbers as float64 as ygot wants them. pathKeys, for a list
// entry, are the keys its path gives: the value may not name another.
func normEntry(e *yang.Entry, doc any, at string, pathKeys map[string]string) (map[string]any, error) {
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, refuse(codes.InvalidArgument, at, "%s is a container: its value is a JSON object, not %s", e.Name, jsonText(doc))
	}
	out := make(map[string]any, len(obj))
	for member, v := range obj {
		name := member
		if mod, n, ok := strings.Cut(member, ":"); ok {
			if mod != origin {
				return nil, refuse(codes.InvalidArgument, at, "member %q is of module %q; this server has only the %q model", member, mod, origin)
			}
			name = n
		}
		child := e.Dir[name]
		if child == nil {
			return nil, refuse(codes.InvalidArgument, at, "the model has no %q in %s; there: %s", name, e.Name, strings.Join(slices.Sorted(mapKeys(e.Dir)), ", "))
		}
		if _, dup := out[name]; dup {
			return nil, refuse(codes.InvalidArgument, at, "%q is given twice", name)
		}
		where := at + "/" + name
		var err error
		switch {
		case child.IsList():
			out[name], err = normList(child, v, where)
		case child.IsDir():
			out[name], err = normEntry(child, v, where, nil)
		case child.IsLeafList():
			arr, ok := v.([]any)
			if !ok {
				return nil, refuse(codes.InvalidArgument, where, "%s is a leaf-list: its value is a JSON array, not %s", name, jsonText(v))
			}
			vals := make([]any, len(arr))
			for i, x := range arr {
				if vals[i], err = normLeaf(child, x, where); err != nil {
					break
				}
			}
			out[name] = vals
		default:
			out[name], err = normLeaf(child, v, where)
		}
		if err != nil {
			return nil, err
		}
		if want, ok := pathKeys[name]; ok && !child.IsDir() {
			if got := leafText(out[name]); got != want {
				return nil, refuse(codes.InvalidArgument, at, "the value's %s is %q, the path's %q: a key is changed by deleting the entry and creating another", name, got, want)
			}
		}
	}
	return out, nil
}

// normList brings a list's value to an array of checked entries. Entries
// given as an object keyed by their keys (JSON, as Get writes it) get
// their key leaves from that key where they lack them.
func normList(e *yang.Entry, v any, at string) ([]any, error) {
	keys := strings.Fields(e.Key)
	type entry struct {
		key string // the object's key, or "" in an array
		v   any
	}
	var entries []entry
	switch l := v.(type) {
	case []any:
		for _, x := range l {
			entries = append(entries, entry{v: x})
		}
	case map[string]any:
		for _, k := range slices.Sorted(mapKeys(l)) {
			entries = append(entries, entry{k, l[k]})
		}
	default:
		return nil, refuse(codes.InvalidArgument, at, "%s is a list: its value is a JSON array of entries, or an object of them by key, not %s", e.Name, jsonText(v))
	}
	out := make([]any, 0, len(entries))
	seen := map[string]bool{}
	for _, en := range entries {
		obj, ok := en.v.(map[string]any)
		if !ok {
			return nil, refuse(codes.InvalidArgument, at, "an entry of %s is a JSON object, not %s", e.Name, jsonText(en.v))
		}
		if en.key != "" {
			parts := strings.Split(en.key, " ")
			if len(parts) == len(keys) {
				obj = maps.Clone(obj)
				for i, k := range keys {
					if _, ok := obj[k]; !ok {
						if _, ok := obj[origin+":"+k]; !ok {
							obj[k] = parts[i]
						}
					}
				}
			}
		}
		n, err := normEntry(e, obj, at, nil)
		if err != nil {
			return nil, err
		}
		var id []string
		for _, k := range keys {
			kv, ok := n[k]
			if !ok {
				return nil, refuse(codes.InvalidArgument, at, "an entry of %s lacks its key %q", e.Name, k)
			}
			id = append(id, fmt.Sprintf("%s=%s", k, leafText(kv)))
		}
		ks := "[" + strings.Join(id, "][") + "]"
		if seen[ks] {
			return nil, refuse(codes.InvalidArgument, at, "entry %s%s is given twice", e.Name, ks)
		}
		seen[ks] = true
		out = append(out, n)
	}
	return out, nil
}

// normLeaf checks a leaf's JSON value has the JSON type the leaf's YANG
// type takes, and brings it to the form ygot unmarshals. Ranges, patterns
// and enumerations are left to ygot and validation, which name them.
func normLeaf(e *yang.Entry, v any, at string) (any, error) {
	t := e.Type
	kind := yang.Ystring
	if t != nil {
		kind = t.Kind
	}
	bad := func() error {
		return refuse(codes.InvalidArgument, at, "%s is %s; %s is not one", e.Name, typeName(t), jsonText(v))
	}
	switch kind {
	case yang.Yint8, yang.Yint16, yang.Yint32, yang.Yuint8, yang.Yuint16, yang.Yuint32:
		n, ok := v.(json.Number)
		if !ok {
			return nil, bad()
		}
		f, err := n.Float64()
		if err != nil {
			return nil, bad()
		}
		return f, nil
	case yang.Yint64, yang.Yuint64:
		// JSON_IETF quotes 64-bit numbers (RFC 7951 §6.1); JSON does not.
		switch x := v.(type) {
		case json.Number:
			return x.String(), nil
		case string:
			return x, nil
		}
		return nil, bad()
	case yang.Ybool:
		if _, ok := v.(bool); !ok {
			return nil, bad()
		}
		return v, nil
	case yang.Ystring, yang.Yenum, yang.Yidentityref:
		if _, ok := v.(string); !ok {
			return nil, bad()
		}
		return v, nil
	}
	// Unions and leafrefs: ygot resolves them.
	if n, ok := v.(json.Number); ok {
		f, err := n.Float64()
		if err != nil {
			return nil, bad()
		}
		return f, nil
	}
	return v, nil
}

func typeName(t *yang.YangType) string {
	if t == nil {
		return "a string"
	}
	switch t.Kind {
	case yang.Ystring, yang.Yenum, yang.Yidentityref:
		return "a string"
	case yang.Ybool:
		return "a boolean"
	}
	return "a " + t.Kind.String()
}

// leafText is a normalised leaf value as a path key spells it.
func leafText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprint(x)
	}
	return fmt.Sprint(v)
}

// jsonText is v as the client wrote it, shortened.
func jsonText(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}

func refuse(code codes.Code, at, format string, args ...any) error {
	return status.Errorf(code, "%s: %s", at, fmt.Sprintf(format, args...))
}

// merge merges src into dst, both pointers to generated structs of
// schema node e, as doc, the JSON src was unmarshalled from, says: the
// leaves and leaf-lists it gives replace dst's (an empty leaf-list
// empties it, though ygot leaves it nil in src), its containers and list
// entries merge into dst's, entry by key, new entries going to the end of
// their lists (§3.4.4).
func merge(e *yang.Entry, dst, src reflect.Value, doc map[string]any) error {
	d, s := dst.Elem(), src.Elem()
	for i := range s.NumField() {
		name := s.Type().Field(i).Tag.Get("path")
		given, ok := doc[name]
		if !ok {
			continue
		}
		sf, df := s.Field(i), d.Field(i)
		child := e.Dir[name]
		switch {
		case child == nil || !child.IsDir():
			df.Set(sf)
		case sf.IsNil():
		case df.IsNil():
			df.Set(sf)
		case child.IsList():
			keys := sf.MethodByName("Keys").Call(nil)[0]
			vals := sf.MethodByName("Values").Call(nil)[0]
			entries, _ := given.([]any)
			if len(entries) != vals.Len() {
				return fmt.Errorf("%s: %d entries given, %d read", name, len(entries), vals.Len())
			}
			for j := range vals.Len() {
				if have := df.MethodByName("Get").Call([]reflect.Value{keys.Index(j)})[0]; !have.IsNil() {
					sub, _ := entries[j].(map[string]any)
					if err := merge(child, have, vals.Index(j), sub); err != nil {
						return err
					}
					continue
				}
				if err := df.MethodByName("Append").Call([]reflect.Value{vals.Index(j)})[0]; !err.IsNil() {
					return err.Interface().(error)
				}
			}
		default:
			sub, _ := given.(map[string]any)
			if err := merge(child, df, sf, sub); err != nil {
				return err
			}
		}
	}
	return nil
}
