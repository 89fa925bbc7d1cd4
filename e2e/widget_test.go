package e2e

// The widget in a real browser against the real server: what a visitor sees
// and does, with the keyboard as well as the mouse, and what lands in the
// ledger and in Google's dataLayer as a result.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/assent/assent/server"
	"github.com/assent/assent/store"
)

// root is the widget's shadow root, in page JavaScript.
const root = `document.querySelector('#assent').shadowRoot`

// widgetSite has a banner and a signup form: two optional cookie purposes,
// a necessary one, and a newsletter that a signup must tick.
func widgetSite(id string) store.Site { return server.ExampleSite(id, nil) }

// positioned creates a site of its own with the banner at pos.
func (e *env) positioned(pos string) store.Site {
	s := widgetSite("shop-" + pos)
	s.Theme.Position = pos
	return e.site(s)
}

// builtinTexts reads the widget's built-in texts for lang, so assertions
// name what the visitor reads without copying it here.
func builtinTexts(t *testing.T, lang string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "widget", "texts", lang+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func txt(m map[string]any, path ...string) string {
	var v any = m
	for _, k := range path {
		v = v.(map[string]any)[k]
	}
	return v.(string)
}

// js evaluates expr in the page (awaiting a promise) and decodes its value.
func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// until waits for a page expression to become true.
func until(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		_, err := chromedp.Run(wctx, chromedp.Poll[bool](`!!(`+expr+`)`, chromedp.WithPollingInterval(25*time.Millisecond)))
		cancel()
		if err == nil {
			return
		}
		// A navigation or reload replaces the page's execution context under
		// a running poll; poll again in the new one.
		if time.Now().Before(deadline) && (strings.Contains(err.Error(), "Cannot find context") || strings.Contains(err.Error(), "context was destroyed") ||
			strings.Contains(err.Error(), "navigated or closed")) {
			time.Sleep(25 * time.Millisecond)
			continue
		}
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// press types keys as a person would: "\t" Tab, "\r" Enter, " " Space,
// "\x1b" Escape.
func press(t *testing.T, ctx context.Context, keys string, shift bool) {
	t.Helper()
	var opts []chromedp.KeyOption
	if shift {
		opts = append(opts, chromedp.KeyModifiers(chromedp.ModifierShift))
	}
	do(t, ctx, chromedp.KeyEvent(keys, opts...))
}

// focused names what has the keyboard focus: a widget control by its action
// or purpose, the dialog itself, or a page element by tag and id.
func focused(t *testing.T, ctx context.Context) string {
	t.Helper()
	return js[string](t, ctx, `(() => {
		const h = document.querySelector('#assent'), a = document.activeElement
		if (!h || a !== h) return 'page:' + a.tagName.toLowerCase() + (a.id ? '#' + a.id : '')
		const e = h.shadowRoot.activeElement
		if (!e) return 'host'
		if (e.dataset.assentPurpose) return 'purpose:' + e.dataset.assentPurpose
		return e.dataset.assentAction || e.getAttribute('role') || e.tagName.toLowerCase()
	})()`)
}

// dialogShown waits for the widget's dialog to be on screen.
func dialogShown(t *testing.T, ctx context.Context) {
	t.Helper()
	until(t, ctx, "the widget's dialog", `document.querySelector('#assent') && `+root+`.querySelector('[role=dialog]')`)
}

// click clicks a widget control as a mouse would.
func click(t *testing.T, ctx context.Context, selector string) {
	t.Helper()
	do(t, ctx, chromedp.Click(shadow(selector)))
}

// checkRecord compares a record's event (unless ""), source, regime and the
// given choices.
func checkRecord(t *testing.T, r store.Record, event, source, regime string, choices map[string]string) {
	t.Helper()
	if (event != "" && r.Event != event) || r.Source != source || r.Regime != regime {
		t.Errorf("record %s: event %q source %q regime %q, want %q %q %q", r.ID, r.Event, r.Source, r.Regime, event, source, regime)
	}
	for p, want := range choices {
		if r.Choices[p] != want {
			t.Errorf("record %s: %s = %q, want %q", r.ID, p, r.Choices[p], want)
		}
	}
}

// A German visitor uses only the keyboard with the banner as a modal: focus
// goes into the dialog at once, Tab walks the controls in reading order and
// stays inside, Escape refuses everything and is stored as a refusal, and the
// "Privacy settings" control brings the choices back and gets the focus back.
func TestWidgetKeyboardOnlyModal(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := widgetSite("shop")
	s.Theme.Position = "modal"
	e.site(s)
	page := e.host.page("/", e.embed("shop", "en", `<p><a href="#top" id="top">Top of page</a></p>`))
	e.setVisitor(ipGermany)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)

	if f := focused(t, ctx); f != "dialog" {
		t.Fatalf("when the banner appeared the focus was on %q, want the dialog", f)
	}
	if js[string](t, ctx, root+`.querySelector('[role=dialog]').getAttribute('aria-modal')`) != "true" {
		t.Error("the modal banner lacks aria-modal=true")
	}
	// Reading order, then round again: the modal traps the focus.
	order := []string{"purpose:analytics", "purpose:marketing", "reject-all", "save", "accept-all", "settings", "close", "purpose:analytics"}
	for i, want := range order {
		press(t, ctx, "\t", false)
		if got := focused(t, ctx); got != want {
			t.Fatalf("Tab #%d: focus on %q, want %q", i+1, got, want)
		}
	}
	press(t, ctx, "\t", true)
	if got := focused(t, ctx); got != "close" {
		t.Fatalf("Shift+Tab from the first control: focus on %q, want the last (close)", got)
	}
	// A focus that strays to the page is brought back while the modal is open.
	js[any](t, ctx, `document.getElementById('top').focus()`)
	if got := focused(t, ctx); got != "dialog" {
		t.Errorf("focus on the page behind the modal went to %q, want back to the dialog", got)
	}

	press(t, ctx, "\x1b", false)
	recs := e.waitRecords("shop", 1)
	ua := js[string](t, ctx, `navigator.userAgent`)
	checkRecord(t, recs[0], "deny", "banner", "opt-in", map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "denied"})
	if recs[0].UserAgent != ua || recs[0].Country != "DE" || recs[0].NoticeVersion == "" {
		t.Errorf("record: user agent %q (browser %q), country %q, notice %q", recs[0].UserAgent, ua, recs[0].Country, recs[0].NoticeVersion)
	}
	until(t, ctx, "the refusal remembered", `assent.get() && assent.get().id`)
	if got := js[map[string]any](t, ctx, `assent.get()`); got["id"] != recs[0].ID || got["regime"] != "opt-in" {
		t.Errorf("assent.get() = %v, want record %s", got, recs[0].ID)
	}
	if js[bool](t, ctx, `!!`+root+`.querySelector('[role=dialog]')`) {
		t.Error("the banner is still open after Escape")
	}
	if got := focused(t, ctx); got != "page:body" {
		t.Errorf("after Escape the focus is on %q, want back on the page where it was", got)
	}

	// Keyboard only: Tab reaches the settings control, after the page's link.
	var walked []string
	for len(walked) < 4 && (len(walked) == 0 || walked[len(walked)-1] != "settings") {
		press(t, ctx, "\t", false)
		walked = append(walked, focused(t, ctx))
	}
	if walked[len(walked)-1] != "settings" {
		t.Fatalf("Tab went %v, never to the Privacy settings control", walked)
	}
	press(t, ctx, "\r", false)
	dialogShown(t, ctx)
	if got := focused(t, ctx); got != "dialog" {
		t.Fatalf("the settings opened with the focus on %q, want the dialog", got)
	}
	if js[bool](t, ctx, `[...`+root+`.querySelectorAll('[data-assent-purpose]')].some(i => i.checked)`) {
		t.Error("the settings show a box ticked after a refusal")
	}
	press(t, ctx, "\t", false) // analytics
	press(t, ctx, " ", false)  // tick it
	for range 3 {              // marketing, reject-all, save
		press(t, ctx, "\t", false)
	}
	if got := focused(t, ctx); got != "save" {
		t.Fatalf("focus on %q, want save", got)
	}
	press(t, ctx, "\r", false)
	recs = e.waitRecords("shop", 2)
	checkRecord(t, recs[1], "partial", "preferences", "opt-in", map[string]string{"analytics": "granted", "marketing": "denied"})
	until(t, ctx, "the settings closed", `!`+root+`.querySelector('[role=dialog]')`)
	if got := focused(t, ctx); got != "settings" {
		t.Errorf("after saving the focus is on %q, want back on the Privacy settings control", got)
	}

	// The choice is remembered: no banner on the next page view.
	do(t, ctx, chromedp.Reload())
	until(t, ctx, "the settings control", `document.querySelector('#assent') && `+root+`.querySelector('[data-assent-action=settings]')`)
	if js[bool](t, ctx, `!!`+root+`.querySelector('[role=dialog]')`) {
		t.Error("the banner came back on the next page although the choice is remembered")
	}
	if n := len(e.records("shop")); n != 2 {
		t.Errorf("%d records after a reload, want still 2", n)
	}
}

