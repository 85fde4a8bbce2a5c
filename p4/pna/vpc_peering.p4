/*
 * vpc_peering.p4 for PNA -- the p4mesh host pipeline on P4-DPDK (P4_16,
 * Portable NIC Architecture, p4c-dpdk --arch pna; run under IPDK's infrap4d).
 *
 * The same pipeline as p4/v1model/vpc_peering.p4, whose header comment walks
 * a packet through it, with the same control-plane contract: the tables,
 * actions, parameters and action profiles p4mesh writes have the names,
 * match kinds, sizes and @ids of the v1model program; the OHC resolves
 * everything by name through the P4Info. What PNA and p4c-dpdk force, and
 * how the P4Info says it:
 *
 *   - Ports: 32 bits. PNA's PortId_t is a translated type
 *     ("p4.org/pna/v1/PortId_t"), which infrap4d does not translate; the
 *     program keys and takes parameters as plain bit<32> (vpc_port_t) and
 *     casts, so the P4Info shows 32-bit ports without a translation.
 *   - CPU port: PNA has none. CPU_PORT (-DCPU_PORT=N, default 255) is the
 *     port infrap4d's packet I/O (pktio-args) gives the controller;
 *     @p4mesh_cpu_port says it to the control plane.
 *   - Names: p4c-dpdk prefixes tables and action profiles with the pipe
 *     ("pipe.VpcIngress.port_vnet"); aliases and ids are v1model's. Each
 *     ActionSelector is the P4Info's action profile plus a p4c-dpdk
 *     "ActionSelector" extern (<name>_sel, ids of its own).
 *   - Selectors: p4c-dpdk reads ActionSelector's size as groups and its
 *     output width as log2 of the members a group may have.
 *   - Tables: an LPM key may have only exact fields beside it, one LPM field
 *     per table (dpdkProgram.cpp checkTableValid); every table here keeps to
 *     it.
 *   - No direct counters: p4c-dpdk refuses them on LPM (wildcard) tables
 *     such as vnet_route, and PNA's DirectCounter counts only in actions
 *     calling its count(), which the actions vnet_destination shares with
 *     other tables cannot (see p4/tna). The P4Info has no direct_counters.
 *   - No digest: p4c-dpdk generates no code for Digest.pack, so the gateway
 *     path sends none and the P4Info has no digests. Nothing in p4mesh
 *     depends on it (the OHC programs from the controller's view).
 *   - The checksums are recomputed at the end of the main control (PNA's
 *     deparser takes the headers read-only); packet_in is added in the main
 *     control (send_to_cpu).
 *
 * Compile: p4c-dpdk --arch pna --p4runtime-files vpc_peering.p4info.txtpb ...
 * (docs/targets.md has the whole command).
 */

#include <core.p4>
#include <pna.p4>

#ifndef CPU_PORT
#define CPU_PORT 255
#endif

// The port number as the controller writes it (common/headers.p4).
typedef bit<32> vpc_port_t;

/*************************************************************************
 * Headers
 *************************************************************************/

// Sent to the controller with every packet to the CPU port.
@controller_header("packet_in") @p4mesh_cpu_port(CPU_PORT)
header packet_in_t {
    vpc_port_t ingress_port;
}

// Prepended by the controller to every packet it sends; the packet goes out
// egress_port as it is.
@controller_header("packet_out")
header packet_out_t {
    vpc_port_t egress_port;
}

// Constants, protocol headers, headers_t and metadata_t: shared with
// p4/v1model and p4/tna.
#include "../common/headers.p4"

/*************************************************************************
 * Parser
 *************************************************************************/

parser VpcParser(packet_in packet,
                 out headers_t hdr,
                 inout metadata_t meta,
                 in pna_main_parser_input_metadata_t istd) {

    state start {
        P4MESH_INIT_METADATA(meta);
        meta.ingress_port = (vpc_port_t) istd.input_port;
        transition select(meta.ingress_port) {
            CPU_PORT: parse_packet_out;
            default:  parse_ethernet;
        }
    }

    // The controller built the frame; it is not ours to parse or rewrite.
    state parse_packet_out {
        packet.extract(hdr.packet_out);
        transition accept;
    }

    // parse_ethernet and everything after it (shared with p4/v1model and p4/tna).
#include "../common/parser.p4"
}

