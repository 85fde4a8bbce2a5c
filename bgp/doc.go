// Package bgp is the controller's BGP speaker: an embedded GoBGP server
// that holds one session per VPN or interconnect attachment with the
// on-prem router behind it, hands the routes it learns to the route
// manager, and advertises each VPC's prefixes with the attachment's
// VPC-side address as next hop.
//
// # One VRF per VPC
//
// Each VPC is a GoBGP VRF whose route distinguisher and route target are
// derived from the VPC's VNI (0:VNI; they never leave the speaker, since
// neighbors exchange plain IPv4 unicast). A neighbor belongs to its VPC's
// VRF, so what it announces is stored under that VPC's RD and can only be
// imported by a VRF that imports that VPC's target, which no other VPC
// does. VPCs may therefore use overlapping prefixes, and two VPCs may
// advertise the same prefix with different next hops: tagging neighbors in
// one global table could not keep those apart, because best-path selection
// would pick one of the two.
//
// GoBGP applies import and export policies per neighbor only to
// route-server clients; for ordinary neighbors they are global. The
// speaker therefore keeps two global policies with statements per neighbor
// address: import accepts only a neighbor's filtered prefixes (when it has
// filters), export accepts only routes the speaker originated (Advertise),
// sets the next hop to that neighbor's NextHop, and rejects everything
// else, so a route learned from one on-prem router never goes to another.
//
// # Learned routes
//
// The speaker watches GoBGP's post-policy adj-RIB-in: every path a
// neighbor announced and its import filter accepted, and a withdrawal
// whenever GoBGP's RIB drops one (UPDATE withdrawal, NOTIFICATION, hold
// timer expiry, TCP loss, neighbor removed, restart time over). The watch
// callback only decodes and queues; one goroutine hands everything queued
// since its last call to Config.Deliver, so a burst of a million prefixes
// reaches the consumer in a few large batches and GoBGP never waits.
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
// time, all are withdrawn. (GoBGP marks the kept routes stale, but the
// mark does not survive its conversion into the VRF, so Route has none.) Without graceful restart
// on both sides, a dropped session withdraws everything at once.
//
// # Wiring
//
// New, then Start, then SetNeighbors with the whole set of attachment
// neighbors whenever configuration changes, and Advertise per VPC whenever
// its subnets or exported peer subnets change (before its neighbors exist
// is fine). Deliver gets the learned-route deltas; Learned and Neighbors
// answer state reads. The speaker dials every neighbor (at Neighbor.Port,
// default 179) and, unless Config.ListenPort is negative, also accepts
// sessions on ListenAddress:ListenPort (179 by default, which needs root or
// CAP_NET_BIND_SERVICE). On the router's side, eBGP needs what FRR calls
// "no bgp ebgp-requires-policy" (or route-maps in and out), the same TCP
// MD5 password if one is set, and "bgp graceful-restart" for helper mode
// to matter.
//
// # Limits
//
// IPv4 only. GoBGP sends one BGP identifier for all sessions, so a per-VPC
// router id needs a speaker per VPC. Neighbors are keyed by address, so two
// VPCs cannot peer with routers at the same address through one speaker.
package bgp
