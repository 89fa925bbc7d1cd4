package store

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const pw = "correct horse battery"

func TestUsersAndPasswords(t *testing.T) {
	s := newTestStore(t)
	u, err := s.CreateUser(" Ann@Example.COM", RoleAdmin, pw)
	if err != nil || u.Email != "ann@example.com" || u.Role != RoleAdmin {
		t.Fatalf("CreateUser = %+v, %v", u, err)
	}
	for _, tc := range []struct {
		email, password string
		role            Role
	}{
		{"ann@example.com", pw, RoleAdmin}, // exists
		{"bob@example.com", "elevenchars", RoleAdmin},
		{"bob@example.com", strings.Repeat("x", maxPasswordLen+1), RoleAdmin},
		{"bob@example.com", pw, "owner"},
		{"bob", pw, RoleViewer},
		{"@example.com", pw, RoleViewer},
		{"bob@", pw, RoleViewer},
		{"bo b@example.com", pw, RoleViewer},
	} {
		if _, err := s.CreateUser(tc.email, tc.role, tc.password); err == nil {
			t.Errorf("CreateUser(%q, %q, %d chars) accepted", tc.email, tc.role, len(tc.password))
		}
	}
	if _, err := s.CreateUser("ann@example.com", RoleViewer, pw); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	// Twelve characters, not bytes: "ä" counts once.
	if _, err := s.CreateUser("jörg@bücher.example", RoleViewer, "ääääääääääää"); err != nil {
		t.Errorf("twelve non-ASCII characters: %v", err)
	}
	if got, ok := s.CheckPassword("ANN@example.com", pw); !ok || got.Email != "ann@example.com" {
		t.Errorf("right password: %+v %v", got, ok)
	}
	for _, tc := range [][2]string{{"ann@example.com", pw + "x"}, {"ann@example.com", ""}, {"nobody@example.com", pw}} {
		if _, ok := s.CheckPassword(tc[0], tc[1]); ok {
			t.Errorf("CheckPassword(%q, %q) = ok", tc[0], tc[1])
		}
	}
	// Stored as argon2id; two users with one password get different hashes.
	s.CreateUser("bob@example.com", RoleViewer, pw)
	var hashes []string
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			var su storedUser
			json.Unmarshal(v, &su)
			hashes = append(hashes, su.Hash)
			if strings.Contains(string(v), pw) || !strings.HasPrefix(su.Hash, "$argon2id$v=19$m=19456,t=2,p=1$") {
				t.Errorf("stored %s", v)
			}
			return nil
		})
	})
	if len(hashes) != 3 || hashes[0] == hashes[2] {
		t.Errorf("hashes %q", hashes)
	}
	users, err := s.Users()
	if err != nil || len(users) != 3 || users[0].Email != "ann@example.com" {
		t.Errorf("Users = %+v %v", users, err)
	}
}

func TestSessions(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	s := newTestStore(t, Options{Now: func() time.Time { return now }})
	s.CreateUser("ann@example.com", RoleAdmin, pw)
	s.CreateUser("bob@example.com", RoleViewer, pw)
	if _, _, err := s.NewSession("nobody@example.com", time.Hour); !errors.Is(err, ErrNotFound) {
		t.Errorf("session of nobody: %v", err)
	}
	id, ss, err := s.NewSession("ann@example.com", time.Hour)
	if err != nil || ss.CSRF == "" || ss.CSRF == id || ss.Role != RoleAdmin {
		t.Fatalf("NewSession = %q %+v %v", id, ss, err)
	}
	bobID, _, _ := s.NewSession("bob@example.com", time.Hour)
	if got, ok := s.SessionFor(id); !ok || got.Email != "ann@example.com" || got.CSRF != ss.CSRF {
		t.Errorf("SessionFor = %+v %v", got, ok)
	}
	for _, bad := range []string{"", id + "x", strings.Repeat("a", 200)} {
		if _, ok := s.SessionFor(bad); ok {
			t.Errorf("SessionFor(%q) ok", bad)
		}
	}
	// Only the id's hash is stored.
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			if strings.Contains(string(k)+string(v), id) {
				t.Error("the session id is stored in clear")
			}
			return nil
		})
	})
	// Expiry is the server's: one nanosecond past it, the session is gone.
	now = now.Add(time.Hour)
	if _, ok := s.SessionFor(id); ok {
		t.Error("expired session still valid")
	}
	now = now.Add(-time.Minute)
	if err := s.EndSession(id); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.SessionFor(id); ok {
		t.Error("ended session still valid")
	}
	// Deleting a user ends their sessions.
	if err := s.DeleteUser("bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.SessionFor(bobID); ok {
		t.Error("a deleted user's session still valid")
	}
	// Sessions survive a restart (they live in the ledger).
	id, _, _ = s.NewSession("ann@example.com", time.Hour)
	path := s.Path()
	s.Close()
	s2, err := Open(path, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, ok := s2.SessionFor(id); !ok {
		t.Error("session lost across a restart")
	}
	// The last admin user cannot be deleted while no admin token exists.
	if err := s2.DeleteUser("ann@example.com"); !errors.Is(err, ErrLastAdmin) {
		t.Errorf("delete the last admin: %v", err)
	}
}

// A token stored before roles existed has no role: it is an admin token.
func TestTokenWithoutRoleIsAdmin(t *testing.T) {
	s := newTestStore(t)
	tok, _ := s.CreateToken("old")
	viewer, _ := s.CreateTokenRole("reader", RoleViewer)
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).Put([]byte("old"), []byte(`{"hash":"`+tokenHash(tok)+`","created_at":"2026-01-01T00:00:00Z"}`))
	})
	if got, ok := s.TokenFor(tok); !ok || got.Role != RoleAdmin {
		t.Errorf("old token: %+v %v", got, ok)
	}
	if got, ok := s.TokenFor(viewer); !ok || got.Role != RoleViewer {
		t.Errorf("viewer token: %+v %v", got, ok)
	}
	if err := s.RevokeToken("old"); !errors.Is(err, ErrLastAdmin) {
		t.Errorf("revoke the last admin: %v", err)
	}
	if err := s.RevokeToken("reader"); err != nil {
		t.Errorf("revoke a viewer: %v", err)
	}
	if _, err := s.CreateTokenRole("x", "root"); err == nil {
		t.Error("role root accepted")
	}
}

// BenchmarkCheckPassword is the argon2id cost of one sign-in (right
// password, and an unknown address, which must cost the same).
func BenchmarkCheckPassword(b *testing.B) {
	s := newTestStore(b)
	s.CreateUser("ann@example.com", RoleAdmin, pw)
	b.Run("known", func(b *testing.B) {
		for b.Loop() {
			if _, ok := s.CheckPassword("ann@example.com", pw); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("unknown", func(b *testing.B) {
		for b.Loop() {
			if _, ok := s.CheckPassword("nobody@example.com", pw); ok {
				b.Fatal("accepted")
			}
		}
	})
}
