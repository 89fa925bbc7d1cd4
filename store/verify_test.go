package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// editLedger closes s and changes the file with bbolt directly, as someone
// with access to the file could.
func editLedger(t *testing.T, path string, edit func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(edit); err != nil {
		t.Fatal(err)
	}
}

func recordKey(t *testing.T, id string) []byte {
	t.Helper()
	k, err := parseID(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTamperedRecordIsNamed changes every single byte of one stored record,
// one at a time, and checks that Verify names that record each time.
func TestTamperedRecordIsNamed(t *testing.T) {
	s := newTestStore(t)
	path := s.Path()
	var victim Record
	for i := 0; i < 5; i++ {
		r := mustAppend(t, s, signupRecord("shop", "ada@example.org"))
		if i == 2 {
			victim = r
		}
		mustAppend(t, s, testRecord("blog"))
	}
	s.Close()
	key := recordKey(t, victim.ID)
	var orig []byte
	editLedger(t, path, func(tx *bolt.Tx) error {
		orig = bytes.Clone(tx.Bucket(bucketRecords).Bucket([]byte("shop")).Get(key))
		return nil
	})
	if len(orig) < 200 {
		t.Fatalf("stored record is %d bytes", len(orig))
	}
	put := func(v []byte) {
		editLedger(t, path, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketRecords).Bucket([]byte("shop")).Put(key, v)
		})
	}
	check := func(what string) {
		t.Helper()
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rep, err := s.Verify()
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK || rep.BadID != victim.ID || rep.BadSite != "shop" {
			t.Fatalf("%s: Verify = %+v, want record %s named", what, rep, victim.ID)
		}
	}
	for i := range orig {
		v := bytes.Clone(orig)
		v[i] ^= 0x01
		put(v)
		check(fmt.Sprintf("byte %d changed", i))
	}
	put(append(bytes.Clone(orig), 0))
	check("a byte appended")
	put(orig[:len(orig)-1])
	check("a byte cut")

	// Marking the record erased without removing its data is caught too.
	r, _ := decodeRecord("shop", key, orig)
	r.Erased = true
	put(encodeRecord(r))
	check("erased flag set")

	put(orig)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustVerify(t, s)
}

func TestVerifyFindsRemovedRecords(t *testing.T) {
	tests := []struct {
		name   string
		remove func(ids []string) []string // which to delete
		bad    func(ids []string) string   // the record Verify must name
	}{
		{"middle", func(ids []string) []string { return ids[2:3] }, func(ids []string) string { return ids[3] }},
		{"last", func(ids []string) []string { return ids[4:] }, func(ids []string) string { return ids[4] }},
		{"first", func(ids []string) []string { return ids[:1] }, func(ids []string) string { return ids[1] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			var ids []string
			for i := 0; i < 5; i++ {
				ids = append(ids, mustAppend(t, s, testRecord("shop")).ID)
			}
			path := s.Path()
			s.Close()
			editLedger(t, path, func(tx *bolt.Tx) error {
				for _, id := range tt.remove(ids) {
					if err := tx.Bucket(bucketRecords).Bucket([]byte("shop")).Delete(recordKey(t, id)); err != nil {
						return err
					}
				}
				return nil
			})
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			rep, _ := s.Verify()
			if rep.OK || rep.BadID != tt.bad(ids) {
				t.Fatalf("Verify = %+v, want %s named", rep, tt.bad(ids))
			}
		})
	}
}

