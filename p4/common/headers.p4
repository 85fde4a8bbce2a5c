/*
 * common/headers.p4 -- what every architecture's vpc_peering.p4 shares: the
 * constants, the protocol headers, the digest, and the header and metadata
 * structs. Included by p4/v1model, p4/tna and p4/pna after each declares
 *
 *   vpc_port_t     its port number type, as the control plane writes it
 *   packet_in_t    its @controller_header("packet_in") header
 *   packet_out_t   its @controller_header("packet_out") header
 *
 * which differ: 9 bits on v1model, Tofino's 9-bit dev port translated to
 * Stratum's 32-bit port ids on TNA, 32 bits on PNA.
 */

#ifndef P4MESH_COMMON_HEADERS_P4
#define P4MESH_COMMON_HEADERS_P4

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<16> ETHERTYPE_ARP  = 0x0806;
const bit<8>  IPPROTO_TCP    = 6;
const bit<8>  IPPROTO_UDP    = 17;
const bit<16> VXLAN_UDP_PORT = 4789;
const bit<16> ARP_HTYPE_ETHERNET = 1;
const bit<16> ARP_OPER_REQUEST   = 1;
const bit<16> ARP_OPER_REPLY     = 2;

// Outer IPv4 + UDP + VXLAN + inner Ethernet, added to the inner IPv4 total
// length to give the outer IPv4 total length (20 + 8 + 8 + 14).
const bit<16> VXLAN_OUTER_IPV4_OVERHEAD = 50;
// UDP + VXLAN + inner Ethernet, for the outer UDP length (8 + 8 + 14).
const bit<16> VXLAN_OUTER_UDP_OVERHEAD  = 30;
// RFC 7348: the outer UDP source port carries a hash of the inner flow so the
// underlay can spread tunnels over ECMP paths; we use the dynamic port range.
const bit<16> VXLAN_SRC_PORT_BASE  = 49152;
const bit<32> VXLAN_SRC_PORT_RANGE = 16384;

// meta.fwd: what the routing stage decided.
const bit<2> FWD_NONE  = 0;  // nothing forwarded it: drop
const bit<2> FWD_LOCAL = 1;  // to a VM on this host (the egress port is set)
const bit<2> FWD_ENCAP = 2;  // VXLAN to another host (meta.tunnel_* are set)

/*************************************************************************
 * Headers
 *************************************************************************/

header ethernet_t {
    bit<48> dst_addr;
    bit<48> src_addr;
    bit<16> ether_type;
}

// ARP for IPv4 over Ethernet (the only kind we answer).
header arp_t {
    bit<16> htype;
    bit<16> ptype;
    bit<8>  hlen;
    bit<8>  plen;
    bit<16> oper;
    bit<48> sha;
    bit<32> spa;
    bit<48> tha;
    bit<32> tpa;
}

header ipv4_t {
    bit<4>  version;
    bit<4>  ihl;
    bit<8>  diffserv;
    bit<16> total_len;
    bit<16> identification;
    bit<3>  flags;
    bit<13> frag_offset;
    bit<8>  ttl;
    bit<8>  protocol;
    bit<16> hdr_checksum;
    bit<32> src_addr;
    bit<32> dst_addr;
}

header udp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<16> length;
    bit<16> checksum;
}

// Only the ports of TCP: they are all the pipeline reads, and what is not
// extracted stays payload, byte for byte.
header tcp_ports_t {
    bit<16> src_port;
    bit<16> dst_port;
}

header vxlan_t {
    bit<8>  flags;      // 0x08: the VNI is valid
    bit<24> reserved;
    bit<24> vni;
    bit<8>  reserved2;
}

// The digest sent when a packet takes the gateway path: which destination, in
// which VPC, is in use on this host (on-demand programming).
struct gateway_digest_t {
    bit<24> vni;
    bit<32> dst_ip;
}

// Outer headers are the underlay (or, before a VM frame is moved inward, the
// VM's own frame); inner_* always hold the tenant packet while it is routed.
struct headers_t {
    packet_out_t packet_out;
    packet_in_t  packet_in;
    ethernet_t   ethernet;
    arp_t        arp;
    ipv4_t       ipv4;
    udp_t        udp;
    tcp_ports_t  tcp;
    vxlan_t      vxlan;
    ethernet_t   inner_ethernet;
    ipv4_t       inner_ipv4;
    udp_t        inner_udp;
    tcp_ports_t  inner_tcp;
}

// v1model zeroes user metadata for every packet; TNA and PNA do not, so
// their parsers start with P4MESH_INIT_METADATA. The flags rely on it.
struct metadata_t {
    vpc_port_t ingress_port; // TNA, PNA: the ingress port as the tables key it
    bit<24> vni;          // VPC the tenant packet is looked up in
    bit<48> vm_mac;       // MAC of the VM on the ingress port
    bit<1>  from_vm;      // 1: arrived on a VM port (set_vnet, set_attachment)
    bit<1>  from_attachment; // 1: the port is an attachment's (set_attachment)
    bit<1>  do_route;     // 1: admitted, run the routing stage
    bit<16> l4_src_port;  // inner TCP/UDP ports, 0 when there are none
    bit<16> l4_dst_port;
    bit<2>  fwd;          // FWD_*
    bit<1>  to_lb;
    bit<16> lb_id;
    bit<1>  to_gateway;
    bit<16> pool_id;
    bit<1>  to_route_group;
    bit<16> route_group;
    bit<24> tunnel_vni;   // encap_to_host: VNI of the destination VPC
    bit<32> tunnel_dst;   // encap_to_host: underlay IP of the destination host
    bit<32> host_ip;      // local_host
    bit<48> host_mac;
}

// The flags of metadata_t that are read before the pipeline writes them, for
// the architectures that do not zero user metadata (a parser's start state).
#define P4MESH_INIT_METADATA(m)   \
    m.vni = 0;                    \
    m.vm_mac = 0;                 \
    m.from_vm = 0;                \
    m.from_attachment = 0;        \
    m.do_route = 0;               \
    m.l4_src_port = 0;            \
    m.l4_dst_port = 0;            \
    m.fwd = FWD_NONE;             \
    m.to_lb = 0;                  \
    m.lb_id = 0;                  \
    m.to_gateway = 0;             \
    m.pool_id = 0;                \
    m.to_route_group = 0;         \
    m.route_group = 0;            \
    m.tunnel_vni = 0;             \
    m.tunnel_dst = 0;             \
    m.host_ip = 0;                \
    m.host_mac = 0

#endif  // P4MESH_COMMON_HEADERS_P4
