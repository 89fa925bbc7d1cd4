package server

import (
	"bytes"
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/store"
)

// Double opt-in pages: GET /c/{token} shows what is being confirmed and a
// Confirm button — the GET changes nothing, since mail scanners follow
// links — and POST /v1/confirm stores the confirm record.

var confirmPage = template.Must(template.New("c").Parse(`<!doctype html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a}button{font:inherit;padding:.6rem 1.2rem;border-radius:6px;border:2px solid #0b57d0;background:#0b57d0;color:#fff;cursor:pointer}</style>
</head><body><main>
<h1>{{.Title}}</h1><p>{{.Text}}</p>
{{if .Receipt}}<details><summary>{{.ReceiptLabel}}</summary><pre data-receipt style="white-space:pre-wrap;word-break:break-all">{{.Receipt}}</pre></details>{{end}}
{{if .Token}}<form method="post" action="/v1/confirm?lang={{.Lang}}"><input type="hidden" name="token" value="{{.Token}}"><button type="submit" data-assent-action="confirm">{{.Button}}</button></form>{{end}}
</main></body></html>`))

type confirmView struct {
	Lang, Title, Text, Button, Token string
	Receipt, ReceiptLabel            string // the confirm record's signed receipt, for the person to keep
}

func (s *Server) confirmHTML(c echo.Context, status int, v confirmView) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	var b bytes.Buffer
	if err := confirmPage.Execute(&b, v); err != nil {
		return err
	}
	return c.HTMLBlob(status, b.Bytes())
}

// confirmTexts are the page's texts for the visitor's language.
func (s *Server) confirmTexts(c echo.Context, site store.Site) localTexts {
	return s.texts.forLocale(site, c.QueryParam("lang"), c.Request().Header.Get("Accept-Language"))
}

// listName names what the person confirms: the site and its signup
// purposes' labels in their language.
func listName(site store.Site, t localTexts) string {
	name := site.Name
	if name == "" {
		name = site.ID
	}
	purposes, _ := t.m["purposes"].(map[string]any)
	var labels []string
	for _, p := range site.Purposes {
		if !p.Signup {
			continue
		}
		label := p.ID
		if m, ok := purposes[p.ID].(map[string]any); ok {
			if l, ok := m["label"].(string); ok && l != "" {
				label = l
			}
		}
		labels = append(labels, label)
	}
	if len(labels) > 0 {
		name += " — " + strings.Join(labels, ", ")
	}
	return name
}

func (s *Server) handleConfirmPage(c echo.Context) error {
	token := c.Param("token")
	siteID, _, err := s.store.ParseConfirmToken(token)
	var site store.Site
	if err == nil {
		site, err = s.store.Site(c.Request().Context(), siteID)
	}
	if err != nil {
		t := s.texts.forLocale(store.Site{}, c.QueryParam("lang"), c.Request().Header.Get("Accept-Language"))
		return s.confirmHTML(c, http.StatusNotFound, confirmView{Lang: t.locale, Title: t.str("confirm_title"), Text: t.str("confirm_invalid")})
	}
	t := s.confirmTexts(c, site)
	return s.confirmHTML(c, http.StatusOK, confirmView{
		Lang: t.locale, Title: t.str("confirm_title"), Button: t.str("confirm_button"), Token: token,
		Text: strings.ReplaceAll(t.str("confirm_text"), "{list}", listName(site, t)),
	})
}

type confirmResponse struct {
	ID          string `json:"id"`
	RecordedAt  string `json:"recorded_at"`
	DoubleOptIn string `json:"double_opt_in"`
	Receipt     string `json:"receipt,omitempty"` // of a confirmation stored now
}

