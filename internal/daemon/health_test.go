package daemon

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestHandleHealth(t *testing.T) {
	var notReady atomic.Pointer[error]
	mux := http.NewServeMux()
	HandleHealth(mux, func() error {
		if p := notReady.Load(); p != nil {
			return *p
		}
		return nil
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	why := errors.New("no pipeline")
	notReady.Store(&why)
	if code, body := get(ReadyPath); code != http.StatusServiceUnavailable || !strings.Contains(body, "no pipeline") {
		t.Errorf("%s while not ready = %d %q; want 503 with the reason", ReadyPath, code, body)
	}
	// Alive even when not ready: a liveness probe must not restart a
	// daemon that is only waiting.
	if code, _ := get(LivePath); code != http.StatusOK {
		t.Errorf("%s while not ready = %d; want 200", LivePath, code)
	}
	notReady.Store(nil)
	if code, body := get(ReadyPath); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("%s once ready = %d %q; want 200 ok", ReadyPath, code, body)
	}
}
