package p4rt

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The reconciler drives a switch through Device; the client must stay one.
var _ Device = (*Client)(nil)

// testTimeout bounds every wait of these tests; generous for -race on a
// loaded machine, and nothing waits for it on success.
const testTimeout = 10 * time.Second

// fastBackoff keeps reconnect tests quick.
var fastBackoff = Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}

// tLogWriter sends the client's logs to the test log.
type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// startClient creates a client and runs it until the test ends or stop is
// called; either way it checks that Run returned nil.
func startClient(t testing.TB, cfg Config) (c *Client, stop func()) {
	t.Helper()
	if cfg.DeviceID == 0 {
		cfg.DeviceID = 1
	}
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = fastBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil after cancel", err)
			}
		case <-time.After(testTimeout):
			t.Errorf("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// checkNoGoroutineLeak, called first in a test, checks at the very end (after
// every other cleanup: clients and servers stopped) that the goroutine count
// is back to where it started.
func checkNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= base {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutine leak: %d goroutines, %d at start\n%s", n, base, buf)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitPrimary(t testing.TB, c *Client) {
	t.Helper()
	if err := c.WaitPrimary(testCtx(t)); err != nil {
		t.Fatalf("WaitPrimary: %v (LastError %v)", err, c.LastError())
	}
}

// expectMastership reads Mastership events until one satisfies want.
func expectMastership(t testing.TB, c *Client, what string, want func(Mastership) bool) Mastership {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case m, ok := <-c.Mastership():
			if !ok {
				t.Fatalf("Mastership channel closed waiting for %s", what)
			}
			if want(m) {
				return m
			}
			t.Logf("mastership event skipped: %+v", m)
		case <-timeout:
			t.Fatalf("timed out waiting for mastership event: %s", what)
		}
	}
}

// teUpdate is an update of an exact-match entry of table, key encoded in
// field 1.
func teUpdate(typ p4v1.Update_Type, table, key uint32) *p4v1.Update {
	v := binary.BigEndian.AppendUint32(nil, key)
	return &p4v1.Update{Type: typ, Entity: &p4v1.Entity{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{
		TableId: table,
		Match: []*p4v1.FieldMatch{{FieldId: 1, FieldMatchType: &p4v1.FieldMatch_Exact_{
			Exact: &p4v1.FieldMatch_Exact{Value: v}}}},
		Action: &p4v1.TableAction{Type: &p4v1.TableAction_Action{Action: &p4v1.Action{ActionId: 7}}},
	}}}}
}

func inserts(table uint32, n int) []*p4v1.Update {
	us := make([]*p4v1.Update, n)
	for i := range us {
		us[i] = teUpdate(p4v1.Update_INSERT, table, uint32(i))
	}
	return us
}

func wildcardTables() []*p4v1.Entity {
	return []*p4v1.Entity{{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{}}}}
}

func asWriteError(t testing.TB, err error) *WriteError {
	t.Helper()
	var we *WriteError
	if !errors.As(err, &we) {
		t.Fatalf("error %v (%T) is not a *WriteError", err, err)
	}
	return we
}

func TestClientNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ok", Config{Addr: "127.0.0.1:9559", DeviceID: 1}, ""},
		{"device id 0", Config{Addr: "127.0.0.1:9559"}, "DeviceID must not be 0"},
		{"no addr", Config{DeviceID: 1}, "Addr is required"},
		{"negative batch", Config{Addr: "x:1", DeviceID: 1, MaxBatch: -1}, "MaxBatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.cfg.MaxBatch != DefaultMaxBatch {
					t.Errorf("MaxBatch default = %d, want %d", c.cfg.MaxBatch, DefaultMaxBatch)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second}
	for _, tc := range []struct {
		attempt int
		full    time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{3, 800 * time.Millisecond},
		{6, 6400 * time.Millisecond},
		{7, 10 * time.Second}, // capped
		{1000, 10 * time.Second},
	} {
		if got := b.delay(tc.attempt, 0); got != tc.full/2 {
			t.Errorf("delay(%d, 0) = %v, want %v", tc.attempt, got, tc.full/2)
		}
		if got := b.delay(tc.attempt, 1); got != tc.full {
			t.Errorf("delay(%d, 1) = %v, want %v", tc.attempt, got, tc.full)
		}
		for range 100 {
			if got := b.Delay(tc.attempt); got < tc.full/2 || got > tc.full {
				t.Fatalf("Delay(%d) = %v, outside [%v, %v]", tc.attempt, got, tc.full/2, tc.full)
			}
		}
	}
	if got := (Backoff{}).delay(0, 1); got != DefaultBackoffInitial {
		t.Errorf("zero Backoff first delay = %v, want %v", got, DefaultBackoffInitial)
	}
	if got := (Backoff{}).delay(100, 1); got != DefaultBackoffMax {
		t.Errorf("zero Backoff capped delay = %v, want %v", got, DefaultBackoffMax)
	}
	huge := Backoff{Initial: time.Second, Max: time.Duration(1<<63 - 1)}
	if got := huge.delay(200, 1); got <= 0 {
		t.Errorf("delay with a huge cap overflowed: %v", got)
	}
}

