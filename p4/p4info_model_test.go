package p4

import (
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The model of what each architecture's p4c emits: a small scanner reads a
// program (its local includes expanded by SourceFor) and expectedP4Info
// builds the P4Info from it, following
//
//   - v1model: p4c's control-plane serializer (control-plane/
//     p4RuntimeSerializer.cpp, p4RuntimeSymbolTable.cpp,
//     p4RuntimeArchStandard.h), as p4c-bm2-ss --p4runtime-files runs it;
//   - tna: bf-p4c's (backends/tofino/bf-p4c/control-plane/
//     bfruntime_arch_handler.h) followed by --p4runtime-force-std-externs
//     (p4runtime_force_std.cpp), the P4Info Stratum takes: tables named
//     without the pipe, TNA externs converted to standard action_profiles
//     and digests with ids from the name hash (@id on them is not read),
//     the ingress parser's $PORT_METADATA kept as an extern;
//   - pna: p4c-dpdk's (backends/dpdk/control-plane/bfruntime_arch_handler.h):
//     tables and action profiles prefixed with the pipe, each
//     ActionSelector also a dpdk "ActionSelector" extern.
//
// The scanner understands exactly the constructs the programs use and
// reports anything it does not, so it cannot silently skip a declaration.

// checkP4Info returns every difference between info and the P4Info the
// architecture's p4c emits for src. An empty result means they agree.
func checkP4Info(arch, src string, info *p4configv1.P4Info) []string {
	prog, problems := scanProgram(arch, src)
	want, more := expectedP4Info(prog)
	problems = append(problems, more...)
	if want == nil {
		return problems
	}
	return append(problems, compareP4Info(want, info)...)
}

// ---------------------------------------------------------------- the scanner

type field struct {
	name string
	typ  string // "bit<N>" or a type name
}

type param struct {
	name     string
	bits     int
	typeName string // a `type` (P4 newtype): P4Info type_name
}

type keyElem struct {
	expr, kind, name string
}

type actionRef struct {
	name        string
	annotations []string
}

type srcAction struct {
	name   string
	id     uint32
	params []param
}

type srcTable struct {
	name           string
	id             uint32
	keys           []keyElem
	actions        []actionRef
	defaultAction  string
	defaultArgs    []*big.Int
	defaultConst   bool
	implementation string // the name the table's implementation property gives
	counters       string
	size           int64
}

// srcSelector is an action selector as the P4Info's action profile: on
// v1model and PNA one declaration; on TNA an ActionProfile (name, size) and
// the ActionSelector over it (impl, maxGroupSize, groups).
type srcSelector struct {
	name         string
	id           uint32
	size         int64
	impl         string // what tables name in implementation
	maxGroupSize int64
	groups       int64
}

type srcCounter struct {
	name string
	id   uint32
	unit string
}

type srcDigest struct {
	typeName string // digest<T>'s T
	name     string // the control-plane name (v1model: T)
}

type srcControl struct {
	name      string
	params    map[string]string // variable -> type name
	actions   []srcAction
	tables    []srcTable
	selectors []srcSelector
	counters  []srcCounter
	digests   []srcDigest
}

type ctrlHeader struct {
	typeName, ctrlName string
	annotations        []string
	fields             []field
}

type newType struct {
	bits    int    // the underlying bit<W>
	uri     string // @p4runtime_translation's URI, if any
	sdnBits int    // and its width
}

type program struct {
	arch        string
	types       map[string][]field // headers and structs
	typedefs    map[string]int     // typedef bit<W> name
	newTypes    map[string]newType // type bit<W> name
	ctrlHeaders []ctrlHeader
	controls    []srcControl
	parsers     []string // parser names, in order
}

var (
	blockCommentRe = regexp.MustCompile(`(?s)/\*.*?\*/`)
	lineCommentRe  = regexp.MustCompile(`//[^\n]*`)
	defineRe       = regexp.MustCompile(`^#\s*define\s+(\w+)\s+(\S.*)$`)
	typeDeclRe     = regexp.MustCompile(`(?s)((?:@\w+(?:\([^)]*\))?\s*)*)\b(header|struct)\s+(\w+)\s*\{([^}]*)\}`)
	annotationRe   = regexp.MustCompile(`@(\w+)(?:\(([^)]*)\))?`)
	typedefRe      = regexp.MustCompile(`\btypedef\s+bit<(\d+)>\s+(\w+)\s*;`)
	newTypeRe      = regexp.MustCompile(`(?s)((?:@\w+(?:\([^)]*\))?\s*)*)\btype\s+bit<(\d+)>\s+(\w+)\s*;`)
	translationRe  = regexp.MustCompile(`@p4runtime_translation\(\s*"([^"]+)"\s*,\s*(\d+)\s*\)`)
	fieldRe        = regexp.MustCompile(`^\s*(bit<\d+>|\w+)\s+(\w+)\s*$`)
	ctrlHeaderRe   = regexp.MustCompile(`@controller_header\("([^"]*)"\)`)
	controlRe      = regexp.MustCompile(`\bcontrol\s+(\w+)\s*\(([^)]*)\)\s*\{`)
	parserRe       = regexp.MustCompile(`\bparser\s+(\w+)\s*\(([^)]*)\)\s*\{`)
	ctrlParamRe    = regexp.MustCompile(`^\s*(?:in|out|inout)?\s*(\w+)\s+(\w+)\s*$`)
	idAnnotRe      = regexp.MustCompile(`@id\(\s*(0x[0-9A-Fa-f]+|\d+)\s*\)`)
	nameAnnotRe    = regexp.MustCompile(`@name\(\s*"([^"]*)"\s*\)`)
	actionDeclRe   = regexp.MustCompile(`\baction\s+(\w+)\s*\(([^)]*)\)\s*\{`)
	tableDeclRe    = regexp.MustCompile(`\btable\s+(\w+)\s*\{`)
	// v1model
	selectorDeclRe = regexp.MustCompile(`\baction_selector\s*\(\s*HashAlgorithm\.\w+\s*,\s*(?:32w)?(\d+)\s*,\s*(?:32w)?\d+\s*\)\s*(\w+)\s*;`)
	counterDeclRe  = regexp.MustCompile(`\bdirect_counter\s*\(\s*CounterType\.(\w+)\s*\)\s*(\w+)\s*;`)
	digestCallRe   = regexp.MustCompile(`\bdigest\s*<\s*(\w+)\s*>\s*\(`)
	// TNA
	tnaProfileRe  = regexp.MustCompile(`\bActionProfile\s*\(\s*(?:32w)?(\d+)\s*\)\s*(\w+)\s*;`)
	tnaSelectorRe = regexp.MustCompile(`\bActionSelector\s*\(\s*(\w+)\s*,\s*(\w+)\s*,\s*SelectorMode_t\.\w+\s*,\s*(?:32w)?(\d+)\s*,\s*(?:32w)?(\d+)\s*\)\s*(\w+)\s*;`)
	// Digest<T>(digest_type) name; (or the deprecated Digest<T>())
	tnaDigestRe = regexp.MustCompile(`((?:@\w+(?:\([^)]*\))?\s*)*)\bDigest\s*<\s*(\w+)\s*>\s*\(\s*\w*\s*\)\s*(\w+)\s*;`)
	// PNA
	pnaSelectorRe = regexp.MustCompile(`\bActionSelector\s*\(\s*PNA_HashAlgorithm_t\.\w+\s*,\s*(?:32w)?(\d+)\s*,\s*(?:32w)?(\d+)\s*\)\s*(\w+)\s*;`)

	otherExternRe  = regexp.MustCompile(`\b(counter|meter|direct_meter|register|action_profile|value_set|Counter|DirectCounter|Meter|DirectMeter|Register|DirectRegister|Lpf|DirectLpf|Wred|DirectWred|ValueSet|value_set)\s*[<(]`)
	paramRe        = regexp.MustCompile(`^\s*(bit<\d+>|\w+)\s+(\w+)\s*$`)
	keyBlockRe     = regexp.MustCompile(`(?s)\bkey\s*=\s*\{([^}]*)\}`)
	keyElemRe      = regexp.MustCompile(`^\s*([\w.]+)\s*:\s*(\w+)\s*(?:@name\("([^"]*)"\))?\s*$`)
	actionsBlockRe = regexp.MustCompile(`(?s)\bactions\s*=\s*\{([^}]*)\}`)
	actionRefRe    = regexp.MustCompile(`^\s*((?:@\w+\s+)*)(\w+)\s*(?:\(\s*\))?\s*$`)
	defaultRe      = regexp.MustCompile(`(?s)\b(const\s+)?default_action\s*=\s*(\w+)\s*\(([^)]*)\)\s*;`)
	implRe         = regexp.MustCompile(`\bimplementation\s*=\s*(\w+)\s*;`)
	pnaImplRe      = regexp.MustCompile(`\bpna_implementation\s*=\s*(\w+)\s*;`)
	countersPropRe = regexp.MustCompile(`\bcounters\s*=\s*(\w+)\s*;`)
	otherPropRe    = regexp.MustCompile(`\b(psa_implementation|psa_direct_counter|pna_direct_counter|pna_direct_meter|meters|pna_idle_timeout|idle_timeout)\s*=`)
	sizeRe         = regexp.MustCompile(`\bsize\s*=\s*(\d+)\s*;`)
	literalRe      = regexp.MustCompile(`^\s*(?:\d+w)?(0x[0-9A-Fa-f]+|\d+)\s*$`)
)

// preprocess does what the C preprocessor does to the programs that the
// scanner needs: it joins continued lines, drops the directives, and
// replaces the object-like macros (#define CPU_PORT 192; the first
// definition, as under #ifndef) in the rest. Function-like macros are left
// where they are used: only parsers use them.
func preprocess(src string) string {
	src = strings.ReplaceAll(src, "\\\n", " ")
	macros := map[string]string{}
	var names []string
	var out []string
	for _, line := range strings.Split(src, "\n") {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "#") {
			out = append(out, line)
			continue
		}
		out = append(out, "")
		if m := defineRe.FindStringSubmatch(t); m != nil {
			if _, dup := macros[m[1]]; !dup {
				macros[m[1]] = strings.TrimSpace(lineCommentRe.ReplaceAllString(m[2], ""))
				names = append(names, m[1])
			}
		}
	}
	text := strings.Join(out, "\n")
	for _, n := range names {
		text = regexp.MustCompile(`\b`+n+`\b`).ReplaceAllLiteralString(text, macros[n])
	}
	return text
}

