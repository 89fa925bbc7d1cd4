package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/server"
	"github.com/assent/assent/store"
)

const cliSiteJSON = `{"id":"shop","name":"Example Shop","origins":["https://shop.example"],
 "purposes":[{"id":"necessary","required":true},{"id":"analytics"},{"id":"newsletter","signup":true}]}`

// cliLedger makes a ledger folder with the site shop (made by the CLI) and a
// few records, one of them with a cell a spreadsheet would run.
func cliLedger(t *testing.T) (dir string, recs []store.Record) {
	t.Helper()
	dir = t.TempDir()
	file := filepath.Join(t.TempDir(), "site.json")
	os.WriteFile(file, []byte(cliSiteJSON), 0o600)
	if code, _, stderr := runCLI(t, "site", "create", "--data", dir, "--file", file); code != 0 {
		t.Fatalf("site create: %d %s", code, stderr)
	}
	st, err := store.Open(filepath.Join(dir, "assent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []store.Record{
		{Site: "shop", Event: "grant", Source: "banner", Basis: "explicit", VisitorID: "v_1", Country: "DE", Regime: "opt-in",
			Choices: map[string]string{"necessary": "granted", "analytics": "granted"}, UserAgent: "=1+1"},
		{Site: "shop", Event: "grant", Source: "signup", Basis: "implied", Email: "ann@example.com", Country: "US", Regime: "notice",
			Choices: map[string]string{"necessary": "granted", "analytics": "granted", "newsletter": "granted"}, IP: "8.8.8.8"},
		{Site: "shop", Event: "deny", Source: "banner", Basis: "explicit", VisitorID: "v_3", Country: "FR", Regime: "opt-in",
			Choices: map[string]string{"necessary": "granted", "analytics": "denied"}},
	} {
		got, err := st.Append(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, got)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, recs
}

// cliServer serves the ledger in dir as `assent serve` would, and sets
// ASSENT_TOKEN to a fresh admin token.
func cliServer(t *testing.T, dir string) (url string, st *store.Store) {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "assent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	loc, err := geo.Open("")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{}, store.Bolt(st), loc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	tok, err := st.CreateToken("cli-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("ASSENT_TOKEN", tok)
	t.Cleanup(func() { hs.Close(); st.Close(); loc.Close() })
	return hs.URL, st
}

// where runs the same checks on the file and through a server.
type where struct {
	name  string
	flags []string
	read  func(fn func(*store.Store)) // reads back what a command did
	actor string                      // the audit log's token name
}

func places(t *testing.T) ([]where, []store.Record) {
	dirA, recs := cliLedger(t)
	dirB, _ := cliLedger(t)
	url, st := cliServer(t, dirB)
	// The file is opened only for the read, as a command would hold it.
	open := func(fn func(*store.Store)) {
		s, err := store.Open(filepath.Join(dirA, "assent.db"), store.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fn(s)
	}
	return []where{
		{"file", []string{"--data", dirA}, open, "cli"},
		{"server", []string{"--server", url}, func(fn func(*store.Store)) { fn(st) }, "cli-test"},
	}, recs
}

func TestCLIExport(t *testing.T) {
	ws, _ := places(t)
	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			args := func(a ...string) []string {
				return append(append([]string{"export", "--site", "shop"}, a...), w.flags...)
			}
			var want []store.Record
			var site store.Site
			w.read(func(st *store.Store) {
				st.Records("shop", store.Query{}, func(r store.Record) error { want = append(want, r); return nil })
				site, _ = st.Site("shop")
			})

			// CSV to stdout.
			code, stdout, stderr := runCLI(t, args()...)
			if code != 0 {
				t.Fatalf("csv: %d %s", code, stderr)
			}
			rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(stdout, "\ufeff"))).ReadAll()
			if err != nil || !strings.HasPrefix(stdout, "\ufeff") {
				t.Fatalf("csv: %v %q", err, stdout)
			}
			if !reflect.DeepEqual(rows[0], server.RecordHeader(site)) || len(rows) != len(want)+1 {
				t.Fatalf("csv rows %q", rows)
			}
			for i, r := range want {
				if rows[i+1][0] != r.ID || rows[i+1][1] != r.RecordedAt.UTC().Format("2006-01-02T15:04:05.000000000Z") {
					t.Errorf("row %d id %s, want %s", i, rows[i+1][0], r.ID)
				}
			}
			if ua := rows[1][len(rows[1])-6]; ua != "'=1+1" {
				t.Errorf("user_agent cell %q not neutralised", ua)
			}

			// XLSX to a file.
			out := filepath.Join(t.TempDir(), "shop.xlsx")
			if code, _, stderr := runCLI(t, args("--format", "xlsx", "-o", out)...); code != 0 {
				t.Fatalf("xlsx: %d %s", code, stderr)
			}
			f, err := excelize.OpenFile(out)
			if err != nil {
				t.Fatal(err)
			}
			xrows, _ := f.GetRows("consents")
			f.Close()
			if len(xrows) != len(want)+1 || xrows[0][0] != "id" || xrows[3][0] != want[2].ID {
				t.Errorf("xlsx rows %q", xrows)
			}

			// JSON Lines with a filter.
			code, stdout, stderr = runCLI(t, args("--format", "jsonl", "--country", "us")...)
			if code != 0 {
				t.Fatalf("jsonl: %d %s", code, stderr)
			}
			var got store.Record
			if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.ID != want[1].ID || got.Email != "ann@example.com" || strings.Count(stdout, "\n") != 1 {
				t.Errorf("jsonl --country us: %v %q", err, stdout)
			}

			// Errors: an unknown site, a bad filter; -o is not left behind.
			bad := filepath.Join(t.TempDir(), "bad.csv")
			if code, _, stderr := runCLI(t, append([]string{"export", "--site", "nope", "-o", bad}, w.flags...)...); code != 1 || !strings.Contains(stderr, "nope") {
				t.Errorf("unknown site: %d %q", code, stderr)
			}
			if _, err := os.Stat(bad); err == nil {
				t.Error("a failed export left its -o file")
			}
			if code, _, stderr := runCLI(t, args("--regime", "maybe")...); code == 0 || !strings.Contains(stderr, "regime") {
				t.Errorf("bad regime: %d %q", code, stderr)
			}
		})
	}
}

