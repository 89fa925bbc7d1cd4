package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/assent/assent/store/postgres"
)

// cmdMigrate applies the PostgreSQL schema migrations explicitly (every
// start applies them too, under the same advisory lock).
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("migrate", []string{"database"}, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", f.args[0])}
	}
	url, err := databaseURL(f)
	if err != nil {
		return err
	}
	if !postgres.IsURL(url) {
		return usageError{"want: assent migrate --database postgres://…"}
	}
	from, to, err := postgres.Migrate(ctx, url)
	if err != nil {
		return err
	}
	if from == to {
		fmt.Fprintf(stdout, "schema version %d: up to date\n", to)
	} else {
		fmt.Fprintf(stdout, "schema version %d → %d\n", from, to)
	}
	return nil
}

// cmdLedger is `assent ledger copy --data DIR --to postgres://…`: it moves
// a stopped bbolt ledger into an empty PostgreSQL database, keys included,
// so old receipts and links keep working.
func cmdLedger(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("ledger", []string{"data", "to"}, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) != 1 || f.args[0] != "copy" {
		return usageError{"want: assent ledger copy --data DIR --to postgres://…"}
	}
	to := f.str("to")
	if !postgres.IsURL(to) {
		return usageError{"--to: want the postgres:// URL of an empty database"}
	}
	dir := f.str("data")
	if !fileExists(filepath.Join(dir, "assent.db")) {
		return fmt.Errorf("no ledger at %s/assent.db (use --data DIR)", dir)
	}
	// Read-write, so a running server's lock is refused rather than read
	// mid-change; nothing is written to the file.
	st, err := openStore(dir, false)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := postgres.CopyFrom(ctx, to, st)
	if err != nil {
		return err
	}
	src, err := st.Verify()
	if err != nil {
		return err
	}
	db, err := postgres.Open(ctx, to, postgres.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	got, err := db.Verify(ctx)
	if err != nil {
		return err
	}
	if !got.OK || got.Records != src.Records {
		return fmt.Errorf("copied, but the database does not verify: %d of %d records, first bad %s/%s: %s", got.Records, src.Records, got.BadSite, got.BadID, got.Reason)
	}
	if err := db.Audit(ctx, "cli", "ledger_copy", fmt.Sprintf("copied from a ledger file: %d records, %d sites", rep.Records, rep.Sites)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %d records of %d sites, %d notices, %d suppression entries, %d tokens, %d users, %d audit entries, %d outbox items to %s; every chain verifies\n",
		rep.Records, rep.Sites, rep.Notices, rep.Suppressed, rep.Tokens, rep.Users, rep.AuditEntries, rep.OutboxItems, postgres.Redact(to))
	return nil
}