// In the other positions the banner also takes the focus when it appears,
// but does not trap it: Tab past the last control goes back to the page.
func TestWidgetKeyboardNonModalPositions(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.setVisitor(ipGermany)
	ctx := browser(t)
	for _, pos := range []string{"bar-bottom", "box-left", "box-right"} {
		s := e.positioned(pos)
		do(t, ctx, chromedp.Navigate(e.host.page("/"+pos, e.embed(s.ID, "en", `<a href="#shop" id="shop">Shop</a>`))))
		dialogShown(t, ctx)
		if f := focused(t, ctx); f != "dialog" {
			t.Errorf("%s: when the banner appeared the focus was on %q, want the dialog", pos, f)
		}
		if js[bool](t, ctx, root+`.querySelector('[role=dialog]').hasAttribute('aria-modal')`) {
			t.Errorf("%s: a non-modal banner says aria-modal", pos)
		}
		for range 7 { // analytics … close
			press(t, ctx, "\t", false)
		}
		if got := focused(t, ctx); got != "close" {
			t.Errorf("%s: focus on %q after 7 Tabs, want close", pos, got)
		}
		press(t, ctx, "\t", false)
		if got := focused(t, ctx); !strings.HasPrefix(got, "page:") {
			t.Errorf("%s: Tab after the last control went to %q, want out to the page: the focus is trapped", pos, got)
		}
	}
}

