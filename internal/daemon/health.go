package daemon

import (
	"fmt"
	"net/http"
)

// Health probe paths, served by every daemon on its metrics listener.
const (
	// LivePath answers 200 while the process serves HTTP at all: a
	// liveness probe that fails means restart it.
	LivePath = "/healthz"
	// ReadyPath answers 200 once the daemon does its job, 503 with the
	// reason until then: a readiness probe that fails means do not count
	// on it (send it no traffic, hold a rollout), not restart it.
	ReadyPath = "/readyz"
)

// HandleHealth serves LivePath and ReadyPath on mux. ready returns nil
// when the daemon is ready, else why not; it is called on every probe, so
// it reads the daemon's state as it is now, never a cached answer.
func HandleHealth(mux *http.ServeMux, ready func() error) {
	mux.HandleFunc(LivePath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc(ReadyPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		// Probes must never be cached by a proxy in between: the answer
		// changes as the daemon does.
		w.Header().Set("Cache-Control", "no-store")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}
