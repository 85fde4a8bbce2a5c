package bgp

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// The speaker learns routes from each VPC's GoBGP server through GoBGP's
// BMP client (RFC 7854), pre-policy route monitoring: GoBGP writes every
// UPDATE it accepted from a neighbor as the bytes it received, with the
// neighbor's session Peer Up and Peer Down in the same ordered stream,
// over TCP to a station; the speaker is that station, on a loopback
// listener of its own. See doc.go, "Learned routes".

// BMP message types (RFC 7854 4.1).
const (
	bmpRouteMonitoring = 0
	bmpStatistics      = 1
	bmpPeerDown        = 2
	bmpPeerUp          = 3
	bmpInitiation      = 4
	bmpTermination     = 5

	bmpCommonHeader = 6
	bmpPeerHeader   = 42
	// bmpMaxMessage bounds what the station reads: a BGP message is at
	// most 4,096 bytes (no extended messages are negotiated), a Peer Up
	// carries two OPENs.
	bmpMaxMessage = 64 << 10

	bmpFlagTwoByteAS = 0x20 // per-peer header A flag
	bmpFlagIPv6      = 0x80 // per-peer header V flag

	bmpTLVSysDescr = 1 // Initiation information TLV types
	bmpTLVSysName  = 2

	// bmpHello bounds how long a connection may take to identify itself.
	bmpHello = 10 * time.Second
)

// bmpStation is the speaker's end of the BMP connections: one listener
// for all VPC servers, each of which identifies itself in its Initiation
// message with the speaker's secret (a random value only this speaker's
// GoBGP servers are configured with) and the server's id. A connection
// that does not is closed unread: any local process can connect to a
// loopback port, and must not be able to inject routes.
type bmpStation struct {
	ln     net.Listener
	port   uint32
	secret string
}

func newBMPStation() (*bmpStation, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bgp: listen for GoBGP's BMP connections: %w", err)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		ln.Close()
		return nil, fmt.Errorf("bgp: BMP secret: %w", err)
	}
	return &bmpStation{ln: ln, port: uint32(ln.Addr().(*net.TCPAddr).Port), secret: hex.EncodeToString(b[:])}, nil
}

// sysDescr is what the server with id sends as its sysDescr.
func (st *bmpStation) sysDescr(id uint64) string {
	return "p4mesh " + st.secret + " " + strconv.FormatUint(id, 10)
}

// identify returns the server id an Initiation's sysDescr names, if it
// carries the secret.
func (st *bmpStation) identify(descr string) (uint64, bool) {
	f := strings.Fields(descr)
	if len(f) != 3 || f[0] != "p4mesh" || subtle.ConstantTimeCompare([]byte(f[1]), []byte(st.secret)) != 1 {
		return 0, false
	}
	id, err := strconv.ParseUint(f[2], 10, 64)
	return id, err == nil
}

// addBMP makes v's server report to the speaker's station and waits until
// its connection has identified itself, so that nothing the server learns
// from its first neighbor on comes before the stream.
func (s *Speaker) addBMP(ctx context.Context, v *vpcServer) error {
	err := v.srv.AddBmp(ctx, &api.AddBmpRequest{
		Address:  "127.0.0.1",
		Port:     s.bmp.port,
		Policy:   api.AddBmpRequest_PRE,
		SysName:  "p4mesh VPC " + v.vpc,
		SysDescr: s.bmp.sysDescr(v.id),
	})
	if err != nil {
		return fmt.Errorf("bgp: VPC %s: report learned routes over BMP: %w", v.vpc, err)
	}
	select {
	case <-v.bmpReady:
		return nil
	case <-time.After(bmpHello):
	case <-ctx.Done():
	}
	v.srv.DeleteBmp(context.Background(), &api.DeleteBmpRequest{Address: "127.0.0.1", Port: s.bmp.port})
	return fmt.Errorf("bgp: VPC %s: GoBGP's BMP client did not connect within %v", v.vpc, bmpHello)
}

// stopBMP stops v's BMP client and its connection's reader. v.srv must
// still be running (GoBGP refuses DeleteBmp after StopBgp).
func (s *Speaker) stopBMP(v *vpcServer) {
	v.mu.Lock()
	v.closed = true
	c := v.conn
	v.mu.Unlock()
	v.srv.DeleteBmp(context.Background(), &api.DeleteBmpRequest{Address: "127.0.0.1", Port: s.bmp.port})
	if c != nil {
		c.Close()
	}
}