// Outside the opt-in regions the visitor gets a short notice with an
// opt-out and no checkboxes; the site's purposes run until they opt out, and
// the opt-out is recorded.
func TestWidgetNoticeRegime(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(widgetSite("shop"))
	en := builtinTexts(t, "en")
	page := e.host.page("/", e.embed("shop", "en", `<script type="text/plain" data-assent="analytics">window.ran = (window.ran || []).concat('analytics')</script>`))
	e.setVisitor(ipUS)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)

	if n := js[int](t, ctx, root+`.querySelectorAll('input[type=checkbox]').length`); n != 0 {
		t.Errorf("the notice shows %d checkboxes, want none", n)
	}
	if got := js[string](t, ctx, root+`.querySelector('[role=dialog] p').textContent`); got != txt(en, "notice") {
		t.Errorf("notice text %q, want %q", got, txt(en, "notice"))
	}
	if got := js[string](t, ctx, root+`.querySelector('[data-assent-action=reject-all]').textContent`); got != txt(en, "optout") {
		t.Errorf("opt-out button says %q, want %q", got, txt(en, "optout"))
	}
	if !js[bool](t, ctx, `!!`+root+`.querySelector('[data-assent-action=settings]')`) {
		t.Error("the notice has no link to the settings")
	}
	until(t, ctx, "the analytics script (allowed until an opt-out)", `window.ran`)
	if f := focused(t, ctx); f != "dialog" {
		t.Errorf("the notice appeared with the focus on %q, want the dialog", f)
	}

	click(t, ctx, `[data-assent-action="reject-all"]`)
	recs := e.waitRecords("shop", 1)
	checkRecord(t, recs[0], "deny", "banner", "notice", map[string]string{"analytics": "denied", "marketing": "denied"})
	if recs[0].Country != "US" {
		t.Errorf("country %q, want US", recs[0].Country)
	}
	until(t, ctx, "the opt-out remembered", `assent.get() && assent.get().id`)
	if got := js[map[string]any](t, ctx, `assent.get().choices`); got["analytics"] != false || got["marketing"] != false {
		t.Errorf("assent.get().choices = %v after the opt-out", got)
	}
}

// axe-core finds no WCAG 2.x A/AA violation in any view, in the light and
// dark schemes and in auto with a dark system setting.
func TestWidgetAccessibility(t *testing.T) {
	axeSrc, err := os.ReadFile(filepath.Join("..", "widget", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatalf("axe-core is missing: run `make widget-deps` (make test does): %v", err)
	}
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		scheme, bg string
		dark       bool
	}{{"light", "rgb(255, 255, 255)", false}, {"dark", "rgb(29, 29, 31)", false}, {"auto", "rgb(29, 29, 31)", true}} {
		t.Run(tc.scheme, func(t *testing.T) {
			s := widgetSite("shop-" + tc.scheme)
			s.Theme.Scheme = tc.scheme
			s.Theme.Position = "box-right"
			e.site(s)
			page := e.host.page("/"+tc.scheme, e.embed(s.ID, "en", `<button type="button" onclick="assent.open('signup')">Newsletter</button>`))
			ctx := browser(t)
			if tc.dark {
				do(t, ctx, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
					_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
						Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
					})
					return chromedp.Void{}, err
				})
			}
			audit := func(view string) {
				t.Helper()
				if !js[bool](t, ctx, `typeof axe == 'object'`) {
					js[any](t, ctx, string(axeSrc))
				}
				v := js[[]map[string]any](t, ctx, `axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})
					.then(r => r.violations.map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => JSON.stringify(n.target) + ': ' + n.failureSummary)})))`)
				for _, x := range v {
					t.Errorf("%s, %s scheme: axe %v: %v %v", view, tc.scheme, x["id"], x["help"], x["nodes"])
				}
			}
			for _, visitor := range []string{ipUS, ipGermany} {
				e.setVisitor(visitor)
				do(t, ctx, chromedp.Navigate(page), chromedp.Evaluate[chromedp.Void](`localStorage.clear()`), chromedp.Reload())
				dialogShown(t, ctx)
				if got := js[string](t, ctx, `getComputedStyle(`+root+`.querySelector('[role=dialog]')).backgroundColor`); got != tc.bg {
					t.Errorf("%s scheme: dialog background %s, want %s", tc.scheme, got, tc.bg)
				}
				audit("first layer for " + visitor)
			}
			click(t, ctx, `[data-assent-action="settings"]`)
			audit("settings")
			click(t, ctx, `[data-assent-action="reject-all"]`)
			until(t, ctx, "the refusal recorded", `assent.get() && assent.get().id`)
			audit("settings control")
			js[any](t, ctx, `assent.open('signup')`)
			dialogShown(t, ctx)
			js[any](t, ctx, root+`.querySelector('input[name=email]').value = 'ada@example.com'`)
			click(t, ctx, `[data-assent-action="submit"]`) // not ticked: the form says why
			until(t, ctx, "the form's message", root+`.querySelector('[role=alert]').textContent`)
			audit("signup form with its message")
			click(t, ctx, `[data-assent-purpose="newsletter"]`)
			click(t, ctx, `[data-assent-action="submit"]`)
			until(t, ctx, "the signup's success", `!`+root+`.querySelector('input[name=email]')`)
			audit("signup success")
			click(t, ctx, `[data-assent-action="receipt"]`)
			until(t, ctx, "the receipt", root+`.querySelector('pre')`)
			audit("receipt")
		})
	}
}

