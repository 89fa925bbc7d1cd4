package server

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/assent/assent/store"
)

func consentBody(choices map[string]bool) map[string]any {
	return map[string]any{"visitor_id": "v_test1", "choices": choices, "locale": "en", "page_url": "https://shop.example/cart"}
}

var fromShop = map[string]string{"Origin": shopOrigin, "X-Forwarded-For": ipDE}

func TestConsentIsStoredWithWhatTheServerDecided(t *testing.T) {
	ts := newTestServer(t, nil)
	resp := ts.do(http.MethodPost, "/v1/sites/shop/consents", consentBody(map[string]bool{"analytics": true}),
		map[string]string{"Origin": shopOrigin, "X-Forwarded-For": ipDE, "User-Agent": "TestAgent/1.0", "Sec-GPC": "1", "DNT": "1"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, resp.body)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != shopOrigin {
		t.Errorf("Access-Control-Allow-Origin = %q, want the allowed origin echoed", got)
	}
	var w writeResponse
	if err := json.Unmarshal(resp.body, &w); err != nil {
		t.Fatal(err)
	}
	if w.ID == "" || w.Regime != "opt-in" || w.Country != "DE" || strings.Count(w.Receipt, ".") != 2 || w.UnsubscribeURL != "" {
		t.Errorf("response = %+v", w)
	}
	var recs []store.Record
	ts.st.Records("shop", store.Query{}, func(r store.Record) error { recs = append(recs, r); return nil })
	if len(recs) != 1 {
		t.Fatalf("%d records stored, want 1", len(recs))
	}
	r := recs[0]
	checks := []struct{ name, got, want string }{
		{"id", r.ID, w.ID},
		{"event", r.Event, "partial"},
		{"source", r.Source, "banner"},
		{"basis", r.Basis, "explicit"},
		{"country", r.Country, "DE"},
		{"regime", r.Regime, "opt-in"},
		{"ip", r.IP, "85.214.132.0"},
		{"user_agent", r.UserAgent, "TestAgent/1.0"},
		{"visitor_id", r.VisitorID, "v_test1"},
		{"page_url", r.PageURL, "https://shop.example/cart"},
		{"necessary", r.Choices["necessary"], "granted"},
		{"analytics", r.Choices["analytics"], "granted"},
		{"marketing", r.Choices["marketing"], "denied"},
		{"notice_version", r.NoticeVersion, "1"},
		{"widget_build", r.WidgetBuild, ts.srv.WidgetBuild()},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if !r.GPC || !r.DNT || r.GeoDB == "" || !strings.HasPrefix(r.NoticeHash, "sha256:") || r.Hash == "" {
		t.Errorf("gpc %t dnt %t geo_db %q notice_hash %q hash %q", r.GPC, r.DNT, r.GeoDB, r.NoticeHash, r.Hash)
	}
	notice, err := ts.st.Notice(r.NoticeHash)
	if err != nil || !strings.Contains(string(notice), `"texts"`) {
		t.Errorf("the notice shown is not stored: %v %s", err, notice)
	}
	// The admin reads the exact notice a record cites, and it hashes to it.
	auth := map[string]string{"Authorization": "Bearer " + ts.token}
	got := ts.do(http.MethodGet, "/v1/admin/notices/"+r.NoticeHash, nil, auth)
	if got.StatusCode != 200 || noticeHash(got.body) != r.NoticeHash {
		t.Errorf("GET notice: %d, hash %s, want %s", got.StatusCode, noticeHash(got.body), r.NoticeHash)
	}
	for path, code := range map[string]int{"sha256:" + strings.Repeat("0", 64): 404, "md5:abc": 400, "sha256:zz": 400} {
		if resp := ts.do(http.MethodGet, "/v1/admin/notices/"+path, nil, auth); resp.StatusCode != code {
			t.Errorf("notice %s: %d, want %d", path, resp.StatusCode, code)
		}
	}
}

func TestGPCDeniesAdPurposesInEveryRegime(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, ip := range []string{ipDE, ipUS} {
		resp := ts.do(http.MethodPost, "/v1/sites/shop/consents", consentBody(map[string]bool{"analytics": true, "marketing": true}),
			map[string]string{"X-Forwarded-For": ip, "Sec-GPC": "1"})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%s: %d %s", ip, resp.StatusCode, resp.body)
		}
	}
	ts.st.Records("shop", store.Query{}, func(r store.Record) error {
		if r.Choices["marketing"] != "denied" || r.Choices["analytics"] != "granted" || !r.GPC {
			t.Errorf("%s: choices %v gpc %t; GPC must deny the ad_* purpose only", r.Regime, r.Choices, r.GPC)
		}
		return nil
	})
}

// TestSignupLinksNeverComeFromHost: a forged Host never reaches a link;
// without --public-url a signup has no unsubscribe_url at all.
func TestSignupLinksNeverComeFromHost(t *testing.T) {
	const public = "https://consent.example.com"
	forged := map[string]string{"Origin": shopOrigin, "X-Forwarded-For": ipUS, "Host": "evil.example"}
	for _, pub := range []string{public + "/", ""} {
		ts := newTestServer(t, &Config{PublicURL: pub, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
		b := consentBody(map[string]bool{"newsletter": true})
		b["email"], b["visitor_id"] = "ann@example.com", "v_ann"
		resp := ts.do(http.MethodPost, "/v1/sites/shop/signups", b, forged)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("public url %q: signup: %d %s", pub, resp.StatusCode, resp.body)
		}
		if strings.Contains(string(resp.body), "evil.example") {
			t.Errorf("public url %q: a link from the forged Host: %s", pub, resp.body)
		}
		var w map[string]any
		if err := json.Unmarshal(resp.body, &w); err != nil {
			t.Fatal(err)
		}
		u, has := w["unsubscribe_url"].(string)
		switch {
		case pub != "" && !strings.HasPrefix(u, public+"/u/"):
			t.Errorf("unsubscribe_url = %q, want it under %s/u/", u, public)
		case pub == "" && has:
			t.Errorf("without a public URL: unsubscribe_url = %q, want none: %s", u, resp.body)
		}
	}
}

func TestSignup(t *testing.T) {
	ts := newTestServer(t, nil).publicAtOwnURL()
	body := func(email string, newsletter bool) map[string]any {
		b := consentBody(map[string]bool{"newsletter": newsletter})
		b["email"], b["visitor_id"] = email, "v_"+strings.ToLower(strings.TrimSpace(email))
		return b
	}
	// Opt-in: the required purpose must be ticked.
	resp := ts.do(http.MethodPost, "/v1/sites/shop/signups", body("ann@example.com", false), fromShop)
	if resp.StatusCode != http.StatusUnprocessableEntity || resp.errorCode() != "consent_required" {
		t.Fatalf("unticked required purpose: %d %s", resp.StatusCode, resp.body)
	}
	resp = ts.do(http.MethodPost, "/v1/sites/shop/signups", body("  Ann@Example.COM ", true), fromShop)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("signup: %d %s", resp.StatusCode, resp.body)
	}
	var w writeResponse
	json.Unmarshal(resp.body, &w)
	if !strings.HasPrefix(w.UnsubscribeURL, ts.url+"/u/") {
		t.Errorf("unsubscribe_url = %q", w.UnsubscribeURL)
	}
	// Notice regime: recorded granted with basis implied.
	resp = ts.do(http.MethodPost, "/v1/sites/shop/signups", body("bob@example.com", false), map[string]string{"X-Forwarded-For": ipUS})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("notice signup: %d %s", resp.StatusCode, resp.body)
	}
	recs, _, err := ts.st.Subject("ann@example.com")
	if err != nil || len(recs) != 1 || recs[0].Email != "ann@example.com" || recs[0].Source != "signup" || recs[0].Choices["newsletter"] != "granted" {
		t.Fatalf("ann's records: %v %+v", err, recs)
	}
	recs, _, _ = ts.st.Subject("bob@example.com")
	if len(recs) != 1 || recs[0].Basis != "implied" || recs[0].Choices["newsletter"] != "granted" || recs[0].Regime != "notice" {
		t.Fatalf("bob's records: %+v", recs)
	}

	// GET of the unsubscribe page changes nothing; the POST withdraws.
	path := strings.TrimPrefix(w.UnsubscribeURL, ts.url)
	page := ts.do(http.MethodGet, path, nil, nil)
	if page.StatusCode != 200 || !strings.Contains(string(page.body), "Unsubscribe</button>") {
		t.Fatalf("unsubscribe page: %d %s", page.StatusCode, page.body)
	}
	if recs, _, _ := ts.st.Subject("ann@example.com"); len(recs) != 1 {
		t.Fatalf("GET changed the ledger: %d records", len(recs))
	}
	tok := strings.TrimPrefix(path, "/u/")
	resp = ts.do(http.MethodPost, "/v1/unsubscribe", map[string]string{"token": tok}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("unsubscribe: %d %s", resp.StatusCode, resp.body)
	}
	recs, _, _ = ts.st.Subject("ann@example.com")
	if len(recs) != 2 || recs[1].Event != "withdraw" || recs[1].Choices["newsletter"] != "denied" {
		t.Fatalf("after unsubscribe: %+v", recs)
	}
	if bad := ts.do(http.MethodPost, "/v1/unsubscribe", map[string]string{"token": tok + "x"}, nil); bad.StatusCode != http.StatusNotFound {
		t.Errorf("forged token: %d", bad.StatusCode)
	}

	// After erasure a signup of the address is refused, not silently re-added.
	if resp := ts.do(http.MethodDelete, "/v1/admin/subjects?email=ann@example.com", nil, map[string]string{"Authorization": "Bearer " + ts.token}); resp.StatusCode != 200 {
		t.Fatalf("erase: %d %s", resp.StatusCode, resp.body)
	}
	resp = ts.do(http.MethodPost, "/v1/sites/shop/signups", body("ann@example.com", true), fromShop)
	if resp.StatusCode != http.StatusConflict || resp.errorCode() != "suppressed" {
		t.Fatalf("suppressed signup: %d %s", resp.StatusCode, resp.body)
	}
}

