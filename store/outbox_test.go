package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// mailItems is an AppendOptions that queues one mail per record, capped at
// 3 a day per address like the confirmation mails.
func mailItems(rec Record) ([]OutboxItem, error) {
	p, _ := json.Marshal(map[string]string{"to": rec.Email})
	return []OutboxItem{{Kind: "mail", Key: "k-" + rec.Email, Payload: p, Cap: OutboxCap{N: 3, Per: 24 * time.Hour}}}, nil
}

func TestOutboxItemCommittedWithRecord(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Options{Now: clock.Now})
	rec, items, err := s.AppendWith(context.Background(), signupRecord("shop", "Ada@Example.org"), AppendOptions{Outbox: mailItems})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 {
		t.Fatalf("items = %+v, want one", items)
	}
	it := items[0]
	if it.Record != rec.ID || it.Site != "shop" || it.State != OutboxQueued || it.Attempts != 0 ||
		!it.CreatedAt.Equal(rec.RecordedAt) || !it.NextAttemptAt.Equal(rec.RecordedAt) || len(it.ID) != 16 {
		t.Fatalf("item %+v does not belong to record %s at %v", it, rec.ID, rec.RecordedAt)
	}
	select {
	case <-s.OutboxWake():
	default:
		t.Fatal("no wake-up after a commit that queued an item")
	}

	due, _, err := s.OutboxDue(ctx, "mail", clock.Now(), 10)
	if err != nil || len(due) != 1 || due[0].ID != it.ID || string(due[0].Payload) != `{"to":"ada@example.org"}` {
		t.Fatalf("OutboxDue = %+v, %v", due, err)
	}
	if due, _, _ := s.OutboxDue(ctx, "webhook", clock.Now(), 10); len(due) != 0 {
		t.Fatalf("OutboxDue(webhook) = %+v, want none", due)
	}

	// A refused attempt: retried later, not due before.
	retry := clock.Now().Add(10 * time.Second)
	got, err := s.OutboxAttempt(ctx, it.ID, Attempt{Err: "421 4.7.0 try again later", Code: 421, Retry: retry})
	if err != nil || got.State != OutboxQueued || got.Attempts != 1 || got.LastCode != 421 || !got.NextAttemptAt.Equal(retry) {
		t.Fatalf("after a retry: %+v, %v", got, err)
	}
	due, next, _ := s.OutboxDue(ctx, "", clock.Now(), 10)
	if len(due) != 0 || !next.Equal(retry) {
		t.Fatalf("before the retry time: due %+v, next %v; want none, %v", due, next, retry)
	}
	clock.Add(10 * time.Second)
	if due, _, _ := s.OutboxDue(ctx, "", clock.Now(), 10); len(due) != 1 {
		t.Fatalf("at the retry time: due %+v, want the item", due)
	}
	got, err = s.OutboxAttempt(ctx, it.ID, Attempt{})
	if err != nil || got.State != OutboxSent || got.Attempts != 2 || !got.DoneAt.Equal(clock.Now()) || got.LastError != "" {
		t.Fatalf("after sending: %+v, %v", got, err)
	}
	// A late report on a sent item changes nothing.
	if again, _ := s.OutboxAttempt(ctx, it.ID, Attempt{Err: "late"}); again.State != OutboxSent || again.Attempts != 2 {
		t.Fatalf("a report on a sent item changed it: %+v", again)
	}
	if due, next, _ := s.OutboxDue(ctx, "", clock.Now().Add(time.Hour), 10); len(due) != 0 || !next.IsZero() {
		t.Fatalf("after sending: due %+v, next %v", due, next)
	}

	// A second item that fails for good.
	_, items, _ = s.AppendWith(context.Background(), signupRecord("shop", "bob@example.org"), AppendOptions{Outbox: mailItems})
	got, err = s.OutboxAttempt(ctx, items[0].ID, Attempt{Err: "550 5.1.1 no such user", Code: 550})
	if err != nil || got.State != OutboxFailed || got.LastError != "550 5.1.1 no such user" {
		t.Fatalf("after a final failure: %+v, %v", got, err)
	}
	counts, err := s.OutboxCounts(ctx, "mail")
	if err != nil || counts[OutboxSent] != 1 || counts[OutboxFailed] != 1 || counts[OutboxQueued] != 0 {
		t.Fatalf("counts %v, %v", counts, err)
	}
	if _, err := s.OutboxAttempt(ctx, "00000000000000ff", Attempt{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("attempt on an unknown id: %v", err)
	}
	if _, err := s.OutboxAttempt(ctx, "not an id", Attempt{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("attempt on a malformed id: %v", err)
	}

	// Admins list a site's items newest first; other sites' items stay out.
	mustAppend(t, s, signupRecord("blog", "carol@example.org"))
	s.AppendWith(context.Background(), signupRecord("blog", "carol@example.org"), AppendOptions{Outbox: mailItems})
	list, err := s.OutboxList(ctx, OutboxQuery{Site: "shop", Kind: "mail"})
	if err != nil || len(list) != 2 || list[0].ID != items[0].ID || list[1].ID != it.ID {
		t.Fatalf("OutboxList(shop) = %+v, %v", list, err)
	}
	if page, _ := s.OutboxList(ctx, OutboxQuery{Site: "shop", Before: items[0].ID}); len(page) != 1 || page[0].ID != it.ID {
		t.Fatalf("OutboxList before %s = %+v", items[0].ID, page)
	}
	if l, _ := s.OutboxList(ctx, OutboxQuery{Site: "blog"}); len(l) != 1 || l[0].Site != "blog" {
		t.Fatalf("OutboxList(blog) = %+v", l)
	}
	if l, _ := s.OutboxList(ctx, OutboxQuery{Site: "sho"}); len(l) != 0 {
		t.Fatalf("OutboxList of a prefix of a site id = %+v", l)
	}
}

func TestOutboxCapPerGroup(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Options{Now: clock.Now})
	queued := func(email string) int {
		_, items, err := s.AppendWith(context.Background(), signupRecord("shop", email), AppendOptions{Outbox: mailItems})
		if err != nil {
			t.Fatal(err)
		}
		return len(items)
	}
	for i := 0; i < 3; i++ {
		if n := queued("ada@example.org"); n != 1 {
			t.Fatalf("signup %d: %d items, want 1", i+1, n)
		}
		clock.Add(time.Hour)
	}
	if n := queued("ada@example.org"); n != 0 {
		t.Fatalf("a 4th signup within 24 h queued %d items, want 0", n)
	}
	if n := queued("bob@example.org"); n != 1 {
		t.Fatalf("another address is not capped: %d items", n)
	}
	// The record itself is stored even when its mail is capped.
	if recs, _, _ := s.Subject("ada@example.org"); len(recs) != 4 {
		t.Fatalf("%d records of ada, want 4", len(recs))
	}
	clock.Add(21*time.Hour + time.Second) // the first mail is now over 24 h old
	if n := queued("ada@example.org"); n != 1 {
		t.Fatalf("after 24 h: %d items, want 1", n)
	}
	if n := queued("ada@example.org"); n != 0 {
		t.Fatalf("right after: %d items, want 0", n)
	}
}