// Gated scripts (inline and with src) and iframes come alive only once their
// purpose is granted, and then in document order, an inline script waiting
// for the slow external one before it.
func TestWidgetGatesScriptsAndIframes(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(widgetSite("shop"))
	// Scripts served slowly from a third origin, as a tag manager's would be.
	var served atomic.Int32
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		time.Sleep(300 * time.Millisecond)
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprintf(w, "window.ran = (window.ran || []).concat(%q)", strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), ".js"))
	}))
	t.Cleanup(cdn.Close)
	frame := e.host.page("/frame", `<!doctype html><title>ad</title><p>ad</p>`)
	page := e.host.page("/", e.embed("shop", "en", `
<script type="text/plain" data-assent="analytics" src="`+cdn.URL+`/a-src.js"></script>
<script type="text/plain" data-assent="analytics">window.ran = (window.ran || []).concat('a-inline')</script>
<script type="text/plain" data-assent="marketing">window.ran = (window.ran || []).concat('m-inline')</script>
<iframe data-assent="marketing" data-src="`+frame+`" title="An advertisement"></iframe>
<script type="text/plain" data-assent="necessary">window.necessary = true</script>`))
	e.setVisitor(ipGermany)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)
	until(t, ctx, "the necessary script", `window.necessary`)
	time.Sleep(400 * time.Millisecond)
	if js[bool](t, ctx, `!!window.ran`) || served.Load() != 0 {
		t.Fatalf("gated scripts ran before any choice: %v (%d fetched)", js[any](t, ctx, `window.ran`), served.Load())
	}
	if js[string](t, ctx, `document.querySelector('iframe').src`) != "" {
		t.Fatal("the gated iframe loaded before any choice")
	}

	click(t, ctx, `[data-assent-purpose="analytics"]`)
	click(t, ctx, `[data-assent-action="save"]`)
	until(t, ctx, "both analytics scripts", `window.ran && window.ran.length == 2`)
	time.Sleep(200 * time.Millisecond)
	if got := js[[]string](t, ctx, `window.ran`); strings.Join(got, ",") != "a-src,a-inline" {
		t.Errorf("after granting analytics ran %v, want a-src then a-inline", got)
	}
	if js[string](t, ctx, `document.querySelector('iframe').src`) != "" {
		t.Error("the marketing iframe loaded with only analytics granted")
	}

	js[any](t, ctx, `assent.open()`)
	dialogShown(t, ctx)
	click(t, ctx, `[data-assent-action="accept-all"]`)
	until(t, ctx, "the marketing script", `window.ran.length == 3`)
	until(t, ctx, "the marketing iframe", `document.querySelector('iframe').src`)
	if got := js[string](t, ctx, `document.querySelector('iframe').src`); got != frame {
		t.Errorf("iframe src %q, want %q", got, frame)
	}
	if got := js[[]string](t, ctx, `window.ran`); strings.Join(got, ",") != "a-src,a-inline,m-inline" {
		t.Errorf("ran %v, want each script once", got)
	}

	// Next page view: the remembered choice runs everything in document order.
	until(t, ctx, "the choice remembered", `(c => c && c.id && c.choices.marketing)(assent.get())`)
	do(t, ctx, chromedp.Reload())
	until(t, ctx, "every gated script", `window.ran && window.ran.length == 3`)
	if got := js[[]string](t, ctx, `window.ran`); strings.Join(got, ",") != "a-src,a-inline,m-inline" {
		t.Errorf("on the next page view ran %v, want document order", got)
	}
}