/*************************************************************************
 * Pre-control: nothing (no IPsec, no pre-classification).
 *************************************************************************/

control VpcPreControl(in headers_t hdr,
                      inout metadata_t meta,
                      in pna_pre_input_metadata_t istd,
                      inout pna_pre_output_metadata_t ostd) {
    apply { }
}

/*************************************************************************
 * Main control
 *************************************************************************/

control VpcIngress(inout headers_t hdr,
                   inout metadata_t meta,
                   in pna_main_input_metadata_t istd,
                   inout pna_main_output_metadata_t ostd) {

    // Computes the outer UDP source port from the inner flow (RFC 7348).
    Hash<bit<16>>(PNA_HashAlgorithm_t.TARGET_DEFAULT) vxlan_src_port_hash;
    // The outer and inner IPv4 header checksums, recomputed before the
    // packet leaves (PNA's deparser cannot write headers).
    InternetChecksum() ipv4_checksum;
    InternetChecksum() inner_ipv4_checksum;

    // ---------------------------------------------------------------- actions

    @id(0x01000001)
    action drop() {
        drop_packet();
    }

    // port_vnet: the ingress port is a VM's port.
    @id(0x01000002)
    action set_vnet(bit<24> vni, bit<48> vm_mac) {
        meta.vni = vni;
        meta.vm_mac = vm_mac;
        meta.from_vm = 1;
    }

    // vm_source_guard, vnet_source_check: the source is allowed.
    @id(0x01000003)
    action permit() { }

    // arp_proxy: answer "who has tpa" with mac. The reply goes to the MAC of
    // the VM that owns the port, whatever the request claimed as sender.
    @id(0x01000004)
    action arp_reply(bit<48> mac) {
        bit<32> target_ip = hdr.arp.tpa;
        hdr.ethernet.dst_addr = meta.vm_mac;
        hdr.ethernet.src_addr = mac;
        hdr.arp.oper = ARP_OPER_REPLY;
        hdr.arp.tha = meta.vm_mac;
        hdr.arp.tpa = hdr.arp.spa;
        hdr.arp.sha = mac;
        hdr.arp.spa = target_ip;
        send_to_port(istd.input_port);
    }

    // arp_proxy: hand the request to the on-host controller (packet_in). Not
    // the default: the controller chooses, per target or as the default.
    @id(0x01000005)
    action send_to_cpu() {
        send_to_port((PortId_t) ((bit<32>) CPU_PORT));
        hdr.packet_in.setValid();
        hdr.packet_in.ingress_port = meta.ingress_port;
    }

    // tunnel_term: strip the underlay; the tenant packet is already in inner_*.
    @id(0x01000006)
    action decap() {
        meta.vni = hdr.vxlan.vni;
        hdr.ethernet.setInvalid();
        hdr.ipv4.setInvalid();
        hdr.udp.setInvalid();
        hdr.vxlan.setInvalid();
    }

    // lb_frontend default: not a VIP, go on to vnet_destination.
    @id(0x01000007)
    action lb_miss() { }

    @id(0x01000008)
    action to_lb(bit<16> lb_id) {
        meta.to_lb = 1;
        meta.lb_id = lb_id;
    }

    // vnet_destination default: no exact entry, go on to vnet_route.
    @id(0x01000009)
    action destination_miss() { }

    @id(0x0100000A)
    action to_local_vm(vpc_port_t port, bit<48> dmac) {
        meta.fwd = FWD_LOCAL;
        send_to_port((PortId_t) port);
        hdr.inner_ethernet.dst_addr = dmac;
    }

    // dst_vni is the destination VPC's VNI (the one on the wire), host_ip the
    // underlay IP of the host it is on, dmac the destination endpoint's MAC.
    @id(0x0100000B)
    action encap_to_host(bit<24> dst_vni, bit<32> host_ip, bit<48> dmac) {
        meta.fwd = FWD_ENCAP;
        meta.tunnel_vni = dst_vni;
        meta.tunnel_dst = host_ip;
        hdr.inner_ethernet.dst_addr = dmac;
    }

    @id(0x0100000C)
    action to_gateway_pool(bit<16> pool_id) {
        meta.to_gateway = 1;
        meta.pool_id = pool_id;
    }

    // underlay_nexthop: uplink port and MACs towards the outer destination.
    @id(0x0100000D)
    action set_underlay(vpc_port_t port, bit<48> smac, bit<48> dmac) {
        send_to_port((PortId_t) port);
        hdr.ethernet.src_addr = smac;
        hdr.ethernet.dst_addr = dmac;
    }

    @id(0x0100000E)
    action set_local_host(bit<32> host_ip, bit<48> host_mac) {
        meta.host_ip = host_ip;
        meta.host_mac = host_mac;
    }

    // vnet_route: equal-cost next hops; route_ecmp picks one by the flow.
    @id(0x0100000F)
    action to_route_group(bit<16> group_id) {
        meta.to_route_group = 1;
        meta.route_group = group_id;
    }

    // port_vnet: the ingress port is a VPN or interconnect attachment's. What
    // arrives is the on-prem router's traffic, from any on-prem source, so
    // attachment_source_check admits it by prefix instead of
    // vm_source_guard; ARP answers go to the router's MAC.
    @id(0x01000010)
    action set_attachment(bit<24> vni, bit<48> router_mac) {
        meta.vni = vni;
        meta.vm_mac = router_mac;
        meta.from_vm = 1;
        meta.from_attachment = 1;
    }

    // ----------------------------------------------------------------- tables

    @id(0x02000001)
    table port_vnet {
        key = {
            meta.ingress_port:              exact @name("ingress_port");
        }
        actions = {
            set_vnet;
            set_attachment;
            drop;
        }
        const default_action = drop();
        size = 1024;
    }

    @id(0x02000002)
    table vm_source_guard {
        key = {
            meta.vni:                    exact @name("vni");
            meta.ingress_port:              exact @name("ingress_port");
            hdr.inner_ipv4.src_addr:     exact @name("src_ip");
            hdr.inner_ethernet.src_addr: exact @name("src_mac");
        }
        actions = {
            permit;
            @defaultonly drop;
        }
        const default_action = drop();
        size = 4096;
    }

    // Not const: the on-host controller may make send_to_cpu the default.
    @id(0x02000003)
    table arp_proxy {
        key = {
            meta.vni:    exact @name("vni");
            hdr.arp.tpa: exact @name("target_ip");
        }
        actions = {
            arp_reply;
            send_to_cpu;
            drop;
        }
        default_action = drop();
        size = 16384;
    }

    @id(0x02000004)
    table tunnel_term {
        key = {
            hdr.ipv4.dst_addr: exact @name("dst_ip");
            hdr.vxlan.vni:     exact @name("vni");
        }
        actions = {
            decap;
            @defaultonly drop;
        }
        const default_action = drop();
        size = 1024;
    }

    // Admitted sources per VPC: its subnets, what each peer exports, and the
    // prefixes it routes to (on-prem networks behind its attachments, whose
    // replies come back tunnelled from the attachment's host). The routes
    // make it as large as vnet_route.
    @id(0x02000005)
    table vnet_source_check {
        key = {
            meta.vni:                exact @name("vni");
            hdr.inner_ipv4.src_addr: lpm @name("src_ip");
        }
        actions = {
            permit;
            @defaultonly drop;
        }
        const default_action = drop();
        size = 131072;
    }

    @id(0x02000006)
    table lb_frontend {
        key = {
            meta.vni:                exact @name("vni");
            hdr.inner_ipv4.dst_addr: exact @name("vip");
            hdr.inner_ipv4.protocol: exact @name("protocol");
            meta.l4_dst_port:        exact @name("l4_port");
        }
        actions = {
            to_lb;
            @defaultonly lb_miss;
        }
        const default_action = lb_miss();
        size = 4096;
    }

    @id(0x02000007)
    table vnet_destination {
        key = {
            meta.vni:                exact @name("vni");
            hdr.inner_ipv4.dst_addr: exact @name("dst_ip");
        }
        actions = {
            to_local_vm;
            encap_to_host;
            to_lb;
            @defaultonly destination_miss;
        }
        const default_action = destination_miss();
        size = 65536;
    }

    // A route's next hop is an endpoint on another host (encap_to_host),
    // an endpoint on this one (to_local_vm: a VPN or interconnect
    // attachment's port with dmac = the on-prem router's MAC, or a VM acting
    // as a router with its own MAC; the source MAC stays the sender's, as
    // for any local delivery), the gateway pool, a group of equal-cost next
    // hops (to_route_group, resolved in route_ecmp), or nothing (drop).
    //
    // Routes are learnt from on-prem BGP, so the table must hold full
    // feeds: 131072 (2^17) entries, the first power of two above the 100k
    // routes p4mesh is sized for. BMv2 and p4mesh-switch only use the
    // number to refuse inserts beyond it. A hardware target pays for it in
    // its LPM budget, and the 56-bit (VNI, dst) key costs more than a plain
    // IPv4 FIB entry: switch ASICs with algorithmic LPM (Tofino's ALPM) hold
    // routes in the order of 10^5 per pipe, shared with every other LPM
    // table of the program (here vnet_source_check, attachment_source_check
    // and underlay_nexthop), and P4-DPDK bounds it by the memory given to
    // the table. A hardware profile would set this per target, and the
    // controller should refuse routes beyond it rather than let inserts
    // fail.
    @id(0x02000008)
    table vnet_route {
        key = {
            meta.vni:                exact @name("vni");
            hdr.inner_ipv4.dst_addr: lpm @name("dst_ip");
        }
        actions = {
            encap_to_host;
            to_local_vm;
            to_route_group;
            to_gateway_pool;
            drop;
        }
        const default_action = drop();
        size = 131072;
    }

    // The selectors hash the inner 5-tuple (src IP, dst IP, protocol, src
    // port, dst port) with the target's hash (PNA_HashAlgorithm_t has only
    // TARGET_DEFAULT); which member a hash picks is P4-DPDK's. p4c-dpdk reads
    // the size argument as the number of groups and the output width w as
    // 2^w members per group at most (SplitActionSelectorTable); 8 bits keep
    // the group table small (groups x 256 x 4 bytes).
    @id(0x11000001)
    ActionSelector(PNA_HashAlgorithm_t.TARGET_DEFAULT, 32w8192, 32w8) gateway_selector;

    // A selector table can only point at members and groups: on BMv2 it can
    // have no default action (p4c drops it with a warning). Without one, p4c
    // would add NoAction, so drop is declared default-only; a miss forwards
    // nothing either way (meta.fwd stays FWD_NONE) and is dropped below.
    @id(0x02000009)
    table gateway_pool {
        key = {
            meta.pool_id:            exact @name("pool_id");
            hdr.inner_ipv4.src_addr: selector @name("src_ip");
            hdr.inner_ipv4.dst_addr: selector @name("dst_ip");
            hdr.inner_ipv4.protocol: selector @name("protocol");
            meta.l4_src_port:        selector @name("src_port");
            meta.l4_dst_port:        selector @name("dst_port");
        }
        actions = {
            encap_to_host;
            @defaultonly drop;
        }
        const default_action = drop();
        pna_implementation = gateway_selector;
        // A host holds one group per (pool, peer VNI) it sends through,
        // since a member's encap_to_host carries the peer's VNI: 4096 pool-
        // served peer VPCs, two gateways each in the selector's 8192.
        size = 4096;
    }

    @id(0x11000002)
    ActionSelector(PNA_HashAlgorithm_t.TARGET_DEFAULT, 32w4096, 32w8) lb_selector;

    // Pass-through load balancing: the VIP stays the inner destination; the
    // backend is reached by its host (encap_to_host) or locally (to_local_vm).
    @id(0x0200000A)
    table lb_backend {
        key = {
            meta.lb_id:              exact @name("lb_id");
            hdr.inner_ipv4.src_addr: selector @name("src_ip");
            hdr.inner_ipv4.dst_addr: selector @name("dst_ip");
            hdr.inner_ipv4.protocol: selector @name("protocol");
            meta.l4_src_port:        selector @name("src_port");
            meta.l4_dst_port:        selector @name("dst_port");
        }
        actions = {
            encap_to_host;
            to_local_vm;
            @defaultonly drop;
        }
        const default_action = drop();
        pna_implementation = lb_selector;
        size = 1024;
    }

    @id(0x0200000B)
    table underlay_nexthop {
        key = {
            hdr.ipv4.dst_addr: lpm @name("dst_ip");
        }
        actions = {
            set_underlay;
            @defaultonly drop;
        }
        const default_action = drop();
        size = 1024;
    }

    // Keyless: the control plane sets this host's identity by modifying the
    // default action (hence not const).
    @id(0x0200000C)
    table local_host {
        actions = {
            set_local_host;
        }
        default_action = set_local_host(32w0, 48w0);
        size = 1;
    }

    // ECMP for routes, as gateway_pool and lb_backend spread flows: the
    // same 5-tuple, crc16 and member order. It is a table of its own,
    // keyed by the group id vnet_route sets, rather than an implementation
    // of vnet_route itself: a selector table takes only member and group
    // references and can have no default action on BMv2, so every one of
    // the (mostly single next hop) 100k routes would need a member of its
    // own, vnet_route would lose its drop default, and its direct counter
    // would sit on an indirect table. Here a route with one next hop stays
    // a direct action, the routes that share a set of next hops share one
    // group (one route_ecmp entry), and the OHC programs it with members
    // and groups as it does lb_backend. Groups are sets of next hops, not
    // routes, hence the smaller sizes.
    @id(0x11000003)
    ActionSelector(PNA_HashAlgorithm_t.TARGET_DEFAULT, 32w4096, 32w8) route_selector;

    @id(0x0200000D)
    table route_ecmp {
        key = {
            meta.route_group:        exact @name("group_id");
            hdr.inner_ipv4.src_addr: selector @name("src_ip");
            hdr.inner_ipv4.dst_addr: selector @name("dst_ip");
            hdr.inner_ipv4.protocol: selector @name("protocol");
            meta.l4_src_port:        selector @name("src_port");
            meta.l4_dst_port:        selector @name("dst_port");
        }
        actions = {
            encap_to_host;
            to_local_vm;
            @defaultonly drop;
        }
        const default_action = drop();
        pna_implementation = route_selector;
        size = 1024;
    }

    // The sources an attachment's port may send from: the prefixes routed
    // out of it (what the on-prem router announced), a uRPF check per port.
    // Sized like vnet_route, whose routes through attachments these mirror.
    @id(0x0200000E)
    table attachment_source_check {
        key = {
            meta.ingress_port:              exact @name("ingress_port");
            hdr.inner_ipv4.src_addr:        lpm @name("src_ip");
        }
        actions = {
            permit;
            @defaultonly drop;
        }
        const default_action = drop();
        size = 131072;
    }

    // ------------------------------------------------------------------ apply

    apply {
        if (hdr.packet_out.isValid()) {
            send_to_port((PortId_t) hdr.packet_out.egress_port);
            hdr.packet_out.setInvalid();
        } else if (istd.parser_error != error.NoError) {
            drop_packet();
        } else {
            local_host.apply();

            if (port_vnet.apply().hit) {
                // An explicit drop entry (a disabled VM port) leaves from_vm 0.
                if (meta.from_vm == 1) {
                    if (hdr.vxlan.isValid()) {
                        // A VM's own UDP/4789 traffic: the parser cannot tell
                        // it from a tunnel, and it is not supported.
                        drop_packet();
                    } else if (hdr.arp.isValid()) {
                        if (hdr.arp.oper == ARP_OPER_REQUEST &&
                            hdr.arp.htype == ARP_HTYPE_ETHERNET &&
                            hdr.arp.ptype == ETHERTYPE_IPV4 &&
                            hdr.arp.hlen == 6 && hdr.arp.plen == 4) {
                            arp_proxy.apply();
                        } else {
                            drop_packet();
                        }
                    } else if (hdr.ipv4.isValid()) {
                        // Move the VM's frame into inner_*; the outer slots
                        // are rebuilt if it is tunnelled.
                        hdr.inner_ethernet = hdr.ethernet;
                        hdr.inner_ipv4 = hdr.ipv4;
                        hdr.ethernet.setInvalid();
                        hdr.ipv4.setInvalid();
                        if (hdr.udp.isValid()) {
                            hdr.inner_udp = hdr.udp;
                            hdr.udp.setInvalid();
                        }
                        if (hdr.tcp.isValid()) {
                            hdr.inner_tcp = hdr.tcp;
                            hdr.tcp.setInvalid();
                        }
                        if (hdr.inner_ipv4.version != 4 || hdr.inner_ipv4.ihl != 5) {
                            drop_packet();
                        } else if (meta.from_attachment == 1) {
                            if (attachment_source_check.apply().hit) {
                                meta.do_route = 1;
                            }
                        } else if (vm_source_guard.apply().hit) {
                            meta.do_route = 1;
                        }
                    } else {
                        drop_packet();
                    }
                }
            } else if (hdr.vxlan.isValid()) {
                // Not a VM port: VXLAN to this host, carrying IPv4.
                if (hdr.inner_ipv4.isValid() &&
                    hdr.inner_ipv4.version == 4 && hdr.inner_ipv4.ihl == 5) {
                    if (tunnel_term.apply().hit) {
                        if (vnet_source_check.apply().hit) {
                            meta.do_route = 1;
                        }
                    }
                } else {
                    drop_packet();
                }
            }
            // Anything else on a non-VM port was dropped by port_vnet's default.

            if (meta.do_route == 1) {
                if (hdr.inner_tcp.isValid()) {
                    meta.l4_src_port = hdr.inner_tcp.src_port;
                    meta.l4_dst_port = hdr.inner_tcp.dst_port;
                } else if (hdr.inner_udp.isValid()) {
                    meta.l4_src_port = hdr.inner_udp.src_port;
                    meta.l4_dst_port = hdr.inner_udp.dst_port;
                } else {
                    meta.l4_src_port = 0;
                    meta.l4_dst_port = 0;
                }

                if (!lb_frontend.apply().hit) {
                    switch (vnet_destination.apply().action_run) {
                        destination_miss: {
                            vnet_route.apply();
                        }
                    }
                }
                if (meta.to_lb == 1) {
                    lb_backend.apply();
                }
                if (meta.to_gateway == 1) {
                    gateway_pool.apply();
                }
                if (meta.to_route_group == 1) {
                    route_ecmp.apply();
                }

                if (meta.fwd == FWD_NONE) {
                    drop_packet();
                } else if (meta.from_vm == 0 && meta.fwd == FWD_LOCAL) {
                    // Last hop of a tunnelled packet: the sender routed it.
                } else if (hdr.inner_ipv4.ttl <= 1) {
                    drop_packet();
                } else {
                    hdr.inner_ipv4.ttl = hdr.inner_ipv4.ttl - 1;

                    // No gateway digest: p4c-dpdk does not generate
                    // Digest.pack (see the header comment).

                    if (meta.fwd == FWD_ENCAP) {
                        hdr.ethernet.setValid();
                        hdr.ethernet.dst_addr = 0;
                        hdr.ethernet.src_addr = meta.host_mac;
                        hdr.ethernet.ether_type = ETHERTYPE_IPV4;

                        hdr.ipv4.setValid();
                        hdr.ipv4.version = 4;
                        hdr.ipv4.ihl = 5;
                        hdr.ipv4.diffserv = hdr.inner_ipv4.diffserv;
                        hdr.ipv4.total_len = hdr.inner_ipv4.total_len + VXLAN_OUTER_IPV4_OVERHEAD;
                        hdr.ipv4.identification = 0;
                        hdr.ipv4.flags = 0;
                        hdr.ipv4.frag_offset = 0;
                        hdr.ipv4.ttl = 64;
                        hdr.ipv4.protocol = IPPROTO_UDP;
                        hdr.ipv4.hdr_checksum = 0;  // VpcComputeChecksum
                        hdr.ipv4.src_addr = meta.host_ip;
                        hdr.ipv4.dst_addr = meta.tunnel_dst;

                        hdr.udp.setValid();
                        // VXLAN_SRC_PORT_RANGE is 2^14: base | 14 hash bits.
                        hdr.udp.src_port = VXLAN_SRC_PORT_BASE |
                            (vxlan_src_port_hash.get_hash({ hdr.inner_ipv4.src_addr,
                                                            hdr.inner_ipv4.dst_addr,
                                                            hdr.inner_ipv4.protocol,
                                                            meta.l4_src_port,
                                                            meta.l4_dst_port }) & 0x3fff);
                        hdr.udp.dst_port = VXLAN_UDP_PORT;
                        hdr.udp.length = hdr.inner_ipv4.total_len + VXLAN_OUTER_UDP_OVERHEAD;
                        hdr.udp.checksum = 0;

                        hdr.vxlan.setValid();
                        hdr.vxlan.flags = 0x08;
                        hdr.vxlan.reserved = 0;
                        hdr.vxlan.vni = meta.tunnel_vni;
                        hdr.vxlan.reserved2 = 0;

                        // set_underlay overwrites the outer MACs; host_mac is
                        // the source until then.
                        underlay_nexthop.apply();
                    }
                }
            }
        }

        // The outer IPv4 header is valid only on packets we encapsulated;
        // the inner one on every routed tenant packet (its TTL may have
        // changed). VpcComputeChecksum of the v1model program.
        if (hdr.ipv4.isValid()) {
            ipv4_checksum.clear();
            ipv4_checksum.add({
                hdr.ipv4.version,
                hdr.ipv4.ihl,
                hdr.ipv4.diffserv,
                hdr.ipv4.total_len,
                hdr.ipv4.identification,
                hdr.ipv4.flags,
                hdr.ipv4.frag_offset,
                hdr.ipv4.ttl,
                hdr.ipv4.protocol,
                hdr.ipv4.src_addr,
                hdr.ipv4.dst_addr });
            hdr.ipv4.hdr_checksum = ipv4_checksum.get();
        }
        if (hdr.inner_ipv4.isValid()) {
            inner_ipv4_checksum.clear();
            inner_ipv4_checksum.add({
                hdr.inner_ipv4.version,
                hdr.inner_ipv4.ihl,
                hdr.inner_ipv4.diffserv,
                hdr.inner_ipv4.total_len,
                hdr.inner_ipv4.identification,
                hdr.inner_ipv4.flags,
                hdr.inner_ipv4.frag_offset,
                hdr.inner_ipv4.ttl,
                hdr.inner_ipv4.protocol,
                hdr.inner_ipv4.src_addr,
                hdr.inner_ipv4.dst_addr });
            hdr.inner_ipv4.hdr_checksum = inner_ipv4_checksum.get();
        }
    }
}

/*************************************************************************
 * Deparser
 *************************************************************************/

control VpcDeparser(packet_out packet,
                    in headers_t hdr,
                    in metadata_t meta,
                    in pna_main_output_metadata_t ostd) {
    apply {
        packet.emit(hdr.packet_in);
        packet.emit(hdr.ethernet);
        packet.emit(hdr.arp);
        packet.emit(hdr.ipv4);
        packet.emit(hdr.udp);
        packet.emit(hdr.tcp);
        packet.emit(hdr.vxlan);
        packet.emit(hdr.inner_ethernet);
        packet.emit(hdr.inner_ipv4);
        packet.emit(hdr.inner_udp);
        packet.emit(hdr.inner_tcp);
    }
}

PNA_NIC(VpcParser(),
        VpcPreControl(),
        VpcIngress(),
        VpcDeparser()) main;
