package watch

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// byVPC is a Destination that says it equals any Destination of its VPC:
// an Equaler that disagrees with proto.Equal on purpose, so that the test
// can tell which of the two a table asked.
type byVPC struct{ *p4meshv1.Destination }

func (d byVPC) EqualItem(other proto.Message) bool {
	o, ok := other.(byVPC)
	return ok && o.GetVpc() == d.GetVpc()
}

// TestTableComparesWithEqualer checks that puts are compared with
// EqualItem when an item has it, on every path that compares: Put,
// Commit, ReplaceAt and Replace.
func TestTableComparesWithEqualer(t *testing.T) {
	a, b := byVPC{dest("red", "1")}, byVPC{dest("red", "2")}
	tb := NewTable("t", Options{Owned: true, Epoch: 10})
	tb.Put("k", a)
	rev := tb.Revision()
	if tb.Put("k", b) != rev {
		t.Errorf("Put of an item EqualItem calls equal changed the table")
	}
	if n := tb.Commit(tb.Revision()+1, map[string]proto.Message{"k": b}, nil); n != 0 {
		t.Errorf("Commit of an item EqualItem calls equal made %d changes", n)
	}
	if n := tb.ReplaceAt(tb.Revision()+1, map[string]proto.Message{"k": b}); n != 0 {
		t.Errorf("ReplaceAt with an item EqualItem calls equal made %d changes", n)
	}
	rev = tb.Revision()
	if tb.Replace(map[string]proto.Message{"k": b}) != rev {
		t.Errorf("Replace with an item EqualItem calls equal changed the table")
	}
	if got := tb.Get("k").(byVPC).GetIp(); got != "1" {
		t.Errorf("the table holds ip %q, want the first item's, 1", got)
	}
	// Either side may be the Equaler: a plain message put over one is
	// compared by it too (and here is never equal).
	if tb.Put("k", dest("red", "1")) == rev {
		t.Errorf("a plain Destination over an Equaler was taken for equal")
	}
	if tb.Put("k", byVPC{dest("blue", "1")}) == rev+1 {
		t.Errorf("an item EqualItem calls different was not put")
	}
}
