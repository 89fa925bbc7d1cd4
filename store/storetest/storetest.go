// Package storetest is the conformance suite of store.Ledger: every backend
// (the bbolt file in store, PostgreSQL in store/postgres) runs the same
// tests with RunTests, so they behave the same for the server and the CLI.
// It is test support, imported only by tests.
package storetest

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assent/assent/store"
)

// NewLedger opens a fresh, empty ledger that is closed when the test ends.
type NewLedger func(t *testing.T) store.Ledger

// RunTests runs the conformance suite against the backend newLedger opens.
func RunTests(t *testing.T, newLedger NewLedger) {
	tests := []struct {
		name string
		run  func(*testing.T, store.Ledger)
	}{
		{"AppendReadsBackEveryField", testAppendReadsBack},
		{"AppendNormalises", testAppendNormalises},
		{"AppendUnknownSite", testAppendUnknownSite},
		{"AppendCancelled", testAppendCancelled},
		{"ConcurrentAppendsOneChainPerSite", testConcurrentAppends},
		{"Sites", testSites},
		{"Notices", testNotices},
		{"RecordsQuery", testRecordsQuery},
		{"SubjectAcrossSites", testSubject},
		{"SubjectsExport", testSubjectsExport},
		{"EraseAndSuppression", testErase},
		{"Unsubscribe", testUnsubscribe},
		{"ReceiptVerifiesWithJWKS", testReceipt},
		{"Tokens", testTokens},
		{"AuditLog", testAuditLog},
		{"PurgeLeavesTombstones", testPurge},
		{"DoubleOptIn", testDoubleOptIn},
		{"OutboxCommittedWithRecord", testOutbox},
		{"OutboxCapAndOrder", testOutboxCapAndOrder},
		{"OutboxErasure", testOutboxErasure},
		{"EraseUnsubscribeRace", testEraseUnsubscribeRace},
		{"ErasureCoversVisitorIDs", testErasureCoversVisitorIDs},
		{"UsersSessionsAndRoles", testUsers},
		{"DoubleOptInConfirm", testConfirm},
		{"RightsOnRequest", testRights},
		{"AdminChangesAuditedInTheirTransaction", testAdminChangesAudited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger(t)
			for _, id := range []string{"shop", "blog"} {
				if _, err := l.CreateSite(context.Background(), Site(id)); err != nil {
					t.Fatal(err)
				}
			}
			tt.run(t, l)
		})
	}
}

// Site is the suite's example site: a banner and a newsletter signup.
func Site(id string) store.Site {
	return store.Site{
		ID: id, Name: "Example " + id, Origins: []string{"https://" + id + ".example"},
		Modes: []string{"banner", "signup"},
		Purposes: []store.Purpose{
			{ID: "necessary", Required: true},
			{ID: "analytics", ConsentMode: []string{"analytics_storage"}},
			{ID: "marketing", ConsentMode: []string{"ad_storage", "ad_user_data", "ad_personalization"}},
			{ID: "newsletter", Signup: true, RequiredForSignup: true},
		},
	}
}

// Record is a banner choice with every field set.
func Record(site string) store.Record {
	return store.Record{
		Site: site, Event: "partial", Source: "banner", Basis: "explicit",
		VisitorID: "v_5rj2k8qz1m", Country: "DE", Regime: "opt-in", GeoDB: "2026-06-17",
		NoticeVersion: "1", NoticeHash: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		WidgetBuild: "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", Locale: "de",
		Choices: map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "denied"},
		PageURL: "https://shop.example/cart?step=2", IP: "85.214.132.117",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0", GPC: true,
	}
}

// Signup is a newsletter signup of email, from a browser of its own (a
// shared visitor id would make two addresses one person).
func Signup(site, email string) store.Record {
	r := Record(site)
	r.Source, r.Event, r.Email, r.Name = "signup", "grant", email, "Ada Lovelace"
	r.VisitorID = "v_" + strings.ToLower(strings.TrimSpace(email))
	r.Choices = map[string]string{"necessary": "granted", "newsletter": "granted"}
	return r
}

var ctx = context.Background()

func mustAppend(t *testing.T, l store.Ledger, r store.Record) store.Record {
	t.Helper()
	got, err := l.Append(ctx, r)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return got
}

func records(t *testing.T, l store.Ledger, site string, q store.Query) []store.Record {
	t.Helper()
	var recs []store.Record
	if err := l.Records(ctx, site, q, func(r store.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return recs
}

// MustVerify fails the test unless every chain verifies.
func MustVerify(t *testing.T, l store.Ledger) store.VerifyReport {
	t.Helper()
	rep, err := l.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("Verify: not OK: site %q record %s: %s", rep.BadSite, rep.BadID, rep.Reason)
	}
	return rep
}

func testAppendReadsBack(t *testing.T, l store.Ledger) {
	in := Signup("shop", "  Ada.Lovelace@Example.ORG ")
	in.ID, in.Hash, in.PrevHash = "forged", "forged", "forged"
	in.RecordedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	before := time.Now().Add(-time.Second) // the database's clock may lag a little
	got := mustAppend(t, l, in)
	want := in
	want.Email, want.IP = "ada.lovelace@example.org", "85.214.132.0"
	want.ID, want.RecordedAt, want.PrevHash, want.Hash = got.ID, got.RecordedAt, "", got.Hash
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Append returned\n%+v\nwant\n%+v", got, want)
	}
	if len(got.ID) != 26 || len(got.Hash) != 64 || got.RecordedAt.Before(before) || got.RecordedAt.Location() != time.UTC {
		t.Fatalf("id %q hash %q recorded_at %v", got.ID, got.Hash, got.RecordedAt)
	}
	second := mustAppend(t, l, Record("shop"))
	if second.PrevHash != got.Hash || !second.RecordedAt.After(got.RecordedAt) || second.ID <= got.ID {
		t.Fatalf("second record does not follow the first: %+v", second)
	}
	recs := records(t, l, "shop", store.Query{})
	if len(recs) != 2 || !reflect.DeepEqual(recs[0], got) || !reflect.DeepEqual(recs[1], second) {
		t.Fatalf("read back %+v", recs)
	}
	rep := MustVerify(t, l)
	if rep.Records != 2 || rep.Sites["shop"].Head != second.Hash || rep.Sites["shop"].Records != 2 {
		t.Fatalf("verify report %+v", rep)
	}
	counts, err := l.Counts(ctx)
	if err != nil || counts["shop"] != 2 || counts["blog"] != 0 {
		t.Fatalf("counts %v %v", counts, err)
	}
}

func testAppendNormalises(t *testing.T, l store.Ledger) {
	tests := []struct {
		name   string
		change func(*store.Record)
		field  func(store.Record) string
		want   string
	}{
		{"ipv6 /48", func(r *store.Record) { r.IP = "2001:db8:1234:5678::1" }, func(r store.Record) string { return r.IP }, "2001:db8:1234::"},
		{"ipv4-mapped", func(r *store.Record) { r.IP = "::ffff:85.214.132.117" }, func(r store.Record) string { return r.IP }, "85.214.132.0"},
		{"garbage ip dropped", func(r *store.Record) { r.IP = "not an ip" }, func(r store.Record) string { return r.IP }, ""},
		{"invalid utf-8", func(r *store.Record) { r.UserAgent = "a\xffb" }, func(r store.Record) string { return r.UserAgent }, "a\uFFFDb"},
		{"email", func(r *store.Record) { r.Email = "\tBOB@Example.COM\n" }, func(r store.Record) string { return r.Email }, "bob@example.com"},
		{"nul and quotes kept", func(r *store.Record) { r.PageURL = "https://x.example/?q=\"\x00\"" }, func(r store.Record) string { return r.PageURL }, "https://x.example/?q=\"\x00\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Record("shop")
			tt.change(&r)
			got := mustAppend(t, l, r)
			if v := tt.field(got); v != tt.want {
				t.Fatalf("stored %q, want %q", v, tt.want)
			}
			all := records(t, l, "shop", store.Query{})
			if v := tt.field(all[len(all)-1]); v != tt.want {
				t.Fatalf("read back %q, want %q", v, tt.want)
			}
		})
	}
	MustVerify(t, l)
}

