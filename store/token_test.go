package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestTokens(t *testing.T) {
	s := newTestStore(t)
	if n, _ := s.TokenCount(); n != 0 {
		t.Fatalf("fresh ledger has %d tokens", n)
	}
	first, err := s.CreateToken("")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := s.CreateToken("ci")
	if err != nil {
		t.Fatal(err)
	}
	second, _ := s.CreateToken("")
	if !strings.HasPrefix(first, "asn_") || len(first) != 4+43 || first == second {
		t.Fatalf("tokens %q %q", first, second)
	}
	tests := []struct {
		token string
		name  string
		ok    bool
	}{
		{first, "admin-1", true},
		{ci, "ci", true},
		{second, "admin-3", true},
		{first + "x", "", false},
		{first[:len(first)-1], "", false},
		{"", "", false},
		{"Bearer " + first, "", false},
	}
	for _, tt := range tests {
		name, ok := s.CheckToken(tt.token)
		if ok != tt.ok || name != tt.name {
			t.Errorf("CheckToken(%q) = %q %v, want %q %v", tt.token, name, ok, tt.name, tt.ok)
		}
	}
	if _, err := s.CreateToken("ci"); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := s.CreateToken("bad name"); err == nil {
		t.Error("a name with a space was accepted")
	}
	list, err := s.Tokens()
	if err != nil || len(list) != 3 || list[0].Name != "admin-1" || list[0].CreatedAt.IsZero() {
		t.Fatalf("Tokens = %+v, %v", list, err)
	}
	if err := s.RevokeToken("ci"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.CheckToken(ci); ok {
		t.Error("revoked token still works")
	}
	if err := s.RevokeToken("ci"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking twice: %v", err)
	}
	if n, _ := s.TokenCount(); n != 2 {
		t.Errorf("TokenCount = %d, want 2", n)
	}
	// Only a hash is stored.
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			if strings.Contains(string(v), first[4:]) || strings.Contains(string(v), second[4:]) {
				t.Errorf("token %s stored in clear", k)
			}
			return nil
		})
	})
}

func TestAuditLog(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Options{Now: clock.Now})
	for i, action := range []string{"export", "verify", "backup", "erase"} {
		if err := s.Audit("admin-1", action, "n="+string(rune('0'+i))); err != nil {
			t.Fatal(err)
		}
		if i != 1 {
			clock.Add(time.Hour)
		}
	}
	read := func(from, to time.Time) []string {
		var got []string
		if err := s.AuditLog(from, to, func(e AuditEntry) error {
			got = append(got, e.Action+"@"+e.At.Format("15"))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	start := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		from, to time.Time
		want     string
	}{
		{time.Time{}, time.Time{}, "export@00 verify@01 backup@01 erase@02"},
		{start.Add(time.Hour), time.Time{}, "verify@01 backup@01 erase@02"},
		{time.Time{}, start.Add(2 * time.Hour), "export@00 verify@01 backup@01"},
	}
	for _, tt := range tests {
		if got := strings.Join(read(tt.from, tt.to), " "); got != tt.want {
			t.Errorf("AuditLog(%v, %v) = %s, want %s", tt.from, tt.to, got, tt.want)
		}
	}
}
