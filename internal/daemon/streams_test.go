package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// recvOnly is a StreamChannel handler that only ever waits in Recv, the
// kind a cancelled context alone does not stop.
type recvOnly struct {
	p4v1.UnimplementedP4RuntimeServer
}

func (recvOnly) StreamChannel(st p4v1.P4Runtime_StreamChannelServer) error {
	for {
		if _, err := st.Recv(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func TestEndStreamsOn(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stopping, stop := context.WithCancel(context.Background())
	g := grpc.NewServer(grpc.ChainStreamInterceptor(EndStreamsOn(stopping)))
	p4v1.RegisterP4RuntimeServer(g, recvOnly{})
	go g.Serve(lis)
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	open := func() p4v1.P4Runtime_StreamChannelClient {
		t.Helper()
		st, err := p4v1.NewP4RuntimeClient(conn).StreamChannel(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// A message through proves the handler runs (and receives). A
		// stream the server has already ended answers Send with EOF;
		// its status is what Recv returns, which the callers check.
		if err := st.Send(&p4v1.StreamMessageRequest{}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		return st
	}

	// A client that leaves ends its stream as it always did.
	st := open()
	st.CloseSend()
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after CloseSend the stream ended with %v, want EOF (OK)", err)
	}

	// Stopping ends a stream waiting in Recv, and one opened afterwards.
	st = open()
	stop()
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("on stop the stream ended with %v, want UNAVAILABLE", err)
	}
	if _, err := open().Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("a stream opened after the stop ended with %v, want UNAVAILABLE", err)
	}
}