func TestClientArbitration(t *testing.T) {
	for _, tc := range []struct {
		name    string
		promote bool // server promotes the next-highest live client when the primary leaves
	}{
		{"spec", false},
		{"promote-on-leave", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoGoroutineLeak(t)
			ctx := testCtx(t)
			srv := newP4RTTestServer(t, nil)
			srv.set(func(s *p4rtTestServer) { s.promoteOnLeave = tc.promote })

			c1, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 10}})
			waitPrimary(t, c1)
			expectMastership(t, c1, "c1 primary", func(m Mastership) bool {
				return m.Primary && m.Status == codes.OK && m.ElectionID == ElectionID{Low: 10}
			})
			if err := c1.Write(ctx, []*p4v1.Update{teUpdate(p4v1.Update_INSERT, 1, 1)}); err != nil {
				t.Fatalf("primary c1 Write: %v", err)
			}

			c2, stop2 := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 20}})
			waitPrimary(t, c2)
			expectMastership(t, c1, "c1 demoted", func(m Mastership) bool {
				return !m.Primary && m.Status == codes.AlreadyExists && m.ElectionID == ElectionID{Low: 20}
			})
			if c1.IsPrimary() {
				t.Fatal("c1 still primary after c2 took over")
			}
			err := c1.Write(ctx, []*p4v1.Update{teUpdate(p4v1.Update_INSERT, 1, 2), teUpdate(p4v1.Update_INSERT, 1, 3)})
			we := asWriteError(t, err)
			if len(we.Failed) != 2 {
				t.Fatalf("backup Write: %d failed updates, want 2: %v", len(we.Failed), we)
			}
			for i, f := range we.Failed {
				if f.Index != i || f.Code != codes.PermissionDenied {
					t.Errorf("Failed[%d] = index %d code %v, want index %d PermissionDenied", i, f.Index, f.Code, i)
				}
			}
			if err := c2.Write(ctx, []*p4v1.Update{teUpdate(p4v1.Update_INSERT, 1, 2)}); err != nil {
				t.Fatalf("primary c2 Write: %v", err)
			}

			if n := c1.Stats().Elections; n != 1 {
				t.Errorf("c1 elected %d times, want 1", n)
			}
			stop2()
			if tc.promote {
				expectMastership(t, c1, "c1 primary again", func(m Mastership) bool {
					return m.Primary && m.Status == codes.OK && m.ElectionID == ElectionID{Low: 10}
				})
				waitPrimary(t, c1)
				// A second term on the same stream: what c2 wrote meanwhile
				// is for c1's owner to read back.
				if st := c1.Stats(); st.Elections != 2 || st.Arbitrations != 1 {
					t.Errorf("c1 stats %+v, want 2 elections on 1 arbitration", st)
				}
				if err := c1.Write(ctx, []*p4v1.Update{teUpdate(p4v1.Update_INSERT, 1, 3)}); err != nil {
					t.Fatalf("c1 Write after regaining mastership: %v", err)
				}
				return
			}
			// Spec §5: the switch remembers the highest id it has seen, so a
			// lower one is not promoted; all backups hear there is no primary.
			expectMastership(t, c1, "no primary", func(m Mastership) bool {
				return !m.Primary && m.Status == codes.NotFound && m.ElectionID == ElectionID{Low: 20}
			})
			if c1.IsPrimary() {
				t.Fatal("c1 primary although a higher id was seen")
			}
			// The old primary coming back with its id is primary again.
			c3, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 20}})
			waitPrimary(t, c3)
			expectMastership(t, c1, "c3 primary", func(m Mastership) bool {
				return !m.Primary && m.Status == codes.AlreadyExists
			})
		})
	}
}

