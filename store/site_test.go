package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestSiteValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Site)
		field  string // "" for valid
	}{
		{"valid", func(*Site) {}, ""},
		{"valid minimal", func(s *Site) { *s = Site{ID: "a", Purposes: []Purpose{{ID: "x"}}} }, ""},
		{"valid theme", func(s *Site) { s.Theme = Theme{Scheme: "dark", Position: "modal", Brand: "#0B57d0", Radius: "0.5rem"} }, ""},
		{"valid short brand, zero radius", func(s *Site) { s.Theme = Theme{Brand: "#fff", Radius: "0"} }, ""},
		{"valid origins with port", func(s *Site) { s.Origins = []string{"http://localhost:8080", "https://shop.example"} }, ""},
		{"valid texts", func(s *Site) {
			s.Texts = map[string]json.RawMessage{"de": json.RawMessage(`{"title":"Hallo","purposes":{"analytics":{"label":"Statistik"}}}`), "pt-BR": json.RawMessage(`{}`)}
		}, ""},
		{"valid countries", func(s *Site) { s.OptInCountries = []string{"DE", "GB"} }, ""},
		{"id upper case", func(s *Site) { s.ID = "Shop" }, "id"},
		{"id empty", func(s *Site) { s.ID = "" }, "id"},
		{"id starts with dash", func(s *Site) { s.ID = "-shop" }, "id"},
		{"id too long", func(s *Site) { s.ID = string(make([]byte, 64)) }, "id"},
		{"no purposes", func(s *Site) { s.Purposes = nil }, "purposes"},
		{"duplicate purpose", func(s *Site) { s.Purposes = append(s.Purposes, Purpose{ID: "analytics"}) }, "purposes[4].id"},
		{"bad purpose id", func(s *Site) { s.Purposes[1].ID = "Ana lytics" }, "purposes[1].id"},
		{"unknown consent mode type", func(s *Site) { s.Purposes[1].ConsentMode = []string{"ads"} }, "purposes[1].consent_mode[0]"},
		{"origin with path", func(s *Site) { s.Origins = []string{"https://shop.example/cart"} }, "origins[0]"},
		{"origin with trailing slash", func(s *Site) { s.Origins = []string{"https://shop.example/"} }, "origins[0]"},
		{"origin ftp", func(s *Site) { s.Origins = []string{"ftp://shop.example"} }, "origins[0]"},
		{"origin without scheme", func(s *Site) { s.Origins = []string{"shop.example"} }, "origins[0]"},
		{"origin bad port", func(s *Site) { s.Origins = []string{"https://shop.example:99999"} }, "origins[0]"},
		{"origin upper case", func(s *Site) { s.Origins = []string{"https://Shop.example"} }, "origins[0]"},
		{"origin with user", func(s *Site) { s.Origins = []string{"https://a@shop.example"} }, "origins[0]"},
		{"unknown mode", func(s *Site) { s.Modes = []string{"banner", "popup"} }, "modes[1]"},
		{"bad scheme", func(s *Site) { s.Theme.Scheme = "sepia" }, "theme.scheme"},
		{"bad position", func(s *Site) { s.Theme.Position = "top" }, "theme.position"},
		{"bad brand", func(s *Site) { s.Theme.Brand = "blue" }, "theme.brand"},
		{"brand four digits", func(s *Site) { s.Theme.Brand = "#abcd" }, "theme.brand"},
		{"bad radius", func(s *Site) { s.Theme.Radius = "8" }, "theme.radius"},
		{"radius injection", func(s *Site) { s.Theme.Radius = "8px;color:red" }, "theme.radius"},
		{"lower-case country", func(s *Site) { s.OptInCountries = []string{"de"} }, "opt_in_countries[0]"},
		{"EU is not a country", func(s *Site) { s.OptInCountries = []string{"DE", "EUR"} }, "opt_in_countries[1]"},
		{"texts name unknown purpose", func(s *Site) {
			s.Texts = map[string]json.RawMessage{"en": json.RawMessage(`{"purposes":{"tracking":{}}}`)}
		}, "texts.en.purposes.tracking"},
		{"texts not an object", func(s *Site) { s.Texts = map[string]json.RawMessage{"en": json.RawMessage(`"hi"`)} }, "texts.en"},
		{"texts bad language", func(s *Site) { s.Texts = map[string]json.RawMessage{"English": json.RawMessage(`{}`)} }, "texts.English"},
		{"negative retention", func(s *Site) { s.RetentionDays = -1 }, "retention_days"},
		{"negative expiry", func(s *Site) { s.Expiry.DenyDays = -1 }, "expiry"},
		{"negative trigger", func(s *Site) { s.SignupTriggers.AfterSeconds = -5 }, "signup_triggers.after_seconds"},
		{"policy version with space", func(s *Site) { s.PolicyVersion = "v 2" }, "policy_version"},
		{"unassigned country DX", func(s *Site) { s.OptInCountries = []string{"DE", "DX"} }, "opt_in_countries[1]"},
		{"UK is only reserved", func(s *Site) { s.OptInCountries = []string{"UK"} }, "opt_in_countries[0]"},
		{"valid wildcard origin", func(s *Site) { s.Origins = []string{"https://*.shop.example", "http://*.shop.example:8080"} }, ""},
		{"wildcard inside a label", func(s *Site) { s.Origins = []string{"https://www*.shop.example"} }, "origins[0]"},
		{"wildcard not first", func(s *Site) { s.Origins = []string{"https://www.*.shop.example"} }, "origins[0]"},
		{"wildcard twice", func(s *Site) { s.Origins = []string{"https://*.*.shop.example"} }, "origins[0]"},
		{"wildcard on a public suffix", func(s *Site) { s.Origins = []string{"https://*.com"} }, "origins[0]"},
		{"wildcard on a two-label public suffix", func(s *Site) { s.Origins = []string{"https://*.co.uk"} }, "origins[0]"},
		{"wildcard with path", func(s *Site) { s.Origins = []string{"https://*.shop.example/"} }, "origins[0]"},
		{"wildcard upper case", func(s *Site) { s.Origins = []string{"https://*.Shop.example"} }, "origins[0]"},
		{"wildcard bad port", func(s *Site) { s.Origins = []string{"https://*.shop.example:0"} }, "origins[0]"},
		{"valid cookie domain", func(s *Site) {
			s.Origins, s.CookieDomain = []string{"https://www.shop.example", "https://*.shop.example"}, "shop.example"
		}, ""},
		{"cookie domain with dot", func(s *Site) { s.Origins, s.CookieDomain = []string{"https://www.shop.example"}, ".shop.example" }, "cookie_domain"},
		{"cookie domain public suffix", func(s *Site) { s.Origins, s.CookieDomain = []string{"https://shop.co.uk"}, "co.uk" }, "cookie_domain"},
		{"cookie domain of another site", func(s *Site) { s.Origins, s.CookieDomain = []string{"https://www.shop.example"}, "other.example" }, "cookie_domain"},
		{"cookie domain suffix but not a parent", func(s *Site) { s.Origins, s.CookieDomain = []string{"https://myshop.example"}, "shop.example" }, "cookie_domain"},
		{"valid cookies", func(s *Site) { s.Purposes[1].Cookies = []string{"_ga", "_ga_*", "_gid"} }, ""},
		{"cookie with space", func(s *Site) { s.Purposes[1].Cookies = []string{"_g a"} }, "purposes[1].cookies[0]"},
		{"cookie star inside", func(s *Site) { s.Purposes[1].Cookies = []string{"_*ga"} }, "purposes[1].cookies[0]"},
		{"cookie empty", func(s *Site) { s.Purposes[1].Cookies = []string{""} }, "purposes[1].cookies[0]"},
		{"valid scroll trigger", func(s *Site) { s.SignupTriggers.ScrollPercent = 60 }, ""},
		{"scroll over 100", func(s *Site) { s.SignupTriggers.ScrollPercent = 150 }, "signup_triggers.scroll_percent"},
		{"scroll negative", func(s *Site) { s.SignupTriggers.ScrollPercent = -1 }, "signup_triggers.scroll_percent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSite("shop")
			tt.change(&s)
			err := s.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("valid site refused: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError for %s", err, tt.field)
			}
			if ve.Field != tt.field || ve.Code != "invalid_field" || ve.Message == "" {
				t.Fatalf("ValidationError %+v, want field %q", ve, tt.field)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	site := testSite("shop")
	tests := []struct {
		name    string
		choices map[string]bool
		signup  bool
		want    map[string]string
		event   string
		prev    map[string]string // the choice replaced
	}{
		{"accept all banner", map[string]bool{"analytics": true, "marketing": true}, false,
			map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "granted"}, "grant", nil},
		{"reject all banner", map[string]bool{"analytics": false, "marketing": false}, false,
			map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "denied"}, "deny", nil},
		{"nothing sent is a refusal", map[string]bool{}, false,
			map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "denied"}, "deny", nil},
		{"partial", map[string]bool{"analytics": true}, false,
			map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "denied"}, "partial", nil},
		{"required cannot be refused", map[string]bool{"necessary": false, "analytics": true, "marketing": true}, false,
			map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "granted"}, "grant", nil},
		{"banner ignores signup purposes", map[string]bool{"newsletter": true}, false,
			map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "denied"}, "deny", nil},
		{"signup", map[string]bool{"newsletter": true}, true,
			map[string]string{"necessary": "granted", "newsletter": "granted"}, "grant", nil},
		{"signup with banner purpose sent along", map[string]bool{"newsletter": true, "marketing": false}, true,
			map[string]string{"necessary": "granted", "marketing": "denied", "newsletter": "granted"}, "partial", nil},
		{"signup refused", map[string]bool{"newsletter": false}, true,
			map[string]string{"necessary": "granted", "newsletter": "denied"}, "deny", nil},
		{"turning off a purpose granted before is a withdrawal", map[string]bool{"analytics": true}, false,
			map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "denied"}, "withdraw",
			map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "granted"}},
		{"refusing everything after a grant is a withdrawal", map[string]bool{}, false,
			map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "denied"}, "withdraw",
			map[string]string{"analytics": "granted", "marketing": "denied"}},
		{"granting more after a partial choice is no withdrawal", map[string]bool{"analytics": true, "marketing": true}, false,
			map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "granted"}, "grant",
			map[string]string{"analytics": "granted", "marketing": "denied"}},
		{"refusing again what was refused is no withdrawal", map[string]bool{"analytics": true}, false,
			map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "denied"}, "partial",
			map[string]string{"analytics": "denied", "marketing": "denied"}},
		{"a signup leaves banner purposes of the choice before alone", map[string]bool{"newsletter": true}, true,
			map[string]string{"necessary": "granted", "newsletter": "granted"}, "grant",
			map[string]string{"analytics": "granted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, event, err := site.Resolve(tt.choices, tt.signup, tt.prev)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) || event != tt.event {
				t.Fatalf("Resolve = %v %q, want %v %q", got, event, tt.want, tt.event)
			}
		})
	}
	_, _, err := site.Resolve(map[string]bool{"analytics": true, "tracking": true}, false, nil)
	var up *UnknownPurposeError
	if !errors.As(err, &up) || up.ID != "tracking" {
		t.Fatalf("unknown purpose: %v", err)
	}
	only := Site{ID: "x", Purposes: []Purpose{{ID: "necessary", Required: true}}}
	if _, event, _ := only.Resolve(nil, false, nil); event != "grant" {
		t.Errorf("a site with only required purposes: event %q, want grant", event)
	}
}

