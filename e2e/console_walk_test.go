package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/assent/assent/store"
)

const walkPassword = "a long enough passphrase"

// consoleSignIn signs in from the form with the keyboard.
func consoleSignIn(t *testing.T, ctx context.Context, api, email string) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(api+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("l-email")),
		chromedp.SendKeys(chromedp.ID("l-email"), email),
		chromedp.SendKeys(chromedp.ID("l-password"), walkPassword+"\r"),
		consoleWait(`!document.getElementById('nav').hidden && document.getElementById('who').textContent !== ''`),
	); err != nil {
		t.Fatalf("sign in as %s: %v", email, err)
	}
}

// darkAxe runs axe-core on the page as it is, in light and in dark.
func darkAxe(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	consoleAxe(t, ctx, what+" (light)")
	dark := func(on bool) {
		v := "light"
		if on {
			v = "dark"
		}
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}}}); err != nil {
			t.Fatal(err)
		}
	}
	dark(true)
	if bg := consoleEval[string](t, ctx, `getComputedStyle(document.documentElement).backgroundColor`); bg != "rgb(21, 24, 29)" {
		t.Errorf("dark scheme not applied: background %s", bg)
	}
	consoleAxe(t, ctx, what+" (dark)")
	dark(false)
}

// awaitStatus evaluates a promise of an HTTP status in the page.
func awaitStatus(t *testing.T, ctx context.Context, expr string) int {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// narrow checks that nothing is wider than a 390 px phone screen.
func narrow(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 390, Height: 844, DeviceScaleFactor: 1, Mobile: true}); err != nil {
		t.Fatal(err)
	}
	if w := consoleEval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
		wide := consoleEval[string](t, ctx, `[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391 && e.offsetParent !== null && !e.closest('.table-wrap')).slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className).join(' ')`)
		t.Errorf("%s at 390 px is %d px wide: %s", what, w, wide)
	}
	if _, err := chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
}

