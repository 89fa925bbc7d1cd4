package postgres

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/assent/assent/store"
	"github.com/assent/assent/store/postgres/pgtest"
	"github.com/assent/assent/store/storetest"
)

// TestCopyFromBolt fills a bbolt ledger with everything a ledger holds,
// copies it, and finds the same records, chains, keys and people in
// PostgreSQL: old receipts and unsubscribe links still work there.
func TestCopyFromBolt(t *testing.T) {
	ctx := context.Background()
	bolt, err := store.Open(filepath.Join(t.TempDir(), "assent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	src := store.Bolt(bolt)
	for _, id := range []string{"shop", "blog"} {
		site := storetest.Site(id)
		if id == "blog" {
			site.RetentionDays = 1
		}
		if _, err := src.CreateSite(ctx, site); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.PutNotice(ctx, []byte(`{"title":"Cookies"}`)); err != nil {
		t.Fatal(err)
	}
	var last store.Record
	for i := range 30 {
		r := storetest.Signup("shop", "p"+itoa(i)+"@example.org")
		if i%3 == 0 {
			r = storetest.Record("blog")
		}
		if last, err = src.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	_, items, err := src.AppendWith(ctx, storetest.Signup("shop", "mail@example.org"), store.AppendOptions{Outbox: func(rec store.Record) ([]store.OutboxItem, error) {
		return []store.OutboxItem{{Kind: "mail", Key: "k", Payload: []byte(`{"to":"mail@example.org"}`)}}, nil
	}})
	if err != nil || len(items) != 1 {
		t.Fatalf("AppendWith %v %v", items, err)
	}
	receipt, _ := src.Receipt(last)
	unsub := src.UnsubscribeToken("shop", "p1@example.org")
	if _, err := src.Erase(ctx, "test", store.SubjectRef{Email: "p2@example.org"}); err != nil {
		t.Fatal(err)
	}
	if n, err := src.Purge(ctx, time.Now().Add(48*time.Hour)); err != nil || n == 0 {
		t.Fatalf("purge %d %v", n, err)
	}
	src.SetDoubleOptIn(ctx, "p4@example.org", "pending", "85.214.132.1")
	if _, err := src.CreateTokenRole(ctx, "ci", store.RoleViewer); err != nil {
		t.Fatal(err)
	}
	admin, _ := src.CreateToken(ctx, "")
	if _, err := src.CreateUser(ctx, "admin@example.org", store.RoleAdmin, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	src.Audit(ctx, "cli", "export", "consents of site shop")

	url := pgtest.NewDatabase(t)
	rep, err := CopyFrom(ctx, url, bolt)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 31 || rep.Sites != 2 || rep.Tokens != 2 || rep.Users != 1 || rep.OutboxItems != 1 || rep.Suppressed == 0 {
		t.Fatalf("copy report %+v", rep)
	}
	dst := open(t, url)
	want, _ := src.Verify(ctx)
	got := storetest.MustVerify(t, dst)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("verify after copy %+v, want %+v", got, want)
	}
	for _, site := range []string{"shop", "blog"} {
		var a, b []store.Record
		src.Records(ctx, site, store.Query{Tombstones: true}, func(r store.Record) error { a = append(a, r); return nil })
		dst.Records(ctx, site, store.Query{Tombstones: true}, func(r store.Record) error { b = append(b, r); return nil })
		if len(a) == 0 || !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: records differ after copy (%d vs %d)", site, len(a), len(b))
		}
	}
	if j1, _ := src.JWKS(); true {
		if j2, _ := dst.JWKS(); string(j1) != string(j2) {
			t.Fatal("JWKS differs: old receipts would not verify")
		}
	}
	if r2, _ := dst.Receipt(last); len(r2) == 0 || len(receipt) == 0 {
		t.Fatal("no receipt")
	}
	if _, err := dst.Unsubscribe(ctx, unsub, store.Record{}); err != nil {
		t.Fatalf("an old unsubscribe link: %v", err)
	}
	if _, err := dst.Append(ctx, storetest.Signup("shop", "p2@example.org")); !errors.Is(err, store.ErrSuppressed) {
		t.Fatalf("an erased address signs up again after the copy: %v", err)
	}
	if _, st, _ := dst.Subject(ctx, "p4@example.org"); st.DoubleOptIn != "pending" {
		t.Fatalf("double opt-in state lost: %+v", st)
	}
	if tok, ok := dst.TokenFor(ctx, admin); !ok || tok.Role != store.RoleAdmin {
		t.Fatal("an old admin token does not work")
	}
	if _, ok := dst.CheckPassword(ctx, "admin@example.org", "correct horse battery"); !ok {
		t.Fatal("a console user cannot sign in after the copy")
	}
	if it, err := dst.OutboxItemByID(ctx, items[0].ID); err != nil || it.State != store.OutboxQueued {
		t.Fatalf("outbox item %+v %v", it, err)
	}
	if more, err := dst.Enqueue(ctx, store.OutboxItem{Kind: "mail", Site: "shop", Payload: []byte(`{}`)}); err != nil || more[0].ID <= items[0].ID {
		t.Fatalf("a new outbox item after the copy: %+v %v", more, err)
	}
	storetest.MustVerify(t, dst)
	if _, err := CopyFrom(ctx, url, bolt); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("copy into a used database: %v", err)
	}
}
