package server

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

// demoSiteID is the site `assent serve --demo` creates and its page embeds.
const demoSiteID = "demo"

// ExampleSite is the usual shop: a necessary purpose, analytics and
// marketing mapped to Consent Mode, and a newsletter that a signup must
// tick, with the banner and the signup form. The demo serves it; tests
// build on it.
func ExampleSite(id string, origins []string) store.Site {
	return store.Site{
		ID: id, Name: "Example Shop", Origins: origins,
		Modes: []string{"banner", "signup"},
		Purposes: []store.Purpose{
			{ID: "necessary", Required: true},
			{ID: "analytics", ConsentMode: []string{"analytics_storage"}},
			{ID: "marketing", ConsentMode: []string{"ad_storage", "ad_user_data", "ad_personalization"}},
			{ID: "newsletter", Signup: true, RequiredForSignup: true},
		},
	}
}

// DemoSite is the demo's site config: the example shop with its look.
func DemoSite(origins []string) store.Site {
	yes := true
	s := ExampleSite(demoSiteID, origins)
	s.Name = "Assent demo shop"
	s.Theme = store.Theme{Scheme: "auto", Position: "bar-bottom", Brand: "#0b57d0", Radius: "8px"}
	s.SettingsButton = &yes
	return s
}

// applyDemoLook lets the demo page show every position and theme without
// touching the stored config. Demo only.
func applyDemoLook(site *store.Site, position, scheme string) {
	switch position {
	case "bar-bottom", "box-left", "box-right", "modal":
		site.Theme.Position = position
	}
	switch scheme {
	case "auto", "light", "dark":
		site.Theme.Scheme = scheme
	}
}

var demoPage = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Assent demo shop</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fafafa}
header,main{max-width:52rem;margin:0 auto;padding:1rem 1.5rem}
header{border-bottom:1px solid #ddd}
nav a{margin-right:.8rem}
.switch{background:#fff3c4;border:1px solid #e0c050;padding:.6rem 1rem;border-radius:6px}
.switch a[aria-current]{font-weight:700}
code{background:#eee;padding:.1rem .3rem;border-radius:3px}
</style>
<script src="/w/{{.Site}}/consent-mode.js"></script>
<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}</script>
</head><body>
<header><h1>Example Shop</h1><p>A demo page that embeds Assent exactly as a site owner would, with one script tag.</p></header>
<main>
<div class="switch" role="group" aria-label="Demo only">
<p><strong>Demo only:</strong> see this page as a visitor from
{{range .Countries}}<a href="{{.URL}}"{{if .Current}} aria-current="true"{{end}}>{{.Name}}</a> {{end}}</p>
<p>Position: {{range .Positions}}<a href="{{.URL}}"{{if .Current}} aria-current="true"{{end}}>{{.Name}}</a> {{end}}
· Theme: {{range .Schemes}}<a href="{{.URL}}"{{if .Current}} aria-current="true"{{end}}>{{.Name}}</a> {{end}}</p>
<p>The choice is remembered in this browser; <button type="button" onclick="localStorage.clear();location.reload()">forget it</button> or <button type="button" onclick="assent.open()">open the settings</button> or <button type="button" onclick="assent.open('signup')">open the signup form</button>.</p>
</div>
<h2>Embed</h2>
<pre><code>&lt;!-- first in &lt;head&gt;, before the Google tag --&gt;
&lt;script src="{{.Origin}}/w/{{.Site}}/consent-mode.js"&gt;&lt;/script&gt;
&lt;!-- anywhere --&gt;
&lt;script src="{{.Origin}}/w/{{.Site}}.js" async&gt;&lt;/script&gt;</code></pre>
<p>Admin console: <a href="/admin/">/admin/</a>. Scripts gated on consent below:</p>
<p id="analytics-status">Analytics: not loaded.</p>
<script type="text/plain" data-assent="analytics">document.getElementById('analytics-status').textContent='Analytics: loaded after consent.'</script>
</main>
<script src="/w/{{.Site}}.js?{{.Query}}" data-demo-country="{{.Country}}" async></script>
</body></html>`))

type demoLink struct {
	Name, URL string
	Current   bool
}

func (s *Server) handleDemoPage(c echo.Context) error {
	country := strings.ToUpper(c.QueryParam("country"))
	if !geo.ValidCountry(country) {
		country = "DE"
	}
	position, scheme := c.QueryParam("position"), c.QueryParam("scheme")
	link := func(cc, pos, sch string) string {
		v := make([]string, 0, 3)
		v = append(v, "country="+cc)
		if pos != "" {
			v = append(v, "position="+pos)
		}
		if sch != "" {
			v = append(v, "scheme="+sch)
		}
		return "/?" + strings.Join(v, "&")
	}
	var countries, positions, schemes []demoLink
	for _, cc := range []struct{ code, name string }{{"DE", "Germany (opt-in)"}, {"FR", "France (opt-in)"}, {"GB", "the UK (opt-in)"}, {"US", "the US (notice)"}, {"JP", "Japan (notice)"}} {
		countries = append(countries, demoLink{cc.name, link(cc.code, position, scheme), cc.code == country})
	}
	for _, p := range []string{"bar-bottom", "box-left", "box-right", "modal"} {
		positions = append(positions, demoLink{p, link(country, p, scheme), p == position})
	}
	for _, sc := range []string{"auto", "light", "dark"} {
		schemes = append(schemes, demoLink{sc, link(country, position, sc), sc == scheme})
	}
	q := "position=" + templateSafe(position) + "&scheme=" + templateSafe(scheme)
	lang := map[string]string{"DE": "de", "FR": "fr"}[country]
	if lang == "" {
		lang = "en"
	}
	var b bytes.Buffer
	err := demoPage.Execute(&b, map[string]any{
		"Site": demoSiteID, "Country": country, "Countries": countries, "Positions": positions, "Schemes": schemes,
		"Query": template.URL(q), "Origin": s.publicURL(), "Lang": lang,
	})
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(http.StatusOK, b.Bytes())
}

func templateSafe(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '-') {
			return ""
		}
	}
	return s
}
