package server

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/openconfig/ygot/util"
	"github.com/openconfig/ygot/ygot"
)

// marshalIETF is ygot.Marshal7951(gs, &ygot.RFC7951JSONConfig{AppendModuleName:
// true}), byte for byte, written directly from the generated structs.
// Marshal7951 builds a map per container, normalises every value through
// encoding/json at every level (marshal, then unmarshal) and marshals the
// result once more: over 5 s and 1.8 GB for 100k endpoints. This writes
// the same bytes (members sorted by name, as encoding/json sorts map keys;
// the same number and string forms) in one pass, with the walk over each
// struct type planned once by reflection. What it does not know (unions,
// maps, binary or empty leaves, presence containers, compressed paths, an
// enum value outside its type) it leaves to Marshal7951, as it does any
// error, so the answer is always Marshal7951's.
func marshalIETF(gs ygot.GoStruct) ([]byte, error) {
	if b, ok := fastIETF(gs); ok {
		return b, nil
	}
	return ygot.Marshal7951(gs, &ygot.RFC7951JSONConfig{AppendModuleName: true})
}

// fastIETF is marshalIETF's direct writer; ok is false where it cannot
// promise Marshal7951's bytes.
func fastIETF(gs ygot.GoStruct) (b []byte, ok bool) {
	v := reflect.ValueOf(gs)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, false
	}
	p := planFor(v.Type().Elem(), "")
	if p == nil {
		return nil, false
	}
	// Start at the size this type's last answer had: growing a buffer of
	// tens of megabytes by doubling costs more than writing it.
	buf := make([]byte, 0, max(512, p.lastSize.Load()+p.lastSize.Load()/16))
	buf, empty, err := p.append(buf, v.Elem())
	if err != nil {
		return nil, false
	}
	p.lastSize.Store(int64(len(buf)))
	if empty {
		buf = append(buf, "{}"...)
	}
	return buf, true
}

// errUnsupported stops the direct writer: Marshal7951 takes over.
var errUnsupported = errors.New("not handled by the direct JSON_IETF writer")

type fieldKind uint8

const (
	kString  fieldKind = iota // *string
	kUint                     // *uint8, *uint16, *uint32: a JSON number
	kInt                      // *int8, *int16, *int32: a JSON number
	kUint64                   // *uint64: a string (RFC 7951)
	kInt64                    // *int64: a string (RFC 7951)
	kBool                     // *bool
	kEnum                     // a generated enumeration (int64, 0 unset)
	kStruct                   // *struct: a container
	kList                     // *ordered map: a list, as an array
	kStrings                  // []string: a leaf-list
)

type fieldPlan struct {
	index int
	name  string // the member's name, module-qualified where RFC 7951 says
	kind  fieldKind
	// enum: the enumeration's names by value.
	enum map[int64]string
	// child: the plan of a container, or of a list's entries.
	child *structPlan
	// values: a list's Values method.
	values int
}

// structPlan is how one struct type is written, its members in the order
// encoding/json writes a map's keys.
type structPlan struct {
	fields []fieldPlan
	// lastSize is the length of the last document written from this type.
	lastSize atomic.Int64
}

type planKey struct {
	t         reflect.Type
	parentMod string
}

var plans sync.Map // planKey → *structPlan; a nil *structPlan: unsupported

// planFor is the plan of struct type t under a parent in module
// parentMod, nil if the type holds something the writer does not handle.
func planFor(t reflect.Type, parentMod string) *structPlan {
	k := planKey{t, parentMod}
	if p, ok := plans.Load(k); ok {
		return p.(*structPlan)
	}
	p := buildPlan(t, parentMod)
	plans.Store(k, p)
	return p
}

var (
	goStructType = reflect.TypeFor[ygot.GoStruct]()
	goEnumType   = reflect.TypeFor[ygot.GoEnum]()
	orderedType  = reflect.TypeFor[ygot.GoOrderedMap]()
)