// acceptLoop runs until the listener closes (Stop).
func (s *Speaker) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.bmp.ln.Accept()
		if err != nil {
			return
		}
		s.cwg.Add(1)
		go s.serveBMP(c)
	}
}

// serveBMP reads one BMP connection: an Initiation with the secret first,
// then the server's stream until the connection ends or is replaced.
func (s *Speaker) serveBMP(c net.Conn) {
	defer s.cwg.Done()
	defer c.Close()
	r := bufio.NewReaderSize(c, 256<<10)
	var buf []byte
	c.SetReadDeadline(time.Now().Add(bmpHello))
	typ, msg, err := readBMP(r, &buf)
	if err != nil || typ != bmpInitiation {
		s.log.Warn("bgp: BMP connection without an Initiation; closed", "remote", c.RemoteAddr(), "err", err)
		return
	}
	descr, _ := initTLVs(msg)
	id, ok := s.bmp.identify(descr)
	if !ok {
		s.log.Warn("bgp: BMP connection that is not from this speaker's GoBGP (no secret); refused", "remote", c.RemoteAddr())
		return
	}
	s.smu.Lock()
	v := s.byID[id]
	s.smu.Unlock()
	if v == nil {
		return // a server stopped meanwhile
	}
	gen, ok := s.attachBMP(v, c)
	if !ok {
		return
	}
	c.SetReadDeadline(time.Time{})
	for {
		typ, msg, err := readBMP(r, &buf)
		if err != nil {
			v.mu.Lock()
			gone := v.closed || v.gen != gen
			v.mu.Unlock()
			if !gone && !errors.Is(err, io.EOF) {
				s.log.Warn("bgp: BMP stream broken; GoBGP will reconnect and send its routes again", "vpc", v.vpc, "err", err)
			}
			return
		}
		if h := s.testHookBMP.Load(); h != nil {
			(*h)()
		}
		if !s.onBMP(v, gen, typ, msg) {
			return
		}
	}
}

// attachBMP makes c the connection of v. A second connection of a server
// means the first was lost, and with it whatever GoBGP had not written:
// the neighbors' routes are read back from GoBGP, and the new
// connection's Peer Ups and re-sent adj-RIBs-in follow (onReconnect).
func (s *Speaker) attachBMP(v *vpcServer, c net.Conn) (uint64, bool) {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return 0, false
	}
	if v.conn != nil {
		v.conn.Close()
	}
	v.conn = c
	v.gen++
	gen := v.gen
	again := gen > 1
	var addrs []netip.Addr
	if again {
		for a, n := range v.nbrs {
			// Only the Peer Ups of the new stream make a session up.
			n.bmpUp = false
			addrs = append(addrs, a)
		}
	}
	v.mu.Unlock()
	if gen == 1 {
		close(v.bmpReady)
	}
	for _, a := range addrs {
		s.resync(context.Background(), v, a, false)
	}
	return gen, true
}

// readBMP reads one BMP message into *buf, returning its type and its
// body after the common header.
func readBMP(r *bufio.Reader, buf *[]byte) (byte, []byte, error) {
	var h [bmpCommonHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(h[1:5]))
	if h[0] != 3 || n < bmpCommonHeader || n > bmpMaxMessage {
		return 0, nil, fmt.Errorf("BMP header: version %d, length %d", h[0], n)
	}
	if cap(*buf) < n-bmpCommonHeader {
		*buf = make([]byte, n-bmpCommonHeader, bmpMaxMessage)
	}
	b := (*buf)[:n-bmpCommonHeader]
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, err
	}
	return h[5], b, nil
}

// initTLVs returns an Initiation's sysDescr and sysName.
func initTLVs(b []byte) (descr, name string) {
	for len(b) >= 4 {
		t, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if len(b) < 4+n {
			break
		}
		switch t {
		case bmpTLVSysDescr:
			descr = string(b[4 : 4+n])
		case bmpTLVSysName:
			name = string(b[4 : 4+n])
		}
		b = b[4+n:]
	}
	return descr, name
}

// peerHeader is what the speaker reads of a per-peer header.
type peerHeader struct {
	addr      netip.Addr
	twoByteAS bool
	time      time.Time
}

func parsePeerHeader(b []byte) (peerHeader, error) {
	if len(b) < bmpPeerHeader {
		return peerHeader{}, errors.New("truncated per-peer header")
	}
	var h peerHeader
	if b[1]&bmpFlagIPv6 != 0 {
		h.addr = netip.AddrFrom16([16]byte(b[10:26])).Unmap()
	} else {
		h.addr = netip.AddrFrom4([4]byte(b[22:26]))
	}
	h.twoByteAS = b[1]&bmpFlagTwoByteAS != 0
	h.time = time.Unix(int64(binary.BigEndian.Uint32(b[34:38])), int64(binary.BigEndian.Uint32(b[38:42]))*1000)
	return h, nil
}