func TestCLISubject(t *testing.T) {
	ws, _ := places(t)
	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, append([]string{"subject", "show", "--email", "ANN@example.com"}, w.flags...)...)
			var access struct {
				Email   string         `json:"email"`
				Records []store.Record `json:"records"`
			}
			if code != 0 || json.Unmarshal([]byte(stdout), &access) != nil || access.Email != "ann@example.com" || len(access.Records) != 1 {
				t.Fatalf("show: %d %q %s", code, stdout, stderr)
			}
			code, stdout, stderr = runCLI(t, append([]string{"subject", "erase", "--email", "ann@example.com"}, w.flags...)...)
			var rep store.ErasureReport
			if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || rep.Records != 1 || rep.Reason == "" {
				t.Fatalf("erase: %d %q %s", code, stdout, stderr)
			}
			var actions []string
			w.read(func(st *store.Store) {
				recs, state, err := st.Subject("ann@example.com")
				if err != nil || len(recs) != 1 || !recs[0].Erased || recs[0].Email != "" || !state.Suppressed {
					t.Errorf("after erase: %v %+v %+v", err, recs, state)
				}
				st.AuditLog(time.Time{}, time.Time{}, func(e store.AuditEntry) error {
					if e.Action == "erase" {
						actions = append(actions, e.Token)
						if strings.Contains(e.Detail, "ann@") {
							t.Errorf("audit names the person: %q", e.Detail)
						}
					}
					return nil
				})
			})
			if !reflect.DeepEqual(actions, []string{w.actor}) {
				t.Errorf("erase audited by %v, want %s", actions, w.actor)
			}
		})
	}
}

// Look-up by visitor id and by receipt record id, and erasure by visitor
// id, on the file and through a server.
func TestCLISubjectByVisitorID(t *testing.T) {
	ws, recs := places(t)
	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			var access struct {
				Records []store.Record `json:"records"`
			}
			code, stdout, stderr := runCLI(t, append([]string{"subject", "show", "--visitor-id", "v_1"}, w.flags...)...)
			if code != 0 || json.Unmarshal([]byte(stdout), &access) != nil || len(access.Records) != 1 || access.Records[0].VisitorID != "v_1" {
				t.Fatalf("show --visitor-id: %d %q %s", code, stdout, stderr)
			}
			var want string
			w.read(func(st *store.Store) {
				st.Records("shop", store.Query{}, func(r store.Record) error {
					if r.VisitorID == "v_3" {
						want = r.ID
					}
					return nil
				})
			})
			code, stdout, stderr = runCLI(t, append([]string{"subject", "show", "--receipt", want}, w.flags...)...)
			if code != 0 || json.Unmarshal([]byte(stdout), &access) != nil || len(access.Records) != 1 || access.Records[0].ID != want {
				t.Fatalf("show --receipt: %d %q %s", code, stdout, stderr)
			}
			code, stdout, stderr = runCLI(t, append([]string{"subject", "erase", "--visitor-id", "v_3"}, w.flags...)...)
			var rep store.ErasureReport
			if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || rep.Records != 1 || len(rep.VisitorIDs) != 1 {
				t.Fatalf("erase --visitor-id: %d %q %s", code, stdout, stderr)
			}
			w.read(func(st *store.Store) {
				got, _, err := st.Lookup(store.SubjectRef{RecordID: want})
				if err != nil || len(got) != 1 || !got[0].Erased || got[0].VisitorID != "" {
					t.Errorf("after erase: %v %+v", err, got)
				}
			})
			for _, bad := range [][]string{
				{"subject", "show"},
				{"subject", "show", "--email", "a@example.com", "--visitor-id", "v_1"},
				{"subject", "erase", "--receipt", want},
			} {
				if code, _, stderr := runCLI(t, append(bad, w.flags...)...); code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
					t.Errorf("%v: exit %d, %q", bad, code, stderr)
				}
			}
		})
	}
	_ = recs
}

