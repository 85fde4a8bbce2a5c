package boltstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p4mesh/p4mesh/store"
	"github.com/p4mesh/p4mesh/store/boltstore"
	"github.com/p4mesh/p4mesh/store/storetest"
)

func open(t testing.TB, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "store.db")
		return func() store.Backend { return open(t, path) }
	})
}

func TestFileModeAndLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s := open(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("store file mode %v, want 0600", m)
	}
	_, err = boltstore.Open(path, boltstore.Options{LockTimeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "another process holds it") || !strings.Contains(err.Error(), path) {
		t.Errorf("second Open of a held store: %v, want an error saying another process holds %s", err, path)
	}
	// The failed Open left the holder working.
	if _, err := s.Commit(t.Context(), []store.Op{{Key: "k", Value: []byte("v")}}); err != nil {
		t.Errorf("Commit after a refused second Open: %v", err)
	}
	s.Close()
	s = open(t, path)
	s.Close()
}

func TestNotAStore(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("theirs")); return err })
	db.Close()
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("not a database\n", 1000)), 0o600)
	for path, want := range map[string]string{
		other:   "not a p4mesh store",
		garbage: garbage,
	} {
		s, err := boltstore.Open(path, boltstore.Options{})
		if err == nil {
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%s): %v, want an error saying %q", path, err, want)
		}
	}
}

