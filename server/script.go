package server

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/andybalholm/brotli"

	"github.com/assent/assent/store"
)

// servedScript is one site's /w/{site}.js, ready in every encoding.
type servedScript struct {
	raw, gz, br []byte
	etag        string
}

// widgetConfig is the part of a site's config the widget needs: no texts
// (they come with the decision), no origins, nothing personal.
type widgetConfig struct {
	Site           string                   `json:"site"`
	PolicyVersion  string                   `json:"policy_version"`
	Modes          []string                 `json:"modes"`
	Purposes       []store.Purpose          `json:"purposes"`
	Theme          store.Theme              `json:"theme"`
	SettingsButton bool                     `json:"settings_button"`
	Expiry         store.Expiry             `json:"expiry"`
	SignupTriggers store.SignupTriggers     `json:"signup_triggers"`
	ConsentMode    store.ConsentModeOptions `json:"consent_mode"`
	CookieDomain   string                   `json:"cookie_domain,omitempty"`
	Build          string                   `json:"build"`
}

// WidgetScript returns the script served for site, wrapped around its
// config. The bundle reads the config as the free name ASSENT_CONFIG.
func WidgetScript(js []byte, build string, site store.Site) []byte {
	cfg := widgetConfig{
		Site: site.ID, PolicyVersion: site.PolicyVersion, Modes: site.Modes, Purposes: site.Purposes,
		Theme: site.Theme, SettingsButton: site.SettingsButton == nil || *site.SettingsButton,
		Expiry: widgetExpiry(site), SignupTriggers: site.SignupTriggers, ConsentMode: site.ConsentMode, CookieDomain: site.CookieDomain, Build: build,
	}
	if len(cfg.Modes) == 0 {
		cfg.Modes = []string{"banner"}
	}
	return wrap("ASSENT_CONFIG", js, cfg)
}

// widgetExpiry is the site's expiry with the defaults filled in.
func widgetExpiry(site store.Site) store.Expiry {
	e := site.Expiry
	if e.DenyDays == 0 {
		e.DenyDays = 182
	}
	if e.GrantDays == 0 {
		e.GrantDays = 365
	}
	return e
}

// script returns the served script for site, made once per site version.
func (b *bundles) script(site store.Site) *servedScript {
	w := b.widget()
	key := w.Hash + "|" + site.ID + "|" + site.UpdatedAt.String() + "|" + site.PolicyVersion + "|" + jsonString(site.Theme)
	return b.cached(key, func() []byte { return WidgetScript(w.JS, w.Hash, site) })
}

// stubScript returns the served Consent Mode stub for site.
func (b *bundles) stubScript(site store.Site) *servedScript {
	st := b.stub.get()
	key := "stub|" + st.Hash + "|" + site.ID + "|" + site.UpdatedAt.String() + "|" + site.PolicyVersion
	return b.cached(key, func() []byte { return ConsentModeStub(st.JS, site) })
}

// cached returns the script under key, made by make and compressed once.
func (b *bundles) cached(key string, make func() []byte) *servedScript {
	b.mu.Lock()
	sc := b.perSite[key]
	b.mu.Unlock()
	if sc != nil {
		return sc
	}
	raw := make()
	sum := sha256.Sum256(raw)
	sc = &servedScript{raw: raw, gz: gzipBytes(raw), br: brotliBytes(raw), etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
	b.mu.Lock()
	if len(b.perSite) > 4096 {
		b.perSite = map[string]*servedScript{}
	}
	b.perSite[key] = sc
	b.mu.Unlock()
	return sc
}

// stubConfig is what the Consent Mode stub needs (widget/src/stub.ts).
// Its keys are short: the stub blocks the page's parser, so every byte counts.
type stubConfig struct {
	Site          string              `json:"site"`
	PolicyVersion string              `json:"version"`
	Types         map[string][]string `json:"types"` // space-separated purposes -> the types they map

	WaitForUpdate int      `json:"wait"`
	Set           []string `json:"set,omitempty"` // gtag('set', name, true)
	Days          [2]int   `json:"days"`          // deny_days, grant_days
}

// standardTypes are the Consent Mode types the default always lists (as the
// widget's consentmode.ts does), so a type no purpose maps stays denied
// rather than unset.
var standardTypes = []string{"ad_storage", "ad_user_data", "ad_personalization", "analytics_storage", "functionality_storage", "personalization_storage"}

// ConsentModeStub returns /w/{site}/consent-mode.js: the stub bundle wrapped
// around the site's Consent Mode mapping, as the free name S.
func ConsentModeStub(js []byte, site store.Site) []byte {
	ex := widgetExpiry(site)
	cfg := stubConfig{
		Site: site.ID, PolicyVersion: site.PolicyVersion, Types: map[string][]string{},
		WaitForUpdate: site.ConsentMode.WaitForUpdate, Days: [2]int{ex.DenyDays, ex.GrantDays},
	}
	if cfg.WaitForUpdate == 0 {
		cfg.WaitForUpdate = 500
	}
	if site.ConsentMode.AdsDataRedaction {
		cfg.Set = append(cfg.Set, "ads_data_redaction")
	}
	if site.ConsentMode.URLPassthrough {
		cfg.Set = append(cfg.Set, "url_passthrough")
	}
	// Group the types by the set of purposes that map them.
	purposes := map[string][]string{}
	for _, t := range standardTypes {
		purposes[t] = nil
	}
	for _, p := range site.Purposes {
		for _, t := range p.ConsentMode {
			purposes[t] = append(purposes[t], p.ID)
		}
	}
	types := make([]string, 0, len(purposes))
	for t := range purposes {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		k := strings.Join(purposes[t], " ")
		cfg.Types[k] = append(cfg.Types[k], t)
	}
	return wrap("S", js, cfg)
}

// wrap makes (function(NAME){js})(config);
func wrap(name string, js []byte, cfg any) []byte {
	c, _ := json.Marshal(cfg)
	var b bytes.Buffer
	b.WriteString("(function(" + name + "){")
	b.Write(js)
	b.WriteString("})(")
	b.Write(c)
	b.WriteString(");\n")
	return b.Bytes()
}

// pick chooses brotli, then gzip, by the request's Accept-Encoding.
func (sc *servedScript) pick(acceptEncoding string) ([]byte, string) {
	br, gz := false, false
	for _, part := range strings.Split(acceptEncoding, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if q, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
				continue
			}
		}
		switch strings.ToLower(name) {
		case "br":
			br = true
		case "gzip":
			gz = true
		}
	}
	switch {
	case br:
		return sc.br, "br"
	case gz:
		return sc.gz, "gzip"
	}
	return sc.raw, ""
}

func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

func gzipBytes(b []byte) []byte {
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func brotliBytes(b []byte) []byte {
	var out bytes.Buffer
	bw := brotli.NewWriterLevel(&out, brotli.BestCompression)
	bw.Write(b)
	bw.Close()
	return out.Bytes()
}

// osDirFS is the widget folder on disk, for --dev.
func osDirFS(dir string) fs.FS { return os.DirFS(dir) }

// modStamp summarises the sources' modification times, so --dev rebuilds
// only when a file changed.
func modStamp(src fs.FS) string {
	var b strings.Builder
	_ = fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && d.Name() == "node_modules" {
			return fs.SkipDir
		}
		if info, err := d.Info(); err == nil && !d.IsDir() && filepath.Ext(p) != "" {
			b.WriteString(p + strconv.FormatInt(info.ModTime().UnixNano(), 10) + ";")
		}
		return nil
	})
	return b.String()
}
