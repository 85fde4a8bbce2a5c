/*
 * vpc_peering.p4 — the p4mesh host pipeline (P4_16, v1model, BMv2 simple_switch_grpc).
 *
 * Every host runs this pipeline next to its VMs. It gives each VM direct,
 * proxyless connectivity to every endpoint of its own VPC and of the VPCs it is
 * peered with: a packet is VXLAN-encapsulated by the sender's host straight to
 * the destination's host, with the *destination* VPC's VNI on the wire. Gateway
 * nodes run the same program with full state, for destinations a host has no
 * direct entry for.
 *
 * Packet walk (ingress):
 *
 *   0. From the CPU port: a packet_out header names the egress port; the header
 *      is removed and the rest goes out untouched. Nothing else is looked up.
 *   1. local_host (keyless) loads this host's underlay IP and MAC, the outer
 *      source of every tunnel we build.
 *   2. port_vnet: is the ingress port a VM port? set_vnet gives the VM's VPC
 *      (VNI) and MAC. A miss means "not a VM port" (an uplink): only VXLAN
 *      addressed to this host is accepted there, see 4.
 *   3. VM port:
 *        ARP request  -> arp_proxy answers in the data plane (arp_reply), back
 *                        out of the ingress port; nothing is flooded, ever.
 *        IPv4         -> the VM's frame is moved into the inner_* headers (so
 *                        every later stage works on one place), then
 *                        vm_source_guard checks (VNI, port, src IP, src MAC):
 *                        a VM can only send as itself (anti-spoofing). On an
 *                        attachment's port (set_attachment) the sender is an
 *                        on-prem router: attachment_source_check (port, src
 *                        LPM) admits the prefixes routed out of that port.
 *        anything else (and VXLAN sent *by* a VM) is dropped.
 *   4. Uplink: tunnel_term (outer dst IP, VNI) -> decap(); the VNI on the wire
 *      is the destination VPC's. vnet_source_check (VNI, inner src LPM) then
 *      admits only sources of that VPC, of the VPCs peered with it, and of
 *      the prefixes it routes to (on-prem networks behind attachments).
 *   5. Route the tenant packet in meta.vni, first match wins:
 *        lb_frontend (VIP, protocol, port) -> to_lb, else
 *        vnet_destination (exact dst IP)   -> to_local_vm | encap_to_host | to_lb, else
 *        vnet_route (dst LPM)              -> encap_to_host | to_local_vm |
 *                                             to_route_group | to_gateway_pool | drop.
 *      to_lb picks a backend in lb_backend, to_gateway_pool a gateway in
 *      gateway_pool, to_route_group an equal-cost next hop in route_ecmp; all
 *      three are action-selector tables keyed by the id an earlier table set,
 *      hashing the inner 5-tuple. A tunnelled packet takes the same path after
 *      decap, so a route out of a local attachment port serves traffic that
 *      other hosts sent here as well as this host's VMs.
 *   6. TTL: every pass that routes decrements the inner TTL (TTL <= 1 is
 *      dropped) except the final delivery of a tunnelled packet to a local VM:
 *      the sender's host already routed it. So VM to VM costs one hop whether
 *      the peer is local or remote, and a gateway adds one (loops die out).
 *   7. encap_to_host builds outer Ethernet / IPv4 / UDP 4789 / VXLAN(dst VNI),
 *      outer source = local host; underlay_nexthop (outer dst LPM) picks the
 *      uplink port and MACs. The gateway path sends a digest (VNI, dst IP) so
 *      the on-host controller learns which destinations are in use.
 *
 * Egress only adds the packet_in header on the CPU port. VpcComputeChecksum
 * recomputes the outer and inner IPv4 header checksums; the outer UDP checksum
 * is 0 (allowed for UDP over IPv4, RFC 7348).
 *
 * The P4Runtime IDs are fixed with @id (resource type in the top byte) so that
 * the committed P4Info (build/vpc_peering.p4info.txtpb) does not move when the
 * program is edited. Code never hard-codes them: it resolves names through the
 * P4Info. Every table has an explicit default action, so NoAction is never part
 * of the control-plane API.
 *
 * The Go software target (dataplane/) implements exactly this program; the
 * packet vectors in test/vectors are the contract that keeps the two equal.
 */

#include <core.p4>
#include <v1model.p4>

// simple_switch_grpc must be started with --cpu-port 255.
#define CPU_PORT 255

// The port number type, as common/headers.p4 expects it: v1model's 9 bits.
typedef bit<9> vpc_port_t;

/*************************************************************************
 * Headers
 *************************************************************************/

