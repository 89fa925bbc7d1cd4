package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/assent/assent/store"
)

// texts holds the widget's built-in texts per language and the notices made
// from them: the exact texts a visitor of a site is shown, merged with the
// site's own, with the hash that every record cites.
type texts struct {
	builtin map[string]map[string]any // language -> text tree

	mu    sync.Mutex
	cache map[string]notice // site|version|updated|locale -> notice
	saved map[string]bool   // notice hashes known to be in the ledger
}

// notice is what one visitor is shown: the locale, the texts, and the hash
// of the notice document (locale, policy version, purposes and texts).
type notice struct {
	Locale string
	Texts  json.RawMessage
	Doc    []byte // canonical JSON of the notice document
	Hash   string
}

func loadTexts(src fs.FS) (*texts, error) {
	files, err := fs.Glob(src, "texts/*.json")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("widget texts: none found in texts/*.json")
	}
	t := &texts{builtin: map[string]map[string]any{}, cache: map[string]notice{}, saved: map[string]bool{}}
	for _, f := range files {
		b, err := fs.ReadFile(src, f)
		if err != nil {
			return nil, err
		}
		var tree map[string]any
		if err := json.Unmarshal(b, &tree); err != nil {
			return nil, fmt.Errorf("widget texts %s: %w", f, err)
		}
		t.builtin[strings.TrimSuffix(path.Base(f), ".json")] = tree
	}
	if t.builtin["en"] == nil {
		return nil, fmt.Errorf("widget texts: texts/en.json is missing; English is the fallback")
	}
	return t, nil
}

// Languages lists the built-in languages.
func (t *texts) Languages() []string {
	out := make([]string, 0, len(t.builtin))
	for l := range t.builtin {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// notice returns the notice for a visitor of site asking for lang (the
// widget's pick from <html lang> and navigator.languages), then the
// Accept-Language header, then English.
func (t *texts) notice(site store.Site, lang, acceptLanguage string) notice {
	locale := t.pick(site, append([]string{lang}, parseAcceptLanguage(acceptLanguage)...))
	key := site.ID + "|" + site.PolicyVersion + "|" + site.UpdatedAt.String() + "|" + locale
	t.mu.Lock()
	n, ok := t.cache[key]
	t.mu.Unlock()
	if ok {
		return n
	}
	merged := merge(map[string]any{}, t.builtin["en"])
	merged = merge(merged, t.builtin[locale])
	if raw, ok := site.Texts[locale]; ok {
		var tree map[string]any
		if json.Unmarshal(raw, &tree) == nil {
			merged = merge(merged, tree)
		}
	}
	textsJSON, _ := json.Marshal(merged) // maps marshal with sorted keys: canonical
	doc, _ := json.Marshal(map[string]any{
		"site": site.ID, "locale": locale, "policy_version": site.PolicyVersion,
		"purposes": site.Purposes, "texts": json.RawMessage(textsJSON),
	})
	n = notice{Locale: locale, Texts: textsJSON, Doc: doc, Hash: noticeHash(doc)}
	t.mu.Lock()
	if len(t.cache) > 10000 { // bounded: site versions × locales
		t.cache = map[string]notice{}
	}
	t.cache[key] = n
	t.mu.Unlock()
	return n
}

// stored makes sure the notice's full text is in the ledger before a record
// cites its hash, writing it once.
func (t *texts) stored(ctx context.Context, st store.Ledger, n notice) (string, error) {
	t.mu.Lock()
	done := t.saved[n.Hash]
	t.mu.Unlock()
	if done {
		return n.Hash, nil
	}
	h, err := st.PutNotice(ctx, n.Doc)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	t.saved[h] = true
	t.mu.Unlock()
	return h, nil
}

// pick returns the first candidate language the site or the built-in texts
// have, matching a whole tag first and then its primary language.
func (t *texts) pick(site store.Site, candidates []string) string {
	has := func(l string) bool {
		if _, ok := t.builtin[l]; ok {
			return true
		}
		_, ok := site.Texts[l]
		return ok
	}
	for _, c := range candidates {
		c = strings.ToLower(strings.TrimSpace(strings.ReplaceAll(c, "_", "-")))
		if c == "" || c == "*" {
			continue
		}
		if has(c) {
			return c
		}
		if i := strings.IndexByte(c, '-'); i > 0 && has(c[:i]) {
			return c[:i]
		}
	}
	return "en"
}

// parseAcceptLanguage returns the header's tags, best first.
func parseAcceptLanguage(h string) []string {
	type tq struct {
		tag string
		q   float64
	}
	var list []tq
	for i, part := range strings.Split(h, ",") {
		if i >= 20 {
			break
		}
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		if tag != "" && len(tag) <= 35 && q > 0 {
			list = append(list, tq{tag, q})
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].q > list[j].q })
	out := make([]string, len(list))
	for i, x := range list {
		out[i] = x.tag
	}
	return out
}

func noticeHash(doc []byte) string {
	sum := sha256.Sum256(doc)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// merge copies src over dst, recursing into objects.
func merge(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			dv, _ := dst[k].(map[string]any)
			if dv == nil {
				dv = map[string]any{}
			}
			dst[k] = merge(dv, sv)
			continue
		}
		dst[k] = v
	}
	return dst
}

// localTexts are the merged texts of one site in one language, read by key
// (the confirmation mail and pages).
type localTexts struct {
	locale string
	m      map[string]any
}

// forLocale returns the site's texts in the best language for lang, then
// acceptLanguage, then English.
func (t *texts) forLocale(site store.Site, lang string, acceptLanguage ...string) localTexts {
	n := t.notice(site, lang, strings.Join(acceptLanguage, ","))
	lt := localTexts{locale: n.Locale}
	_ = json.Unmarshal(n.Texts, &lt.m)
	return lt
}

// str is a top-level text, or "" when there is none.
func (lt localTexts) str(key string) string {
	v, _ := lt.m[key].(string)
	return v
}
