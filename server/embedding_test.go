package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/assent/assent/store"
)

// A site config is read strictly: a key it does not have, at any depth, is
// a 422 naming the key, and nothing is stored or changed.
func TestSiteConfigUnknownKeysAre422(t *testing.T) {
	ts := newTestServer(t, nil)
	auth := map[string]string{"Authorization": "Bearer " + ts.token}
	base := `{"id":"blog","origins":["https://blog.example"],"purposes":[{"id":"analytics"}]`
	for body, key := range map[string]string{
		base + `,"signup_triggers":{"scroll_percnt":50}}`:                                  "signup_triggers.scroll_percnt",
		base + `,"theme":{"positon":"modal"}}`:                                             "theme.positon",
		`{"id":"blog","origins":[],"purposes":[{"id":"a","consent-mode":["ad_storage"]}]}`: "purposes[0].consent-mode",
		base + `,"optin_countries":["DE"]}`:                                                "optin_countries",
		base + `,"Origins":["https://blog.example"]}`:                                      "Origins",
	} {
		for _, m := range []string{http.MethodPost, http.MethodPut} {
			path := "/v1/admin/sites"
			if m == http.MethodPut {
				path = "/v1/admin/sites/shop"
				body = strings.Replace(body, `"id":"blog"`, `"id":"shop"`, 1)
			}
			resp := ts.do(m, path, body, auth)
			if resp.StatusCode != http.StatusUnprocessableEntity || resp.errorCode() != "invalid_field" || !bytes.Contains(resp.body, []byte(`"`+key+`: unknown key`)) {
				t.Errorf("%s %s: %d %s, want 422 invalid_field naming %s", m, body, resp.StatusCode, resp.body, key)
			}
		}
	}
	if resp := ts.do(http.MethodGet, "/v1/admin/sites/blog", nil, auth); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a refused config was stored: GET blog %d", resp.StatusCode)
	}
	// The scroll-depth trigger is a key a config has.
	resp := ts.do(http.MethodPost, "/v1/admin/sites", base+`,"signup_triggers":{"scroll_percent":50}}`, auth)
	if resp.StatusCode != http.StatusCreated || !bytes.Contains(resp.body, []byte(`"scroll_percent":50`)) {
		t.Errorf("scroll_percent: %d %s", resp.StatusCode, resp.body)
	}
	// What GET answers can be PUT back as it is.
	got := ts.do(http.MethodGet, "/v1/admin/sites/blog", nil, auth)
	if resp := ts.do(http.MethodPut, "/v1/admin/sites/blog", got.body, auth); resp.StatusCode != http.StatusOK {
		t.Errorf("PUT of the GET answer: %d %s", resp.StatusCode, resp.body)
	}
}

// opt_in_countries holds assigned ISO 3166-1 codes only: a typo gets a 422
// instead of silently giving its visitors the notice regime.
func TestSiteConfigCountriesMustBeAssigned(t *testing.T) {
	ts := newTestServer(t, nil)
	auth := map[string]string{"Authorization": "Bearer " + ts.token}
	for _, bad := range []string{"DX", "UK", "EU", "de", "XK1"} {
		s := testSite()
		s.OptInCountries = []string{"DE", "FR", bad}
		resp := ts.do(http.MethodPut, "/v1/admin/sites/shop", s, auth)
		if resp.StatusCode != http.StatusUnprocessableEntity || resp.errorCode() != "invalid_field" || !bytes.Contains(resp.body, []byte("opt_in_countries[2]")) {
			t.Errorf("opt_in_countries %q: %d %s, want 422 naming opt_in_countries[2]", bad, resp.StatusCode, resp.body)
		}
	}
	s := testSite()
	s.OptInCountries = []string{"DE", "GB", "CH"}
	if resp := ts.do(http.MethodPut, "/v1/admin/sites/shop", s, auth); resp.StatusCode != http.StatusOK {
		t.Errorf("valid countries: %d %s", resp.StatusCode, resp.body)
	}
}