// scanProgram reads the declarations of src that reach the P4Info.
func scanProgram(arch, src string) (*program, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	src = blockCommentRe.ReplaceAllStringFunc(src, func(s string) string {
		return strings.Repeat(" ", len(s)) // keep offsets for brace matching
	})
	src = lineCommentRe.ReplaceAllString(src, "")
	src = preprocess(src)

	prog := &program{arch: arch, types: map[string][]field{}, typedefs: map[string]int{}, newTypes: map[string]newType{}}
	for _, m := range typedefRe.FindAllStringSubmatch(src, -1) {
		n, _ := strconv.Atoi(m[1])
		prog.typedefs[m[2]] = n
	}
	for _, m := range newTypeRe.FindAllStringSubmatch(src, -1) {
		n, _ := strconv.Atoi(m[2])
		nt := newType{bits: n}
		if tm := translationRe.FindStringSubmatch(m[1]); tm != nil {
			nt.uri = tm[1]
			nt.sdnBits, _ = strconv.Atoi(tm[2])
		}
		prog.newTypes[m[3]] = nt
	}
	for _, m := range typeDeclRe.FindAllStringSubmatch(src, -1) {
		annots, kind, name, body := m[1], m[2], m[3], m[4]
		var fields []field
		for _, decl := range strings.Split(body, ";") {
			if strings.TrimSpace(decl) == "" {
				continue
			}
			fm := fieldRe.FindStringSubmatch(decl)
			if fm == nil {
				bad("%s %s: cannot read field %q", kind, name, strings.TrimSpace(decl))
				continue
			}
			fields = append(fields, field{name: fm[2], typ: fm[1]})
		}
		prog.types[name] = fields
		if cm := ctrlHeaderRe.FindStringSubmatch(annots); cm != nil {
			if kind != "header" {
				bad("@controller_header on %s %s", kind, name)
			}
			h := ctrlHeader{typeName: name, ctrlName: cm[1], fields: fields}
			for _, am := range annotationRe.FindAllStringSubmatch(annots, -1) {
				switch am[1] {
				case "id", "name", "hidden":
					continue
				}
				a := "@" + am[1]
				if strings.Contains(am[0], "(") {
					a += "(" + strings.TrimSpace(am[2]) + ")"
				}
				h.annotations = append(h.annotations, a)
			}
			prog.ctrlHeaders = append(prog.ctrlHeaders, h)
		}
	}
	for _, m := range parserRe.FindAllStringSubmatch(src, -1) {
		prog.parsers = append(prog.parsers, m[1])
	}

	recognizedIDs := 0
	for _, cm := range controlRe.FindAllStringSubmatchIndex(src, -1) {
		ctl := srcControl{name: src[cm[2]:cm[3]], params: map[string]string{}}
		for _, p := range strings.Split(src[cm[4]:cm[5]], ",") {
			if pm := ctrlParamRe.FindStringSubmatch(p); pm != nil {
				ctl.params[pm[2]] = pm[1]
			}
		}
		bodyStart := cm[1] - 1
		bodyEnd := matchBrace(src, bodyStart)
		if bodyEnd < 0 {
			bad("control %s: unbalanced braces", ctl.name)
			continue
		}
		body := src[bodyStart+1 : bodyEnd]

		// Declarations, each with the @id annotation right before it
		// (possibly with other annotations between).
		annotsBefore := func(pos int) string {
			prefix := strings.TrimRight(body[:pos], " \t\n")
			// the run of annotations that ends the prefix
			start := len(prefix)
			for {
				loc := regexp.MustCompile(`@\w+(?:\([^)]*\))?\s*$`).FindStringIndex(prefix[:start])
				if loc == nil {
					break
				}
				start = loc[0]
				start = len(strings.TrimRight(prefix[:start], " \t\n"))
			}
			return prefix[start:]
		}
		idBefore := func(pos int) (uint32, bool) {
			m := idAnnotRe.FindStringSubmatch(annotsBefore(pos))
			if m == nil {
				return 0, false
			}
			v, err := strconv.ParseUint(m[1], 0, 32)
			if err != nil {
				return 0, false
			}
			recognizedIDs++
			return uint32(v), true
		}
		for _, m := range actionDeclRe.FindAllStringSubmatchIndex(body, -1) {
			a := srcAction{name: body[m[2]:m[3]]}
			id, ok := idBefore(m[0])
			if !ok {
				bad("action %s.%s has no @id", ctl.name, a.name)
			}
			a.id = id
			for _, p := range strings.Split(body[m[4]:m[5]], ",") {
				if strings.TrimSpace(p) == "" {
					continue
				}
				pm := paramRe.FindStringSubmatch(p)
				if pm == nil {
					bad("action %s.%s: cannot read parameter %q", ctl.name, a.name, strings.TrimSpace(p))
					continue
				}
				bits, typeName, ok := prog.width(pm[1])
				if !ok {
					bad("action %s.%s: parameter %s has type %s, not bit<W> or a type of it", ctl.name, a.name, pm[2], pm[1])
				}
				a.params = append(a.params, param{name: pm[2], bits: bits, typeName: typeName})
			}
			ctl.actions = append(ctl.actions, a)
		}
		for _, m := range tableDeclRe.FindAllStringSubmatchIndex(body, -1) {
			tbl := srcTable{name: body[m[2]:m[3]], size: 1024} // v1model's default size
			id, ok := idBefore(m[0])
			if !ok {
				bad("table %s.%s has no @id", ctl.name, tbl.name)
			}
			tbl.id = id
			end := matchBrace(body, m[1]-1)
			if end < 0 {
				bad("table %s.%s: unbalanced braces", ctl.name, tbl.name)
				continue
			}
			tb := body[m[1]:end]
			if km := keyBlockRe.FindStringSubmatch(tb); km != nil {
				for _, e := range strings.Split(km[1], ";") {
					if strings.TrimSpace(e) == "" {
						continue
					}
					em := keyElemRe.FindStringSubmatch(e)
					if em == nil {
						bad("table %s.%s: cannot read key element %q", ctl.name, tbl.name, strings.TrimSpace(e))
						continue
					}
					tbl.keys = append(tbl.keys, keyElem{expr: em[1], kind: em[2], name: em[3]})
				}
			}
			if am := actionsBlockRe.FindStringSubmatch(tb); am != nil {
				for _, e := range strings.Split(am[1], ";") {
					if strings.TrimSpace(e) == "" {
						continue
					}
					rm := actionRefRe.FindStringSubmatch(e)
					if rm == nil {
						bad("table %s.%s: cannot read action %q", ctl.name, tbl.name, strings.TrimSpace(e))
						continue
					}
					tbl.actions = append(tbl.actions, actionRef{name: rm[2], annotations: strings.Fields(rm[1])})
				}
			}
			if dm := defaultRe.FindStringSubmatch(tb); dm != nil {
				tbl.defaultConst = dm[1] != ""
				tbl.defaultAction = dm[2]
				for _, arg := range strings.Split(dm[3], ",") {
					if strings.TrimSpace(arg) == "" {
						continue
					}
					v, ok := parseLiteral(arg)
					if !ok {
						bad("table %s.%s: default action argument %q is not a literal", ctl.name, tbl.name, strings.TrimSpace(arg))
						continue
					}
					tbl.defaultArgs = append(tbl.defaultArgs, v)
				}
			}
			impl, otherImpl := implRe, pnaImplRe
			if arch == PNA {
				impl, otherImpl = pnaImplRe, implRe
			}
			if im := impl.FindStringSubmatch(tb); im != nil {
				tbl.implementation = im[1]
			}
			if otherImpl.MatchString(tb) {
				bad("table %s.%s: %s is not the implementation property of %s", ctl.name, tbl.name, otherImpl.FindStringSubmatch(tb)[0], arch)
			}
			if cm := countersPropRe.FindStringSubmatch(tb); cm != nil {
				tbl.counters = cm[1]
				if arch != V1Model {
					bad("table %s.%s: counters = is v1model's; this test models no %s direct counters", ctl.name, tbl.name, arch)
				}
			}
			if om := otherPropRe.FindStringSubmatch(tb); om != nil {
				bad("table %s.%s: property %s is not modelled", ctl.name, tbl.name, om[1])
			}
			if sm := sizeRe.FindStringSubmatch(tb); sm != nil {
				tbl.size, _ = strconv.ParseInt(sm[1], 10, 64)
			}
			ctl.tables = append(ctl.tables, tbl)
		}
		switch arch {
		case V1Model:
			for _, m := range selectorDeclRe.FindAllStringSubmatchIndex(body, -1) {
				s := srcSelector{name: body[m[4]:m[5]]}
				s.impl = s.name
				s.size, _ = strconv.ParseInt(body[m[2]:m[3]], 10, 64)
				id, ok := idBefore(m[0])
				if !ok {
					bad("action_selector %s.%s has no @id", ctl.name, s.name)
				}
				s.id = id
				ctl.selectors = append(ctl.selectors, s)
			}
			for _, m := range counterDeclRe.FindAllStringSubmatchIndex(body, -1) {
				c := srcCounter{name: body[m[4]:m[5]], unit: body[m[2]:m[3]]}
				id, ok := idBefore(m[0])
				if !ok {
					bad("direct_counter %s.%s has no @id", ctl.name, c.name)
				}
				c.id = id
				ctl.counters = append(ctl.counters, c)
			}
			for _, m := range digestCallRe.FindAllStringSubmatch(body, -1) {
				if !containsDigest(ctl.digests, m[1]) {
					ctl.digests = append(ctl.digests, srcDigest{typeName: m[1], name: m[1]})
				}
			}
		case TNA:
			profiles := map[string]int{}
			for _, m := range tnaProfileRe.FindAllStringSubmatchIndex(body, -1) {
				s := srcSelector{name: body[m[4]:m[5]]}
				s.size, _ = strconv.ParseInt(body[m[2]:m[3]], 10, 64)
				// bf-p4c does not read it, but the contract keeps one.
				id, ok := idBefore(m[0])
				if !ok {
					bad("ActionProfile %s.%s has no @id", ctl.name, s.name)
				}
				s.id = id
				profiles[s.name] = len(ctl.selectors)
				ctl.selectors = append(ctl.selectors, s)
			}
			for _, m := range tnaSelectorRe.FindAllStringSubmatch(body, -1) {
				i, ok := profiles[m[1]]
				if !ok {
					bad("ActionSelector %s.%s: %s is no ActionProfile of %s", ctl.name, m[5], m[1], ctl.name)
					continue
				}
				s := &ctl.selectors[i]
				if s.impl != "" {
					bad("ActionProfile %s.%s has two ActionSelectors", ctl.name, s.name)
				}
				s.impl = m[5]
				s.maxGroupSize, _ = strconv.ParseInt(m[3], 10, 64)
				s.groups, _ = strconv.ParseInt(m[4], 10, 64)
			}
			for _, s := range ctl.selectors {
				if s.impl == "" {
					bad("ActionProfile %s.%s has no ActionSelector: p4mesh's profiles are all selectors", ctl.name, s.name)
				}
			}
			for _, m := range tnaDigestRe.FindAllStringSubmatch(body, -1) {
				d := srcDigest{typeName: m[2], name: ctl.name + "." + m[3]}
				if nm := nameAnnotRe.FindStringSubmatch(m[1]); nm != nil {
					d.name = nm[1]
					if strings.HasPrefix(d.name, ".") {
						d.name = d.name[1:]
					} else {
						d.name = ctl.name + "." + d.name
					}
				}
				ctl.digests = append(ctl.digests, d)
			}
			if n := strings.Count(body, "Digest<"); n != len(ctl.digests) {
				bad("control %s: %d Digest<...> but %d read", ctl.name, n, len(ctl.digests))
			}
		case PNA:
			for _, m := range pnaSelectorRe.FindAllStringSubmatchIndex(body, -1) {
				s := srcSelector{name: body[m[6]:m[7]]}
				s.impl = s.name
				s.size, _ = strconv.ParseInt(body[m[2]:m[3]], 10, 64)
				if w, _ := strconv.Atoi(body[m[4]:m[5]]); w >= 32 {
					bad("ActionSelector %s.%s: p4c-dpdk wants an output width under 32", ctl.name, s.name)
				}
				id, ok := idBefore(m[0])
				if !ok {
					bad("ActionSelector %s.%s has no @id", ctl.name, s.name)
				}
				s.id = id
				ctl.selectors = append(ctl.selectors, s)
			}
			if strings.Contains(body, "Digest<") {
				bad("control %s declares a Digest, which p4c-dpdk cannot generate", ctl.name)
			}
		}
		if n := len(regexp.MustCompile(`\b(action_selector|ActionSelector)\s*\(`).FindAllString(body, -1)); n != len(ctl.selectors) {
			bad("control %s: %d selector declarations, %d read", ctl.name, n, len(ctl.selectors))
		}
		if m := otherExternRe.FindStringSubmatch(body); m != nil {
			bad("control %s declares a %s, which this test does not model", ctl.name, m[1])
		}
		prog.controls = append(prog.controls, ctl)
	}
	if all := len(idAnnotRe.FindAllString(src, -1)); all != recognizedIDs {
		bad("%d @id annotations in the source, but only %d on declarations this test reads", all, recognizedIDs)
	}
	return prog, problems
}

