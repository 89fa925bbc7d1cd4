package store

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// helperEnv makes the test binary, re-executed, act as another process
// holding or loading a ledger (see TestHelperProcess).
const helperEnv = "ASSENT_STORE_HELPER"

// startHelper runs this test binary as a child process in mode on the
// ledger at path, and returns it with its standard output.
func startHelper(t *testing.T, mode, path string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "ASSENT_STORE_HELPER_PATH="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

// TestHelperProcess is not a test: it is the child process of the tests
// that need a second process.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("only runs as a child process")
	}
	path := os.Getenv("ASSENT_STORE_HELPER_PATH")
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	switch mode {
	case "hold":
		fmt.Println("ready")
		time.Sleep(time.Minute)
	case "load":
		crashLoad(s)
	case "outbox":
		crashOutboxLoad(s)
	}
	os.Exit(0)
}

func TestSecondOpenIsLocked(t *testing.T) {
	s := newTestStore(t)
	for _, ro := range []bool{false, true} {
		start := time.Now()
		_, err := Open(s.Path(), Options{ReadOnly: ro})
		took := time.Since(start)
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open (read-only %v) in the same process: %v, want ErrLocked", ro, err)
		}
		if took < 500*time.Millisecond || took > 2500*time.Millisecond {
			t.Errorf("ErrLocked after %v, want about 1s", took)
		}
		want := "ledger " + s.Path() + " is in use by another process (a running server?); use --server URL"
		if err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
	}
	// The holder is unharmed.
	mustAppend(t, s, testRecord("shop"))
}

func TestOpenHeldByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "assent.db")
	cmd, out := startHelper(t, "hold", path)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("helper said %q", out.Text())
	}
	start := time.Now()
	_, err := Open(path, Options{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || time.Since(start) > 2*time.Second {
		t.Fatalf("Open of a file another process holds: %v after %v, want ErrLocked", err, time.Since(start))
	}
	cmd.Process.Kill()
	cmd.Wait()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open after the holder died: %v", err)
	}
	s.Close()
}

func TestNewerSchemaRefused(t *testing.T) {
	s := newTestStore(t)
	path := s.Path()
	s.Close()
	editLedger(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(schemaVersion+1))
	})
	for _, ro := range []bool{false, true} {
		_, err := Open(path, Options{ReadOnly: ro})
		if !errors.Is(err, ErrNewerSchema) {
			t.Fatalf("Open (read-only %v): %v, want ErrNewerSchema", ro, err)
		}
		if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("schema version %d", schemaVersion+1)) || !strings.Contains(msg, "upgrade Assent") {
			t.Errorf("message %q does not say what is wrong and what to do", msg)
		}
	}
	// Refusing changed nothing.
	editLedger(t, path, func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySchemaVersion); !bytes.Equal(v, u64(schemaVersion+1)) {
			t.Errorf("schema version now %x", v)
		}
		return nil
	})
}

func TestOpenMigratesAndKeepsKeys(t *testing.T) {
	s := newTestStore(t)
	r := mustAppend(t, s, testRecord("shop"))
	jwks, _ := s.JWKS()
	path := s.Path()
	s.Close()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	again, _ := s.JWKS()
	if !bytes.Equal(jwks, again) {
		t.Error("signing key changed on reopen")
	}
	next := mustAppend(t, s, testRecord("shop"))
	if next.PrevHash != r.Hash || next.ID <= r.ID {
		t.Errorf("chain not continued after reopen: %+v after %+v", next, r)
	}
	mustVerify(t, s)
}

func TestOpenDamagedFiles(t *testing.T) {
	good := newTestStore(t)
	for i := 0; i < 200; i++ {
		mustAppend(t, good, testRecord("shop"))
	}
	var ledger bytes.Buffer
	if _, err := good.Backup(&ledger); err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 64<<10)
	rand.Read(random)
	other := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("widgets")); return err })
	db.Close()
	otherBytes, _ := os.ReadFile(other)

	tests := []struct {
		name string
		data []byte
	}{
		{"random bytes", random},
		{"text", []byte("this is not a database\n")},
		{"first page only", ledger.Bytes()[:4096]},
		{"truncated to half", ledger.Bytes()[:ledger.Len()/2]},
		{"truncated by one page", ledger.Bytes()[:highWaterMark(t, ledger.Bytes())-4096]},
		{"meta pages zeroed", append(make([]byte, 8192), ledger.Bytes()[8192:]...)},
		{"another program's bbolt file", otherBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "assent.db")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{false, true} {
				s, err := Open(path, Options{ReadOnly: ro})
				if err == nil {
					s.Close()
					t.Fatalf("Open (read-only %v) accepted a damaged file", ro)
				}
				t.Logf("read-only %v: %v", ro, err)
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
					t.Errorf("Open (read-only %v): %v, want ErrCorrupt naming the file", ro, err)
				}
			}
		})
	}
}

