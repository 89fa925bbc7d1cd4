package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/mail"
	"github.com/assent/assent/store"
)

// Confirmation mails: a signup on a site with double opt-in queues one in
// the ledger's outbox, in the signup's own commit; the sender below drains
// the outbox over SMTP with retries, so a crash or an SMTP outage between
// the 201 and the send loses no mail.

// mailKind is the outbox kind of confirmation mails.
const mailKind = "mail"

// mailCap: at most 3 confirmation mails per address per 24 hours, whatever
// the number of signups (no mail bombing through someone else's address).
var mailCap = store.OutboxCap{N: 3, Per: 24 * time.Hour}

// DefaultMailRetry is when a mail that could not be sent is tried again:
// after about 10 s, 1 min, 5 min, 30 min, then hourly until 24 h have
// passed since it was queued; then it is failed.
var DefaultMailRetry = MailRetry{Steps: []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 30 * time.Minute}, Every: time.Hour, GiveUp: 24 * time.Hour}

// MailRetry is a retry schedule. Tests shorten it (Config.MailRetry).
type MailRetry struct {
	Steps  []time.Duration // the first retries
	Every  time.Duration   // then this often
	GiveUp time.Duration   // until this long after queueing
}

// next is when to retry after the given number of failed attempts, or zero
// to give up.
func (r MailRetry) next(attempts int, created, now time.Time) time.Time {
	if attempts <= len(r.Steps) {
		return now.Add(r.Steps[attempts-1])
	}
	if at := now.Add(r.Every); at.Sub(created) <= r.GiveUp {
		return at
	}
	return time.Time{}
}

// mailPayload is what a confirmation mail item keeps: enough to compose it
// at send time. The address is personal: erasure blanks the payload.
type mailPayload struct {
	To     string `json:"to"`
	Locale string `json:"locale"`
	Signup string `json:"signup"` // the signup record's id
}

// confirmationItems is the outbox function of a signup on a site with
// double opt-in.
func (s *Server) confirmationItems(rec store.Record) ([]store.OutboxItem, error) {
	p, err := json.Marshal(mailPayload{To: rec.Email, Locale: rec.Locale, Signup: rec.ID})
	if err != nil {
		return nil, err
	}
	return []store.OutboxItem{{
		Kind: mailKind, Site: rec.Site, Payload: p, Cap: mailCap,
		Key: hex.EncodeToString(s.store.SubjectDigest(rec.Email)), // never the address itself
	}}, nil
}

// runMailSender sends due mails until ctx is done. It wakes when a commit
// queues a mail, when the next retry is due, and every 30 s regardless.
func (s *Server) runMailSender(ctx context.Context) {
	const poll = 30 * time.Second
	for {
		next := s.sendDueMail(ctx)
		wait := poll
		if !next.IsZero() {
			wait = min(max(time.Until(next), 0), poll)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.store.OutboxWake():
		case <-t.C:
		}
		t.Stop()
	}
}

// sendDueMail sends what is due now and returns when the next mail is due.
func (s *Server) sendDueMail(ctx context.Context) time.Time {
	for ctx.Err() == nil {
		items, next, err := s.store.OutboxDue(ctx, mailKind, time.Now(), 16)
		if err != nil {
			s.log.Error("mail outbox unreadable", "err", err.Error())
			return time.Now().Add(10 * time.Second)
		}
		if len(items) == 0 {
			return next
		}
		for _, it := range items {
			s.sendOne(ctx, it)
		}
	}
	return time.Time{}
}

func (s *Server) sendOne(ctx context.Context, it store.OutboxItem) {
	a := store.Attempt{}
	if err := s.deliver(ctx, it); err != nil {
		if ctx.Err() != nil {
			return // shutting down: the item stays queued as it was
		}
		a.Err = err.Error()
		var me *mail.Error
		temporary := true
		if errors.As(err, &me) {
			a.Code, temporary = me.Code, me.Temporary
		}
		if temporary {
			a.Retry = s.mailRetry().next(it.Attempts+1, it.CreatedAt, time.Now())
		}
	}
	got, err := s.store.OutboxAttempt(ctx, it.ID, a)
	if err != nil {
		s.log.Error("mail outbox: recording an attempt failed", "item", it.ID, "err", err.Error())
		return
	}
	switch got.State {
	case store.OutboxSent:
		s.log.Info("mail sent", "item", it.ID, "site", it.Site, "attempts", got.Attempts)
	case store.OutboxFailed:
		s.log.Warn("mail failed for good", "item", it.ID, "site", it.Site, "attempts", got.Attempts, "code", got.LastCode)
	default:
		s.log.Info("mail not sent; will retry", "item", it.ID, "site", it.Site, "attempts", got.Attempts, "code", got.LastCode, "retry_at", got.NextAttemptAt)
	}
}

func (s *Server) mailRetry() MailRetry {
	if s.cfg.MailRetry != nil {
		return *s.cfg.MailRetry
	}
	return DefaultMailRetry
}

