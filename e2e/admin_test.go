package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/assent/assent/store"
)

// consoleRecords puts a few records straight into the ledger: two people,
// three countries, both regimes.
func consoleRecords(t *testing.T, st *store.Store) []store.Record {
	t.Helper()
	base := store.Record{Site: "shop", Source: "banner", Basis: "explicit", NoticeVersion: "1", NoticeHash: "sha256:00",
		PageURL: "https://shop.example/", UserAgent: "Mozilla/5.0 (test)"}
	var out []store.Record
	for _, r := range []struct {
		email, country, regime, event string
		analytics, marketing          string
	}{
		{"ann@example.com", "DE", "opt-in", "partial", "granted", "denied"},
		{"", "US", "notice", "grant", "granted", "granted"},
		{"bob@example.com", "FR", "opt-in", "deny", "denied", "denied"},
		{"ann@example.com", "DE", "opt-in", "grant", "granted", "granted"},
	} {
		rec := base
		rec.Email, rec.Country, rec.Regime, rec.Event = r.email, r.country, r.regime, r.event
		rec.VisitorID = "v_" + strings.ToLower(r.country)
		rec.IP = "85.214.132.117"
		rec.Choices = map[string]string{"necessary": "granted", "analytics": r.analytics, "marketing": r.marketing}
		if r.email != "" {
			rec.Source = "signup"
		}
		got, err := st.Append(context.Background(), rec)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got)
	}
	return out
}

// axe runs axe-core on the page as it is and fails on any violation.
func consoleAxe(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "widget", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatalf("axe-core is missing: run `make widget-deps` (make test does): %v", err)
	}
	// DevTools evaluation is not subject to the page's CSP, so axe can be
	// injected into the console even though the page allows no inline script.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](string(src))); err != nil {
		t.Fatalf("inject axe-core: %v", err)
	}
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}})
			.then(r => JSON.stringify(r.violations.map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("axe on %s: %v", what, err)
	}
	if out != "[]" {
		t.Errorf("axe-core violations on %s: %s", what, out)
	}
}

// waitFor polls a JS expression until it is true.
func consoleWait(expr string) chromedp.Action[chromedp.Void] {
	poll := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := poll(ctx, t)
		if err != nil {
			err = fmt.Errorf("waiting for %s: %w", expr, err)
		}
		return chromedp.Void{}, err
	}
}

// eval evaluates a JS expression in the page.
func consoleEval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// text is an element's text content.
func consoleText(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	return consoleEval[string](t, ctx, `document.getElementById(`+strconv.Quote(id)+`).textContent`)
}

// waitFile waits for a finished download in dir and returns its name.
func waitDownload(t *testing.T, dir string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".crdownload") {
				return e.Name()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no download in %s", dir)
	return ""
}