func TestCLIVerifyAndBackup(t *testing.T) {
	ws, recs := places(t)
	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, append([]string{"verify"}, w.flags...)...)
			var v store.VerifyReport
			if code != 0 || json.Unmarshal([]byte(stdout), &v) != nil || !v.OK || v.Records != len(recs) {
				t.Fatalf("verify: %d %q %s", code, stdout, stderr)
			}
			file := filepath.Join(t.TempDir(), "copy.db")
			if code, _, stderr := runCLI(t, append([]string{"backup", file}, w.flags...)...); code != 0 || !strings.Contains(stderr, "wrote") {
				t.Fatalf("backup: %d %s", code, stderr)
			}
			st, err := store.Open(file, store.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var got []store.Record
			st.Records("shop", store.Query{}, func(r store.Record) error { got = append(got, r); return nil })
			if len(got) != len(recs) {
				t.Errorf("backup holds %d records, want %d", len(got), len(recs))
			}
		})
	}
}

func TestCLITokenAndSite(t *testing.T) {
	ws, _ := places(t)
	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			// A viewer: in the file ledger it is the only token, and the last
			// admin token could not be revoked.
			code, stdout, stderr := runCLI(t, append([]string{"token", "create", "--name", "dpo", "--role", "viewer"}, w.flags...)...)
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if code != 0 || !strings.HasPrefix(lines[len(lines)-1], "asn_") {
				t.Fatalf("token create: %d %q %s", code, stdout, stderr)
			}
			w.read(func(st *store.Store) {
				if _, ok := st.CheckToken(lines[len(lines)-1]); !ok {
					t.Error("the printed token does not work")
				}
			})
			code, stdout, _ = runCLI(t, append([]string{"token", "list"}, w.flags...)...)
			if code != 0 || !strings.Contains(stdout, "dpo\t") {
				t.Errorf("token list: %d %q", code, stdout)
			}
			if code, _, stderr := runCLI(t, append([]string{"token", "revoke", "dpo"}, w.flags...)...); code != 0 {
				t.Errorf("token revoke: %d %s", code, stderr)
			}
			if code, _, stderr := runCLI(t, append([]string{"token", "revoke", "dpo"}, w.flags...)...); code != 1 || !strings.Contains(stderr, "dpo") && !strings.Contains(stderr, "not found") {
				t.Errorf("revoke twice: %d %s", code, stderr)
			}

			code, stdout, _ = runCLI(t, append([]string{"site", "list"}, w.flags...)...)
			var sites []store.Site
			if code != 0 || json.Unmarshal([]byte(stdout), &sites) != nil || len(sites) != 1 || sites[0].ID != "shop" {
				t.Errorf("site list: %d %q", code, stdout)
			}
			code, stdout, _ = runCLI(t, append([]string{"site", "show", "shop"}, w.flags...)...)
			var site store.Site
			if code != 0 || json.Unmarshal([]byte(stdout), &site) != nil || len(site.Purposes) != 3 {
				t.Errorf("site show: %d %q", code, stdout)
			}
			if code, _, stderr := runCLI(t, append([]string{"site", "show", "nope"}, w.flags...)...); code != 1 || !strings.Contains(stderr, "nope") {
				t.Errorf("site show nope: %d %q", code, stderr)
			}
			file := filepath.Join(t.TempDir(), "blog.json")
			os.WriteFile(file, []byte(`{"id":"blog","origins":["https://blog.example"],"purposes":[{"id":"analytics"}]}`), 0o600)
			if code, _, stderr := runCLI(t, append([]string{"site", "create", "--file", file}, w.flags...)...); code != 0 {
				t.Errorf("site create: %d %s", code, stderr)
			}
			if code, _, stderr := runCLI(t, append([]string{"site", "create", "--file", file}, w.flags...)...); code != 1 || !strings.Contains(stderr, "exists") {
				t.Errorf("site create twice: %d %q", code, stderr)
			}
			w.read(func(st *store.Store) {
				if _, err := st.Site("blog"); err != nil {
					t.Errorf("blog not created: %v", err)
				}
			})
		})
	}
}

