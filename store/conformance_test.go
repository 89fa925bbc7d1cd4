package store_test

import (
	"path/filepath"
	"testing"

	"github.com/assent/assent/store"
	"github.com/assent/assent/store/storetest"
)

// TestConformance runs the suite every backend passes on the bbolt file;
// store/postgres runs it on PostgreSQL.
func TestConformance(t *testing.T) {
	storetest.RunTests(t, func(t *testing.T) store.Ledger {
		s, err := store.Open(filepath.Join(t.TempDir(), "assent.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return store.Bolt(s)
	})
}
