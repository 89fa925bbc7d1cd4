package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/assent/assent/store"
)

// badTexts are the characters no stored string of the public write API or
// of a site's name may carry: C0 and C1 controls and the bidi overrides
// and isolates.
var badTexts = map[string]string{
	"NUL": "\x00", "CR": "\r", "LF": "\n", "ESC": "\x1b", "TAB": "\t", "DEL": "\x7f", "C1 NEL": "\u0085", "C1 CSI": "\u009b",
	"LRE": "\u202a", "RLO": "\u202e", "LRI": "\u2066", "PDI": "\u2069",
}

func TestControlCharactersAreRefused(t *testing.T) {
	ts := newTestServer(t, nil)
	good := func() map[string]any {
		return map[string]any{"visitor_id": "v_ctl", "choices": map[string]bool{"newsletter": true}, "locale": "en",
			"page_url": "https://shop.example/cart", "notice_version": "v1", "email": "ann@example.com", "name": "Ann"}
	}
	// The good body is stored: the refusals below are the bad character's doing.
	for _, path := range []string{"/v1/sites/shop/consents", "/v1/sites/shop/signups"} {
		if r := ts.do(http.MethodPost, path, good(), fromShop); r.StatusCode != http.StatusCreated {
			t.Fatalf("good body to %s: %d %s", path, r.StatusCode, r.body)
		}
	}
	before := ts.count("shop")
	for _, field := range []string{"notice_version", "name", "visitor_id", "locale", "page_url"} {
		for what, bad := range badTexts {
			for _, path := range []string{"/v1/sites/shop/consents", "/v1/sites/shop/signups"} {
				if field == "name" && strings.HasSuffix(path, "consents") {
					continue // a consent carries no name
				}
				t.Run(field+"/"+what+path, func(t *testing.T) {
					b := good()
					b[field] = b[field].(string)[:1] + bad + "x"
					r := ts.do(http.MethodPost, path, b, fromShop)
					if r.StatusCode != http.StatusUnprocessableEntity || r.errorCode() != "invalid_field" || !strings.Contains(string(r.body), field) {
						t.Errorf("got %d %s, want 422 invalid_field naming %s", r.StatusCode, r.body, field)
					}
				})
			}
		}
	}
	if after := ts.count("shop"); after != before {
		t.Errorf("refused requests stored %d records", after-before)
	}

	auth := map[string]string{"Authorization": "Bearer " + ts.token}
	for what, bad := range badTexts {
		t.Run("site name/"+what, func(t *testing.T) {
			s := ExampleSite("ctl", []string{shopOrigin})
			s.Name = "Shop" + bad + "x"
			if r := ts.do(http.MethodPost, "/v1/admin/sites", s, auth); r.StatusCode != http.StatusUnprocessableEntity || r.errorCode() != "invalid_field" {
				t.Errorf("create: got %d %s", r.StatusCode, r.body)
			}
			if r := ts.do(http.MethodGet, "/v1/admin/sites/ctl", nil, auth); r.StatusCode != http.StatusNotFound {
				t.Errorf("a refused site was stored: %d", r.StatusCode)
			}
			s = testSite()
			s.Name = "Shop" + bad + "x"
			if r := ts.do(http.MethodPut, "/v1/admin/sites/shop", s, auth); r.StatusCode != http.StatusUnprocessableEntity || r.errorCode() != "invalid_field" {
				t.Errorf("put: got %d %s", r.StatusCode, r.body)
			}
			var got store.Site
			r := ts.do(http.MethodGet, "/v1/admin/sites/shop", nil, auth)
			if err := json.Unmarshal(r.body, &got); err != nil || got.Name != testSite().Name {
				t.Errorf("stored site name %q after a refused put (%v)", got.Name, err)
			}
		})
	}
}