// deliver composes one confirmation mail from its item and sends it.
func (s *Server) deliver(ctx context.Context, it store.OutboxItem) error {
	var p mailPayload
	if it.Payload == nil || json.Unmarshal(it.Payload, &p) != nil || p.To == "" {
		return &mail.Error{Err: errors.New("no recipient (erased?)")}
	}
	site, err := s.store.Site(ctx, it.Site)
	if err != nil {
		return &mail.Error{Err: fmt.Errorf("site %q: %w", it.Site, err)}
	}
	m := s.confirmationMail(site, p, it.ID)
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return s.cfg.Mail.Send(sctx, m)
}

// confirmationMail composes the mail in the signup's language: the site's
// texts over the built-in ones, {link} replaced by the confirmation link.
// Nothing personal but the To: no name, no IP, no tracking.
func (s *Server) confirmationMail(site store.Site, p mailPayload, itemID string) mail.Message {
	t := s.texts.forLocale(site, p.Locale)
	// The page opens in the signup's language, whatever the browser says.
	link := s.publicURL() + "/c/" + s.store.ConfirmToken(site.ID, p.Signup) + "?lang=" + url.QueryEscape(t.locale)
	name := site.Name
	if name == "" {
		name = site.ID
	}
	fill := func(v string) string { return strings.ReplaceAll(v, "{site}", name) }
	subject := fill(t.str("confirm_subject"))
	body := fill(t.str("confirm_body"))
	text := strings.ReplaceAll(body, "{link}", link)
	var h strings.Builder
	h.WriteString(`<!doctype html><html lang="` + html.EscapeString(t.locale) + `"><meta charset="utf-8"><body style="font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;max-width:34rem">`)
	for _, para := range strings.Split(body, "\n\n") {
		esc := html.EscapeString(para)
		a := `<a href="` + html.EscapeString(link) + `" style="display:inline-block;padding:.6rem 1.2rem;border-radius:6px;background:#0b57d0;color:#fff;text-decoration:none">` + html.EscapeString(t.str("confirm_button")) + `</a><br><small>` + html.EscapeString(link) + `</small>`
		esc = strings.ReplaceAll(esc, "{link}", a)
		h.WriteString("<p>" + strings.ReplaceAll(esc, "\n", "<br>") + "</p>")
	}
	h.WriteString("</body></html>")
	return mail.Message{
		To: p.To, Subject: subject, Text: text, HTML: h.String(), Lang: t.locale,
		MessageID:   "assent." + p.Signup + "." + itemID,
		Unsubscribe: s.publicURL() + "/u/" + s.store.UnsubscribeToken(site.ID, p.To),
	}
}

// publicURL is --public-url without its trailing slash, or "" when unset:
// links that leave the browser (mails, a signup's unsubscribe_url, webhook
// payloads, exports) never come from a request's Host.
func (s *Server) publicURL() string { return strings.TrimSuffix(s.cfg.PublicURL, "/") }

// mailView is one mail as admins see it.
type mailView struct {
	ID        string `json:"id"`
	To        string `json:"to"`
	Kind      string `json:"kind"`
	State     string `json:"state"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
	CreatedAt string `json:"created_at"`
	SentAt    string `json:"sent_at"`
	NextAt    string `json:"next_attempt_at"`
}

// handleMailList answers GET /v1/admin/sites/{site}/mail: the site's mails,
// newest first (?limit=, ?before= an id for the next page).
func (s *Server) handleMailList(c echo.Context) error {
	site, err := s.site(c.Request().Context(), c.Param("site"))
	if err != nil {
		return err
	}
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		if _, err := fmt.Sscan(v, &limit); err != nil || limit < 1 || limit > 1000 {
			return apiError(http.StatusBadRequest, "invalid_field", "limit: a number from 1 to 1000")
		}
	}
	items, err := s.store.OutboxList(c.Request().Context(), store.OutboxQuery{Site: site.ID, Kind: mailKind, Limit: limit, Before: c.QueryParam("before")})
	var ve *store.ValidationError
	if errors.As(err, &ve) {
		return apiError(http.StatusBadRequest, "invalid_field", "before: not a mail id")
	}
	if err != nil {
		return err
	}
	out := make([]mailView, 0, len(items))
	for _, it := range items {
		var p mailPayload
		_ = json.Unmarshal(it.Payload, &p)
		v := mailView{ID: it.ID, To: p.To, Kind: "confirm", State: it.State, Attempts: it.Attempts, LastError: it.LastError,
			CreatedAt: fmtTime(it.CreatedAt)}
		if it.State == store.OutboxSent {
			v.SentAt = fmtTime(it.DoneAt)
		}
		if it.State == store.OutboxQueued {
			v.NextAt = fmtTime(it.NextAttemptAt)
		}
		out = append(out, v)
	}
	return c.JSON(http.StatusOK, out)
}