// Every bad input gets a clear JSON error, and nothing is stored.
func TestBadWritesAreRefusedAndStoreNothing(t *testing.T) {
	ts := newTestServer(t, nil)
	ok := `{"choices":{"analytics":true}}`
	tests := []struct {
		name    string
		path    string
		body    any
		headers map[string]string
		status  int
		code    string
	}{
		{"unknown site", "/v1/sites/nope/consents", ok, nil, 404, "unknown_site"},
		{"origin not allowed", "/v1/sites/shop/consents", ok, map[string]string{"Origin": "https://evil.example"}, 403, "origin_not_allowed"},
		{"malformed JSON", "/v1/sites/shop/consents", `{"choices":`, nil, 400, "invalid_json"},
		{"not an object", "/v1/sites/shop/consents", `[1,2]`, nil, 400, "invalid_json"},
		{"trailing data", "/v1/sites/shop/consents", ok + `{}`, nil, 400, "invalid_json"},
		{"wrong type", "/v1/sites/shop/consents", `{"choices":{"analytics":"yes"}}`, nil, 400, "invalid_json"},
		{"invalid UTF-8", "/v1/sites/shop/consents", []byte("{\"choices\":{},\"locale\":\"\xff\"}"), nil, 400, "invalid_json"},
		{"missing choices", "/v1/sites/shop/consents", `{}`, nil, 422, "invalid_field"},
		{"unknown purpose", "/v1/sites/shop/consents", `{"choices":{"telemetry":true}}`, nil, 422, "unknown_purpose"},
		{"long visitor id", "/v1/sites/shop/consents", `{"choices":{},"visitor_id":"` + strings.Repeat("v", 65) + `"}`, nil, 422, "invalid_field"},
		{"control char in visitor id", "/v1/sites/shop/consents", `{"choices":{},"visitor_id":"a\nb"}`, nil, 422, "invalid_field"},
		{"bad page url", "/v1/sites/shop/consents", `{"choices":{},"page_url":"javascript:alert(1)"}`, nil, 422, "invalid_field"},
		{"long page url", "/v1/sites/shop/consents", `{"choices":{},"page_url":"https://a.example/` + strings.Repeat("p", 2048) + `"}`, nil, 422, "invalid_field"},
		{"long locale", "/v1/sites/shop/consents", `{"choices":{},"locale":"` + strings.Repeat("x", 36) + `"}`, nil, 422, "invalid_field"},
		{"bad source", "/v1/sites/shop/consents", `{"choices":{},"source":"admin"}`, nil, 422, "invalid_field"},
		{"body too large", "/v1/sites/shop/consents", `{"choices":{},"x":"` + strings.Repeat("a", 17<<10) + `"}`, nil, 413, "body_too_large"},
		{"no email", "/v1/sites/shop/signups", `{"choices":{"newsletter":true}}`, nil, 422, "invalid_email"},
		{"bad email", "/v1/sites/shop/signups", `{"choices":{"newsletter":true},"email":"not-an-address"}`, nil, 422, "invalid_email"},
		{"email with name", "/v1/sites/shop/signups", `{"choices":{"newsletter":true},"email":"Ann <ann@example.com>"}`, nil, 422, "invalid_email"},
		{"email with newline", "/v1/sites/shop/signups", `{"choices":{"newsletter":true},"email":"ann@example.com\r\nBcc: x@example.com"}`, nil, 422, "invalid_email"},
		{"email too long", "/v1/sites/shop/signups", `{"choices":{"newsletter":true},"email":"` + strings.Repeat("a", 250) + `@example.com"}`, nil, 422, "invalid_email"},
		{"name too long", "/v1/sites/shop/signups", `{"choices":{"newsletter":true},"email":"a@example.com","name":"` + strings.Repeat("n", 201) + `"}`, nil, 422, "invalid_field"},
		{"honeypot filled", "/v1/sites/shop/signups", `{"choices":{"newsletter":true},"email":"a@example.com","website":"http://spam.example"}`, nil, 422, "invalid_field"},
		{"unsubscribe garbage", "/v1/unsubscribe", `{"token":"garbage"}`, nil, 404, "invalid_token"},
		{"unsubscribe malformed", "/v1/unsubscribe", `{"token":`, nil, 400, "invalid_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"X-Forwarded-For": ipDE}
			for k, v := range tt.headers {
				h[k] = v
			}
			resp := ts.do(http.MethodPost, tt.path, tt.body, h)
			if resp.StatusCode != tt.status || resp.errorCode() != tt.code {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, resp.body, tt.status, tt.code)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
		})
	}
	if n := ts.count("shop"); n != 0 {
		t.Errorf("%d records stored from bad input", n)
	}
	if resp := ts.do(http.MethodGet, "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("server unhealthy after bad input: %d", resp.StatusCode)
	}
}

