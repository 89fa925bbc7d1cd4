package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

// handleWidget serves /w/{site}.js: the bundle wrapped around the site's
// config (without texts). It never breaks the host page: unknown sites are
// a 404, everything else is cacheable and compressed once.
func (s *Server) handleWidget(c echo.Context) error {
	name := c.Param("script")
	id, ok := strings.CutSuffix(name, ".js")
	if !ok {
		return apiError(http.StatusNotFound, "not_found", "widget scripts end in .js")
	}
	site, err := s.site(c.Request().Context(), id)
	if err != nil {
		return err
	}
	if s.cfg.Demo && id == demoSiteID {
		applyDemoLook(&site, c.QueryParam("position"), c.QueryParam("scheme"))
	}
	return serveScript(c, s.bundle.script(site))
}

// handleConsentModeStub serves /w/{site}/consent-mode.js, the synchronous
// Consent Mode stub for the top of <head>: cacheable like the widget.
func (s *Server) handleConsentModeStub(c echo.Context) error {
	site, err := s.site(c.Request().Context(), c.Param("site"))
	if err != nil {
		return err
	}
	return serveScript(c, s.bundle.stubScript(site))
}

// serveScript answers a script that runs on other sites' pages: cacheable,
// compressed, readable from any origin, 304 on a matching ETag.
func serveScript(c echo.Context, sc *servedScript) error {
	h := c.Response().Header()
	h.Set("ETag", sc.etag)
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("Vary", "Accept-Encoding")
	if etagMatch(c.Request().Header.Get("If-None-Match"), sc.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	body, enc := sc.pick(c.Request().Header.Get("Accept-Encoding"))
	if enc != "" {
		h.Set("Content-Encoding", enc)
	}
	return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", body)
}

type decisionResponse struct {
	Regime        geo.Regime      `json:"regime"`
	Country       string          `json:"country"`
	Source        string          `json:"source"`
	PolicyVersion string          `json:"policy_version"`
	Locale        string          `json:"locale"`
	Texts         json.RawMessage `json:"texts"`
}

func (s *Server) handleDecision(c echo.Context) error {
	site, err := s.site(c.Request().Context(), c.Param("site"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	d := s.decide(c, site)
	lang := c.QueryParam("lang")
	if len(lang) > 35 {
		return apiError(http.StatusBadRequest, "invalid_field", "lang: at most 35 characters")
	}
	n := s.texts.notice(site, lang, c.Request().Header.Get("Accept-Language"))
	return c.JSON(http.StatusOK, decisionResponse{
		Regime: d.Regime, Country: d.Country, Source: d.Source,
		PolicyVersion: site.PolicyVersion, Locale: n.Locale, Texts: n.Texts,
	})
}

// choiceRequest is the body of a consent or signup write. Fields the server
// decides (time, regime, country, address, agent) are never read from it.
type choiceRequest struct {
	VisitorID     string          `json:"visitor_id"`
	Choices       map[string]bool `json:"choices"`
	NoticeVersion string          `json:"notice_version"`
	Locale        string          `json:"locale"`
	PageURL       string          `json:"page_url"`
	Source        string          `json:"source"`
	GPC           bool            `json:"gpc"`
	Email         string          `json:"email"`
	Name          string          `json:"name"`
	Website       string          `json:"website"` // the signup form's honeypot
	// Replaces is the id of the visitor's choice in force before this one,
	// which tells a withdrawal from a first refusal.
	Replaces string `json:"replaces"`
}

type writeResponse struct {
	ID             string `json:"id"`
	RecordedAt     string `json:"recorded_at"`
	Regime         string `json:"regime"`
	Country        string `json:"country"`
	Receipt        string `json:"receipt"`
	UnsubscribeURL string `json:"unsubscribe_url,omitempty"`
	DoubleOptIn    string `json:"double_opt_in,omitempty"` // "pending" on a site with double opt-in
}

func (s *Server) handleConsent(c echo.Context) error { return s.write(c, false) }
func (s *Server) handleSignup(c echo.Context) error  { return s.write(c, true) }

// write stores one banner choice or signup and answers only once the record
// is on disk.
func (s *Server) write(c echo.Context, signup bool) error {
	site, err := s.site(c.Request().Context(), c.Param("site"))
	if err != nil {
		return err
	}
	if err := s.checkOrigin(c, site); err != nil {
		return err
	}
	var req choiceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := req.validate(signup); err != nil {
		return err
	}
	if signup && req.Website != "" {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "website: this field must stay empty")
	}
	d := s.decide(c, site)
	r := c.Request()
	gpc := req.GPC || r.Header.Get("Sec-GPC") == "1"

	choices := req.Choices
	if gpc { // GPC is an opt-out of sale/sharing in every regime.
		choices = denyAdPurposes(site, choices)
	}
	basis := "explicit"
	if signup {
		for _, p := range site.Purposes {
			if !p.RequiredForSignup {
				continue
			}
			if d.Regime == geo.Notice {
				choices[p.ID], basis = true, "implied"
			} else if !choices[p.ID] {
				return apiError(http.StatusUnprocessableEntity, "consent_required",
					fmt.Sprintf("%s: this signup needs your consent to %q", p.ID, p.ID))
			}
		}
	}
	var prev map[string]string
	if !signup {
		if prev, err = s.replaced(c.Request().Context(), site, req.Replaces, req.VisitorID); err != nil {
			return err
		}
	}
	states, event, err := site.Resolve(choices, signup, prev)
	if err != nil {
		var up *store.UnknownPurposeError
		if errors.As(err, &up) {
			return apiError(http.StatusUnprocessableEntity, "unknown_purpose", fmt.Sprintf("choices: site %q has no purpose %q", site.ID, up.ID))
		}
		return err
	}
	n := s.texts.notice(site, req.Locale, r.Header.Get("Accept-Language"))
	noticeHash, err := s.texts.stored(c.Request().Context(), s.store, n)
	if err != nil {
		return err
	}
	// A signup is always recorded as one, whatever the body says: the
	// suppression list and the signups export rely on it.
	source := req.Source
	switch {
	case signup:
		source = "signup"
	case source == "":
		source = "banner"
	}
	version := req.NoticeVersion
	if version == "" {
		version = site.PolicyVersion
	}
	rec := store.Record{
		Site: site.ID, Event: event, Source: source, Basis: basis,
		Email: req.Email, Name: req.Name, VisitorID: req.VisitorID,
		Country: d.Country, Regime: string(d.Regime), GeoDB: s.geo.BuildDate(),
		NoticeVersion: version, NoticeHash: noticeHash, WidgetBuild: s.WidgetBuild(), Locale: n.Locale,
		Choices: states, PageURL: req.PageURL, IP: store.TruncateIP(s.clientAddr(r)),
		UserAgent: truncate(r.UserAgent(), 512), GPC: gpc, DNT: r.Header.Get("DNT") == "1",
	}
	doi := signup && site.DoubleOptIn
	var opts store.AppendOptions
	if doi {
		// The signup, its pending state and its confirmation mail are
		// committed together: a crash after the 201 still sends the mail.
		opts = store.AppendOptions{OptIn: "pending", Outbox: s.confirmationItems}
	}
	rec, queued, err := s.store.AppendWith(r.Context(), rec, s.withHooks(c, opts))
	if errors.Is(err, store.ErrSuppressed) {
		return apiError(http.StatusConflict, "suppressed", "this address asked to be erased and cannot be signed up again here; the site owner can help")
	}
	if err != nil {
		return err
	}
	s.hooks.Queued(queued)
	s.met.recorded(site.ID, rec.Event)
	return s.answerRecord(c, site, rec, signup, doi)
}

// replaced returns the choices of the record a new choice replaces: a
// record of this site by the same visitor. Anything else (no id, another
// visitor's record, one erased or purged) is no previous choice, so a
// visitor's word alone never makes a record a withdrawal.
func (s *Server) replaced(ctx context.Context, site store.Site, id, visitor string) (map[string]string, error) {
	if id == "" || visitor == "" {
		return nil, nil
	}
	raw, err := store.ParseID(id)
	if err != nil {
		return nil, apiError(http.StatusUnprocessableEntity, "invalid_field", "replaces: a record id of 26 characters, as a 201 answered")
	}
	// The id carries its recorded_at to the nanosecond.
	at := time.Unix(0, store.IDTime(raw)).UTC()
	var prev map[string]string
	err = s.store.Records(ctx, site.ID, store.Query{From: at, To: at.Add(time.Nanosecond)}, func(r store.Record) error {
		if r.ID == id && r.VisitorID == visitor && !r.Erased {
			prev = r.Choices
		}
		return nil
	})
	return prev, err
}

func (s *Server) answerRecord(c echo.Context, site store.Site, rec store.Record, signup, doi bool) error {
	receipt, err := s.store.Receipt(rec)
	if err != nil {
		return err
	}
	resp := writeResponse{
		ID: rec.ID, RecordedAt: rec.RecordedAt.UTC().Format(rfc3339Nano),
		Regime: rec.Regime, Country: rec.Country, Receipt: receipt,
	}
	if base := s.publicURL(); signup && base != "" {
		resp.UnsubscribeURL = base + "/u/" + s.store.UnsubscribeToken(site.ID, rec.Email)
	}
	if doi {
		resp.DoubleOptIn = "pending"
	}
	return c.JSON(http.StatusCreated, resp)
}

// rfc3339Nano keeps trailing zeros so every time has nine fraction digits.
const rfc3339Nano = "2006-01-02T15:04:05.000000000Z07:00"

func denyAdPurposes(site store.Site, choices map[string]bool) map[string]bool {
	out := make(map[string]bool, len(choices))
	for k, v := range choices {
		out[k] = v
	}
	for _, p := range site.Purposes {
		if p.Required || p.RequiredForSignup { // GPC never blocks a signup the visitor asks for
			continue
		}
		for _, t := range p.ConsentMode {
			if strings.HasPrefix(t, "ad_") {
				out[p.ID] = false
			}
		}
	}
	return out
}

func (r *choiceRequest) validate(signup bool) error {
	if r.Choices == nil {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "choices: required, an object of purpose ids to booleans")
	}
	for _, f := range []struct{ name, value string }{
		{"visitor_id", r.VisitorID}, {"notice_version", r.NoticeVersion}, {"locale", r.Locale}, {"page_url", r.PageURL}, {"name", r.Name},
	} {
		if err := checkText(f.name, f.value); err != nil {
			return err
		}
	}
	if len(r.VisitorID) > 64 || !printableASCII(r.VisitorID) {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "visitor_id: at most 64 printable ASCII characters")
	}
	if len(r.NoticeVersion) > 64 {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "notice_version: at most 64 characters")
	}
	if len(r.Locale) > 35 || !printableASCII(r.Locale) || strings.ContainsAny(r.Locale, " ") {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "locale: a BCP 47 tag of at most 35 characters")
	}
	if r.PageURL != "" {
		u, err := url.Parse(r.PageURL)
		if len(r.PageURL) > 2048 || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return apiError(http.StatusUnprocessableEntity, "invalid_field", "page_url: an http or https URL of at most 2048 bytes")
		}
	}
	switch r.Source {
	case "", "banner", "preferences", "embed", "signup", "api":
	default:
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "source: one of banner, preferences, embed, signup, api")
	}
	if len(r.Choices) > 64 {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "choices: too many purposes")
	}
	if !signup {
		r.Email, r.Name = "", ""
		return nil
	}
	if utf8.RuneCountInString(r.Name) > 200 {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "name: at most 200 characters")
	}
	if strings.ContainsAny(r.Name, "\r\n") {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "name: a single line")
	}
	email, err := checkEmail(r.Email)
	if err != nil {
		return apiError(http.StatusUnprocessableEntity, "invalid_email", err.Error())
	}
	r.Email = email
	return nil
}

