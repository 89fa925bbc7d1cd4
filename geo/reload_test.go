package geo

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// lockedBuffer collects log output written from Watch's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// writeVersion writes one version of the test database: every address of
// reloadAddrs maps to country, and the build date tells versions apart.
func writeVersion(t *testing.T, path, country string, maxMindStyle bool, built time.Time) {
	t.Helper()
	rec := ipLocationRec(country)
	if maxMindStyle {
		rec = maxMindRec(country, false, country, false)
	}
	writeDBBuilt(t, path, maxMindStyle, built, []network{
		{"85.214.0.0/15", rec},
		{"2a00:1450::/32", rec},
	})
}

var reloadAddrs = []netip.Addr{
	netip.MustParseAddr("85.214.132.117"),
	netip.MustParseAddr("2a00:1450:4001::1"),
	netip.MustParseAddr("::ffff:85.214.1.1"),
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestReloadUnderConcurrentLookups replaces the file on disk while
// goroutines look up and a SIGHUP-style Reload loop runs: Watch picks up
// each new version, a broken or missing file keeps the loaded database and
// is logged once, and no lookup ever fails or mixes two versions.
func TestReloadUnderConcurrentLookups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	// Each version's build date belongs to its country, so a lookup that
	// mixed two versions would be caught.
	versions := map[string]string{"DE": "2024-01-01", "FR": "2024-02-01", "US": "2024-03-01"}
	writeVersion(t, path, "DE", false, time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC))

	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		l.Watch(ctx, 5*time.Millisecond, log)
	}()

	var (
		stop    atomic.Bool
		lookups atomic.Int64
		bad     atomic.Int64
		badMsg  atomic.Value
		wg      sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := g; !stop.Load(); i++ {
				r := l.Lookup(reloadAddrs[i%len(reloadAddrs)])
				lookups.Add(1)
				if date, ok := versions[r.Country]; !ok || r.BuildDate != date || r.Source != SourceGeoIP {
					bad.Add(1)
					badMsg.Store(r)
				}
			}
		})
	}
	var sighups, sighupErrs atomic.Int64
	wg.Go(func() { // the server's SIGHUP handler
		for !stop.Load() {
			if err := l.Reload(); err != nil {
				sighupErrs.Add(1)
			}
			sighups.Add(1)
			time.Sleep(time.Millisecond)
		}
	})
	country := func() string { return l.Lookup(reloadAddrs[0]).Country }

	waitFor(t, "DE", func() bool { return country() == "DE" })

	writeVersion(t, path, "FR", false, time.Date(2024, 2, 1, 12, 0, 0, 0, time.UTC))
	waitFor(t, "FR after replacing the file", func() bool { return country() == "FR" })

	// A broken file: the loaded database stays, one error is logged.
	writeAtomically(t, path, func(f *os.File) error {
		_, err := f.WriteString("half a download")
		return err
	})
	waitFor(t, "the reload error in the log", func() bool {
		return strings.Contains(logs.String(), "reloading the country database failed")
	})
	errs := sighupErrs.Load()
	waitFor(t, "a failed SIGHUP reload", func() bool { return sighupErrs.Load() > errs })
	time.Sleep(50 * time.Millisecond) // ten more polls
	if n := strings.Count(logs.String(), "reloading the country database failed"); n != 1 {
		t.Errorf("the broken file was logged %d times, want once:\n%s", n, logs.String())
	}
	if got := country(); got != "FR" {
		t.Errorf("after a broken file: %q, want FR kept", got)
	}

	// A missing file: the same.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stat error in the log", func() bool {
		return strings.Contains(logs.String(), "cannot read the country database")
	})
	errs = sighupErrs.Load()
	waitFor(t, "a failed SIGHUP reload", func() bool { return sighupErrs.Load() > errs })
	time.Sleep(50 * time.Millisecond)
	if n := strings.Count(logs.String(), "cannot read the country database"); n != 1 {
		t.Errorf("the missing file was logged %d times, want once", n)
	}
	if got := country(); got != "FR" {
		t.Errorf("after removing the file: %q, want FR kept", got)
	}

	// A new version in the other layout.
	writeVersion(t, path, "US", true, time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC))
	waitFor(t, "US after the file came back", func() bool { return country() == "US" })
	if got := l.BuildDate(); got != "2024-03-01" {
		t.Errorf("BuildDate = %q", got)
	}

	stop.Store(true)
	wg.Wait()
	cancel()
	<-watchDone

	if n := bad.Load(); n > 0 {
		t.Errorf("%d of %d lookups failed or mixed versions, e.g. %+v", n, lookups.Load(), badMsg.Load())
	}
	if lookups.Load() < 1000 || sighups.Load() < 3 {
		t.Errorf("too little happened: %d lookups, %d reloads (%d failed)", lookups.Load(), sighups.Load(), sighupErrs.Load())
	}
	out := logs.String()
	for _, a := range []string{"85.214", "2a00:1450"} {
		if strings.Contains(out, a) {
			t.Errorf("the log holds an address:\n%s", out)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReloadBrokenFileKeepsDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	writeVersion(t, path, "DE", false, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	l := openTestLocator(t, path)
	writeAtomically(t, path, func(f *os.File) error {
		_, err := f.Write([]byte{0xab, 0xcd, 0xef})
		return err
	})
	err := l.Reload()
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Reload of a broken file: %v, want an error naming %s", err, path)
	}
	if got := l.Lookup(reloadAddrs[0]); got.Country != "DE" || got.BuildDate != "2024-01-01" {
		t.Errorf("after a failed Reload: %+v", got)
	}
	// An ASN database is readable but not a country database.
	writeDB(t, path, false, []network{{"85.214.0.0/15", mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(6724)}}})
	if err := l.Reload(); err == nil {
		t.Error("Reload accepted an ASN database")
	}
	if got := l.Lookup(reloadAddrs[0]); got.Country != "DE" {
		t.Errorf("after reloading an ASN database: %+v", got)
	}
}

