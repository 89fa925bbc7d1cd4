package postgres

import (
	"context"
	"testing"

	"github.com/assent/assent/store"
	"github.com/assent/assent/store/postgres/pgtest"
	"github.com/assent/assent/store/storetest"
)

func open(t *testing.T, url string) *DB {
	t.Helper()
	db, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	storetest.RunTests(t, func(t *testing.T) store.Ledger { return open(t, pgtest.NewDatabase(t)) })
}
