package e2e

// Embedding on real sites: the widget on ordinary host pages served from
// another origin — the Google tag in <head>, a strict nonce-based CSP, video
// embeds, two subdomains of one shop, marketing cookies — and what lands in
// the ledger, in dataLayer and in the browser's cookie jar as a result.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/assent/assent/store"
)

// googleTag is the standard Google tag snippet, without the gtag.js loader
// (there is no network here; the dataLayer is what it would read).
const googleTag = `<script>
window.dataLayer = window.dataLayer || [];
function gtag(){dataLayer.push(arguments);}
gtag('js', new Date());
gtag('config', 'G-TEST12345');
</script>`

// layer names the dataLayer's entries: "consent default", "js", "config", …
const layer = `dataLayer.map(a => a[0] == 'consent' ? 'consent ' + a[1] : String(a[0]))`

func index(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// With the stub before the Google tag and the async widget, `consent
// default` is the first entry of dataLayer, before `config`; the widget does
// not send a second default; each choice sends an update; a returning
// visitor's choice is in dataLayer before `config` too. Without the stub the
// default comes after `config` (what the README warns about).
func TestEmbedConsentModeStubComesFirst(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(widgetSite("shop"))
	head := `<script src="` + e.api + `/w/shop/consent-mode.js"></script>
<script src="` + e.api + `/w/shop.js" async></script>` + googleTag
	page := e.host.page("/", `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>`+head+`</head><body><h1>Shop</h1></body></html>`)
	e.setVisitor(ipGermany)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)

	got := js[[]string](t, ctx, layer)
	if len(got) < 3 || got[0] != "consent default" || index(got, "config") < index(got, "consent default") {
		t.Fatalf("dataLayer %v: want consent default first, before config", got)
	}
	if n := strings.Count(strings.Join(got, ","), "consent default"); n != 1 {
		t.Errorf("dataLayer %v has %d defaults, want the stub's alone", got, n)
	}
	def := js[map[string]any](t, ctx, `dataLayer[0][2]`)
	if def["ad_storage"] != "denied" || def["analytics_storage"] != "denied" || def["wait_for_update"] != float64(500) {
		t.Errorf("default %v: want everything denied, wait_for_update 500", def)
	}

	click(t, ctx, `[data-assent-action="accept-all"]`)
	until(t, ctx, "the update after Accept all", `dataLayer.some(a => a[0] == 'consent' && a[1] == 'update' && a[2].ad_storage == 'granted')`)
	e.waitRecords("shop", 1)
	until(t, ctx, "the choice remembered", `assent.get() && assent.get().id`)

	// A returning visitor: the stub restores the choice before config runs.
	do(t, ctx, chromedp.Reload())
	until(t, ctx, "the widget", `window.assent && assent.get()`)
	got = js[[]string](t, ctx, layer)
	if got[0] != "consent default" || got[1] != "consent update" || index(got, "config") < 2 {
		t.Errorf("returning visitor: dataLayer %v, want default, then the remembered update, then config", got)
	}
	if s := js[map[string]any](t, ctx, `dataLayer[1][2]`); s["ad_storage"] != "granted" || s["analytics_storage"] != "granted" {
		t.Errorf("returning visitor: first update %v, want the granted choice", s)
	}
	js[any](t, ctx, `assent.withdraw('marketing')`)
	until(t, ctx, "the update after the withdrawal", `(u => u[2].ad_storage == 'denied' && u[2].analytics_storage == 'granted')(dataLayer.filter(a => a[0] == 'consent').pop())`)

	// The same page without the stub, for a new visitor.
	bare := e.host.page("/bare", `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script src="`+e.api+`/w/shop.js" async></script>`+googleTag+`</head><body><h1>Shop</h1></body></html>`)
	ctx2 := browser(t)
	do(t, ctx2, chromedp.Navigate(bare))
	dialogShown(t, ctx2)
	got = js[[]string](t, ctx2, layer)
	if index(got, "consent default") < index(got, "config") {
		t.Errorf("without the stub: dataLayer %v; the README says the default comes after config then", got)
	}
}

