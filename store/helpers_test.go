package store

import (
	"context"
	"path/filepath"
	"testing"
)

// newTestStore opens a fresh ledger in a temporary folder with the sites
// "shop" and "blog", closed when the test ends.
func newTestStore(t testing.TB, opts ...Options) *Store {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := Open(filepath.Join(t.TempDir(), "assent.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, site := range []Site{testSite("shop"), testSite("blog")} {
		if _, err := s.CreateSite(site); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func testSite(id string) Site {
	return Site{
		ID:      id,
		Name:    "Example " + id,
		Origins: []string{"https://" + id + ".example"},
		Modes:   []string{"banner", "signup"},
		Purposes: []Purpose{
			{ID: "necessary", Required: true},
			{ID: "analytics", ConsentMode: []string{"analytics_storage"}},
			{ID: "marketing", ConsentMode: []string{"ad_storage", "ad_user_data", "ad_personalization"}},
			{ID: "newsletter", Signup: true, RequiredForSignup: true},
		},
	}
}

// testRecord is a banner choice with every field set, about 300 bytes stored.
func testRecord(site string) Record {
	return Record{
		Site: site, Event: "partial", Source: "banner", Basis: "explicit",
		VisitorID: "v_5rj2k8qz1m", Country: "DE", Regime: "opt-in", GeoDB: "2026-06-17",
		NoticeVersion: "1", NoticeHash: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		WidgetBuild: "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", Locale: "de",
		Choices: map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "denied", "newsletter": "denied"},
		PageURL: "https://shop.example/cart?step=2", IP: "85.214.132.117",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0", GPC: true, DNT: false,
	}
}

func signupRecord(site, email string) Record {
	r := testRecord(site)
	r.Source, r.Event, r.Email, r.Name = "signup", "grant", email, "Ada Lovelace"
	// Each person their own browser: records sharing a visitor id belong
	// to one person for look-up and erasure.
	r.VisitorID = "v_" + NormalizeEmail(email)
	r.Choices = map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "denied", "newsletter": "granted"}
	return r
}

func mustAppend(t testing.TB, s *Store, r Record) Record {
	t.Helper()
	got, err := s.Append(context.Background(), r)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return got
}

// allRecords reads a site's records, tombstones included.
func allRecords(t testing.TB, s *Store, site string) []Record {
	t.Helper()
	var recs []Record
	if err := s.Records(site, Query{Tombstones: true}, func(r Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

func mustVerify(t testing.TB, s *Store) VerifyReport {
	t.Helper()
	rep, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("Verify: not OK: site %q record %s: %s", rep.BadSite, rep.BadID, rep.Reason)
	}
	return rep
}
