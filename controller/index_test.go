package controller

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestModelEndpointsRoundTrip puts, replaces and deletes endpoints of
// every form in a model, enough to compact its list several times, and
// checks after each step that the model gives back exactly what was put
// (each field of every kind, addresses that are not IPv4 as well), in the
// list's order, which a plain slice edited as Change.ApplyTo edits one
// keeps as the reference; the endpoints by host and by VPC, whose
// positions move when the list is compacted; and the endpoints by IP, MAC
// and port, where endpoints often share one (a change may put a second
// endpoint with an address before the first moves off it), against maps
// edited by the same rule: the last put takes the key, and only its
// owner's delete or move frees it.
func TestModelEndpointsRoundTrip(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 14))
	kinds := []EndpointKind{"", KindVM, KindILB, KindVPN, KindInterconnect, KindRouter}
	addrs := func() netip.Addr {
		switch r.IntN(8) {
		case 0:
			return netip.Addr{}
		case 1:
			return netip.MustParseAddr("fd00::1:2")
		case 2:
			return netip.MustParseAddr("::ffff:10.0.0.9") // 4in6: not Is4
		case 3:
			return netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(4))})
		default:
			return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
		}
	}
	mac := func() MAC {
		if r.IntN(4) == 0 {
			return MAC{2, 0, 0, 0, 0, byte(r.IntN(4))}
		}
		return MAC{2, byte(r.IntN(256)), byte(r.IntN(256)), 0, byte(r.IntN(256)), byte(r.IntN(256))}
	}
	port := func() uint16 {
		if r.IntN(4) == 0 {
			return uint16(1 + r.IntN(4))
		}
		return uint16(r.IntN(70000))
	}
	endpoint := func(id string) Endpoint {
		e := Endpoint{
			ID: id, VPC: []string{"red", "blue", "green"}[r.IntN(3)], Kind: kinds[r.IntN(len(kinds))],
			IP: addrs(), MAC: mac(), Host: []string{"h0", "h1", "h2", "h3"}[r.IntN(4)], Port: port(),
		}
		if r.IntN(2) == 0 {
			e.RouterMAC = mac()
		}
		return e
	}

	m := newModel(&Config{})
	var want []Endpoint
	// The uniqueness indexes as the model's rule edits them, by name and
	// address rather than by numbered name.
	type nameIP struct {
		name string
		ip   netip.Addr
	}
	type nameMAC struct {
		name string
		mac  MAC
	}
	type namePort struct {
		name string
		port uint16
	}
	byIP, byMAC, byPort := map[nameIP]string{}, map[nameMAC]string{}, map[namePort]string{}
	index := func(e Endpoint) {
		if e.IP.Is4() {
			byIP[nameIP{e.VPC, e.IP}] = e.ID
		}
		byMAC[nameMAC{e.VPC, e.MAC}] = e.ID
		byPort[namePort{e.Host, e.Port}] = e.ID
	}
	unindex := func(e Endpoint) {
		deleteIf(byIP, nameIP{e.VPC, e.IP}, e.ID)
		deleteIf(byMAC, nameMAC{e.VPC, e.MAC}, e.ID)
		deleteIf(byPort, namePort{e.Host, e.Port}, e.ID)
	}
	shared := 0 // steps that put an endpoint on a key another held
	checkUnique := func(step int) {
		t.Helper()
		if m.epIP.len() != len(byIP) || m.epMAC.len() != len(byMAC) || m.epPort.len() != len(byPort) {
			t.Fatalf("step %d: %d/%d/%d endpoints by IP/MAC/port, want %d/%d/%d", step,
				m.epIP.len(), m.epMAC.len(), m.epPort.len(), len(byIP), len(byMAC), len(byPort))
		}
		for k, id := range byIP {
			if got := m.epByIP(k.name, k.ip); got != id {
				t.Fatalf("step %d: endpoint by IP %s in %s is %q, want %q", step, k.ip, k.name, got, id)
			}
		}
		for k, id := range byMAC {
			if got := m.epByMAC(k.name, k.mac); got != id {
				t.Fatalf("step %d: endpoint by MAC %s in %s is %q, want %q", step, k.mac, k.name, got, id)
			}
		}
		for k, id := range byPort {
			if got := m.epByPort(k.name, k.port); got != id {
				t.Fatalf("step %d: endpoint on port %d of %s is %q, want %q", step, k.port, k.name, got, id)
			}
		}
	}
	check := func(step int) {
		t.Helper()
		got := m.eps.values()
		if len(want) == 0 {
			want = nil
		}
		if !slices.Equal(got, want) {
			t.Fatalf("step %d: the model's endpoints differ from what was put:\n got %v\nwant %v", step, got, want)
		}
		for _, e := range want {
			if g, ok := m.eps.get(e.ID); !ok || g != e {
				t.Fatalf("step %d: get(%s) = %v, %v; want %v", step, e.ID, g, ok, e)
			}
		}
		// The endpoints by host and by VPC, as the derivations read them.
		for _, by := range []struct {
			name  string
			index map[string][]int32
			of    func(Endpoint) string
		}{{"host", m.onHost, func(e Endpoint) string { return e.Host }}, {"VPC", m.inVPC, func(e Endpoint) string { return e.VPC }}} {
			wantBy := map[string][]string{}
			for _, e := range want {
				wantBy[by.of(e)] = append(wantBy[by.of(e)], e.ID)
			}
			gotBy := map[string][]string{}
			for k, ps := range by.index {
				// Sorted, as lookups by binary search need, and no
				// list left empty.
				if len(ps) == 0 || !slices.IsSorted(ps) || len(slices.Compact(slices.Clone(ps))) != len(ps) {
					t.Fatalf("step %d: endpoints by %s %s at %v: not a sorted list of positions", step, by.name, k, ps)
				}
				for e := range m.endpointsAt(ps) {
					gotBy[k] = append(gotBy[k], e.ID)
				}
				slices.Sort(gotBy[k])
			}
			for k := range wantBy {
				slices.Sort(wantBy[k])
			}
			same := len(gotBy) == len(wantBy)
			for k, ids := range wantBy {
				same = same && slices.Equal(gotBy[k], ids)
			}
			if !same {
				t.Fatalf("step %d: endpoints by %s\n got %v\nwant %v", step, by.name, gotBy, wantBy)
			}
		}
		checkUnique(step)
		// The hosts of each VPC, which hostsOf keeps between changes.
		for _, vpc := range []string{"red", "blue", "green"} {
			var hosts []string
			for _, e := range want {
				if e.VPC == vpc && !slices.Contains(hosts, e.Host) {
					hosts = append(hosts, e.Host)
				}
			}
			slices.Sort(hosts)
			if got := m.hostsOf(vpc); !slices.Equal(got, hosts) {
				t.Fatalf("step %d: hosts of %s are %v, want %v", step, vpc, got, hosts)
			}
		}
	}
	for step := range 3000 {
		id := "ep" + string(rune('a'+r.IntN(26))) + string(rune('a'+r.IntN(26)))
		i := slices.IndexFunc(want, func(e Endpoint) bool { return e.ID == id })
		if i >= 0 {
			unindex(want[i])
		}
		switch {
		case i >= 0 && r.IntN(3) == 0:
			m.delEndpoint(id)
			want = slices.Delete(want, i, i+1)
		default:
			e := endpoint(id)
			if _, ok := byMAC[nameMAC{e.VPC, e.MAC}]; ok {
				shared++
			}
			m.putEndpoint(e)
			index(e)
			if i >= 0 {
				want[i] = e
			} else {
				want = append(want, e)
			}
		}
		if step%10 == 0 || step > 2900 {
			check(step)
		}
	}
	check(3000)
	// Deleting two in three compacts the list (its holes are then the
	// majority): what stays must be found at its new position.
	slotsBefore := len(m.eps.slots)
	kept := want[:0:0]
	for i, e := range want {
		if i%3 == 0 {
			kept = append(kept, e)
		} else {
			unindex(e)
			m.delEndpoint(e.ID)
		}
	}
	want = kept
	if len(m.eps.slots) >= slotsBefore {
		t.Fatalf("%d slots before deleting two thirds of %d endpoints, %d after: not compacted", slotsBefore, len(want)*3, len(m.eps.slots))
	}
	check(3000)
	// Deleting every endpoint leaves no address aside.
	for _, e := range want {
		unindex(e)
		m.delEndpoint(e.ID)
	}
	want = nil
	check(3001)
	if shared < 50 {
		t.Errorf("only %d puts took a MAC another endpoint held: the uniqueness indexes' rule was hardly exercised", shared)
	}
	if len(m.epOddIP) != 0 {
		t.Errorf("addresses left aside after every endpoint was deleted: %v", m.epOddIP)
	}
}