// TestGroupCommit: concurrent commits share transactions, hence fsyncs.
func TestGroupCommit(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "store.db"))
	defer s.Close()
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := range 8 {
				if _, err := s.Commit(t.Context(), []store.Op{{Key: fmt.Sprint(w, "/", i), Value: []byte("v")}}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	t.Logf("%d commits in %d write transactions", st.Commits, st.Groups)
	if st.Commits != 64*8 || st.Groups == 0 || st.Groups >= st.Commits {
		t.Errorf("stats %+v: want 512 commits in fewer write transactions", st)
	}
}

// waitQueued waits until n goroutines wait in Commit for the commit loop.
func waitQueued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(storetest.Deadline)
	buf := make([]byte, 1<<20)
	for {
		all := string(buf[:runtime.Stack(buf, true)])
		got := 0
		for _, g := range strings.Split(all, "\n\n") {
			if strings.Contains(g, "[select") && strings.Contains(g, "boltstore.(*Store).Commit(") {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d commits queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFailingOpInGroup: an op failing inside a group commit fails its own
// commit, whole, and no other: they are all applied, once each.
func TestFailingOpInGroup(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "store.db"))
	defer s.Close()
	_, start := storetest.MustLoad(t, s)
	gate, inGate := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	defer release() // before Close, if the test fails early
	var (
		mu      sync.Mutex
		applied = map[string]int{}
	)
	s.SetApplyHook(func(key string) error {
		if key == "gate" {
			close(inGate)
			<-gate
		}
		mu.Lock()
		applied[key]++
		mu.Unlock()
		if key == "poison" {
			return errors.New("injected failure")
		}
		return nil
	})
	gateDone := make(chan error)
	go func() {
		_, err := s.Commit(t.Context(), []store.Op{{Key: "gate", Value: []byte("g")}})
		gateDone <- err
	}()
	// The loop holds the gate commit in its transaction: the others queue
	// behind it and make the next group.
	<-inGate
	const others = 9
	var wg sync.WaitGroup
	errs := make([]error, others+1)
	for i := range others + 1 {
		if i == others {
			// The failing commit queues last, so that the group's pass
			// applies others before it fails: a channel's senders are
			// taken in the order they blocked.
			waitQueued(t, others)
		}
		wg.Go(func() {
			ops := []store.Op{{Key: fmt.Sprintf("ok%d", i), Value: []byte("v")}}
			if i == others {
				ops = []store.Op{{Key: "partner", Value: []byte("p")}, {Key: "poison", Value: []byte("x")}}
			}
			_, errs[i] = s.Commit(t.Context(), ops)
		})
	}
	waitQueued(t, others+1)
	release()
	if err := <-gateDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs[:others] {
		if err != nil {
			t.Errorf("commit ok%d, grouped with a failing one: %v", i, err)
		}
	}
	if err := errs[others]; err == nil || !strings.Contains(err.Error(), `"poison"`) || !strings.Contains(err.Error(), "injected failure") {
		t.Errorf("failing commit: %v, want the injected failure on key poison", err)
	}
	items, rev := storetest.MustLoad(t, s)
	if _, ok := items["partner"]; ok {
		t.Errorf("half of the failing commit landed: partner is in the store")
	}
	for i := range others {
		if _, ok := items[fmt.Sprintf("ok%d", i)]; !ok {
			t.Errorf("ok%d is missing", i)
		}
	}
	if rev != start+others+1 {
		t.Errorf("revision %d after %d commits from %d", rev, others+1, start)
	}
	// The group ran, failed, and was retried one commit at a time: some
	// other commit's op was applied twice (once rolled back), proving the
	// poison shared a transaction with others.
	mu.Lock()
	extra := -others
	for i := range others {
		extra += applied[fmt.Sprintf("ok%d", i)]
	}
	mu.Unlock()
	if extra == 0 {
		t.Errorf("applied %v: the failing commit was never in a group", applied)
	}
	if st := s.Stats(); st.Commits != others+1 {
		t.Errorf("stats %+v, want %d commits", st, others+1)
	}
	got := storetest.Collect(t, s, start, others+1)
	for i, b := range got {
		if b.Rev != start+uint64(i)+1 {
			t.Errorf("watch batch %d at revision %d, want %d", i, b.Rev, start+uint64(i)+1)
		}
		for _, op := range b.Ops {
			if op.Key == "poison" || op.Key == "partner" {
				t.Errorf("watch shows the failed commit at revision %d", b.Rev)
			}
		}
	}
}

func TestWatchCompactedAndClosed(t *testing.T) {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "store.db"), boltstore.Options{History: 4})
	if err != nil {
		t.Fatal(err)
	}
	_, start := storetest.MustLoad(t, s)
	for i := range 10 {
		if _, err := s.Commit(t.Context(), []store.Op{{Key: fmt.Sprint(i), Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range s.Watch(t.Context(), start) {
		if !errors.Is(err, store.ErrCompacted) {
			t.Errorf("watch from a revision past the history: %v, want ErrCompacted", err)
		}
		break
	}
	if got := storetest.Collect(t, s, start+6, 4); got[0].Rev != start+7 || got[3].Rev != start+10 {
		t.Errorf("watch over the kept history: %d…%d", got[0].Rev, got[3].Rev)
	}
	for _, err := range s.Watch(t.Context(), start+11) {
		if err == nil || !strings.Contains(err.Error(), "at revision") {
			t.Errorf("watch from a future revision: %v", err)
		}
		break
	}
	done := make(chan error, 1)
	go func() {
		for _, err := range s.Watch(t.Context(), start+10) {
			done <- err
			return
		}
		done <- nil
	}()
	s.Close()
	if err := <-done; !errors.Is(err, store.ErrClosed) {
		t.Errorf("watch on a closing store ended with %v, want ErrClosed", err)
	}
	if _, err := s.Commit(t.Context(), []store.Op{{Key: "late", Value: []byte("v")}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Commit after Close: %v, want ErrClosed", err)
	}
}

const crashEnv = "BOLTSTORE_CRASH_CHILD"

// TestHelperProcess is the child of TestCrash: it commits from 8
// goroutines until killed and prints each outcome as it learns it.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("the child process of TestCrash")
	}
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		fmt.Printf("open %v\n", err)
		os.Exit(1)
	}
	round := os.Getenv(crashEnv + "_ROUND")
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("r%s-g%d-%d", round, g, i)
				ops := []store.Op{{Key: k, Value: []byte("v:" + k)}, {Key: k + "-b", Value: []byte("b")}}
				if i%10 == 9 {
					ops[1].Key = k // refused: a key twice
				}
				rev, err := s.Commit(context.Background(), ops)
				out.Lock()
				if err != nil {
					fmt.Printf("refused %s\n", k)
				} else {
					fmt.Printf("ok %d %s\n", rev, k)
				}
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrash kills a process mid-burst of commits, three times over the
// same file: every acknowledged commit is there after each restart, none
// that was refused is, and the file passes bbolt's consistency check.
func TestCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	acked := map[string]uint64{}
	var refused []string
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), crashEnv+"="+path, crashEnv+"_ROUND="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		killed := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "ok":
				rev, _ := strconv.ParseUint(f[1], 10, 64)
				acked[f[2]] = rev
			case len(f) == 2 && f[0] == "refused":
				refused = append(refused, f[1])
			default:
				t.Fatalf("child said %q", sc.Text())
			}
			// Kill at a different point of the burst each round.
			if n++; n == 200+150*round && !killed {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, not killed", round, err)
		}

		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		err = db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		})
		db.Close()
		if err != nil {
			t.Fatalf("round %d: bbolt check after kill: %v", round, err)
		}

		s := open(t, path)
		items, rev := storetest.MustLoad(t, s)
		for k, r := range acked {
			if string(items[k]) != "v:"+k || string(items[k+"-b"]) != "b" {
				t.Errorf("round %d: %s, acknowledged at revision %d, is missing", round, k, r)
			}
			if r > rev {
				t.Errorf("round %d: %s acknowledged at revision %d, the store is at %d", round, k, r, rev)
			}
		}
		for _, k := range refused {
			if _, ok := items[k]; ok {
				t.Errorf("round %d: refused %s is in the store", round, k)
			}
		}
		s.Close()
		t.Logf("round %d: %d acknowledged, %d refused so far; store at revision %d with %d items", round, len(acked), len(refused), rev, len(items))
	}
}