// Under a nonce-based Content-Security-Policy the gated scripts (inline and
// with src) that the widget activates after consent carry the nonce of
// Assent's script tag and run; a page script without the nonce is blocked,
// so the policy is really enforced.
func TestEmbedStrictCSPNonce(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(widgetSite("shop"))
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, "window.ran = (window.ran || []).concat('src')")
	}))
	t.Cleanup(cdn.Close)
	const nonce = "cj9Qm2VtZ4xK1pLr"
	csp := "default-src 'none'; script-src 'nonce-" + nonce + "'; connect-src " + e.api + "; style-src 'self'; base-uri 'none'"
	html := `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Strict shop</title>
<script nonce="` + nonce + `">window.violations = []; document.addEventListener('securitypolicyviolation', e => violations.push(e.violatedDirective + ' ' + e.blockedURI))</script>
</head><body><h1>Strict shop</h1>
<script>window.unnonced = true</script>
<script type="text/plain" data-assent="analytics" src="` + cdn.URL + `/stats.js"></script>
<script type="text/plain" data-assent="analytics">window.ran = (window.ran || []).concat('inline')</script>
<script src="` + e.api + `/w/shop.js" nonce="` + nonce + `" async></script>
</body></html>`
	page := e.host.pageWithHeaders("/", html, http.Header{"Content-Security-Policy": {csp}})
	e.setVisitor(ipGermany)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)
	if js[bool](t, ctx, `!!window.unnonced`) {
		t.Fatal("a script without the nonce ran: the CSP is not in force")
	}
	if got := js[string](t, ctx, `document.querySelector('script[src*="/w/"]').getAttribute('nonce')`); got != "" {
		t.Errorf("the nonce attribute reads %q: browsers hide it, the widget must read the property", got)
	}
	click(t, ctx, `[data-assent-action="accept-all"]`)
	until(t, ctx, "both gated scripts under the CSP", `window.ran && window.ran.length == 2`)
	if got := js[[]string](t, ctx, `window.ran`); strings.Join(got, ",") != "src,inline" {
		t.Errorf("ran %v, want src then inline", got)
	}
	e.waitRecords("shop", 1)
	for _, v := range js[[]string](t, ctx, `violations`) {
		if !strings.HasSuffix(v, " inline") || strings.Contains(v, cdn.URL) {
			t.Errorf("CSP violation %q: only the page's own unnonced script should be blocked", v)
		}
	}
}