// highWaterMark is the size the pages of a bbolt file's newest meta page
// need. A backup may be longer than that (bbolt grows files in steps), so
// cutting its last page can leave every page intact: the damage that must be
// refused is a file shorter than its pages.
func highWaterMark(t *testing.T, db []byte) int {
	t.Helper()
	const page = 4096
	// Page header 16 bytes; in the meta that follows, pgid is at 40 and txid at 48.
	meta := func(i int) (pgid, txid uint64) {
		m := db[i*page+16:]
		return binary.LittleEndian.Uint64(m[40:]), binary.LittleEndian.Uint64(m[48:])
	}
	p0, t0 := meta(0)
	p1, t1 := meta(1)
	if t1 > t0 {
		p0 = p1
	}
	if n := int(p0) * page; n > 2*page && n <= len(db) {
		return n
	}
	t.Fatalf("no plausible high-water mark in a %d-byte ledger", len(db))
	return 0
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "dir", "assent.db")
	if _, err := Open(path, Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only Open created a file")
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ledger file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if err := s.Ping(); err != nil {
		t.Fatal(err)
	}
}

func TestReadOnlyOpenReadsButDoesNotWrite(t *testing.T) {
	s := newTestStore(t)
	r := mustAppend(t, s, testRecord("shop"))
	path := s.Path()
	s.Close()
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if got := allRecords(t, ro, "shop"); len(got) != 1 || got[0].Hash != r.Hash {
		t.Fatalf("read-only records %+v", got)
	}
	mustVerify(t, ro)
	if _, err := ro.Append(t.Context(), testRecord("shop")); err == nil {
		t.Fatal("read-only Append succeeded")
	}
}

func TestBackupOpensAsSameLedger(t *testing.T) {
	s := newTestStore(t)
	for i := 0; i < 50; i++ {
		mustAppend(t, s, signupRecord([]string{"shop", "blog"}[i%2], fmt.Sprintf("p%d@example.org", i)))
	}
	s.Erase("test", SubjectRef{Email: "p3@example.org"})
	tok, _ := s.CreateToken("ops")
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Backup(f)
	f.Close()
	if err != nil || n == 0 {
		t.Fatalf("Backup = %d, %v", n, err)
	}
	mustAppend(t, s, testRecord("shop")) // after the copy: not in it
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("backup does not open: %v", err)
	}
	defer b.Close()
	rep := mustVerify(t, b)
	if rep.Records != 50 {
		t.Errorf("backup has %d records, want 50", rep.Records)
	}
	for _, site := range []string{"shop", "blog"} {
		orig := allRecords(t, s, site)
		if site == "shop" {
			orig = orig[:len(orig)-1]
		}
		if got := allRecords(t, b, site); !reflect.DeepEqual(got, orig) {
			t.Errorf("%s: backup records differ", site)
		}
	}
	if name, ok := b.CheckToken(tok); !ok || name != "ops" {
		t.Error("backup lost the admin token")
	}
	if sup, _ := b.Suppressed("p3@example.org"); !sup {
		t.Error("backup lost the suppression list")
	}
	if _, err := b.Backup(io.Discard); err != nil {
		t.Error(err)
	}
}

// TestDamagedPageIsAnErrorNotACrash overwrites a page holding records with
// random bytes: reading and verifying must report it, never panic.
func TestDamagedPageIsAnErrorNotACrash(t *testing.T) {
	s := newTestStore(t)
	for i := 0; i < 2000; i++ {
		r := testRecord("shop")
		r.WidgetBuild = fmt.Sprintf("build-%06d", i)
		mustAppend(t, s, r)
	}
	path := s.Path()
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte("build-001000"))
	if at < 0 {
		t.Fatal("record not found in the file")
	}
	page := at / 4096 * 4096
	rand.Read(data[page : page+4096])
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open: %v, want ErrCorrupt", err)
		}
		return
	}
	defer s.Close()
	rep, err := s.Verify()
	if err != nil || rep.OK || rep.BadSite != "shop" || !strings.Contains(rep.Reason, "cannot read") {
		t.Fatalf("Verify = %+v, %v; want a report naming the damaged chain", rep, err)
	}
	t.Logf("Verify: %+v, %v", rep, err)
	err = s.Records("shop", Query{}, func(Record) error { return nil })
	if err == nil {
		t.Fatal("Records read a page of random bytes without an error")
	}
	t.Logf("Records: %v", err)
}
