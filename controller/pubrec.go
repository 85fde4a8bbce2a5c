package controller

import (
	"net/netip"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
	"github.com/p4mesh/p4mesh/watch"
)

// An endpoint is published three times: a Destination and a Forwarding in
// the tables of every service that exports it, a LocalEndpoint in its
// host's table. As messages that was about 400 bytes an endpoint (three
// structs of ~40 bytes of headers and a string header a field, and the
// address and MAC as text), the largest part of a controller's heap at a
// million endpoints (issue 14). The tables hold instead one epRecord an
// endpoint, 64 bytes, shared by the three forms: destRec, fwdRec and
// localRec are the record seen as each message, pointer-shaped (a
// conversion of the same pointer), and make the message when one is
// needed: on a send (wrap), or for proto.Marshal and proto.Equal, through
// ProtoReflect. The wire format is the messages', unchanged.
//
// A record is immutable once built: the tables' logs keep previous values
// for filtered resumes, and snapshots share items with streams. A change
// of an endpoint makes a new record.

// epRecord is one endpoint as the watch tables publish it. The strings
// are the model's (id, VPC) and the host's (hostRef): the record holds
// no text of its own.
type epRecord struct {
	id             string
	vpc            string
	host           *hostRef
	vni            uint32
	ip             [4]byte
	mac, routerMAC MAC
	port           uint16
	kind           uint8 // index in recordKinds
}

// hostRef is a host as the records name it: its id and underlay address
// as text, one per host rather than two strings (32 bytes) per endpoint.
// Immutable: a host whose address changes gets a new one.
type hostRef struct {
	id, ip string
}

// recordKinds are the endpoint kinds a record can hold, by index: those
// that validate. An endpoint of another kind, or whose address is not
// IPv4 (none that validates), is published as plain messages.
var recordKinds = [...]EndpointKind{KindVM, KindILB, KindVPN, KindInterconnect, KindRouter}

func kindIndex(k EndpointKind) (uint8, bool) {
	for i, x := range recordKinds {
		if x == k {
			return uint8(i), true
		}
	}
	return 0, false
}

// hostRefLocked is host id's hostRef as the model has the host now.
func (s *Server) hostRefLocked(id string) *hostRef {
	ip := s.m.hostIP(id)
	if r := s.hostRefs[id]; r != nil && r.ip == ip {
		return r
	}
	r := &hostRef{id: id, ip: ip}
	if s.hostRefs == nil {
		s.hostRefs = map[string]*hostRef{}
	}
	s.hostRefs[id] = r
	return r
}

// recordLocked is e as a record, false if a record cannot hold it.
func (s *Server) recordLocked(e Endpoint) (epRecord, bool) {
	kind, ok := kindIndex(e.Kind)
	if !ok || !e.IP.Is4() {
		return epRecord{}, false
	}
	var vni uint32
	if v := s.m.vpcs[e.VPC]; v != nil {
		vni = v.VNI
	}
	return epRecord{
		id: e.ID, vpc: e.VPC, host: s.hostRefLocked(e.Host), vni: vni, ip: e.IP.As4(),
		mac: e.MAC, routerMAC: e.RouterMAC, port: e.Port, kind: kind,
	}, true
}

// same reports whether r and o publish the same thing in every form.
func (r *epRecord) same(o *epRecord) bool {
	return r == o || r.id == o.id && r.vpc == o.vpc && r.host.id == o.host.id && r.host.ip == o.host.ip &&
		r.vni == o.vni && r.ip == o.ip && r.mac == o.mac && r.routerMAC == o.routerMAC && r.port == o.port && r.kind == o.kind
}

// endpointForms are e's items: its destination and forwarding (the same
// in every service that exports it) and its local endpoint. local, if
// not nil, is a record of e already published (its forwarding, say), kept
// if e is still what it says, so that the forms share one record.
func (s *Server) endpointForms(e Endpoint, local proto.Message) (dest, fwd, loc proto.Message) {
	r, ok := s.recordLocked(e)
	if !ok {
		return plainForms(s.m, e)
	}
	var p *epRecord
	switch x := local.(type) {
	case *fwdRec:
		p = (*epRecord)(x)
	case *localRec:
		p = (*epRecord)(x)
	case *destRec:
		p = (*epRecord)(x)
	}
	if p == nil || !p.same(&r) {
		p = new(epRecord) // here only: &r would put r on the heap on every call
		*p = r
	}
	return (*destRec)(p), (*fwdRec)(p), (*localRec)(p)
}