func TestSiteCreateAndPut(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Options{Now: clock.Now})
	site := testSite("news")
	site.Modes = nil
	created, err := s.CreateSite(site)
	if err != nil {
		t.Fatal(err)
	}
	if created.PolicyVersion != "1" || !reflect.DeepEqual(created.Modes, []string{"banner"}) || created.CreatedAt.IsZero() {
		t.Fatalf("created %+v", created)
	}
	if _, err := s.CreateSite(site); !errors.Is(err, ErrSiteExists) {
		t.Fatalf("second create: %v", err)
	}
	bad := testSite("bad")
	bad.Theme.Brand = "red"
	if _, err := s.CreateSite(bad); err == nil {
		t.Fatal("invalid site stored")
	}
	if _, err := s.Site("bad"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Site(bad): %v", err)
	}

	tests := []struct {
		name    string
		change  func(*Site)
		version string
	}{
		{"name only keeps the version", func(s *Site) { s.Name = "News" }, "1"},
		{"origins only keep the version", func(s *Site) { s.Origins = append(s.Origins, "https://www.news.example") }, "1"},
		{"a new purpose bumps it", func(s *Site) { s.Purposes = append(s.Purposes, Purpose{ID: "social"}) }, "2"},
		{"new texts bump it", func(s *Site) { s.Texts = map[string]json.RawMessage{"en": json.RawMessage(`{"title":"Cookies"}`)} }, "3"},
		{"same texts spaced differently do not", func(s *Site) { s.Texts = map[string]json.RawMessage{"en": json.RawMessage(`{ "title" : "Cookies" }`)} }, "3"},
		{"the admin's own version wins", func(s *Site) { s.PolicyVersion = "2026-q4"; s.Purposes = s.Purposes[:4] }, "2026-q4"},
		{"a change after an opaque version gets a new opaque one", func(s *Site) { s.Purposes[1].Required = true }, "opaque"},
	}
	cur := created
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := cur
			next.Purposes = append([]Purpose(nil), cur.Purposes...)
			if tt.version != "2026-q4" {
				next.PolicyVersion = ""
			}
			tt.change(&next)
			clock.Add(1)
			got, err := s.PutSite(next)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.version == "opaque":
				if got.PolicyVersion == cur.PolicyVersion || got.PolicyVersion == "" {
					t.Errorf("policy_version %q after %q", got.PolicyVersion, cur.PolicyVersion)
				}
			case got.PolicyVersion != tt.version:
				t.Errorf("policy_version %q, want %q", got.PolicyVersion, tt.version)
			}
			if !got.CreatedAt.Equal(created.CreatedAt) || !got.UpdatedAt.After(cur.UpdatedAt) {
				t.Errorf("times %v %v", got.CreatedAt, got.UpdatedAt)
			}
			stored, _ := s.Site("news")
			if !reflect.DeepEqual(normTexts(stored.Texts), normTexts(got.Texts)) || stored.PolicyVersion != got.PolicyVersion {
				t.Errorf("stored %+v, returned %+v", stored, got)
			}
			cur = got
		})
	}
	if _, err := s.PutSite(testSite("gone")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PutSite of an unknown site: %v", err)
	}
	sites, err := s.Sites()
	if err != nil || len(sites) != 3 || sites[0].ID != "blog" || sites[1].ID != "news" {
		t.Fatalf("Sites = %v, %v", sites, err)
	}
}