func TestClientWithoutElectionIDIsNeverPrimary(t *testing.T) {
	checkNoGoroutineLeak(t)
	ctx := testCtx(t)
	srv := newP4RTTestServer(t, nil)

	reader, _ := startClient(t, Config{Addr: srv.Addr()})
	if err := reader.WaitConnected(ctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
	expectMastership(t, reader, "no primary", func(m Mastership) bool {
		return !m.Primary && m.Status == codes.NotFound
	})

	primary, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{High: 1, Low: 5}})
	waitPrimary(t, primary)
	expectMastership(t, reader, "another primary", func(m Mastership) bool {
		return !m.Primary && m.Status == codes.AlreadyExists && m.ElectionID == ElectionID{High: 1, Low: 5}
	})
	if err := primary.Write(ctx, inserts(3, 5)); err != nil {
		t.Fatalf("primary Write: %v", err)
	}

	if reader.IsPrimary() {
		t.Fatal("client without election id is primary")
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := reader.WaitPrimary(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitPrimary = %v, want DeadlineExceeded", err)
	}
	we := asWriteError(t, reader.Write(ctx, inserts(4, 1)))
	if len(we.Failed) != 1 || we.Failed[0].Code != codes.PermissionDenied {
		t.Fatalf("reader Write: %v, want one PermissionDenied", we)
	}
	got, err := reader.ReadAll(ctx, wildcardTables())
	if err != nil {
		t.Fatalf("reader ReadAll: %v", err)
	}
	if len(got) != 5 {
		t.Fatalf("reader read %d entries, want 5", len(got))
	}
}

func TestClientRefusedByServerRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		occupied bool // another client holds election id 5
		wantCode codes.Code
	}{
		{"unknown device", Config{DeviceID: 42, ElectionID: ElectionID{Low: 5}}, false, codes.NotFound},
		{"election id in use", Config{ElectionID: ElectionID{Low: 5}}, true, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoGoroutineLeak(t)
			ctx := testCtx(t)
			srv := newP4RTTestServer(t, nil)
			var stopHolder func()
			if tc.occupied {
				var holder *Client
				holder, stopHolder = startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 5}})
				waitPrimary(t, holder)
			}
			cfg := tc.cfg
			cfg.Addr = srv.Addr()
			c, _ := startClient(t, cfg)
			waitFor(t, "LastError", func() bool { return status.Code(c.LastError()) == tc.wantCode })
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			if err := c.WaitConnected(short); err == nil {
				t.Fatal("WaitConnected succeeded although the server refuses the client")
			}
			if tc.occupied {
				// The refusal is retried: once the id is free, the client gets in.
				stopHolder()
				waitPrimary(t, c)
				if err := c.LastError(); err != nil {
					t.Errorf("LastError after arbitration = %v, want nil", err)
				}
			}
		})
	}
}

func TestClientWriteBatchesAndWildcardRead(t *testing.T) {
	checkNoGoroutineLeak(t)
	ctx := testCtx(t)
	srv := newP4RTTestServer(t, nil)
	c, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 1}, MaxBatch: 1000})
	waitPrimary(t, c)

	updates := append(inserts(1, 1500), inserts(2, 1000)...)
	if err := c.Write(ctx, updates); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got, want := srv.BatchSizes(), []int{1000, 1000, 500}; !slices.Equal(got, want) {
		t.Fatalf("server saw batches %v, want %v", got, want)
	}

	var n int
	err := c.Read(ctx, wildcardTables(), func(e *p4v1.Entity) error {
		if e.GetTableEntry() == nil {
			t.Errorf("read a non-table entity: %v", e)
		}
		n++
		return nil
	})
	if err != nil || n != 2500 {
		t.Fatalf("wildcard Read: %d entities, err %v; want 2500", n, err)
	}
	one, err := c.ReadAll(ctx, []*p4v1.Entity{{Entity: &p4v1.Entity_TableEntry{TableEntry: &p4v1.TableEntry{TableId: 2}}}})
	if err != nil || len(one) != 1000 {
		t.Fatalf("table 2 ReadAll: %d entities, err %v; want 1000", len(one), err)
	}
	stopErr := errors.New("enough")
	n = 0
	err = c.Read(ctx, wildcardTables(), func(*p4v1.Entity) error {
		n++
		if n == 150 {
			return stopErr
		}
		return nil
	})
	if !errors.Is(err, stopErr) || n != 150 {
		t.Fatalf("Read with a stopping callback: err %v after %d entities, want %v after 150", err, n, stopErr)
	}
}

