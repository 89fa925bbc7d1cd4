package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assent/assent/store"
	"github.com/assent/assent/store/postgres/pgtest"
)

// TestLedgerCopyToPostgres moves a ledger file into PostgreSQL with the CLI
// and then works on the database with --database: verify finds the same
// chains, export the same rows, and backup says PostgreSQL's tools do it.
func TestLedgerCopyToPostgres(t *testing.T) {
	dir, recs := cliLedger(t)
	url := pgtest.NewDatabase(t)

	code, stdout, stderr := runCLI(t, "ledger", "copy", "--data", dir, "--to", url)
	if code != 0 || !strings.Contains(stdout, "copied 3 records of 1 sites") || strings.Contains(stdout, "postgres@") && strings.Contains(url, ":secret") {
		t.Fatalf("ledger copy: %d %q %s", code, stdout, stderr)
	}
	var fileRep, dbRep store.VerifyReport
	_, out, _ := runCLI(t, "verify", "--data", dir)
	json.Unmarshal([]byte(out), &fileRep)
	code, out, stderr = runCLI(t, "verify", "--database", url)
	if code != 0 || json.Unmarshal([]byte(out), &dbRep) != nil || !dbRep.OK || dbRep.Records != len(recs) ||
		dbRep.Sites["shop"].Head != fileRep.Sites["shop"].Head {
		t.Fatalf("verify --database: %d %q %s (file: %+v)", code, out, stderr, fileRep)
	}
	_, fromFile, _ := runCLI(t, "export", "--site", "shop", "--format", "jsonl", "--data", dir)
	code, fromDB, stderr := runCLI(t, "export", "--site", "shop", "--format", "jsonl", "--database", url)
	if code != 0 || fromDB != fromFile || strings.Count(fromDB, "\n") != len(recs) {
		t.Fatalf("export --database: %d %s\n%q\nwant\n%q", code, stderr, fromDB, fromFile)
	}
	// The secret in a file, as container secrets are kept.
	secret := filepath.Join(t.TempDir(), "db-url")
	os.WriteFile(secret, []byte(url+"\n"), 0o600)
	t.Setenv("ASSENT_DATABASE_FILE", secret)
	if code, out, stderr := runCLI(t, "verify"); code != 0 || !strings.Contains(out, `"ok": true`) && !strings.Contains(out, `"ok":true`) {
		t.Fatalf("verify with ASSENT_DATABASE_FILE: %d %q %s", code, out, stderr)
	}
	os.Unsetenv("ASSENT_DATABASE_FILE")

	code, _, stderr = runCLI(t, "backup", filepath.Join(t.TempDir(), "b.db"), "--database", url)
	if code != 1 || !strings.Contains(stderr, "pg_dump") {
		t.Fatalf("backup --database: %d %s", code, stderr)
	}
	if code, out, stderr := runCLI(t, "migrate", "--database", url); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("migrate: %d %q %s", code, out, stderr)
	}
	// A second copy would mix two ledgers: refused, nothing changed.
	if code, _, stderr := runCLI(t, "ledger", "copy", "--data", dir, "--to", url); code != 1 || !strings.Contains(stderr, "empty") {
		t.Fatalf("copy into a used database: %d %s", code, stderr)
	}
	for _, bad := range [][]string{
		{"ledger", "copy", "--data", dir, "--to", "mysql://x"},
		{"ledger", "move", "--data", dir, "--to", url},
		{"migrate"},
		{"verify", "--database", "sqlite:///tmp/x"},
	} {
		if code, _, stderr := runCLI(t, bad...); code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, %q; want 2 and one line", bad, code, stderr)
		}
	}
	if code, _, stderr := runCLI(t, "verify", "--database", "postgres://nobody:pw@127.0.0.1:1/x?connect_timeout=2"); code != 1 || strings.Contains(stderr, ":pw@") {
		t.Errorf("unreachable database: %d %q", code, stderr)
	}
}