func TestNotices(t *testing.T) {
	s := newTestStore(t)
	texts := []byte(`{"title":"Wir verwenden Cookies","purposes":{"analytics":{"label":"Statistik"}}}`)
	h, err := s.PutNotice(texts)
	sum := sha256.Sum256(texts)
	if err != nil || h != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("PutNotice = %q, %v", h, err)
	}
	again, _ := s.PutNotice(append([]byte(nil), texts...))
	if again != h {
		t.Fatal("same texts, different hash")
	}
	got, err := s.Notice(h)
	if err != nil || string(got) != string(texts) {
		t.Fatalf("Notice = %q, %v", got, err)
	}
	other := sha256.Sum256([]byte("other"))
	for _, bad := range []string{"sha256:00", "md5:" + h[7:], "sha256:" + hex.EncodeToString(other[:])} {
		if _, err := s.Notice(bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Notice(%q): %v", bad, err)
		}
	}
}

func TestSiteAllowsOrigin(t *testing.T) {
	s := Site{Origins: []string{"https://shop.example", "https://*.shop.example", "http://*.dev.example:8080"}}
	for origin, want := range map[string]bool{
		"https://shop.example":          true,
		"https://www.shop.example":      true,
		"https://a.b.shop.example":      true,
		"https://WWW.Shop.Example":      true,
		"http://www.shop.example":       false, // other scheme
		"https://www.shop.example:8443": false, // other port
		"https://evilshop.example":      false, // not a subdomain
		"https://shop.example.evil.com": false,
		"https://.shop.example":         false,
		"http://dev.example:8080":       false, // the apex is not in a wildcard
		"http://x.dev.example:8080":     true,
		"http://x.dev.example":          false,
		"null":                          false,
	} {
		if got := s.AllowsOrigin(origin); got != want {
			t.Errorf("AllowsOrigin(%q) = %v, want %v", origin, got, want)
		}
	}
}

