package demo

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/p4mesh/p4mesh/controller"
)

// The demo's on-prem router: behind red's VPN attachment red-vpn on h1
// (port 5), it peers with c1's BGP speaker and announces OnPremPrefix,
// whose OnPremHost answers pings.
var (
	OnPremPrefix     = netip.MustParsePrefix("192.168.100.0/24")
	OnPremHost       = netip.MustParseAddr("192.168.100.1")
	onPremLink       = netip.MustParseAddr("10.1.255.2")
	onPremAttachment = netip.MustParseAddr("10.1.255.1")
)

const (
	// OnPremAttachment is red's VPN attachment the router is behind.
	OnPremAttachment = "red-vpn"
	// OnPremAS is the router's AS, SpeakerAS c1's.
	OnPremAS  = 65001
	SpeakerAS = 64512
)

// WithOnPrem adds the on-prem router to t: its cable (h1 port 5), red's
// VPN attachment in c1's configuration, and c1's bgp section with the
// router at peer as its one neighbor.
func WithOnPrem(t *Topology, peer netip.AddrPort) {
	routerMAC := net.HardwareAddr{0x02, 0xfe, 0x01, 0, 0, 0x01}
	attMAC := net.HardwareAddr{0x02, 0x01, 0, 0, 0xff, 0x01}
	t.Routers = append(t.Routers, Router{
		ID: "red-onprem", Host: "h1", Port: 5, MAC: routerMAC,
		LinkIP: onPremLink, Behind: []netip.Prefix{netip.PrefixFrom(OnPremHost, 32)},
		VPCRoutes:    []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")},
		AttachmentIP: onPremAttachment, AttachmentMAC: attMAC,
	})
	c := t.Configs["c1"]
	c.Endpoints = append(c.Endpoints, controller.Endpoint{ID: OnPremAttachment, VPC: "red", Kind: controller.KindVPN,
		IP: onPremAttachment, MAC: ctlMAC(attMAC.String()), Host: "h1", Port: 5, RouterMAC: ctlMAC(routerMAC.String())})
	c.BGP = &controller.BGP{LocalAS: SpeakerAS, RouterID: netip.MustParseAddr("10.255.0.1"), ListenPort: -1,
		Neighbors: []controller.BGPNeighbor{{VPC: "red", Address: peer.Addr(), Port: peer.Port(), Attachment: OnPremAttachment,
			PeerAS: OnPremAS, HoldTime: 9, Keepalive: 3}}}
}

// GoBGPRouter is an on-prem router in-process: a plain GoBGP server that
// waits for c1's speaker to connect and announces what it is told. The
// demo uses it where FRR is not there.
type GoBGPRouter struct {
	srv  *server.BgpServer
	addr netip.AddrPort
}

// StartGoBGPRouter starts a router listening on addr (port 0: a free one).
func StartGoBGPRouter(ctx context.Context, addr netip.Addr) (*GoBGPRouter, error) {
	srv := server.NewBgpServer(server.LoggerOption(quietLogger{}))
	go srv.Serve()
	var err error
	for range 5 { // a probed free port may be taken before GoBGP binds it
		var l net.Listener
		if l, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String()); err != nil {
			break
		}
		port := uint16(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		err = srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
			Asn: OnPremAS, RouterId: addr.String(), ListenPort: int32(port), ListenAddresses: []string{addr.String()},
		}})
		if err == nil {
			r := &GoBGPRouter{srv: srv, addr: netip.AddrPortFrom(addr, port)}
			err = srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
				Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: SpeakerAS},
				Transport: &api.Transport{PassiveMode: true},
				Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, IdleHoldTimeAfterReset: 1}},
			}})
			if err != nil {
				srv.Stop()
				return nil, err
			}
			return r, nil
		}
	}
	srv.Stop()
	return nil, fmt.Errorf("on-prem router at %s: %w", addr, err)
}

// Addr is where the router listens.
func (r *GoBGPRouter) Addr() netip.AddrPort { return r.addr }

// Announce announces prefix with the router's link address as next hop.
func (r *GoBGPRouter) Announce(ctx context.Context, prefix netip.Prefix) error {
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: prefix.Addr().String(), PrefixLen: uint32(prefix.Bits())})
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := anypb.New(&api.NextHopAttribute{NextHop: onPremLink.String()})
	_, err := r.srv.AddPath(ctx, &api.AddPathRequest{Path: &api.Path{
		Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Nlri: nlri, Pattrs: []*anypb.Any{origin, nh},
	}})
	return err
}

// Close stops the router.
func (r *GoBGPRouter) Close() { r.srv.Stop() }

// Describe says what the router is.
func (r *GoBGPRouter) Describe() string {
	return fmt.Sprintf("GoBGP in this process, at %s", r.addr)
}

// OnPremRouter is the demo's on-prem router: FRR's bgpd or a GoBGP server
// in-process.
type OnPremRouter interface {
	Addr() netip.AddrPort
	Announce(ctx context.Context, prefix netip.Prefix) error
	Describe() string
	Close()
}

var (
	_ OnPremRouter = (*GoBGPRouter)(nil)
	_ OnPremRouter = (*FRRRouter)(nil)
)

// quietLogger drops GoBGP's log lines: the speaker's side logs the session.
type quietLogger struct{}

func (quietLogger) Panic(string, gobgplog.Fields) {}
func (quietLogger) Fatal(string, gobgplog.Fields) {}
func (quietLogger) Error(string, gobgplog.Fields) {}
func (quietLogger) Warn(string, gobgplog.Fields)  {}
func (quietLogger) Info(string, gobgplog.Fields)  {}
func (quietLogger) Debug(string, gobgplog.Fields) {}
func (quietLogger) SetLevel(gobgplog.LogLevel)    {}
func (quietLogger) GetLevel() gobgplog.LogLevel   { return gobgplog.ErrorLevel }

// WaitEstablished waits until srv reports its BGP session with the
// router established.
func WaitEstablished(ctx context.Context, srv *controller.Server, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, n := range srv.Stats().BGPNeighbors {
			if n.Attachment == OnPremAttachment && n.State == "established" {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
