package daemon

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errStopping is what a stream ended by EndStreamsOn reports to its client:
// UNAVAILABLE is the code gRPC clients (and our own reconnect loops) treat
// as "try again, maybe elsewhere", as they do for a GOAWAY.
var errStopping = status.Error(codes.Unavailable, "server is stopping; reconnect")

// EndStreamsOn returns an interceptor that ends every stream RPC of the
// server when ctx ends, as if its client had gone: a watch, a gNMI
// Subscribe or a P4Runtime StreamChannel never ends by itself, so without
// this GracefulStop always waits out its grace period while a client is
// connected. Cancel ctx just before stopping the server; streams opened
// after that end at once.
//
// The handler's stream context is cancelled, and a RecvMsg blocked for the
// client's next message returns: handlers that only wait in Recv (the
// StreamChannel loop, a gNMI POLL) stop as well as those that select on
// their context. The client gets UNAVAILABLE unless the handler had already
// failed for a reason of its own.
func EndStreamsOn(ctx context.Context) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		sctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		stop := context.AfterFunc(ctx, cancel)
		defer stop()
		err := handler(srv, &endableStream{ServerStream: ss, ctx: sctx, stopping: ctx})
		if ctx.Err() != nil && ss.Context().Err() == nil && stoppedBy(err) {
			return errStopping
		}
		return err
	}
}

// stoppedBy reports whether a handler's result is what ending its stream
// makes it return: nothing, a context error, or our own errStopping.
func stoppedBy(err error) bool {
	switch status.Code(err) {
	case codes.OK, codes.Canceled, codes.DeadlineExceeded, codes.Unavailable:
		return true
	}
	return errors.Is(err, context.Canceled)
}

// endableStream is a ServerStream whose context and receives end when the
// server stops.
type endableStream struct {
	grpc.ServerStream
	ctx      context.Context // the stream's context, cancelled on stop too
	stopping context.Context // EndStreamsOn's ctx
}

func (s *endableStream) Context() context.Context { return s.ctx }

// RecvMsg waits for the client's next message or the server stopping,
// whichever comes first. gRPC's own RecvMsg cannot be interrupted short of
// ending the RPC, which only the handler returning does, so it runs in a
// goroutine of its own. When the server stops first, that goroutine is
// left behind until the RPC ends (the handler is returning: one more
// receive cannot be outstanding, as every later call returns at once),
// and m is never read again. A goroutine per message costs about a
// microsecond: nothing next to decoding it, and p4mesh's streams carry
// requests, arbitration, acks and the odd packet-out, not bulk traffic.
func (s *endableStream) RecvMsg(m any) error {
	if s.stopping.Err() != nil {
		return errStopping
	}
	done := make(chan error, 1)
	go func() { done <- s.ServerStream.RecvMsg(m) }()
	select {
	case err := <-done:
		return err
	case <-s.ctx.Done():
		if s.stopping.Err() != nil {
			return errStopping
		}
		// The client went: gRPC's receive returns promptly with why.
		return <-done
	}
}
