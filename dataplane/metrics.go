package dataplane

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a Switch's counters to Prometheus: per-port traffic,
// pipeline drops, table sizes and hits, and the P4Runtime server's request
// counters. It reads the counters the switch keeps anyway at scrape time,
// so the packet path pays nothing for metrics. Register it on a registry
// of the caller's (never the global one); labels are bounded by the
// configured ports and the P4Info's tables.
type Collector struct {
	sw *Switch

	rxPackets, rxBytes, txPackets, txBytes, portDropped, txErrors *prometheus.Desc
	kernelDropped, vlanRestored, csumCompleted, segmented         *prometheus.Desc
	segments, offloadUnsupported                                  *prometheus.Desc
	pipelineDropped, pipelineLoaded                               *prometheus.Desc
	tableEntries, tableHits, tableHitBytes                        *prometheus.Desc
	writes, writeErrors, updates, updateErrors, reads             *prometheus.Desc
	packetIns, packetInDrops, packetOuts, packetOutDrops          *prometheus.Desc
	digestLists, digestDrops                                      *prometheus.Desc
}

// NewCollector makes a collector for sw.
func NewCollector(sw *Switch) *Collector {
	const ns = "p4mesh_switch"
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(ns+"_"+name, help, labels, nil)
	}
	return &Collector{
		sw:                 sw,
		rxPackets:          d("port_rx_packets_total", "Frames received on the P4 port.", "port"),
		rxBytes:            d("port_rx_bytes_total", "Bytes received on the P4 port.", "port"),
		txPackets:          d("port_tx_packets_total", "Frames sent out of the P4 port.", "port"),
		txBytes:            d("port_tx_bytes_total", "Bytes sent out of the P4 port.", "port"),
		portDropped:        d("port_dropped_total", "Frames dropped at the P4 port.", "port"),
		txErrors:           d("port_tx_errors_total", "Frames the P4 port failed to send.", "port"),
		kernelDropped:      d("port_kernel_rx_dropped_total", "Frames the kernel dropped before the P4 port read them (ring or socket buffer full: the switch did not keep up).", "port"),
		vlanRestored:       d("port_vlan_restored_total", "Frames whose 802.1Q tag, stripped by the kernel, the port put back.", "port"),
		csumCompleted:      d("port_checksum_completed_total", "Frames whose partial checksum (a local sender's TX offload) the port completed.", "port"),
		segmented:          d("port_segmented_total", "GSO/GRO super-frames the port cut into wire frames.", "port"),
		segments:           d("port_segments_total", "Wire frames cut from super-frames.", "port"),
		offloadUnsupported: d("port_offload_unsupported_total", "Frames the port could not turn into wire frames (dropped).", "port"),
		pipelineDropped:    d("pipeline_dropped_packets_total", "Packets the pipeline dropped, or sent to a port that does not exist."),
		pipelineLoaded:     d("pipeline_loaded", "1 when a controller has committed a pipeline, else 0 (nothing is forwarded)."),
		tableEntries:       d("table_entries", "Entries in the table, the default entry aside.", "table"),
		tableHits:          d("table_direct_counter_packets", "Sum of the direct counters (packets) of the table's present entries: hits, less those of deleted entries.", "table"),
		tableHitBytes:      d("table_direct_counter_bytes", "Sum of the direct counters (bytes) of the table's present entries.", "table"),
		writes:             d("p4runtime_writes_total", "P4Runtime Write RPCs."),
		writeErrors:        d("p4runtime_write_errors_total", "P4Runtime Write RPCs that did not return OK."),
		updates:            d("p4runtime_updates_total", "Updates in P4Runtime Write RPCs."),
		updateErrors:       d("p4runtime_update_errors_total", "Updates that failed."),
		reads:              d("p4runtime_reads_total", "P4Runtime Read RPCs."),
		packetIns:          d("p4runtime_packet_ins_total", "Packet-ins queued to the primary controller."),
		packetInDrops:      d("p4runtime_packet_in_drops_total", "Packet-ins dropped: no primary, or its queue full."),
		packetOuts:         d("p4runtime_packet_outs_total", "Packet-outs handed to the pipeline."),
		packetOutDrops:     d("p4runtime_packet_out_drops_total", "Packet-outs refused."),
		digestLists:        d("p4runtime_digest_lists_total", "Digest lists queued to the primary controller."),
		digestDrops:        d("p4runtime_digest_drops_total", "Digest messages dropped: disabled, no primary, or queue full."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.rxPackets, c.rxBytes, c.txPackets, c.txBytes, c.portDropped, c.txErrors,
		c.kernelDropped, c.vlanRestored, c.csumCompleted, c.segmented, c.segments, c.offloadUnsupported,
		c.pipelineDropped, c.pipelineLoaded, c.tableEntries, c.tableHits, c.tableHitBytes,
		c.writes, c.writeErrors, c.updates, c.updateErrors, c.reads,
		c.packetIns, c.packetInDrops, c.packetOuts, c.packetOutDrops, c.digestLists, c.digestDrops,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, n := range c.sw.Ports() {
		st := c.sw.PortStats(n)
		p := strconv.Itoa(int(n))
		counter(c.rxPackets, st.RxPackets.Load(), p)
		counter(c.rxBytes, st.RxBytes.Load(), p)
		counter(c.txPackets, st.TxPackets.Load(), p)
		counter(c.txBytes, st.TxBytes.Load(), p)
		counter(c.portDropped, st.Dropped.Load(), p)
		counter(c.txErrors, st.TxErrors.Load(), p)
		if kc, ok := c.sw.ports[n].(KernelCounters); ok {
			k := kc.KernelStats()
			counter(c.kernelDropped, k.RxDropped, p)
			counter(c.vlanRestored, k.VLANRestored, p)
			counter(c.csumCompleted, k.ChecksumCompleted, p)
			counter(c.segmented, k.Segmented, p)
			counter(c.segments, k.Segments, p)
			counter(c.offloadUnsupported, k.Unsupported, p)
		}
	}
	counter(c.pipelineDropped, c.sw.Dropped.Load())

	s := c.sw.Server().Stats()
	counter(c.writes, s.Writes)
	counter(c.writeErrors, s.WriteErrors)
	counter(c.updates, s.Updates)
	counter(c.updateErrors, s.UpdateErrors)
	counter(c.reads, s.Reads)
	counter(c.packetIns, s.PacketIns)
	counter(c.packetInDrops, s.PacketInDrops)
	counter(c.packetOuts, s.PacketOuts)
	counter(c.packetOutDrops, s.PacketOutDrops)
	counter(c.digestLists, s.DigestLists)
	counter(c.digestDrops, s.DigestDrops)

	st := c.sw.Server().Store()
	loaded := 0.0
	if c.sw.Pipeline() != nil {
		loaded = 1
	}
	ch <- prometheus.MustNewConstMetric(c.pipelineLoaded, prometheus.GaugeValue, loaded)
	if st == nil {
		return
	}
	// One read lock for the whole walk: a scrape sees whole writes only.
	// Writes wait meanwhile, for about a millisecond per 100k entries.
	st.RLock()
	defer st.RUnlock()
	for _, t := range st.order {
		name := tableName(t)
		ch <- prometheus.MustNewConstMetric(c.tableEntries, prometheus.GaugeValue, float64(t.Len()), name)
		if !t.directIx {
			continue
		}
		var pkts, bytes uint64
		for e := t.head; e != nil; e = e.next {
			pkts += e.Packets.Load()
			bytes += e.Bytes.Load()
		}
		// Gauges, not counters: a deleted entry takes its hits with it,
		// so the sum can fall.
		ch <- prometheus.MustNewConstMetric(c.tableHits, prometheus.GaugeValue, float64(pkts), name)
		ch <- prometheus.MustNewConstMetric(c.tableHitBytes, prometheus.GaugeValue, float64(bytes), name)
	}
}

// tableName is the table's P4Info alias (port_vnet), which is unique and
// shorter than the fully qualified name (VpcIngress.port_vnet).
func tableName(t *Table) string {
	if a := t.Info.GetPreamble().GetAlias(); a != "" {
		return a
	}
	return t.Info.Name()
}
