package ohc

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/p4mesh/p4mesh/p4rt"
)

// Collector exports a programmer's and its switch connection's state as
// Prometheus metrics; register it on a private registry.
type Collector struct {
	prog   *Programmer
	client *p4rt.Client

	agent *Agent

	entries, changes, reconciles, errors, pushes, lastDuration, primary, arbitrations *prometheus.Desc
	convergence, events, streams, pulled                                              *prometheus.Desc
	unsynced, pastGrace, held, compiles                                               *prometheus.Desc
}

// NewCollector makes a collector for prog and its client; agent may be nil.
func NewCollector(prog *Programmer, client *p4rt.Client, agent *Agent) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("p4mesh_ohc_"+name, help, labels, nil)
	}
	return &Collector{
		prog: prog, client: client, agent: agent,
		convergence:  d("convergence_last_seconds", "Time from a view change reaching the OHC to the switch holding it, for the last change."),
		events:       d("watch_events_total", "Watch events received, by type.", "type"),
		streams:      d("watch_streams", "Watch streams followed."),
		pulled:       d("pulled_services", "Connectivity services pulled: own VPCs and active peers under their export policy."),
		unsynced:     d("sources_unsynced", "Sources (a controller's host programming, a pulled service) not synced now: programmed as last seen, or not at all when never seen since the OHC started."),
		pastGrace:    d("sources_unsynced_past_grace", "Sources unsynced for longer than --source-grace."),
		compiles:     d("compiles_total", "Views compiled, by kind: whole, or incremental (only the remote endpoints that changed).", "kind"),
		held:         d("entries_held", "Entries kept on the switch that no synced source explains, while the view lacks sources the OHC has not heard from since it started."),
		entries:      d("entries_desired", "Entries the OHC wants in each table of its switch.", "table"),
		changes:      d("entries_changed_total", "Entries written to the switch, by table and kind of change.", "table", "change"),
		reconciles:   d("reconciles_total", "Reconciles of the switch against the desired state."),
		errors:       d("reconcile_errors_total", "Reconciles that failed."),
		pushes:       d("pipeline_pushes_total", "Pipeline pushes (the switch did not run the pipeline)."),
		lastDuration: d("reconcile_last_seconds", "Duration of the last reconcile (read back, diff, writes)."),
		primary:      d("switch_primary", "1 when the OHC is the primary controller of its switch."),
		arbitrations: d("switch_arbitrations_total", "Arbitrations with the switch: one per (re)connection."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.entries, c.changes, c.reconciles, c.errors, c.pushes, c.lastDuration, c.primary, c.arbitrations,
		c.convergence, c.events, c.streams, c.pulled, c.unsynced, c.pastGrace, c.held, c.compiles} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.prog.Stats()
	for t, n := range st.Desired {
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(n), t)
	}
	for t, ch2 := range st.TotalChanges {
		ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(ch2.Inserted), t, "insert")
		ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(ch2.Modified), t, "modify")
		ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(ch2.Deleted), t, "delete")
	}
	ch <- prometheus.MustNewConstMetric(c.reconciles, prometheus.CounterValue, float64(st.Reconciles))
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(st.Errors))
	ch <- prometheus.MustNewConstMetric(c.pushes, prometheus.CounterValue, float64(st.PipelinePushes))
	ch <- prometheus.MustNewConstMetric(c.lastDuration, prometheus.GaugeValue, st.LastDuration.Seconds())
	primary := 0.0
	if c.client.IsPrimary() {
		primary = 1
	}
	ch <- prometheus.MustNewConstMetric(c.primary, prometheus.GaugeValue, primary)
	ch <- prometheus.MustNewConstMetric(c.arbitrations, prometheus.CounterValue, float64(c.client.Stats().Arbitrations))
	ch <- prometheus.MustNewConstMetric(c.convergence, prometheus.GaugeValue, st.LastConvergence.Seconds())
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(st.Held))
	ch <- prometheus.MustNewConstMetric(c.compiles, prometheus.CounterValue, float64(st.Compiles), "whole")
	ch <- prometheus.MustNewConstMetric(c.compiles, prometheus.CounterValue, float64(st.IncrementalCompiles), "incremental")
	if c.agent != nil {
		as := c.agent.Stats()
		for typ, n := range map[string]uint64{"put": as.Puts, "delete": as.Deletes, "synced": as.Synced, "reset": as.Resets, "progress": as.Progress} {
			ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n), typ)
		}
		ch <- prometheus.MustNewConstMetric(c.streams, prometheus.GaugeValue, float64(as.Streams))
		ch <- prometheus.MustNewConstMetric(c.pulled, prometheus.GaugeValue, float64(as.Pulled))
		ch <- prometheus.MustNewConstMetric(c.unsynced, prometheus.GaugeValue, float64(as.Unsynced))
		ch <- prometheus.MustNewConstMetric(c.pastGrace, prometheus.GaugeValue, float64(as.PastGrace))
	}
}