// TestHistoryBytes: a batch larger than Options.HistoryBytes (the start's
// import of a whole configuration) is not kept for watchers, and smaller
// ones push the oldest out; a watcher from before a dropped batch is told
// to Load again, and one after it gets what was kept.
func TestHistoryBytes(t *testing.T) {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "store.db"), boltstore.Options{HistoryBytes: 10 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, start := storetest.MustLoad(t, s)
	var big []store.Op
	for i := range 1000 {
		big = append(big, store.Op{Key: fmt.Sprintf("big/%04d", i), Value: make([]byte, 100)})
	}
	bigRev, err := s.Commit(t.Context(), big)
	if err != nil {
		t.Fatal(err)
	}
	if n, size, _ := s.HistoryHeld(); n != 0 || size != 0 {
		t.Errorf("after a batch over the bound: history holds %d batches, %d bytes, want none", n, size)
	}
	for _, err := range s.Watch(t.Context(), start) {
		if !errors.Is(err, store.ErrCompacted) {
			t.Errorf("watch from before the dropped batch: %v, want ErrCompacted", err)
		}
		break
	}
	for i := range 100 {
		if _, err := s.Commit(t.Context(), []store.Op{{Key: fmt.Sprint("small/", i), Value: make([]byte, 200)}}); err != nil {
			t.Fatal(err)
		}
	}
	n, size, dead := s.HistoryHeld()
	if size > 10<<10 || n < 10 || n >= 100 {
		t.Errorf("after 100 batches of 200 bytes: history holds %d batches, %d bytes, want 10 to 99 within 10 KiB", n, size)
	}
	if dead > 10<<10 {
		t.Errorf("history array references %d bytes of dropped batches, want at most the bound", dead)
	}
	last := bigRev + 100
	got := storetest.Collect(t, s, last-uint64(n), n)
	if got[0].Rev != last-uint64(n)+1 || got[n-1].Rev != last {
		t.Errorf("watch over the kept history: %d…%d, want %d…%d", got[0].Rev, got[n-1].Rev, last-uint64(n)+1, last)
	}
	for _, err := range s.Watch(t.Context(), last-uint64(n)-1) {
		if !errors.Is(err, store.ErrCompacted) {
			t.Errorf("watch from just before the kept history: %v, want ErrCompacted", err)
		}
		break
	}
}
