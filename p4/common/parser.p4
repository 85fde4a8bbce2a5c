/*
 * common/parser.p4 -- the parser states every architecture shares, from the
 * Ethernet header on. Included *inside* each program's parser, whose start
 * state reads the architecture's ingress port (and, on TNA, its intrinsic
 * metadata), takes a packet from the CPU port to parse_packet_out, and every
 * other packet to parse_ethernet. The parser's packet_in is "packet" and its
 * headers_t "hdr".
 */

    state parse_ethernet {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_ARP:  parse_arp;
            default:        accept;
        }
    }

    state parse_arp {
        packet.extract(hdr.arp);
        transition accept;
    }

    // L4 ports are only where the header has no options (IHL 5) and this is
    // the first fragment; IPv4 with options is dropped in ingress anyway.
    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        transition select(hdr.ipv4.ihl, hdr.ipv4.frag_offset, hdr.ipv4.protocol) {
            (4w5, 13w0, IPPROTO_UDP): parse_udp;
            (4w5, 13w0, IPPROTO_TCP): parse_tcp;
            default:                  accept;
        }
    }

    state parse_udp {
        packet.extract(hdr.udp);
        transition select(hdr.udp.dst_port) {
            VXLAN_UDP_PORT: parse_vxlan;
            default:        accept;
        }
    }

    state parse_tcp {
        packet.extract(hdr.tcp);
        transition accept;
    }

    state parse_vxlan {
        packet.extract(hdr.vxlan);
        transition parse_inner_ethernet;
    }

    state parse_inner_ethernet {
        packet.extract(hdr.inner_ethernet);
        transition select(hdr.inner_ethernet.ether_type) {
            ETHERTYPE_IPV4: parse_inner_ipv4;
            default:        accept;
        }
    }

    state parse_inner_ipv4 {
        packet.extract(hdr.inner_ipv4);
        transition select(hdr.inner_ipv4.ihl, hdr.inner_ipv4.frag_offset, hdr.inner_ipv4.protocol) {
            (4w5, 13w0, IPPROTO_UDP): parse_inner_udp;
            (4w5, 13w0, IPPROTO_TCP): parse_inner_tcp;
            default:                  accept;
        }
    }

    state parse_inner_udp {
        packet.extract(hdr.inner_udp);
        transition accept;
    }

    state parse_inner_tcp {
        packet.extract(hdr.inner_tcp);
        transition accept;
    }