func buildPlan(t reflect.Type, parentMod string) *structPlan {
	if t.Kind() != reflect.Struct || !reflect.PointerTo(t).Implements(goStructType) {
		return nil
	}
	p := &structPlan{}
	for i := range t.NumField() {
		sf := t.Field(i)
		path, ok := sf.Tag.Lookup("path")
		if !ok || path == "" || strings.ContainsAny(path, "/|") || !plainName(path) {
			return nil
		}
		if util.IsYangPresence(sf) {
			return nil
		}
		mod := sf.Tag.Get("module")
		if strings.ContainsAny(mod, "/|") || (mod != "" && !plainName(mod)) {
			return nil
		}
		// As ygot's prependmodsJSON: qualify a member by its module when
		// that differs from its parent's; its children then compare
		// against its module.
		name, chMod := path, mod
		if mod != "" && mod != parentMod {
			name = mod + ":" + path
		}
		f := fieldPlan{index: i, name: name}
		ft := sf.Type
		switch {
		case ft.Kind() == reflect.Pointer && ft.Implements(orderedType):
			m, ok := ft.MethodByName("Values")
			if !ok || m.Type.NumIn() != 1 || m.Type.NumOut() != 1 || m.Type.Out(0).Kind() != reflect.Slice {
				return nil
			}
			et := m.Type.Out(0).Elem()
			if et.Kind() != reflect.Pointer {
				return nil
			}
			f.kind, f.values = kList, m.Index
			if f.child = planFor(et.Elem(), chMod); f.child == nil {
				return nil
			}
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
			f.kind = kStruct
			if f.child = planFor(ft.Elem(), chMod); f.child == nil {
				return nil
			}
		case ft.Kind() == reflect.Pointer:
			// Scalars of a named type (unions' members) go to ygot.
			if ft.Elem().Name() != ft.Elem().Kind().String() {
				return nil
			}
			switch ft.Elem().Kind() {
			case reflect.String:
				f.kind = kString
			case reflect.Uint8, reflect.Uint16, reflect.Uint32:
				f.kind = kUint
			case reflect.Int8, reflect.Int16, reflect.Int32:
				f.kind = kInt
			case reflect.Uint64:
				f.kind = kUint64
			case reflect.Int64:
				f.kind = kInt64
			case reflect.Bool:
				f.kind = kBool
			default:
				return nil
			}
		case ft.Kind() == reflect.Int64 && ft.Implements(goEnumType):
			f.kind = kEnum
			e := reflect.Zero(ft).Interface().(ygot.GoEnum)
			defs, ok := e.ΛMap()[ft.Name()]
			if !ok {
				return nil
			}
			f.enum = make(map[int64]string, len(defs))
			for v, d := range defs {
				n := d.Name
				if d.DefiningModule != "" {
					n = d.DefiningModule + ":" + d.Name
				}
				f.enum[v] = n
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String && ft.Elem().Name() == "string" && ft.Name() == "":
			f.kind = kStrings
		default:
			return nil
		}
		p.fields = append(p.fields, f)
	}
	slices.SortFunc(p.fields, func(a, b fieldPlan) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(p.fields); i++ {
		if p.fields[i].name == p.fields[i-1].name {
			return nil
		}
	}
	return p
}

// plainName: a name that JSON writes as is.
func plainName(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// append writes the struct v as a JSON object, or nothing (empty true)
// when none of its members is set: Marshal7951 leaves empty containers
// out.
func (p *structPlan) append(buf []byte, v reflect.Value) ([]byte, bool, error) {
	start := len(buf)
	n := 0
	for i := range p.fields {
		f := &p.fields[i]
		fv := v.Field(f.index)
		mark := len(buf)
		if n == 0 {
			buf = append(buf, '{')
		} else {
			buf = append(buf, ',')
		}
		buf = append(buf, '"')
		buf = append(buf, f.name...)
		buf = append(buf, '"', ':')
		switch f.kind {
		case kEnum:
			x := fv.Int()
			if x == 0 {
				buf = buf[:mark]
				continue
			}
			name, ok := f.enum[x]
			if !ok {
				return nil, false, errUnsupported
			}
			buf = appendString(buf, name)
		case kStrings:
			if fv.IsNil() {
				buf = buf[:mark]
				continue
			}
			buf = append(buf, '[')
			for j := range fv.Len() {
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = appendString(buf, fv.Index(j).String())
			}
			buf = append(buf, ']')
		default:
			if fv.IsNil() {
				buf = buf[:mark]
				continue
			}
			switch f.kind {
			case kString:
				buf = appendString(buf, fv.Elem().String())
			case kUint:
				buf = strconv.AppendUint(buf, fv.Elem().Uint(), 10)
			case kInt:
				buf = strconv.AppendInt(buf, fv.Elem().Int(), 10)
			case kUint64:
				buf = append(buf, '"')
				buf = strconv.AppendUint(buf, fv.Elem().Uint(), 10)
				buf = append(buf, '"')
			case kInt64:
				buf = append(buf, '"')
				buf = strconv.AppendInt(buf, fv.Elem().Int(), 10)
				buf = append(buf, '"')
			case kBool:
				buf = strconv.AppendBool(buf, fv.Elem().Bool())
			case kStruct:
				var empty bool
				var err error
				if buf, empty, err = f.child.append(buf, fv.Elem()); err != nil {
					return nil, false, err
				}
				if empty {
					buf = buf[:mark]
					continue
				}
			case kList:
				entries := fv.Method(f.values).Call(nil)[0]
				buf = append(buf, '[')
				for j := range entries.Len() {
					if j > 0 {
						buf = append(buf, ',')
					}
					e := entries.Index(j)
					if e.IsNil() {
						return nil, false, errUnsupported
					}
					var empty bool
					var err error
					if buf, empty, err = f.child.append(buf, e.Elem()); err != nil {
						return nil, false, err
					}
					if empty { // a list entry is written even when empty
						buf = append(buf, "{}"...)
					}
				}
				buf = append(buf, ']')
			}
		}
		n++
	}
	if n == 0 {
		return buf[:start], true, nil
	}
	return append(buf, '}'), false, nil
}

// appendString writes s as Marshal7951 does: as encoding/json does
// (HTML-safe escaping), each byte of invalid UTF-8 becoming U+FFFD (its
// normalisation decodes encoding/json's "\\ufffd" back to the character);
// directly when nothing needs escaping.
func appendString(buf []byte, s string) []byte {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			if !utf8.ValidString(s) {
				var v strings.Builder
				for len(s) > 0 {
					r, n := utf8.DecodeRuneInString(s)
					if r == utf8.RuneError && n == 1 {
						v.WriteRune(utf8.RuneError)
					} else {
						v.WriteString(s[:n])
					}
					s = s[n:]
				}
				s = v.String()
			}
			b, _ := json.Marshal(s)
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}
