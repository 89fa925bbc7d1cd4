package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assent/assent/store"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// Bad usage, bad files and bad values give exit 2 (usage) or 1 (failure)
// and one line on stderr that says what is wrong.
func TestBadInputGivesOneLineErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	notJSON := write("bad.json", "{not json")
	invalidSite := write("invalid.json", `{"id":"Bad Id!","origins":["ftp://x"],"purposes":[]}`)
	notMMDB := write("fake.mmdb", "this is not a database")
	corrupt := filepath.Join(dir, "corrupt")
	os.MkdirAll(corrupt, 0o700)
	os.WriteFile(filepath.Join(corrupt, "assent.db"), bytes.Repeat([]byte("garbage!"), 4096), 0o600)
	empty := t.TempDir()

	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string // in the one stderr line
	}{
		{"unknown command", nil, []string{"frobnicate"}, 2, "unknown command"},
		{"unknown flag", nil, []string{"verify", "--nope"}, 2, "nope"},
		{"bad rate limit flag", nil, []string{"serve", "--rate-limit", "lots"}, 2, "--rate-limit"},
		{"bad rate limit env", map[string]string{"ASSENT_RATE_LIMIT": "-3"}, []string{"serve"}, 2, "--rate-limit"},
		{"bad max conns flag", nil, []string{"serve", "--max-conns-per-client", "many"}, 2, "--max-conns-per-client"},
		{"bad max conns env", map[string]string{"ASSENT_MAX_CONNS_PER_CLIENT": "-1"}, []string{"serve"}, 2, "--max-conns-per-client"},
		{"bad trusted proxies", nil, []string{"serve", "--trusted-proxies", "10.0.0.0/99"}, 2, "--trusted-proxies"},
		{"bad metrics networks", nil, []string{"serve", "--metrics-allow", "localhost"}, 2, "--metrics-allow"},
		{"bad bool", nil, []string{"serve", "--demo=perhaps"}, 2, "--demo"},
		{"bad duration", nil, []string{"serve", "--geo-poll", "soon"}, 2, "--geo-poll"},
		{"bad log level", nil, []string{"serve", "--log-level", "loud"}, 2, "--log-level"},
		{"smtp without mail-from", nil, []string{"serve", "--smtp", "smtp://127.0.0.1:1025", "--public-url", "https://c.example"}, 2, "--mail-from"},
		{"smtp without public-url", nil, []string{"serve", "--smtp", "smtp://127.0.0.1:1025", "--mail-from", "a@b.example"}, 2, "--public-url"},
		{"smtp bad scheme", nil, []string{"serve", "--smtp", "http://mail.example", "--mail-from", "a@b.example", "--public-url", "https://c.example"}, 2, "--smtp"},
		{"smtp bad tls", nil, []string{"serve", "--smtp", "smtp://mail.example?tls=maybe", "--mail-from", "a@b.example", "--public-url", "https://c.example"}, 2, "tls"},
		{"smtp password not echoed", nil, []string{"serve", "--smtp", "ftp://u:s3cret@mail.example", "--mail-from", "a@b.example", "--public-url", "https://c.example"}, 2, "xxxxx"},
		{"bad mail-from", nil, []string{"serve", "--smtp", "smtp://mail.example", "--mail-from", "not an address", "--public-url", "https://c.example"}, 2, "--mail-from"},
		{"bad public-url", nil, []string{"serve", "--smtp", "smtp://mail.example", "--mail-from", "a@b.example", "--public-url", "c.example"}, 2, "--public-url"},
		{"mail-from alone", nil, []string{"serve", "--mail-from", "a@b.example"}, 2, "--smtp"},
		{"smtp file missing", map[string]string{"ASSENT_SMTP_FILE": filepath.Join(dir, "no-smtp")}, []string{"serve"}, 1, "ASSENT_SMTP_FILE"},
		{"not a country database", nil, []string{"serve", "--data", t.TempDir(), "--geoip", notMMDB, "--addr", "127.0.0.1:0"}, 1, "fake.mmdb"},
		{"geo: bad address", nil, []string{"geo", "--geoip", "", "999.1.1.1"}, 1, "not an IP address"},
		{"geo: no address", nil, []string{"geo"}, 2, "IP"},
		{"site file is not JSON", nil, []string{"site", "create", "--data", empty, "--file", notJSON}, 1, "bad.json"},
		{"site file is invalid", nil, []string{"site", "create", "--data", empty, "--file", invalidSite}, 1, "id"},
		{"site file missing", nil, []string{"site", "create", "--data", empty, "--file", filepath.Join(dir, "none.json")}, 1, "none.json"},
		{"corrupt ledger", nil, []string{"verify", "--data", corrupt}, 1, "assent.db"},
		{"no ledger", nil, []string{"verify", "--data", filepath.Join(dir, "nowhere")}, 1, "no ledger"},
		{"export needs a site", nil, []string{"export", "--data", empty}, 2, "--site"},
		{"export bad format", nil, []string{"export", "--data", empty, "--site", "x", "--format", "pdf"}, 2, "--format"},
		{"export bad period", nil, []string{"export", "--data", empty, "--site", "demo", "--from", "yesterday"}, 2, "from"},
		{"subject needs an email", nil, []string{"subject", "show", "--data", empty}, 2, "--email"},
		{"server without token", map[string]string{"ASSENT_TOKEN": ""}, []string{"verify", "--server", "http://127.0.0.1:1"}, 2, "ASSENT_TOKEN"},
		{"server bad URL", map[string]string{"ASSENT_TOKEN": "x"}, []string{"verify", "--server", "localhost"}, 2, "--server"},
		{"server unreachable", map[string]string{"ASSENT_TOKEN": "x"}, []string{"verify", "--server", "http://127.0.0.1:1"}, 1, "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, _, stderr := runCLI(t, tt.args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			last := lines[len(lines)-1]
			if code != tt.code || !strings.Contains(last, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and a line containing %q", code, stderr, tt.code, tt.want)
			}
			if tt.code == 1 && len(lines) != 1 {
				t.Errorf("failure printed %d lines, want one: %q", len(lines), stderr)
			}
		})
	}
	// The corrupt ledger is still there, untouched: nothing was "repaired".
	b, _ := os.ReadFile(filepath.Join(corrupt, "assent.db"))
	if !bytes.Equal(b, bytes.Repeat([]byte("garbage!"), 4096)) {
		t.Error("a failed open changed the ledger file")
	}
}

