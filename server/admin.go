package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

func (s *Server) audit(c echo.Context, action, detail string) error {
	if err := s.store.Audit(c.Request().Context(), actorOf(c).auditName(), action, detail); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// listJSON answers a list, as [] rather than null when it is empty.
func listJSON[T any](c echo.Context, list []T, err error) error {
	if err != nil {
		return err
	}
	if list == nil {
		list = []T{}
	}
	return c.JSON(http.StatusOK, list)
}

func (s *Server) handleListSites(c echo.Context) error {
	sites, err := s.store.Sites(c.Request().Context())
	return listJSON(c, sites, err)
}

func (s *Server) handleGetSite(c echo.Context) error {
	site, err := s.site(c.Request().Context(), c.Param("site"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, site)
}

// decodeSite reads a site config strictly: a key that a site config does not
// have, anywhere in it, is a 422 naming the key, never silently dropped.
func decodeSite(c echo.Context, site *store.Site) error {
	var raw json.RawMessage
	if err := decodeJSON(c, &raw); err != nil {
		return err
	}
	if err := store.CheckSiteKeys(raw); err != nil {
		return siteError(err, "")
	}
	if err := decodeBytes(raw, site); err != nil {
		return err
	}
	return checkText("name", site.Name)
}

func (s *Server) handleCreateSite(c echo.Context) error {
	var site store.Site
	if err := decodeSite(c, &site); err != nil {
		return err
	}
	if err := s.checkMail(site); err != nil {
		return err
	}
	created, err := s.store.CreateSite(c.Request().Context(), site)
	if err != nil {
		return siteError(err, site.ID)
	}
	if err := s.audit(c, "site_create", "site "+created.ID+" policy_version "+created.PolicyVersion); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, created)
}

func (s *Server) handlePutSite(c echo.Context) error {
	var site store.Site
	if err := decodeSite(c, &site); err != nil {
		return err
	}
	id := c.Param("site")
	if site.ID == "" {
		site.ID = id
	}
	if site.ID != id {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "id: the body's id must match the path")
	}
	if err := s.checkMail(site); err != nil {
		return err
	}
	updated, err := s.store.PutSite(c.Request().Context(), site)
	if err != nil {
		return siteError(err, id)
	}
	if err := s.audit(c, "site_update", "site "+updated.ID+" policy_version "+updated.PolicyVersion); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, updated)
}

func siteError(err error, id string) error {
	var ve *store.ValidationError
	switch {
	case errors.As(err, &ve):
		return apiError(http.StatusUnprocessableEntity, "invalid_field", ve.Error())
	case errors.Is(err, store.ErrSiteExists):
		return apiError(http.StatusConflict, "site_exists", fmt.Sprintf("site %q exists already; PUT /v1/admin/sites/%s replaces it", id, id))
	case errors.Is(err, store.ErrNotFound):
		return apiError(http.StatusNotFound, "unknown_site", fmt.Sprintf("no site %q", truncate(id, 64)))
	}
	return err
}

// subjectRef reads the person a subject endpoint names: exactly one of
// ?email=, ?visitor_id= and (for look-ups) ?receipt= (a record id).
func subjectRef(c echo.Context, receipt bool) (store.SubjectRef, error) {
	var ref store.SubjectRef
	params := []string{"email", "visitor_id"}
	if receipt {
		params = append(params, "receipt")
	}
	given := 0
	for _, p := range params {
		if c.QueryParam(p) != "" {
			given++
		}
	}
	if given != 1 {
		return ref, apiError(http.StatusBadRequest, "invalid_field", "give exactly one of ?"+strings.Join(params, "=, ?")+"=")
	}
	switch {
	case c.QueryParam("email") != "":
		email, err := checkEmail(c.QueryParam("email"))
		if err != nil {
			return ref, apiError(http.StatusBadRequest, "invalid_email", err.Error())
		}
		ref.Email = email
	case c.QueryParam("visitor_id") != "":
		v := c.QueryParam("visitor_id")
		if len(v) > 64 || !printableASCII(v) {
			return ref, apiError(http.StatusBadRequest, "invalid_field", "visitor_id: at most 64 printable ASCII characters")
		}
		ref.VisitorID = v
	default:
		ref.RecordID = c.QueryParam("receipt")
	}
	return ref, nil
}

// subjectError turns a look-up's or an erasure's error into an API error.
func subjectError(err error) error {
	var ve *store.ValidationError
	switch {
	case errors.As(err, &ve):
		return apiError(http.StatusBadRequest, "invalid_field", ve.Error())
	case errors.Is(err, store.ErrNotFound):
		return apiError(http.StatusNotFound, "not_found", "no record with that id")
	}
	return err
}

func (s *Server) handleSubject(c echo.Context) error {
	ref, err := subjectRef(c, true)
	if err != nil {
		return err
	}
	recs, state, err := s.store.Lookup(c.Request().Context(), ref)
	if err != nil {
		return subjectError(err)
	}
	if recs == nil {
		recs = []store.Record{}
	}
	if err := s.audit(c, "access", fmt.Sprintf("subject access: %d records", len(recs))); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"email": state.Email, "state": state, "records": recs, "report": store.Report(recs, state)})
}