// TestClientWritePipelined: with WritesInFlight 2 one Write call keeps two
// requests in flight, applies everything, and reports failed updates by
// their index in the caller's slice whatever order the requests finished
// in.
func TestClientWritePipelined(t *testing.T) {
	checkNoGoroutineLeak(t)
	ctx := testCtx(t)
	srv := newP4RTTestServer(t, nil)
	var inflight, most atomic.Int32
	srv.beforeWrite = func() {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		// Give a second request the time to arrive.
		deadline := time.Now().Add(200 * time.Millisecond)
		for inflight.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	c, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 1}, MaxBatch: 10, WritesInFlight: 2})
	waitPrimary(t, c)
	updates := inserts(1, 100)
	// Duplicates inside their own batches, so they fail whatever order
	// the batches are applied in: indexes 15 (batch 1) and 87 (batch 8).
	updates[15] = updates[14]
	updates[87] = updates[80]
	err := c.Write(ctx, updates)
	var werr *WriteError
	if !errors.As(err, &werr) {
		t.Fatalf("Write = %v, want a *WriteError", err)
	}
	var idx []int
	for _, f := range werr.Failed {
		idx = append(idx, f.Index)
		if f.Code != codes.AlreadyExists || f.Update != updates[f.Index] {
			t.Errorf("failed update %d: code %v, update %v", f.Index, f.Code, f.Update)
		}
	}
	if !slices.Equal(idx, []int{15, 87}) {
		t.Errorf("failed indexes %v, want [15 87]", idx)
	}
	if m := most.Load(); m != 2 {
		t.Errorf("at most %d Writes in flight, want 2", m)
	}
	if got := len(srv.BatchSizes()); got != 10 {
		t.Errorf("%d requests, want 10", got)
	}
	n := 0
	if err := c.Read(ctx, wildcardTables(), func(*p4v1.Entity) error { n++; return nil }); err != nil || n != 98 {
		t.Errorf("read back %d entries (err %v), want 98", n, err)
	}
}

func TestClientWriteBatchesBySize(t *testing.T) {
	ctx := testCtx(t)
	srv := newP4RTTestServer(t, nil)
	c, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 1}})
	waitPrimary(t, c)

	// 120 updates of ~100 KB: 12 MB in all, more than any server accepts in
	// one message (4 MB by default), but well under MaxBatch updates.
	updates := inserts(1, 120)
	for _, u := range updates {
		u.GetEntity().GetTableEntry().Metadata = bytes.Repeat([]byte{0xab}, 100<<10)
	}
	if err := c.Write(ctx, updates); err != nil {
		t.Fatalf("Write: %v", err)
	}
	sizes := srv.BatchSizes()
	total := 0
	for _, s := range sizes {
		total += s
		if s*(100<<10) >= 4<<20 {
			t.Errorf("batch of %d updates is over 4 MB", s)
		}
	}
	if total != 120 || len(sizes) < 3 {
		t.Fatalf("batches %v: want at least 3 summing to 120", sizes)
	}
}