// Sent to the controller with every packet on the CPU port.
// @p4mesh_cpu_port tells the control plane which port that is (the P4Info
// has no constants; p4c copies the annotation into it).
@controller_header("packet_in") @p4mesh_cpu_port(CPU_PORT)
header packet_in_t {
    bit<9> ingress_port;
    bit<7> _pad;
}

// Prepended by the controller to every packet it sends; the packet goes out
// egress_port as it is.
@controller_header("packet_out")
header packet_out_t {
    bit<9> egress_port;
    bit<7> _pad;
}

// Constants, protocol headers, headers_t and metadata_t: shared with p4/tna
// and p4/pna.
#include "../common/headers.p4"

/*************************************************************************
 * Parser
 *************************************************************************/

parser VpcParser(packet_in packet,
                 out headers_t hdr,
                 inout metadata_t meta,
                 inout standard_metadata_t standard_metadata) {

    state start {
        transition select(standard_metadata.ingress_port) {
            CPU_PORT: parse_packet_out;
            default:  parse_ethernet;
        }
    }

    // The controller built the frame; it is not ours to parse or rewrite.
    state parse_packet_out {
        packet.extract(hdr.packet_out);
        transition accept;
    }

    // parse_ethernet and everything after it (shared with p4/tna and p4/pna).
#include "../common/parser.p4"
}

/*************************************************************************
 * Checksum verification
 *************************************************************************/

// Nothing is verified: a bad checksum on the underlay is the NIC's business,
// and a tenant packet's header checksum is recomputed before it leaves.
control VpcVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

/*************************************************************************
 * Ingress
 *************************************************************************/