// An admin signs in with the keyboard, sees the log, filters it, downloads
// the filtered CSV, looks up a person and erases them after confirming; the
// console passes axe-core in every section.
func TestAdminConsole(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(shopSite())
	recs := consoleRecords(t, e.st)
	ctx := browser(t)
	downloads := t.TempDir()
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	rowIDs := `[...document.querySelectorAll('#log-table tbody tr')].map(tr => tr.lastElementChild.textContent).join(',')`

	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads}); err != nil {
		t.Fatal(err)
	}
	do(chromedp.Navigate(e.api+"/admin/"), chromedp.WaitVisible(chromedp.ID("token")))
	consoleAxe(t, ctx, "the sign-in form")

	// A wrong token is refused with a message, and nothing else shows.
	do(chromedp.SendKeys(chromedp.ID("token"), "asn_wrong\r"), consoleWait(`document.getElementById('login-msg').textContent !== ''`))
	if msg := consoleText(t, ctx, "login-msg"); !strings.Contains(msg, "not valid") {
		t.Errorf("wrong token message %q", msg)
	}
	if consoleEval[bool](t, ctx, `!document.getElementById('nav').hidden`) {
		t.Error("the sections show without a valid token")
	}

	// Sign in with the keyboard alone: type, Enter.
	do(chromedp.SendKeys(chromedp.ID("token"), e.token+"\r"),
		consoleWait(`document.querySelectorAll('#log-table tbody tr').length === 4`))
	if got, want := consoleEval[string](t, ctx, rowIDs), strings.Join(recordIDs(recs), ","); got != want {
		t.Errorf("log shows %s, want %s", got, want)
	}
	if consoleEval[string](t, ctx, `sessionStorage.getItem('assent-admin-token')`) != e.token {
		t.Errorf("the token is not kept in sessionStorage")
	}
	consoleAxe(t, ctx, "the consent log")

	// Filter: country DE gives Ann's two records.
	do(chromedp.SendKeys(chromedp.ID("f-country"), "de"),
		chromedp.Click(chromedp.CSS(`#log-filters button[type=submit]`)),
		consoleWait(`document.querySelectorAll('#log-table tbody tr').length === 2`))
	if got := consoleEval[string](t, ctx, rowIDs); got != recs[0].ID+","+recs[3].ID {
		t.Errorf("filtered log shows %s", got)
	}

	// Download the filtered log as CSV; the file holds exactly those rows.
	do(chromedp.Click(chromedp.CSS(`button[data-export=consents][data-format=csv]`)))
	name := waitDownload(t, downloads)
	if !strings.HasPrefix(name, "assent-shop-consents-") || !strings.HasSuffix(name, ".csv") {
		t.Errorf("downloaded %q", name)
	}
	body, err := os.ReadFile(filepath.Join(downloads, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(body, []byte("\ufeff")) {
		t.Error("download has no byte-order mark")
	}
	rows, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("\ufeff")))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0][0] != "id" || rows[1][0] != recs[0].ID || rows[2][0] != recs[3].ID || rows[1][6] != "ann@example.com" {
		t.Errorf("downloaded CSV %q", rows)
	}

	// Charts: one SVG per chart.
	do(chromedp.Click(chromedp.CSS(`#nav a[href="#charts"]`)), consoleWait(`document.querySelectorAll('#charts svg').length === 3`))
	if got := consoleEval[string](t, ctx, `document.querySelector('#chart-purposes svg title').textContent`); !strings.Contains(got, "analytics 75%") {
		t.Errorf("purpose chart says %q", got)
	}
	consoleAxe(t, ctx, "the charts")

	// Sites: the config editor shows the site; a bad config shows the
	// server's 422 message.
	do(chromedp.Click(chromedp.CSS(`#nav a[href="#sites"]`)),
		consoleWait(`document.getElementById('config').value.includes('"id": "shop"')`),
		chromedp.Click(chromedp.ID("view-json")),
		chromedp.WaitVisible(chromedp.ID("config")),
		chromedp.SetValue(chromedp.ID("config"), `{"id":"shop","origins":["not an origin"],"purposes":[{"id":"analytics"}]}`),
		chromedp.Click(chromedp.CSS(`#config-form button[type=submit]`)),
		consoleWait(`document.getElementById('config-msg').textContent.includes('422')`))
	if msg := consoleText(t, ctx, "config-msg"); !strings.Contains(msg, "origins[0]") {
		t.Errorf("config message %q", msg)
	}
	consoleAxe(t, ctx, "the sites")

	// Subject look-up, then erasure after a confirmation step.
	do(chromedp.Click(chromedp.CSS(`#nav a[href="#subjects"]`)),
		chromedp.SendKeys(chromedp.ID("s-email"), "Ann@Example.com\r"),
		consoleWait(`document.querySelectorAll('#s-records tbody tr').length === 2`))
	consoleAxe(t, ctx, "a subject")
	do(chromedp.Click(chromedp.ID("s-erase")), consoleWait(`document.getElementById('erase-dialog').open`))
	if f := consoleEval[string](t, ctx, `document.activeElement.id`); f != "erase-cancel" {
		t.Errorf("the confirmation starts on %q, want Cancel", f)
	}
	consoleAxe(t, ctx, "the erase confirmation")
	if got, _, _ := e.st.Subject("ann@example.com"); len(got) != 2 || got[0].Erased {
		t.Fatalf("erased before confirming: %+v", got)
	}
	do(chromedp.Click(chromedp.ID("erase-confirm")), chromedp.WaitVisible(chromedp.ID("erase-report")))
	if msg := consoleText(t, ctx, "erase-facts"); !strings.Contains(msg, "17(3)(e)") {
		t.Errorf("erasure report %q", msg)
	}
	got, _, err := e.st.Subject("ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if !r.Erased || r.Email != "" || r.IP != "" || r.UserAgent != "" {
			t.Errorf("record %s not erased: %+v", r.ID, r)
		}
	}
	consoleAxe(t, ctx, "the erasure report")

	// The audit log shows the erasure and the export, never the address.
	do(chromedp.Click(chromedp.CSS(`#nav a[href="#audit"]`)),
		consoleWait(`document.querySelector('#audit-table tbody').textContent.includes('erase')`))
	if audit := consoleText(t, ctx, "audit-table"); !strings.Contains(audit, "export") || strings.Contains(audit, "ann@") {
		t.Errorf("audit log %q", audit)
	}
	consoleAxe(t, ctx, "the audit log")

	// Signing out forgets the token.
	do(chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("token")))
	if tok := consoleEval[string](t, ctx, `sessionStorage.getItem('assent-admin-token') || ''`); tok != "" {
		t.Errorf("token kept after signing out")
	}
}