// A site owner who has never seen the JSON schema signs in, sets up a site
// with two purposes and German texts from the forms, copies the embed code
// into a page, sees a visitor's choice arrive in the log with the exact
// notice behind it, looks up and erases a person, verifies the ledger and
// signs out. A viewer then sees no erase button and gets 403 from the API.
func TestConsoleWalkthrough(t *testing.T) {
	e := newEnv(t, envOptions{})
	if _, err := e.st.CreateUser("owner@laden.example", store.RoleAdmin, walkPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.CreateUser("dpo@laden.example", store.RoleViewer, walkPassword); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// A wrong password: a message, nothing else.
	do("open", chromedp.Navigate(e.api+"/admin/"), chromedp.WaitVisible(chromedp.ID("l-email")))
	darkAxe(t, ctx, "the sign-in form")
	narrow(t, ctx, "the sign-in form")
	do("wrong password", chromedp.SendKeys(chromedp.ID("l-email"), "owner@laden.example"),
		chromedp.SendKeys(chromedp.ID("l-password"), "not the password\r"),
		consoleWait(`document.getElementById('login-msg').textContent.includes('Wrong email or password.')`))
	consoleSignIn(t, ctx, e.api, "owner@laden.example")
	if who := consoleText(t, ctx, "who"); who != "owner@laden.example (admin)" {
		t.Errorf("header says %q", who)
	}

	// A new site from the form.
	do("new site", chromedp.Click(chromedp.CSS(`#nav a[href="#sites"]`)), chromedp.WaitVisible(chromedp.ID("site-new")),
		chromedp.Click(chromedp.ID("site-new")),
		chromedp.SendKeys(chromedp.ID("sf-id"), "laden"),
		chromedp.SendKeys(chromedp.ID("sf-name"), "Der Laden"),
		chromedp.SendKeys(chromedp.ID("sf-origins"), "laden.example"),
		consoleWait(`document.getElementById('sf-origins-err').textContent.includes('is not a web address')`))
	if consoleEval[string](t, ctx, `document.getElementById('sf-origins').getAttribute('aria-invalid')`) != "true" {
		t.Error("the wrong origin is not marked invalid")
	}
	do("origins", chromedp.Evaluate[chromedp.Void](`document.getElementById('sf-origins').value = ''`), chromedp.SendKeys(chromedp.ID("sf-origins"), e.host.origin),
		consoleWait(`document.getElementById('sf-origins-err').textContent === ''`),
		chromedp.Click(chromedp.ID("sf-add-purpose")), chromedp.SendKeys(chromedp.ID("sfp-0-id"), "necessary"),
		chromedp.Click(chromedp.ID("sfp-0-required")),
		chromedp.Click(chromedp.ID("sf-add-purpose")), chromedp.SendKeys(chromedp.ID("sfp-1-id"), "analytics"),
		chromedp.Click(chromedp.ID("sfp-1-cm-analytics_storage")),
		chromedp.Evaluate[chromedp.Void](`(s => { s.value = 'de'; s.dispatchEvent(new Event('change')) })(document.getElementById('sf-lang'))`),
		consoleWait(`document.getElementById('sft-title') && document.getElementById('sft-title').placeholder === 'Ihre Privatsphäre ist uns wichtig'`),
		chromedp.SendKeys(chromedp.ID("sft-title"), "Darf der Laden zählen?"),
		chromedp.SendKeys(chromedp.ID("sft-purposes-analytics-label"), "Besucherzählung"),
		consoleWait(`document.getElementById('live-optin').textContent.includes('Darf der Laden zählen?') && document.getElementById('live-optin').textContent.includes('Besucherzählung')`))
	if got := consoleText(t, ctx, "live-notice"); !strings.Contains(got, "Darf der Laden zählen?") || !strings.Contains(got, "Widersprechen") {
		t.Errorf("notice preview %q", got)
	}
	darkAxe(t, ctx, "the site form")
	narrow(t, ctx, "the site form")
	do("create", chromedp.Click(chromedp.ID("site-create")),
		consoleWait(`document.getElementById('site-msg').textContent.includes('Created laden')`))
	site, err := e.st.Site("laden")
	if err != nil {
		t.Fatal(err)
	}
	if len(site.Purposes) != 2 || !site.Purposes[0].Required || site.Purposes[1].ConsentMode[0] != "analytics_storage" ||
		!strings.Contains(string(site.Texts["de"]), "Darf der Laden zählen?") || !strings.Contains(string(site.Texts["de"]), "Besucherzählung") {
		t.Errorf("stored site %+v texts %s", site.Purposes, site.Texts["de"])
	}

	if site.DoubleOptIn {
		t.Error("double opt-in is on though its box was not ticked")
	}

	// The embed code, copied into a page of the shop.
	snippet := consoleEval[string](t, ctx, `document.getElementById('snippet').value`)
	if !strings.Contains(snippet, e.api+"/w/laden/consent-mode.js") || !strings.Contains(snippet, `<script src="`+e.api+`/w/laden.js" async></script>`) {
		t.Errorf("embed code %q", snippet)
	}
	do("copy", chromedp.Click(chromedp.ID("snippet-copy")), consoleWait(`document.getElementById('snippet-msg').textContent !== ''`))
	page := e.host.page("/laden", `<!doctype html><html lang="de"><head><meta charset="utf-8"><title>Der Laden</title>`+
		strings.SplitN(snippet, "\n", 3)[1]+`</head><body><h1>Der Laden</h1>`+snippet+`</body></html>`)

	// A visitor from Germany accepts; the record is in the log.
	e.setVisitor(ipGermany)
	do("visitor", chromedp.Navigate(page), chromedp.WaitVisible(shadow(`[data-assent-action="accept-all"]`)))
	if title := consoleEval[string](t, ctx, `document.querySelector('#assent').shadowRoot.textContent`); !strings.Contains(title, "Darf der Laden zählen?") {
		t.Errorf("the visitor sees %q", title)
	}
	do("accept", chromedp.Click(shadow(`[data-assent-action="accept-all"]`)))
	recs := e.waitRecords("laden", 1)
	e.setVisitor("")
	do("log", chromedp.Navigate(e.api+"/admin/#log"),
		consoleWait(`document.querySelectorAll('#log-table tbody tr').length === 1`))
	if got := consoleEval[string](t, ctx, `document.querySelector('#log-table tbody tr').lastElementChild.textContent`); got != recs[0].ID {
		t.Errorf("log shows %q, want %s", got, recs[0].ID)
	}
	do("notice", chromedp.Click(chromedp.CSS(`#log-table button[data-notice]`)),
		consoleWait(`document.getElementById('notice-dialog').open`))
	if got := consoleText(t, ctx, "notice-facts"); !strings.Contains(got, "Darf der Laden zählen?") || !strings.Contains(got, "Besucherzählung") {
		t.Errorf("the notice shows %q", got)
	}
	darkAxe(t, ctx, "the notice")
	do("close notice", chromedp.Click(chromedp.ID("notice-close")))
	darkAxe(t, ctx, "the log")
	narrow(t, ctx, "the log")

	// A person who signed up asks to be erased.
	if _, err := e.st.Append(context.Background(), store.Record{Site: "laden", Event: "grant", Source: "signup", Basis: "explicit",
		Email: "jörg@bücher.example", VisitorID: "v_jorg", Choices: map[string]string{"analytics": "granted"}}); err != nil {
		t.Fatal(err)
	}
	do("look up", chromedp.Click(chromedp.CSS(`#nav a[href="#subjects"]`)),
		chromedp.SendKeys(chromedp.ID("s-email"), "jörg@bücher.example\r"),
		consoleWait(`document.querySelectorAll('#s-records tbody tr').length === 1`),
		chromedp.Click(chromedp.ID("s-erase")), consoleWait(`document.getElementById('erase-dialog').open`),
		chromedp.Click(chromedp.ID("erase-confirm")), chromedp.WaitVisible(chromedp.ID("erase-report")))
	if got, _, _ := e.st.Subject("jörg@bücher.example"); len(got) != 1 || !got[0].Erased || got[0].Email != "" {
		t.Errorf("after erasure: %+v", got)
	}

	// Verify, in Operations.
	do("verify", chromedp.Click(chromedp.CSS(`#nav a[href="#ops"]`)), chromedp.Click(chromedp.ID("verify")),
		consoleWait(`document.getElementById('verify-msg').textContent.includes('intact')`))
	if got := consoleText(t, ctx, "verify-facts"); !strings.Contains(got, "Site laden") {
		t.Errorf("verify report %q", got)
	}
	do("tokens listed", consoleWait(`document.querySelector('#tokens-table tbody').textContent.includes('e2e')`))
	darkAxe(t, ctx, "operations")
	narrow(t, ctx, "operations")

	// Sign out: the session is over on the server too.
	do("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("l-email")))
	if st := awaitStatus(t, ctx, `fetch('/v1/admin/whoami').then(r => r.status)`); st != 401 {
		t.Errorf("whoami after signing out: %d", st)
	}

	// A viewer: no erase button, no admin parts, and 403 from the API.
	consoleSignIn(t, ctx, e.api, "dpo@laden.example")
	do("viewer look-up", chromedp.Navigate(e.api+"/admin/#subjects"), chromedp.WaitVisible(chromedp.ID("s-email")),
		chromedp.SendKeys(chromedp.ID("s-email"), "jörg@bücher.example\r"),
		consoleWait(`document.querySelectorAll('#s-records tbody tr').length === 1`))
	if consoleEval[bool](t, ctx, `document.getElementById('s-erase').offsetParent !== null`) {
		t.Error("a viewer sees the erase button")
	}
	status := awaitStatus(t, ctx, `fetch('/v1/admin/whoami').then(r => r.json()).then(w =>
		fetch('/v1/admin/subjects?email=' + encodeURIComponent('jörg@bücher.example'), {method: 'DELETE', headers: {'X-CSRF-Token': w.csrf}})).then(r => r.status)`)
	if status != 403 {
		t.Errorf("a viewer's erasure through the API: %d, want 403", status)
	}
	do("viewer ops", chromedp.Navigate(e.api+"/admin/#ops"), chromedp.WaitVisible(chromedp.ID("verify")))
	if consoleEval[bool](t, ctx, `document.getElementById('backup').offsetParent !== null`) {
		t.Error("a viewer sees the backup button")
	}
}