// plainForms are e's items as messages, for an endpoint no record can
// hold. The address and MAC are one string each, shared by the items.
func plainForms(m *model, e Endpoint) (dest, fwd, loc proto.Message) {
	var vni uint32
	if v := m.vpcs[e.VPC]; v != nil {
		vni = v.VNI
	}
	ip, mac := e.IP.String(), e.MAC.String()
	return &p4meshv1.Destination{Vpc: e.VPC, Ip: ip, Endpoint: e.ID},
		&p4meshv1.Forwarding{Vpc: e.VPC, Ip: ip, Mac: mac, Host: e.Host, HostIp: m.hostIP(e.Host)},
		&p4meshv1.LocalEndpoint{
			Id: e.ID, Vpc: e.VPC, Vni: vni, Ip: ip, Mac: mac, Port: uint32(e.Port), Kind: string(e.Kind),
			RouterMac: macText(e.RouterMAC),
		}
}

// itemAddr is the address a destination or forwarding item is keyed by.
func itemAddr(v proto.Message) netip.Addr {
	switch x := v.(type) {
	case *destRec:
		return netip.AddrFrom4(x.ip)
	case *fwdRec:
		return netip.AddrFrom4(x.ip)
	case *p4meshv1.Destination:
		a, _ := netip.ParseAddr(x.GetIp())
		return a
	case *p4meshv1.Forwarding:
		a, _ := netip.ParseAddr(x.GetIp())
		return a
	}
	return netip.Addr{}
}

// message is the message v stands for: v itself unless it is a record.
func message(v proto.Message) proto.Message {
	switch x := v.(type) {
	case *destRec:
		return x.message()
	case *fwdRec:
		return x.message()
	case *localRec:
		return x.message()
	case *routeRec:
		return x.message()
	}
	return v
}

func (r *epRecord) ipText() string { return netip.AddrFrom4(r.ip).String() }

// destRec is a record as its Destination.
type destRec epRecord

// fwdRec is a record as its Forwarding.
type fwdRec epRecord

// localRec is a record as its LocalEndpoint.
type localRec epRecord

var (
	_ watch.Equaler = (*destRec)(nil)
	_ watch.Equaler = (*fwdRec)(nil)
	_ watch.Equaler = (*localRec)(nil)
)

func (d *destRec) message() *p4meshv1.Destination {
	r := (*epRecord)(d)
	return &p4meshv1.Destination{Vpc: r.vpc, Ip: r.ipText(), Endpoint: r.id}
}

// ProtoReflect is that of a Destination made for the call: what it is
// given to change is a copy, never the record.
func (d *destRec) ProtoReflect() protoreflect.Message { return d.message().ProtoReflect() }

func (d *destRec) String() string { return d.message().String() }

// EqualItem is proto.Equal, without making messages when other is a
// record too.
func (d *destRec) EqualItem(other proto.Message) bool {
	if o, ok := other.(*destRec); ok {
		return d == o || d.vpc == o.vpc && d.ip == o.ip && d.id == o.id
	}
	return proto.Equal(d.message(), message(other))
}

func (f *fwdRec) message() *p4meshv1.Forwarding {
	r := (*epRecord)(f)
	return &p4meshv1.Forwarding{Vpc: r.vpc, Ip: r.ipText(), Mac: r.mac.String(), Host: r.host.id, HostIp: r.host.ip}
}

// ProtoReflect is that of a Forwarding made for the call.
func (f *fwdRec) ProtoReflect() protoreflect.Message { return f.message().ProtoReflect() }

func (f *fwdRec) String() string { return f.message().String() }

// EqualItem is proto.Equal, without making messages when other is a
// record too.
func (f *fwdRec) EqualItem(other proto.Message) bool {
	if o, ok := other.(*fwdRec); ok {
		return f == o || f.vpc == o.vpc && f.ip == o.ip && f.mac == o.mac && f.host.id == o.host.id && f.host.ip == o.host.ip
	}
	return proto.Equal(f.message(), message(other))
}

func (l *localRec) message() *p4meshv1.LocalEndpoint {
	r := (*epRecord)(l)
	return &p4meshv1.LocalEndpoint{
		Id: r.id, Vpc: r.vpc, Vni: r.vni, Ip: r.ipText(), Mac: r.mac.String(), Port: uint32(r.port),
		Kind: string(recordKinds[r.kind]), RouterMac: macText(r.routerMAC),
	}
}

// ProtoReflect is that of a LocalEndpoint made for the call.
func (l *localRec) ProtoReflect() protoreflect.Message { return l.message().ProtoReflect() }

func (l *localRec) String() string { return l.message().String() }

// EqualItem is proto.Equal, without making messages when other is a
// record too. The host is not in the message.
func (l *localRec) EqualItem(other proto.Message) bool {
	if o, ok := other.(*localRec); ok {
		return l == o || l.id == o.id && l.vpc == o.vpc && l.vni == o.vni && l.ip == o.ip && l.mac == o.mac &&
			l.routerMAC == o.routerMAC && l.port == o.port && l.kind == o.kind
	}
	return proto.Equal(l.message(), message(other))
}
