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
// to an interface with an XDP program. Two things it cannot see, and an
// AF_XDP port cannot fix up (the afpacket package can, from socket
// metadata): a tag that a NIC with VLAN receive offload strips in hardware
// or that a local sender on a veth peer left in skb metadata (a VLAN
// device over the peer, with tx-vlan-offload on), and the partial TCP/UDP
// checksum of a local sender on a veth peer with TX checksum offload on.
// Frames from a wire, or from a peer with those offloads off, are wire
// frames. See docs/architecture.md.
//
// Only Linux has AF_XDP; elsewhere the package is empty.
package xsk