func TestEraseKeepsChainAndRemovesPersonalData(t *testing.T) {
	s := newTestStore(t)
	mine := []Record{
		mustAppend(t, s, signupRecord("shop", "Ada@Example.org")),
		mustAppend(t, s, testRecord("shop")),
		mustAppend(t, s, signupRecord("blog", "ada@example.org")),
	}
	other := mustAppend(t, s, signupRecord("shop", "bob@example.org"))
	if err := s.SetDoubleOptIn("ada@example.org", "pending", "85.214.132.9"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDoubleOptIn("ada@example.org", "confirmed", "2001:db8:1:2::3"); err != nil {
		t.Fatal(err)
	}
	_, st, _ := s.Subject("ada@example.org")
	if st.DoubleOptIn != "confirmed" || st.PendingIP != "85.214.132.0" || st.ConfirmedIP != "2001:db8:1::" {
		t.Fatalf("double opt-in state %+v", st)
	}

	rep, err := s.Erase("test", SubjectRef{Email: "  ADA@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 2 || rep.Email != "ada@example.org" || !strings.Contains(rep.Reason, "17(3)(e)") || rep.SuppressedAt.IsZero() {
		t.Fatalf("erasure report %+v", rep)
	}
	for _, f := range []string{"email", "ip", "user_agent", "name"} {
		if !slices.Contains(rep.Removed, f) {
			t.Errorf("report does not say %s was removed: %v", f, rep.Removed)
		}
	}
	recs, st, err := s.Subject("ada@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || !st.Suppressed || st.PendingIP != "" || st.ConfirmedIP != "" || st.ConfirmedAt.IsZero() {
		t.Fatalf("after erasure: %d records, state %+v", len(recs), st)
	}
	for i, r := range recs {
		want := []Record{mine[0], mine[2]}[i]
		if !r.Erased || r.Email != "" || r.IP != "" || r.UserAgent != "" || r.Name != "" || r.VisitorID != "" {
			t.Errorf("record %s still holds personal data: %+v", r.ID, r)
		}
		if r.Hash != want.Hash || r.PrevHash != want.PrevHash || r.PageURL != want.PageURL ||
			!r.RecordedAt.Equal(want.RecordedAt) || r.Choices["newsletter"] != "granted" || r.NoticeHash != want.NoticeHash {
			t.Errorf("record %s lost its proof: %+v", r.ID, r)
		}
	}
	// The record without the address, and other people, are untouched.
	for _, r := range allRecords(t, s, "shop") {
		if (r.ID == mine[1].ID || r.ID == other.ID) && r.Erased {
			t.Errorf("record %s erased but not the person's", r.ID)
		}
	}
	if sup, _ := s.Suppressed("ada@EXAMPLE.org"); !sup {
		t.Error("address not suppressed")
	}
	if sup, _ := s.Suppressed("bob@example.org"); sup {
		t.Error("another address suppressed")
	}
	mustVerify(t, s)
	// Erasing again changes nothing and keeps the first date.
	again, err := s.Erase("test", SubjectRef{Email: "ada@example.org"})
	if err != nil || !again.SuppressedAt.Equal(rep.SuppressedAt) || again.Records != 2 {
		t.Fatalf("second erasure: %+v, %v", again, err)
	}
	mustVerify(t, s)
}

func TestEraseUnknownAddressStillSuppresses(t *testing.T) {
	s := newTestStore(t)
	rep, err := s.Erase("test", SubjectRef{Email: "nobody@example.org"})
	if err != nil || rep.Records != 0 {
		t.Fatalf("Erase = %+v, %v", rep, err)
	}
	if _, err := s.Append(context.Background(), signupRecord("shop", "nobody@example.org")); !errors.Is(err, ErrSuppressed) {
		t.Fatalf("signup after erasure: %v", err)
	}
}

func TestPurgeKeepsChainVerifying(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Options{Now: clock.Now})
	site := testSite("shop")
	site.RetentionDays = 30
	if _, err := s.PutSite(site); err != nil {
		t.Fatal(err)
	}
	var old, recent []Record
	for i := 0; i < 10; i++ {
		old = append(old, mustAppend(t, s, signupRecord("shop", "ada@example.org")))
		mustAppend(t, s, testRecord("blog")) // blog keeps everything
		clock.Add(24 * time.Hour)
	}
	clock.Add(40 * 24 * time.Hour)
	for i := 0; i < 3; i++ {
		recent = append(recent, mustAppend(t, s, signupRecord("shop", "ada@example.org")))
	}
	n, err := s.Purge(clock.Now())
	if err != nil || n != 10 {
		t.Fatalf("Purge = %d, %v; want 10", n, err)
	}
	got := allRecords(t, s, "shop")
	if len(got) != 13 {
		t.Fatalf("%d records and tombstones, want 13", len(got))
	}
	for i, r := range got[:10] {
		want := Record{ID: old[i].ID, RecordedAt: old[i].RecordedAt, Site: "shop", PrevHash: old[i].PrevHash, Hash: old[i].Hash, Tombstone: true}
		if r.Choices != nil || r.Email != "" || r.ID != want.ID || r.Hash != want.Hash || r.PrevHash != want.PrevHash || !r.Tombstone || !r.RecordedAt.Equal(want.RecordedAt) {
			t.Errorf("tombstone %d = %+v, want %+v", i, r, want)
		}
	}
	var live int
	s.Records("shop", Query{}, func(Record) error { live++; return nil })
	if live != 3 {
		t.Errorf("Records without tombstones gives %d, want 3", live)
	}
	recs, _, _ := s.Subject("ada@example.org")
	if len(recs) != 3 || recs[0].ID != recent[0].ID {
		t.Errorf("subject still indexes purged records: %d records", len(recs))
	}
	if len(allRecords(t, s, "blog")) != 10 {
		t.Error("a site without retention lost records")
	}
	rep := mustVerify(t, s)
	if rep.Sites["shop"].Records != 13 {
		t.Errorf("verify report %+v", rep)
	}
	var audit []AuditEntry
	s.AuditLog(time.Time{}, time.Time{}, func(e AuditEntry) error { audit = append(audit, e); return nil })
	if len(audit) != 1 || audit[0].Action != "purge" || !strings.Contains(audit[0].Detail, "records=10") {
		t.Errorf("audit %+v, want one purge entry", audit)
	}
	if n, _ := s.Purge(clock.Now()); n != 0 {
		t.Errorf("second purge removed %d", n)
	}
	// A tombstone after a live record is not something retention makes.
	path := s.Path()
	s.Close()
	editLedger(t, path, func(tx *bolt.Tx) error {
		k := recordKey(t, recent[1].ID)
		tomb := encodeRecord(&storedRecord{Record: Record{Tombstone: true}, prevHash: mustHex(recent[1].PrevHash), hash: mustHex(recent[1].Hash)})
		return tx.Bucket(bucketRecords).Bucket([]byte("shop")).Put(k, tomb)
	})
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if rep, _ := s2.Verify(); rep.OK || rep.BadID != recent[1].ID {
		t.Errorf("Verify = %+v, want %s named", rep, recent[1].ID)
	}
}

func TestRunRetentionStopsWithContext(t *testing.T) {
	s := newTestStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.RunRetention(ctx, time.Millisecond, nil); close(done) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunRetention did not stop")
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