// onBMP handles one message of v's connection gen; false ends the
// connection.
func (s *Speaker) onBMP(v *vpcServer, gen uint64, typ byte, b []byte) bool {
	switch typ {
	case bmpRouteMonitoring, bmpPeerUp, bmpPeerDown:
	case bmpTermination:
		return false
	default:
		return true // statistics (none asked for), mirroring
	}
	h, err := parsePeerHeader(b)
	if err != nil {
		s.log.Warn("bgp: bad BMP message; reconnecting", "vpc", v.vpc, "err", err)
		return false
	}
	switch typ {
	case bmpPeerUp:
		return s.onBMPPeer(v, gen, h, true)
	case bmpPeerDown:
		return s.onBMPPeer(v, gen, h, false)
	}
	return s.onRouteMonitoring(v, gen, h, b[bmpPeerHeader:])
}

// onRouteMonitoring applies one UPDATE a neighbor sent (GoBGP forwards
// only those it accepted, and the re-sent adj-RIB-in as one UPDATE per
// path). The attributes are read once for all of its prefixes.
func (s *Speaker) onRouteMonitoring(v *vpcServer, gen uint64, h peerHeader, m []byte) bool {
	u, ok, err := parseUpdate(m, h.twoByteAS)
	if err != nil {
		s.log.Warn("bgp: bad UPDATE in the BMP stream; reconnecting", "vpc", v.vpc, "neighbor", h.addr, "err", err)
		return false
	}
	if !ok {
		return true
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gen != gen || v.closed {
		return false
	}
	n := v.nbrs[h.addr]
	if n == nil || !n.bmpUp {
		// Not configured, or a removed session's late message, or an
		// End-of-RIB after a re-sent adj-RIB-in (a neighbor's own EoR
		// never comes through BMP: it has no paths).
		return true
	}
	// Sized for /24s (4 bytes each), most of a large table: growing it
	// by doubling was as much garbage again per UPDATE.
	us := make([]Update, 0, (len(u.withdrawn)+len(u.nlri)+len(u.attrs.mpReach)+len(u.attrs.mpUnreach))/4+1)
	withdraw := func(b []byte) error {
		for len(b) > 0 {
			var p netip.Prefix
			var err error
			if p, b, err = nextPrefix(b); err != nil {
				return err
			}
			k := pkey(p)
			us = n.withdraw(v.vpc, k, us)
			delete(n.rejected, k)
		}
		return nil
	}
	if err := withdraw(u.withdrawn); err == nil {
		err = withdraw(u.attrs.mpUnreach)
	}
	announce := func(b []byte) error {
		var rt Route
		u.attrs.route(&rt)
		loop := n.loops(rt.ASPath)
		for len(b) > 0 {
			var err error
			if rt.Prefix, b, err = nextPrefix(b); err != nil {
				return err
			}
			k := pkey(rt.Prefix)
			switch {
			case loop:
				// GoBGP keeps it out (AS loop) and did not count it in
				// before either: as withdrawn.
				us = n.withdraw(v.vpc, k, us)
				delete(n.rejected, k)
			case !n.accepts(&rt):
				us = n.withdraw(v.vpc, k, us)
				n.reject(k)
			default:
				n.learn(k)
				rt.VPC, rt.Neighbor = v.vpc, n.name
				us = append(us, Update{Route: rt})
			}
		}
		return nil
	}
	if u.attrErr != nil {
		// GoBGP accepted it (treat-as-withdraw, RFC 7606, or an attribute
		// this parser reads more strictly): its prefixes are withdrawn.
		s.log.Warn("bgp: cannot read the attributes of a learned UPDATE; its prefixes are withdrawn", "vpc", v.vpc, "neighbor", n.name, "err", u.attrErr)
		err = withdraw(u.nlri)
	} else {
		if e := announce(u.nlri); e != nil {
			err = e
		}
		if e := announce(u.attrs.mpReach); e != nil {
			err = e
		}
	}
	s.queue(us)
	if err != nil {
		s.log.Warn("bgp: bad NLRI in the BMP stream; reconnecting", "vpc", v.vpc, "neighbor", n.name, "err", err)
		return false
	}
	return true
}
