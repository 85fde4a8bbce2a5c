// Package bgp is the controller's BGP speaker: an embedded GoBGP server
// that holds one session per VPN or interconnect attachment with the
// on-prem router behind it, hands the routes it learns to the route
// manager, and advertises each VPC's prefixes with the attachment's
// VPC-side address as next hop.
//
// # One GoBGP server per VPC
//
// Each VPC has a GoBGP server of its own, started with its first neighbor;
// the server's global IPv4 unicast table is the VPC's routing table. A
// neighbor belongs to its VPC's server, so what it announces can only
// reach that VPC's table and that VPC's neighbors. VPCs may therefore use
// overlapping prefixes, and two VPCs may advertise the same prefix with
// different next hops: tagging neighbors in one global table could not
// keep those apart, because best-path selection would pick one of the two.
//
// Why servers and not VRFs (the first design: one server, one VRF per VPC
// with RD/RT 0:VNI, measured in docs/benchmarks.md): GoBGP converts every
// path a VRF neighbor sends into a VPNv4 copy in its global table (each
// route held twice), and for every learned path and every other
// established VRF neighbor it checks the VRF's route targets, compiling a
// regexp each time (table.CanImportToVrf, from prePolicyFilterpath), so
// the CPU per route grew by about 13 µs per established session of any
// VPC: with 1,000 VPCs a route would cost milliseconds. With a server per
// VPC there is no VPN copy, and a learned path is only considered for the
// neighbors of its own VPC. The price: GoBGP cannot share a listening
// socket between servers, so the speaker dials every session and accepts
// none (Config.ListenPort); every server has a few goroutines and one
// GoBGP never ends (Serve); and GoBGP keeps its route-selection options in
// package variables that each StartBgp writes, which fenceAll orders
// against the other servers' reads. A server stays, idle, when its VPC
// loses its last neighbor (see Limits).
//
// Options measured or read: GoBGP's BEST watch reports only the best path
// per prefix, and the speaker must deliver every neighbor's route (several
// attachments of one VPC are ECMP), so it is not used. GoBGP's
// post-policy watch (the first design's) copies the neighbor's whole
// configuration and capabilities for every path (toConfig), a quarter of
// all CPU even after the change to servers; the pre-policy (ADJIN) watch
// does that once per UPDATE (hundreds of paths), so the speaker uses it,
// filters in Go, and reads back what GoBGP decides without an UPDATE
// (Learned routes, below). GoBGP v3.37 has no setting that removes the
// per-path copy, and nothing else (table types, best-path options) that
// this speaker could use to do less work (but keeping learned paths out
// of its global table, below); GC tuning (GOGC, GOMEMLIMIT) is for the
// controller binary, not for a library. What the watch does per path
// that remains (pkg/server WatchEvent: toPathApi marshals the NLRI and
// every attribute into anypb messages; the binary forms are offered only
// by ListPath) has no cheaper form in v3.37's watch API (the internal
// watch, with table.Path, is unexported). GoBGP's BMP client would hand
// over each pre-policy UPDATE's own bytes, but over a TCP connection, with
// its own reconnect back-off and re-sent adj-RIB-in, and session states
// and End-of-RIB would have to come from it too to keep GoBGP's order; it
// is not used (docs/benchmarks.md weighs it). The speaker decodes the
// attributes once per UPDATE (the paths of one event share them, compared
// as bytes) and the IPv4 NLRI from its wire form, without unmarshalling
// messages.
//
// Session state and counts (Neighbors) come from the watch's state events
// and the speaker's own records, never from GoBGP's ListPeer: it counts a
// neighbor's routes by walking its whole adj-RIB-in on the server's
// goroutine (AdjRib.Count), which at 1M routes and a read per second was
// a quarter of all CPU and stalled the server between UPDATEs.
//
// GoBGP applies import and export policies per neighbor only to
// route-server clients; for ordinary neighbors they are global. Each
// VPC's server therefore keeps two global policies: import accepts only
// the routes the speaker originated (Advertise) and rejects every learned
// path (below); export accepts only those originated routes, with a
// statement per neighbor address that sets the next hop to that
// neighbor's NextHop, and rejects everything else, so a route learned
// from one on-prem router never goes to another.
//
// # Learned paths stay out of GoBGP's table
//
// The consumer (the route manager) chooses among every neighbor's routes
// by BGP rules itself, and needs all of them, not GoBGP's best; nothing
// reads GoBGP's global table for learned routes, and nothing is sent
// from it but the speaker's own. So the import policy rejects every
// learned path, after the pre-policy watch has seen it: a learned path is
// held once, in its neighbor's adj-RIB-in (which the read-backs below,
// graceful restart, max-prefixes and Learned use), and GoBGP's table has
// only the advertised prefixes. Before, every learned path also got a
// destination in the global table, best-path selection and an
// export-policy evaluation per neighbor; GoBGP's propagateUpdate was
// about a fifth of the controller's CPU at 1M routes (docs/benchmarks.md).
// What a rejected path still costs GoBGP (v3.37 propagateUpdate): the
// policy evaluation (one statement), a withdrawal copy of the path, and a
// table update that finds no destination for it. Withdrawals, session
// loss and graceful restart act on the adj-RIB-in as before (GoBGP's own
// withdrawals from the global table then find nothing there), and the
// watch sees them as before.
//
// # Learned routes
//
// The speaker watches each server's pre-policy adj-RIB-in (every UPDATE's
// paths, announced and withdrawn), End-of-RIB and session states, in one
// watch so they arrive in GoBGP's order, and applies each neighbor's
// import filter itself (plus GoBGP's AS-loop rule). It keeps, per
// neighbor, the prefixes it delivered (8 bytes of key each) and whether
// each is stale, and the prefixes the import filter rejected (for the
// neighbor's counts, Neighbors). What GoBGP's RIB decides without an UPDATE is read back
// from GoBGP at the moments that tell (learn.go): when a session leaves
// established, the neighbor's adj-RIB-in says whether GoBGP dropped its
// routes (NOTIFICATION, hold timer without graceful restart, TCP loss,
// max-prefixes) or kept them stale (graceful restart); End-of-RIB
// withdraws the stale ones not announced again; while a neighbor is down
// with stale routes, its route count is read every second and reaching 0
// means the restart time ran out; a filter change re-reads the
// neighbor's adj-RIB-in. A removed neighbor's routes are withdrawn by
// SetNeighbors itself, and its session's events still queued in the watch
// are recognized by their receive time and ignored. Each of these sets or
// removes whole routes, so events queued from before a read-back bring
// the same end state. The watch callback only decodes, filters and
// queues; one goroutine hands everything queued since its last round to
// Config.Deliver, a call per queued slice with nothing between them, so
// the consumer can gather a burst of a million prefixes into a few large
// batches, and GoBGP never waits.
//
// # Timers and graceful restart
//
// The hold time is negotiated down to the smaller of both sides'; when it
// expires the speaker sends a NOTIFICATION and drops the neighbor's routes.
// With Neighbor.GracefulRestart the speaker is a helper (RFC 4724): if the
// neighbor also negotiated graceful restart and its session drops without
// a NOTIFICATION (TCP reset, process killed) or the hold timer expires,
// its routes are kept, unchanged for the consumer, for the restart time the
// neighbor announced (Neighbors shows the session down, with the reason).
// If the neighbor comes back and sends End-of-RIB, the routes it announced
// again stay and the others are withdrawn; if it does not come back in
// time, all are withdrawn. (GoBGP marks the kept routes stale; Route has
// no such mark, and the consumer sees no change until the end.) Without
// graceful restart on both sides, a dropped session withdraws everything
// at once.
//
// # Wiring
//
// New, then Start, then SetNeighbors with the whole set of attachment
// neighbors whenever configuration changes, and Advertise per VPC whenever
// its subnets or exported peer subnets change (before its neighbors exist
// is fine). Deliver gets the learned-route deltas; Learned and Neighbors
// answer state reads. The speaker dials every neighbor (at Neighbor.Port,
// default 179, from Config.ListenAddress when set) and listens nowhere:
// the on-prem router must accept the speaker's connection, which FRR does
// by default (and also with "neighbor X passive"); a router configured to
// only dial out never peers. On the router's side, eBGP needs what FRR
// calls "no bgp ebgp-requires-policy" (or route-maps in and out), the
// same TCP MD5 password if one is set, and "bgp graceful-restart" for
// helper mode to matter.
//
// # Limits
//
// GoBGP counts, against a neighbor's max-prefixes limit, every route in
// its adj-RIB-in, including those with the speaker's AS in their path
// that it then drops as loops: a router that sends the VPC's advertised
// prefixes back (FRR does, to an eBGP neighbor) uses up that many of the
// limit, so the limit should allow for the VPC's advertised prefixes.
//
// IPv4 only. Each VPC's server sends its VPC's router id
// (Neighbor.RouterID, the same on all the VPC's neighbors; unset means
// Config.RouterID). GoBGP cannot change a running server's router id, so
// a change replaces the VPC's server: its sessions are deleted (their
// routes withdrawn, late events ignored as for any removed neighbor), the
// old server stopped, and a new one started with the VPC's
// advertisements; the routers then announce their routes again. Neighbors are
// keyed by address across the speaker, so two VPCs cannot peer with
// routers at the same address (the servers could; the Neighbor API and
// the logger's reasons are keyed by address). A VPC's server is kept,
// idle, after its last neighbor goes, and reused if the VPC gets
// neighbors again, until Stop: stopping it would drop withdrawals GoBGP
// still has queued for its watch. That costs an idle GoBGP server per VPC
// ever configured since the speaker started. The read-backs (Learned
// routes) follow GoBGP's decisions with two gaps: a removed session's
// late events are told apart by wall-clock receive time, so a clock step
// backwards at that moment could let one through; and if a neighbor comes
// back within its restart time but the time runs out before its
// End-of-RIB, the stale routes GoBGP drops then are withdrawn only at
// that End-of-RIB or the session's next state change.
package bgp