// A gated iframe shows, in the visitor's language, what it is waiting for
// and where it comes from, with a real button that grants that purpose (a
// record like any choice) and loads it.
func TestEmbedPlaceholder(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(widgetSite("shop"))
	de := builtinTexts(t, "de")
	video := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>Video</title><h1>Video</h1>`)
	}))
	t.Cleanup(video.Close)
	videoHost, _ := url.Parse(video.URL)
	src := video.URL + "/embed/42"
	page := e.host.page("/", e.embed("shop", "de", `<iframe data-assent="marketing" data-src="`+src+`" title="Produktvideo" width="560" height="315"></iframe>`))
	e.setVisitor(ipGermany)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)
	const ph = `document.querySelector('assent-placeholder')`
	until(t, ctx, "the placeholder", ph)

	label := txt(de, "purposes", "marketing", "label")
	wantText := strings.NewReplacer("{host}", videoHost.Hostname(), "{purpose}", label).Replace(txt(de, "embed", "text"))
	wantButton := strings.ReplaceAll(txt(de, "embed", "load"), "{purpose}", label)
	seen := js[map[string]any](t, ctx, `(p => ({
		text: p.shadowRoot.querySelector('p').textContent,
		button: p.shadowRoot.querySelector('button').textContent,
		buttonTag: p.shadowRoot.querySelector('button').type,
		group: p.shadowRoot.querySelector('[role=group]').getAttribute('aria-label'),
		title: p.shadowRoot.querySelector('strong').textContent,
		w: p.getBoundingClientRect().width, h: p.getBoundingClientRect().height,
		iframeShown: document.querySelector('iframe').getBoundingClientRect().height > 0,
		iframeSrc: document.querySelector('iframe').src}))(`+ph+`)`)
	if seen["text"] != wantText || seen["button"] != wantButton || seen["buttonTag"] != "button" {
		t.Errorf("placeholder says %q with button %q (%v), want %q and %q", seen["text"], seen["button"], seen["buttonTag"], wantText, wantButton)
	}
	if seen["group"] != "Produktvideo" || seen["title"] != "Produktvideo" {
		t.Errorf("placeholder is labelled %q, titled %q; want the iframe's title", seen["group"], seen["title"])
	}
	if seen["w"].(float64) < 560 || seen["h"].(float64) < 315 {
		t.Errorf("placeholder is %vx%v, want the iframe's 560x315 and its border", seen["w"], seen["h"])
	}
	if seen["iframeShown"] != false || seen["iframeSrc"] != "" {
		t.Errorf("the iframe shows (%v) or loads (%q) before consent", seen["iframeShown"], seen["iframeSrc"])
	}
	pageAxe(t, ctx, "a page with a placeholder")

	do(t, ctx, chromedp.Click(chromedp.JSPath(ph+`.shadowRoot.querySelector('button')`)))
	until(t, ctx, "the video loaded", `document.querySelector('iframe').src && !`+ph)
	if got := js[string](t, ctx, `document.querySelector('iframe').src`); got != src {
		t.Errorf("iframe src %q, want %q", got, src)
	}
	if r := js[map[string]float64](t, ctx, `(r => ({w: r.width, h: r.height}))(document.querySelector('iframe').getBoundingClientRect())`); r["w"] != seen["w"] || r["h"] != seen["h"] {
		t.Errorf("the loaded iframe is %vx%v where the placeholder was %vx%v: the page moved", r["w"], r["h"], seen["w"], seen["h"])
	}
	recs := e.waitRecords("shop", 1)
	checkRecord(t, recs[0], "partial", "embed", "opt-in", map[string]string{"marketing": "granted", "analytics": "denied"})
	until(t, ctx, "the banner closed", `!`+root+`.querySelector('[role=dialog]')`)
	until(t, ctx, "the choice remembered", `assent.get() && assent.get().id`)

	// Next page view: the video loads at once, with no placeholder.
	do(t, ctx, chromedp.Reload())
	until(t, ctx, "the video on the next page view", `document.querySelector('iframe').src`)
	if js[bool](t, ctx, `!!`+ph) {
		t.Error("a placeholder on the next page view although marketing is granted")
	}
	// Withdrawn, the video waits behind its placeholder again from the next page view.
	js[any](t, ctx, `assent.withdraw('marketing')`)
	e.waitRecords("shop", 2)
	until(t, ctx, "the withdrawal remembered", `assent.get() && assent.get().id && !assent.get().choices.marketing`)
	do(t, ctx, chromedp.Reload())
	until(t, ctx, "the placeholder for a returning visitor who withdrew", ph+` && `+ph+`.shadowRoot.querySelector('button')`)
	if js[string](t, ctx, `document.querySelector('iframe').src`) != "" {
		t.Error("the video loaded after the withdrawal")
	}
}

// pageAxe runs axe-core's WCAG 2.x A/AA rules on the page, into the
// widget's shadow roots, and fails on any violation.
func pageAxe(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "widget", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatalf("axe-core is missing: run `make widget-deps` (make test does): %v", err)
	}
	js[any](t, ctx, string(src))
	for _, v := range js[[]string](t, ctx, `axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})
		.then(r => r.violations.map(v => v.id + ': ' + v.help + ' ' + v.nodes.map(n => JSON.stringify(n.target)).join(' ')))`) {
		t.Errorf("%s: axe %s", what, v)
	}
}

// subdomains starts a browser that resolves *.shop.example and shop.example
// to loopback, and returns the host site's URL on the given host name.
func subdomains(t *testing.T, e *env) (context.Context, func(host string) string) {
	u, _ := url.Parse(e.host.origin)
	ctx := browser(t, chromedp.Flag("host-resolver-rules", "MAP *.shop.example 127.0.0.1, MAP shop.example 127.0.0.1"))
	return ctx, func(host string) string { return "http://" + host + ":" + u.Port() }
}

// One choice across subdomains: a wildcard origin and cookie_domain let
// www. and blog. share the visitor's choice (asked once); a withdrawal on
// the other subdomain is a withdrawal of the first choice. The apex, which
// the wildcard does not cover, is refused, and the admin sees it counted.
func TestEmbedOneChoiceAcrossSubdomains(t *testing.T) {
	e := newEnv(t, envOptions{})
	port := e.host.origin[strings.LastIndex(e.host.origin, ":")+1:]
	s := widgetSite("shop")
	s.Origins = []string{"http://*.shop.example:" + port}
	s.CookieDomain = "shop.example"
	e.site(s)
	e.host.page("/", e.embed("shop", "en", `<script type="text/plain" data-assent="analytics">window.ran = true</script>`))
	e.setVisitor(ipGermany)
	ctx, at := subdomains(t, e)

	do(t, ctx, chromedp.Navigate(at("www.shop.example")+"/"))
	dialogShown(t, ctx)
	click(t, ctx, `[data-assent-action="accept-all"]`)
	first := e.waitRecords("shop", 1)[0]
	checkRecord(t, first, "grant", "banner", "opt-in", nil)
	until(t, ctx, "the choice remembered", `assent.get() && assent.get().id`)

	do(t, ctx, chromedp.Navigate(at("blog.shop.example")+"/"))
	until(t, ctx, "the settings control on blog.", `document.querySelector('#assent') && `+root+`.querySelector('.ps')`)
	if js[bool](t, ctx, `!!`+root+`.querySelector('[role=dialog]')`) {
		t.Fatal("blog.shop.example asked again although www.shop.example has the choice")
	}
	until(t, ctx, "the gated script on blog.", `window.ran`)
	if got := js[string](t, ctx, `assent.get().id`); got != first.ID {
		t.Errorf("blog. reports choice %q, want www.'s %s", got, first.ID)
	}
	js[any](t, ctx, `assent.withdraw('marketing')`)
	recs := e.waitRecords("shop", 2)
	checkRecord(t, recs[1], "withdraw", "preferences", "opt-in", map[string]string{"analytics": "granted", "marketing": "denied"})
	if !strings.HasPrefix(recs[1].PageURL, at("blog.shop.example")) || recs[1].VisitorID != first.VisitorID {
		t.Errorf("withdrawal from %s by %s, want blog. and the same visitor %s", recs[1].PageURL, recs[1].VisitorID, first.VisitorID)
	}

	// The apex is not in *.shop.example: a new visitor there is refused.
	ctx2, _ := subdomains(t, e)
	apex := at("shop.example")
	for i := 0; i < 2; i++ {
		do(t, ctx2, chromedp.Navigate(apex+"/"))
		dialogShown(t, ctx2)
		js[any](t, ctx2, `assent.on('change', () => window.settled = true)`)
		click(t, ctx2, `[data-assent-action="reject-all"]`)
		// The change event follows the write's answer; the refusal leaves no record id.
		until(t, ctx2, "the refused write settled", `window.settled`)
		if js[bool](t, ctx2, `!!assent.get().id`) {
			t.Error("a write from the apex was stored")
		}
	}
	var list struct {
		Origins []struct {
			Origin string `json:"origin"`
			Count  int    `json:"count"`
		} `json:"origins"`
	}
	if code := e.adminJSON(http.MethodGet, "/v1/admin/sites/shop/rejected-origins", nil, &list); code != http.StatusOK {
		t.Fatalf("rejected-origins: %d", code)
	}
	if len(list.Origins) != 1 || list.Origins[0].Origin != apex || list.Origins[0].Count < 2 {
		t.Errorf("rejected origins %+v, want %s refused at least twice", list.Origins, apex)
	}
	if n := len(e.records("shop")); n != 2 {
		t.Errorf("%d records, want 2: nothing from the apex", n)
	}

	// The admin console says so too.
	do(t, ctx, chromedp.Navigate(e.api+"/admin/"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), e.token+"\r"), consoleWait(`!document.getElementById('nav').hidden`),
		chromedp.Click(chromedp.JSPath(`document.querySelector('#nav a[href="#origins"]')`)),
		consoleWait(`document.querySelectorAll('#origins-table tbody tr').length == 1`))
	row := js[[]string](t, ctx, `[...document.querySelectorAll('#origins-table tbody td')].map(td => td.textContent)`)
	if len(row) < 2 || row[0] != apex || row[1] != fmt.Sprint(list.Origins[0].Count) {
		t.Errorf("console's refused origins row %v, want %s refused %d times", row, apex, list.Origins[0].Count)
	}
	if msg := consoleText(t, ctx, "origins-msg"); !strings.Contains(msg, apex+" was refused "+fmt.Sprint(list.Origins[0].Count)+" times") {
		t.Errorf("console says %q", msg)
	}
	consoleAxe(t, ctx, "the console's refused origins")
}

// A purpose's cookies are deleted when it is refused or withdrawn — the
// host-only ones and those on the shared domain — and no others; each
// withdrawal from the settings is a withdraw record, counted so in the
// summary behind the charts.
func TestEmbedCookiesClearedOnWithdrawal(t *testing.T) {
	e := newEnv(t, envOptions{})
	port := e.host.origin[strings.LastIndex(e.host.origin, ":")+1:]
	s := widgetSite("shop")
	s.Origins = []string{"http://*.shop.example:" + port}
	s.CookieDomain = "shop.example"
	s.Purposes[1].Cookies = []string{"_ga", "_ga_*"}
	s.Purposes[2].Cookies = []string{"_fbp"}
	e.site(s)
	e.host.page("/", e.embed("shop", "en", `<script>document.cookie = 'keep=1; path=/'</script>