func TestClientWriteErrors(t *testing.T) {
	type fail struct {
		index int
		code  codes.Code
	}
	all := func(code codes.Code) []fail {
		var fs []fail
		for i := range 12 {
			fs = append(fs, fail{i, code})
		}
		return fs
	}
	for _, tc := range []struct {
		name      string
		mode      tsWriteErrMode
		force     codes.Code
		want      []fail
		wantErr   bool   // WriteError.Err set: details not usable
		errSubstr string // in WriteError.Err
	}{
		{
			name: "per-update details",
			mode: tsErrsSpec,
			want: []fail{{2, codes.AlreadyExists}, {5, codes.AlreadyExists}, {9, codes.AlreadyExists}},
		},
		{
			name: "PINS first failure then aborted",
			mode: tsErrsPINS,
			want: []fail{
				{2, codes.AlreadyExists}, {3, codes.Aborted},
				{5, codes.AlreadyExists}, {6, codes.Aborted}, {7, codes.Aborted},
				{9, codes.AlreadyExists}, {10, codes.Aborted}, {11, codes.Aborted},
			},
		},
		{
			name:      "detail count mismatch",
			mode:      tsErrsMismatch,
			want:      all(codes.Unknown),
			wantErr:   true,
			errSubstr: "not usable",
		},
		{
			name:    "top-level code without details",
			force:   codes.FailedPrecondition,
			want:    all(codes.FailedPrecondition),
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newP4RTTestServer(t, nil)
			c, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 1}, MaxBatch: 4})
			waitPrimary(t, c)
			// Entries 2, 5 and 9 exist already, so inserting them fails; the
			// batches of 4 put one failure in each batch.
			pre := []*p4v1.Update{teUpdate(p4v1.Update_INSERT, 1, 2), teUpdate(p4v1.Update_INSERT, 1, 5), teUpdate(p4v1.Update_INSERT, 1, 9)}
			if err := c.Write(ctx, pre); err != nil {
				t.Fatalf("setup Write: %v", err)
			}
			srv.set(func(s *p4rtTestServer) { s.errMode, s.forceWriteCode = tc.mode, tc.force })

			updates := inserts(1, 12)
			we := asWriteError(t, c.Write(ctx, updates))
			var got []fail
			for _, f := range we.Failed {
				got = append(got, fail{f.Index, f.Code})
				if f.Update != updates[f.Index] {
					t.Errorf("Failed index %d carries the wrong update", f.Index)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("failed updates %v, want %v", got, tc.want)
			}
			if we.Total != 12 {
				t.Errorf("Total = %d, want 12", we.Total)
			}
			if (we.Err != nil) != tc.wantErr || (tc.errSubstr != "" && !strings.Contains(we.Err.Error(), tc.errSubstr)) {
				t.Errorf("WriteError.Err = %v, want set=%v containing %q", we.Err, tc.wantErr, tc.errSubstr)
			}
			if tc.force != codes.OK && status.Code(we) != tc.force {
				t.Errorf("status.Code(WriteError) = %v, want %v", status.Code(we), tc.force)
			}
			if tc.mode == tsErrsSpec && tc.force == codes.OK {
				if f := we.Failed[0]; f.Space != "p4rt-test" || f.SpaceCode != int32(codes.AlreadyExists)+1000 || f.Message == "" {
					t.Errorf("target error space not kept: %+v", f)
				}
				if msg := we.Error(); !strings.Contains(msg, "[9] INSERT table_entry table_id=1: AlreadyExists") ||
					!strings.Contains(msg, "3 of 12 updates failed") {
					t.Errorf("WriteError.Error() = %q", msg)
				}
				if srv.NumEntries() != 12 {
					t.Errorf("server has %d entries, want 12: good updates of failed batches must apply", srv.NumEntries())
				}
			}
		})
	}
}