// Consent Mode v2 on a page with a bare dataLayer (Google Tag Manager): the
// default (all denied) is pushed before the decision arrives, as a gtag
// arguments object; each choice pushes an update through the purposes'
// mapping; a withdrawal too; the next page view restores the choice at once.
func TestWidgetConsentMode(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := widgetSite("shop")
	s.ConsentMode.AdsDataRedaction = true
	e.site(s)
	head := `<script>
window.dataLayer = []; window.pushes = []
const push = dataLayer.push.bind(dataLayer)
dataLayer.push = function (a) {
	pushes.push({args: Array.from(a), isArguments: Object.prototype.toString.call(a) == '[object Arguments]',
		afterDecision: performance.getEntriesByType('resource').some(r => r.name.includes('/decision'))})
	return push(a)
}
</script>`
	page := e.host.page("/", strings.Replace(e.embed("shop", "en", ""), "</head>", head+"</head>", 1))
	e.setVisitor(ipGermany)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)

	type push struct {
		Args          []any `json:"args"`
		IsArguments   bool  `json:"isArguments"`
		AfterDecision bool  `json:"afterDecision"`
	}
	pushes := func() []push { return js[[]push](t, ctx, `pushes`) }
	states := func(p push) map[string]any {
		if len(p.Args) < 3 {
			t.Fatalf("push %v has no consent state", p.Args)
		}
		return p.Args[2].(map[string]any)
	}
	types := []string{"ad_storage", "ad_user_data", "ad_personalization", "analytics_storage"}

	got := pushes()
	if len(got) != 2 {
		t.Fatalf("before any choice the dataLayer got %d pushes, want the default and one setting: %v", len(got), got)
	}
	if got[0].Args[0] != "consent" || got[0].Args[1] != "default" || !got[0].IsArguments || got[0].AfterDecision {
		t.Errorf("first push %+v: want consent default, as an arguments object, before the decision", got[0])
	}
	for _, ty := range types {
		if states(got[0])[ty] != "denied" {
			t.Errorf("default %s = %v, want denied", ty, states(got[0])[ty])
		}
	}
	if states(got[0])["wait_for_update"] != float64(500) {
		t.Errorf("default wait_for_update = %v, want 500", states(got[0])["wait_for_update"])
	}
	if fmt.Sprint(got[1].Args) != "[set ads_data_redaction true]" {
		t.Errorf("second push %v, want the ads_data_redaction setting", got[1].Args)
	}

	click(t, ctx, `[data-assent-action="accept-all"]`)
	until(t, ctx, "the update", `pushes.length == 3`)
	up := pushes()[2]
	if up.Args[0] != "consent" || up.Args[1] != "update" || !up.IsArguments {
		t.Errorf("after Accept all: push %v", up.Args)
	}
	for _, ty := range types {
		if states(up)[ty] != "granted" {
			t.Errorf("after Accept all %s = %v, want granted", ty, states(up)[ty])
		}
	}
	if states(up)["functionality_storage"] != "denied" {
		t.Errorf("functionality_storage, which no purpose maps, = %v, want denied", states(up)["functionality_storage"])
	}
	e.waitRecords("shop", 1)

	// Withdrawing is as easy as giving, and Consent Mode follows.
	changed := js[map[string]any](t, ctx, `new Promise(ok => { assent.on('change', ok); assent.withdraw('marketing') })`)
	if c := changed["choices"].(map[string]any); c["marketing"] != false || c["analytics"] != true {
		t.Errorf("assent:change after withdraw('marketing') carried %v", changed)
	}
	recs := e.waitRecords("shop", 2)
	checkRecord(t, recs[1], "withdraw", "preferences", "opt-in", map[string]string{"analytics": "granted", "marketing": "denied"})
	last := pushes()[len(pushes())-1]
	if states(last)["ad_storage"] != "denied" || states(last)["analytics_storage"] != "granted" {
		t.Errorf("after withdrawing marketing the update is %v", last.Args)
	}

	// Next page view: default, then the remembered choice.
	do(t, ctx, chromedp.Reload())
	until(t, ctx, "the remembered update", `pushes.some(p => p.args[1] == 'update')`)
	got = pushes()
	if got[0].Args[1] != "default" || got[0].AfterDecision {
		t.Errorf("next page view: first push %+v, want the default before the decision", got[0])
	}
	u := got[len(got)-1]
	if states(u)["analytics_storage"] != "granted" || states(u)["ad_storage"] != "denied" {
		t.Errorf("next page view: update %v, want the remembered choice", u.Args)
	}
}

// When the site's policy version changes, a visitor who chose before is
// asked again, in the site's new texts, even while the browser still holds
// the old script in its cache.
func TestWidgetReasksAfterPolicyChange(t *testing.T) {
	e := newEnv(t, envOptions{})
	created := e.site(widgetSite("shop"))
	page := e.host.page("/", e.embed("shop", "en", ""))
	e.setVisitor(ipGermany)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)
	click(t, ctx, `[data-assent-action="accept-all"]`)
	e.waitRecords("shop", 1)
	until(t, ctx, "the choice remembered", `assent.get() && assent.get().id`)
	do(t, ctx, chromedp.Reload())
	until(t, ctx, "the settings control", `document.querySelector('#assent') && `+root+`.querySelector('.ps')`)
	if js[bool](t, ctx, `!!`+root+`.querySelector('[role=dialog]')`) {
		t.Fatal("asked again although nothing changed")
	}

	changed := created
	changed.Texts = map[string]json.RawMessage{"en": json.RawMessage(`{"title": "Cookies at Example Shop"}`)}
	var updated store.Site
	if code := e.adminJSON(http.MethodPut, "/v1/admin/sites/shop", changed, &updated); code != http.StatusOK {
		t.Fatalf("update site: status %d", code)
	}
	if updated.PolicyVersion == created.PolicyVersion {
		t.Fatalf("new texts kept policy version %q", updated.PolicyVersion)
	}
	do(t, ctx, chromedp.Reload())
	dialogShown(t, ctx)
	if got := js[string](t, ctx, root+`.querySelector('[role=dialog] h2').textContent`); got != "Cookies at Example Shop" {
		t.Errorf("title %q, want the site's new text", got)
	}
	if js[bool](t, ctx, `[...`+root+`.querySelectorAll('[data-assent-purpose]')].some(i => i.checked)`) {
		t.Error("asked again with boxes already ticked")
	}
	if js[bool](t, ctx, `assent.get() !== null`) {
		t.Error("assent.get() still reports the old choice")
	}
	click(t, ctx, `[data-assent-action="reject-all"]`)
	recs := e.waitRecords("shop", 2)
	if recs[1].NoticeVersion != updated.PolicyVersion {
		t.Errorf("new record cites notice %q, want %q", recs[1].NoticeVersion, updated.PolicyVersion)
	}
}