// TestOldDatabaseLivesWhileUsed checks that a database swapped out while a
// lookup still holds it keeps answering, and is freed once nothing holds it.
func TestOldDatabaseLivesWhileUsed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	writeVersion(t, path, "DE", false, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	l := openTestLocator(t, path)

	old := l.cur.Load() // what a lookup in flight holds
	writeVersion(t, path, "FR", false, time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC))
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := l.Lookup(reloadAddrs[0]).Country; got != "FR" {
		t.Errorf("new lookups see %q, want FR", got)
	}
	if got := old.lookup(reloadAddrs[0]); got.Country != "DE" || got.BuildDate != "2024-01-01" {
		t.Errorf("the lookup in flight sees %+v, want DE of 2024-01-01", got)
	}
	freed := weak.Make(old)
	old = nil
	for i := 0; i < 10 && freed.Value() != nil; i++ {
		runtime.GC()
	}
	if freed.Value() != nil {
		t.Error("the old database was not freed")
	}
}

// TestFileRewrittenInPlace: truncating and rewriting the file in place (cp
// over it) cannot reach the loaded database, which is a copy in memory.
func TestFileRewrittenInPlace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "country.mmdb")
	writeVersion(t, path, "DE", false, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	next := filepath.Join(dir, "next.mmdb")
	writeVersion(t, next, "FR", false, time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC))
	l := openTestLocator(t, path)
	l.Lookup(reloadAddrs[0])

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	for _, a := range reloadAddrs {
		if got := l.Lookup(a).Country; got != "DE" {
			t.Errorf("after truncating the file: %s is %q, want DE", a, got)
		}
	}
	if err := l.Reload(); err == nil {
		t.Error("Reload accepted an empty file")
	}
	b, err := os.ReadFile(next)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil { // same inode
		t.Fatal(err)
	}
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := l.Lookup(reloadAddrs[0]).Country; got != "FR" {
		t.Errorf("after rewriting in place and reloading: %q, want FR", got)
	}
}

func TestWatchReturns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	writeVersion(t, path, "DE", false, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, p := range []string{"", path} {
		l := openTestLocator(t, p)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.Watch(ctx, time.Millisecond, slog.New(slog.DiscardHandler)); close(done) }()
		time.Sleep(5 * time.Millisecond)
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Watch(%q) did not return after cancel", p)
		}
	}

	// Close ends Watch too.
	l := openTestLocator(t, path)
	done := make(chan struct{})
	go func() { l.Watch(context.Background(), time.Millisecond, nil); close(done) }()
	l.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after Close")
	}
	if err := l.Reload(); !errors.Is(err, ErrClosed) {
		t.Errorf("Reload after Close: %v", err)
	}
}
