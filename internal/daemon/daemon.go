// Package daemon holds what p4mesh's daemons (controller, switch, OHC) do
// alike when they stop: finish what is in flight within a grace period,
// then cut the rest.
package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"
)

// StopGRPC stops g gracefully, letting open RPCs finish for up to grace,
// then closes whatever is still open. End g's streams first (EndStreamsOn):
// a watch or a StreamChannel never ends by itself and would hold the stop
// for the whole grace.
func StopGRPC(g *grpc.Server, grace time.Duration, log *slog.Logger) {
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		log.Warn("RPCs still open after the grace period; closing them", "grace", grace)
		g.Stop()
		<-stopped
	}
}

// StopHTTP shuts hs down within grace, closing it if that fails. A nil hs
// (metrics not served) is fine.
func StopHTTP(hs *http.Server, grace time.Duration) {
	if hs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		hs.Close()
	}
}
