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
// post-policy watch copies the neighbor's whole configuration and
// capabilities for every path (toConfig). Its pre-policy (ADJIN) watch
// does that once per UPDATE, but then turns every path into anypb
// messages (WatchEvent's toPathApi marshals the NLRI and every
// attribute), about 6 CPU-s and much of the collector's work at 1M
// routes, on a core the server's goroutine needed. So learned paths come
// from GoBGP's BMP client instead (RFC 7854, pre-policy route
// monitoring): for each UPDATE GoBGP accepted it writes the message's own
// bytes, which the speaker parses itself (wire.go: the attributes once
// per UPDATE, then each IPv4 prefix), about a tenth of that cost (see
// Learned routes, and docs/benchmarks.md). GoBGP v3.37 has no setting
// that removes what its server goroutine does per path (keeping learned
// paths out of its global table, below, is what could be done); GC
// tuning (GOGC, GOMEMLIMIT) is for the controller binary, not for a
// library.
//
// Session state and counts (Neighbors) come from GoBGP's watch's state events
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
// learned path, after the BMP client has seen it: a learned path is
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
// withdrawals from the global table then find nothing there).
//
// # Learned routes
//
// Each VPC's server has a BMP station: the speaker listens on a loopback
// port of its own (bmp.go), and every server's BMP client connects to it
// and names itself in its Initiation message with the speaker's secret (a
// random value only the speaker's servers are configured with) and the
// server's id; a connection without the secret is closed before anything
// it sends is read, as any local process could connect. The stream
// carries, in GoBGP's order, each neighbor's Peer Up, every UPDATE GoBGP
// accepted from it (as received; none that exceeded max-prefixes, and
// none whose every route was an AS loop) and its Peer Down. The speaker
// takes a neighbor's UPDATEs only between its Peer Up and Peer Down, and
// applies its import filter itself (and GoBGP's AS-loop rule). A Peer
// Down is where the session's routes are settled: everything the session
// sent is before it in the same stream, so no late UPDATE can bring a
// route back after it. It keeps, per neighbor, the prefixes it delivered
// (8 bytes of key each) and whether each is stale, and the prefixes the
// import filter rejected (for the neighbor's counts, Neighbors).
//
// What GoBGP's RIB decides without an UPDATE is read back from GoBGP's
// adj-RIB-in (ListPath, binary paths with GoBGP's stale mark, parsed as
// the stream's) at the moments that tell (learn.go): at a Peer Down,
// whether GoBGP dropped the routes (NOTIFICATION, hold timer without
// graceful restart, TCP loss, max-prefixes) or kept them stale (graceful
// restart); at a Peer Up after one, whether the new session kept them; at
// End-of-RIB, which never comes through BMP (it has no paths) and comes
// from GoBGP's watch instead (with the session states Neighbors shows,
// and no paths), which stale routes GoBGP dropped: the read-back happens
// after GoBGP has dropped them, and the routes the neighbor announced
// again are in its adj-RIB-in whether or not their UPDATEs have come
// through the BMP stream yet, so none is withdrawn in between. While a
// neighbor is down with stale routes, its route count is read every
// second and reaching 0 means the restart time ran out; a filter change
// re-reads the neighbor's adj-RIB-in. Each read-back sets or removes
// whole routes, so the stream's messages from before it, applied after
// it, bring the same end state.
//
// If the BMP connection breaks, what GoBGP had not written is lost; its
// client connects again at once (its back-off only follows failed
// dials, and the station is always listening) and sends each established
// neighbor's Peer Up and whole adj-RIB-in (an UPDATE per path). The
// speaker then reads every neighbor's adj-RIB-in back (withdrawing what
// GoBGP no longer has), takes the re-sent routes as replacing its own,
// and follows the new stream; nothing is duplicated (an update replaces a
// route) or lost. A removed neighbor's routes are withdrawn by
// SetNeighbors itself, its UPDATEs still in the stream are ignored (no
// session is up for it there), and so is a Peer Up of its deleted session
// still in the stream: BMP's timestamps are whole seconds here, so that
// Peer Up is one from no later than the second of the deletion, and
// SetNeighbors adds the neighbor again only in a later second. Stopping
// a VPC's server (Stop, a router id change) stops its BMP client first.
//
// The stream's reader only parses, filters and queues; one goroutine
// hands everything queued since its last round to Config.Deliver, a call
// per queued slice with nothing between them, so the consumer can gather
// a burst of a million prefixes into a few large batches, and GoBGP
// never waits (its BMP client queues without bound when the station is
// slow).
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
// neighbors again, until Stop (a new server would need a new BMP
// connection and its set-up, for no gain). That costs an idle GoBGP server per VPC
// ever configured since the speaker started. The read-backs (Learned
// routes) follow GoBGP's decisions with two gaps: a removed session's
// Peer Up still in the BMP stream is told apart by its wall-clock second,
// so a clock step backwards at that moment could let its routes through;
// and if a neighbor comes
// back within its restart time but the time runs out before its
// End-of-RIB, the stale routes GoBGP drops then are withdrawn only at
// that End-of-RIB or the session's next state change. An UPDATE whose
// every route is an AS loop never reaches the BMP stream (GoBGP forwards
// an UPDATE only if some path of it passed), so if it replaces routes the
// neighbor had announced without the loop, those stay until the
// session's next change (the ADJIN watch had the same gap).
//
// The race detector: GoBGP's BMP client serializes a Peer Up's OPEN
// messages on its own goroutine, writing the same capability objects the
// server goroutine serializes in toConfig (for each UPDATE while the BMP
// client is connected, and ListPeer): a race inside GoBGP (same values
// written), reported when the BMP client lags behind the server (as in
// TestFRRGracefulRestartEORBeforeRoutes, which holds the stream back).
// Like the package-variable race above, it is why ./bgp/ runs without
// -race. The speaker's own fence for the watch's reads of paths is gone
// with the watch's paths; its read-backs still order their reads of the
// listed paths with a GetBgp.
package bgp
