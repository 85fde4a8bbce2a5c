// Package ohc is the on-host controller (OHC): the agent next to each host's
// programmable switch. It learns from its own controller which endpoints the
// host runs and which VPCs those are peered with, pulls from each peer VPC's
// controller only the connectivity the peering exports (destinations,
// forwarding, load balancers, routes), and programs exactly that into the
// local switch over P4Runtime. Nobody copies a whole peer VPC: a host's
// entries grow with what its own VMs can reach, not with the peering group.
// A peer served by a gateway pool is reached through the pool for what has
// no direct entry; a host with a gateway duty holds the whole of the VPC it
// serves and forwards into it (see Compile and architecture.md).
//
// The package is built in three layers, so each can be tested alone:
//
//   - View is the assembled state in plain Go types (netip addresses), free
//     of the wire format the subscribers receive it in.
//   - Compile turns a View into the desired P4Runtime entities of
//     vpc_peering.p4, purely and deterministically. A Compiler does the
//     same and keeps the result: told what changed (ViewChange), it
//     recompiles only that when it is remote endpoints, and says which
//     entities changed (Delta).
//   - Programmer is handed Views (latest wins) and reconciles the switch
//     towards them with p4rt.Reconciler: it reads back, writes only the
//     difference, and so never flushes the switch on an OHC restart, while a
//     switch restart gets its pipeline and every entry back. A view may be
//     partial, lacking a controller the OHC has not heard from since it
//     started: the entries no view explains are then kept, not deleted.
package ohc