// checkEmail accepts a bare address (no display name) of at most 254 bytes,
// as net/mail parses it, and returns it normalised.
func checkEmail(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	switch {
	case s == "":
		return "", errors.New("email: required")
	case len(s) > 254:
		return "", errors.New("email: at most 254 bytes")
	case strings.ContainsAny(s, "\r\n"):
		return "", errors.New("email: must be one line")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("email: %s", strings.TrimPrefix(err.Error(), "mail: "))
	}
	if a.Name != "" || a.Address != s {
		return "", errors.New("email: give the address alone, without a name or brackets")
	}
	return store.NormalizeEmail(s), nil
}

// checkText refuses a stored string that carries a control character (C0,
// DEL, C1: NUL, CR, LF, ESC, …) or a bidi override or isolate (U+202A–U+202E,
// U+2066–U+2069), which would forge lines in logs and exports or reorder
// what a reader sees.
func checkText(field, s string) error {
	for _, r := range s {
		if unicode.IsControl(r) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return apiError(http.StatusUnprocessableEntity, "invalid_field", fmt.Sprintf("%s: control characters and bidi overrides (here %U) are not allowed", field, r))
		}
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// decodeJSON reads one JSON object: invalid UTF-8, malformed JSON, a wrong
// type or trailing data are a 400 with a message saying which.
func decodeJSON(c echo.Context, v any) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apiError(http.StatusRequestEntityTooLarge, "body_too_large", "request body is over 16 KiB")
		}
		return apiError(http.StatusBadRequest, "invalid_json", "could not read the request body")
	}
	if !utf8.Valid(body) {
		return apiError(http.StatusBadRequest, "invalid_json", "request body is not valid UTF-8")
	}
	return decodeBytes(body, v)
}

