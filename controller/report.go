package controller

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// hostReports holds what each OHC last reported of its switch: the
// controller's only view of the data plane, for operational state.
type hostReports struct {
	mu sync.Mutex // guards the fields below
	// entries are the entries each host has programmed, by table.
	entries map[string]map[string]uint64
	// primary is whether each host's OHC is primary on its switch, for the
	// hosts whose OHC says (older OHCs do not).
	primary map[string]bool
}

func (r *hostReports) set(host string, entries map[string]uint64, primary *bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries == nil {
		r.entries, r.primary = map[string]map[string]uint64{}, map[string]bool{}
	}
	c := make(map[string]uint64, len(entries))
	for t, n := range entries {
		c[t] = n
	}
	r.entries[host] = c
	if primary != nil {
		r.primary[host] = *primary
	} else {
		delete(r.primary, host)
	}
}

// totals is the number of entries each reporting host has programmed.
func (r *hostReports) totals() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.entries))
	for h, byTable := range r.entries {
		var n uint64
		for _, c := range byTable {
			n += c
		}
		out[h] = n
	}
	return out
}

// primaries is whether each host's OHC is primary on its switch, for the
// hosts whose OHC reported it.
func (r *hostReports) primaries() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.primary))
	for h, p := range r.primary {
		out[h] = p
	}
	return out
}

// Report records what an OHC has programmed; only hosts of this
// controller's configuration may report.
func (h hostProgramming) Report(ctx context.Context, r *p4meshv1.HostReport) (*p4meshv1.HostReportAck, error) {
	host, err := h.s.hostOf(ctx, r.GetHost())
	if err != nil {
		return nil, err
	}
	// Every OHC reports after each batch it programs: a lookup in the
	// model, not Config, which materialises the whole configuration after
	// each change.
	if name, ok := h.s.hasHost(host); !ok {
		return nil, status.Errorf(codes.NotFound, "host %q is not in controller %s's configuration", host, name)
	}
	h.s.reports.set(host, r.GetEntries(), r.SwitchPrimary)
	h.s.reportGateway(host, r.GetPeerPackets())
	return &p4meshv1.HostReportAck{}, nil
}

// hasHost reports whether host is configured, and the controller's name.
func (s *Server) hasHost(host string) (controller string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok = s.m.hosts[host]
	return s.m.base.Controller, ok
}
