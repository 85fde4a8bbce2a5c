package sendgate

import (
	"net"
	"sync"
)

// Listener is a net.Listener that keeps the connections it accepted, by
// remote address, until they are closed, so that a Gate can close the
// connection of a client that stopped reading: nothing short of that (or
// a reset of each of its streams, which grpc-go does not offer a handler)
// frees what gRPC queued for it. gRPC names a call's peer by the remote
// address of the connection the listener returned, which is the key.
//
// The connections are wrapped, so grpc-go does not set TCP_USER_TIMEOUT
// on them (it does only on a *net.TCPConn): a peer that vanishes with data
// unacknowledged is dropped by keepalive, within 40 s, not by the kernel.
type Listener struct {
	net.Listener

	mu    sync.Mutex // guards conns
	conns map[string]*trackedConn
}

// Track wraps l.
func Track(l net.Listener) *Listener {
	return &Listener{Listener: l, conns: make(map[string]*trackedConn)}
}

// Accept accepts a connection and keeps it until it is closed.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l, addr: c.RemoteAddr().String()}
	l.mu.Lock()
	l.conns[tc.addr] = tc
	l.mu.Unlock()
	return tc, nil
}

// CloseConn closes the connection from addr and reports whether there was
// one.
func (l *Listener) CloseConn(addr string) bool {
	l.mu.Lock()
	c := l.conns[addr]
	l.mu.Unlock()
	if c == nil {
		return false
	}
	c.Close()
	return true
}

// Len returns the number of connections open.
func (l *Listener) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// trackedConn is an accepted connection that its Listener forgets when
// it is closed.
type trackedConn struct {
	net.Conn
	l    *Listener
	addr string
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		defer c.l.mu.Unlock()
		// A new connection may have taken the address since.
		if c.l.conns[c.addr] == c {
			delete(c.l.conns, c.addr)
		}
	})
	return c.Conn.Close()
}