func testAppendUnknownSite(t *testing.T, l store.Ledger) {
	if _, err := l.Append(ctx, Record("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("append to unknown site: %v, want ErrNotFound", err)
	}
	if err := l.Records(ctx, "nope", store.Query{}, func(store.Record) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("records of unknown site: %v", err)
	}
	mustAppend(t, l, Record("shop")) // the writer goes on
	MustVerify(t, l)
}

func testAppendCancelled(t *testing.T, l store.Ledger) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Append(c, Record("shop")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled append: %v", err)
	}
	if n := len(records(t, l, "shop", store.Query{})); n != 0 {
		t.Fatalf("cancelled append stored %d records", n)
	}
}

func testConcurrentAppends(t *testing.T, l store.Ledger) {
	const writers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			site := []string{"shop", "blog"}[w%2]
			for i := range each {
				r := Record(site)
				r.VisitorID = fmt.Sprintf("v_%d_%d", w, i)
				if _, err := l.Append(ctx, r); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep := MustVerify(t, l)
	if rep.Records != writers*each || rep.Sites["shop"].Records != writers*each/2 {
		t.Fatalf("verify report %+v", rep)
	}
	for _, site := range []string{"shop", "blog"} {
		recs := records(t, l, site, store.Query{})
		for i := 1; i < len(recs); i++ {
			if recs[i].PrevHash != recs[i-1].Hash || !recs[i].RecordedAt.After(recs[i-1].RecordedAt) {
				t.Fatalf("%s: record %d does not follow record %d", site, i, i-1)
			}
		}
	}
}

func testSites(t *testing.T, l store.Ledger) {
	if _, err := l.CreateSite(ctx, Site("shop")); !errors.Is(err, store.ErrSiteExists) {
		t.Fatalf("duplicate site: %v", err)
	}
	bad := Site("bad")
	bad.Purposes = nil
	var ve *store.ValidationError
	if _, err := l.CreateSite(ctx, bad); !errors.As(err, &ve) || ve.Field != "purposes" {
		t.Fatalf("invalid site: %v", err)
	}
	got, err := l.Site(ctx, "shop")
	if err != nil || got.PolicyVersion != "1" || got.CreatedAt.IsZero() || !reflect.DeepEqual(got.Purposes, Site("shop").Purposes) {
		t.Fatalf("site %+v %v", got, err)
	}
	changed := got
	changed.Purposes = append(slices.Clone(got.Purposes), store.Purpose{ID: "video"})
	changed.PolicyVersion = ""
	put, err := l.PutSite(ctx, changed)
	if err != nil || put.PolicyVersion != "2" || !put.CreatedAt.Equal(got.CreatedAt) {
		t.Fatalf("put %+v %v", put, err)
	}
	named := put
	named.Name = "Renamed"
	if put2, err := l.PutSite(ctx, named); err != nil || put2.PolicyVersion != "2" {
		t.Fatalf("a name change moved the policy version: %+v %v", put2, err)
	}
	if _, err := l.PutSite(ctx, Site("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("put unknown: %v", err)
	}
	if _, err := l.Site(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown site: %v", err)
	}
	sites, err := l.Sites(ctx)
	if err != nil || len(sites) != 2 || sites[0].ID != "blog" || sites[1].Name != "Renamed" {
		t.Fatalf("sites %+v %v", sites, err)
	}
}

func testNotices(t *testing.T, l store.Ledger) {
	texts := []byte(`{"title":"Wir verwenden Cookies"}`)
	h, err := l.PutNotice(ctx, texts)
	if err != nil || !strings.HasPrefix(h, "sha256:") || len(h) != 71 {
		t.Fatalf("PutNotice %q %v", h, err)
	}
	if h2, err := l.PutNotice(ctx, texts); err != nil || h2 != h {
		t.Fatalf("second PutNotice %q %v", h2, err)
	}
	got, err := l.Notice(ctx, h)
	if err != nil || string(got) != string(texts) {
		t.Fatalf("Notice %q %v", got, err)
	}
	for _, bad := range []string{"", "sha256:", "sha256:zz", "md5:" + h[7:], "sha256:" + strings.Repeat("0", 64)} {
		if _, err := l.Notice(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Notice(%q): %v", bad, err)
		}
	}
}

func testRecordsQuery(t *testing.T, l store.Ledger) {
	var all []store.Record
	for i := range 6 {
		r := Record("shop")
		if i%2 == 1 {
			r.Country, r.Regime = "US", "notice"
			r.Choices = map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "granted"}
		}
		all = append(all, mustAppend(t, l, r))
	}
	mustAppend(t, l, Signup("shop", "ada@example.org"))
	ids := func(recs []store.Record) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	if got := records(t, l, "shop", store.Query{From: all[2].RecordedAt, To: all[4].RecordedAt}); !slices.Equal(ids(got), ids(all[2:4])) {
		t.Errorf("time range: %v, want %v", ids(got), ids(all[2:4]))
	}
	if got := records(t, l, "shop", store.Query{Country: "US"}); len(got) != 3 || got[0].ID != all[1].ID {
		t.Errorf("country: %v", ids(got))
	}
	if got := records(t, l, "shop", store.Query{Purpose: "marketing"}); len(got) != 3 {
		t.Errorf("purpose: %v", ids(got))
	}
	if got := records(t, l, "shop", store.Query{Email: " ADA@example.org"}); len(got) != 1 || got[0].Email != "ada@example.org" {
		t.Errorf("email: %+v", got)
	}
	if got := records(t, l, "blog", store.Query{}); len(got) != 0 {
		t.Errorf("other site: %v", ids(got))
	}
	stop := errors.New("stop")
	n := 0
	if err := l.Records(ctx, "shop", store.Query{}, func(store.Record) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn's error: %v after %d", err, n)
	}
}

func testSubject(t *testing.T, l store.Ledger) {
	first := mustAppend(t, l, Signup("shop", "Ada@example.org"))
	mustAppend(t, l, Signup("blog", "ada@example.org"))
	mustAppend(t, l, Signup("shop", "bob@example.org"))
	change := Signup("shop", "ada@example.org")
	change.Source, change.Event = "preferences", "partial"
	change.Choices = map[string]string{"newsletter": "denied", "analytics": "granted"}
	last := mustAppend(t, l, change)
	recs, st, err := l.Subject(ctx, " ADA@EXAMPLE.ORG ")
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
	if st.Purposes["shop"]["newsletter"] != "denied" || st.Purposes["shop"]["analytics"] != "granted" || st.Purposes["blog"]["newsletter"] != "granted" {
		t.Fatalf("purposes %v", st.Purposes)
	}
	recs, st, err = l.Subject(ctx, "nobody@example.org")
	if err != nil || len(recs) != 0 || st.DoubleOptIn != "none" {
		t.Fatalf("unknown person: %v %+v %v", recs, st, err)
	}
}

func testSubjectsExport(t *testing.T, l store.Ledger) {
	const people = 300 // more than one page of people
	for i := range people {
		r := Signup("shop", fmt.Sprintf("p%03d@example.org", i))
		if i%3 == 0 {
			r.Country, r.Regime = "US", "notice"
		}
		mustAppend(t, l, r)
	}
	mustAppend(t, l, Signup("blog", "p000@example.org"))
	mustAppend(t, l, Record("shop")) // a banner choice is nobody's signup
	collect := func(site string, q store.Query) []store.SubjectState {
		var out []store.SubjectState
		if err := l.Subjects(ctx, site, q, func(s store.SubjectState) error { out = append(out, s); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := collect("shop", store.Query{})
	if len(all) != people {
		t.Fatalf("%d people, want %d", len(all), people)
	}
	seen := map[string]bool{}
	for _, s := range all {
		if seen[s.Email] || s.Purposes["shop"]["newsletter"] != "granted" || s.Purposes["blog"] != nil {
			t.Fatalf("row %+v", s)
		}
		seen[s.Email] = true
	}
	if us := collect("shop", store.Query{Country: "US"}); len(us) != people/3 {
		t.Errorf("country filter: %d", len(us))
	}
	if one := collect("shop", store.Query{Email: "P007@example.org"}); len(one) != 1 || one[0].Email != "p007@example.org" {
		t.Errorf("email filter: %+v", one)
	}
	if blog := collect("blog", store.Query{}); len(blog) != 1 {
		t.Errorf("blog: %+v", blog)
	}
}

func testErase(t *testing.T, l store.Ledger) {
	a := mustAppend(t, l, Signup("shop", "ada@example.org"))
	mustAppend(t, l, Signup("blog", "ada@example.org"))
	other := mustAppend(t, l, Signup("shop", "bob@example.org"))
	if err := l.SetDoubleOptIn(ctx, "ada@example.org", "pending", "85.214.132.117"); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Erase(ctx, "test", store.SubjectRef{Email: " ADA@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Email != "ada@example.org" || rep.Records != 2 || rep.SuppressedAt.IsZero() || len(rep.Kept) == 0 || rep.Reason == "" {
		t.Fatalf("report %+v", rep)
	}
	recs, st, err := l.Subject(ctx, "ada@example.org")
	if err != nil || len(recs) != 2 || !st.Suppressed || st.PendingIP != "" || st.PendingAt.IsZero() {
		t.Fatalf("after erasure: %+v %+v %v", recs, st, err)
	}
	for _, r := range recs {
		if !r.Erased || r.Email != "" || r.Name != "" || r.VisitorID != "" || r.IP != "" || r.UserAgent != "" ||
			r.Hash == "" || r.Choices["newsletter"] != "granted" {
			t.Fatalf("erased record %+v", r)
		}
	}
	if recs[0].ID != a.ID || recs[0].Hash != a.Hash {
		t.Fatal("erasure changed the id or hash")
	}
	if got := records(t, l, "shop", store.Query{Email: "bob@example.org"}); len(got) != 1 || got[0].Email != "bob@example.org" || got[0].Hash != other.Hash {
		t.Fatalf("someone else's record changed: %+v", got)
	}
	MustVerify(t, l)
	if sup, err := l.Suppressed(ctx, "Ada@Example.org"); err != nil || !sup {
		t.Fatalf("suppressed %v %v", sup, err)
	}
	if _, err := l.Append(ctx, Signup("shop", "ada@example.org")); !errors.Is(err, store.ErrSuppressed) {
		t.Fatalf("signup after erasure: %v", err)
	}
	var actions []string
	if err := l.AuditLog(ctx, time.Time{}, time.Time{}, func(e store.AuditEntry) error {
		actions = append(actions, e.Action)
		if strings.Contains(e.Detail, "ada") {
			t.Errorf("audit names the person: %+v", e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(actions, "suppressed_signup") {
		t.Fatalf("no suppressed_signup audit entry: %v", actions)
	}
	// A banner choice (no email) is still fine, and erasing again keeps
	// the first suppression time.
	mustAppend(t, l, Record("shop"))
	rep2, err := l.Erase(ctx, "test", store.SubjectRef{Email: "ada@example.org"})
	if err != nil || !rep2.SuppressedAt.Equal(rep.SuppressedAt) || rep2.Records != 2 {
		t.Fatalf("second erasure %+v %v", rep2, err)
	}
	// Erasing an address without records still suppresses it.
	if _, err := l.Erase(ctx, "test", store.SubjectRef{Email: "carol@example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, Signup("blog", "carol@example.org")); !errors.Is(err, store.ErrSuppressed) {
		t.Fatalf("signup of an address erased before any record: %v", err)
	}
}

func testUnsubscribe(t *testing.T, l store.Ledger) {
	signup := mustAppend(t, l, Signup("shop", "ada@example.org"))
	token := l.UnsubscribeToken("shop", "ADA@example.org")
	site, subject, err := l.ParseUnsubscribeToken(token)
	if err != nil || site != "shop" || len(subject) != 64 || strings.Contains(token, "ada") {
		t.Fatalf("token %q: %q %q %v", token, site, subject, err)
	}
	rec, err := l.Unsubscribe(ctx, token, store.Record{IP: "85.214.132.9", UserAgent: "Mail/1"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Event != "withdraw" || rec.Source != "unsubscribe" || rec.Email != "ada@example.org" ||
		rec.Choices["newsletter"] != "denied" || rec.PrevHash != signup.Hash || rec.IP != "85.214.132.0" {
		t.Fatalf("withdraw record %+v", rec)
	}
	for _, bad := range []string{"", "x", token[:len(token)-2] + "AA", strings.ToUpper(token)} {
		if _, err := l.Unsubscribe(ctx, bad, store.Record{}); !errors.Is(err, store.ErrBadToken) {
			t.Errorf("token %q: %v", bad, err)
		}
	}
	// Unsubscribing again stores nothing and answers with the withdrawal.
	again, err := l.Unsubscribe(ctx, token, store.Record{})
	if err != nil || again.ID != rec.ID {
		t.Fatalf("second unsubscribe: %+v %v", again, err)
	}
	// After erasure the person is named by digest only.
	if _, err := l.Erase(ctx, "test", store.SubjectRef{Email: "ada@example.org"}); err != nil {
		t.Fatal(err)
	}
	recs, _, err := l.Subject(ctx, "ada@example.org")
	if err != nil || len(recs) != 2 || !recs[1].Erased {
		t.Fatalf("subject after erasure: %+v, %v", recs, err)
	}
	resub := Signup("shop", "ada@example.org")
	resub.Source = "preferences"
	resub.Choices = map[string]string{"newsletter": "granted"}
	if r := mustAppend(t, l, resub); !r.Erased || r.Email != "" {
		t.Fatalf("a later record of an erased address is stored in clear: %+v", r)
	}
	rec, err = l.Unsubscribe(ctx, token, store.Record{})
	if err != nil || !rec.Erased || rec.Email != "" || rec.Event != "withdraw" {
		t.Fatalf("unsubscribe after erasure: %+v %v", rec, err)
	}
	if recs, _, err := l.Subject(ctx, "ada@example.org"); err != nil || len(recs) != 4 {
		t.Fatalf("subject after erased unsubscribe: %d records, %v", len(recs), err)
	}
	MustVerify(t, l)
}

func testReceipt(t *testing.T, l store.Ledger) {
	rec := mustAppend(t, l, Signup("shop", "ada@example.org"))
	jws, err := l.Receipt(rec)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := l.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct{ Kid, X string } `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks %s %v", jwks, err)
	}
	pub, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("receipt %q", jws)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatal("receipt does not verify with the JWKS key")
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		ID   string `json:"consentReceiptID"`
		Hash string `json:"hash"`
		Key  string `json:"publicKey"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.ID != rec.ID || claims.Hash != rec.Hash || claims.Key != set.Keys[0].Kid {
		t.Fatalf("claims %s %v", payload, err)
	}
}

func testTokens(t *testing.T, l store.Ledger) {
	if n, err := l.TokenCount(ctx); err != nil || n != 0 {
		t.Fatalf("count %d %v", n, err)
	}
	tok, err := l.CreateToken(ctx, "")
	if err != nil || !strings.HasPrefix(tok, "asn_") {
		t.Fatalf("create %q %v", tok, err)
	}
	named, err := l.CreateToken(ctx, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateToken(ctx, "ci"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	var ve *store.ValidationError
	if _, err := l.CreateToken(ctx, "bad name!"); !errors.As(err, &ve) {
		t.Fatalf("bad name: %v", err)
	}
	if name, ok := l.CheckToken(ctx, tok); !ok || name != "admin-1" {
		t.Fatalf("check %q %v", name, ok)
	}
	if name, ok := l.CheckToken(ctx, named); !ok || name != "ci" {
		t.Fatalf("check %q %v", name, ok)
	}
	for _, bad := range []string{"", "asn_", tok + "x", strings.TrimPrefix(tok, "asn_")} {
		if _, ok := l.CheckToken(ctx, bad); ok {
			t.Errorf("token %q accepted", bad)
		}
	}
	toks, err := l.Tokens(ctx)
	if err != nil || len(toks) != 2 || toks[0].Name != "admin-1" || toks[1].Name != "ci" || toks[0].CreatedAt.IsZero() {
		t.Fatalf("tokens %+v %v", toks, err)
	}
	if err := l.RevokeToken(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.CheckToken(ctx, named); ok {
		t.Fatal("revoked token accepted")
	}
	if err := l.RevokeToken(ctx, "ci"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	if n, err := l.TokenCount(ctx); err != nil || n != 1 {
		t.Fatalf("count %d %v", n, err)
	}
}

func testAuditLog(t *testing.T, l store.Ledger) {
	for i := range 5 {
		if err := l.Audit(ctx, "ci", "export", fmt.Sprintf("n=%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var got []store.AuditEntry
	if err := l.AuditLog(ctx, time.Time{}, time.Time{}, func(e store.AuditEntry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0].Detail != "n=0" || got[4].Detail != "n=4" || got[0].Token != "ci" || got[0].At.IsZero() {
		t.Fatalf("audit %+v", got)
	}
	var none []store.AuditEntry
	if err := l.AuditLog(ctx, got[4].At.Add(time.Nanosecond), time.Time{}, func(e store.AuditEntry) error { none = append(none, e); return nil }); err != nil || len(none) != 0 {
		t.Fatalf("after the last: %+v %v", none, err)
	}
	var upTo []store.AuditEntry
	if err := l.AuditLog(ctx, time.Time{}, got[4].At, func(e store.AuditEntry) error { upTo = append(upTo, e); return nil }); err != nil || len(upTo) > 4 {
		t.Fatalf("before the last: %+v %v", upTo, err)
	}
}

func testPurge(t *testing.T, l store.Ledger) {
	site, err := l.Site(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	site.RetentionDays = 30
	if _, err := l.PutSite(ctx, site); err != nil {
		t.Fatal(err)
	}
	old := []store.Record{mustAppend(t, l, Signup("shop", "ada@example.org")), mustAppend(t, l, Record("shop"))}
	mustAppend(t, l, Record("blog")) // blog keeps forever
	if n, err := l.Purge(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("purge of fresh records: %d %v", n, err)
	}
	later := time.Now().Add(31 * 24 * time.Hour)
	n, err := l.Purge(ctx, later)
	if err != nil || n != 2 {
		t.Fatalf("purge: %d %v", n, err)
	}
	if n, err := l.Purge(ctx, later); err != nil || n != 0 {
		t.Fatalf("second purge: %d %v", n, err)
	}
	recent := mustAppend(t, l, Record("shop"))
	all := records(t, l, "shop", store.Query{Tombstones: true})
	if len(all) != 3 || !all[0].Tombstone || all[0].ID != old[0].ID || all[0].Hash != old[0].Hash || all[0].Email != "" ||
		!all[1].Tombstone || all[2].ID != recent.ID || all[2].PrevHash != old[1].Hash {
		t.Fatalf("after purge: %+v", all)
	}
	if live := records(t, l, "shop", store.Query{}); len(live) != 1 {
		t.Fatalf("tombstones listed by default: %+v", live)
	}
	if recs, _, err := l.Subject(ctx, "ada@example.org"); err != nil || len(recs) != 0 {
		t.Fatalf("purged person still found: %+v %v", recs, err)
	}
	if len(records(t, l, "blog", store.Query{})) != 1 {
		t.Fatal("a site without retention was purged")
	}
	MustVerify(t, l)
	found := false
	l.AuditLog(ctx, time.Time{}, time.Time{}, func(e store.AuditEntry) error {
		found = found || (e.Action == "purge" && e.Token == store.SystemActor && strings.Contains(e.Detail, "records=2"))
		return nil
	})
	if !found {
		t.Fatal("no purge audit entry")
	}
}

func testDoubleOptIn(t *testing.T, l store.Ledger) {
	mustAppend(t, l, Signup("shop", "ada@example.org"))
	if err := l.SetDoubleOptIn(ctx, "ada@example.org", "maybe", ""); err == nil {
		t.Fatal("unknown state accepted")
	}
	if err := l.SetDoubleOptIn(ctx, "ada@example.org", "pending", "85.214.132.117"); err != nil {
		t.Fatal(err)
	}
	if err := l.SetDoubleOptIn(ctx, "ada@example.org", "confirmed", "2001:db8:1:2::3"); err != nil {
		t.Fatal(err)
	}
	_, st, err := l.Subject(ctx, "ada@example.org")
	if err != nil || st.DoubleOptIn != "confirmed" || st.PendingIP != "85.214.132.0" || st.ConfirmedIP != "2001:db8:1::" ||
		st.PendingAt.IsZero() || st.ConfirmedAt.Before(st.PendingAt) {
		t.Fatalf("state %+v %v", st, err)
	}
}

// mailItems queues one mail per record, capped at 3 a day per address like
// the confirmation mails.
func mailItems(rec store.Record) ([]store.OutboxItem, error) {
	p, _ := json.Marshal(map[string]string{"to": rec.Email})
	return []store.OutboxItem{{Kind: "mail", Key: "k-" + rec.Email, Payload: p, Cap: store.OutboxCap{N: 3, Per: 24 * time.Hour}}}, nil
}

func testOutbox(t *testing.T, l store.Ledger) {
	rec, items, err := l.AppendWith(ctx, Signup("shop", "Ada@Example.org"), store.AppendOptions{Outbox: mailItems})
	if err != nil || len(items) != 1 {
		t.Fatalf("AppendWith: %+v %v", items, err)
	}
	it := items[0]
	if it.Record != rec.ID || it.Site != "shop" || it.State != store.OutboxQueued || it.Attempts != 0 ||
		!it.CreatedAt.Equal(rec.RecordedAt) || !it.NextAttemptAt.Equal(rec.RecordedAt) || len(it.ID) != 16 {
		t.Fatalf("item %+v does not belong to record %s at %v", it, rec.ID, rec.RecordedAt)
	}
	select {
	case <-l.OutboxWake():
	default:
		t.Fatal("no wake-up after a commit that queued an item")
	}
	now := rec.RecordedAt.Add(time.Second)
	due, _, err := l.OutboxDue(ctx, "mail", now, 10)
	if err != nil || len(due) != 1 || due[0].ID != it.ID || string(due[0].Payload) != `{"to":"ada@example.org"}` {
		t.Fatalf("OutboxDue = %+v, %v", due, err)
	}
	if due, _, _ := l.OutboxDue(ctx, "webhook", now, 10); len(due) != 0 {
		t.Fatalf("OutboxDue(webhook) = %+v", due)
	}
	retry := now.Add(10 * time.Second)
	got, err := l.OutboxAttempt(ctx, it.ID, store.Attempt{Err: "421 4.7.0 try again later", Code: 421, Retry: retry})
	if err != nil || got.State != store.OutboxQueued || got.Attempts != 1 || got.LastCode != 421 || !got.NextAttemptAt.Equal(retry) {
		t.Fatalf("after a retry: %+v, %v", got, err)
	}
	due, next, _ := l.OutboxDue(ctx, "", now, 10)
	if len(due) != 0 || !next.Equal(retry) {
		t.Fatalf("before the retry time: due %+v, next %v; want none, %v", due, next, retry)
	}
	if due, _, _ := l.OutboxDue(ctx, "", retry, 10); len(due) != 1 {
		t.Fatalf("at the retry time: due %+v", due)
	}
	got, err = l.OutboxAttempt(ctx, it.ID, store.Attempt{})
	if err != nil || got.State != store.OutboxSent || got.Attempts != 2 || got.DoneAt.IsZero() {
		t.Fatalf("after sending: %+v, %v", got, err)
	}
	if again, _ := l.OutboxAttempt(ctx, it.ID, store.Attempt{Err: "late"}); again.State != store.OutboxSent || again.Attempts != 2 {
		t.Fatalf("a report on a sent item changed it: %+v", again)
	}
	_, items, _ = l.AppendWith(ctx, Signup("shop", "bob@example.org"), store.AppendOptions{Outbox: mailItems})
	got, err = l.OutboxAttempt(ctx, items[0].ID, store.Attempt{Err: "550 5.1.1 no such user", Code: 550})
	if err != nil || got.State != store.OutboxFailed || got.LastError != "550 5.1.1 no such user" {
		t.Fatalf("after a final failure: %+v, %v", got, err)
	}
	counts, err := l.OutboxCounts(ctx, "mail")
	if err != nil || counts[store.OutboxSent] != 1 || counts[store.OutboxFailed] != 1 || counts[store.OutboxQueued] != 0 {
		t.Fatalf("counts %v, %v", counts, err)
	}
	for _, bad := range []string{"00000000000000ff", "not an id"} {
		if _, err := l.OutboxAttempt(ctx, bad, store.Attempt{}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("attempt on %q: %v", bad, err)
		}
	}
	l.AppendWith(ctx, Signup("blog", "carol@example.org"), store.AppendOptions{Outbox: mailItems})
	list, err := l.OutboxList(ctx, store.OutboxQuery{Site: "shop", Kind: "mail"})
	if err != nil || len(list) != 2 || list[0].ID != items[0].ID || list[1].ID != it.ID {
		t.Fatalf("OutboxList(shop) = %+v, %v", list, err)
	}
	if page, _ := l.OutboxList(ctx, store.OutboxQuery{Site: "shop", Before: items[0].ID}); len(page) != 1 || page[0].ID != it.ID {
		t.Fatalf("OutboxList before = %+v", page)
	}
	if got, _ := l.OutboxList(ctx, store.OutboxQuery{Site: "sho"}); len(got) != 0 {
		t.Fatalf("OutboxList of a prefix of a site id = %+v", got)
	}
	// A failing Outbox function stores neither the record nor items.
	boom := errors.New("boom")
	if _, _, err := l.AppendWith(ctx, Signup("shop", "dan@example.org"), store.AppendOptions{Outbox: func(store.Record) ([]store.OutboxItem, error) { return nil, boom }}); err == nil {
		t.Fatal("a failing Outbox function did not fail the append")
	}
	if recs, _, _ := l.Subject(ctx, "dan@example.org"); len(recs) != 0 {
		t.Fatalf("a failed append stored %d records", len(recs))
	}
	MustVerify(t, l)
}

func testOutboxCapAndOrder(t *testing.T, l store.Ledger) {
	queued := func(email string) int {
		_, items, err := l.AppendWith(ctx, Signup("shop", email), store.AppendOptions{Outbox: mailItems})
		if err != nil {
			t.Fatal(err)
		}
		return len(items)
	}
	for i := range 3 {
		if n := queued("ada@example.org"); n != 1 {
			t.Fatalf("signup %d: %d items", i+1, n)
		}
	}
	if n := queued("ada@example.org"); n != 0 {
		t.Fatalf("a 4th signup within 24 h queued %d items", n)
	}
	if n := queued("bob@example.org"); n != 1 {
		t.Fatalf("another address is capped: %d items", n)
	}
	if recs, _, _ := l.Subject(ctx, "ada@example.org"); len(recs) != 4 {
		t.Fatalf("%d records of ada, want 4", len(recs))
	}
	var made []store.OutboxItem
	for i := range 3 {
		for _, ep := range []string{"wh_a", "wh_b"} {
			items, err := l.Enqueue(ctx, store.OutboxItem{Kind: "webhook", Site: "shop", Key: ep, Ordered: true, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
			if err != nil {
				t.Fatal(err)
			}
			made = append(made, items...)
		}
	}
	now := time.Now().Add(time.Hour)
	heads := func() string {
		due, _, err := l.OutboxDue(ctx, "webhook", now, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range due {
			out = append(out, it.Key+string(it.Payload))
		}
		return fmt.Sprint(out)
	}
	if h := heads(); h != `[wh_a{"n":0} wh_b{"n":0}]` {
		t.Fatalf("due = %s", h)
	}
	l.OutboxAttempt(ctx, made[0].ID, store.Attempt{Err: "503", Code: 503, Retry: now.Add(time.Minute)})
	l.OutboxAttempt(ctx, made[1].ID, store.Attempt{})
	if h := heads(); h != `[wh_b{"n":1}]` {
		t.Fatalf("due = %s, want only wh_b's second item", h)
	}
	l.OutboxAttempt(ctx, made[0].ID, store.Attempt{Err: "503", Code: 503})
	if h := heads(); h != `[wh_a{"n":1} wh_b{"n":1}]` {
		t.Fatalf("due = %s", h)
	}
	if got, _ := l.OutboxList(ctx, store.OutboxQuery{Site: "shop", Kind: "webhook", Key: "wh_b"}); len(got) != 3 || string(got[0].Payload) != `{"n":2}` {
		t.Fatalf("list of one endpoint = %+v", got)
	}
	for _, bad := range []store.OutboxItem{{Kind: ""}, {Kind: "mail", Payload: json.RawMessage("{")}} {
		if _, err := l.Enqueue(ctx, bad); err == nil {
			t.Errorf("Enqueue(%+v) accepted", bad)
		}
	}
}

func testOutboxErasure(t *testing.T, l store.Ledger) {
	_, sent, _ := l.AppendWith(ctx, Signup("shop", "ada@example.org"), store.AppendOptions{Outbox: mailItems})
	l.OutboxAttempt(ctx, sent[0].ID, store.Attempt{})
	_, queued, _ := l.AppendWith(ctx, Signup("shop", "ada@example.org"), store.AppendOptions{Outbox: mailItems})
	_, other, _ := l.AppendWith(ctx, Signup("shop", "bob@example.org"), store.AppendOptions{Outbox: mailItems})
	if _, err := l.Erase(ctx, "test", store.SubjectRef{Email: "ada@example.org"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{sent[0].ID, queued[0].ID} {
		if it, err := l.OutboxItemByID(ctx, id); err != nil || it.Payload != nil {
			t.Fatalf("erased person's item %s: %+v, %v", id, it, err)
		}
	}
	if it, _ := l.OutboxItemByID(ctx, queued[0].ID); it.State != store.OutboxFailed || it.LastError != "erased" {
		t.Fatalf("erased person's queued item: %+v", it)
	}
	if it, _ := l.OutboxItemByID(ctx, sent[0].ID); it.State != store.OutboxSent {
		t.Fatalf("erased person's sent item: %+v", it)
	}
	due, _, _ := l.OutboxDue(ctx, "", time.Now().Add(time.Hour), 10)
	if len(due) != 1 || due[0].ID != other[0].ID || string(due[0].Payload) != `{"to":"bob@example.org"}` {
		t.Fatalf("due after erasure = %+v", due)
	}
}

// testEraseUnsubscribeRace runs an erasure and an unsubscribe of the same
// person at the same time: whichever commits first, no record may hold the
// person's data in clear after both.
func testEraseUnsubscribeRace(t *testing.T, l store.Ledger) {
	const runs = 40
	meta := store.Record{IP: "85.214.132.77", UserAgent: "Mail/1.0", Country: "DE", Regime: "opt-in"}
	for i := range runs {
		email := fmt.Sprintf("race%03d@example.org", i)
		mustAppend(t, l, Signup("shop", email))
		token := l.UnsubscribeToken("shop", email)
		var wg sync.WaitGroup
		var eraseErr, unsubErr error
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, eraseErr = l.Erase(ctx, "test", store.SubjectRef{Email: email})
		}()
		go func() {
			defer wg.Done()
			<-start
			_, unsubErr = l.Unsubscribe(ctx, token, meta)
		}()
		close(start)
		wg.Wait()
		if eraseErr != nil || unsubErr != nil {
			t.Fatalf("run %d: erase %v, unsubscribe %v", i, eraseErr, unsubErr)
		}
		recs, st, err := l.Subject(ctx, email)
		if err != nil || len(recs) != 2 || !st.Suppressed {
			t.Fatalf("run %d: %d records, suppressed %v, %v", i, len(recs), st.Suppressed, err)
		}
		for _, r := range recs {
			if !r.Erased || r.Email != "" || r.Name != "" || r.VisitorID != "" || r.IP != "" || r.UserAgent != "" {
				t.Fatalf("run %d: record %s (%s) holds personal data after erasure: %+v", i, r.ID, r.Source, r)
			}
		}
	}
	for _, r := range records(t, l, "shop", store.Query{}) {
		if r.Email != "" {
			t.Fatalf("record %s holds an address in clear", r.ID)
		}
	}
	MustVerify(t, l)
}

// testErasureCoversVisitorIDs: erasing an address erases the banner
// choices of its visitor ids, and look-up and erasure work by visitor id
// and by record id.
func testErasureCoversVisitorIDs(t *testing.T, l store.Ledger) {
	banner := func(site, visitor string) store.Record {
		r := Record(site)
		r.VisitorID = visitor
		return r
	}
	b1 := mustAppend(t, l, banner("shop", "v_ada_laptop"))
	b2 := mustAppend(t, l, banner("blog", "v_ada_laptop"))
	signup := Signup("shop", "ada@example.org")
	signup.VisitorID = "v_ada_laptop"
	sr := mustAppend(t, l, signup)
	phone := Signup("blog", "ada@example.org")
	phone.VisitorID = "v_ada_phone"
	pr := mustAppend(t, l, phone)
	b3 := mustAppend(t, l, banner("shop", "v_ada_phone"))
	other := mustAppend(t, l, banner("shop", "v_someone_else"))
	bob := mustAppend(t, l, Signup("shop", "bob@example.org"))
	want := fmt.Sprint([]string{b1.ID, b2.ID, sr.ID, pr.ID, b3.ID})
	ids := func(recs []store.Record) string {
		var out []string
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return fmt.Sprint(out)
	}
	for _, ref := range []store.SubjectRef{{Email: "ADA@example.org"}, {RecordID: sr.ID}, {RecordID: b3.ID}, {VisitorID: "v_ada_laptop"}} {
		recs, _, err := l.Lookup(ctx, ref)
		if err != nil || ids(recs) != want {
			t.Errorf("Lookup(%+v) = %v %v, want %v", ref, ids(recs), err, want)
		}
	}
	if recs, _, err := l.Lookup(ctx, store.SubjectRef{RecordID: other.ID}); err != nil || len(recs) != 1 {
		t.Errorf("Lookup of a lone banner record = %v, %v", ids(recs), err)
	}
	if _, _, err := l.Lookup(ctx, store.SubjectRef{RecordID: "01JAAAAAAAAAAAAAAAAAAAAAAA"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lookup of an unknown record id: %v", err)
	}
	for _, bad := range []store.SubjectRef{{}, {Email: "a@example.org", VisitorID: "v"}, {RecordID: "not-an-id"}} {
		var ve *store.ValidationError
		if _, _, err := l.Lookup(ctx, bad); !errors.As(err, &ve) {
			t.Errorf("Lookup(%+v): %v, want a ValidationError", bad, err)
		}
	}
	rep, err := l.Erase(ctx, "test", store.SubjectRef{Email: "ada@example.org"})
	if err != nil || rep.Records != 5 || fmt.Sprint(rep.VisitorIDs) != "[v_ada_laptop v_ada_phone]" || rep.Email != "ada@example.org" {
		t.Fatalf("report %+v %v", rep, err)
	}
	for _, site := range []string{"shop", "blog"} {
		for _, r := range records(t, l, site, store.Query{}) {
			mine := r.ID != other.ID && r.ID != bob.ID
			if mine != r.Erased || (mine && (r.VisitorID != "" || r.IP != "" || r.UserAgent != "")) {
				t.Errorf("record %s: %+v", r.ID, r)
			}
		}
	}
	if recs, st, _ := l.Lookup(ctx, store.SubjectRef{VisitorID: "v_ada_phone"}); len(recs) != 5 || !st.Suppressed {
		t.Errorf("after erasure, by visitor id: %v suppressed %v", ids(recs), st.Suppressed)
	}
	// A later banner choice from an erased visitor id is stored erased; a
	// signup from it loses the visitor id.
	if r := mustAppend(t, l, banner("shop", "v_ada_laptop")); !r.Erased || r.VisitorID != "" {
		t.Errorf("banner choice of an erased visitor id: %+v", r)
	}
	s2 := Signup("shop", "new@example.org")
	s2.VisitorID = "v_ada_laptop"
	if r := mustAppend(t, l, s2); r.Erased || r.VisitorID != "" || r.Email != "new@example.org" {
		t.Errorf("signup from an erased visitor id: %+v", r)
	}
	MustVerify(t, l)
	rep, err = l.Erase(ctx, "test", store.SubjectRef{VisitorID: "v_someone_else"})
	if err != nil || rep.Records != 1 || rep.Email != "" {
		t.Fatalf("erase by visitor id: %+v, %v", rep, err)
	}
	if _, err := l.Erase(ctx, "test", store.SubjectRef{RecordID: "01JAAAAAAAAAAAAAAAAAAAAAAA"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("erase of an unknown record id: %v", err)
	}
	MustVerify(t, l)
}

func testUsers(t *testing.T, l store.Ledger) {
	viewer, err := l.CreateTokenRole(ctx, "reader", store.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := l.TokenFor(ctx, viewer); !ok || tok.Role != store.RoleViewer || tok.Name != "reader" {
		t.Fatalf("TokenFor viewer: %+v %v", tok, ok)
	}
	if _, err := l.CreateTokenRole(ctx, "x", "owner"); err == nil {
		t.Fatal("unknown role accepted")
	}
	admin, _ := l.CreateToken(ctx, "root")
	if tok, ok := l.TokenFor(ctx, admin); !ok || tok.Role != store.RoleAdmin {
		t.Fatalf("TokenFor admin: %+v", tok)
	}
	if err := l.RevokeToken(ctx, "root"); !errors.Is(err, store.ErrLastAdmin) {
		t.Fatalf("revoking the last admin: %v", err)
	}
	if _, err := l.CreateUser(ctx, "Ada@Example.org", store.RoleAdmin, "short"); err == nil {
		t.Fatal("short password accepted")
	}
	u, err := l.CreateUser(ctx, "Ada@Example.org", store.RoleAdmin, "correct horse battery")
	if err != nil || u.Email != "ada@example.org" || u.Role != store.RoleAdmin {
		t.Fatalf("CreateUser %+v %v", u, err)
	}
	if _, err := l.CreateUser(ctx, "ada@example.org", store.RoleViewer, "correct horse battery"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	if _, ok := l.CheckPassword(ctx, "ada@example.org", "wrong password!!"); ok {
		t.Fatal("wrong password accepted")
	}
	if _, ok := l.CheckPassword(ctx, "nobody@example.org", "correct horse battery"); ok {
		t.Fatal("unknown user accepted")
	}
	if got, ok := l.CheckPassword(ctx, "ADA@example.org", "correct horse battery"); !ok || got.Email != "ada@example.org" {
		t.Fatalf("CheckPassword %+v %v", got, ok)
	}
	id, sess, err := l.NewSession(ctx, "ada@example.org", time.Hour)
	if err != nil || sess.CSRF == "" || sess.Role != store.RoleAdmin {
		t.Fatalf("NewSession %+v %v", sess, err)
	}
	if got, ok := l.SessionFor(ctx, id); !ok || got.Email != "ada@example.org" || got.CSRF != sess.CSRF {
		t.Fatalf("SessionFor %+v %v", got, ok)
	}
	if _, ok := l.SessionFor(ctx, id+"x"); ok {
		t.Fatal("a wrong session id signed in")
	}
	if err := l.RevokeToken(ctx, "root"); err != nil { // ada is an admin now
		t.Fatalf("revoke with another admin left: %v", err)
	}
	if err := l.SetPassword(ctx, "ada@example.org", "another long password"); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.SessionFor(ctx, id); ok {
		t.Fatal("a password change left the session signed in")
	}
	id, _, _ = l.NewSession(ctx, "ada@example.org", time.Hour)
	if err := l.EndSession(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.SessionFor(ctx, id); ok {
		t.Fatal("an ended session is still signed in")
	}
	if err := l.DeleteUser(ctx, "ada@example.org"); !errors.Is(err, store.ErrLastAdmin) {
		t.Fatalf("deleting the last admin: %v", err)
	}
	if _, err := l.CreateUser(ctx, "bob@example.org", store.RoleViewer, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteUser(ctx, "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteUser(ctx, "bob@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	users, err := l.Users(ctx)
	if err != nil || len(users) != 1 || users[0].Email != "ada@example.org" {
		t.Fatalf("Users %+v %v", users, err)
	}
}

// testConfirm: a double-opt-in signup, its confirmation once (a second
// click stores nothing), and erasure. (Expiry needs a clock the suite does
// not set; store's own tests cover it.)
func testConfirm(t *testing.T, l store.Ledger) {
	signup, _, err := l.AppendWith(ctx, Signup("shop", "ada@example.org"), store.AppendOptions{OptIn: "pending", Outbox: mailItems})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.AppendWith(ctx, Signup("shop", "x@example.org"), store.AppendOptions{OptIn: "confirmed"}); err == nil {
		t.Fatal("AppendWith took the step confirmed")
	}
	row := func(site string) store.SubjectState {
		var got []store.SubjectState
		if err := l.Subjects(ctx, site, store.Query{Email: "ada@example.org"}, func(st store.SubjectState) error { got = append(got, st); return nil }); err != nil || len(got) != 1 {
			t.Fatalf("%d rows, %v", len(got), err)
		}
		return got[0]
	}
	if st := row("shop"); st.DoubleOptIn != "pending" || !st.PendingAt.Equal(signup.RecordedAt) || st.PendingIP != "85.214.132.0" {
		t.Fatalf("after the signup: %+v", st)
	}
	mustAppend(t, l, Signup("blog", "ada@example.org"))
	if st := row("blog"); st.DoubleOptIn != "none" {
		t.Fatalf("blog shows shop's state: %+v", st)
	}
	token := l.ConfirmToken("shop", signup.ID)
	for _, bad := range []string{"", "x", token[:len(token)-2] + "AA", l.UnsubscribeToken("shop", "ada@example.org"), l.ConfirmToken("nosuch", signup.ID)} {
		if _, err := l.Confirm(ctx, bad, store.Record{}); !errors.Is(err, store.ErrBadToken) {
			t.Errorf("Confirm(%q) = %v, want ErrBadToken", bad, err)
		}
	}
	meta := store.Record{IP: "203.0.113.77", UserAgent: "Firefox", Country: "DE", Regime: "opt-in"}
	// Two clicks at once (two replicas): one confirm record.
	var wg sync.WaitGroup
	results := make([]store.Record, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], errs[i] = l.Confirm(ctx, token, meta) }()
	}
	wg.Wait()
	var c store.Record
	var ac *store.AlreadyConfirmedError
	switch {
	case errs[0] == nil && errors.As(errs[1], &ac):
		c = results[0]
	case errs[1] == nil && errors.As(errs[0], &ac):
		c = results[1]
	default:
		t.Fatalf("two confirms: %v, %v", errs[0], errs[1])
	}
	if ac.ID != c.ID || c.Event != "confirm" || c.Source != "double_opt_in" || c.Confirms != signup.ID || c.Email != "ada@example.org" ||
		c.IP != "203.0.113.0" || c.Choices["newsletter"] != "granted" || c.PrevHash != signup.Hash {
		t.Fatalf("confirm record %+v (already: %+v)", c, ac)
	}
	if st := row("shop"); st.DoubleOptIn != "confirmed" || !st.ConfirmedAt.Equal(c.RecordedAt) || st.ConfirmedIP != "203.0.113.0" {
		t.Fatalf("after confirming: %+v", st)
	}
	if n := len(records(t, l, "shop", store.Query{})); n != 2 {
		t.Fatalf("%d records on shop, want the signup and one confirm", n)
	}
	if recs, _, _ := l.Subject(ctx, "ada@example.org"); len(recs) != 3 || recs[2].Confirms != signup.ID || recs[0].Confirms != "" {
		t.Fatalf("confirms not read back: %+v", recs)
	}
	MustVerify(t, l)
	if _, err := l.Erase(ctx, "test", store.SubjectRef{Email: "ada@example.org"}); err != nil {
		t.Fatal(err)
	}
	if st := row("shop"); st.PendingIP != "" || st.ConfirmedIP != "" || st.ConfirmedAt.IsZero() {
		t.Fatalf("after erasure: %+v", st)
	}
	if _, err := l.Confirm(ctx, token, meta); !errors.Is(err, store.ErrBadToken) {
		t.Fatalf("confirming an erased signup: %v", err)
	}
}

// testRights: a withdrawal and a rectification an admin records, each with
// its audit entry; refused when the new address is taken or erased.
func testRights(t *testing.T, l store.Ledger) {
	first := mustAppend(t, l, Signup("shop", "ann@exmaple.org"))
	mustAppend(t, l, Signup("blog", "ann@exmaple.org"))
	mustAppend(t, l, Signup("shop", "bob@example.org"))
	w, err := l.WithdrawOnRequest(ctx, "tok", store.Withdrawal{Email: " Ann@Exmaple.org ", Sites: []string{"shop"}, Purposes: []string{"newsletter"}, Reason: "asked by mail"}, store.AppendOptions{})
	if err != nil || len(w) != 1 || w[0].Event != "withdraw" || w[0].Source != "admin" || w[0].Choices["newsletter"] != "denied" || w[0].Site != "shop" {
		t.Fatalf("withdrawal %+v %v", w, err)
	}
	if _, err := l.WithdrawOnRequest(ctx, "tok", store.Withdrawal{Email: "ann@exmaple.org"}, store.AppendOptions{}); err == nil {
		t.Fatal("a withdrawal without a reason was recorded")
	}
	if _, err := l.Rectify(ctx, "tok", store.Rectification{Email: "ann@exmaple.org", NewEmail: "bob@example.org", Reason: "r"}, store.AppendOptions{}); !errors.Is(err, store.ErrSubjectExists) {
		t.Fatalf("rectify to a taken address: %v", err)
	}
	recs, err := l.Rectify(ctx, "tok", store.Rectification{Email: "ann@exmaple.org", NewEmail: "Ann@Example.org", Name: "Ann Lovelace", Reason: "typo"}, store.AppendOptions{})
	if err != nil || len(recs) != 2 || recs[0].Event != "rectify" || recs[0].NewEmail != "ann@example.org" {
		t.Fatalf("rectify %+v %v", recs, err)
	}
	for _, a := range []string{"ann@exmaple.org", "ann@example.org"} {
		got, st, err := l.Subject(ctx, a)
		if err != nil || len(got) != 5 || got[0].ID != first.ID || st.Email != "ann@example.org" {
			t.Fatalf("look-up by %s: %d records, %+v, %v", a, len(got), st, err)
		}
	}
	// The signups export: one row, under the new address.
	for _, q := range []store.Query{{}, {Email: "ann@exmaple.org"}, {Email: "ann@example.org"}} {
		var emails []string
		if err := l.Subjects(ctx, "shop", q, func(st store.SubjectState) error { emails = append(emails, st.Email); return nil }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(emails)
		want := []string{"ann@example.org", "bob@example.org"}
		if q.Email != "" {
			want = want[:1]
		}
		if !slices.Equal(emails, want) {
			t.Fatalf("signups export %+v: %v, want %v", q, emails, want)
		}
	}
	var actions []string
	l.AuditLog(ctx, time.Time{}, time.Time{}, func(e store.AuditEntry) error {
		actions = append(actions, e.Action)
		if strings.Contains(e.Detail, "ann") || strings.Contains(e.Detail, "typo") {
			t.Errorf("audit entry names the person or the reason: %+v", e)
		}
		return nil
	})
	if !slices.Contains(actions, "withdraw") || !slices.Contains(actions, "rectify") {
		t.Fatalf("audit %v", actions)
	}
	if er, err := l.Erase(ctx, "tok", store.SubjectRef{Email: "ann@example.org"}); err != nil || er.Records != 5 {
		t.Fatalf("erase: %+v %v", er, err)
	}
	for _, a := range []string{"ann@exmaple.org", "ann@example.org"} {
		if ok, _ := l.Suppressed(ctx, a); !ok {
			t.Fatalf("%s not suppressed", a)
		}
	}
	if _, err := l.WithdrawOnRequest(ctx, "tok", store.Withdrawal{Email: "ann@example.org", Reason: "r"}, store.AppendOptions{}); err == nil {
		t.Fatal("a withdrawal for an erased person was recorded")
	}
	MustVerify(t, l)
}

// testAdminChangesAudited: every site, token and console-user change made
// through a ...By method leaves exactly one audit entry naming the actor
// and the action, and a refused change leaves none (the entry is written
// in the change's own transaction, so it is rolled back with it).
func testAdminChangesAudited(t *testing.T, l store.Ledger) {
	var seen int
	// expect checks that the change just made added exactly the entries
	// want (actor, action, a word of the detail), or none.
	expect := func(what string, want ...[3]string) {
		t.Helper()
		var all []store.AuditEntry
		if err := l.AuditLog(ctx, time.Time{}, time.Time{}, func(e store.AuditEntry) error { all = append(all, e); return nil }); err != nil {
			t.Fatal(err)
		}
		got := all[seen:]
		seen = len(all)
		if len(got) != len(want) {
			t.Fatalf("%s: %d new audit entries %+v, want %d", what, len(got), got, len(want))
		}
		for i, w := range want {
			if got[i].Token != w[0] || got[i].Action != w[1] || !strings.Contains(got[i].Detail, w[2]) || got[i].At.IsZero() {
				t.Fatalf("%s: entry %+v, want actor %q action %q detail with %q", what, got[i], w[0], w[1], w[2])
			}
		}
	}
	expect("before")

	site, err := l.CreateSiteBy(ctx, "ops", Site("news"))
	if err != nil || site.ID != "news" {
		t.Fatalf("create site %+v %v", site, err)
	}
	expect("site create", [3]string{"ops", "site_create", "site news"})
	if _, err := l.CreateSiteBy(ctx, "ops", Site("news")); !errors.Is(err, store.ErrSiteExists) {
		t.Fatalf("create site twice: %v", err)
	}
	expect("refused site create")
	changed := Site("news")
	changed.Name = "The news"
	if put, err := l.PutSiteBy(ctx, "user:ada@example.org", changed); err != nil || put.Name != "The news" {
		t.Fatalf("put site %+v %v", put, err)
	}
	expect("site update", [3]string{"user:ada@example.org", "site_update", "site news"})
	if _, err := l.PutSiteBy(ctx, "ops", Site("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("put unknown site: %v", err)
	}
	expect("refused site update")

	name, tok, err := l.CreateTokenBy(ctx, "ops", "ci", store.RoleViewer)
	if err != nil || name != "ci" || !strings.HasPrefix(tok, "asn_") {
		t.Fatalf("create token %q %q %v", name, tok, err)
	}
	expect("token create", [3]string{"ops", "token_create", "token ci role viewer"})
	name, tok, err = l.CreateTokenBy(ctx, "ops", "", store.RoleAdmin)
	if err != nil || name != "admin-2" {
		t.Fatalf("create unnamed token %q %v", name, err)
	}
	if got, ok := l.CheckToken(ctx, tok); !ok || got != name {
		t.Fatalf("unnamed token checks as %q %v, want %q", got, ok, name)
	}
	expect("unnamed token create", [3]string{"ops", "token_create", "token admin-2 role admin"})
	if _, _, err := l.CreateTokenBy(ctx, "ops", "ci", store.RoleAdmin); !errors.Is(err, store.ErrExists) {
		t.Fatalf("create token twice: %v", err)
	}
	expect("refused token create")
	if err := l.RevokeTokenBy(ctx, "ops", "ci"); err != nil {
		t.Fatal(err)
	}
	expect("token revoke", [3]string{"ops", "token_revoke", "token ci"})
	if err := l.RevokeTokenBy(ctx, "ops", "ci"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	expect("refused token revoke")
	if err := l.RevokeTokenBy(ctx, "ops", "admin-2"); !errors.Is(err, store.ErrLastAdmin) {
		t.Fatalf("revoke the last admin: %v", err)
	}
	expect("refused last-admin revoke")

	u, err := l.CreateUserBy(ctx, "admin-2", "Bob@Example.org", store.RoleViewer, "correct horse battery")
	if err != nil || u.Email != "bob@example.org" {
		t.Fatalf("create user %+v %v", u, err)
	}
	expect("user create", [3]string{"admin-2", "user_create", "user bob@example.org role viewer"})
	if _, err := l.CreateUserBy(ctx, "admin-2", "bob@example.org", store.RoleViewer, "correct horse battery"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("create user twice: %v", err)
	}
	expect("refused user create")
	if err := l.DeleteUserBy(ctx, "admin-2", "BOB@example.org"); err != nil {
		t.Fatal(err)
	}
	expect("user delete", [3]string{"admin-2", "user_delete", "user bob@example.org"})
	if err := l.DeleteUserBy(ctx, "admin-2", "bob@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete user twice: %v", err)
	}
	expect("refused user delete")
	if users, err := l.Users(ctx); err != nil || len(users) != 0 {
		t.Fatalf("users %+v %v", users, err)
	}
}
