// Package p4rt is p4mesh's P4Runtime client library. Everything in p4mesh
// that talks to a programmable switch goes through it: the on-host
// controller programs its host's switch with it, the software switch
// shares its codec so client and target agree on every byte, and the test
// runners drive any P4Runtime target with it.
//
// The layers, from the bottom:
//
//   - Schema indexes a P4Info, so callers name tables, fields, actions and
//     profiles and never handle raw IDs.
//   - The codec turns typed values into canonical bytestrings (P4Runtime
//     spec §8.4) and back, refusing what does not fit.
//   - Builders make TableEntry, ActionProfileMember, ActionProfileGroup,
//     DirectCounterEntry and PacketOut messages by name.
//   - Client holds one switch connection: arbitration, pipeline push,
//     batched writes with per-update errors, reads, packet I/O, digests and
//     reconnection.
//   - Reconciler makes the tables a writer owns equal to a desired set with
//     the fewest writes, which is why a restart never flushes a switch.
//   - Target packs the per-target device config for a pipeline push: BMv2's
//     JSON, Stratum's BfPipelineConfig for Tofino, IPDK's TDI pipeline
//     config for P4-DPDK (docs/targets.md).
//   - Capabilities says what the switch running a pipeline takes (port
//     width and CPU port, table sizes as budgets, one-shot selectors or
//     not), from the P4Info and the target's TargetProfile, so that a
//     writer never asks which target it is writing to.
package p4rt