// A ledger held by a running server gives, without --server, one line
// naming --server and exit 1, quickly.
func TestCLIHeldLedgerNamesServer(t *testing.T) {
	dir, _ := cliLedger(t)
	cliServer(t, dir) // holds the file
	for _, args := range [][]string{
		{"verify", "--data", dir},
		{"export", "--site", "shop", "--data", dir},
		{"subject", "show", "--email", "a@example.com", "--data", dir},
		{"backup", filepath.Join(t.TempDir(), "x.db"), "--data", dir},
		{"token", "list", "--data", dir},
		{"site", "list", "--data", dir},
	} {
		start := time.Now()
		code, stdout, stderr := runCLI(t, args...)
		took := time.Since(start)
		if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "--server") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
		if stdout != "" {
			t.Errorf("%v: printed %q", args, stdout)
		}
		if took > 5*time.Second {
			t.Errorf("%v took %v: it must not hang", args, took)
		}
	}
}

// The export through the server is the same CSV as on the file.
func TestCLIExportSameBothWays(t *testing.T) {
	dir, _ := cliLedger(t)
	_, direct, stderr := runCLI(t, "export", "--site", "shop", "--data", dir, "--format", "jsonl")
	if direct == "" {
		t.Fatalf("direct export: %s", stderr)
	}
	url, _ := cliServer(t, dir)
	_, remote, stderr := runCLI(t, "export", "--site", "shop", "--server", url, "--format", "jsonl")
	if !bytes.Equal([]byte(direct), []byte(remote)) {
		t.Errorf("direct and remote exports differ:\n%s\n%s\n%s", direct, remote, stderr)
	}
}

func TestCLIUsersAndRoles(t *testing.T) {
	ws, _ := places(t)
	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			t.Setenv("ASSENT_PASSWORD", "correct horse battery")
			if code, _, stderr := runCLI(t, append([]string{"user", "create", "--email", "Boss@Example.com", "--role", "admin"}, w.flags...)...); code != 0 {
				t.Fatalf("user create: %d %s", code, stderr)
			}
			if code, _, stderr := runCLI(t, append([]string{"user", "create", "--email", "dpo@example.com", "--role", "viewer"}, w.flags...)...); code != 0 {
				t.Fatalf("user create viewer: %d %s", code, stderr)
			}
			code, stdout, _ := runCLI(t, append([]string{"user", "list"}, w.flags...)...)
			if code != 0 || !strings.Contains(stdout, "boss@example.com\tadmin\t") || !strings.Contains(stdout, "dpo@example.com\tviewer\t") {
				t.Errorf("user list: %d %q", code, stdout)
			}
			w.read(func(st *store.Store) {
				if u, ok := st.CheckPassword("boss@example.com", "correct horse battery"); !ok || u.Role != store.RoleAdmin {
					t.Errorf("the created user cannot sign in: %+v %v", u, ok)
				}
			})
			// Bad values: one line, exit 1 or 2, nothing stored.
			t.Setenv("ASSENT_PASSWORD", "too short")
			for _, args := range [][]string{
				{"user", "create", "--email", "x@example.com"},
				{"user", "create", "--email", "not-an-address", "--role", "viewer"},
				{"user", "create", "--email", "y@example.com", "--role", "root"},
				{"user", "create"},
				{"user", "delete"},
				{"user", "delete", "nobody@example.com"},
			} {
				code, _, stderr := runCLI(t, append(args, w.flags...)...)
				if code == 0 || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
					t.Errorf("%v: exit %d %q", args, code, stderr)
				}
			}
			if code, _, stderr := runCLI(t, append([]string{"user", "delete", "DPO@example.com"}, w.flags...)...); code != 0 {
				t.Errorf("user delete: %d %s", code, stderr)
			}
			code, stdout, _ = runCLI(t, append([]string{"user", "list"}, w.flags...)...)
			if code != 0 || strings.Contains(stdout, "dpo@") || strings.Count(stdout, "\n") != 1 {
				t.Errorf("after delete: %q", stdout)
			}

			// Tokens with a role.
			code, stdout, stderr := runCLI(t, append([]string{"token", "create", "--name", "crm", "--role", "viewer"}, w.flags...)...)
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if code != 0 {
				t.Fatalf("token create --role viewer: %d %s", code, stderr)
			}
			w.read(func(st *store.Store) {
				if tok, ok := st.TokenFor(lines[len(lines)-1]); !ok || tok.Role != store.RoleViewer {
					t.Errorf("viewer token: %+v %v", tok, ok)
				}
			})
			if code, _, _ := runCLI(t, append([]string{"token", "create", "--name", "x", "--role", "owner"}, w.flags...)...); code != 2 {
				t.Errorf("--role owner: exit %d", code)
			}
			code, stdout, _ = runCLI(t, append([]string{"token", "list"}, w.flags...)...)
			if code != 0 || !strings.Contains(stdout, "crm\tviewer\t") {
				t.Errorf("token list: %q", stdout)
			}
		})
	}
}
