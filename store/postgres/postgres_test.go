package postgres

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
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

// Replicas starting together on an empty database agree on one schema and
// one set of keys, and appending to one site through both never forks its
// chain.
func TestReplicasShareOneChain(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const replicas = 3
	dbs := make([]*DB, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = Open(context.Background(), url, Options{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	jwks0, _ := dbs[0].JWKS()
	for i, db := range dbs[1:] {
		if jwks, _ := db.JWKS(); string(jwks) != string(jwks0) {
			t.Fatalf("replica %d has other keys", i+1)
		}
	}
	ctx := context.Background()
	if _, err := dbs[0].CreateSite(ctx, storetest.Site("shop")); err != nil {
		t.Fatal(err)
	}
	const writers, each = 24, 20
	fails := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := dbs[w%replicas].Append(ctx, storetest.Record("shop")); err != nil {
					fails <- err
				}
			}
		}()
	}
	wg.Wait()
	close(fails)
	for err := range fails {
		t.Fatal(err)
	}
	rep := storetest.MustVerify(t, dbs[1])
	if rep.Sites["shop"].Records != writers*each {
		t.Fatalf("verify %+v, want %d records", rep, writers*each)
	}
	// A receipt made by one replica verifies against another's key: same
	// JWKS, checked above; and the record reads back the same everywhere.
	var first store.Record
	dbs[2].Records(ctx, "shop", store.Query{}, func(r store.Record) error { first = r; return errStop })
	r0, _ := dbs[0].Receipt(first)
	r1, _ := dbs[1].Receipt(first)
	if r0[:strings.LastIndex(r0, ".")] == "" || strings.Split(r0, ".")[0] != strings.Split(r1, ".")[0] {
		t.Fatal("replicas sign with different headers")
	}
}

func TestReopenKeepsKeysAndRecords(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	db, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.CreateSite(ctx, storetest.Site("shop"))
	rec, err := db.Append(ctx, storetest.Signup("shop", "ada@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := db.JWKS()
	token := db.UnsubscribeToken("shop", "ada@example.org")
	db.Close()
	if _, err := db.Append(ctx, storetest.Record("shop")); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	db2 := open(t, url)
	if j, _ := db2.JWKS(); string(j) != string(jwks) {
		t.Fatal("keys changed on reopening")
	}
	if _, err := db2.Unsubscribe(ctx, token, store.Record{}); err != nil {
		t.Fatalf("old unsubscribe token: %v", err)
	}
	next, err := db2.Append(ctx, storetest.Record("shop"))
	if err != nil || next.PrevHash == rec.Hash {
		t.Fatalf("after reopening: %+v %v", next, err)
	}
	storetest.MustVerify(t, db2)
	if _, err := db2.Backup(ctx, io.Discard); !errors.Is(err, store.ErrNotSupported) {
		t.Fatalf("backup: %v", err)
	}
	from, to, err := Migrate(ctx, url)
	if err != nil || from != SchemaVersion() || to != SchemaVersion() {
		t.Fatalf("migrate an up-to-date database: %d→%d %v", from, to, err)
	}
	// A database from a newer Assent is refused, not changed.
	if _, err := db2.pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES (999, 'future')`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, url, Options{}); !errors.Is(err, store.ErrNewerSchema) {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestUnreachableDatabase(t *testing.T) {
	ctx := context.Background()
	_, err := Open(ctx, "postgres://assent:secret-pw@127.0.0.1:1/assent?sslmode=disable&connect_timeout=2", Options{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("unreachable database: %v", err)
	}
	if strings.Contains(err.Error(), "secret-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
	if _, err := Open(ctx, "postgres://%zz", Options{}); err == nil {
		t.Fatal("bad URL accepted")
	}
	if got := Redact("postgres://u:secret-pw@h:5432/db?sslmode=disable"); strings.Contains(got, "secret-pw") || !strings.Contains(got, "u:") {
		t.Fatalf("Redact = %q", got)
	}
}

// The stored bytes, hashes and receipts are the same as the bbolt
// backend's: a record sealed here decodes and verifies with store's code,
// which the golden files in store/testdata pin.
func TestSameProofAsBolt(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	db := open(t, url)
	db.CreateSite(ctx, storetest.Site("shop"))
	rec, err := db.Append(ctx, storetest.Signup("shop", "ada@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := store.ParseID(rec.ID)
	var body []byte
	if err := db.pool.QueryRow(ctx, `SELECT body FROM records WHERE site = 'shop' AND id = $1`, id).Scan(&body); err != nil {
		t.Fatal(err)
	}
	sr, err := store.DecodeRecord("shop", id, body)
	if err != nil || sr.Record().Hash != rec.Hash || db.CheckRecord(sr, nil, false) != "" {
		t.Fatalf("stored record: %+v %v", sr, err)
	}
}