// handleConfirm takes {"token"} as JSON or the page's form post. The token
// is the proof, so there is no origin check.
func (s *Server) handleConfirm(c echo.Context) error {
	r := c.Request()
	token, form, err := readToken(c)
	if err != nil {
		return err
	}
	meta := store.Record{IP: store.TruncateIP(s.clientAddr(r)), UserAgent: truncate(r.UserAgent(), 512),
		WidgetBuild: s.WidgetBuild(), GeoDB: s.geo.BuildDate()}
	var site store.Site
	if siteID, _, err := s.store.ParseConfirmToken(token); err == nil {
		if site, err = s.store.Site(c.Request().Context(), siteID); err == nil {
			d := s.decide(c, site)
			meta.Country, meta.Regime = d.Country, string(d.Regime)
		}
	}
	rec, queued, err := s.store.ConfirmWith(r.Context(), token, meta, s.withHooks(c, store.AppendOptions{}))
	s.hooks.Queued(queued)
	var ac *store.AlreadyConfirmedError
	receipt := ""
	switch {
	case errors.As(err, &ac):
		rec.ID, rec.RecordedAt = ac.ID, ac.At
	case errors.Is(err, store.ErrBadToken), errors.Is(err, store.ErrNotFound):
		if form {
			t := s.confirmTexts(c, site)
			return s.confirmHTML(c, http.StatusNotFound, confirmView{Lang: t.locale, Title: t.str("confirm_title"), Text: t.str("confirm_invalid")})
		}
		return apiError(http.StatusNotFound, "invalid_token", "this confirmation link is not valid")
	case errors.Is(err, store.ErrTokenExpired):
		if form {
			t := s.confirmTexts(c, site)
			return s.confirmHTML(c, http.StatusGone, confirmView{Lang: t.locale, Title: t.str("confirm_title"), Text: t.str("confirm_expired")})
		}
		return apiError(http.StatusGone, "token_expired", "this confirmation link is older than 7 days; sign up again to get a new one")
	case err != nil:
		return err
	default:
		s.met.recorded(rec.Site, rec.Event)
		if receipt, err = s.store.Receipt(rec); err != nil {
			return err
		}
	}
	if form {
		t := s.confirmTexts(c, site)
		rt, _ := t.m["receipt"].(map[string]any)
		receiptLabel, _ := rt["title"].(string)
		return s.confirmHTML(c, http.StatusOK, confirmView{Lang: t.locale, Title: t.str("confirmed_title"),
			Text:    strings.ReplaceAll(t.str("confirmed_text"), "{list}", listName(site, t)),
			Receipt: receipt, ReceiptLabel: receiptLabel})
	}
	return c.JSON(http.StatusOK, confirmResponse{ID: rec.ID, RecordedAt: fmtTime(rec.RecordedAt), DoubleOptIn: "confirmed", Receipt: receipt})
}

// readToken reads {"token"} from a JSON body or the token field of a form
// post; form tells which it was.
func readToken(c echo.Context) (token string, form bool, err error) {
	if strings.HasPrefix(c.Request().Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return c.FormValue("token"), true, nil
	}
	var req struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return "", false, err
	}
	return req.Token, false, nil
}

// handleOneClickUnsubscribe is RFC 8058's one-click unsubscribe: a mail
// client posts List-Unsubscribe=One-Click to the List-Unsubscribe URL.
func (s *Server) handleOneClickUnsubscribe(c echo.Context) error {
	r := c.Request()
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") && !strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") ||
		c.FormValue("List-Unsubscribe") != "One-Click" {
		return apiError(http.StatusBadRequest, "invalid_field", "want the form body List-Unsubscribe=One-Click (RFC 8058)")
	}
	meta := store.Record{IP: store.TruncateIP(s.clientAddr(r)), UserAgent: truncate(r.UserAgent(), 512), WidgetBuild: s.WidgetBuild(), GeoDB: s.geo.BuildDate()}
	rec, queued, err := s.store.UnsubscribeWith(r.Context(), c.Param("token"), meta, s.withHooks(c, store.AppendOptions{}))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadToken) {
		return apiError(http.StatusNotFound, "invalid_token", "this unsubscribe token is not valid")
	}
	if err != nil {
		return err
	}
	s.hooks.Queued(queued)
	s.met.recorded(rec.Site, rec.Event)
	return c.JSON(http.StatusOK, map[string]string{"id": rec.ID, "recorded_at": fmtTime(rec.RecordedAt)})
}
