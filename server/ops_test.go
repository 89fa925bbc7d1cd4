package server

import (
	"bytes"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assent/assent/server/console"
	"github.com/assent/assent/widget"
)

// The logs at their most verbose carry no email, address, agent, page or
// unsubscribe token: only route patterns, statuses and timings.
func TestLogsCarryNoPersonalData(t *testing.T) {
	var logs bytes.Buffer
	ts := newTestServerLog(t, nil, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	secret := map[string]string{"X-Forwarded-For": ipDE, "User-Agent": "SecretAgent/7.0", "Origin": shopOrigin}
	resp := ts.do(http.MethodPost, "/v1/sites/shop/signups", `{"email":"private.person@example.com","choices":{"newsletter":true},"page_url":"https://shop.example/private-page"}`, secret)
	if resp.StatusCode != 201 {
		t.Fatalf("signup: %d %s", resp.StatusCode, resp.body)
	}
	ts.do(http.MethodPost, "/v1/sites/shop/signups", `{"email":"broken@`, secret)
	ts.do(http.MethodGet, "/u/some-token-value", nil, secret)
	for _, leak := range []string{"private.person", "85.214.132", "SecretAgent", "private-page", "some-token-value"} {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("the log contains %q:\n%s", leak, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "/v1/sites/:site/signups") {
		t.Errorf("the log does not name the route pattern:\n%s", logs.String())
	}
}

// With --dev the widget is read from disk and rebuilt when a file changes.
func TestDevRebuildsOnChange(t *testing.T) {
	dir, consoleDir := t.TempDir(), t.TempDir()
	if err := copyFS(dir, widget.FS); err != nil {
		t.Fatal(err)
	}
	if err := copyFS(consoleDir, console.FS); err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, &Config{Dev: true, DevDir: dir, DevConsoleDir: consoleDir})
	before := ts.do(http.MethodGet, "/w/shop.js", nil, map[string]string{"Accept-Encoding": "identity"})

	main := filepath.Join(dir, "src", "main.ts")
	src, _ := os.ReadFile(main)
	os.WriteFile(main, append(src, []byte("\n;(window as any).devMarker = 'rebuilt-41';\n")...), 0o644)
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(main, later, later)
	after := ts.do(http.MethodGet, "/w/shop.js", nil, map[string]string{"Accept-Encoding": "identity"})
	if !strings.Contains(string(after.body), "rebuilt-41") || before.Header.Get("ETag") == after.Header.Get("ETag") {
		t.Fatalf("the changed source was not rebuilt (ETag %s → %s)", before.Header.Get("ETag"), after.Header.Get("ETag"))
	}
	if ts.srv.WidgetBuild() == "" {
		t.Error("no build hash")
	}

	// A broken edit keeps serving the last good build.
	os.WriteFile(main, []byte("let x = ;"), 0o644)
	os.Chtimes(main, later.Add(time.Second), later.Add(time.Second))
	broken := ts.do(http.MethodGet, "/w/shop.js", nil, map[string]string{"Accept-Encoding": "identity"})
	if broken.StatusCode != 200 || !strings.Contains(string(broken.body), "rebuilt-41") {
		t.Errorf("a broken edit broke the served widget: %d", broken.StatusCode)
	}

	// The admin console is rebuilt the same way.
	css := filepath.Join(consoleDir, "console.css")
	b, _ := os.ReadFile(css)
	os.WriteFile(css, append(b, []byte("\n.dev-marker-42{color:red}\n")...), 0o644)
	os.Chtimes(css, later, later)
	if page := ts.do(http.MethodGet, "/admin/", nil, nil); !strings.Contains(string(page.body), "dev-marker-42") {
		t.Error("the changed console stylesheet was not rebuilt")
	}
}

func copyFS(dst string, src fs.FS) error {
	return fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, p)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
