package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/store"
)

// Fuzz targets for every decoder of outside input in this package. Their
// seeds run in plain `go test`; `go test -fuzz=NAME ./server/` explores.

func FuzzChoiceBody(f *testing.F) {
	for _, s := range []string{
		`{"choices":{"analytics":true}}`,
		`{"visitor_id":"v_1","choices":{},"page_url":"https://a.example/x","locale":"de-AT","source":"banner","gpc":true}`,
		`{"email":" Ann@Example.com ","name":"Ann","choices":{"newsletter":true}}`,
		`{"choices":{"a":1}}`, `[]`, `{"choices":null}`, "{\"locale\":\"\xff\"}", `{"email":"a@b","choices":{}}{}`,
	} {
		f.Add([]byte(s), true)
	}
	e := echo.New()
	f.Fuzz(func(t *testing.T, body []byte, signup bool) {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		c := e.NewContext(req, httptest.NewRecorder())
		var r choiceRequest
		if err := decodeJSON(c, &r); err != nil {
			if _, ok := err.(*echo.HTTPError); !ok {
				t.Fatalf("decode error is not an API error: %v", err)
			}
			return
		}
		if err := r.validate(signup); err != nil {
			if _, ok := err.(*echo.HTTPError); !ok {
				t.Fatalf("validation error is not an API error: %v", err)
			}
			return
		}
		// What passes is safe to store: bounded, printable where it must be.
		if len(r.VisitorID) > 64 || len(r.PageURL) > 2048 || len(r.Locale) > 35 {
			t.Fatalf("over-long field passed: %+v", r)
		}
		if signup && (r.Email == "" || len(r.Email) > 254 || strings.ContainsAny(r.Email, "\r\n") || r.Email != store.NormalizeEmail(r.Email)) {
			t.Fatalf("bad email passed: %q", r.Email)
		}
	})
}

func FuzzAcceptLanguage(f *testing.F) {
	for _, s := range []string{"de-DE,de;q=0.9,en;q=0.8", "*", "", "fr;q=abc, ;q=0", strings.Repeat("x,", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tags := parseAcceptLanguage(h)
		if len(tags) > 20 {
			t.Fatalf("%d tags from one header", len(tags))
		}
		for _, tag := range tags {
			if len(tag) > 35 {
				t.Fatalf("over-long tag %q", tag)
			}
		}
	})
}

func FuzzExportQuery(f *testing.F) {
	for _, s := range []string{"from=2026-01-01&to=2026-02-01", "from=2026-01-01T00:00:00Z&country=de&regime=opt-in", "to=x", "email=%ff", "regime=maybe&purpose=" + strings.Repeat("p", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v)
		if err != nil {
			return
		}
		if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
			t.Fatalf("an empty period passed: %v..%v", q.From, q.To)
		}
	})
}

// FuzzSiteConfig feeds admin site configs through the decoder and the
// validation; what passes must serve a widget config that is valid JSON.
func FuzzSiteConfig(f *testing.F) {
	seed, _ := json.Marshal(testSite())
	for _, s := range []string{string(seed), `{"id":"x","origins":["https://a.example"],"purposes":[{"id":"p"}]}`, `{"id":"","purposes":[]}`, `{"theme":{"brand":"red"}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var site store.Site
		if json.Unmarshal([]byte(raw), &site) != nil || site.Validate() != nil {
			return
		}
		js := WidgetScript([]byte("0"), "sha256:x", site)
		cfg := strings.TrimSuffix(strings.TrimPrefix(string(js), "(function(ASSENT_CONFIG){0})("), ");\n")
		if !utf8.ValidString(cfg) || !json.Valid([]byte(cfg)) {
			t.Fatalf("widget config is not valid JSON: %s", cfg)
		}
	})
}
