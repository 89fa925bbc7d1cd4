package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestEraseUnsubscribeRace runs an erasure and an unsubscribe of the same
// person at the same time, many times: whichever commits first, no record
// may hold the address (or name, visitor id, IP, agent) in clear after both.
// Before the writer enforced suppression, the unsubscribe read the address,
// the erasure committed, and the withdrawal stored the address again.
func TestEraseUnsubscribeRace(t *testing.T) {
	s := newTestStore(t)
	const runs = 300
	meta := Record{IP: "85.214.132.77", UserAgent: "Mail/1.0", Country: "DE", Regime: "opt-in"}
	for i := 0; i < runs; i++ {
		email := fmt.Sprintf("race%03d@example.org", i)
		mustAppend(t, s, signupRecord("shop", email))
		token := s.UnsubscribeToken("shop", email)
		var wg sync.WaitGroup
		var eraseErr, unsubErr error
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, eraseErr = s.Erase("test", SubjectRef{Email: email})
		}()
		go func() {
			defer wg.Done()
			<-start
			_, unsubErr = s.Unsubscribe(context.Background(), token, meta)
		}()
		close(start)
		wg.Wait()
		if eraseErr != nil || unsubErr != nil {
			t.Fatalf("run %d: erase %v, unsubscribe %v", i, eraseErr, unsubErr)
		}
		recs, st, err := s.Subject(email)
		if err != nil || len(recs) != 2 || !st.Suppressed {
			t.Fatalf("run %d: %d records, suppressed %v, %v", i, len(recs), st.Suppressed, err)
		}
		for _, r := range recs {
			if !r.Erased || r.Email != "" || r.Name != "" || r.VisitorID != "" || r.IP != "" || r.UserAgent != "" {
				t.Fatalf("run %d: record %s (%s) holds personal data after erasure: %+v", i, r.ID, r.Source, r)
			}
		}
	}
	// The same, read from the whole site, not through the index.
	for _, r := range allRecords(t, s, "shop") {
		if r.Email != "" {
			t.Fatalf("record %s holds an address in clear", r.ID)
		}
	}
	mustVerify(t, s)
}

// TestErasureCoversVisitorIDs: a person's banner choices carry only their
// visitor id; erasing their address erases those too, and look-up and
// erasure work by visitor id and by a record id.
func TestErasureCoversVisitorIDs(t *testing.T) {
	s := newTestStore(t)
	banner := func(site, visitor string) Record {
		r := testRecord(site)
		r.VisitorID = visitor
		return r
	}
	b1 := mustAppend(t, s, banner("shop", "v_ada_laptop"))
	b2 := mustAppend(t, s, banner("blog", "v_ada_laptop"))
	signup := signupRecord("shop", "ada@example.org")
	signup.VisitorID = "v_ada_laptop"
	sr := mustAppend(t, s, signup)
	phone := signupRecord("blog", "ada@example.org")
	phone.VisitorID = "v_ada_phone"
	pr := mustAppend(t, s, phone)
	b3 := mustAppend(t, s, banner("shop", "v_ada_phone"))
	other := mustAppend(t, s, banner("shop", "v_someone_else"))
	bob := mustAppend(t, s, signupRecord("shop", "bob@example.org"))
	want := []string{b1.ID, b2.ID, sr.ID, pr.ID, b3.ID}

	ids := func(recs []Record) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	for _, ref := range []SubjectRef{{Email: "ADA@example.org"}, {RecordID: sr.ID}, {RecordID: b3.ID}} {
		recs, st, err := s.Lookup(ref)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids(recs)) != fmt.Sprint(want) || st.Email != "ada@example.org" {
			t.Errorf("Lookup(%+v) = %v (%q), want %v", ref, ids(recs), st.Email, want)
		}
	}
	// By visitor id: the address used from that browser, and so the person.
	recs, _, err := s.Lookup(SubjectRef{VisitorID: "v_ada_laptop"})
	if err != nil || fmt.Sprint(ids(recs)) != fmt.Sprint(want) {
		t.Errorf("Lookup by visitor id = %v, %v", ids(recs), err)
	}
	if recs, _, err := s.Lookup(SubjectRef{RecordID: other.ID}); err != nil || len(recs) != 1 || recs[0].ID != other.ID {
		t.Errorf("Lookup of a lone banner record = %v, %v", ids(recs), err)
	}
	if _, _, err := s.Lookup(SubjectRef{RecordID: "01JAAAAAAAAAAAAAAAAAAAAAAA"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup of an unknown record id: %v, want ErrNotFound", err)
	}
	for _, bad := range []SubjectRef{{}, {Email: "a@example.org", VisitorID: "v"}, {RecordID: "not-an-id"}} {
		var ve *ValidationError
		if _, _, err := s.Lookup(bad); !errors.As(err, &ve) {
			t.Errorf("Lookup(%+v): %v, want a ValidationError", bad, err)
		}
	}

	rep, err := s.Erase("test", SubjectRef{Email: "ada@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 5 || fmt.Sprint(rep.VisitorIDs) != "[v_ada_laptop v_ada_phone]" || rep.Email != "ada@example.org" {
		t.Errorf("report %+v", rep)
	}
	for _, site := range []string{"shop", "blog"} {
		for _, r := range allRecords(t, s, site) {
			mine := r.ID != other.ID && r.ID != bob.ID
			if mine != r.Erased {
				t.Errorf("record %s (%s) erased %v", r.ID, r.VisitorID, r.Erased)
			}
			if mine && (r.VisitorID != "" || r.IP != "" || r.UserAgent != "") {
				t.Errorf("erased record %s still holds personal fields: %+v", r.ID, r)
			}
		}
	}
	// Still found by any of the identifiers after erasure.
	if recs, st, _ := s.Lookup(SubjectRef{VisitorID: "v_ada_phone"}); len(recs) != 5 || !st.Suppressed {
		t.Errorf("after erasure, by visitor id: %v suppressed %v", ids(recs), st.Suppressed)
	}
	mustVerify(t, s)

	// Erasure by visitor id alone.
	rep, err = s.Erase("test", SubjectRef{VisitorID: "v_someone_else"})
	if err != nil || rep.Records != 1 || rep.Email != "" {
		t.Fatalf("erase by visitor id: %+v, %v", rep, err)
	}
	if recs, _, _ := s.Lookup(SubjectRef{RecordID: other.ID}); !recs[0].Erased {
		t.Error("erasure by visitor id left the record")
	}
	if _, err := s.Erase("test", SubjectRef{RecordID: "01JAAAAAAAAAAAAAAAAAAAAAAA"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("erase of an unknown record id: %v", err)
	}
	mustVerify(t, s)
}

// TestMigrateVisitorIndex opens a schema-1 ledger (no visitors/ index):
// the migration indexes the existing records, so look-up by visitor id
// finds records made before the upgrade.
func TestMigrateVisitorIndex(t *testing.T) {
	s := newTestStore(t)
	r := testRecord("shop")
	r.VisitorID = "v_before_upgrade"
	old := mustAppend(t, s, r)
	path := s.Path()
	s.Close()
	editLedger(t, path, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketVisitors); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(1))
	})
	if _, err := Open(path, Options{ReadOnly: true}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("needs migrating")) {
		t.Fatalf("read-only open of a schema-1 file: %v", err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, _, err := s.Lookup(SubjectRef{VisitorID: "v_before_upgrade"})
	if err != nil || len(recs) != 1 || recs[0].ID != old.ID {
		t.Fatalf("after migration: %v, %v", recs, err)
	}
	mustVerify(t, s)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}