func TestCheckSiteKeys(t *testing.T) {
	for body, field := range map[string]string{
		`{"id":"shop","purposes":[{"id":"a"}]}`:                                         "",
		`{"id":"shop","texts":{"en":{"anything":"goes","purposes":{}}}}`:                "",
		`{"id":"shop","signup_triggers":{"scroll_percnt":50}}`:                          "signup_triggers.scroll_percnt",
		`{"id":"shop","purposes":[{"id":"a"},{"id":"b","consentmode":["ad_storage"]}]}`: "purposes[1].consentmode",
		`{"id":"shop","Origins":["https://shop.example"]}`:                              "Origins",
		`{"id":"shop","theme":{"color":"#fff"}}`:                                        "theme.color",
		`{"id":"shop","cookie_domains":"shop.example"}`:                                 "cookie_domains",
		`{"id":"shop","theme":"dark"}`:                                                  "", // a wrong type is json.Unmarshal's to report
	} {
		err := CheckSiteKeys([]byte(body))
		var ve *ValidationError
		switch {
		case field == "" && err != nil:
			t.Errorf("%s: %v, want accepted", body, err)
		case field != "" && (!errors.As(err, &ve) || ve.Field != field || ve.Code != "invalid_field"):
			t.Errorf("%s: %v, want an invalid_field error naming %s", body, err, field)
		}
	}
}
