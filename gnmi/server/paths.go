package server

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// This file checks what a request addresses before anything resolves it:
// ygot ignores an origin, matches a key it does not know as a partial key
// (so that vpc[id=red] is every VPC) and answers an unknown element with a
// dump of its schema. gNMI wants each of those refused (specification
// §2.2.2.1, §2.6, §2.7.3), in words an operator can act on.

// origin is the one origin served: the p4mesh model. The empty origin
// means it too.
const origin = "p4mesh"

// checkOrigin refuses a path whose origin, or whose prefix's, is another
// model's (§2.2.2.1): answering from p4mesh's model would be answering
// for data the client did not ask for.
func checkOrigin(prefix, p *gnmi.Path) error {
	for _, o := range []string{prefix.GetOrigin(), p.GetOrigin()} {
		if o != "" && o != origin {
			return status.Errorf(codes.InvalidArgument, "%s: origin %q is not served here: p4mesh serves its own model, with origin %q or none", pathString(fullPath(prefix, p)), o, origin)
		}
	}
	return nil
}

// checkModels refuses use_models naming a model other than p4mesh's
// (§2.6: data of other models MUST NOT be returned, and there is none).
func checkModels(models []*gnmi.ModelData) error {
	for _, m := range models {
		if m.GetName() != origin {
			return status.Errorf(codes.InvalidArgument, "use_models names %q: this server has only the %q model", m.GetName(), origin)
		}
	}
	return nil
}

// schemaAt checks p, a full path, against the model and returns the
// schema entry it names: an element the model does not have is NotFound,
// keys on what is not a list or that the list does not have are
// InvalidArgument. A wildcard element name ("*", "...") ends the check
// with a nil entry: what lies below is matched against the data.
func (s *Server) schemaAt(p *gnmi.Path) (*yang.Entry, error) {
	e := s.schema.RootSchema()
	for i, el := range p.GetElem() {
		name := el.GetName()
		if name == "*" || name == "..." {
			return nil, nil
		}
		child := e.Dir[name]
		if child == nil || !e.IsDir() {
			above := pathString(&gnmi.Path{Elem: p.GetElem()[:i]})
			if !e.IsDir() {
				return nil, status.Errorf(codes.NotFound, "%s: %s is a leaf; nothing lies below it", pathString(p), above)
			}
			return nil, status.Errorf(codes.NotFound, "%s: the model has no %q under %s; there: %s", pathString(p), name, above, strings.Join(slices.Sorted(mapKeys(e.Dir)), ", "))
		}
		if len(el.GetKey()) > 0 {
			if !child.IsList() {
				return nil, status.Errorf(codes.InvalidArgument, "%s: %s is not a list and takes no keys", pathString(p), name)
			}
			keys := strings.Fields(child.Key)
			for _, k := range slices.Sorted(mapKeys(el.GetKey())) {
				if !slices.Contains(keys, k) {
					return nil, status.Errorf(codes.InvalidArgument, "%s: list %s has no key %q; its keys are %s", pathString(p), name, k, quoteAll(keys))
				}
			}
		}
		e = child
	}
	return e, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// wildcard reports whether p matches more than what it spells: a "*"
// key or element, "...", a list without its keys or with only some.
func (s *Server) wildcard(p *gnmi.Path) bool {
	e := s.schema.RootSchema()
	for _, el := range p.GetElem() {
		if el.GetName() == "*" || el.GetName() == "..." {
			return true
		}
		for _, v := range el.GetKey() {
			if v == "*" {
				return true
			}
		}
		if e = e.Dir[el.GetName()]; e == nil {
			return false
		}
		if e.IsList() && len(el.GetKey()) != len(strings.Fields(e.Key)) {
			return true
		}
	}
	return false
}

// ygotNoise matches what ygot's errors say about Go rather than the
// model: status wrappers, generated type names, pointers.
var ygotNoise = regexp.MustCompile(`rpc error: code = \w+ desc = |\*?oc\.[A-Za-z0-9_]+|\b0x[0-9a-f]+\b`)

// plain is err's text without ygot's Go-speak, for the rare refusal whose
// reason only ygot can give (the common ones are worded here).
func plain(err error) string {
	msg := err.Error()
	if s, ok := status.FromError(err); ok {
		msg = s.Message()
	}
	msg = ygotNoise.ReplaceAllStringFunc(msg, func(m string) string {
		if strings.Contains(m, "oc.") {
			return "the container"
		}
		return ""
	})
	return strings.ReplaceAll(msg, "list Statement", "list")
}

// checkRead checks a Get or Subscribe path against the model: schemaAt,
// and for a path with wildcard element names ("*", "...") that some node
// of the model matches it.
func (s *Server) checkRead(p *gnmi.Path) error {
	if _, err := s.schemaAt(p); err != nil {
		return err
	}
	if len(s.expand(p)) == 0 {
		return status.Errorf(codes.NotFound, "%s: no node of the model matches it", pathString(p))
	}
	return nil
}

func isDots(e *gnmi.PathElem) bool { return e.GetName() == "..." }

// expand spells out p's wildcard element names against the schema: "*"
// is any child, "..." any number of levels, none included (§2.2.2.1).
// A list reached through them is left without keys, which matches every
// entry. A "..." at the end adds nothing (a path is its node and all
// below it, §2.4.3) and is dropped. p without wildcard names is itself.
func (s *Server) expand(p *gnmi.Path) []*gnmi.Path {
	elems := p.GetElem()
	for len(elems) > 0 && isDots(elems[len(elems)-1]) {
		elems = elems[:len(elems)-1]
	}
	if !slices.ContainsFunc(elems, func(e *gnmi.PathElem) bool { return isDots(e) || e.GetName() == "*" }) {
		return []*gnmi.Path{{Elem: elems}}
	}
	var out []*gnmi.Path
	seen := map[string]bool{}
	var walk func(e *yang.Entry, rest, built []*gnmi.PathElem)
	walk = func(e *yang.Entry, rest, built []*gnmi.PathElem) {
		if len(rest) == 0 {
			q := &gnmi.Path{Elem: slices.Clone(built)}
			if k := pathString(q); !seen[k] {
				seen[k] = true
				out = append(out, q)
			}
			return
		}
		el := rest[0]
		switch el.GetName() {
		case "...":
			walk(e, rest[1:], built)
			for _, name := range slices.Sorted(mapKeys(e.Dir)) {
				walk(e.Dir[name], rest, append(built, &gnmi.PathElem{Name: name}))
			}
		case "*":
			for _, name := range slices.Sorted(mapKeys(e.Dir)) {
				c := e.Dir[name]
				ne := &gnmi.PathElem{Name: name}
				if c.IsList() {
					ne.Key = el.GetKey()
				}
				walk(c, rest[1:], append(built, ne))
			}
		default:
			if c := e.Dir[el.GetName()]; c != nil {
				walk(c, rest[1:], append(built, el))
			}
		}
	}
	walk(s.schema.RootSchema(), elems, nil)
	return out
}
