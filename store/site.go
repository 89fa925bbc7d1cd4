package store

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/net/publicsuffix"

	"github.com/assent/assent/geo"
)

// Purpose is one thing a site asks consent for.
type Purpose struct {
	ID                string   `json:"id"`
	Required          bool     `json:"required,omitempty"` // necessary: listed, always granted, not a choice
	Signup            bool     `json:"signup,omitempty"`   // asked in the signup form, not the banner
	RequiredForSignup bool     `json:"required_for_signup,omitempty"`
	ConsentMode       []string `json:"consent_mode,omitempty"` // Google Consent Mode types it maps to
	// Cookies are the first-party cookies this purpose sets ("_ga", or a
	// prefix "_ga_*"); the widget deletes them when it is refused.
	Cookies []string `json:"cookies,omitempty"`
}

// Theme is the widget's look.
type Theme struct {
	Scheme   string `json:"scheme,omitempty"`   // auto, light, dark
	Position string `json:"position,omitempty"` // bar-bottom, box-left, box-right, modal
	Brand    string `json:"brand,omitempty"`    // #rgb or #rrggbb
	Radius   string `json:"radius,omitempty"`   // CSS length: 8px, 0.5rem
}

// Expiry is how long the widget remembers a choice.
type Expiry struct {
	DenyDays  int `json:"deny_days,omitempty"`
	GrantDays int `json:"grant_days,omitempty"`
}

// SignupTriggers open the signup form automatically.
type SignupTriggers struct {
	AfterSeconds int    `json:"after_seconds,omitempty"`
	ExitIntent   bool   `json:"exit_intent,omitempty"`
	Selector     string `json:"selector,omitempty"`
	// ScrollPercent opens it once the visitor has scrolled this share of
	// the page (1-100; 100 is the bottom).
	ScrollPercent int `json:"scroll_percent,omitempty"`
}

// ConsentModeOptions are the optional Google Consent Mode settings.
type ConsentModeOptions struct {
	WaitForUpdate    int  `json:"wait_for_update,omitempty"`
	AdsDataRedaction bool `json:"ads_data_redaction,omitempty"`
	URLPassthrough   bool `json:"url_passthrough,omitempty"`
}