// A browser set to German, on a page that names no language, gets the
// German texts, and the record says so.
func TestWidgetGermanTexts(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(widgetSite("shop"))
	de := builtinTexts(t, "de")
	page := e.host.page("/", strings.Replace(e.embed("shop", "", ""), ` lang=""`, "", 1))
	e.setVisitor(ipGermany)
	ctx := browser(t, chromedp.Flag("lang", "de-DE"), chromedp.Flag("accept-lang", "de-DE,de"))
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)
	for sel, want := range map[string]string{
		`[role=dialog] h2`:                         txt(de, "title"),
		`[data-assent-action="accept-all"]`:        txt(de, "accept_all"),
		`[data-assent-action="reject-all"]`:        txt(de, "reject_all"),
		`[data-assent-action="save"]`:              txt(de, "save"),
		`[data-assent-purpose="analytics"] + span`: txt(de, "purposes", "analytics", "label"),
	} {
		if got := js[string](t, ctx, root+`.querySelector(`+jsString(sel)+`).textContent`); got != want {
			t.Errorf("%s says %q, want %q", sel, got, want)
		}
	}
	if got := js[string](t, ctx, root+`.querySelector('[data-assent-action=close]').getAttribute('aria-label')`); got != txt(de, "close") {
		t.Errorf("close button is named %q, want %q", got, txt(de, "close"))
	}
	click(t, ctx, `[data-assent-action="reject-all"]`)
	if r := e.waitRecords("shop", 1)[0]; r.Locale != "de" {
		t.Errorf("record locale %q, want de", r.Locale)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// The signup popup in both regimes: opened by the site's selector, the
// required box must be ticked in the opt-in regime (the form says so, and
// nothing is stored), the server's refusal is shown in the form, and a
// signup in the notice regime is recorded as implied.
func TestWidgetSignup(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := widgetSite("shop")
	s.SignupTriggers.Selector = "#join"
	e.site(s)
	en := builtinTexts(t, "en")
	gpc := `<script>Object.defineProperty(navigator, 'globalPrivacyControl', {value: true})</script>`
	page := e.host.page("/", e.embed("shop", "en", `<button type="button" id="join">Join the newsletter</button>`+gpc))

	signup := func(t *testing.T, ctx context.Context, address string) {
		t.Helper()
		js[any](t, ctx, root+`.querySelector('input[name=email]').focus()`)
		do(t, ctx, chromedp.KeyEvent(address))
		click(t, ctx, `[data-assent-action="submit"]`)
	}

	t.Run("opt-in", func(t *testing.T) {
		e.setVisitor(ipGermany)
		ctx := browser(t)
		do(t, ctx, chromedp.Navigate(page))
		dialogShown(t, ctx)
		press(t, ctx, "\x1b", false) // the cookie banner first
		before := len(e.waitRecords("shop", 1))
		do(t, ctx, chromedp.Click(chromedp.JSPath(`document.getElementById('join')`)))
		dialogShown(t, ctx)
		if got := js[string](t, ctx, root+`.querySelector('[role=dialog] h2').textContent`); got != txt(en, "signup", "title") {
			t.Errorf("signup title %q", got)
		}
		if f := focused(t, ctx); f != "dialog" {
			t.Errorf("the signup opened with the focus on %q, want the dialog", f)
		}
		if js[bool](t, ctx, root+`.querySelector('[data-assent-purpose=newsletter]').checked`) {
			t.Fatal("the newsletter box is ticked before the visitor ticked it")
		}
		if n := js[int](t, ctx, root+`.querySelectorAll('input[name=website]').length`); n != 1 {
			t.Errorf("%d honeypot fields, want 1", n)
		}
		signup(t, ctx, "Ada@Example.com")
		until(t, ctx, "the form's message", root+`.querySelector('[role=alert]').textContent`)
		if got := js[string](t, ctx, root+`.querySelector('[role=alert]').textContent`); got != txt(en, "signup", "required_hint") {
			t.Errorf("message %q, want %q", got, txt(en, "signup", "required_hint"))
		}
		time.Sleep(300 * time.Millisecond)
		if n := len(e.records("shop")); n != before {
			t.Fatalf("a signup without the required box stored a record (%d, want %d)", n, before)
		}
		click(t, ctx, `[data-assent-purpose="newsletter"]`)
		click(t, ctx, `[data-assent-action="submit"]`)
		until(t, ctx, "the success text", `!`+root+`.querySelector('input[name=email]')`)
		if got := js[string](t, ctx, root+`.querySelector('[role=status]').textContent`); got != txt(en, "signup", "success") {
			t.Errorf("after signing up the form says %q, want %q", got, txt(en, "signup", "success"))
		}
		recs := e.waitRecords("shop", before+1)
		r := recs[len(recs)-1]
		checkRecord(t, r, "", "signup", "opt-in", map[string]string{"newsletter": "granted"})
		if r.Email != "ada@example.com" || r.Basis != "explicit" || !r.GPC {
			t.Errorf("signup record: email %q basis %q gpc %v, want the normalised address, explicit, and GPC recorded (it never blocks a signup)", r.Email, r.Basis, r.GPC)
		}
		// The receipt names the record.
		click(t, ctx, `[data-assent-action="receipt"]`)
		until(t, ctx, "the receipt", root+`.querySelector('pre')`)
		if got := js[string](t, ctx, root+`.querySelector('pre').textContent`); !strings.Contains(got, r.ID) {
			t.Errorf("the receipt shown does not name record %s: %s", r.ID, got)
		}

		// An erased address cannot sign up again; the server says why, in the form.
		if code := e.adminJSON(http.MethodDelete, "/v1/admin/subjects?email="+url.QueryEscape("ada@example.com"), nil, nil); code != http.StatusOK {
			t.Fatalf("erase: status %d", code)
		}
		n := len(e.records("shop"))
		press(t, ctx, "\x1b", false)
		js[any](t, ctx, `assent.open('signup')`)
		dialogShown(t, ctx)
		click(t, ctx, `[data-assent-purpose="newsletter"]`)
		signup(t, ctx, "ada@example.com")
		until(t, ctx, "the server's message", root+`.querySelector('[role=alert]').textContent`)
		// In the visitor's language, from the widget's texts: never the server's English message.
		if got := js[string](t, ctx, root+`.querySelector('[role=alert]').textContent`); got != txt(en, "signup", "error_suppressed") {
			t.Errorf("the form says %q, want %q", got, txt(en, "signup", "error_suppressed"))
		}
		if len(e.records("shop")) != n {
			t.Error("a signup of an erased address stored a record")
		}
	})

	t.Run("notice", func(t *testing.T) {
		e.setVisitor(ipUS)
		ctx := browser(t)
		do(t, ctx, chromedp.Navigate(page))
		dialogShown(t, ctx)
		before := len(e.records("shop"))
		js[any](t, ctx, `assent.open('signup')`)
		until(t, ctx, "the signup form", root+`.querySelector('input[name=email]')`)
		box := js[map[string]bool](t, ctx, `(b => ({checked: b.checked, disabled: b.disabled}))(`+root+`.querySelector('[data-assent-purpose=newsletter]'))`)
		if !box["checked"] {
			t.Error("in the notice regime the required signup purpose is not shown as given")
		}
		signup(t, ctx, "grace@example.com")
		until(t, ctx, "the success text", root+`.querySelector('[role=status]')`)
		recs := e.waitRecords("shop", before+1)
		r := recs[len(recs)-1]
		checkRecord(t, r, "", "signup", "notice", map[string]string{"newsletter": "granted"})
		if r.Basis != "implied" || r.Email != "grace@example.com" {
			t.Errorf("notice signup: basis %q email %q, want implied", r.Basis, r.Email)
		}
	})
}

// GPC denies the purposes mapped to ad_* consent types: their box cannot be
// ticked, "Accept all" leaves them denied, and the record carries the signal.
func TestWidgetGlobalPrivacyControl(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(widgetSite("shop"))
	page := e.host.page("/", e.embed("shop", "en", `<script>Object.defineProperty(navigator, 'globalPrivacyControl', {value: true})</script>`))
	e.setVisitor(ipGermany)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)
	if !js[bool](t, ctx, root+`.querySelector('[data-assent-purpose=marketing]').disabled`) {
		t.Error("with GPC the marketing box can still be ticked")
	}
	if js[bool](t, ctx, root+`.querySelector('[data-assent-purpose=analytics]').disabled`) {
		t.Error("GPC disabled analytics, which maps to no ad_* type")
	}
	click(t, ctx, `[data-assent-action="accept-all"]`)
	r := e.waitRecords("shop", 1)[0]
	checkRecord(t, r, "partial", "banner", "opt-in", map[string]string{"analytics": "granted", "marketing": "denied"})
	if !r.GPC {
		t.Error("the record does not carry GPC")
	}
}

