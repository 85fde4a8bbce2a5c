package controller

import (
	"testing"
	"time"
)

// TestChanged: Changed closes when a configuration is applied, whole or as
// a Change, and not for one that changes nothing or is refused; a reader
// that takes it again after a close waits for the next change.
func TestChanged(t *testing.T) {
	s, err := NewServer(ServerOptions{Store: NoPersistence{Start: example(t)}})
	if err != nil {
		t.Fatal(err)
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}
	ch := s.Changed()
	if err := s.Apply(s.Config()); err != nil {
		t.Fatal(err)
	}
	if closed(ch) {
		t.Error("Changed closed for an Apply that changed nothing")
	}
	bad := s.Config().Clone()
	bad.VPCs[0].VNI = 0
	if s.Apply(bad) == nil {
		t.Fatal("VNI 0 applied")
	}
	if closed(ch) {
		t.Error("Changed closed for a refused Apply")
	}
	c := s.Config().Clone()
	c.VPCs[0].VNI++
	if err := s.Apply(c); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Fatal("Changed not closed by an Apply")
	}
	ch = s.Changed()
	if closed(ch) {
		t.Fatal("a new Changed is closed before any further change")
	}
	ep := s.Config().Endpoints[0]
	ep.Port++
	if err := s.ApplyChange(&Change{Endpoints: []Endpoint{ep}}); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Error("Changed not closed by an ApplyChange")
	}
}