// The console looks up every address the server accepts, such as one with
// non-ASCII letters on both sides of the @ (a browser's type=email field
// refuses it before the server sees it).
func TestAdminConsoleLooksUpAnyAddress(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(shopSite())
	if _, err := e.st.Append(context.Background(), store.Record{Site: "shop", Event: "grant", Source: "signup", Basis: "explicit",
		Email: "jörg@bücher.example", VisitorID: "v_jorg", Choices: map[string]string{"newsletter": "granted"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Append(context.Background(), store.Record{Site: "shop", Event: "partial", Source: "banner", Basis: "explicit",
		VisitorID: "v_jorg", Choices: map[string]string{"analytics": "granted"}}); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.api+"/admin/#subjects"),
		chromedp.SendKeys(chromedp.ID("token"), e.token+"\r"),
		chromedp.WaitVisible(chromedp.ID("s-email")),
		chromedp.SendKeys(chromedp.ID("s-email"), "jörg@bücher.example\r"),
		consoleWait(`document.querySelectorAll('#s-records tbody tr').length === 2`)); err != nil {
		t.Fatal(err)
	}
	if h := consoleText(t, ctx, "s-heading"); h != "Records of jörg@bücher.example" {
		t.Errorf("heading %q", h)
	}
}

func recordIDs(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// The config preview loads the widget in sandboxed frames whose writes the
// server refuses, so a preview never adds a record.
func TestAdminConsolePreviewStoresNothing(t *testing.T) {
	e := newEnv(t, envOptions{demo: true})
	e.site(shopSite())
	ctx := browser(t)
	err := chromedp.Do(ctx,
		chromedp.Navigate(e.api+"/admin/#sites"),
		chromedp.SendKeys(chromedp.ID("token"), e.token+"\r"),
		consoleWait(`document.getElementById('preview-optin').srcdoc.includes('/w/shop.js')`))
	if err != nil {
		t.Fatal(err)
	}
	if n := consoleEval[int](t, ctx, `document.querySelectorAll('iframe[sandbox="allow-scripts"]').length`); n != 2 {
		t.Errorf("%d sandboxed preview frames, want 2", n)
	}
	if n := len(e.records("shop")); n != 0 {
		t.Errorf("%d records after the preview", n)
	}
}
