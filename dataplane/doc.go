// Package dataplane is p4mesh-switch, the software P4 target: a P4Runtime
// server that is generic over the P4Info it is given, and the Store of
// entities that the Go implementation of vpc_peering.p4 looks packets up
// in.
//
// It is meant to be a faithful target, not a mock: it speaks the same wire
// protocol and returns the same status codes as BMv2's simple_switch_grpc
// (PI), following the P4Runtime 1.5 specification where PI is silent, so
// that everything tested against it holds on BMv2 and hardware too.
//
// The pieces:
//
//   - Store (store.go) holds tables, default entries, action profile
//     members and groups and direct counters, with allocation-free lookups
//     for the packet pipeline; a deleted entry's memory is reused by a
//     later insert once no Read can still see it, so a steady flow of
//     writes allocates nothing.
//   - write.go checks and applies updates: canonical bytestrings, match
//     rules, priorities, references between entries, members and groups.
//   - Server (server.go, stream.go, read.go, digest.go) is the
//     p4.v1.P4Runtime service: arbitration per (device, role), pipeline
//     config, Write with per-update errors, Read with wildcards, packet I/O
//     and digests.
//   - Compatible (compat.go) decides whether a pushed P4Info describes the
//     pipeline the switch implements.
package dataplane