func TestPreflight(t *testing.T) {
	ts := newTestServer(t, nil)
	resp := ts.do(http.MethodOptions, "/v1/sites/shop/consents", nil, map[string]string{
		"Origin": shopOrigin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != shopOrigin ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("allowed preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp = ts.do(http.MethodOptions, "/v1/sites/shop/signups", nil, map[string]string{"Origin": "https://evil.example"})
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("refused preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestDecision(t *testing.T) {
	ts := newTestServer(t, nil)
	tests := []struct {
		name, xff, lang, acceptLanguage string
		regime, country, source, locale string
	}{
		{"Germany", ipDE, "de", "", "opt-in", "DE", "geoip", "de"},
		{"US", ipUS, "", "fr-CA,fr;q=0.9,en;q=0.5", "notice", "US", "geoip", "fr"},
		{"private address is unknown and opt-in", "192.168.1.10", "", "", "opt-in", "", "unknown", "en"},
		{"garbage header is unknown and opt-in", "not-an-ip", "xx-YY", "", "opt-in", "", "unknown", "en"},
		{"region tag falls back to its language", ipDE, "de-AT", "", "opt-in", "DE", "geoip", "de"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := ts.do(http.MethodGet, "/v1/sites/shop/decision?lang="+tt.lang, nil,
				map[string]string{"X-Forwarded-For": tt.xff, "Accept-Language": tt.acceptLanguage})
			var d struct {
				Regime, Country, Source, Locale, PolicyVersion string
				Texts                                          map[string]any
			}
			if err := json.Unmarshal(resp.body, &d); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, resp.body)
			}
			if d.Regime != tt.regime || d.Country != tt.country || d.Source != tt.source || d.Locale != tt.locale {
				t.Errorf("got %s/%s/%s/%s, want %s/%s/%s/%s", d.Regime, d.Country, d.Source, d.Locale, tt.regime, tt.country, tt.source, tt.locale)
			}
			if len(d.Texts) == 0 {
				t.Error("no texts")
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("headers %v", resp.Header)
			}
		})
	}
	if resp := ts.do(http.MethodGet, "/v1/sites/nope/decision", nil, nil); resp.StatusCode != 404 || resp.errorCode() != "unknown_site" {
		t.Errorf("unknown site: %d %s", resp.StatusCode, resp.body)
	}
	if resp := ts.do(http.MethodGet, "/v1/sites/shop/decision?lang="+strings.Repeat("x", 40), nil, nil); resp.StatusCode != 400 {
		t.Errorf("over-long lang: %d", resp.StatusCode)
	}
}

// A forged X-Forwarded-For from a peer that is not a trusted proxy changes
// nothing: the decision is the peer's (loopback: unknown, opt-in).
func TestForgedForwardedForIsIgnored(t *testing.T) {
	ts := newTestServer(t, &Config{})
	resp := ts.do(http.MethodGet, "/v1/sites/shop/decision", nil, map[string]string{"X-Forwarded-For": ipUS, "CF-IPCountry": "US"})
	var d struct{ Regime, Country string }
	json.Unmarshal(resp.body, &d)
	if d.Regime != "opt-in" || d.Country != "" {
		t.Errorf("forged header changed the decision: %+v", d)
	}
}

func TestWidgetScript(t *testing.T) {
	ts := newTestServer(t, nil)
	resp := ts.do(http.MethodGet, "/w/shop.js", nil, map[string]string{"Accept-Encoding": "identity"})
	if resp.StatusCode != 200 || !strings.HasPrefix(string(resp.body), "(function(ASSENT_CONFIG){") {
		t.Fatalf("%d %.80s", resp.StatusCode, resp.body)
	}
	if strings.Contains(string(resp.body), shopOrigin) {
		t.Error("the served config leaks the site's origins")
	}
	etag := resp.Header.Get("ETag")
	for k, want := range map[string]string{
		"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*",
		"Cross-Origin-Resource-Policy": "cross-origin", "X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if etag == "" {
		t.Fatal("no ETag")
	}
	if r := ts.do(http.MethodGet, "/w/shop.js", nil, map[string]string{"If-None-Match": etag}); r.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", r.StatusCode)
	}
	for _, enc := range []string{"gzip", "br"} {
		r := ts.do(http.MethodGet, "/w/shop.js", nil, map[string]string{"Accept-Encoding": enc})
		if r.Header.Get("Content-Encoding") != enc || len(r.body) >= len(resp.body) {
			t.Errorf("%s: Content-Encoding %q, %d bytes of %d", enc, r.Header.Get("Content-Encoding"), len(r.body), len(resp.body))
		}
	}
	for _, p := range []string{"/w/nope.js", "/w/shop", "/w/shop.css"} {
		if r := ts.do(http.MethodGet, p, nil, nil); r.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, r.StatusCode)
		}
	}
}

