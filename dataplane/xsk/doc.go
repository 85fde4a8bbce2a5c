// Package xsk binds a p4mesh-switch P4 port to a Linux network interface
// through an AF_XDP socket (--port-mode xdp): an XDP program on the
// interface redirects every frame of its receive queue into memory shared
// with the process (the UMEM), and frames are sent from the same memory, a
// batch per system call or, with a zero-copy driver, none.
//
// The XDP program runs before the kernel's receive path, so what it hands
// over is the frame as the driver received it: an 802.1Q tag sent in the
// frame is still in it (the kernel strips tags later, in the receive path),
// GRO has not merged anything, and a veth peer does not send super-frames
// to an interface with an XDP program. A tag that the driver strips into
// metadata (a NIC's VLAN receive offload; on veth, a peer's tx-vlan-offload)
// the program puts back, as the afpacket ports do from PACKET_AUXDATA,
// where the kernel lets it read the tag (bpf_xdp_metadata_rx_vlan_tag:
// Linux 6.8, native mode, a driver that implements it; Port.Mode says).
// What it cannot see is the partial TCP/UDP checksum a local sender on a
// veth peer leaves with TX checksum offload on, which the afpacket ports
// complete: so on a veth the port is refused while the peer offloads
// checksums (peer_linux.go), and p4mesh-switch falls back to mmap.
//
// Only Linux has AF_XDP; elsewhere the package is empty.
package xsk
