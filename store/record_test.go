package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestAppendReadsBackEveryField(t *testing.T) {
	s := newTestStore(t)
	in := signupRecord("shop", "  Ada.Lovelace@Example.ORG ")
	in.ID, in.Hash, in.PrevHash = "forged", "forged", "forged" // the store decides these
	in.RecordedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	before := time.Now()
	got := mustAppend(t, s, in)

	want := in
	want.Email = "ada.lovelace@example.org"
	want.IP = "85.214.132.0"
	want.ID, want.RecordedAt, want.PrevHash, want.Hash = got.ID, got.RecordedAt, "", got.Hash
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Append returned\n%+v\nwant\n%+v", got, want)
	}
	if len(got.ID) != 26 || len(got.Hash) != 64 {
		t.Errorf("id %q hash %q: want 26 and 64 characters", got.ID, got.Hash)
	}
	if got.RecordedAt.Before(before) || got.RecordedAt.Location() != time.UTC {
		t.Errorf("recorded_at %v: want server UTC time after %v", got.RecordedAt, before)
	}
	recs := allRecords(t, s, "shop")
	if len(recs) != 1 || !reflect.DeepEqual(recs[0], got) {
		t.Fatalf("read back %+v\nwant %+v", recs, got)
	}
}

func TestAppendNormalises(t *testing.T) {
	s := newTestStore(t)
	tests := []struct {
		name     string
		change   func(*Record)
		check    func(Record) string
		wantJSON string
	}{
		{"ipv6 /48", func(r *Record) { r.IP = "2001:db8:1234:5678::1" }, func(r Record) string { return r.IP }, "2001:db8:1234::"},
		{"ipv4-mapped unmapped", func(r *Record) { r.IP = "::ffff:85.214.132.117" }, func(r Record) string { return r.IP }, "85.214.132.0"},
		{"already truncated", func(r *Record) { r.IP = "85.214.132.0" }, func(r Record) string { return r.IP }, "85.214.132.0"},
		{"garbage ip dropped", func(r *Record) { r.IP = "not an ip" }, func(r Record) string { return r.IP }, ""},
		{"invalid utf-8 replaced", func(r *Record) { r.UserAgent = "a\xffb" }, func(r Record) string { return r.UserAgent }, "a\uFFFDb"},
		{"email trimmed and lower-cased", func(r *Record) { r.Email = "\tBOB@Example.COM\n" }, func(r Record) string { return r.Email }, "bob@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRecord("shop")
			tt.change(&r)
			got := mustAppend(t, s, r)
			if v := tt.check(got); v != tt.wantJSON {
				t.Errorf("got %q, want %q", v, tt.wantJSON)
			}
		})
	}
	mustVerify(t, s)
}

func TestTruncateIP(t *testing.T) {
	for in, want := range map[string]string{
		"85.214.132.117":        "85.214.132.0",
		"10.0.0.255":            "10.0.0.0",
		"2a01:4f8:1c1c:abcd::1": "2a01:4f8:1c1c::",
		"::ffff:1.2.3.4":        "1.2.3.0",
		"fe80::1%eth0":          "fe80::",
	} {
		if got := TruncateIP(netip.MustParseAddr(in)); got != want {
			t.Errorf("TruncateIP(%s) = %q, want %q", in, got, want)
		}
	}
	if got := TruncateIP(netip.Addr{}); got != "" {
		t.Errorf("TruncateIP(invalid) = %q, want empty", got)
	}
}

func TestChainPerSite(t *testing.T) {
	s := newTestStore(t)
	prev := map[string]string{}
	for i := 0; i < 10; i++ {
		site := []string{"shop", "blog"}[i%2]
		r := mustAppend(t, s, testRecord(site))
		if r.PrevHash != prev[site] {
			t.Fatalf("record %d on %s: prev_hash %q, want %q (the previous record of the same site)", i, site, r.PrevHash, prev[site])
		}
		prev[site] = r.Hash
	}
	rep := mustVerify(t, s)
	if rep.Records != 10 || rep.Sites["shop"].Records != 5 || rep.Sites["blog"].Head != prev["blog"] {
		t.Fatalf("verify report %+v", rep)
	}
	counts, err := s.Counts()
	if err != nil || counts["shop"] != 5 || counts["blog"] != 5 {
		t.Fatalf("Counts = %v, %v", counts, err)
	}
}

