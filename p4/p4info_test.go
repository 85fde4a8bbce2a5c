package p4

import (
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// These tests keep the committed P4Info honest without a P4 compiler: they
// read vpc_peering.p4 with a small scanner, build the P4Info that p4c
// (p4c-bm2-ss --p4runtime-files, P4Runtime 1.5) emits for it, following
// p4c's control-plane serializer (control-plane/p4RuntimeSerializer.cpp,
// p4RuntimeSymbolTable.cpp, p4RuntimeArchStandard.h), and compare message by
// message. The scanner understands exactly the constructs the program uses and
// reports anything it does not, so it cannot silently skip a declaration.

func TestP4InfoParses(t *testing.T) {
	info, err := P4Info()
	if err != nil {
		t.Fatal(err)
	}
	if got := info.GetPkgInfo().GetArch(); got != "v1model" {
		t.Errorf("pkg_info.arch = %q, want v1model", got)
	}
	if len(info.GetTables()) == 0 || len(info.GetActions()) == 0 {
		t.Fatalf("embedded P4Info has %d tables and %d actions", len(info.GetTables()), len(info.GetActions()))
	}

	// Every reference inside the P4Info resolves.
	ids := map[uint32]string{}
	add := func(kind string, pre *p4configv1.Preamble) {
		if prev, dup := ids[pre.GetId()]; dup {
			t.Errorf("%s %q: id %#x already used by %s", kind, pre.GetName(), pre.GetId(), prev)
		}
		ids[pre.GetId()] = kind + " " + pre.GetName()
	}
	for _, x := range info.GetTables() {
		add("table", x.GetPreamble())
	}
	for _, x := range info.GetActions() {
		add("action", x.GetPreamble())
	}
	for _, x := range info.GetActionProfiles() {
		add("action profile", x.GetPreamble())
	}
	for _, x := range info.GetDirectCounters() {
		add("direct counter", x.GetPreamble())
	}
	for _, x := range info.GetControllerPacketMetadata() {
		add("controller packet metadata", x.GetPreamble())
	}
	for _, x := range info.GetDigests() {
		add("digest", x.GetPreamble())
	}
	resolve := func(what string, id uint32, prefix uint32) {
		name, ok := ids[id]
		switch {
		case !ok:
			t.Errorf("%s refers to id %#x, which nothing has", what, id)
		case id>>24 != prefix:
			t.Errorf("%s refers to id %#x (%s), want resource type %#02x", what, id, name, prefix)
		}
	}
	for _, tbl := range info.GetTables() {
		what := "table " + tbl.GetPreamble().GetName()
		for _, ref := range tbl.GetActionRefs() {
			resolve(what+" action_ref", ref.GetId(), uint32(p4configv1.P4Ids_ACTION))
		}
		if tbl.GetConstDefaultActionId() != 0 {
			resolve(what+" const_default_action_id", tbl.GetConstDefaultActionId(), uint32(p4configv1.P4Ids_ACTION))
		}
		if tbl.GetInitialDefaultAction() != nil {
			resolve(what+" initial_default_action", tbl.GetInitialDefaultAction().GetActionId(), uint32(p4configv1.P4Ids_ACTION))
		}
		if tbl.GetImplementationId() != 0 {
			resolve(what+" implementation_id", tbl.GetImplementationId(), uint32(p4configv1.P4Ids_ACTION_PROFILE))
		}
		for _, id := range tbl.GetDirectResourceIds() {
			resolve(what+" direct_resource_ids", id, uint32(p4configv1.P4Ids_DIRECT_COUNTER))
		}
	}
	for _, ap := range info.GetActionProfiles() {
		for _, id := range ap.GetTableIds() {
			resolve("action profile "+ap.GetPreamble().GetName()+" table_ids", id, uint32(p4configv1.P4Ids_TABLE))
		}
	}
	for _, dc := range info.GetDirectCounters() {
		resolve("direct counter "+dc.GetPreamble().GetName()+" direct_table_id", dc.GetDirectTableId(), uint32(p4configv1.P4Ids_TABLE))
	}
	for _, d := range info.GetDigests() {
		name := d.GetTypeSpec().GetStruct().GetName()
		if _, ok := info.GetTypeInfo().GetStructs()[name]; !ok {
			t.Errorf("digest %s: struct %q not in type_info", d.GetPreamble().GetName(), name)
		}
	}

	// Each call hands out its own message.
	info.Tables = nil
	again, err := P4Info()
	if err != nil {
		t.Fatal(err)
	}
	if len(again.GetTables()) == 0 {
		t.Error("P4Info() returned a message shared with an earlier caller")
	}
	text := P4InfoText()
	text[0] ^= 0xff
	if P4InfoText()[0] == text[0] {
		t.Error("P4InfoText() returned the embedded slice itself")
	}
	src := Source()
	if !strings.Contains(string(src), "control VpcIngress(") {
		t.Error("Source() does not look like vpc_peering.p4")
	}
}

// TestP4InfoMatchesSource is the contract between vpc_peering.p4 and the
// committed P4Info: same IDs, same names, same shape, nothing more.
func TestP4InfoMatchesSource(t *testing.T) {
	info, err := P4Info()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkP4Info(string(Source()), info) {
		t.Error(p)
	}
}

// TestP4InfoRules checks the properties the rest of p4mesh relies on, with a
// message that says which rule broke.
func TestP4InfoRules(t *testing.T) {
	info, err := P4Info()
	if err != nil {
		t.Fatal(err)
	}
	actionName := map[uint32]string{}
	for _, a := range info.GetActions() {
		actionName[a.GetPreamble().GetId()] = a.GetPreamble().GetName()
	}
	tests := []struct {
		name  string
		check func() []string
	}{
		{"NoAction is absent", func() (bad []string) {
			for _, a := range info.GetActions() {
				if a.GetPreamble().GetName() == "NoAction" || a.GetPreamble().GetAlias() == "NoAction" {
					bad = append(bad, "action NoAction is in the P4Info: a table lacks an explicit default action")
				}
			}
			return bad
		}},
		{"every table has a default action it lists", func() (bad []string) {
			for _, tbl := range info.GetTables() {
				def := tbl.GetInitialDefaultAction().GetActionId()
				if def == 0 {
					bad = append(bad, fmt.Sprintf("table %s has no default action", tbl.GetPreamble().GetName()))
					continue
				}
				listed := false
				for _, ref := range tbl.GetActionRefs() {
					listed = listed || ref.GetId() == def
				}
				if !listed {
					bad = append(bad, fmt.Sprintf("table %s: default action %s is not in its action_refs", tbl.GetPreamble().GetName(), actionName[def]))
				}
				if c := tbl.GetConstDefaultActionId(); c != 0 && c != def {
					bad = append(bad, fmt.Sprintf("table %s: const and initial default actions differ", tbl.GetPreamble().GetName()))
				}
			}
			return bad
		}},
		{"ids carry their resource type", func() (bad []string) {
			want := func(kind string, pre *p4configv1.Preamble, prefix p4configv1.P4Ids_Prefix) {
				if pre.GetId()>>24 != uint32(prefix) || pre.GetId()&0xffffff == 0 {
					bad = append(bad, fmt.Sprintf("%s %s: id %#08x, want prefix %#02x", kind, pre.GetName(), pre.GetId(), uint32(prefix)))
				}
			}
			for _, x := range info.GetTables() {
				want("table", x.GetPreamble(), p4configv1.P4Ids_TABLE)
			}
			for _, x := range info.GetActions() {
				want("action", x.GetPreamble(), p4configv1.P4Ids_ACTION)
			}
			for _, x := range info.GetActionProfiles() {
				want("action profile", x.GetPreamble(), p4configv1.P4Ids_ACTION_PROFILE)
			}
			for _, x := range info.GetDirectCounters() {
				want("direct counter", x.GetPreamble(), p4configv1.P4Ids_DIRECT_COUNTER)
			}
			for _, x := range info.GetControllerPacketMetadata() {
				want("controller packet metadata", x.GetPreamble(), p4configv1.P4Ids_CONTROLLER_HEADER)
			}
			for _, x := range info.GetDigests() {
				want("digest", x.GetPreamble(), p4configv1.P4Ids_DIGEST)
			}
			return bad
		}},
		{"selector tables have an action selector", func() (bad []string) {
			for _, ap := range info.GetActionProfiles() {
				if !ap.GetWithSelector() {
					bad = append(bad, fmt.Sprintf("action profile %s has no selector", ap.GetPreamble().GetName()))
				}
				if len(ap.GetTableIds()) == 0 {
					bad = append(bad, fmt.Sprintf("action profile %s is used by no table", ap.GetPreamble().GetName()))
				}
			}
			return bad
		}},
		{"packet_in and packet_out exist", func() (bad []string) {
			got := map[string]bool{}
			for _, m := range info.GetControllerPacketMetadata() {
				got[m.GetPreamble().GetName()] = true
			}
			for _, n := range []string{"packet_in", "packet_out"} {
				if !got[n] {
					bad = append(bad, "no controller_packet_metadata "+n)
				}
			}
			return bad
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range tc.check() {
				t.Error(p)
			}
		})
	}
}

// TestJenkinsHash pins the hash to IDs p4c actually emitted (p4c's
// testdata/p4_16_samples_outputs: NoAction everywhere, IngressI.drop and
// IngressI.as in action_selector_shared-bmv2, fabric.p4's controller headers).
func TestJenkinsHash(t *testing.T) {
	tests := []struct {
		name   string
		prefix p4configv1.P4Ids_Prefix
		want   uint32
	}{
		{"NoAction", p4configv1.P4Ids_ACTION, 21257015},
		{"IngressI.drop", p4configv1.P4Ids_ACTION, 23455883},
		{"IngressI.indirect_ws", p4configv1.P4Ids_TABLE, 38116258},
		{"IngressI.as", p4configv1.P4Ids_ACTION_PROFILE, 291652621},
		{"packet_in_header_t", p4configv1.P4Ids_CONTROLLER_HEADER, 81826293},
		{"packet_out_header_t", p4configv1.P4Ids_CONTROLLER_HEADER, 76689799},
	}
	for _, tc := range tests {
		if got := hashID(tc.prefix, tc.name); got != tc.want {
			t.Errorf("hashID(%v, %q) = %d, want %d", tc.prefix, tc.name, got, tc.want)
		}
	}
}

// TestCheckerCatchesMistakes makes sure checkP4Info can fail: each mutation of
// the P4Info or of the source must be reported.
func TestCheckerCatchesMistakes(t *testing.T) {
	src := string(Source())
	good, err := P4Info()
	if err != nil {
		t.Fatal(err)
	}
	if p := checkP4Info(src, good); len(p) != 0 {
		t.Fatalf("unmutated P4Info already fails: %v", p)
	}
	tableNamed := func(info *p4configv1.P4Info, alias string) *p4configv1.Table {
		for _, tbl := range info.GetTables() {
			if tbl.GetPreamble().GetAlias() == alias {
				return tbl
			}
		}
		t.Fatalf("no table %s", alias)
		return nil
	}
	actionNamed := func(info *p4configv1.P4Info, alias string) *p4configv1.Action {
		for _, a := range info.GetActions() {
			if a.GetPreamble().GetAlias() == alias {
				return a
			}
		}
		t.Fatalf("no action %s", alias)
		return nil
	}
	infoMutations := []struct {
		name   string
		mutate func(*p4configv1.P4Info)
	}{
		{"table id typo", func(i *p4configv1.P4Info) { tableNamed(i, "vnet_route").Preamble.Id++ }},
		{"action id typo", func(i *p4configv1.P4Info) { actionNamed(i, "encap_to_host").Preamble.Id = 0x0100000f }},
		{"param renamed", func(i *p4configv1.P4Info) { actionNamed(i, "set_vnet").Params[1].Name = "mac" }},
		{"param width", func(i *p4configv1.P4Info) { actionNamed(i, "to_local_vm").Params[0].Bitwidth = 16 }},
		{"match field renamed", func(i *p4configv1.P4Info) { tableNamed(i, "lb_frontend").MatchFields[3].Name = "port" }},
		{"match type", func(i *p4configv1.P4Info) {
			tableNamed(i, "vnet_route").MatchFields[1].Match = &p4configv1.MatchField_MatchType_{MatchType: p4configv1.MatchField_EXACT}
		}},
		{"selector field exposed", func(i *p4configv1.P4Info) {
			tbl := tableNamed(i, "gateway_pool")
			tbl.MatchFields = append(tbl.MatchFields, &p4configv1.MatchField{Id: 2, Name: "src_ip", Bitwidth: 32,
				Match: &p4configv1.MatchField_MatchType_{MatchType: p4configv1.MatchField_EXACT}})
		}},
		{"default action removed", func(i *p4configv1.P4Info) { tableNamed(i, "arp_proxy").InitialDefaultAction = nil }},
		{"default made const", func(i *p4configv1.P4Info) {
			tbl := tableNamed(i, "local_host")
			tbl.ConstDefaultActionId = tbl.GetInitialDefaultAction().GetActionId()
		}},
		{"NoAction added", func(i *p4configv1.P4Info) {
			i.Actions = append(i.Actions, &p4configv1.Action{Preamble: &p4configv1.Preamble{Id: 21257015, Name: "NoAction", Alias: "NoAction"}})
		}},
		{"extra table", func(i *p4configv1.P4Info) {
			i.Tables = append(i.Tables, &p4configv1.Table{Preamble: &p4configv1.Preamble{Id: 0x02000fff, Name: "VpcIngress.extra", Alias: "extra"}})
		}},
		{"tables reordered", func(i *p4configv1.P4Info) { i.Tables[0], i.Tables[1] = i.Tables[1], i.Tables[0] }},
		{"digest id", func(i *p4configv1.P4Info) { i.Digests[0].Preamble.Id++ }},
		{"controller header id", func(i *p4configv1.P4Info) { i.ControllerPacketMetadata[1].Preamble.Id = 0x04000001 }},
		{"selector size", func(i *p4configv1.P4Info) { i.ActionProfiles[0].Size = 2048 }},
		{"counter detached", func(i *p4configv1.P4Info) { tableNamed(i, "vnet_route").DirectResourceIds = nil }},
		{"type_info lost", func(i *p4configv1.P4Info) { i.TypeInfo = nil }},
	}
	for _, tc := range infoMutations {
		t.Run("p4info/"+tc.name, func(t *testing.T) {
			info := proto.Clone(good).(*p4configv1.P4Info)
			tc.mutate(info)
			if p := checkP4Info(src, info); len(p) == 0 {
				t.Error("mutation not detected")
			}
		})
	}

	srcMutations := []struct{ name, old, new string }{
		{"@id typo", "@id(0x02000008)", "@id(0x02000018)"},
		{"key renamed", `exact @name("target_ip")`, `exact @name("tpa")`},
		{"action param renamed", "action to_lb(bit<16> lb_id)", "action to_lb(bit<16> lb)"},
		{"default action changed", "const default_action = destination_miss();", "const default_action = to_lb(0);"},
		{"@id removed", "@id(0x0100000E)\n", ""},
		{"counter removed", "counters = vnet_route_counter;", ""},
		{"digest struct changed", "bit<32> dst_ip;\n}", "bit<32> dst_addr;\n}"},
	}
	for _, tc := range srcMutations {
		t.Run("source/"+tc.name, func(t *testing.T) {
			if !strings.Contains(src, tc.old) {
				t.Fatalf("source has no %q", tc.old)
			}
			mutated := strings.Replace(src, tc.old, tc.new, 1)
			if p := checkP4Info(mutated, good); len(p) == 0 {
				t.Error("mutation not detected")
			}
		})
	}
}

// checkP4Info returns every difference between info and the P4Info p4c emits
// for src. An empty result means they agree.
func checkP4Info(src string, info *p4configv1.P4Info) []string {
	prog, problems := scanProgram(src)
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
	name string
	bits int
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
	implementation string
	counters       string
	size           int64
}

type srcSelector struct {
	name string
	id   uint32
	size int64
}

type srcCounter struct {
	name string
	id   uint32
	unit string
}

type srcControl struct {
	name      string
	params    map[string]string // variable -> type name
	actions   []srcAction
	tables    []srcTable
	selectors []srcSelector
	counters  []srcCounter
	digests   []string // digest<T> type names, in order of appearance
}

type ctrlHeader struct {
	typeName, ctrlName string
	fields             []field
}

type program struct {
	types       map[string][]field // headers and structs
	ctrlHeaders []ctrlHeader
	controls    []srcControl
}

var (
	blockCommentRe = regexp.MustCompile(`(?s)/\*.*?\*/`)
	lineCommentRe  = regexp.MustCompile(`//[^\n]*`)
	typeDeclRe     = regexp.MustCompile(`(?s)((?:@\w+(?:\("[^"]*"\))?\s*)*)\b(header|struct)\s+(\w+)\s*\{([^}]*)\}`)
	fieldRe        = regexp.MustCompile(`^\s*(bit<\d+>|\w+)\s+(\w+)\s*$`)
	ctrlHeaderRe   = regexp.MustCompile(`@controller_header\("([^"]*)"\)`)
	controlRe      = regexp.MustCompile(`\bcontrol\s+(\w+)\s*\(([^)]*)\)\s*\{`)
	ctrlParamRe    = regexp.MustCompile(`^\s*(?:in|out|inout)?\s*(\w+)\s+(\w+)\s*$`)
	idAnnotRe      = regexp.MustCompile(`@id\(\s*(0x[0-9A-Fa-f]+|\d+)\s*\)`)
	actionDeclRe   = regexp.MustCompile(`\baction\s+(\w+)\s*\(([^)]*)\)\s*\{`)
	tableDeclRe    = regexp.MustCompile(`\btable\s+(\w+)\s*\{`)
	selectorDeclRe = regexp.MustCompile(`\baction_selector\s*\(\s*HashAlgorithm\.\w+\s*,\s*(?:32w)?(\d+)\s*,\s*(?:32w)?\d+\s*\)\s*(\w+)\s*;`)
	counterDeclRe  = regexp.MustCompile(`\bdirect_counter\s*\(\s*CounterType\.(\w+)\s*\)\s*(\w+)\s*;`)
	otherExternRe  = regexp.MustCompile(`\b(counter|meter|direct_meter|register|action_profile|value_set)\s*[<(]`)
	paramRe        = regexp.MustCompile(`^\s*bit<(\d+)>\s+(\w+)\s*$`)
	keyBlockRe     = regexp.MustCompile(`(?s)\bkey\s*=\s*\{([^}]*)\}`)
	keyElemRe      = regexp.MustCompile(`^\s*([\w.]+)\s*:\s*(\w+)\s*(?:@name\("([^"]*)"\))?\s*$`)
	actionsBlockRe = regexp.MustCompile(`(?s)\bactions\s*=\s*\{([^}]*)\}`)
	actionRefRe    = regexp.MustCompile(`^\s*((?:@\w+\s+)*)(\w+)\s*(?:\(\s*\))?\s*$`)
	defaultRe      = regexp.MustCompile(`(?s)\b(const\s+)?default_action\s*=\s*(\w+)\s*\(([^)]*)\)\s*;`)
	implRe         = regexp.MustCompile(`\bimplementation\s*=\s*(\w+)\s*;`)
	countersPropRe = regexp.MustCompile(`\bcounters\s*=\s*(\w+)\s*;`)
	sizeRe         = regexp.MustCompile(`\bsize\s*=\s*(\d+)\s*;`)
	digestCallRe   = regexp.MustCompile(`\bdigest\s*<\s*(\w+)\s*>\s*\(`)
	literalRe      = regexp.MustCompile(`^\s*(?:\d+w)?(0x[0-9A-Fa-f]+|\d+)\s*$`)
)

// scanProgram reads the declarations of src that reach the P4Info.
func scanProgram(src string) (*program, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	src = blockCommentRe.ReplaceAllStringFunc(src, func(s string) string {
		return strings.Repeat(" ", len(s)) // keep offsets for brace matching
	})
	src = lineCommentRe.ReplaceAllString(src, "")

	prog := &program{types: map[string][]field{}}
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
			prog.ctrlHeaders = append(prog.ctrlHeaders, ctrlHeader{typeName: name, ctrlName: cm[1], fields: fields})
		}
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

		// Declarations, each with the @id annotation right before it.
		idBefore := func(pos int) (uint32, bool) {
			prefix := strings.TrimRight(body[:pos], " \t\n")
			loc := idAnnotRe.FindAllStringSubmatchIndex(prefix, -1)
			if len(loc) == 0 {
				return 0, false
			}
			last := loc[len(loc)-1]
			if strings.TrimSpace(prefix[last[1]:]) != "" {
				return 0, false
			}
			v, err := strconv.ParseUint(prefix[last[2]:last[3]], 0, 32)
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
				bits, _ := strconv.Atoi(pm[1])
				a.params = append(a.params, param{name: pm[2], bits: bits})
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
			if im := implRe.FindStringSubmatch(tb); im != nil {
				tbl.implementation = im[1]
			}
			if cm := countersPropRe.FindStringSubmatch(tb); cm != nil {
				tbl.counters = cm[1]
			}
			if sm := sizeRe.FindStringSubmatch(tb); sm != nil {
				tbl.size, _ = strconv.ParseInt(sm[1], 10, 64)
			}
			ctl.tables = append(ctl.tables, tbl)
		}
		for _, m := range selectorDeclRe.FindAllStringSubmatchIndex(body, -1) {
			s := srcSelector{name: body[m[4]:m[5]]}
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
		if m := otherExternRe.FindStringSubmatch(body); m != nil {
			bad("control %s declares a %s, which this test does not model", ctl.name, m[1])
		}
		for _, m := range digestCallRe.FindAllStringSubmatch(body, -1) {
			if !slicesContains(ctl.digests, m[1]) {
				ctl.digests = append(ctl.digests, m[1])
			}
		}
		prog.controls = append(prog.controls, ctl)
	}
	if all := len(idAnnotRe.FindAllString(src, -1)); all != recognizedIDs {
		bad("%d @id annotations in the source, but only %d on declarations this test reads", all, recognizedIDs)
	}
	return prog, problems
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

// standardMetadataBits are the v1model standard_metadata fields the program
// may use as keys.
var standardMetadataBits = map[string]int{"ingress_port": 9, "egress_spec": 9, "egress_port": 9}

// expectedP4Info builds the P4Info p4c emits for prog.
func expectedP4Info(prog *program) (*p4configv1.P4Info, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	info := &p4configv1.P4Info{
		PkgInfo:  &p4configv1.PkgInfo{Arch: "v1model"},
		TypeInfo: &p4configv1.P4TypeInfo{}, // p4c always sets it, even empty
	}

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
			allNames = append(allNames, ctl.name+"."+tb.name)
		}
		for _, s := range ctl.selectors {
			take(s.id, p4configv1.P4Ids_ACTION_PROFILE, "action selector "+ctl.name+"."+s.name)
			allNames = append(allNames, ctl.name+"."+s.name)
		}
		for _, c := range ctl.counters {
			take(c.id, p4configv1.P4Ids_DIRECT_COUNTER, "direct counter "+ctl.name+"."+c.name)
			allNames = append(allNames, ctl.name+"."+c.name)
		}
	}
	hashed := map[string]uint32{}
	probe := func(prefix p4configv1.P4Ids_Prefix, names []string) {
		sort.Strings(names)
		for _, n := range names {
			v := jenkinsOneAtATime(n)
			id := uint32(prefix)<<24 | v&0xffffff
			for _, taken := assigned[id]; taken; _, taken = assigned[id] {
				v++
				id = uint32(prefix)<<24 | v&0xffffff
			}
			assigned[id] = n
			hashed[n] = id
		}
	}
	var ctrlNames, digestNames []string
	for _, h := range prog.ctrlHeaders {
		ctrlNames = append(ctrlNames, h.typeName)
		allNames = append(allNames, h.typeName)
	}
	for _, ctl := range prog.controls {
		for _, d := range ctl.digests {
			if !slicesContains(digestNames, d) {
				digestNames = append(digestNames, d)
				allNames = append(allNames, d)
			}
		}
	}
	probe(p4configv1.P4Ids_CONTROLLER_HEADER, append([]string(nil), ctrlNames...))
	probe(p4configv1.P4Ids_DIGEST, append([]string(nil), digestNames...))
	alias := aliases(allNames)

	bits := func(t string) (int, bool) {
		if strings.HasPrefix(t, "bit<") {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(t, "bit<"), ">"))
			return n, err == nil
		}
		return 0, false
	}
	keyBits := func(ctl srcControl, expr string) (int, bool) {
		parts := strings.Split(expr, ".")
		typ, ok := ctl.params[parts[0]]
		if !ok {
			return 0, false
		}
		if typ == "standard_metadata_t" {
			if len(parts) != 2 {
				return 0, false
			}
			n, ok := standardMetadataBits[parts[1]]
			return n, ok
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
				return 0, false
			}
		}
		return bits(typ)
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

	for _, ctl := range prog.controls {
		q := func(n string) string { return ctl.name + "." + n }
		preamble := func(id uint32, n string) *p4configv1.Preamble {
			return &p4configv1.Preamble{Id: id, Name: q(n), Alias: alias[q(n)]}
		}
		actions := map[string]srcAction{}
		for _, a := range ctl.actions {
			actions[a.name] = a
			act := &p4configv1.Action{Preamble: preamble(a.id, a.name)}
			for i, p := range a.params {
				act.Params = append(act.Params, &p4configv1.Action_Param{Id: uint32(i + 1), Name: p.name, Bitwidth: int32(p.bits)})
			}
			info.Actions = append(info.Actions, act)
		}
		selectors := map[string]srcSelector{}
		for _, s := range ctl.selectors {
			selectors[s.name] = s
		}
		counters := map[string]srcCounter{}
		for _, c := range ctl.counters {
			counters[c.name] = c
		}
		usedBy := map[string][]srcTable{}
		for _, tb := range ctl.tables {
			t := &p4configv1.Table{Preamble: preamble(tb.id, tb.name), Size: tb.size}
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
				n, ok := keyBits(ctl, k.expr)
				if !ok {
					bad("table %s: cannot tell the width of key %s", q(tb.name), k.expr)
				}
				t.MatchFields = append(t.MatchFields, &p4configv1.MatchField{
					Id: uint32(i + 1), Name: k.name, Bitwidth: int32(n),
					Match: &p4configv1.MatchField_MatchType_{MatchType: mt},
				})
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
					bad("table %s: implementation %s is not a declared action_selector", q(tb.name), tb.implementation)
				}
				t.ImplementationId = s.id
				usedBy[tb.implementation] = append(usedBy[tb.implementation], tb)
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
					Preamble:      preamble(c.id, c.name),
					Spec:          &p4configv1.CounterSpec{Unit: unit},
					DirectTableId: tb.id,
				})
			}
			info.Tables = append(info.Tables, t)
		}
		for _, s := range ctl.selectors {
			ap := &p4configv1.ActionProfile{Preamble: preamble(s.id, s.name), WithSelector: true, Size: s.size}
			tables := usedBy[s.name]
			// p4c keeps the referencing tables in a std::set of names.
			sort.Slice(tables, func(i, j int) bool { return tables[i].name < tables[j].name })
			for _, tb := range tables {
				ap.TableIds = append(ap.TableIds, tb.id)
			}
			info.ActionProfiles = append(info.ActionProfiles, ap)
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
			Id: hashed[h.typeName], Name: h.ctrlName, Alias: h.ctrlName,
			Annotations: []string{fmt.Sprintf("@controller_header(%q)", h.ctrlName)},
		}}
		for i, f := range h.fields {
			n, ok := bits(f.typ)
			if !ok {
				bad("controller header %s: field %s is not bit<W>", h.typeName, f.name)
			}
			m.Metadata = append(m.Metadata, &p4configv1.ControllerPacketMetadata_Metadata{Id: uint32(i + 1), Name: f.name, Bitwidth: int32(n)})
		}
		info.ControllerPacketMetadata = append(info.ControllerPacketMetadata, m)
	}

	for _, d := range digestNames {
		fields, ok := prog.types[d]
		if !ok {
			bad("digest<%s>: no such struct", d)
		}
		info.Digests = append(info.Digests, &p4configv1.Digest{
			Preamble: &p4configv1.Preamble{Id: hashed[d], Name: d, Alias: alias[d]},
			TypeSpec: &p4configv1.P4DataTypeSpec{TypeSpec: &p4configv1.P4DataTypeSpec_Struct{Struct: &p4configv1.P4NamedType{Name: d}}},
		})
		st := &p4configv1.P4StructTypeSpec{}
		for _, f := range fields {
			n, ok := bits(f.typ)
			if !ok {
				bad("digest struct %s: field %s is not bit<W>", d, f.name)
			}
			st.Members = append(st.Members, &p4configv1.P4StructTypeSpec_Member{
				Name: f.name,
				TypeSpec: &p4configv1.P4DataTypeSpec{TypeSpec: &p4configv1.P4DataTypeSpec_Bitstring{
					Bitstring: &p4configv1.P4BitstringLikeTypeSpec{TypeSpec: &p4configv1.P4BitstringLikeTypeSpec_Bit{
						Bit: &p4configv1.P4BitTypeSpec{Bitwidth: int32(n)},
					}},
				}},
			})
		}
		if info.TypeInfo.Structs == nil {
			info.TypeInfo.Structs = map[string]*p4configv1.P4StructTypeSpec{}
		}
		info.TypeInfo.Structs[d] = st
	}
	return info, problems
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
