package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func auditActions(t *testing.T, s *Store) []AuditEntry {
	t.Helper()
	var out []AuditEntry
	if err := s.AuditLog(time.Time{}, time.Time{}, func(e AuditEntry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func exportRows(t *testing.T, s *Store, site string, q Query) []SubjectState {
	t.Helper()
	var rows []SubjectState
	if err := s.Subjects(site, q, func(st SubjectState) error { rows = append(rows, st); return nil }); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestWithdrawOnRequest(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	mustAppend(t, s, signupRecord("shop", "ann@example.org"))
	mustAppend(t, s, signupRecord("blog", "ann@example.org"))
	recs, err := s.WithdrawOnRequest(ctx, "user:boss@example.org", Withdrawal{
		Email: " Ann@Example.org ", Sites: []string{"shop"}, Purposes: []string{"newsletter"}, Reason: "asked by mail on 2026-11-20"}, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1 (shop only)", len(recs))
	}
	r := recs[0]
	if r.Site != "shop" || r.Event != "withdraw" || r.Source != "admin" || r.Reason != "asked by mail on 2026-11-20" ||
		r.Email != "ann@example.org" || r.Choices["newsletter"] != "denied" || len(r.Choices) != 1 || r.Hash == "" {
		t.Fatalf("record %+v", r)
	}
	_, st, err := s.Subject("ann@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if st.Purposes["shop"]["newsletter"] != "denied" || st.Purposes["blog"]["newsletter"] != "granted" {
		t.Fatalf("state %v", st.Purposes)
	}
	// The audit entry names the actor and the purposes, not the person
	// or the reason.
	log := auditActions(t, s)
	last := log[len(log)-1]
	if last.Action != "withdraw" || last.Token != "user:boss@example.org" || strings.Contains(last.Detail, "ann") ||
		strings.Contains(last.Detail, "mail on") || !strings.Contains(last.Detail, "shop: newsletter") {
		t.Fatalf("audit %+v", last)
	}
	// The reason is covered by the chain: verify passes, and a changed
	// reason would not hash the same.
	mustVerify(t, s)
	if !strings.Contains(string(canonical(&storedRecord{Record: Record{Reason: "x"}})), `"reason":"x"`) {
		t.Fatal("reason not in the canonical form")
	}

	// All sites, all purposes: every non-required purpose on both sites.
	recs, err = s.WithdrawOnRequest(ctx, "tok", Withdrawal{Email: "ann@example.org", Reason: "phone call"}, AppendOptions{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	for _, r := range recs {
		if r.Choices["analytics"] != "denied" || r.Choices["marketing"] != "denied" || r.Choices["newsletter"] != "denied" || len(r.Choices) != 3 {
			t.Fatalf("choices %v", r.Choices)
		}
	}
	mustVerify(t, s)
}

// wantRefusal checks an error: want, or a *ValidationError with code.
func wantRefusal(t *testing.T, name string, err error, code string, want error) {
	t.Helper()
	var ve *ValidationError
	switch {
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: %v, want %v", name, err, want)
	case want == nil && (!errors.As(err, &ve) || ve.Code != code):
		t.Errorf("%s: %v, want code %s", name, err, code)
	}
}

func TestWithdrawOnRequestBadInput(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	mustAppend(t, s, signupRecord("shop", "ann@example.org"))
	before := len(allRecords(t, s, "shop"))
	cases := []struct {
		name string
		w    Withdrawal
		code string // ValidationError code, or "" for err below
		err  error
	}{
		{"no reason", Withdrawal{Email: "ann@example.org"}, "invalid_field", nil},
		{"blank reason", Withdrawal{Email: "ann@example.org", Reason: "  "}, "invalid_field", nil},
		{"control in reason", Withdrawal{Email: "ann@example.org", Reason: "a\x00b"}, "invalid_field", nil},
		{"long reason", Withdrawal{Email: "ann@example.org", Reason: strings.Repeat("x", 1001)}, "invalid_field", nil},
		{"bad email", Withdrawal{Email: "ann", Reason: "r"}, "invalid_email", nil},
		{"named email", Withdrawal{Email: "Ann <ann@example.org>", Reason: "r"}, "invalid_email", nil},
		{"unknown site", Withdrawal{Email: "ann@example.org", Sites: []string{"nope"}, Reason: "r"}, "unknown_site", nil},
		{"unknown purpose", Withdrawal{Email: "ann@example.org", Purposes: []string{"nope"}, Reason: "r"}, "unknown_purpose", nil},
		{"required purpose", Withdrawal{Email: "ann@example.org", Purposes: []string{"necessary"}, Reason: "r"}, "invalid_field", nil},
		{"no records", Withdrawal{Email: "bob@example.org", Reason: "r"}, "", ErrNotFound},
		{"no records on site", Withdrawal{Email: "ann@example.org", Sites: []string{"blog"}, Reason: "r"}, "", ErrNotFound},
	}
	for _, c := range cases {
		_, err := s.WithdrawOnRequest(ctx, "tok", c.w, AppendOptions{})
		wantRefusal(t, c.name, err, c.code, c.err)
	}
	if _, err := s.Erase("tok", SubjectRef{Email: "ann@example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WithdrawOnRequest(ctx, "tok", Withdrawal{Email: "ann@example.org", Reason: "r"}, AppendOptions{}); !errors.Is(err, ErrSuppressed) {
		t.Fatalf("erased person: %v", err)
	}
	if n := len(allRecords(t, s, "shop")); n != before {
		t.Fatalf("%d records after bad requests, want %d", n, before)
	}
	for _, e := range auditActions(t, s) {
		if e.Action == "withdraw" {
			t.Fatalf("audit entry for a refused request: %+v", e)
		}
	}
}

func TestRectify(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	first := mustAppend(t, s, signupRecord("shop", "ann@exmaple.org"))
	mustAppend(t, s, signupRecord("blog", "ann@exmaple.org"))
	mustAppend(t, s, signupRecord("shop", "bob@example.org"))
	recs, err := s.Rectify(ctx, "tok", Rectification{Email: "ann@exmaple.org", NewEmail: "Ann@Example.org", Name: "Ann Lovelace", Reason: "typo, asked by mail"}, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Event != "rectify" || recs[0].Email != "ann@exmaple.org" || recs[0].NewEmail != "ann@example.org" ||
		recs[0].Name != "Ann Lovelace" || recs[0].Source != "admin" || recs[0].Reason != "typo, asked by mail" {
		t.Fatalf("records %+v", recs)
	}
	mustVerify(t, s)
	// Both addresses find the whole history and show the new address.
	for _, a := range []string{"ann@exmaple.org", "ann@example.org"} {
		got, st, err := s.Subject(a)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 || got[0].ID != first.ID || st.Email != "ann@example.org" || st.Purposes["shop"]["newsletter"] != "granted" {
			t.Fatalf("look-up by %s: %d records, state %+v", a, len(got), st)
		}
	}
	if rows := exportRows(t, s, "blog", Query{}); len(rows) != 1 || rows[0].Email != "ann@example.org" {
		t.Fatalf("blog export right after the rectification: %+v", rows)
	}
	// Later records of the new address join the history too.
	w, err := s.WithdrawOnRequest(ctx, "tok", Withdrawal{Email: "ann@exmaple.org", Sites: []string{"shop"}, Purposes: []string{"newsletter"}, Reason: "r"}, AppendOptions{})
	if err != nil || w[0].Email != "ann@example.org" {
		t.Fatalf("withdraw after rectify: %+v %v", w, err)
	}
	got, _, _ := s.Subject("ann@exmaple.org")
	if len(got) != 5 {
		t.Fatalf("old address finds %d records, want 5", len(got))
	}
	// The signups export: one row, under the new address, with the state.
	rows := exportRows(t, s, "shop", Query{})
	var emails []string
	for _, r := range rows {
		emails = append(emails, r.Email)
	}
	slices.Sort(emails)
	if !slices.Equal(emails, []string{"ann@example.org", "bob@example.org"}) {
		t.Fatalf("export rows %v", emails)
	}
	for _, q := range []string{"ann@exmaple.org", "ann@example.org"} {
		rows := exportRows(t, s, "shop", Query{Email: q})
		if len(rows) != 1 || rows[0].Email != "ann@example.org" || rows[0].Purposes["shop"]["newsletter"] != "denied" || rows[0].FirstSignupAt != first.RecordedAt {
			t.Fatalf("export by %s: %+v", q, rows)
		}
	}
	// The old records stay as they were submitted.
	if all := allRecords(t, s, "shop"); all[0].Email != "ann@exmaple.org" {
		t.Fatalf("old record changed: %+v", all[0])
	}
	// Report: rectified, withdrawn on request.
	recsAll, st, _ := s.Subject("ann@example.org")
	rep := Report(recsAll, st)
	if rep.Email != "ann@example.org" || !slices.Contains(rep.Addresses, "ann@exmaple.org") || len(rep.Requests) != 3 ||
		rep.Requests[0].From != "ann@exmaple.org" || rep.Requests[0].To != "ann@example.org" {
		t.Fatalf("report %+v", rep)
	}
	var shop SiteReport
	for _, sr := range rep.Sites {
		if sr.Site == "shop" {
			shop = sr
		}
	}
	for _, p := range shop.Purposes {
		if p.Purpose == "newsletter" && (p.State != "denied" || p.GivenAt != first.RecordedAt || p.WithdrawnAt != w[0].RecordedAt || p.WithdrawnSource != "admin") {
			t.Fatalf("newsletter %+v", p)
		}
	}
	if shop.RectifiedAt != recs[1].RecordedAt && shop.RectifiedAt != recs[0].RecordedAt {
		t.Fatalf("rectified_at %v", shop.RectifiedAt)
	}

	// Erasing either address erases the whole person, both suppressed.
	er, err := s.Erase("tok", SubjectRef{Email: "ann@example.org"})
	if err != nil || er.Records != 5 {
		t.Fatalf("erase: %+v %v", er, err)
	}
	for _, a := range []string{"ann@exmaple.org", "ann@example.org"} {
		if ok, _ := s.Suppressed(a); !ok {
			t.Fatalf("%s not suppressed", a)
		}
	}
	for _, site := range []string{"shop", "blog"} {
		for _, r := range allRecords(t, s, site) {
			if strings.Contains(r.Email+r.NewEmail+r.Name, "ann") || (r.Event == "rectify" && !r.Erased) {
				t.Fatalf("record holds the person after erasure: %+v", r)
			}
		}
	}
	mustVerify(t, s)
}

func TestRectifyRefused(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	mustAppend(t, s, signupRecord("shop", "ann@example.org"))
	mustAppend(t, s, signupRecord("shop", "bob@example.org"))
	mustAppend(t, s, signupRecord("shop", "gone@example.org"))
	if _, err := s.Erase("tok", SubjectRef{Email: "gone@example.org"}); err != nil {
		t.Fatal(err)
	}
	before := len(allRecords(t, s, "shop"))
	cases := []struct {
		name string
		r    Rectification
		code string
		err  error
	}{
		{"same", Rectification{Email: "ann@example.org", NewEmail: "ANN@example.org ", Reason: "r"}, "invalid_field", nil},
		{"bad new", Rectification{Email: "ann@example.org", NewEmail: "ann@", Reason: "r"}, "invalid_email", nil},
		{"bad old", Rectification{Email: "", NewEmail: "x@example.org", Reason: "r"}, "invalid_email", nil},
		{"no reason", Rectification{Email: "ann@example.org", NewEmail: "x@example.org"}, "invalid_field", nil},
		{"long name", Rectification{Email: "ann@example.org", NewEmail: "x@example.org", Name: strings.Repeat("n", 201), Reason: "r"}, "invalid_field", nil},
		{"taken", Rectification{Email: "ann@example.org", NewEmail: "bob@example.org", Reason: "r"}, "", ErrSubjectExists},
		{"suppressed new", Rectification{Email: "ann@example.org", NewEmail: "gone@example.org", Reason: "r"}, "", ErrSuppressed},
		{"suppressed old", Rectification{Email: "gone@example.org", NewEmail: "x@example.org", Reason: "r"}, "", ErrSuppressed},
		{"no records", Rectification{Email: "nobody@example.org", NewEmail: "x@example.org", Reason: "r"}, "", ErrNotFound},
	}
	for _, c := range cases {
		_, err := s.Rectify(ctx, "tok", c.r, AppendOptions{})
		wantRefusal(t, c.name, err, c.code, c.err)
	}
	if n := len(allRecords(t, s, "shop")); n != before {
		t.Fatalf("%d records after refused rectifications, want %d", n, before)
	}
	mustVerify(t, s)
}

// TestRightsFieldsHash: records without the new fields hash as before (the
// golden files of codec_test.go pin that); with them, each field changes the
// hash, and a stored record round-trips through the codec.
func TestRightsFieldsHash(t *testing.T) {
	s := newTestStore(t)
	base := Record{Site: "shop", Event: "rectify", Source: "admin", Email: "a@example.org", NewEmail: "b@example.org", Reason: "typo"}
	hashOf := func(r Record) string {
		req := s.newAppendReq(context.Background(), r, nil)
		return string(req.tmpl.b)
	}
	plain := base
	plain.NewEmail, plain.Reason = "", ""
	if strings.Contains(hashOf(plain), "reason") || strings.Contains(hashOf(plain), "new_email") {
		t.Fatal("unset fields entered the canonical form")
	}
	other := base
	other.Reason = "typo!"
	if hashOf(base) == hashOf(other) {
		t.Fatal("reason not covered")
	}
	other = base
	other.NewEmail = "c@example.org"
	if hashOf(base) == hashOf(other) || strings.Contains(hashOf(base), "b@example.org") {
		t.Fatal("new_email must enter as a digest")
	}
	req := s.newAppendReq(context.Background(), base, nil)
	req.rec.hash = make([]byte, 32)
	dec, err := decodeRecord("shop", makeID(1, 1), encodeRecord(&req.rec))
	if err != nil || dec.Reason != "typo" || dec.NewEmail != "b@example.org" || string(dec.digests.newEmail) != string(req.rec.digests.newEmail) {
		t.Fatalf("codec round trip: %+v %v", dec, err)
	}
	got := mustAppend(t, s, Record{Site: "shop", Event: "withdraw", Source: "admin", Email: "a@example.org", Reason: "r", Choices: map[string]string{"newsletter": "denied"}})
	all := allRecords(t, s, "shop")
	if all[len(all)-1].Reason != "r" || all[len(all)-1].Hash != got.Hash {
		t.Fatalf("round trip: %+v", all[len(all)-1])
	}
	mustVerify(t, s)
}