// A wildcard origin admits every subdomain over its scheme and port, never
// the apex; a write from any other origin is refused, counted per site,
// logged at warn with its origin, and listed for admins.
func TestWildcardOriginsAndRejectedOrigins(t *testing.T) {
	var logs syncBuffer
	ts := newTestServerLog(t, nil, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	auth := map[string]string{"Authorization": "Bearer " + ts.token}
	s := testSite()
	s.Origins = []string{"https://*.shop.example"}
	if resp := ts.do(http.MethodPut, "/v1/admin/sites/shop", s, auth); resp.StatusCode != http.StatusOK {
		t.Fatalf("wildcard origin refused: %d %s", resp.StatusCode, resp.body)
	}
	body := map[string]any{"choices": map[string]bool{"analytics": true}}
	write := func(origin string) response {
		return ts.do(http.MethodPost, "/v1/sites/shop/consents", body, map[string]string{"Origin": origin, "X-Forwarded-For": ipDE})
	}
	for _, o := range []string{"https://www.shop.example", "https://a.b.shop.example"} {
		if resp := write(o); resp.StatusCode != http.StatusCreated || resp.Header.Get("Access-Control-Allow-Origin") != o {
			t.Errorf("write from %s: %d %s, ACAO %q", o, resp.StatusCode, resp.body, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	refused := map[string]int{"https://shop.example": 3, "http://www.shop.example": 1, "https://www.shop.example.evil.test": 2}
	for o, n := range refused {
		for range n {
			if resp := write(o); resp.StatusCode != http.StatusForbidden || resp.errorCode() != "origin_not_allowed" {
				t.Errorf("write from %s: %d %s, want 403 origin_not_allowed", o, resp.StatusCode, resp.body)
			}
		}
	}
	// A browser's preflight that is refused counts too: the write never follows it.
	pre := ts.do(http.MethodOptions, "/v1/sites/shop/consents", nil, map[string]string{"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"})
	if pre.StatusCode != http.StatusForbidden {
		t.Errorf("preflight from the apex: %d", pre.StatusCode)
	}
	refused["https://shop.example"]++
	if n := ts.count("shop"); n != 2 {
		t.Errorf("%d records, want the 2 allowed writes", n)
	}

	var list struct {
		Site    string `json:"site"`
		Since   string `json:"since"`
		Origins []struct {
			Origin string `json:"origin"`
			Count  int    `json:"count"`
			LastAt string `json:"last_at"`
		} `json:"origins"`
	}
	resp := ts.do(http.MethodGet, "/v1/admin/sites/shop/rejected-origins", nil, auth)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("rejected-origins: %d %s", resp.StatusCode, resp.body)
	}
	json.Unmarshal(resp.body, &list)
	if list.Site != "shop" || list.Since == "" || len(list.Origins) != len(refused) {
		t.Fatalf("rejected-origins = %s", resp.body)
	}
	if list.Origins[0].Origin != "https://shop.example" {
		t.Errorf("most refused first: got %s", list.Origins[0].Origin)
	}
	for _, o := range list.Origins {
		if o.Count != refused[o.Origin] || o.LastAt == "" {
			t.Errorf("%s refused %d times (last %q), want %d", o.Origin, o.Count, o.LastAt, refused[o.Origin])
		}
	}
	if resp := ts.do(http.MethodGet, "/v1/admin/sites/shop/rejected-origins", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("rejected-origins without a token: %d", resp.StatusCode)
	}
	if resp := ts.do(http.MethodGet, "/v1/admin/sites/nope/rejected-origins", nil, auth); resp.StatusCode != http.StatusNotFound {
		t.Errorf("rejected-origins of an unknown site: %d", resp.StatusCode)
	}

	metrics := ts.do(http.MethodGet, "/metrics", nil, nil)
	if !bytes.Contains(metrics.body, []byte(`assent_rejected_origins_total{site="shop"} 7`)) {
		t.Errorf("/metrics lacks assent_rejected_origins_total{site=\"shop\"} 7")
	}
	// Logged at warn once per origin (not once per request), with the origin.
	var warned []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["level"] == "WARN" && l["site"] == "shop" {
			warned = append(warned, l["origin"].(string))
		}
	}
	if len(warned) != len(refused) {
		t.Errorf("warned for %v, want each refused origin once", warned)
	}
}

// syncBuffer is a log destination safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The table of refused origins is bounded: forged Origin headers make room
// by dropping the origin seen least recently.
func TestRejectedOriginsAreBounded(t *testing.T) {
	r := newRejectedOrigins()
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	r.add("shop", "https://keep.example", log)
	for i := range maxRejectedOrigins + 50 {
		r.add("shop", "https://x"+strings.Repeat("y", i)+".example", log)
		r.add("shop", "https://keep.example", log)
	}
	got := r.list("shop")
	if len(got) != maxRejectedOrigins || got[0].Origin != "https://keep.example" || got[0].Count != maxRejectedOrigins+51 {
		t.Errorf("%d origins, first %+v", len(got), got[0])
	}
}

// Turning off a purpose granted before is stored as a withdrawal, but only
// when the record it replaces is this visitor's and granted it.
func TestWithdrawalIsItsOwnEvent(t *testing.T) {
	ts := newTestServer(t, nil)
	hdr := map[string]string{"Origin": shopOrigin, "X-Forwarded-For": ipDE}
	write := func(visitor, replaces string, choices map[string]bool) (string, string) {
		t.Helper()
		resp := ts.do(http.MethodPost, "/v1/sites/shop/consents", map[string]any{
			"visitor_id": visitor, "replaces": replaces, "choices": choices, "source": "preferences"}, hdr)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("write: %d %s", resp.StatusCode, resp.body)
		}
		var out struct{ ID string }
		json.Unmarshal(resp.body, &out)
		var event string
		ts.st.Records("shop", store.Query{}, func(r store.Record) error {
			if r.ID == out.ID {
				event = r.Event
			}
			return nil
		})
		return out.ID, event
	}
	first, ev := write("v_ada", "", map[string]bool{"analytics": true, "marketing": true})
	if ev != "grant" {
		t.Fatalf("first choice: %s", ev)
	}
	second, ev := write("v_ada", first, map[string]bool{"analytics": true})
	if ev != "withdraw" {
		t.Errorf("turning marketing off after granting it: event %q, want withdraw", ev)
	}
	if _, ev := write("v_ada", second, map[string]bool{"analytics": true}); ev != "partial" {
		t.Errorf("the same choice again: event %q, want partial", ev)
	}
	if _, ev := write("v_eve", first, map[string]bool{}); ev != "deny" {
		t.Errorf("another visitor citing Ada's record: event %q, want deny (not a withdrawal of hers)", ev)
	}
	if _, ev := write("v_new", "", map[string]bool{}); ev != "deny" {
		t.Errorf("a first refusal: event %q, want deny", ev)
	}
	resp := ts.do(http.MethodPost, "/v1/sites/shop/consents", map[string]any{"visitor_id": "v_ada", "replaces": "not-an-id", "choices": map[string]bool{}}, hdr)
	if resp.StatusCode != http.StatusUnprocessableEntity || resp.errorCode() != "invalid_field" {
		t.Errorf("a malformed replaces: %d %s", resp.StatusCode, resp.body)
	}
}

// The Consent Mode stub is small, cacheable, for any origin, and carries the
// site's mapping; an unknown site is a 404.
func TestConsentModeStubEndpoint(t *testing.T) {
	ts := newTestServer(t, nil)
	resp := ts.do(http.MethodGet, "/w/shop/consent-mode.js", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") ||
		resp.Header.Get("Cache-Control") != "public, max-age=300" || resp.Header.Get("Cross-Origin-Resource-Policy") != "cross-origin" {
		t.Fatalf("stub: %d %v", resp.StatusCode, resp.Header)
	}
	if !bytes.Contains(resp.body, []byte(`"marketing":["ad_personalization","ad_storage","ad_user_data"]`)) || !bytes.Contains(resp.body, []byte(`"wait":500`)) {
		t.Errorf("stub config: %s", resp.body)
	}
	again := ts.do(http.MethodGet, "/w/shop/consent-mode.js", nil, map[string]string{"If-None-Match": resp.Header.Get("ETag")})
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", again.StatusCode)
	}
	if r := ts.do(http.MethodGet, "/w/nope/consent-mode.js", nil, nil); r.StatusCode != http.StatusNotFound || r.errorCode() != "unknown_site" {
		t.Errorf("unknown site: %d %s", r.StatusCode, r.body)
	}
	if r := ts.do(http.MethodGet, "/w/shop.js", nil, nil); r.StatusCode != http.StatusOK {
		t.Errorf("the widget beside the stub: %d", r.StatusCode)
	}
}