func TestServeHelpPrintsTheOptionTable(t *testing.T) {
	code, _, stderr := runCLI(t, "serve", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--trusted-proxies", "ASSENT_TRUSTED_PROXIES", "--metrics-allow", "ASSENT_METRICS_ALLOW", "--rate-limit", "ASSENT_RATE_LIMIT", ":8080"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestTokenCreatePrintsTheTokenAloneOnTheLastLine(t *testing.T) {
	data := t.TempDir()
	code, stdout, stderr := runCLI(t, "token", "create", "--name", "ops", "--data", data)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	tok := lines[len(lines)-1]
	if !strings.HasPrefix(tok, "asn_") || strings.ContainsAny(tok, " \t") {
		t.Fatalf("last stdout line %q is not a token alone", tok)
	}
	code, stdout, _ = runCLI(t, "token", "list", "--data", data)
	if code != 0 || !strings.Contains(stdout, "ops") || strings.Contains(stdout, tok) {
		t.Errorf("token list: exit %d %q (must name the token, never show it)", code, stdout)
	}
}

func TestGeoCommand(t *testing.T) {
	db := filepath.Join("..", "..", "data", "geo-whois-asn-country.mmdb")
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("run `make geodb`: %v", err)
	}
	code, stdout, stderr := runCLI(t, "geo", "--geoip", db, "85.214.132.117", "8.8.8.8", "192.168.1.1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	want := []string{"country=DE\teu=true\tregime=opt-in", "country=US\teu=false\tregime=notice", "country=unknown\teu=false\tregime=opt-in"}
	for i, w := range want {
		if i >= len(lines) || !strings.Contains(lines[i], w) || !strings.Contains(lines[i], "db=2026-") {
			t.Errorf("line %d = %q, want %q and the database date", i, lines, w)
		}
	}
}

// assent notice prints the stored notice byte for byte: its SHA-256 is the
// record's notice_hash.
func TestNoticeCommandPrintsTheExactBytes(t *testing.T) {
	data := t.TempDir()
	if code, _, stderr := runCLI(t, "token", "create", "--data", data); code != 0 {
		t.Fatal(stderr)
	}
	st, err := openStore(data, false)
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte(`{"locale":"de","texts":{"title":"Ihre Privatsphäre"}}`)
	hash, err := st.PutNotice(doc)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "notice", "--data", data, hash)
	if code != 0 || stdout != string(doc) {
		t.Fatalf("exit %d, %q (stderr %q), want the stored bytes", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, "notice", "--data", data, "sha256:"+strings.Repeat("0", 64)); code != 1 || !strings.Contains(stderr, "not found") {
		t.Errorf("unknown notice: exit %d %q", code, stderr)
	}
}

// The demo prints a console user and a password that signs in; the next
// start prints a new one and the old one stops working.
func TestDemoUserSignsIn(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "assent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	password := func() string {
		var out strings.Builder
		if err := demoUser(context.Background(), store.Bolt(st), &out); err != nil {
			t.Fatal(err)
		}
		_, pw, ok := strings.Cut(strings.TrimSpace(out.String()), " with password ")
		pw, _, _ = strings.Cut(pw, " ")
		if !ok || !strings.Contains(out.String(), demoEmail) || len(pw) < store.MinPasswordLen {
			t.Fatalf("printed %q", out.String())
		}
		return pw
	}
	first := password()
	if u, ok := st.CheckPassword(demoEmail, first); !ok || u.Role != store.RoleAdmin {
		t.Errorf("the printed password does not sign in: %+v %v", u, ok)
	}
	second := password()
	if _, ok := st.CheckPassword(demoEmail, first); ok || second == first {
		t.Error("the old demo password still works")
	}
	if _, ok := st.CheckPassword(demoEmail, second); !ok {
		t.Error("the new demo password does not sign in")
	}
}