// If the decision cannot be fetched the widget shows nothing and runs
// nothing gated; the next page view tries again.
func TestWidgetDecisionUnavailable(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := widgetSite("shop")
	e.site(s)
	// A gateway in front of Assent whose decision endpoint is down.
	var down atomic.Bool
	down.Store(true)
	target, _ := url.Parse(e.api)
	rp := httputil.NewSingleHostReverseProxy(target)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() && strings.HasSuffix(r.URL.Path, "/decision") {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(gw.Close)
	html := strings.Replace(e.embed("shop", "en", `<script type="text/plain" data-assent="necessary">window.ran = true</script>`), e.api, gw.URL, 1)
	page := e.host.page("/", html)
	e.setVisitor(ipUS) // notice regime: everything would run at once if it were shown
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	until(t, ctx, "the widget script", `window.assent`)
	time.Sleep(700 * time.Millisecond)
	if js[bool](t, ctx, `!!document.querySelector('#assent')`) {
		t.Error("the widget showed something without a decision")
	}
	if js[bool](t, ctx, `!!window.ran`) {
		t.Error("a gated script ran without a decision")
	}
	if js[bool](t, ctx, `assent.get() !== null`) {
		t.Error("assent.get() reports a choice without a decision")
	}
	down.Store(false)
	do(t, ctx, chromedp.Reload())
	dialogShown(t, ctx)
	until(t, ctx, "the gated script on the next page view", `window.ran`)
}

// The widget never moves the host page's content: no layout shift when it
// appears, when a choice closes it, or when the settings open and close.
func TestWidgetNoLayoutShift(t *testing.T) {
	e := newEnv(t, envOptions{})
	head := `<script>window.shifts = []; new PerformanceObserver(l => l.getEntries().forEach(x => shifts.push(x.value))).observe({type: 'layout-shift', buffered: true})</script>
<style>div { margin: 40px; padding: 20px } body { font: 18px/1.6 Georgia, serif }</style>`
	body := strings.Repeat(`<p>Our shop sells tea, coffee and the cups to drink them from.</p>`, 30)
	e.setVisitor(ipGermany)
	ctx := browser(t)
	for _, pos := range []string{"bar-bottom", "box-left", "modal"} {
		s := e.positioned(pos)
		page := e.host.page("/"+pos, strings.Replace(e.embed(s.ID, "en", body), "</head>", head+"</head>", 1))
		do(t, ctx, chromedp.Navigate(page))
		dialogShown(t, ctx)
		click(t, ctx, `[data-assent-action="reject-all"]`)
		until(t, ctx, "the settings control", root+`.querySelector('.ps')`)
		click(t, ctx, `.ps`)
		dialogShown(t, ctx)
		press(t, ctx, "\x1b", false)
		until(t, ctx, "the settings closed", `!`+root+`.querySelector('[role=dialog]')`)
		time.Sleep(300 * time.Millisecond)
		if got := js[[]float64](t, ctx, `shifts`); len(got) != 0 {
			t.Errorf("%s: the page saw layout shifts %v", pos, got)
		}
	}
}

// Automatic signup triggers: a timer that fires while the cookie banner is up
// waits for it to be answered; a dismissed popup does not come back by
// itself; exit intent opens it; the site's own button always does.
func TestWidgetSignupTriggers(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := widgetSite("shop")
	s.SignupTriggers = store.SignupTriggers{AfterSeconds: 1, ExitIntent: true}
	e.site(s)
	page := e.host.page("/", e.embed("shop", "en", `<button type="button" id="join" onclick="assent.open('signup')">Join</button>`))
	en := builtinTexts(t, "en")
	e.setVisitor(ipGermany)
	ctx := browser(t)
	heading := func() string {
		return js[string](t, ctx, `(d => d ? d.querySelector('h2').textContent : '')(document.querySelector('#assent') && `+root+`.querySelector('[role=dialog]'))`)
	}
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)
	time.Sleep(1500 * time.Millisecond)
	if got := heading(); got != txt(en, "title") {
		t.Fatalf("1.5 s in, with the banner unanswered, the dialog is %q, want still the banner", got)
	}
	press(t, ctx, "\x1b", false)
	until(t, ctx, "the signup popup after the banner", `(d => d && d.querySelector('input[name=email]'))(`+root+`.querySelector('[role=dialog]'))`)
	press(t, ctx, "\x1b", false) // not now
	until(t, ctx, "the popup closed", `!`+root+`.querySelector('[role=dialog]')`)
	e.waitRecords("shop", 1)
	until(t, ctx, "the refusal remembered", `assent.get() && assent.get().id`)

	do(t, ctx, chromedp.Reload())
	until(t, ctx, "the settings control", `document.querySelector('#assent') && `+root+`.querySelector('.ps')`)
	time.Sleep(1500 * time.Millisecond)
	if got := heading(); got != "" {
		t.Errorf("the dismissed popup came back by itself: %q", got)
	}
	do(t, ctx, chromedp.Click(chromedp.JSPath(`document.getElementById('join')`)))
	if got := heading(); got != txt(en, "signup", "title") {
		t.Errorf("the site's button opened %q, want the signup popup", got)
	}
	press(t, ctx, "\x1b", false)

	// A new visitor who answers the banner, then heads for the tab bar.
	ctx2 := browser(t)
	s2 := widgetSite("shop-exit")
	s2.SignupTriggers.ExitIntent = true
	e.site(s2)
	do(t, ctx2, chromedp.Navigate(e.host.page("/exit", e.embed(s2.ID, "en", ""))))
	dialogShown(t, ctx2)
	click(t, ctx2, `[data-assent-action="reject-all"]`)
	until(t, ctx2, "the banner closed", `!`+root+`.querySelector('[role=dialog]')`)
	// The pointer goes up to the top edge; input emulation cannot take it out
	// of the page, so the last step is the event the browser fires then.
	do(t, ctx2,
		chromedp.MouseEvent(chromedp.MouseMoved, 400, 300),
		chromedp.MouseEvent(chromedp.MouseMoved, 400, 2),
		chromedp.Evaluate[chromedp.Void](`document.documentElement.dispatchEvent(new MouseEvent('mouseout', {bubbles: true, clientX: 400, clientY: -1, relatedTarget: null}))`),
	)
	until(t, ctx2, "the signup popup on exit intent", `(d => d && d.querySelector('input[name=email]'))(`+root+`.querySelector('[role=dialog]'))`)
}

