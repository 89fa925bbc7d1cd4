package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDoubleOptInConfirm(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Options{Now: clock.Now})
	signup, _, err := s.AppendWith(ctx, signupRecord("shop", "ada@example.org"), AppendOptions{OptIn: "pending", Outbox: mailItems})
	if err != nil {
		t.Fatal(err)
	}
	row := func(site string) SubjectState {
		var got []SubjectState
		if err := s.Subjects(site, Query{Email: "ada@example.org"}, func(st SubjectState) error { got = append(got, st); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("%d rows", len(got))
		}
		return got[0]
	}
	if st := row("shop"); st.DoubleOptIn != "pending" || !st.PendingAt.Equal(signup.RecordedAt) || st.PendingIP != "85.214.132.0" {
		t.Fatalf("after the signup: %+v", st)
	}
	// The same person signs up on another site without double opt-in.
	mustAppend(t, s, signupRecord("blog", "ada@example.org"))
	if st := row("blog"); st.DoubleOptIn != "none" {
		t.Fatalf("blog shows shop's state: %+v", st)
	}

	token := s.ConfirmToken("shop", signup.ID)
	for _, bad := range []string{"", "x", token[:len(token)-2] + "AA", s.UnsubscribeToken("shop", "ada@example.org"), s.ConfirmToken("nosuch", signup.ID)} {
		if _, err := s.Confirm(ctx, bad, Record{}); !errors.Is(err, ErrBadToken) {
			t.Errorf("Confirm(%q) = %v, want ErrBadToken", bad, err)
		}
	}
	clock.Add(time.Hour)
	meta := Record{IP: "203.0.113.77", UserAgent: "Firefox", Country: "DE", Regime: "opt-in"}
	c, err := s.Confirm(ctx, token, meta)
	if err != nil {
		t.Fatal(err)
	}
	if c.Event != "confirm" || c.Source != "double_opt_in" || c.Confirms != signup.ID || c.Email != "ada@example.org" ||
		c.IP != "203.0.113.0" || c.UserAgent != "Firefox" || c.Choices["newsletter"] != "granted" || c.PrevHash != signup.Hash {
		t.Fatalf("confirm record %+v", c)
	}
	st := row("shop")
	if st.DoubleOptIn != "confirmed" || !st.ConfirmedAt.Equal(c.RecordedAt) || st.ConfirmedIP != "203.0.113.0" || !st.PendingAt.Equal(signup.RecordedAt) {
		t.Fatalf("after confirming: %+v", st)
	}
	// Twice: nothing new.
	_, err = s.Confirm(ctx, token, meta)
	var ac *AlreadyConfirmedError
	if !errors.As(err, &ac) || ac.ID != c.ID {
		t.Fatalf("second Confirm: %v", err)
	}
	if n := len(allRecords(t, s, "shop")); n != 2 {
		t.Fatalf("%d records on shop, want signup and one confirm", n)
	}
	mustVerify(t, s)
	// The record and its confirms survive a reopen (codec).
	recs, _, _ := s.Subject("ada@example.org")
	if len(recs) != 3 || recs[2].Confirms != signup.ID || recs[0].Confirms != "" {
		t.Fatalf("confirms not read back: %+v", recs)
	}

	// An expired link: 7 days later, the state becomes expired, no record.
	late, _, _ := s.AppendWith(ctx, signupRecord("shop", "bob@example.org"), AppendOptions{OptIn: "pending"})
	clock.Add(ConfirmTTL + time.Second)
	if _, err := s.Confirm(ctx, s.ConfirmToken("shop", late.ID), meta); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("late Confirm: %v", err)
	}
	var bob SubjectState
	s.Subjects("shop", Query{Email: "bob@example.org"}, func(st SubjectState) error { bob = st; return nil })
	if bob.DoubleOptIn != "expired" {
		t.Fatalf("bob after the expired link: %+v", bob)
	}
	if n := len(allRecords(t, s, "shop")); n != 3 {
		t.Fatalf("%d records on shop after an expired link", n)
	}
	// Erasure removes the IPs of the state, keeps the times.
	if _, err := s.Erase("test", SubjectRef{Email: "ada@example.org"}); err != nil {
		t.Fatal(err)
	}
	if st := row("shop"); st.PendingIP != "" || st.ConfirmedIP != "" || st.ConfirmedAt.IsZero() {
		t.Fatalf("after erasure: %+v", st)
	}
	if _, err := s.Confirm(ctx, token, meta); !errors.Is(err, ErrBadToken) {
		t.Fatalf("confirming an erased signup: %v", err)
	}
}