func TestClientWriteCancelled(t *testing.T) {
	srv := newP4RTTestServer(t, nil)
	c, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 1}, MaxBatch: 4})
	waitPrimary(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Every update must be accounted for: the first batch failed with
	// CANCELLED, the rest were never sent.
	err := c.Write(ctx, inserts(1, 10))
	we := asWriteError(t, err)
	if len(we.Failed) != 10 {
		t.Fatalf("%d failed updates, want 10: %v", len(we.Failed), we)
	}
	for i, f := range we.Failed {
		if f.Index != i || f.Code != codes.Canceled {
			t.Errorf("Failed[%d] = index %d code %v, want index %d Canceled", i, f.Index, f.Code, i)
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(%v, context.Canceled) = false", err)
	}
	if got := srv.BatchSizes(); len(got) > 1 {
		t.Errorf("server saw batches %v after cancellation, want at most one", got)
	}
}

func TestDecodeWriteStatus(t *testing.T) {
	batch := inserts(1, 3)
	detail := func(c codes.Code) *anypb.Any {
		a, err := anypb.New(&p4v1.Error{CanonicalCode: int32(c), Message: c.String()})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	notP4, _ := anypb.New(&emptypb.Empty{})
	for _, tc := range []struct {
		name      string
		st        *spb.Status
		wantIdx   []int
		wantCode  codes.Code // of the first failure
		wantWhy   string     // "" = details trusted
		batchBase int
	}{
		{"trusted", &spb.Status{Code: int32(codes.Unknown), Details: []*anypb.Any{detail(codes.OK), detail(codes.NotFound), detail(codes.OK)}},
			[]int{11}, codes.NotFound, "", 10},
		{"all OK details", &spb.Status{Code: int32(codes.Unknown), Details: []*anypb.Any{detail(codes.OK), detail(codes.OK), detail(codes.OK)}},
			[]int{0, 1, 2}, codes.Unknown, "details all OK", 0},
		{"foreign detail", &spb.Status{Code: int32(codes.Unknown), Details: []*anypb.Any{detail(codes.OK), notP4, detail(codes.OK)}},
			[]int{0, 1, 2}, codes.Unknown, "not usable", 0},
		{"too few details", &spb.Status{Code: int32(codes.Unknown), Details: []*anypb.Any{detail(codes.NotFound)}},
			[]int{0, 1, 2}, codes.Unknown, "1 details for 3 updates", 0},
		{"no details", &spb.Status{Code: int32(codes.ResourceExhausted), Message: "header list too large"},
			[]int{0, 1, 2}, codes.ResourceExhausted, "header list too large", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failed, why := decodeWriteStatus(status.FromProto(tc.st).Err(), batch, tc.batchBase)
			var idx []int
			for _, f := range failed {
				idx = append(idx, f.Index)
			}
			if !slices.Equal(idx, tc.wantIdx) {
				t.Fatalf("failed indexes %v, want %v", idx, tc.wantIdx)
			}
			if failed[0].Code != tc.wantCode {
				t.Errorf("code %v, want %v", failed[0].Code, tc.wantCode)
			}
			if (why == nil) != (tc.wantWhy == "") || (why != nil && !strings.Contains(why.Error(), tc.wantWhy)) {
				t.Errorf("why = %v, want %q", why, tc.wantWhy)
			}
		})
	}
}

func TestClientPipeline(t *testing.T) {
	ctx := testCtx(t)
	srv := newP4RTTestServer(t, nil)
	c, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 2}})
	backup, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 1}})
	waitPrimary(t, c)

	if _, ok, err := c.GetPipelineCookie(ctx); ok || err != nil {
		t.Fatalf("GetPipelineCookie before any push: ok=%v err=%v, want no pipeline and no error", ok, err)
	}
	info := &p4configv1.P4Info{PkgInfo: &p4configv1.PkgInfo{Name: "vpc_peering"}}
	const vac = p4v1.SetForwardingPipelineConfigRequest_VERIFY_AND_COMMIT
	steps := []struct {
		name       string
		cookie     uint64
		action     p4v1.SetForwardingPipelineConfigRequest_Action
		wantPushed bool
		wantPushes int
	}{
		{"first push", 0xc0ffee, vac, true, 1},
		{"same cookie skipped", 0xc0ffee, vac, false, 1},
		{"new cookie", 0xbeef, vac, true, 2},
		{"reconcile with same cookie skipped", 0xbeef, p4v1.SetForwardingPipelineConfigRequest_RECONCILE_AND_COMMIT, false, 2},
		{"verify passes through", 0xbeef, p4v1.SetForwardingPipelineConfigRequest_VERIFY, true, 2},
	}
	for _, s := range steps {
		pushed, err := c.SetPipeline(ctx, info, []byte("device-config"), s.cookie, s.action)
		if err != nil {
			t.Fatalf("%s: SetPipeline: %v", s.name, err)
		}
		if pushed != s.wantPushed || srv.Pushes() != s.wantPushes {
			t.Fatalf("%s: pushed=%v server pushes=%d, want %v and %d", s.name, pushed, srv.Pushes(), s.wantPushed, s.wantPushes)
		}
	}
	cookie, ok, err := c.GetPipelineCookie(ctx)
	if err != nil || !ok || cookie != 0xbeef {
		t.Fatalf("GetPipelineCookie = %#x, %v, %v; want 0xbeef", cookie, ok, err)
	}
	cfg, err := c.GetPipeline(ctx, p4v1.GetForwardingPipelineConfigRequest_ALL)
	if err != nil || cfg.GetP4Info().GetPkgInfo().GetName() != "vpc_peering" || string(cfg.GetP4DeviceConfig()) != "device-config" {
		t.Fatalf("GetPipeline(ALL) = %v, %v", cfg, err)
	}
	if _, err := backup.SetPipeline(ctx, info, nil, 0x1234, vac); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("backup SetPipeline error = %v, want PermissionDenied", err)
	}
}