func TestRateLimit(t *testing.T) {
	ts := newTestServer(t, &Config{RateLimit: 1})
	var last response
	for i := 0; i < 10; i++ {
		last = ts.do(http.MethodPost, "/v1/sites/shop/consents", `{"choices":{}}`, nil)
		if last.StatusCode == http.StatusTooManyRequests {
			break
		}
	}
	if last.StatusCode != http.StatusTooManyRequests || last.errorCode() != "rate_limited" || last.Header.Get("Retry-After") == "" {
		t.Fatalf("after a burst: %d %s Retry-After %q", last.StatusCode, last.body, last.Header.Get("Retry-After"))
	}
}

func TestAdminNeedsAToken(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, h := range []map[string]string{nil, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + ts.token}, {"Authorization": "Bearer"}} {
		resp := ts.do(http.MethodGet, "/v1/admin/sites/shop/consents", nil, h)
		if resp.StatusCode != http.StatusUnauthorized || resp.errorCode() != "unauthorized" {
			t.Errorf("%v: %d %s", h, resp.StatusCode, resp.body)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("admin answer may be cached: %q", resp.Header.Get("Cache-Control"))
		}
	}
}

func TestHealthAndKeys(t *testing.T) {
	ts := newTestServer(t, nil)
	if r := ts.do(http.MethodGet, "/healthz", nil, nil); r.StatusCode != 200 || !strings.Contains(string(r.body), `"ok"`) {
		t.Errorf("healthz: %d %s", r.StatusCode, r.body)
	}
	r := ts.do(http.MethodGet, "/.well-known/jwks.json", nil, nil)
	if r.StatusCode != 200 || !strings.Contains(string(r.body), `"OKP"`) {
		t.Errorf("jwks: %d %s", r.StatusCode, r.body)
	}
	if r := ts.do(http.MethodGet, "/metrics", nil, nil); r.StatusCode != 200 || !strings.Contains(string(r.body), "assent_http_requests_total") {
		t.Errorf("metrics: %d", r.StatusCode)
	}
	ts.st.Close()
	if r := ts.do(http.MethodGet, "/healthz", nil, nil); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("healthz with a closed ledger: %d", r.StatusCode)
	}
}

// A CDN's country header counts only when configured and only from a
// trusted proxy; garbage in it is ignored.
func TestCountryHeader(t *testing.T) {
	trusted := &Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, CountryHeader: "CF-IPCountry"}
	untrusted := &Config{CountryHeader: "CF-IPCountry"}
	tests := []struct {
		name            string
		cfg             *Config
		header, xff     string
		country, source string
	}{
		{"trusted peer", trusted, "fr", ipUS, "FR", "header"},
		{"garbage falls back to the lookup", trusted, "France", ipUS, "US", "geoip"},
		{"Tor's XX is not a country", trusted, "XX", ipUS, "US", "geoip"},
		{"untrusted peer is ignored", untrusted, "US", ipUS, "", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, tt.cfg)
			resp := ts.do(http.MethodGet, "/v1/sites/shop/decision", nil, map[string]string{"CF-IPCountry": tt.header, "X-Forwarded-For": tt.xff})
			var d struct{ Country, Source string }
			json.Unmarshal(resp.body, &d)
			if d.Country != tt.country || d.Source != tt.source {
				t.Errorf("got %s/%s, want %s/%s", d.Country, d.Source, tt.country, tt.source)
			}
		})
	}
}