// decodeBytes decodes one JSON object already read, as decodeJSON does.
func decodeBytes(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return apiError(http.StatusBadRequest, "invalid_json", fmt.Sprintf("%s: wrong type, want %s", te.Field, te.Type))
		}
		return apiError(http.StatusBadRequest, "invalid_json", "malformed JSON: "+err.Error())
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, "invalid_json", "malformed JSON: data after the object")
	}
	return nil
}

// checkOrigin refuses a browser write from a page the site did not allow.
// A write with no Origin (a server-side caller) is accepted.
func (s *Server) checkOrigin(c echo.Context, site store.Site) error {
	origin := c.Request().Header.Get("Origin")
	if origin == "" {
		return nil
	}
	if !site.AllowsOrigin(origin) {
		s.rejected.add(site.ID, origin, s.log)
		s.met.rejectedOrigin(site.ID)
		return apiError(http.StatusForbidden, "origin_not_allowed", fmt.Sprintf("origin %q is not allowed for site %q", truncate(origin, 100), site.ID))
	}
	h := c.Response().Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	return nil
}

func (s *Server) handlePreflight(c echo.Context) error {
	site, err := s.site(c.Request().Context(), c.Param("site"))
	if err != nil {
		return err
	}
	if err := s.checkOrigin(c, site); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	return c.NoContent(http.StatusNoContent)
}