func TestClientPacketIOAndDigests(t *testing.T) {
	checkNoGoroutineLeak(t)
	ctx := testCtx(t)
	srv := newP4RTTestServer(t, nil)
	primary, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 2}})
	waitPrimary(t, primary)
	backup, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 1}})
	if err := backup.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}

	if err := srv.SendPacketIn(&p4v1.PacketIn{Payload: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-primary.PacketIns():
		if string(p.GetPayload()) != "hello" {
			t.Fatalf("packet-in payload %q", p.GetPayload())
		}
	case <-ctx.Done():
		t.Fatal("no packet-in")
	}

	if err := srv.SendDigest(&p4v1.DigestList{DigestId: 7, ListId: 3}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-primary.Digests():
		if err := primary.AckDigest(ctx, d); err != nil {
			t.Fatalf("AckDigest: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("no digest")
	}
	waitFor(t, "digest ack", func() bool { return len(srv.Acks()) == 1 })
	if a := srv.Acks()[0]; a.GetDigestId() != 7 || a.GetListId() != 3 {
		t.Fatalf("ack = %v, want digest 7 list 3", a)
	}

	if err := backup.SendPacketOut(ctx, &p4v1.PacketOut{Payload: []byte("x")}); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("backup SendPacketOut = %v, want ErrNotPrimary", err)
	}
	if err := primary.SendPacketOut(ctx, &p4v1.PacketOut{Payload: []byte("out")}); err != nil {
		t.Fatalf("primary SendPacketOut: %v", err)
	}
	waitFor(t, "packet-out", func() bool { return len(srv.PacketOuts()) == 1 })
	if got := string(srv.PacketOuts()[0].GetPayload()); got != "out" {
		t.Fatalf("server got packet-out %q", got)
	}
}

func TestClientDropsWhenChannelsFull(t *testing.T) {
	c, err := New(Config{Addr: "127.0.0.1:1", DeviceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range mastershipBuffer + 4 {
		c.publishMastership(Mastership{ElectionID: ElectionID{Low: uint64(i)}})
	}
	if got := c.Stats().MastershipDropped; got != 4 {
		t.Fatalf("MastershipDropped = %d, want 4", got)
	}
	if m := <-c.Mastership(); m.ElectionID.Low != 4 {
		t.Fatalf("oldest kept event %v, want id 4: newest events must win", m.ElectionID)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestClientReconnect(t *testing.T) {
	checkNoGoroutineLeak(t)
	ctx := testCtx(t)
	srv := newP4RTTestServer(t, nil)
	c, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 1}})
	waitPrimary(t, c)
	if err := c.Write(ctx, inserts(1, 10)); err != nil {
		t.Fatalf("Write: %v", err)
	}

	srv.Stop()
	expectMastership(t, c, "stream lost", func(m Mastership) bool { return !m.Primary && m.Status == codes.Unavailable })
	if c.IsPrimary() {
		t.Fatal("still primary with the server down")
	}
	waitFor(t, "LastError", func() bool { return c.LastError() != nil })
	time.Sleep(200 * time.Millisecond) // a few failed attempts

	srv.Start()
	waitPrimary(t, c)
	expectMastership(t, c, "primary again", func(m Mastership) bool { return m.Primary })
	if err := c.Write(ctx, []*p4v1.Update{teUpdate(p4v1.Update_INSERT, 1, 100)}); err != nil {
		t.Fatalf("Write after reconnect: %v", err)
	}
	if err := c.LastError(); err != nil {
		t.Errorf("LastError after reconnect = %v, want nil", err)
	}
	if got := c.Stats().Arbitrations; got != 2 {
		t.Errorf("Arbitrations = %d, want 2", got)
	}
}

func TestClientStopNoLeak(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close bool // stop with Close instead of cancelling Run's context
	}{
		{"cancel", false},
		{"close", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoGoroutineLeak(t)
			ctx := testCtx(t)
			srv := newP4RTTestServer(t, nil)
			c, stop := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 1}})
			waitPrimary(t, c)
			if err := c.Write(ctx, inserts(1, 10)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadAll(ctx, wildcardTables()); err != nil {
				t.Fatal(err)
			}
			// A caller blocked waiting, with no deadline of its own, must be
			// released by the stop.
			blocked := make(chan error, 1)
			go func() {
				blocked <- c.wait(context.Background(), "never", func() bool { return false })
			}()

			if tc.close {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			}
			stop()
			if err := <-blocked; !errors.Is(err, ErrClosed) {
				t.Fatalf("blocked waiter got %v, want ErrClosed", err)
			}
			for range c.Mastership() { // closed by Run: the loop ends
			}
			if _, ok := <-c.PacketIns(); ok {
				t.Fatal("PacketIns not closed")
			}
			if err := c.Write(ctx, inserts(1, 1)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Write after stop = %v, want ErrClosed", err)
			}
			if err := c.Run(ctx); !errors.Is(err, ErrClosed) {
				t.Fatalf("Run after stop = %v, want ErrClosed", err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			srv.Stop()
		})
	}
}