func TestAppendUnknownSite(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.Append(context.Background(), testRecord("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Append to an unknown site: %v, want ErrNotFound", err)
	}
	mustVerify(t, s)
}

func TestConcurrentAppendsAllAcked(t *testing.T) {
	s := newTestStore(t)
	const writers, each = 32, 40
	ids := make(chan string, writers*each)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r, err := s.Append(context.Background(), testRecord([]string{"shop", "blog"}[i%2]))
				if err != nil {
					t.Error(err)
					return
				}
				ids <- r.ID
			}
		}()
	}
	wg.Wait()
	close(ids)
	stored := map[string]bool{}
	for _, site := range []string{"shop", "blog"} {
		var last string
		for _, r := range allRecords(t, s, site) {
			if r.ID <= last {
				t.Fatalf("ids out of order: %s after %s", r.ID, last)
			}
			last = r.ID
			stored[r.ID] = true
		}
	}
	n := 0
	for id := range ids {
		n++
		if !stored[id] {
			t.Errorf("acked record %s is not stored", id)
		}
	}
	if n != writers*each || len(stored) != n {
		t.Fatalf("%d acked, %d stored, want %d", n, len(stored), writers*each)
	}
	mustVerify(t, s)
}

func TestAppendCancelledContextStoresNothing(t *testing.T) {
	s := newTestStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, testRecord("shop")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: %v", err)
	}
	if n := len(allRecords(t, s, "shop")); n != 0 {
		t.Fatalf("%d records stored, want 0", n)
	}
}

func TestSuppressedSignupStoresNothing(t *testing.T) {
	s := newTestStore(t)
	mustAppend(t, s, signupRecord("shop", "eve@example.org"))
	if _, err := s.Erase("test", SubjectRef{Email: "Eve@Example.org"}); err != nil {
		t.Fatal(err)
	}
	before := allRecords(t, s, "shop")
	_, err := s.Append(context.Background(), signupRecord("blog", " EVE@example.org"))
	if !errors.Is(err, ErrSuppressed) {
		t.Fatalf("signup of an erased address: %v, want ErrSuppressed", err)
	}
	if got := allRecords(t, s, "blog"); len(got) != 0 {
		t.Fatalf("blog has %d records after a suppressed signup, want 0", len(got))
	}
	if after := allRecords(t, s, "shop"); len(after) != len(before) {
		t.Fatalf("shop changed: %d -> %d records", len(before), len(after))
	}
	var audit []AuditEntry
	s.AuditLog(time.Time{}, time.Time{}, func(e AuditEntry) error {
		if e.Action != "erase" {
			audit = append(audit, e)
		}
		return nil
	})
	if len(audit) != 1 || audit[0].Action != "suppressed_signup" || audit[0].Detail != "site=blog" {
		t.Fatalf("audit log %+v, want one suppressed_signup entry without the address", audit)
	}
	// Any other record naming the address, whatever its source, is stored
	// already erased: the address, name, visitor id, IP and agent never
	// reach the file again.
	for _, source := range []string{"api", "banner", "preferences", "unsubscribe", "admin"} {
		r := signupRecord("blog", "eve@example.org")
		r.Source = source
		got := mustAppend(t, s, r)
		if !got.Erased || got.Email != "" || got.Name != "" || got.VisitorID != "" || got.IP != "" || got.UserAgent != "" {
			t.Errorf("source %s: stored %+v, want it erased", source, got)
		}
	}
	recs, st, err := s.Subject("eve@example.org")
	if err != nil || len(recs) != 6 || !st.Suppressed {
		t.Fatalf("look-up after: %d records, %+v, %v", len(recs), st, err)
	}
	for _, r := range recs {
		if !r.Erased || r.Email != "" {
			t.Errorf("record %s in clear: %+v", r.ID, r)
		}
	}
	// The erased person's browser (visitor id) is suppressed too: a banner
	// choice from it is stored erased, a new address signed up from it is
	// stored without the visitor id.
	banner := testRecord("blog")
	banner.VisitorID = "v_eve@example.org"
	if got := mustAppend(t, s, banner); !got.Erased || got.VisitorID != "" || got.IP != "" {
		t.Errorf("banner choice of an erased visitor id stored %+v", got)
	}
	fresh := signupRecord("blog", "new@example.org")
	fresh.VisitorID = "v_eve@example.org"
	if got := mustAppend(t, s, fresh); got.Erased || got.Email != "new@example.org" || got.VisitorID != "" {
		t.Errorf("new address from an erased visitor id stored %+v", got)
	}
	mustVerify(t, s)
}

