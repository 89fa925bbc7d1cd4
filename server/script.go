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
	Build          string                   `json:"build"`
}

// WidgetScript returns the script served for site, wrapped around its
// config. The bundle reads the config as the free name ASSENT_CONFIG.
func WidgetScript(js []byte, build string, site store.Site) []byte {
	cfg := widgetConfig{
		Site: site.ID, PolicyVersion: site.PolicyVersion, Modes: site.Modes, Purposes: site.Purposes,
		Theme: site.Theme, SettingsButton: site.SettingsButton == nil || *site.SettingsButton,
		Expiry: site.Expiry, SignupTriggers: site.SignupTriggers, ConsentMode: site.ConsentMode, Build: build,
	}
	if len(cfg.Modes) == 0 {
		cfg.Modes = []string{"banner"}
	}
	if cfg.Expiry.DenyDays == 0 {
		cfg.Expiry.DenyDays = 182
	}
	if cfg.Expiry.GrantDays == 0 {
		cfg.Expiry.GrantDays = 365
	}
	c, _ := json.Marshal(cfg)
	var b bytes.Buffer
	b.WriteString("(function(ASSENT_CONFIG){")
	b.Write(js)
	b.WriteString("})(")
	b.Write(c)
	b.WriteString(");\n")
	return b.Bytes()
}

// script returns the served script for site, made once per site version.
func (b *bundles) script(site store.Site) *servedScript {
	w := b.widget()
	key := w.Hash + "|" + site.ID + "|" + site.UpdatedAt.String() + "|" + site.PolicyVersion + "|" + jsonString(site.Theme)
	b.mu.Lock()
	sc := b.perSite[key]
	b.mu.Unlock()
	if sc != nil {
		return sc
	}
	raw := WidgetScript(w.JS, w.Hash, site)
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