// Gated elements that a single-page app adds after load wait for their
// purpose like the others, and run at once when it is already granted.
func TestWidgetGatesElementsAddedLater(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(widgetSite("shop"))
	page := e.host.page("/", e.embed("shop", "en", `<script>
window.addGated = (purpose, name) => {
  const s = document.createElement('script')
  s.type = 'text/plain'
  s.dataset.assent = purpose
  s.text = "window.ran = (window.ran || []).concat('" + name + "')"
  document.body.append(s)
}</script>`))
	e.setVisitor(ipGermany)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)
	js[any](t, ctx, `addGated('analytics', 'before-choice')`)
	time.Sleep(300 * time.Millisecond)
	if js[bool](t, ctx, `!!window.ran`) {
		t.Fatalf("a late gated script ran before any choice: %v", js[any](t, ctx, `window.ran`))
	}
	click(t, ctx, `[data-assent-purpose="analytics"]`)
	click(t, ctx, `[data-assent-action="save"]`)
	until(t, ctx, "the waiting script", `window.ran && window.ran.length == 1`)
	js[any](t, ctx, `addGated('analytics', 'after-grant')`)
	js[any](t, ctx, `addGated('marketing', 'not-granted')`)
	until(t, ctx, "the script added after the grant", `window.ran.length == 2`)
	time.Sleep(300 * time.Millisecond)
	if got := js[[]string](t, ctx, `window.ran`); strings.Join(got, ",") != "before-choice,after-grant" {
		t.Errorf("ran %v, want before-choice then after-grant, and nothing for marketing", got)
	}
}