func TestRecordsFilters(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Options{Now: clock.Now})
	var made []Record
	for i := 0; i < 12; i++ {
		r := testRecord("shop")
		r.Country = []string{"DE", "US", "FR"}[i%3]
		r.Regime = map[string]string{"DE": "opt-in", "US": "notice", "FR": "opt-in"}[r.Country]
		if i%4 == 0 {
			r.Choices = map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "granted", "newsletter": "denied"}
		}
		if i == 5 {
			r = signupRecord("shop", "ada@example.org")
		}
		made = append(made, mustAppend(t, s, r))
		clock.Add(time.Hour)
	}
	mustAppend(t, s, signupRecord("blog", "ada@example.org"))
	ids := func(q Query) string {
		var out []int
		err := s.Records("shop", q, func(r Record) error {
			for i, m := range made {
				if m.ID == r.ID {
					out = append(out, i)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(out)
	}
	at := func(h int) time.Time { return made[0].RecordedAt.Add(time.Duration(h) * time.Hour) }
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"all", Query{}, "[0 1 2 3 4 5 6 7 8 9 10 11]"},
		{"from inclusive", Query{From: at(9)}, "[9 10 11]"},
		{"to exclusive", Query{To: at(2)}, "[0 1]"},
		{"from and to", Query{From: at(3), To: at(5)}, "[3 4]"},
		{"country", Query{Country: "US"}, "[1 4 7 10]"},
		{"regime", Query{Regime: "notice", To: at(5)}, "[1 4]"},
		{"purpose granted", Query{Purpose: "marketing"}, "[0 4 8]"},
		{"email, normalised", Query{Email: " ADA@example.org"}, "[5]"},
		{"email with period", Query{Email: "ada@example.org", From: at(6)}, "[]"},
		{"no match", Query{Country: "JP"}, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(tt.q); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	if err := s.Records("nope", Query{}, func(Record) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Records of an unknown site: %v", err)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Records("shop", Query{}, func(Record) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("fn's error: got %v after %d calls, want it returned after 1", err, n)
	}
}

func TestRecordsStreamsInChunks(t *testing.T) {
	s := newTestStore(t)
	const n = 3*chunkKeys + 17
	for i := 0; i < n; i += 500 {
		var wg sync.WaitGroup
		for j := i; j < min(i+500, n); j++ {
			wg.Add(1)
			go func() { defer wg.Done(); mustAppend(t, s, testRecord("shop")) }()
		}
		wg.Wait()
	}
	// Appends during the scan must not disturb it: each chunk is its own
	// read transaction.
	got, last := 0, ""
	err := s.Records("shop", Query{}, func(r Record) error {
		if r.ID <= last {
			return fmt.Errorf("%s after %s", r.ID, last)
		}
		last = r.ID
		got++
		if got%chunkKeys == 0 {
			mustAppend(t, s, testRecord("blog"))
		}
		return nil
	})
	if err != nil || got != n {
		t.Fatalf("streamed %d records (%v), want %d", got, err, n)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestCloseCommitsQueuedRecords closes the ledger while writers are
// appending: every Append either returns its stored record, which is there
// after reopening, or ErrClosed, and nothing hangs.
func TestCloseCommitsQueuedRecords(t *testing.T) {
	s := newTestStore(t)
	path := s.Path()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r, err := s.Append(context.Background(), testRecord("shop"))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, r.ID)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stored := map[string]bool{}
	for _, r := range allRecords(t, s, "shop") {
		stored[r.ID] = true
	}
	for _, id := range acked {
		if !stored[id] {
			t.Fatalf("acknowledged record %s lost by Close", id)
		}
	}
	if len(acked) == 0 || len(stored) != len(acked) {
		t.Fatalf("%d acknowledged, %d stored", len(acked), len(stored))
	}
	mustVerify(t, s)
}