// Site is one website's configuration, as in the API's "A site config".
type Site struct {
	ID             string                     `json:"id"`
	Name           string                     `json:"name,omitempty"`
	Origins        []string                   `json:"origins"`
	Modes          []string                   `json:"modes,omitempty"` // banner, signup; default ["banner"]
	Purposes       []Purpose                  `json:"purposes"`
	Texts          map[string]json.RawMessage `json:"texts,omitempty"` // language -> texts object
	Theme          Theme                      `json:"theme"`
	SettingsButton *bool                      `json:"settings_button,omitempty"`
	Expiry         Expiry                     `json:"expiry"`
	SignupTriggers SignupTriggers             `json:"signup_triggers"`
	ConsentMode    ConsentModeOptions         `json:"consent_mode"`
	// CookieDomain shares one choice across its subdomains: the widget keeps
	// the choice in a first-party cookie on this domain.
	CookieDomain   string    `json:"cookie_domain,omitempty"`
	OptInCountries []string  `json:"opt_in_countries,omitempty"` // empty: the server's default list
	RetentionDays  int       `json:"retention_days"`             // 0: keep forever
	DoubleOptIn    bool      `json:"double_opt_in,omitempty"`    // signups get a confirmation mail
	PolicyVersion  string    `json:"policy_version"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// ValidationError names the config field that is wrong. Code is always
// "invalid_field", the API's error code for it.
type ValidationError struct {
	Field, Message string
	Code           string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...), Code: "invalid_field"}
}

var (
	reID       = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	reBrand    = regexp.MustCompile(`^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)
	reRadius   = regexp.MustCompile(`^(?:0|(?:\d{1,4}(?:\.\d{1,4})?|\.\d{1,4})(?:px|rem|em|%))$`)
	reCookie   = regexp.MustCompile("^[!#$%&'+.^_`|~0-9A-Za-z-]{1,128}\\*?$")
	reDomain   = regexp.MustCompile(`^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)
	reLanguage = regexp.MustCompile(`^[a-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$`)

	modes        = []string{"banner", "signup"}
	schemes      = []string{"auto", "light", "dark"}
	positions    = []string{"bar-bottom", "box-left", "box-right", "modal"}
	consentTypes = []string{"ad_storage", "analytics_storage", "ad_user_data", "ad_personalization",
		"functionality_storage", "personalization_storage", "security_storage"}
)

func oneOf(v string, allowed []string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// Validate checks a site config; the error is a *ValidationError.
func (s Site) Validate() error {
	if !reID.MatchString(s.ID) {
		return invalid("id", "%q must be 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit", s.ID)
	}
	if len(s.Name) > 200 {
		return invalid("name", "longer than 200 characters")
	}
	for i, o := range s.Origins {
		if err := checkOrigin(o); err != "" {
			return invalid(fmt.Sprintf("origins[%d]", i), "%q %s", o, err)
		}
	}
	for i, m := range s.Modes {
		if !oneOf(m, modes) {
			return invalid(fmt.Sprintf("modes[%d]", i), "%q is not one of %s", m, strings.Join(modes, ", "))
		}
	}
	if len(s.Purposes) == 0 {
		return invalid("purposes", "a site needs at least one purpose")
	}
	seen := map[string]bool{}
	for i, p := range s.Purposes {
		field := fmt.Sprintf("purposes[%d]", i)
		if !reID.MatchString(p.ID) {
			return invalid(field+".id", "%q must be 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit", p.ID)
		}
		if seen[p.ID] {
			return invalid(field+".id", "%q appears twice", p.ID)
		}
		seen[p.ID] = true
		for j, t := range p.ConsentMode {
			if !oneOf(t, consentTypes) {
				return invalid(fmt.Sprintf("%s.consent_mode[%d]", field, j), "%q is not a Consent Mode type (%s)", t, strings.Join(consentTypes, ", "))
			}
		}
		for j, c := range p.Cookies {
			if !reCookie.MatchString(c) {
				return invalid(fmt.Sprintf("%s.cookies[%d]", field, j), "%q is not a cookie name, or a prefix ending in * like _ga_*", c)
			}
		}
	}
	if err := checkCookieDomain(s.CookieDomain, s.Origins); err != "" {
		return invalid("cookie_domain", "%q %s", s.CookieDomain, err)
	}
	for lang, raw := range s.Texts {
		field := "texts." + lang
		if !reLanguage.MatchString(lang) {
			return invalid(field, "%q is not a language tag like en or pt-BR", lang)
		}
		var t struct {
			Purposes map[string]json.RawMessage `json:"purposes"`
		}
		if err := json.Unmarshal(raw, &t); err != nil || !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
			return invalid(field, "must be a JSON object of texts")
		}
		for id := range t.Purposes {
			if !seen[id] {
				return invalid(field+".purposes."+id, "names a purpose the site does not have")
			}
		}
	}
	if s.Theme.Scheme != "" && !oneOf(s.Theme.Scheme, schemes) {
		return invalid("theme.scheme", "%q is not one of %s", s.Theme.Scheme, strings.Join(schemes, ", "))
	}
	if s.Theme.Position != "" && !oneOf(s.Theme.Position, positions) {
		return invalid("theme.position", "%q is not one of %s", s.Theme.Position, strings.Join(positions, ", "))
	}
	if s.Theme.Brand != "" && !reBrand.MatchString(s.Theme.Brand) {
		return invalid("theme.brand", "%q is not a colour like #0b57d0 or #fff", s.Theme.Brand)
	}
	if s.Theme.Radius != "" && !reRadius.MatchString(s.Theme.Radius) {
		return invalid("theme.radius", "%q is not a CSS length like 8px or 0.5rem", s.Theme.Radius)
	}
	if s.Expiry.DenyDays < 0 || s.Expiry.GrantDays < 0 {
		return invalid("expiry", "days cannot be negative")
	}
	if s.SignupTriggers.AfterSeconds < 0 {
		return invalid("signup_triggers.after_seconds", "cannot be negative")
	}
	if p := s.SignupTriggers.ScrollPercent; p < 0 || p > 100 {
		return invalid("signup_triggers.scroll_percent", "%d is not a share of the page from 1 to 100 (0 is off)", p)
	}
	if len(s.SignupTriggers.Selector) > 200 {
		return invalid("signup_triggers.selector", "longer than 200 characters")
	}
	if s.ConsentMode.WaitForUpdate < 0 {
		return invalid("consent_mode.wait_for_update", "cannot be negative")
	}
	for i, c := range s.OptInCountries {
		// A typo must not fail open: an unassigned code would never match a
		// visitor, who would then get the notice regime.
		if !geo.ValidCountry(c) {
			hint := map[string]string{"UK": "; the United Kingdom is GB", "EL": "; Greece is GR", "EU": "; list the member states"}[c]
			return invalid(fmt.Sprintf("opt_in_countries[%d]", i), "%q is not an assigned ISO 3166-1 alpha-2 code in capitals, like DE%s", c, hint)
		}
	}
	if s.RetentionDays < 0 {
		return invalid("retention_days", "cannot be negative (0 keeps records forever)")
	}
	if len(s.PolicyVersion) > 64 || strings.ContainsFunc(s.PolicyVersion, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return invalid("policy_version", "must be at most 64 printable ASCII characters without spaces")
	}
	return nil
}

// checkOrigin returns why o is not a scheme://host[:port] web origin, or a
// wildcard one (scheme://*.domain[:port]), or "".
func checkOrigin(o string) string {
	if rest, ok := strings.CutPrefix(o, "https://*."); ok {
		return checkWildcard(rest)
	} else if rest, ok := strings.CutPrefix(o, "http://*."); ok {
		return checkWildcard(rest)
	} else if strings.Contains(o, "*") {
		return "may hold * only as a whole first label, like https://*.shop.example"
	}
	u, err := url.Parse(o)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must start with http:// or https://"
	case u.Host == "" || u.Hostname() == "":
		return "has no host"
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "/") || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#"):
		return "must be only scheme://host[:port], as browsers send in Origin"
	case o != strings.ToLower(o):
		return "must be lower-case, as browsers send in Origin"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "has a bad port"
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "has a bad port"
	}
	return ""
}

// checkWildcard checks the domain[:port] after "*." of a wildcard origin.
// The domain must be one a site can own: not a public suffix such as com or
// co.uk, where the wildcard would admit anyone's site.
func checkWildcard(rest string) string {
	host, port, hasPort := strings.Cut(rest, ":")
	if strings.Contains(host, "*") {
		return "may hold * only once, as the whole first label"
	}
	if !reDomain.MatchString(host) {
		return "must be *. followed by a lower-case domain name, like https://*.shop.example"
	}
	if hasPort {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "has a bad port"
		}
	}
	if publicSuffix(host) {
		return "would match every site under a public suffix; name your own domain, like https://*.shop.example"
	}
	return ""
}

// publicSuffix tells whether d is a public suffix (com, co.uk, github.io)
// rather than a domain someone registered.
func publicSuffix(d string) bool {
	etld, _ := publicsuffix.PublicSuffix(d)
	return etld == d
}

// checkCookieDomain returns why d cannot hold the shared choice for the
// site's origins, or "".
func checkCookieDomain(d string, origins []string) string {
	switch {
	case d == "":
		return ""
	case strings.HasPrefix(d, "."):
		return "must be a domain without a leading dot, like shop.example"
	case !reDomain.MatchString(d):
		return "is not a lower-case domain name like shop.example"
	case publicSuffix(d):
		return "is a public suffix; browsers refuse cookies on it"
	}
	for _, o := range origins {
		host := o
		if i := strings.Index(host, "://"); i >= 0 {
			host = host[i+3:]
		}
		host, _, _ = strings.Cut(strings.TrimPrefix(host, "*."), ":")
		if host == d || strings.HasSuffix(host, "."+d) {
			return ""
		}
	}
	return "covers none of the site's origins; a page can only set a cookie on its own domain or a parent of it"
}

// AllowsOrigin tells whether a browser's Origin header names a page the
// site allows: one of its origins exactly, or a subdomain (not the apex) of
// a wildcard origin, with the same scheme and port.
func (s Site) AllowsOrigin(origin string) bool {
	origin = strings.ToLower(origin)
	for _, o := range s.Origins {
		o = strings.TrimSuffix(o, "/")
		if o == origin {
			return true
		}
		scheme, pattern, ok := strings.Cut(o, "://*.")
		if !ok {
			continue
		}
		rest, ok := strings.CutPrefix(origin, scheme+"://")
		if !ok {
			continue
		}
		pdomain, pport, _ := strings.Cut(pattern, ":")
		host, port, _ := strings.Cut(rest, ":")
		if port == pport && strings.HasSuffix(host, "."+pdomain) && reDomain.MatchString(host) {
			return true
		}
	}
	return false
}

// UnknownPurposeError is a choice for a purpose the site does not have.
type UnknownPurposeError struct{ ID string }

func (e *UnknownPurposeError) Error() string { return fmt.Sprintf("unknown purpose %q", e.ID) }

// Resolve turns a visitor's choices into the per-purpose states to store and
// the event. Every purpose of the site is in the result, "granted" or
// "denied"; required purposes are always granted and purposes left out are
// denied. A banner choice (signup false) considers the non-signup purposes; a
// signup considers the signup purposes and any banner purposes sent along.
// The event is "withdraw" when a purpose that prev (the states of the
// choice this one replaces, nil for none) granted is now denied — withdrawal
// is a record of its own (GDPR Art. 7(3)) — else "grant" when every optional
// purpose considered is granted (also when there is none), "deny" when none
// is, else "partial".
func (s Site) Resolve(choices map[string]bool, signup bool, prev map[string]string) (map[string]string, string, error) {
	known := make(map[string]Purpose, len(s.Purposes))
	for _, p := range s.Purposes {
		known[p.ID] = p
	}
	for id := range choices {
		if _, ok := known[id]; !ok {
			return nil, "", &UnknownPurposeError{ID: id}
		}
	}
	states := make(map[string]string, len(s.Purposes))
	granted, optional := 0, 0
	for _, p := range s.Purposes {
		v, sent := choices[p.ID]
		// A record states only what its form asked: a banner choice says
		// nothing of the newsletter, a signup nothing of analytics (unless
		// the form sent it along). Left out, the export cell stays empty.
		considered := p.Signup == signup || (signup && sent)
		switch {
		case p.Required:
			states[p.ID] = "granted"
			continue
		case !considered:
			continue
		case v:
			states[p.ID] = "granted"
			granted++
		default:
			states[p.ID] = "denied"
		}
		optional++
	}
	event := "partial"
	switch granted {
	case optional:
		event = "grant"
	case 0:
		event = "deny"
	}
	for id, st := range states {
		if st == "denied" && prev[id] == "granted" {
			event = "withdraw"
		}
	}
	return states, event, nil
}

// NewSite readies a new site for storing: it sets PolicyVersion to "1" when
// empty, Modes to ["banner"] when empty and both times to now, and
// validates it. Every backend's CreateSite calls it.
func NewSite(site Site, now time.Time) (Site, error) {
	if len(site.Modes) == 0 {
		site.Modes = []string{"banner"}
	}
	if site.PolicyVersion == "" {
		site.PolicyVersion = "1"
	}
	if err := site.Validate(); err != nil {
		return Site{}, err
	}
	site.CreatedAt = now.UTC()
	site.UpdatedAt = site.CreatedAt
	return site, nil
}

// ChangeSite readies a replacement of the stored site old: a change to the
// purposes or the texts that keeps the stored policy_version (or sends none)
// gets a new one, so visitors are asked again: the old one plus one when it
// is a number, else a new opaque string. Every backend's PutSite calls it.
func ChangeSite(old, site Site, now time.Time) (Site, error) {
	if len(site.Modes) == 0 {
		site.Modes = []string{"banner"}
	}
	if site.PolicyVersion == "" {
		site.PolicyVersion = old.PolicyVersion
	}
	if site.PolicyVersion == old.PolicyVersion && noticeChanged(old, site) {
		var err error
		if site.PolicyVersion, err = nextPolicyVersion(old.PolicyVersion); err != nil {
			return Site{}, err
		}
	}
	if err := site.Validate(); err != nil {
		return Site{}, err
	}
	site.CreatedAt = old.CreatedAt
	site.UpdatedAt = now.UTC()
	return site, nil
}

// CreateSite stores a new site (see NewSite); ErrSiteExists if its id is
// taken.
func (s *Store) CreateSite(site Site) (Site, error) { return s.createSite(site, nil) }

// CreateSiteBy is CreateSite writing the "site_create" audit entry of actor
// in the same transaction: the site and its entry are stored together or
// not at all.
func (s *Store) CreateSiteBy(actor string, site Site) (Site, error) {
	return s.createSite(site, func(tx *bolt.Tx, site Site) error {
		return putAudit(tx, s.now(), actor, "site_create", "site "+site.ID+" policy_version "+site.PolicyVersion)
	})
}

func (s *Store) createSite(site Site, audit func(*bolt.Tx, Site) error) (Site, error) {
	site, err := NewSite(site, s.now())
	if err != nil {
		return Site{}, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSites).Get([]byte(site.ID)) != nil {
			return ErrSiteExists
		}
		if audit != nil {
			if err := audit(tx, site); err != nil {
				return err
			}
		}
		return putSite(tx, site)
	})
	if err != nil {
		return Site{}, err
	}
	return site, nil
}

// PutSite replaces an existing site's config (see ChangeSite) and returns it
// as stored; ErrNotFound for an unknown site.
func (s *Store) PutSite(site Site) (Site, error) { return s.putSite(site, nil) }

// PutSiteBy is PutSite writing the "site_update" audit entry of actor in
// the same transaction.
func (s *Store) PutSiteBy(actor string, site Site) (Site, error) {
	return s.putSite(site, func(tx *bolt.Tx, site Site) error {
		return putAudit(tx, s.now(), actor, "site_update", "site "+site.ID+" policy_version "+site.PolicyVersion)
	})
}

func (s *Store) putSite(site Site, audit func(*bolt.Tx, Site) error) (Site, error) {
	err := s.update(func(tx *bolt.Tx) error {
		old, err := getSite(tx, site.ID)
		if err != nil {
			return err
		}
		site, err = ChangeSite(old, site, s.now())
		if err != nil {
			return err
		}
		if audit != nil {
			if err := audit(tx, site); err != nil {
				return err
			}
		}
		return putSite(tx, site)
	})
	if err != nil {
		return Site{}, err
	}
	return site, nil
}

// noticeChanged tells whether what visitors are shown and asked changed.
func noticeChanged(old, site Site) bool {
	if !reflect.DeepEqual(normPurposes(old.Purposes), normPurposes(site.Purposes)) {
		return true
	}
	return !reflect.DeepEqual(normTexts(old.Texts), normTexts(site.Texts))
}

func normPurposes(ps []Purpose) []Purpose {
	out := make([]Purpose, len(ps))
	for i, p := range ps {
		if len(p.ConsentMode) == 0 {
			p.ConsentMode = nil
		}
		out[i] = p
	}
	return out
}

// normTexts decodes the texts so that spacing and key order do not count as
// a change.
func normTexts(t map[string]json.RawMessage) map[string]any {
	out := make(map[string]any, len(t))
	for k, v := range t {
		var x any
		if json.Unmarshal(v, &x) != nil {
			x = string(v)
		}
		out[k] = x
	}
	return out
}

func nextPolicyVersion(v string) (string, error) {
	if n, err := strconv.ParseUint(v, 10, 63); err == nil {
		return strconv.FormatUint(n+1, 10), nil
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := formatID(append(make([]byte, 8), b...))
	return strings.ToLower(id[13:]), nil
}

// Site returns one site's config, or ErrNotFound.
func (s *Store) Site(id string) (Site, error) {
	var site Site
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		site, err = getSite(tx, id)
		return err
	})
	return site, err
}

// Sites lists every site, ordered by id.
func (s *Store) Sites() ([]Site, error) {
	var sites []Site
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSites).ForEach(func(k, v []byte) error {
			var site Site
			if err := json.Unmarshal(v, &site); err != nil {
				return fmt.Errorf("%w: site %q: %v", ErrCorrupt, k, err)
			}
			sites = append(sites, site)
			return nil
		})
	})
	return sites, err
}

func getSite(tx *bolt.Tx, id string) (Site, error) {
	v := tx.Bucket(bucketSites).Get([]byte(id))
	if v == nil {
		return Site{}, ErrNotFound
	}
	var site Site
	if err := json.Unmarshal(v, &site); err != nil {
		return Site{}, fmt.Errorf("%w: site %q: %v", ErrCorrupt, id, err)
	}
	return site, nil
}

func putSite(tx *bolt.Tx, site Site) error {
	v, err := json.Marshal(site)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketSites).Put([]byte(site.ID), v)
}
