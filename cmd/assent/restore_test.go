package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assent/assent/store"
)

// A backup taken before an erasure, restored, holds the person nowhere:
// the journal re-applies the erasure, the compaction drops the old pages,
// and the address stays suppressed.
func TestCLIRestoreReappliesErasures(t *testing.T) {
	dir, _ := cliLedger(t)
	ledger := filepath.Join(dir, "assent.db")
	backup := filepath.Join(t.TempDir(), "before.db")
	if code, _, stderr := runCLI(t, "backup", backup, "--data", dir); code != 0 {
		t.Fatalf("backup: %d %s", code, stderr)
	}
	addr := []byte("ann@example.com")
	if b, _ := os.ReadFile(backup); !bytes.Contains(b, addr) {
		t.Fatal("the backup should hold the address before the erasure")
	}
	if code, _, stderr := runCLI(t, "subject", "erase", "--email", "ann@example.com", "--data", dir); code != 0 {
		t.Fatalf("erase: %d %s", code, stderr)
	}
	j, err := os.ReadFile(filepath.Join(dir, store.JournalName))
	if err != nil || bytes.Contains(j, addr) || bytes.Count(j, []byte("\n")) != 1 {
		t.Fatalf("journal: %v %q", err, j)
	}
	if fi, _ := os.Stat(filepath.Join(dir, store.JournalName)); fi.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v", fi.Mode())
	}

	code, _, stderr := runCLI(t, "restore", backup, "--data", dir)
	if code != 0 || !strings.Contains(stderr, "1 journal entries") {
		t.Fatalf("restore: %d %s", code, stderr)
	}
	b, err := os.ReadFile(ledger)
	if err != nil || bytes.Contains(b, addr) {
		t.Fatalf("restored ledger still holds the address (%v)", err)
	}
	if code, stdout, stderr := runCLI(t, "verify", "--data", dir); code != 0 || !strings.Contains(stdout, `"ok": true`) && !strings.Contains(stdout, `"ok":true`) {
		t.Fatalf("verify: %d %s %s", code, stdout, stderr)
	}
	// A second restore of the same backup applies the same entry again,
	// with the same result.
	if code, _, stderr := runCLI(t, "restore", backup, "--data", dir); code != 0 {
		t.Fatalf("restore again: %d %s", code, stderr)
	}
	st, err := store.Open(ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ok, err := st.Suppressed("ann@example.com"); err != nil || !ok {
		t.Fatalf("suppressed: %v %v", ok, err)
	}
	_, err = st.Append(context.Background(), store.Record{Site: "shop", Event: "grant", Source: "signup", Basis: "implied",
		Email: "ann@example.com", Country: "US", Regime: "notice", Choices: map[string]string{"necessary": "granted", "newsletter": "granted"}})
	if !errors.Is(err, store.ErrSuppressed) {
		t.Fatalf("signup of an erased address after restore: %v", err)
	}
	var audit []string
	st.AuditLog(time.Time{}, time.Now().Add(time.Hour), func(e store.AuditEntry) error { audit = append(audit, e.Action); return nil })
	if !strings.Contains(strings.Join(audit, ","), "restore") {
		t.Errorf("audit %v has no restore", audit)
	}
}

// A missing or damaged backup, bad usage and a PostgreSQL ledger give one
// line and leave the ledger as it was.
func TestCLIRestoreBadInput(t *testing.T) {
	dir, _ := cliLedger(t)
	ledger := filepath.Join(dir, "assent.db")
	before, _ := os.ReadFile(ledger)
	bad := filepath.Join(t.TempDir(), "bad.db")
	os.WriteFile(bad, bytes.Repeat([]byte("x"), 8192), 0o600)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"restore", filepath.Join(t.TempDir(), "missing.db"), "--data", dir}, 1},
		{[]string{"restore", bad, "--data", dir}, 1},
		{[]string{"restore", bad, "--database", "postgres://x@127.0.0.1:1/db"}, 1},
		{[]string{"restore", "--data", dir}, 2},
	} {
		code, stdout, stderr := runCLI(t, c.args...)
		if code != c.code || stdout != "" || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stderr == "" {
			t.Errorf("%v: %d %q %q", c.args, code, stdout, stderr)
		}
	}
	if after, _ := os.ReadFile(ledger); !bytes.Equal(before, after) {
		t.Error("a failed restore changed the ledger")
	}
}

// A ledger held by a running server is not restored over.
func TestCLIRestoreRefusesHeldLedger(t *testing.T) {
	dir, _ := cliLedger(t)
	backup := filepath.Join(t.TempDir(), "b.db")
	if code, _, stderr := runCLI(t, "backup", backup, "--data", dir); code != 0 {
		t.Fatalf("backup: %d %s", code, stderr)
	}
	cliServer(t, dir)
	code, _, stderr := runCLI(t, "restore", backup, "--data", dir)
	if code != 1 || !strings.Contains(stderr, "--server") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("restore of a held ledger: %d %q", code, stderr)
	}
}