// width is the P4Runtime width of a type the program names, and its
// type_name when it is a `type`: a translated type's is the translation's.
func (p *program) width(typ string) (bits int, typeName string, ok bool) {
	if strings.HasPrefix(typ, "bit<") {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(typ, "bit<"), ">"))
		return n, "", err == nil
	}
	if n, ok := p.typedefs[typ]; ok {
		return n, "", true
	}
	if nt, ok := p.newTypes[typ]; ok {
		if nt.uri != "" {
			return nt.sdnBits, typ, true
		}
		return nt.bits, typ, true
	}
	return 0, "", false
}

func containsDigest(ds []srcDigest, typeName string) bool {
	for _, d := range ds {
		if d.typeName == typeName {
			return true
		}
	}
	return false
}

// parseLiteral reads an integer literal such as 10, 0x0a or 32w10.
func parseLiteral(s string) (*big.Int, bool) {
	m := literalRe.FindStringSubmatch(s)
	if m == nil {
		return nil, false
	}
	return new(big.Int).SetString(strings.ToLower(m[1]), 0)
}

// matchBrace returns the index of the brace closing the one at open, or -1.
func matchBrace(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// --------------------------------------------------------- p4c's P4Info rules

// jenkinsOneAtATime is the name hash of p4c's P4RuntimeSymbolTable.
func jenkinsOneAtATime(s string) uint32 {
	var h uint32
	for i := 0; i < len(s); i++ {
		h += uint32(s[i])
		h += h << 10
		h ^= h >> 6
	}
	h += h << 3
	h ^= h >> 11
	h += h << 15
	return h
}

// hashID is the id p4c gives a symbol without @id when nothing collides.
func hashID(prefix p4configv1.P4Ids_Prefix, name string) uint32 {
	return uint32(prefix)<<24 | jenkinsOneAtATime(name)&0xffffff
}

// Extern type ids outside p4info.proto: barefoot/p4info.proto (bf-p4c) and
// backends/dpdk/control-plane/proto/p4info.proto (p4c-dpdk).
const (
	barefootPortMetadata = 0x90
	dpdkActionSelector   = 0x81
	// p4c-dpdk's ActionSelector's max_group_size: ActionSelector::
	// defaultMaxGroupSize of its arch handler, whatever the program says.
	dpdkDefaultMaxGroupSize = 120
)

// standardMetadataBits are the v1model standard_metadata fields the program
// may use as keys.
var standardMetadataBits = map[string]int{"ingress_port": 9, "egress_spec": 9, "egress_port": 9}

// pipe is the pipeline's name: TNA's Pipeline instance, and p4c-dpdk's
// default for PNA.
const pipe = "pipe"

// expectedP4Info builds the P4Info the architecture's p4c emits for prog.
func expectedP4Info(prog *program) (*p4configv1.P4Info, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	arch := prog.arch

	info := &p4configv1.P4Info{
		PkgInfo:  &p4configv1.PkgInfo{Arch: arch},
		TypeInfo: &p4configv1.P4TypeInfo{}, // p4c always sets it, even empty
	}

	// The names each architecture gives its symbols (which make the ids
	// and aliases) and its P4Info entries. bf-p4c's symbols of tables and
	// externs carry the pipe, which --p4runtime-force-std-externs strips
	// from the P4Info; p4c-dpdk's symbols do not, and it adds the pipe to
	// the P4Info names of tables and action profiles.
	tableSym := func(ctl, n string) string {
		if arch == TNA {
			return pipe + "." + ctl + "." + n
		}
		return ctl + "." + n
	}
	tableName := func(ctl, n string) string {
		if arch == PNA {
			return pipe + "." + ctl + "." + n
		}
		return ctl + "." + n
	}
	profileSym, profileName := tableSym, tableName

	// Symbols and ids. Explicit @id first; then, per resource type in
	// increasing order and names in sorted order, the name hash with linear
	// probing over every id taken so far (computeIdsForSymbols).
	assigned := map[uint32]string{}
	allNames := []string{}
	take := func(id uint32, prefix p4configv1.P4Ids_Prefix, what string) {
		if id>>24 != uint32(prefix) {
			bad("%s: @id %#08x does not carry resource type %#02x", what, id, uint32(prefix))
		}
		if prev, dup := assigned[id]; dup {
			bad("%s: @id %#08x is also %s", what, id, prev)
		}
		assigned[id] = what
	}
	for _, ctl := range prog.controls {
		for _, a := range ctl.actions {
			take(a.id, p4configv1.P4Ids_ACTION, "action "+ctl.name+"."+a.name)
			allNames = append(allNames, ctl.name+"."+a.name)
		}
		for _, tb := range ctl.tables {
			take(tb.id, p4configv1.P4Ids_TABLE, "table "+ctl.name+"."+tb.name)
			allNames = append(allNames, tableSym(ctl.name, tb.name))
		}
		for _, s := range ctl.selectors {
			if arch != TNA { // bf-p4c does not read @id on TNA externs
				take(s.id, p4configv1.P4Ids_ACTION_PROFILE, "action selector "+ctl.name+"."+s.name)
			}
			allNames = append(allNames, profileSym(ctl.name, s.name))
			switch arch {
			case TNA:
				allNames = append(allNames, profileSym(ctl.name, s.impl))
			case PNA:
				allNames = append(allNames, ctl.name+"."+s.name+"_sel")
			}
		}
		for _, c := range ctl.counters {
			take(c.id, p4configv1.P4Ids_DIRECT_COUNTER, "direct counter "+ctl.name+"."+c.name)
			allNames = append(allNames, ctl.name+"."+c.name)
		}
	}
	hashed := map[string]uint32{}
	probe := func(prefix uint32, names []string) {
		sort.Strings(names)
		for _, n := range names {
			v := jenkinsOneAtATime(n)
			id := prefix<<24 | v&0xffffff
			for _, taken := assigned[id]; taken; _, taken = assigned[id] {
				v++
				id = prefix<<24 | v&0xffffff
			}
			assigned[id] = n
			hashed[n] = id
		}
	}
	var ctrlNames, digestSyms []string
	var digests []srcDigest
	for _, h := range prog.ctrlHeaders {
		ctrlNames = append(ctrlNames, h.typeName)
		allNames = append(allNames, h.typeName)
	}
	digestSym := func(d srcDigest) string {
		if arch == TNA {
			return pipe + "." + d.name
		}
		return d.name
	}
	for _, ctl := range prog.controls {
		for _, d := range ctl.digests {
			if !containsDigest(digests, d.typeName) {
				digests = append(digests, d)
				digestSyms = append(digestSyms, digestSym(d))
				allNames = append(allNames, digestSym(d))
			}
		}
	}
	probe(uint32(p4configv1.P4Ids_CONTROLLER_HEADER), append([]string(nil), ctrlNames...))
	var portMetadata string
	switch arch {
	case TNA:
		// bf-p4c's own extern types, in their enum order: action
		// profiles, selectors, digests, then the ingress parser's port
		// metadata. The standard ids keep the low 24 bits.
		var profs, sels []string
		for _, ctl := range prog.controls {
			for _, s := range ctl.selectors {
				profs = append(profs, profileSym(ctl.name, s.name))
				sels = append(sels, profileSym(ctl.name, s.impl))
			}
		}
		probe(0x81, profs)
		probe(0x82, sels)
		probe(0x8E, append([]string(nil), digestSyms...))
		if len(prog.parsers) == 0 {
			bad("no ingress parser")
		} else {
			portMetadata = pipe + "." + prog.parsers[0] + ".$PORT_METADATA"
			allNames = append(allNames, portMetadata)
			probe(barefootPortMetadata, []string{portMetadata})
		}
	case PNA:
		var sels []string
		for _, ctl := range prog.controls {
			for _, s := range ctl.selectors {
				sels = append(sels, ctl.name+"."+s.name+"_sel")
			}
		}
		probe(uint32(p4configv1.P4Ids_DIGEST), append([]string(nil), digestSyms...))
		probe(dpdkActionSelector, sels)
	default:
		probe(uint32(p4configv1.P4Ids_DIGEST), append([]string(nil), digestSyms...))
	}
	alias := aliases(allNames)
	stdID := func(prefix p4configv1.P4Ids_Prefix, sym string) uint32 {
		return uint32(prefix)<<24 | hashed[sym]&0xffffff
	}

	typeInfoNew := func(typeName string) {
		if typeName == "" {
			return
		}
		nt := prog.newTypes[typeName]
		spec := &p4configv1.P4NewTypeSpec{}
		if nt.uri != "" {
			spec.Representation = &p4configv1.P4NewTypeSpec_TranslatedType{TranslatedType: &p4configv1.P4NewTypeTranslation{
				Uri: nt.uri, SdnType: &p4configv1.P4NewTypeTranslation_SdnBitwidth{SdnBitwidth: int32(nt.sdnBits)},
			}}
		} else {
			spec.Representation = &p4configv1.P4NewTypeSpec_OriginalType{OriginalType: bitSpec(nt.bits)}
		}
		if info.TypeInfo.NewTypes == nil {
			info.TypeInfo.NewTypes = map[string]*p4configv1.P4NewTypeSpec{}
		}
		info.TypeInfo.NewTypes[typeName] = spec
	}

	keyType := func(ctl srcControl, expr string) (string, bool) {
		parts := strings.Split(expr, ".")
		typ, ok := ctl.params[parts[0]]
		if !ok {
			return "", false
		}
		if typ == "standard_metadata_t" && arch == V1Model {
			if len(parts) != 2 {
				return "", false
			}
			n, ok := standardMetadataBits[parts[1]]
			return fmt.Sprintf("bit<%d>", n), ok
		}
		for _, p := range parts[1:] {
			found := false
			for _, f := range prog.types[typ] {
				if f.name == p {
					typ, found = f.typ, true
					break
				}
			}
			if !found {
				return "", false
			}
		}
		return typ, true
	}
	matchTypes := map[string]p4configv1.MatchField_MatchType{
		"exact": p4configv1.MatchField_EXACT, "lpm": p4configv1.MatchField_LPM,
		"ternary": p4configv1.MatchField_TERNARY, "range": p4configv1.MatchField_RANGE,
		"optional": p4configv1.MatchField_OPTIONAL,
	}
	counterUnits := map[string]p4configv1.CounterSpec_Unit{
		"packets": p4configv1.CounterSpec_PACKETS, "bytes": p4configv1.CounterSpec_BYTES,
		"packets_and_bytes": p4configv1.CounterSpec_BOTH,
	}

	var externInstances []*p4configv1.ExternInstance // PNA's ActionSelector externs
	for _, ctl := range prog.controls {
		q := func(n string) string { return ctl.name + "." + n }
		actions := map[string]srcAction{}
		for _, a := range ctl.actions {
			actions[a.name] = a
			act := &p4configv1.Action{Preamble: &p4configv1.Preamble{Id: a.id, Name: q(a.name), Alias: alias[q(a.name)]}}
			for i, p := range a.params {
				ap := &p4configv1.Action_Param{Id: uint32(i + 1), Name: p.name, Bitwidth: int32(p.bits)}
				if p.typeName != "" {
					ap.TypeName = &p4configv1.P4NamedType{Name: p.typeName}
					typeInfoNew(p.typeName)
				}
				act.Params = append(act.Params, ap)
			}
			info.Actions = append(info.Actions, act)
		}
		selectors := map[string]srcSelector{}
		for _, s := range ctl.selectors {
			selectors[s.impl] = s
		}
		counters := map[string]srcCounter{}
		for _, c := range ctl.counters {
			counters[c.name] = c
		}
		profileID := func(s srcSelector) uint32 {
			if arch == TNA {
				return stdID(p4configv1.P4Ids_ACTION_PROFILE, profileSym(ctl.name, s.name))
			}
			return s.id
		}
		usedBy := map[string][]srcTable{}
		for _, tb := range ctl.tables {
			t := &p4configv1.Table{Preamble: &p4configv1.Preamble{
				Id: tb.id, Name: tableName(ctl.name, tb.name), Alias: alias[tableSym(ctl.name, tb.name)],
			}, Size: tb.size}
			for i, k := range tb.keys {
				if k.kind == "selector" {
					continue // p4c gives selector fields an id but does not emit them
				}
				mt, ok := matchTypes[k.kind]
				if !ok {
					bad("table %s: match kind %q", q(tb.name), k.kind)
				}
				if k.name == "" {
					bad("table %s: key %s has no @name", q(tb.name), k.expr)
				}
				typ, ok := keyType(ctl, k.expr)
				n, typeName, ok2 := prog.width(typ)
				if !ok || !ok2 {
					bad("table %s: cannot tell the width of key %s", q(tb.name), k.expr)
				}
				mf := &p4configv1.MatchField{
					Id: uint32(i + 1), Name: k.name, Bitwidth: int32(n),
					Match: &p4configv1.MatchField_MatchType_{MatchType: mt},
				}
				if typeName != "" {
					mf.TypeName = &p4configv1.P4NamedType{Name: typeName}
					typeInfoNew(typeName)
				}
				t.MatchFields = append(t.MatchFields, mf)
			}
			if arch == PNA {
				lpm, other := 0, 0
				for _, k := range tb.keys {
					switch k.kind {
					case "lpm":
						lpm++
					case "exact", "selector":
					default:
						other++
					}
				}
				if lpm > 1 || (lpm == 1 && other > 0) {
					bad("table %s: p4c-dpdk takes one lpm field per table, beside exact fields only", q(tb.name))
				}
			}
			for _, r := range tb.actions {
				a, ok := actions[r.name]
				if !ok {
					bad("table %s lists action %s, which %s does not declare", q(tb.name), r.name, ctl.name)
					continue
				}
				ref := &p4configv1.ActionRef{Id: a.id}
				for _, an := range r.annotations {
					ref.Annotations = append(ref.Annotations, an)
					switch an {
					case "@defaultonly":
						ref.Scope = p4configv1.ActionRef_DEFAULT_ONLY
					case "@tableonly":
						ref.Scope = p4configv1.ActionRef_TABLE_ONLY
					}
				}
				t.ActionRefs = append(t.ActionRefs, ref)
			}
			if tb.defaultAction == "" {
				bad("table %s has no explicit default action (p4c would add NoAction)", q(tb.name))
			} else if a, ok := actions[tb.defaultAction]; !ok {
				bad("table %s: default action %s is not declared", q(tb.name), tb.defaultAction)
			} else {
				call := &p4configv1.TableActionCall{ActionId: a.id}
				if len(tb.defaultArgs) != len(a.params) {
					bad("table %s: default action %s takes %d arguments, got %d", q(tb.name), a.name, len(a.params), len(tb.defaultArgs))
				}
				for i, v := range tb.defaultArgs {
					if i >= len(a.params) {
						break
					}
					width := (a.params[i].bits + 7) / 8
					b := v.Bytes()
					if len(b) > width {
						bad("table %s: default argument %d does not fit %d bits", q(tb.name), i+1, a.params[i].bits)
						continue
					}
					value := append(make([]byte, width-len(b)), b...)
					call.Arguments = append(call.Arguments, &p4configv1.TableActionCall_Argument{ParamId: uint32(i + 1), Value: value})
				}
				t.InitialDefaultAction = call
				if tb.defaultConst {
					t.ConstDefaultActionId = a.id
				}
			}
			if tb.implementation != "" {
				s, ok := selectors[tb.implementation]
				if !ok {
					bad("table %s: implementation %s is not a declared action selector", q(tb.name), tb.implementation)
				}
				t.ImplementationId = profileID(s)
				usedBy[s.name] = append(usedBy[s.name], tb)
			}
			if tb.counters != "" {
				c, ok := counters[tb.counters]
				if !ok {
					bad("table %s: counters %s is not a declared direct_counter", q(tb.name), tb.counters)
				}
				t.DirectResourceIds = append(t.DirectResourceIds, c.id)
				unit, ok := counterUnits[c.unit]
				if !ok {
					bad("direct counter %s: unit %s", q(c.name), c.unit)
				}
				// p4c adds a direct counter when it serializes its table.
				info.DirectCounters = append(info.DirectCounters, &p4configv1.DirectCounter{
					Preamble:      &p4configv1.Preamble{Id: c.id, Name: q(c.name), Alias: alias[q(c.name)]},
					Spec:          &p4configv1.CounterSpec{Unit: unit},
					DirectTableId: tb.id,
				})
			}
			info.Tables = append(info.Tables, t)
		}
		for _, s := range ctl.selectors {
			ap := &p4configv1.ActionProfile{
				Preamble: &p4configv1.Preamble{
					Id: profileID(s), Name: profileName(ctl.name, s.name), Alias: alias[profileSym(ctl.name, s.name)],
				},
				WithSelector: true, Size: s.size, MaxGroupSize: int32(s.maxGroupSize),
			}
			tables := usedBy[s.name]
			// p4c keeps the referencing tables in a std::set of names.
			sort.Slice(tables, func(i, j int) bool { return tables[i].name < tables[j].name })
			for _, tb := range tables {
				ap.TableIds = append(ap.TableIds, tb.id)
			}
			if len(tables) == 0 {
				bad("action selector %s is used by no table", q(s.name))
			}
			info.ActionProfiles = append(info.ActionProfiles, ap)
			if arch == PNA {
				// p4c-dpdk's dpdk.ActionSelector (p4info.proto): table_ids
				// = 1 (packed), max_group_size = 3, num_groups = 4,
				// action_profile_id = 5.
				var b, ids []byte
				for _, id := range ap.TableIds {
					ids = protowire.AppendVarint(ids, uint64(id))
				}
				if len(ids) > 0 {
					b = protowire.AppendTag(b, 1, protowire.BytesType)
					b = protowire.AppendBytes(b, ids)
				}
				b = protowire.AppendTag(b, 3, protowire.VarintType)
				b = protowire.AppendVarint(b, dpdkDefaultMaxGroupSize)
				b = protowire.AppendTag(b, 4, protowire.VarintType)
				b = protowire.AppendVarint(b, uint64(s.size))
				b = protowire.AppendTag(b, 5, protowire.VarintType)
				b = protowire.AppendVarint(b, uint64(ap.Preamble.Id))
				sym := q(s.name) + "_sel"
				externInstances = append(externInstances, &p4configv1.ExternInstance{
					Preamble: &p4configv1.Preamble{Id: hashed[sym], Name: pipe + "." + sym, Alias: alias[sym]},
					Info:     &anypb.Any{TypeUrl: "type.googleapis.com/dpdk.ActionSelector", Value: b},
				})
			}
		}
		for _, c := range ctl.counters {
			attached := false
			for _, tb := range ctl.tables {
				attached = attached || tb.counters == c.name
			}
			if !attached {
				bad("direct counter %s is attached to no table", q(c.name))
			}
		}
	}

	for _, h := range prog.ctrlHeaders {
		m := &p4configv1.ControllerPacketMetadata{Preamble: &p4configv1.Preamble{
			Id: hashed[h.typeName], Name: h.ctrlName, Alias: h.ctrlName, Annotations: h.annotations,
		}}
		for i, f := range h.fields {
			n, typeName, ok := prog.width(f.typ)
			if !ok {
				bad("controller header %s: field %s is not bit<W> or a type of it", h.typeName, f.name)
			}
			md := &p4configv1.ControllerPacketMetadata_Metadata{Id: uint32(i + 1), Name: f.name, Bitwidth: int32(n)}
			if typeName != "" {
				md.TypeName = &p4configv1.P4NamedType{Name: typeName}
				typeInfoNew(typeName)
			}
			m.Metadata = append(m.Metadata, md)
		}
		info.ControllerPacketMetadata = append(info.ControllerPacketMetadata, m)
	}

	for _, d := range digests {
		fields, ok := prog.types[d.typeName]
		if !ok {
			bad("digest<%s>: no such struct", d.typeName)
		}
		sym := digestSym(d)
		id := hashed[sym]
		if arch == TNA {
			id = stdID(p4configv1.P4Ids_DIGEST, sym)
		}
		info.Digests = append(info.Digests, &p4configv1.Digest{
			Preamble: &p4configv1.Preamble{Id: id, Name: d.name, Alias: alias[sym]},
			TypeSpec: &p4configv1.P4DataTypeSpec{TypeSpec: &p4configv1.P4DataTypeSpec_Struct{Struct: &p4configv1.P4NamedType{Name: d.typeName}}},
		})
		st := &p4configv1.P4StructTypeSpec{}
		for _, f := range fields {
			n, typeName, ok := prog.width(f.typ)
			if !ok || typeName != "" {
				bad("digest struct %s: field %s is not bit<W>", d.typeName, f.name)
			}
			st.Members = append(st.Members, &p4configv1.P4StructTypeSpec_Member{Name: f.name, TypeSpec: bitSpec(n)})
		}
		if info.TypeInfo.Structs == nil {
			info.TypeInfo.Structs = map[string]*p4configv1.P4StructTypeSpec{}
		}
		info.TypeInfo.Structs[d.typeName] = st
	}

	switch arch {
	case TNA:
		if portMetadata != "" {
			// bf-p4c's default port metadata of the ingress parser, which
			// --p4runtime-force-std-externs keeps, renamed, with its value
			// replaced by the phase-0 key (updatePortMetadata).
			info.Externs = append(info.Externs, &p4configv1.Extern{
				ExternTypeId: barefootPortMetadata, ExternTypeName: "PortMetadata",
				Instances: []*p4configv1.ExternInstance{{
					Preamble: &p4configv1.Preamble{
						Id: hashed[portMetadata], Name: strings.TrimPrefix(portMetadata, pipe+"."), Alias: alias[portMetadata],
					},
					Info: &anypb.Any{TypeUrl: "type.googleapis.com/barefoot.PortMetadata", Value: []byte("ig_intr_md.ingress_port")},
				}},
			})
		}
	case PNA:
		if len(externInstances) > 0 {
			info.Externs = append(info.Externs, &p4configv1.Extern{
				ExternTypeId: dpdkActionSelector, ExternTypeName: "ActionSelector", Instances: externInstances,
			})
		}
	}
	return info, problems
}

func bitSpec(n int) *p4configv1.P4DataTypeSpec {
	return &p4configv1.P4DataTypeSpec{TypeSpec: &p4configv1.P4DataTypeSpec_Bitstring{
		Bitstring: &p4configv1.P4BitstringLikeTypeSpec{TypeSpec: &p4configv1.P4BitstringLikeTypeSpec_Bit{
			Bit: &p4configv1.P4BitTypeSpec{Bitwidth: int32(n)},
		}},
	}}
}

// aliases gives every name its shortest unique suffix of dot-separated
// components, counted over all P4Runtime symbols (P4SymbolSuffixSet).
func aliases(names []string) map[string]string {
	count := map[string]int{}
	for _, n := range names {
		parts := strings.Split(n, ".")
		for i := range parts {
			count[strings.Join(parts[i:], ".")]++
		}
	}
	out := map[string]string{}
	for _, n := range names {
		parts := strings.Split(n, ".")
		out[n] = n
		for i := len(parts) - 1; i >= 0; i-- {
			if s := strings.Join(parts[i:], "."); count[s] < 2 {
				out[n] = s
				break
			}
		}
	}
	return out
}

// compareP4Info lists the differences between want and got, one entity at a
// time so a failure names what is wrong.
func compareP4Info(want, got *p4configv1.P4Info) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	text := func(m proto.Message) string {
		return prototext.MarshalOptions{}.Format(m)
	}
	type entity struct {
		name string
		msg  proto.Message
	}
	compare := func(kind string, want, got []entity) {
		before := len(problems)
		gotByName := map[string]proto.Message{}
		var wantOrder, gotOrder []string
		for _, e := range got {
			if _, dup := gotByName[e.name]; dup {
				bad("%s %s appears twice", kind, e.name)
			}
			gotByName[e.name] = e.msg
			gotOrder = append(gotOrder, e.name)
		}
		for _, e := range want {
			wantOrder = append(wantOrder, e.name)
			g, ok := gotByName[e.name]
			if !ok {
				bad("%s %s is missing from the P4Info; want %s", kind, e.name, text(e.msg))
				continue
			}
			if !proto.Equal(e.msg, g) {
				bad("%s %s differs:\n got: %s\nwant: %s", kind, e.name, text(g), text(e.msg))
			}
			delete(gotByName, e.name)
		}
		for n, g := range gotByName {
			bad("%s %s is in the P4Info but not in the source: %s", kind, n, text(g))
		}
		if len(problems) == before && strings.Join(wantOrder, ",") != strings.Join(gotOrder, ",") {
			bad("%s order is %v, p4c emits %v", kind, gotOrder, wantOrder)
		}
	}
	entities := func(n int, at func(int) (string, proto.Message)) []entity {
		out := make([]entity, n)
		for i := range out {
			out[i].name, out[i].msg = at(i)
		}
		return out
	}
	tables := func(i *p4configv1.P4Info) []entity {
		return entities(len(i.GetTables()), func(k int) (string, proto.Message) {
			return i.GetTables()[k].GetPreamble().GetName(), i.GetTables()[k]
		})
	}
	actions := func(i *p4configv1.P4Info) []entity {
		return entities(len(i.GetActions()), func(k int) (string, proto.Message) {
			return i.GetActions()[k].GetPreamble().GetName(), i.GetActions()[k]
		})
	}
	profiles := func(i *p4configv1.P4Info) []entity {
		return entities(len(i.GetActionProfiles()), func(k int) (string, proto.Message) {
			return i.GetActionProfiles()[k].GetPreamble().GetName(), i.GetActionProfiles()[k]
		})
	}
	counters := func(i *p4configv1.P4Info) []entity {
		return entities(len(i.GetDirectCounters()), func(k int) (string, proto.Message) {
			return i.GetDirectCounters()[k].GetPreamble().GetName(), i.GetDirectCounters()[k]
		})
	}
	packetMeta := func(i *p4configv1.P4Info) []entity {
		return entities(len(i.GetControllerPacketMetadata()), func(k int) (string, proto.Message) {
			return i.GetControllerPacketMetadata()[k].GetPreamble().GetName(), i.GetControllerPacketMetadata()[k]
		})
	}
	digests := func(i *p4configv1.P4Info) []entity {
		return entities(len(i.GetDigests()), func(k int) (string, proto.Message) {
			return i.GetDigests()[k].GetPreamble().GetName(), i.GetDigests()[k]
		})
	}
	compare("table", tables(want), tables(got))
	compare("action", actions(want), actions(got))
	compare("action profile", profiles(want), profiles(got))
	compare("direct counter", counters(want), counters(got))
	compare("controller packet metadata", packetMeta(want), packetMeta(got))
	compare("digest", digests(want), digests(got))

	if !proto.Equal(want.GetPkgInfo(), got.GetPkgInfo()) {
		bad("pkg_info differs:\n got: %s\nwant: %s", text(got.GetPkgInfo()), text(want.GetPkgInfo()))
	}
	if got.TypeInfo == nil || !proto.Equal(want.GetTypeInfo(), got.GetTypeInfo()) {
		bad("type_info differs:\n got: %s\nwant: %s", text(got.GetTypeInfo()), text(want.GetTypeInfo()))
	}
	// Whatever is left must be equal too (counters, meters, registers, value
	// sets, externs: the program has none).
	if len(problems) == 0 && !proto.Equal(want, got) {
		bad("P4Info differs from what p4c emits for the source:\n got: %s\nwant: %s", text(got), text(want))
	}
	return problems
}
