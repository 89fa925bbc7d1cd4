// Package e2e holds whole-system tests: the real server on a loopback port,
// a real ledger file, the real country database and the real widget built by
// esbuild, driven in a real headless Chromium with chromedp.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/server"
	"github.com/assent/assent/store"
)

// Real addresses in the default database; env.setVisitor makes the proxy in
// front of the server report them as the browser's.
const (
	ipGermany = "85.214.132.117"
	ipUS      = "8.8.8.8"
)

// geoDB is the real default country database that `make geodb` fetches.
func geoDB(t testing.TB) string {
	p := os.Getenv("ASSENT_TEST_GEOIP")
	if p == "" {
		p = filepath.Join("..", "data", "geo-whois-asn-country.mmdb")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("country database %s is missing: run `make geodb` (make test does): %v", p, err)
	}
	return p
}

// env is one running Assent: server, ledger file, and a host site on
// another origin that embeds the widget as a site owner would.
type env struct {
	t      testing.TB
	st     *store.Store
	srv    *server.Server
	api    string // the Assent server's base URL
	token  string
	host   *hostSite
	dbPath string
	// visitor is the address the trusted proxy in front of the server says
	// the browser has, set with setVisitor.
	visitor atomic.Value
}

// setVisitor makes every later request look as if it came from ip, as a
// CDN or load balancer in front of Assent would report it.
func (e *env) setVisitor(ip string) { e.visitor.Store(ip) }

// proxy is a reverse proxy on loopback in front of the server, as a real
// deployment has: it sets X-Forwarded-For to the visitor's address, and the
// server trusts loopback as a proxy. Browsers talk to the proxy.
func (e *env) proxy(t testing.TB, target string) string {
	u, _ := url.Parse(target)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
			if ip, _ := e.visitor.Load().(string); ip != "" {
				r.Out.Header.Set("X-Forwarded-For", ip)
			}
		},
	}
	ps := httptest.NewServer(rp)
	t.Cleanup(ps.Close)
	return ps.URL
}

type envOptions struct {
	rateLimit float64
	demo      bool
	// webhooks: webhook endpoints on loopback allowed, and this retry
	// schedule (nil = the real one)
	webhooks        bool
	webhookSchedule []time.Duration
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "assent.db")
	st, err := store.Open(dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	loc, err := geo.Open(geoDB(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		RateLimit:      opts.rateLimit,
		Demo:           opts.demo,

		WebhookAllowPrivate: opts.webhooks,
		WebhookSchedule:     opts.webhookSchedule,
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(cfg, store.Bolt(st), loc, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	tok, err := st.CreateToken("e2e")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, srv: srv, token: tok, host: newHostSite(t), dbPath: dbPath}
	e.visitor.Store("")
	e.api = e.proxy(t, "http://"+ln.Addr().String())
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
		loc.Close()
	})
	return e
}

// site creates a site whose allowed origin is the host site.
func (e *env) site(s store.Site) store.Site {
	e.t.Helper()
	if s.Origins == nil {
		s.Origins = []string{e.host.origin}
	}
	var out store.Site
	if code := e.adminJSON(http.MethodPost, "/v1/admin/sites", s, &out); code != http.StatusCreated {
		e.t.Fatalf("create site: status %d", code)
	}
	return out
}

// adminJSON calls the admin API with the token and decodes a JSON answer.
func (e *env) adminJSON(method, path string, body, out any) int {
	e.t.Helper()
	resp := e.admin(method, path, body)
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil && resp.StatusCode < 300 {
			e.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func (e *env) admin(method, path string, body any) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.api+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// records returns every record of a site, read back from the ledger file
// through the JSON Lines export.
func (e *env) records(site string) []store.Record {
	e.t.Helper()
	resp := e.admin(http.MethodGet, "/v1/admin/sites/"+site+"/consents?format=jsonl", nil)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("export: status %d", resp.StatusCode)
	}
	var out []store.Record
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var r store.Record
		if err := dec.Decode(&r); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// waitRecords polls until the site has n records (a click's write is
// asynchronous in the page), failing after a few seconds.
func (e *env) waitRecords(site string, n int) []store.Record {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs := e.records(site)
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) != n {
				e.t.Fatalf("site %s has %d records, want %d", site, len(recs), n)
			}
			return recs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hostSite is a web site on its own origin (another port than Assent's)
// serving pages that embed the widget.
type hostSite struct {
	origin  string
	mu      sync.Mutex
	pages   map[string]string
	headers map[string]http.Header // per path, such as a Content-Security-Policy
}

func newHostSite(t testing.TB) *hostSite {
	h := &hostSite{pages: map[string]string{}, headers: map[string]http.Header{}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		page, ok := h.pages[r.URL.Path]
		hdr := h.headers[r.URL.Path]
		h.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	}))
	t.Cleanup(ts.Close)
	h.origin = ts.URL
	return h
}

// page serves html at path and returns its URL.
func (h *hostSite) page(path, html string) string {
	h.mu.Lock()
	h.pages[path] = html
	h.mu.Unlock()
	return h.origin + path
}

// pageWithHeaders serves html at path with extra response headers.
func (h *hostSite) pageWithHeaders(path, html string, hdr http.Header) string {
	h.mu.Lock()
	h.headers[path] = hdr
	h.mu.Unlock()
	return h.page(path, html)
}

// embed is a host page with the one script tag a site owner pastes.
func (e *env) embed(site, lang, body string) string {
	return `<!doctype html><html lang="` + lang + `"><head><meta charset="utf-8"><title>Host shop</title></head><body>
<h1>Host shop</h1><p>Welcome.</p>` + body + `
<script src="` + e.api + `/w/` + site + `.js" async></script></body></html>`
}

// chromium is the browser binary: Debian's package, which `make test`
// installs when it is missing.
func chromium(t testing.TB) string {
	for _, p := range []string{os.Getenv("ASSENT_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatal("chromium is missing: run `make chromium` (make test does)")
	return ""
}

// browser starts a fresh headless Chromium (its own empty profile) and
// returns a tab context that has run once, so callers use chromedp.Do or
// chromedp.Run on it (chromedp v0.23's generic API). Options add flags such
// as a language. Every step is bounded by the 90-second context.
func browser(t testing.TB, opts ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	all := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),
	}, opts...)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), all...)
	ctx, cancel := chromedp.NewContext(actx)
	// The first Run starts the browser; it must not carry a timeout, or the
	// timeout would stop the whole browser.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		acancel()
		t.Fatalf("start chromium: %v", err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { tcancel(); cancel(); acancel() })
	return tctx
}

// shadow selects an element inside the widget's shadow root.
func shadow(selector string) chromedp.JSPath {
	b, _ := json.Marshal(selector)
	return chromedp.JSPath(`document.querySelector('#assent').shadowRoot.querySelector(` + string(b) + `)`)
}
