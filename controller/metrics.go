package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/p4mesh/p4mesh/watch"
)

// Collector exports a Server's state as Prometheus metrics. It reads the
// server at scrape time, so the server keeps no metric state of its own
// and imposes no registry: register the collector on the daemon's private
// registry.
//
// Watch tables are summed by kind of stream, never labelled per table:
// tables come and go with published services (one per (VPC, policy)), so
// a per-table label would be unbounded. Revisions are not exported: they
// start at a Unix-nanosecond epoch, which a float64 sample cannot hold
// exactly, and what operators want from them (is anything changing, are
// clients keeping up) the snapshot and resync counters say better.
type Collector struct {
	s *Server

	services, hosts, peerings, activePeerings, applies, applyErrors *prometheus.Desc
	subscribers, items, snapshots, resyncs                          *prometheus.Desc
}

// streamKinds are the kinds of watch stream a controller serves, the
// values of the "stream" label.
var streamKinds = []string{"host", "destinations", "forwarding", "load_balancers", "routes", "peers"}

// NewCollector makes a collector for s.
func NewCollector(s *Server) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("p4mesh_controller_"+name, help, labels, nil)
	}
	return &Collector{
		s:              s,
		services:       d("published_services", "Connectivity services published: one per owned VPC and per unique (VPC, export policy) its peerings use."),
		hosts:          d("hosts", "Hosts whose programming the controller publishes."),
		peerings:       d("peerings", "Peerings configured on the controller's VPCs."),
		activePeerings: d("peerings_active", "Peerings configured on both sides, with no conflict."),
		applies:        d("config_applies_total", "Configurations accepted by Apply."),
		applyErrors:    d("config_apply_errors_total", "Configurations refused by Apply (invalid, or not persisted); nothing changed."),
		subscribers:    d("watch_subscribers", "Watch streams being served, by kind of stream.", "stream"),
		items:          d("watch_items", "Items in the watch tables, by kind of stream.", "stream"),
		snapshots:      d("watch_snapshots_total", "Snapshots served (first connections, resumes that could not resume, forced resyncs), by kind of stream. Tables of withdrawn services stop counting.", "stream"),
		resyncs:        d("watch_resyncs_forced_total", "Subscribers that fell behind their buffer and were resynchronised, by kind of stream. Tables of withdrawn services stop counting.", "stream"),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.services, c.hosts, c.peerings, c.activePeerings, c.applies, c.applyErrors,
		c.subscribers, c.items, c.snapshots, c.resyncs,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.services, float64(st.PublishedServices))
	gauge(c.hosts, float64(st.Hosts))
	gauge(c.peerings, float64(st.Peerings))
	gauge(c.activePeerings, float64(st.ActivePeerings))
	counter(c.applies, float64(st.Applies))
	counter(c.applyErrors, float64(st.ApplyErrors))
	for kind, ws := range c.s.streamStats() {
		gauge(c.subscribers, float64(ws.Subscribers), kind)
		gauge(c.items, float64(ws.Items), kind)
		counter(c.snapshots, float64(ws.Snapshots), kind)
		counter(c.resyncs, float64(ws.ResyncsForced), kind)
	}
}

// streamStats sums the watch tables' counters by kind of stream; every
// kind is present, so its series exist before the first table does.
func (s *Server) streamStats() map[string]watch.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]watch.Stats, len(streamKinds))
	for _, k := range streamKinds {
		out[k] = watch.Stats{}
	}
	add := func(kind string, t *watch.Table) {
		ts, o := t.Stats(), out[kind]
		o.Items += ts.Items
		o.Subscribers += ts.Subscribers
		o.Snapshots += ts.Snapshots
		o.ResyncsForced += ts.ResyncsForced
		out[kind] = o
	}
	add("peers", s.peers)
	for _, t := range s.hosts {
		add("host", t)
	}
	for _, svc := range s.services {
		add("destinations", svc.dest)
		add("forwarding", svc.fwd)
		add("load_balancers", svc.lbs)
		add("routes", svc.routes)
	}
	return out
}
