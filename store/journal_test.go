package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An erasure whose journal entry cannot be written is stored (the ledger
// part is durable) but answered with an error that says so.
func TestEraseJournalFailureIsAnError(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.PutSite(testSite("shop")); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, signupRecord("shop", "bob@example.org"))
	// A directory where the journal file should be makes the append fail.
	if err := os.Mkdir(filepath.Join(filepath.Dir(s.path), JournalName), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := s.Erase("test", SubjectRef{Email: "bob@example.org"})
	if err == nil || !strings.Contains(err.Error(), "journal") {
		t.Fatalf("erase with an unwritable journal: %v", err)
	}
	if ok, err := s.Suppressed("bob@example.org"); err != nil || !ok {
		t.Fatalf("the erasure itself should be stored: %v %v", ok, err)
	}
}
