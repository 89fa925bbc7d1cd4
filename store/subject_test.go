package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestSubjectAcrossSites(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Options{Now: clock.Now})
	first := mustAppend(t, s, signupRecord("shop", "Ada@example.org"))
	clock.Add(time.Hour)
	mustAppend(t, s, signupRecord("blog", "ada@example.org"))
	mustAppend(t, s, signupRecord("shop", "bob@example.org"))
	clock.Add(time.Hour)
	change := signupRecord("shop", "ada@example.org")
	change.Source, change.Event = "preferences", "partial"
	change.Choices = map[string]string{"newsletter": "denied", "analytics": "granted"}
	last := mustAppend(t, s, change)

	recs, st, err := s.Subject(" ADA@EXAMPLE.ORG ")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].ID != first.ID || recs[2].ID != last.ID {
		t.Fatalf("records %+v", recs)
	}
	if st.Email != "ada@example.org" || !st.FirstSignupAt.Equal(first.RecordedAt) || !st.LastChangeAt.Equal(last.RecordedAt) ||
		st.DoubleOptIn != "none" || st.Suppressed {
		t.Fatalf("state %+v", st)
	}
	if st.Purposes["shop"]["newsletter"] != "denied" || st.Purposes["shop"]["analytics"] != "granted" ||
		st.Purposes["blog"]["newsletter"] != "granted" {
		t.Fatalf("purposes %v", st.Purposes)
	}
	recs, st, err = s.Subject("nobody@example.org")
	if err != nil || len(recs) != 0 || st.DoubleOptIn != "none" {
		t.Fatalf("unknown person: %v %+v %v", recs, st, err)
	}
	if err := s.SetDoubleOptIn("ada@example.org", "maybe", ""); err == nil {
		t.Error("unknown double-opt-in state accepted")
	}
}

func TestSubjectsForSignupsExport(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Options{Now: clock.Now})
	for i := 0; i < 600; i++ { // more than one chunk of people
		r := signupRecord("shop", fmt.Sprintf("p%03d@example.org", i))
		if i%3 == 0 {
			r.Country, r.Regime = "US", "notice"
		}
		mustAppend(t, s, r)
		clock.Add(time.Minute)
	}
	mustAppend(t, s, signupRecord("blog", "only-blog@example.org"))
	mustAppend(t, s, testRecord("shop")) // a banner choice: no person
	withdraw := signupRecord("shop", "p007@example.org")
	withdraw.Source, withdraw.Event, withdraw.Choices = "preferences", "withdraw", map[string]string{"newsletter": "denied"}
	mustAppend(t, s, withdraw)
	s.SetDoubleOptIn("p001@example.org", "confirmed", "85.214.132.1")

	collect := func(q Query) map[string]SubjectState {
		got := map[string]SubjectState{}
		if err := s.Subjects("shop", q, func(st SubjectState) error {
			if _, dup := got[st.Email]; dup {
				t.Fatalf("%s twice", st.Email)
			}
			got[st.Email] = st
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	all := collect(Query{})
	if len(all) != 600 {
		t.Fatalf("%d people, want 600", len(all))
	}
	if all["p007@example.org"].Purposes["shop"]["newsletter"] != "denied" || all["p008@example.org"].Purposes["shop"]["newsletter"] != "granted" {
		t.Error("current state not the latest record's")
	}
	if st := all["p001@example.org"]; st.DoubleOptIn != "confirmed" || st.ConfirmedIP != "85.214.132.0" {
		t.Errorf("double opt-in %+v", st)
	}
	start := time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		q    Query
		want int
	}{
		{"country", Query{Country: "US"}, 200},
		{"regime", Query{Regime: "opt-in"}, 400},
		{"first signup from", Query{From: start.Add(590 * time.Minute)}, 10},
		{"first signup to", Query{To: start.Add(10 * time.Minute)}, 10},
		{"purpose granted now", Query{Purpose: "newsletter"}, 599},
		{"one person", Query{Email: "P042@example.org"}, 1},
		{"nobody", Query{Email: "only-blog@example.org"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := collect(tt.q); len(got) != tt.want {
				t.Errorf("%d people, want %d", len(got), tt.want)
			}
		})
	}
}

func TestUnsubscribe(t *testing.T) {
	s := newTestStore(t)
	mustAppend(t, s, signupRecord("shop", "ada@example.org"))
	token := s.UnsubscribeToken("shop", " Ada@Example.org")
	if strings.Contains(token, "ada") || strings.ContainsAny(token, "+/=") {
		t.Fatalf("token %q names the address or is not URL-safe", token)
	}
	site, subject, err := s.ParseUnsubscribeToken(token)
	if err != nil || site != "shop" || len(subject) != 64 {
		t.Fatalf("ParseUnsubscribeToken = %q %q %v", site, subject, err)
	}
	meta := Record{IP: "85.214.132.77", UserAgent: "Mail/1.0", PageURL: "https://consent.example/u/x", Country: "DE", Regime: "opt-in"}
	rec, err := s.Unsubscribe(context.Background(), token, meta)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Event != "withdraw" || rec.Source != "unsubscribe" || rec.Email != "ada@example.org" || rec.IP != "85.214.132.0" ||
		rec.Choices["newsletter"] != "denied" || len(rec.Choices) != 1 || rec.NoticeVersion != "1" {
		t.Fatalf("withdraw record %+v", rec)
	}
	_, st, _ := s.Subject("ada@example.org")
	if st.Purposes["shop"]["newsletter"] != "denied" {
		t.Errorf("state after unsubscribe %v", st.Purposes)
	}
	for _, bad := range []string{"", "x", token[:len(token)-2] + "AA", strings.Replace(token, token[3:5], "zz", 1)} {
		if _, err := s.Unsubscribe(context.Background(), bad, meta); !errors.Is(err, ErrBadToken) {
			t.Errorf("Unsubscribe(%q): %v, want ErrBadToken", bad, err)
		}
	}
	if _, err := s.Unsubscribe(context.Background(), s.UnsubscribeToken("gone", "ada@example.org"), meta); !errors.Is(err, ErrNotFound) {
		t.Errorf("token of an unknown site: %v", err)
	}
	// Unsubscribing again stores nothing new and answers the withdrawal made.
	again, err := s.Unsubscribe(context.Background(), token, meta)
	if err != nil || again.ID != rec.ID {
		t.Fatalf("second unsubscribe: %+v, %v; want the first withdrawal %s", again, err, rec.ID)
	}
	// An erased person can still withdraw; the record names them by digest only.
	mustAppend(t, s, signupRecord("shop", "bob@example.org"))
	s.Erase("test", SubjectRef{Email: "bob@example.org"})
	bobToken := s.UnsubscribeToken("shop", "bob@example.org")
	rec, err = s.Unsubscribe(context.Background(), bobToken, meta)
	if err != nil || !rec.Erased || rec.Email != "" || rec.IP != "" || rec.UserAgent != "" {
		t.Fatalf("withdraw of an erased person: %+v, %v", rec, err)
	}
	recs, _, _ := s.Subject("bob@example.org")
	if len(recs) != 2 || recs[1].ID != rec.ID {
		t.Errorf("withdraw not in the person's records: %d", len(recs))
	}
	mustVerify(t, s)
	var sources []string
	for _, r := range allRecords(t, s, "shop") {
		sources = append(sources, r.Source)
	}
	sort.Strings(sources)
	if strings.Join(sources, ",") != "signup,signup,unsubscribe,unsubscribe" {
		t.Errorf("records %v", sources)
	}
}
