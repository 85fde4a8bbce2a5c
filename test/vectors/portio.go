package vectors

// PacketConn is a raw port the runner can read and write frames on: an
// AF_PACKET socket on the far end of a veth pair (dataplane/afpacket.Port).
type PacketConn interface {
	ReadPacket(buf []byte) (int, error)
	WritePacket(b []byte) error
}

type connIO struct {
	c      PacketConn
	frames chan []byte
}

// NewPortIO reads c in a goroutine until ReadPacket fails (the caller closes
// c when done) and delivers the frames to the runner.
func NewPortIO(c PacketConn) PortIO {
	io := &connIO{c: c, frames: make(chan []byte, 256)}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := c.ReadPacket(buf)
			if err != nil {
				close(io.frames)
				return
			}
			select {
			case io.frames <- append([]byte(nil), buf[:n]...):
			default: // 256 frames behind: far more than a case sends
			}
		}
	}()
	return io
}

func (c *connIO) Send(f []byte) error   { return c.c.WritePacket(f) }
func (c *connIO) Frames() <-chan []byte { return c.frames }