// selfSigned makes a self-signed CA-capable certificate for
// "p4rt-test-switch" and 127.0.0.1, written as PEM files in dir.
func selfSigned(t *testing.T, dir, name string) (certFile, keyFile string, cert tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{"p4rt-test-switch"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, cert, pool
}

func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	srvCertFile, _, srvCert, _ := selfSigned(t, dir, "switch")
	cliCertFile, cliKeyFile, _, cliPool := selfSigned(t, dir, "controller")
	otherCA, _, _, _ := selfSigned(t, dir, "other")

	serverTLS := &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS12}
	serverMTLS := &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: cliPool}
	clientTLS := func(ca, cert, key string) *tls.Config {
		cfg, err := TLSConfig(ca, cert, key, "p4rt-test-switch")
		if err != nil {
			t.Fatalf("TLSConfig: %v", err)
		}
		return cfg
	}
	for _, tc := range []struct {
		name   string
		server *tls.Config
		client *tls.Config
		ok     bool
	}{
		{"plaintext", nil, nil, true},
		{"tls", serverTLS, clientTLS(srvCertFile, "", ""), true},
		{"mtls", serverMTLS, clientTLS(srvCertFile, cliCertFile, cliKeyFile), true},
		{"mtls without client cert", serverMTLS, clientTLS(srvCertFile, "", ""), false},
		{"plaintext client, tls server", serverTLS, nil, false},
		{"tls client, plaintext server", nil, clientTLS(srvCertFile, "", ""), false},
		{"untrusted server cert", serverTLS, clientTLS(otherCA, "", ""), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newP4RTTestServer(t, tc.server)
			c, _ := startClient(t, Config{Addr: srv.Addr(), ElectionID: ElectionID{Low: 1}, TLS: tc.client})
			if tc.ok {
				waitPrimary(t, c)
				if err := c.Write(ctx, inserts(1, 3)); err != nil {
					t.Fatalf("Write over %s: %v", tc.name, err)
				}
				return
			}
			waitFor(t, "a connection error", func() bool { return c.LastError() != nil })
			short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			if err := c.WaitConnected(short); err == nil {
				t.Fatal("connected although TLS settings do not match")
			}
			t.Logf("refused as expected: %v", c.LastError())
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _, _ := selfSigned(t, dir, "x")
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                  string
		ca, cert, key, substr string
	}{
		{"missing CA file", filepath.Join(dir, "nope.pem"), "", "", "read CA file"},
		{"CA file without PEM", junk, "", "", "no PEM certificate"},
		{"cert without key", certFile, certFile, "", "together"},
		{"bad key pair", certFile, certFile, junk, "load client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TLSConfig(tc.ca, tc.cert, tc.key, "")
			if err == nil || !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("TLSConfig error = %v, want one containing %q", err, tc.substr)
			}
		})
	}
	cfg, err := TLSConfig("", certFile, keyFile, "sw")
	if err != nil || len(cfg.Certificates) != 1 || cfg.RootCAs != nil || cfg.ServerName != "sw" {
		t.Fatalf("TLSConfig with system roots and client cert = %+v, %v", cfg, err)
	}
}