// handleEraseSubject erases a person; the store writes the audit entry
// (counts only, never the person) in the erasure's own transaction.
func (s *Server) handleEraseSubject(c echo.Context) error {
	ref, err := subjectRef(c, false)
	if err != nil {
		return err
	}
	rep, queued, err := s.store.EraseWith(c.Request().Context(), actorOf(c).auditName(), ref, s.hooks.EraseOptions())
	if err != nil {
		return subjectError(err)
	}
	s.hooks.Queued(queued)
	return c.JSON(http.StatusOK, rep)
}

func (s *Server) handleVerify(c echo.Context) error {
	rep, err := s.store.Verify(c.Request().Context())
	if err != nil {
		return err
	}
	detail := fmt.Sprintf("ok=%t records=%d", rep.OK, rep.Records)
	if !rep.OK {
		detail += " first bad record " + rep.BadID + " in site " + rep.BadSite
	}
	if err := s.audit(c, "verify", detail); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rep)
}

func (s *Server) handleBackup(c echo.Context) error {
	if _, ok := store.BoltStore(s.store); !ok {
		return apiError(http.StatusNotImplemented, "not_supported",
			"this ledger is a PostgreSQL database: back it up with pg_dump or pg_basebackup (docs/deploy.md)")
	}
	if err := s.audit(c, "backup", "hot copy of the ledger"); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="assent-backup-%s.db"`, time.Now().UTC().Format("20060102T150405Z")))
	// The status goes out with the first bytes; a failure after them
	// aborts the connection (errorHandler), so a client never takes a
	// short copy for a whole one.
	_, err := s.store.Backup(c.Request().Context(), c.Response())
	if err != nil && !c.Response().Committed {
		c.Response().Header().Del("Content-Disposition")
	}
	return err
}

func (s *Server) handleListTokens(c echo.Context) error {
	toks, err := s.store.Tokens(c.Request().Context())
	return listJSON(c, toks, err)
}

func (s *Server) handleCreateToken(c echo.Context) error {
	var req struct {
		Name string `json:"name"`
		Role string `json:"role"`
	}
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	role, err := store.ParseRole(req.Role)
	if err != nil {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", err.Error())
	}
	tok, err := s.store.CreateTokenRole(c.Request().Context(), req.Name, role)
	if err != nil {
		if errors.Is(err, store.ErrExists) {
			return apiError(http.StatusConflict, "token_exists", err.Error())
		}
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			return apiError(http.StatusUnprocessableEntity, "invalid_field", ve.Error())
		}
		return err
	}
	// An empty name was given one by the ledger (admin-<n>): audit and
	// answer under that name, the one a later revoke must use.
	name := req.Name
	if t, ok := s.store.TokenFor(c.Request().Context(), tok); ok {
		name = t.Name
	}
	if err := s.audit(c, "token_create", "token "+name+" role "+string(role)); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]string{"name": name, "role": string(role), "token": tok})
}

func (s *Server) handleRevokeToken(c echo.Context) error {
	name := c.Param("name")
	if err := s.store.RevokeToken(c.Request().Context(), name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiError(http.StatusNotFound, "not_found", fmt.Sprintf("no token %q", truncate(name, 64)))
		}
		if errors.Is(err, store.ErrLastAdmin) {
			return apiError(http.StatusConflict, "last_admin", fmt.Sprintf("token %q is the last admin token or user; create another admin first", truncate(name, 64)))
		}
		return err
	}
	if err := s.audit(c, "token_revoke", "token "+name); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleNotice returns the exact notice a record cites by its notice_hash:
// the locale, policy version, purposes and texts the visitor was shown.
func (s *Server) handleNotice(c echo.Context) error {
	hash := c.Param("hash")
	if !strings.HasPrefix(hash, "sha256:") || len(hash) != 7+64 {
		return apiError(http.StatusBadRequest, "invalid_field", "hash: want sha256:<64 hex digits>, as in a record's notice_hash")
	}
	doc, err := s.store.Notice(c.Request().Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		return apiError(http.StatusNotFound, "not_found", "no notice with that hash")
	}
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, doc)
}

// checkMail refuses double opt-in on a server that cannot send mail.
func (s *Server) checkMail(site store.Site) error {
	if site.DoubleOptIn && s.cfg.Mail == nil {
		return apiError(http.StatusUnprocessableEntity, "mail_not_configured",
			"double_opt_in: this server sends no mail; start it with --smtp, --mail-from and --public-url")
	}
	return nil
}

// handleWhoami tells the console who is signed in, with which role, and the
// CSRF token its changes must carry (empty for a bearer token).
func (s *Server) handleWhoami(c echo.Context) error {
	a := actorOf(c)
	kind := "token"
	if a.User {
		kind = "user"
	}
	return c.JSON(http.StatusOK, map[string]string{"kind": kind, "name": a.Name, "role": string(a.Role), "csrf": a.CSRF})
}

// handleTexts gives the console the widget's built-in texts per language
// (the placeholders of the site editor) and the default opt-in countries.
func (s *Server) handleTexts(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"texts": s.texts.builtin, "opt_in_countries": geo.DefaultOptIn})
}
