package p4

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// writeP4Info makes TestCommittedP4InfoText write each architecture's
// P4Info as the model builds it from the source, where no compiler is at
// hand:
//
//	go test ./p4/ -run TestCommittedP4InfoText -args -p4info.write
//
// A real compiler's output (make p4) is the better source; this keeps the
// files in step with an edit until one runs.
var writeP4Info = flag.Bool("p4info.write", false, "write <arch>/build/vpc_peering.p4info.txtpb from the model")

// p4cText prints a P4Info as p4c writes a .txtpb: protobuf's C++ TextFormat
// (fields by number, two-space indent, map entries by key, bytes and
// strings C-escaped with octal, Any not expanded) after p4c's two comment
// lines. Go's prototext is deliberately unstable in its spacing, so the
// committed files are compared with this instead.
func p4cText(m proto.Message) []byte {
	var b bytes.Buffer
	b.WriteString("# proto-file: p4/config/v1/p4info.proto\n# proto-message: p4.config.v1.P4Info\n\n")
	textMessage(&b, m.ProtoReflect(), 0)
	return b.Bytes()
}

func textMessage(b *bytes.Buffer, m protoreflect.Message, depth int) {
	var fds []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		fds = append(fds, fd)
		return true
	})
	sort.Slice(fds, func(i, j int) bool { return fds[i].Number() < fds[j].Number() })
	for _, fd := range fds {
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			type entry struct {
				k protoreflect.MapKey
				v protoreflect.Value
			}
			var es []entry
			v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				es = append(es, entry{k, v})
				return true
			})
			sort.Slice(es, func(i, j int) bool { return es[i].k.String() < es[j].k.String() })
			for _, e := range es {
				indent(b, depth)
				b.WriteString(string(fd.Name()) + " {\n")
				textField(b, fd.MapKey(), e.k.Value(), depth+1)
				textField(b, fd.MapValue(), e.v, depth+1)
				indent(b, depth)
				b.WriteString("}\n")
			}
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				textField(b, fd, l.Get(i), depth)
			}
		default:
			textField(b, fd, v, depth)
		}
	}
}

func textField(b *bytes.Buffer, fd protoreflect.FieldDescriptor, v protoreflect.Value, depth int) {
	indent(b, depth)
	name := string(fd.Name())
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		b.WriteString(name + " {\n")
		textMessage(b, v.Message(), depth+1)
		indent(b, depth)
		b.WriteString("}\n")
		return
	}
	b.WriteString(name + ": ")
	switch fd.Kind() {
	case protoreflect.StringKind:
		b.WriteString(cEscape([]byte(v.String())))
	case protoreflect.BytesKind:
		b.WriteString(cEscape(v.Bytes()))
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			b.WriteString(string(ev.Name()))
		} else {
			b.WriteString(strconv.Itoa(int(v.Enum())))
		}
	default:
		b.WriteString(fmt.Sprint(v.Interface()))
	}
	b.WriteString("\n")
}

func indent(b *bytes.Buffer, depth int) {
	for i := 0; i < depth; i++ {
		b.WriteString("  ")
	}
}

// cEscape quotes s as protobuf's C++ CEscape does.
func cEscape(s []byte) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '"':
			b.WriteString(`\"`)
		case '\'':
			b.WriteString(`\'`)
		case '\\':
			b.WriteString(`\\`)
		default:
			if c < 0x20 || c >= 0x7f {
				fmt.Fprintf(&b, `\%03o`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestP4cTextReproducesP4c pins the printer to a file p4c wrote: the
// committed v1model P4Info, parsed and printed again, is the same bytes.
func TestP4cTextReproducesP4c(t *testing.T) {
	info, err := P4Info()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p4cText(info), P4InfoText(); !bytes.Equal(got, want) {
		t.Errorf("p4cText differs from p4c's own text:\n%s", lineDiff(string(want), string(got)))
	}
}

// TestCommittedP4InfoText: each committed P4Info is, byte for byte, the
// model's P4Info for its source as p4c prints it.
func TestCommittedP4InfoText(t *testing.T) {
	for _, arch := range Archs() {
		t.Run(arch, func(t *testing.T) {
			src, err := SourceFor(arch)
			if err != nil {
				t.Fatal(err)
			}
			prog, problems := scanProgram(arch, string(src))
			want, more := expectedP4Info(prog)
			if problems = append(problems, more...); len(problems) > 0 {
				t.Fatalf("the source does not scan: %v", problems)
			}
			text := p4cText(want)
			path := arch + "/build/vpc_peering.p4info.txtpb"
			if *writeP4Info {
				if err := os.WriteFile(path, text, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("wrote %s", path)
				return
			}
			if got := mustText(t, arch); !bytes.Equal(got, text) {
				t.Errorf("%s is not what the model prints for the source (go test ./p4/ -run TestCommittedP4InfoText -args -p4info.write):\n%s",
					path, lineDiff(string(got), string(text)))
			}
		})
	}
}

// lineDiff shows the first lines where a and b differ.
func lineDiff(a, b string) string {
	al, bl := bytes.Split([]byte(a), []byte("\n")), bytes.Split([]byte(b), []byte("\n"))
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y []byte
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if !bytes.Equal(x, y) {
			return fmt.Sprintf("line %d:\n  have: %s\n  want: %s", i+1, x, y)
		}
	}
	return "(equal)"
}