var unsubscribePage = template.Must(template.New("u").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>Unsubscribe</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a}button{font:inherit;padding:.6rem 1.2rem;border-radius:6px;border:2px solid #1a1a1a;background:#fff;cursor:pointer}</style>
</head><body><main>
{{if .Done}}<h1>You are unsubscribed</h1><p>We stored your withdrawal for {{.Site}} at {{.At}}. You will get no more mail from this subscription.</p>
{{else}}<h1>Unsubscribe</h1><p>This ends your email subscription to <strong>{{.Site}}</strong>.</p>
<form method="post" action="/v1/unsubscribe"><input type="hidden" name="token" value="{{.Token}}"><button type="submit">Unsubscribe</button></form>{{end}}
</main></body></html>`))

// handleUnsubscribePage only shows a button: mail scanners follow links, so
// the GET must change nothing.
func (s *Server) handleUnsubscribePage(c echo.Context) error {
	site, _, err := s.store.ParseUnsubscribeToken(c.Param("token"))
	if err != nil {
		return c.HTML(http.StatusNotFound, "<!doctype html><title>Unsubscribe</title><p>This unsubscribe link is not valid.</p>")
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	var b bytes.Buffer
	_ = unsubscribePage.Execute(&b, map[string]any{"Site": site, "Token": c.Param("token")})
	return c.HTMLBlob(http.StatusOK, b.Bytes())
}

// handleUnsubscribe takes {"token"} as JSON or the page's form post. The
// token is the proof, so there is no origin check.
func (s *Server) handleUnsubscribe(c echo.Context) error {
	r := c.Request()
	var token string
	form := strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded")
	if form {
		token = c.FormValue("token")
	} else {
		var req struct {
			Token string `json:"token"`
		}
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
		token = req.Token
	}
	meta := store.Record{IP: store.TruncateIP(s.clientAddr(r)), UserAgent: truncate(r.UserAgent(), 512), WidgetBuild: s.WidgetBuild(), GeoDB: s.geo.BuildDate()}
	rec, queued, err := s.store.UnsubscribeWith(r.Context(), token, meta, s.withHooks(c, store.AppendOptions{}))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadToken) {
		return apiError(http.StatusNotFound, "invalid_token", "this unsubscribe token is not valid")
	}
	if err != nil {
		return err
	}
	s.hooks.Queued(queued)
	at := rec.RecordedAt.UTC().Format(rfc3339Nano)
	if form {
		var b bytes.Buffer
		_ = unsubscribePage.Execute(&b, map[string]any{"Done": true, "Site": rec.Site, "At": at})
		return c.HTMLBlob(http.StatusOK, b.Bytes())
	}
	return c.JSON(http.StatusOK, map[string]string{"id": rec.ID, "recorded_at": at})
}

func (s *Server) handleJWKS(c echo.Context) error {
	b, err := s.store.JWKS()
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSONBlob(http.StatusOK, b)
}

func (s *Server) handleHealth(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	if err := s.store.Ping(c.Request().Context()); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// site loads a site or answers 404 unknown_site.
func (s *Server) site(ctx context.Context, id string) (store.Site, error) {
	site, err := s.store.Site(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return site, apiError(http.StatusNotFound, "unknown_site", fmt.Sprintf("no site %q", truncate(id, 64)))
	}
	return site, err
}
