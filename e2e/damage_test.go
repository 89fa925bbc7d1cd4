package e2e

// A damaged or empty ledger file is never taken for a good one, and a
// failure mid-download never looks like a whole file.

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/assent/assent/store"
)

// A zero-byte assent.db was re-initialised (new keys; verify said ok).
func TestEmptyLedgerFileRefused(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	path := filepath.Join(data, "assent.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"serve", "--addr", "127.0.0.1:0", "--data", data, "--geoip", geoDB(t)},
		{"verify", "--data", data},
		{"site", "list", "--data", data},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		cancel()
		if code := exitCode(err); code != 1 || !strings.Contains(string(out), "empty") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Errorf("%s on a zero-byte ledger: exit %d, %q; want exit 1 and one line saying it is empty", args[0], code, out)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("the empty file was changed: %v %v", fi.Size(), err)
	}
}

// One damaged page of the subject index crashed the whole process on an
// unauthenticated POST /v1/unsubscribe, and verify exited 0 on that file.
func TestDamagedSubjectIndexPage(t *testing.T) {
	bin, data := binaryWithSite(t, ledgerSiteJSON)
	path := filepath.Join(data, "assent.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ { // enough people for the index to need pages of its own
		if _, err := st.Append(context.Background(), store.Record{Site: "shop", Event: "grant", Source: "signup", Basis: "explicit",
			Email: fmt.Sprintf("p%03d@example.org", i), Choices: map[string]string{"newsletter": "granted"}}); err != nil {
			t.Fatal(err)
		}
	}
	token := st.UnsubscribeToken("shop", "p123@example.org")
	st.Close()

	// Damage one page of subjects/: its elements point past the page.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var root uint64
	var pageSize int
	db.View(func(tx *bolt.Tx) error {
		root, pageSize = uint64(tx.Bucket([]byte("subjects")).Root()), db.Info().PageSize
		return nil
	})
	db.Close()
	if root == 0 {
		t.Fatal("subjects/ is inline: the test needs more people")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, pageSize-16)
	for i := 0; i+8 <= len(garbage); i += 8 {
		binary.LittleEndian.PutUint64(garbage[i:], 0x7fff_ff00_7fff_ff00)
	}
	if _, err := f.WriteAt(garbage, int64(root)*int64(pageSize)+16); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out, err := exec.Command(bin, "verify", "--data", data).CombinedOutput()
	if code := exitCode(err); code != 1 {
		t.Errorf("verify on a damaged index page: exit %d, %s; want 1", code, out)
	}

	l := &liveBinary{t: t, bin: bin, data: data}
	l.start()
	for i := 0; i < 3; i++ {
		code, b := l.call(http.MethodPost, "/v1/unsubscribe", map[string]string{"token": token}, false)
		if code != http.StatusInternalServerError || errCode(b) != "ledger_damaged" || strings.Contains(string(b), data) {
			t.Errorf("unsubscribe through a damaged page: %d %s; want 500 ledger_damaged without the file's path", code, b)
		}
	}
	if code, b := l.call(http.MethodGet, "/healthz", nil, false); code != http.StatusOK {
		t.Fatalf("the server is not up after the damaged read: %d %s", code, b)
	}
	if code, b := l.call(http.MethodPost, "/v1/sites/shop/consents", map[string]any{"choices": map[string]bool{"analytics": true}}, false); code != http.StatusCreated {
		t.Errorf("a write that does not touch the damaged page: %d %s", code, b)
	}
	l.stop()
}

// One undecodable record made a whole export answer 500 without saying
// which record.
func TestExportNamesTheUndecodableRecord(t *testing.T) {
	l := startLive(t)
	var ids []string
	for i := 0; i < 3; i++ {
		code, b := l.call(http.MethodPost, "/v1/sites/shop/consents", map[string]any{"choices": map[string]bool{"analytics": true}}, false)
		if code != http.StatusCreated {
			t.Fatalf("consent: %d %s", code, b)
		}
		ids = append(ids, strings.Split(strings.Split(string(b), `"id":"`)[1], `"`)[0])
	}
	l.stop()
	db, err := bolt.Open(filepath.Join(l.data, "assent.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("records")).Bucket([]byte("shop"))
		c := b.Cursor()
		c.First()
		k, _ := c.Next() // the second record
		return b.Put(append([]byte{}, k...), []byte{1, 0, 0xff, 0xff})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	l.start()
	for _, format := range []string{"csv", "jsonl", "xlsx"} {
		code, b := l.call(http.MethodGet, "/v1/admin/sites/shop/consents?format="+format, nil, true)
		if code != http.StatusInternalServerError || errCode(b) != "ledger_damaged" || !strings.Contains(string(b), ids[1]) {
			t.Errorf("%s export with an undecodable record: %d %s; want 500 naming record %s", format, code, b, ids[1])
		}
	}
}

// A backup that fails after its first bytes once ended like a clean
// download, and `assent backup --server` installed the short file. Here
// every pread fails (strace) once the server is up: the copy, read back
// from its temporary file, fails; the client must see a failure (a JSON
// error, or a cut connection once bytes went out), never a whole-looking
// file.
func TestBackupFailingMidStream(t *testing.T) {
	bin, data := binaryWithSite(t, ledgerSiteJSON)
	out, err := exec.Command(bin, "token", "create", "--name", "e2e", "--data", data).Output()
	if err != nil {
		t.Fatal(err)
	}
	l := &liveBinary{t: t, bin: bin, data: data, token: strings.TrimSpace(string(out))}
	l.start()
	// Once the server is up, strace attaches to it and fails every read of
	// the ledger file (bbolt's copy sends the first two pages from memory,
	// then reads the rest with pread).
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatalf("strace is missing: install it from Debian's packages (make test does)")
	}
	tracer := exec.Command(strace, "-f", "-qq", "-o", "/dev/null",
		"-e", "trace=pread64", "-e", "inject=pread64:error=EIO", "-p", strconv.Itoa(l.cmd.Process.Pid))
	if err := tracer.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { tracer.Process.Kill(); tracer.Wait() }()
	failed := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !failed; {
		req, _ := http.NewRequest(http.MethodGet, l.base+"/v1/admin/backup", nil)
		req.Header.Set("Authorization", "Bearer "+l.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Logf("download failed as it should (connection cut mid-stream): %v", err)
			failed = true
			continue
		}
		if resp.StatusCode != http.StatusOK {
			if errCode(body) == "" {
				t.Fatalf("failed download: %d %s, want a JSON error", resp.StatusCode, body)
			}
			t.Logf("download failed as it should: %d %s", resp.StatusCode, body)
			failed = true
			continue
		}
		// Before strace attached: a download that read whole is a whole ledger.
		whole := filepath.Join(t.TempDir(), "whole.db")
		os.WriteFile(whole, body, 0o600)
		db, err := bolt.Open(whole, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatalf("a download read as whole but is not a ledger (%d bytes): %v", len(body), err)
		}
		db.Close()
	}
	if !failed {
		t.Fatalf("no download failed: the fault was not injected")
	}
	file := filepath.Join(t.TempDir(), "backup.db")
	c := exec.Command(bin, "backup", file, "--server", l.base)
	c.Env = append(os.Environ(), "ASSENT_TOKEN="+l.token)
	out, err = c.CombinedOutput()
	if code := exitCode(err); code != 1 {
		t.Errorf("assent backup --server: exit %d, %s; want 1", code, out)
	}
	if _, err := os.Stat(file); err == nil {
		t.Errorf("assent backup installed a partial file")
	}
	ents, _ := os.ReadDir(filepath.Dir(file))
	if len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}