control VpcIngress(inout headers_t hdr,
                   inout metadata_t meta,
                   inout standard_metadata_t standard_metadata) {

    // ---------------------------------------------------------------- actions

    @id(0x01000001)
    action drop() {
        mark_to_drop(standard_metadata);
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
        standard_metadata.egress_spec = standard_metadata.ingress_port;
    }

    // arp_proxy: hand the request to the on-host controller (packet_in). Not
    // the default: the controller chooses, per target or as the default.
    @id(0x01000005)
    action send_to_cpu() {
        standard_metadata.egress_spec = CPU_PORT;
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
    action to_local_vm(bit<9> port, bit<48> dmac) {
        meta.fwd = FWD_LOCAL;
        standard_metadata.egress_spec = port;
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
    action set_underlay(bit<9> port, bit<48> smac, bit<48> dmac) {
        standard_metadata.egress_spec = port;
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
            standard_metadata.ingress_port: exact @name("ingress_port");
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
            standard_metadata.ingress_port: exact @name("ingress_port");
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

    // Direct counters count every hit of their table; v1model needs no
    // count() call in the actions.
    @id(0x13000001)
    direct_counter(CounterType.packets_and_bytes) vnet_destination_counter;

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
        counters = vnet_destination_counter;
        size = 65536;
    }

    @id(0x13000002)
    direct_counter(CounterType.packets_and_bytes) vnet_route_counter;

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
        counters = vnet_route_counter;
        size = 131072;
    }

    // The selectors hash the inner 5-tuple (src IP, dst IP, protocol, src
    // port, dst port; 13 bytes in that order) with BMv2's crc16
    // (CRC-16/ARC: poly 0x8005 reflected, init 0, no final xor) and take
    // member (hash % group size) of the group, members ordered by BMv2 member
    // handle. The software target reproduces exactly this, so keep the
    // algorithm and the selector field order. 32w16 is the hash output width.
    @id(0x11000001)
    action_selector(HashAlgorithm.crc16, 32w8192, 32w16) gateway_selector;

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
        implementation = gateway_selector;
        // A host holds one group per (pool, peer VNI) it sends through,
        // since a member's encap_to_host carries the peer's VNI: 4096 pool-
        // served peer VPCs, two gateways each in the selector's 8192.
        size = 4096;
    }

    @id(0x11000002)
    action_selector(HashAlgorithm.crc16, 32w4096, 32w16) lb_selector;

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
        implementation = lb_selector;
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
    action_selector(HashAlgorithm.crc16, 32w4096, 32w16) route_selector;

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
        implementation = route_selector;
        size = 1024;
    }

    // The sources an attachment's port may send from: the prefixes routed
    // out of it (what the on-prem router announced), a uRPF check per port.
    // Sized like vnet_route, whose routes through attachments these mirror.
    @id(0x0200000E)
    table attachment_source_check {
        key = {
            standard_metadata.ingress_port: exact @name("ingress_port");
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
            standard_metadata.egress_spec = hdr.packet_out.egress_port;
            hdr.packet_out.setInvalid();
        } else if (standard_metadata.parser_error != error.NoError) {
            mark_to_drop(standard_metadata);
        } else {
            local_host.apply();

            if (port_vnet.apply().hit) {
                // An explicit drop entry (a disabled VM port) leaves from_vm 0.
                if (meta.from_vm == 1) {
                    if (hdr.vxlan.isValid()) {
                        // A VM's own UDP/4789 traffic: the parser cannot tell
                        // it from a tunnel, and it is not supported.
                        mark_to_drop(standard_metadata);
                    } else if (hdr.arp.isValid()) {
                        if (hdr.arp.oper == ARP_OPER_REQUEST &&
                            hdr.arp.htype == ARP_HTYPE_ETHERNET &&
                            hdr.arp.ptype == ETHERTYPE_IPV4 &&
                            hdr.arp.hlen == 6 && hdr.arp.plen == 4) {
                            arp_proxy.apply();
                        } else {
                            mark_to_drop(standard_metadata);
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
                            mark_to_drop(standard_metadata);
                        } else if (meta.from_attachment == 1) {
                            if (attachment_source_check.apply().hit) {
                                meta.do_route = 1;
                            }
                        } else if (vm_source_guard.apply().hit) {
                            meta.do_route = 1;
                        }
                    } else {
                        mark_to_drop(standard_metadata);
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
                    mark_to_drop(standard_metadata);
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
                    mark_to_drop(standard_metadata);
                } else if (meta.from_vm == 0 && meta.fwd == FWD_LOCAL) {
                    // Last hop of a tunnelled packet: the sender routed it.
                } else if (hdr.inner_ipv4.ttl <= 1) {
                    mark_to_drop(standard_metadata);
                } else {
                    hdr.inner_ipv4.ttl = hdr.inner_ipv4.ttl - 1;

                    if (meta.to_gateway == 1) {
                        digest<gateway_digest_t>(1, { meta.vni, hdr.inner_ipv4.dst_addr });
                    }

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
                        hash(hdr.udp.src_port, HashAlgorithm.crc16, VXLAN_SRC_PORT_BASE,
                             { hdr.inner_ipv4.src_addr,
                               hdr.inner_ipv4.dst_addr,
                               hdr.inner_ipv4.protocol,
                               meta.l4_src_port,
                               meta.l4_dst_port },
                             VXLAN_SRC_PORT_RANGE);
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
    }
}

/*************************************************************************
 * Egress
 *************************************************************************/

control VpcEgress(inout headers_t hdr,
                  inout metadata_t meta,
                  inout standard_metadata_t standard_metadata) {
    apply {
        if (standard_metadata.egress_port == CPU_PORT) {
            hdr.packet_in.setValid();
            hdr.packet_in.ingress_port = standard_metadata.ingress_port;
            hdr.packet_in._pad = 0;
        }
    }
}

/*************************************************************************
 * Checksum computation
 *************************************************************************/

// The outer IPv4 header is valid only on packets we encapsulated; the inner
// one on every routed tenant packet (its TTL may have changed).
control VpcComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        update_checksum(
            hdr.ipv4.isValid(),
            { hdr.ipv4.version,
              hdr.ipv4.ihl,
              hdr.ipv4.diffserv,
              hdr.ipv4.total_len,
              hdr.ipv4.identification,
              hdr.ipv4.flags,
              hdr.ipv4.frag_offset,
              hdr.ipv4.ttl,
              hdr.ipv4.protocol,
              hdr.ipv4.src_addr,
              hdr.ipv4.dst_addr },
            hdr.ipv4.hdr_checksum,
            HashAlgorithm.csum16);
        update_checksum(
            hdr.inner_ipv4.isValid(),
            { hdr.inner_ipv4.version,
              hdr.inner_ipv4.ihl,
              hdr.inner_ipv4.diffserv,
              hdr.inner_ipv4.total_len,
              hdr.inner_ipv4.identification,
              hdr.inner_ipv4.flags,
              hdr.inner_ipv4.frag_offset,
              hdr.inner_ipv4.ttl,
              hdr.inner_ipv4.protocol,
              hdr.inner_ipv4.src_addr,
              hdr.inner_ipv4.dst_addr },
            hdr.inner_ipv4.hdr_checksum,
            HashAlgorithm.csum16);
    }
}

/*************************************************************************
 * Deparser
 *************************************************************************/

control VpcDeparser(packet_out packet, in headers_t hdr) {
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

V1Switch(VpcParser(),
         VpcVerifyChecksum(),
         VpcIngress(),
         VpcEgress(),
         VpcComputeChecksum(),
         VpcDeparser()) main;