<script type="text/plain" data-assent="analytics">
document.cookie = '_ga=GA1.1; domain=shop.example; path=/'
document.cookie = '_ga_XYZ=GS1.1; path=/'
window.analytics = true
</script>
<script type="text/plain" data-assent="marketing">document.cookie = '_fbp=fb.1; domain=shop.example; path=/'</script>`))
	e.setVisitor(ipGermany)
	ctx, at := subdomains(t, e)
	cookies := func() string {
		return js[string](t, ctx, `document.cookie.split('; ').map(c => c.split('=')[0]).filter(n => !n.startsWith('assent_')).sort().join(' ')`)
	}

	do(t, ctx, chromedp.Navigate(at("www.shop.example")+"/"))
	dialogShown(t, ctx)
	click(t, ctx, `[data-assent-action="accept-all"]`)
	until(t, ctx, "the analytics cookies", `document.cookie.includes('_ga_XYZ') && document.cookie.includes('_fbp')`)
	if got := cookies(); got != "_fbp _ga _ga_XYZ keep" {
		t.Fatalf("after Accept all the cookies are %q", got)
	}
	e.waitRecords("shop", 1)
	until(t, ctx, "the choice remembered", `assent.get() && assent.get().id`)

	// Withdraw analytics in the settings: untick, save.
	js[any](t, ctx, `assent.open()`)
	dialogShown(t, ctx)
	click(t, ctx, `[data-assent-purpose="analytics"]`)
	click(t, ctx, `[data-assent-action="save"]`)
	recs := e.waitRecords("shop", 2)
	checkRecord(t, recs[1], "withdraw", "preferences", "opt-in", map[string]string{"analytics": "denied", "marketing": "granted"})
	if got := cookies(); got != "_fbp keep" {
		t.Errorf("after withdrawing analytics the cookies are %q, want _fbp keep", got)
	}
	// The shared-domain cookie is gone on the other subdomain too.
	do(t, ctx, chromedp.Navigate(at("blog.shop.example")+"/"))
	until(t, ctx, "the settings control on blog.", `document.querySelector('#assent') && `+root+`.querySelector('.ps')`)
	if got := cookies(); got != "_fbp keep" {
		t.Errorf("on blog. the cookies are %q, want _fbp keep", got)
	}
	if js[bool](t, ctx, `!!window.analytics`) {
		t.Error("the withdrawn analytics script ran on blog.")
	}
	// Reject all in the settings withdraws marketing too.
	until(t, ctx, "the choice", `assent.get() && assent.get().id`)
	js[any](t, ctx, `assent.open()`)
	dialogShown(t, ctx)
	click(t, ctx, `[data-assent-action="reject-all"]`)
	recs = e.waitRecords("shop", 3)
	checkRecord(t, recs[2], "withdraw", "preferences", "opt-in", map[string]string{"analytics": "denied", "marketing": "denied"})
	until(t, ctx, "the marketing cookie deleted", `!document.cookie.includes('_fbp')`)
	if got := cookies(); got != "keep" {
		t.Errorf("after Reject all the cookies are %q, want keep alone", got)
	}

	var sum struct {
		Events map[string]int `json:"events"`
		Days   []struct {
			Withdraw int `json:"withdraw"`
		} `json:"days"`
	}
	if code := e.adminJSON(http.MethodGet, "/v1/admin/sites/shop/consents?format=summary", nil, &sum); code != http.StatusOK {
		t.Fatalf("summary: %d", code)
	}
	if sum.Events["withdraw"] != 2 || sum.Events["grant"] != 1 {
		t.Errorf("summary events %v, want 1 grant and 2 withdraw", sum.Events)
	}
}

// The scroll-depth trigger opens the signup popup once the visitor has
// scrolled the configured share of the page, and not before.
func TestEmbedScrollDepthTrigger(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := widgetSite("shop")
	s.SignupTriggers.ScrollPercent = 50
	e.site(s)
	body := strings.Repeat(`<p>Our shop sells tea, coffee and the cups to drink them from.</p>`, 200)
	page := e.host.page("/", e.embed("shop", "en", body))
	e.setVisitor(ipUS)
	ctx := browser(t)
	do(t, ctx, chromedp.Navigate(page))
	dialogShown(t, ctx)
	click(t, ctx, `[data-assent-action="accept-all"]`)
	until(t, ctx, "the notice closed", `!`+root+`.querySelector('[role=dialog]')`)
	scroll := func(share float64) {
		t.Helper()
		// Resolves on the scroll event, after the widget's own listener.
		js[any](t, ctx, fmt.Sprintf(`new Promise(ok => { addEventListener('scroll', () => requestAnimationFrame(ok), {once: true}); scrollTo(0, %f * (document.documentElement.scrollHeight - innerHeight)) })`, share))
	}
	scroll(0.3)
	if js[bool](t, ctx, `!!`+root+`.querySelector('[role=dialog]')`) {
		t.Fatal("the signup popup opened at 30% of the page, before the 50% configured")
	}
	scroll(0.6)
	until(t, ctx, "the signup popup at 60%", `(d => d && d.querySelector('input[name=email]'))(`+root+`.querySelector('[role=dialog]'))`)
	var out store.Site
	e.adminJSON(http.MethodGet, "/v1/admin/sites/shop", nil, &out)
	if out.SignupTriggers.ScrollPercent != 50 {
		t.Errorf("stored scroll_percent %d", out.SignupTriggers.ScrollPercent)
	}
}