func TestOutboxOrderedGroup(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Options{Now: clock.Now})
	var made []OutboxItem
	for i := 0; i < 3; i++ {
		for _, ep := range []string{"wh_a", "wh_b"} {
			items, err := s.Enqueue(ctx, OutboxItem{Kind: "webhook", Site: "shop", Key: ep, Ordered: true, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
			if err != nil {
				t.Fatal(err)
			}
			made = append(made, items...)
		}
	}
	heads := func() []string {
		due, _, err := s.OutboxDue(ctx, "webhook", clock.Now(), 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range due {
			out = append(out, it.Key+string(it.Payload))
		}
		return out
	}
	if h := fmt.Sprint(heads()); h != `[wh_a{"n":0} wh_b{"n":0}]` {
		t.Fatalf("due = %s, want the first item of each endpoint", h)
	}
	// wh_a's first item is retried later: wh_a's later items wait for it.
	s.OutboxAttempt(ctx, made[0].ID, Attempt{Err: "503", Code: 503, Retry: clock.Now().Add(time.Minute)})
	s.OutboxAttempt(ctx, made[1].ID, Attempt{})
	if h := fmt.Sprint(heads()); h != `[wh_b{"n":1}]` {
		t.Fatalf("due = %s, want only wh_b's second item", h)
	}
	clock.Add(time.Minute)
	s.OutboxAttempt(ctx, made[0].ID, Attempt{Err: "503", Code: 503}) // given up
	if h := fmt.Sprint(heads()); h != `[wh_a{"n":1} wh_b{"n":1}]` {
		t.Fatalf("due = %s, want the second item of each endpoint", h)
	}
	if l, _ := s.OutboxList(ctx, OutboxQuery{Site: "shop", Kind: "webhook", Key: "wh_b"}); len(l) != 3 || string(l[0].Payload) != `{"n":2}` {
		t.Fatalf("list of one endpoint = %+v", l)
	}
	for _, bad := range []OutboxItem{{Kind: ""}, {Kind: "mail", Payload: json.RawMessage("{")}} {
		if _, err := s.Enqueue(ctx, bad); err == nil {
			t.Errorf("Enqueue(%+v) accepted", bad)
		}
	}
}

func TestOutboxErasure(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	_, sent, _ := s.AppendWith(context.Background(), signupRecord("shop", "ada@example.org"), AppendOptions{Outbox: mailItems})
	s.OutboxAttempt(ctx, sent[0].ID, Attempt{})
	_, queued, _ := s.AppendWith(context.Background(), signupRecord("shop", "ada@example.org"), AppendOptions{Outbox: mailItems})
	_, other, _ := s.AppendWith(context.Background(), signupRecord("shop", "bob@example.org"), AppendOptions{Outbox: mailItems})
	if _, err := s.Erase("test", SubjectRef{Email: "ada@example.org"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{sent[0].ID, queued[0].ID} {
		it, err := s.OutboxItemByID(ctx, id)
		if err != nil || it.Payload != nil {
			t.Fatalf("erased person's item %s: %+v, %v", id, it, err)
		}
	}
	if it, _ := s.OutboxItemByID(ctx, queued[0].ID); it.State != OutboxFailed || it.LastError != "erased" {
		t.Fatalf("erased person's queued item: %+v", it)
	}
	if it, _ := s.OutboxItemByID(ctx, sent[0].ID); it.State != OutboxSent {
		t.Fatalf("erased person's sent item: %+v", it)
	}
	due, _, _ := s.OutboxDue(ctx, "", time.Now(), 10)
	if len(due) != 1 || due[0].ID != other[0].ID || string(due[0].Payload) != `{"to":"bob@example.org"}` {
		t.Fatalf("due after erasure = %+v, want only bob's", due)
	}
}

// TestOutboxMigration opens a schema-1 ledger (no outbox) and finds it
// migrated, its records intact.
func TestOutboxMigration(t *testing.T) {
	s := newTestStore(t)
	r := mustAppend(t, s, signupRecord("shop", "ada@example.org"))
	path := s.Path()
	s.Close()
	editLedger(t, path, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketOutbox); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(1))
	})
	if _, err := Open(path, Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a schema-1 ledger migrated or passed")
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, items, err := s.AppendWith(context.Background(), signupRecord("shop", "bob@example.org"), AppendOptions{Outbox: mailItems})
	if err != nil || len(items) != 1 {
		t.Fatalf("after migration: %+v, %v", items, err)
	}
	if recs := allRecords(t, s, "shop"); len(recs) != 2 || recs[0].ID != r.ID {
		t.Fatalf("records after migration: %+v", recs)
	}
	mustVerify(t, s)
}

// TestOutboxFailedBatchStoresNothing: an Outbox function's error fails its
// batch, so neither the record nor any item is stored.
func TestOutboxFailedBatchStoresNothing(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	_, _, err := s.AppendWith(context.Background(), signupRecord("shop", "ada@example.org"), AppendOptions{
		Outbox: func(Record) ([]OutboxItem, error) { return []OutboxItem{{Kind: ""}}, nil }})
	if err == nil {
		t.Fatal("an invalid item was accepted")
	}
	if recs := allRecords(t, s, "shop"); len(recs) != 0 {
		t.Fatalf("%d records stored by a failed batch", len(recs))
	}
	if due, _, _ := s.OutboxDue(ctx, "", time.Now(), 10); len(due) != 0 {
		t.Fatalf("items stored by a failed batch: %+v", due)
	}
}

// crashOutboxLoad runs in the child process: 8 writers append signups with
// a mail item each and print the acknowledged record ids.
func crashOutboxLoad(s *Store) {
	var mu sync.Mutex
	for w := 0; w < 8; w++ {
		go func() {
			for i := 0; ; i++ {
				opts := AppendOptions{Outbox: func(rec Record) ([]OutboxItem, error) {
					return []OutboxItem{{Kind: "mail", Key: rec.Email, Payload: json.RawMessage(`{"record":"` + rec.ID + `"}`)}}, nil
				}}
				got, _, err := s.AppendWith(context.Background(), signupRecord("shop", fmt.Sprintf("w%d-%d@example.org", w, i)), opts)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(1)
				}
				mu.Lock()
				os.Stdout.WriteString(got.ID + "\n")
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestCrashOutboxWithItsRecord kills a process appending records with
// outbox items, and checks after each restart that every acknowledged
// record is there, and that an item is on disk if and only if its record is.
func TestCrashOutboxWithItsRecord(t *testing.T) {
	ctx := context.Background()
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "assent.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSite(testSite("shop")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	acked := map[string]bool{}
	for round := 0; round < 3; round++ {
		cmd, out := startHelper(t, "outbox", path)
		n := 0
		for out.Scan() {
			acked[out.Text()] = true
			if n++; n == 200+round*150 {
				break
			}
		}
		if err := cmd.Process.Kill(); err != nil { // SIGKILL, mid-load
			t.Fatal(err)
		}
		cmd.Wait()
		if n == 0 {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		records := map[string]bool{}
		for _, r := range allRecords(t, s, "shop") {
			records[r.ID] = true
		}
		items := map[string]bool{}
		due, _, err := s.OutboxDue(ctx, "mail", time.Now().Add(time.Hour), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range due {
			var p struct{ Record string }
			json.Unmarshal(it.Payload, &p)
			if p.Record != it.Record {
				t.Fatalf("item %s: payload names %s, record field %s", it.ID, p.Record, it.Record)
			}
			items[it.Record] = true
		}
		counts, _ := s.OutboxCounts(ctx, "mail")
		mustVerify(t, s)
		s.Close()
		for id := range acked {
			if !records[id] {
				t.Fatalf("round %d: acknowledged record %s missing", round, id)
			}
		}
		for id := range records {
			if !items[id] {
				t.Fatalf("round %d: record %s has no outbox item", round, id)
			}
		}
		for id := range items {
			if !records[id] {
				t.Fatalf("round %d: outbox item of record %s, which is not stored", round, id)
			}
		}
		if counts[OutboxQueued] != len(items) {
			t.Fatalf("round %d: counts say %d queued, %d found", round, counts[OutboxQueued], len(items))
		}
		t.Logf("round %d: killed after %d acknowledged; %d records, %d items, one each", round, n, len(records), len(items))
	}
}
