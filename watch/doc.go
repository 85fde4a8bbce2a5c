// Package watch is the one watch discipline every p4mesh stream follows:
// host programming from a controller to its OHCs, connectivity
// (destinations, forwarding, load balancers, routes) from the controller
// that owns a VPC to the OHCs and controllers of its peers, and peer sides
// between controllers.
//
// A stream is snapshot-then-deltas (see api/proto/p4mesh/v1/p4mesh.proto):
// the server sends every item as a PUT, a SYNCED marker, then PUT / DELETE
// deltas, each carrying the revision of the change. A client that
// reconnects sends the last revision it applied and gets exactly what came
// after; when that is no longer possible it gets RESET, a fresh snapshot
// and SYNCED.
//
// Revisions are the owner's store's (Table.Commit): one store transaction
// is one revision however many items it changes, every table of a
// controller moves to each store revision whether or not it changed (the
// ones a change leaves alone through a Clock they share, rather than an
// empty commit each), and replicas and restarts of a controller agree on
// them. So a client resumes
// by revision wherever it reconnects, and is sent PROGRESS when the
// revision moves with nothing for it, so that what it resumes from keeps
// up with where a new leader's tables start.
//
// The server side is Table: a keyed set of protobuf messages with a
// revision, a change log of whole revisions to resume from and to feed
// every live stream (bounded by the table's items: a resume that needs
// more changes than that is sent a snapshot), and one snapshot per revision shared by the streams that start
// there, so a stream costs the table a position, not a copy; a client more
// than a bounded number of changes behind is resynchronised instead of ever
// slowing the producer. Table.Serve and Table.ServeFiltered are what a gRPC
// handler calls; the handler only translates the request and maps errors to
// codes. Table.ServeGated passes each burst of sends through a Gate, which
// bounds how many streams are sending at once and so what clients that
// stopped reading can make a gRPC server queue.
//
// The client side is Follow: a ctx-bound reconnect loop with backoff that
// resumes from the last applied revision, and View, an in-memory copy of one
// stream for OHC and controller code to compile from.
package watch
