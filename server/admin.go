package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/store"
)

const ctxToken = "assent.token"

// requireToken admits a request with a valid bearer token and remembers the
// token's name for the audit log. There are no cookies, so no CSRF.
func (s *Server) requireToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		auth := c.Request().Header.Get("Authorization")
		scheme, tok, ok := strings.Cut(auth, " ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.ToLower(scheme)), []byte("bearer")) != 1 || tok == "" {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="assent"`)
			return apiError(http.StatusUnauthorized, "unauthorized", "admin endpoints need Authorization: Bearer <token>")
		}
		name, ok := s.store.CheckToken(strings.TrimSpace(tok))
		if !ok {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="assent", error="invalid_token"`)
			return apiError(http.StatusUnauthorized, "unauthorized", "the bearer token is not valid")
		}
		c.Set(ctxToken, name)
		return next(c)
	}
}

func tokenName(c echo.Context) string { n, _ := c.Get(ctxToken).(string); return n }

func (s *Server) audit(c echo.Context, action, detail string) error {
	if err := s.store.Audit(tokenName(c), action, detail); err != nil {
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
	sites, err := s.store.Sites()
	return listJSON(c, sites, err)
}

func (s *Server) handleGetSite(c echo.Context) error {
	site, err := s.site(c.Param("site"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, site)
}

func (s *Server) handleCreateSite(c echo.Context) error {
	var site store.Site
	if err := decodeJSON(c, &site); err != nil {
		return err
	}
	created, err := s.store.CreateSite(site)
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
	if err := decodeJSON(c, &site); err != nil {
		return err
	}
	id := c.Param("site")
	if site.ID == "" {
		site.ID = id
	}
	if site.ID != id {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "id: the body's id must match the path")
	}
	updated, err := s.store.PutSite(site)
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

// subjectEmail reads and checks ?email= for the subject endpoints.
func subjectEmail(c echo.Context) (string, error) {
	email, err := checkEmail(c.QueryParam("email"))
	if err != nil {
		return "", apiError(http.StatusBadRequest, "invalid_email", err.Error())
	}
	return email, nil
}

func (s *Server) handleSubject(c echo.Context) error {
	email, err := subjectEmail(c)
	if err != nil {
		return err
	}
	recs, state, err := s.store.Subject(email)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []store.Record{}
	}
	if err := s.audit(c, "access", fmt.Sprintf("subject access: %d records", len(recs))); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"email": email, "state": state, "records": recs})
}

func (s *Server) handleEraseSubject(c echo.Context) error {
	email, err := subjectEmail(c)
	if err != nil {
		return err
	}
	rep, queued, err := s.store.EraseWith(c.Request().Context(), email, s.hooks.EraseOptions())
	if err != nil {
		return err
	}
	s.hooks.Queued(queued)
	// The audit entry never names the person: only counts.
	if err := s.audit(c, "erase", fmt.Sprintf("erased a subject: %d records", rep.Records)); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rep)
}

func (s *Server) handleVerify(c echo.Context) error {
	rep, err := s.store.Verify()
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
	if err := s.audit(c, "backup", "hot copy of the ledger"); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="assent-backup-%s.db"`, time.Now().UTC().Format("20060102T150405Z")))
	c.Response().WriteHeader(http.StatusOK)
	_, err := s.store.Backup(c.Response())
	return err
}

func (s *Server) handleListTokens(c echo.Context) error {
	toks, err := s.store.Tokens()
	return listJSON(c, toks, err)
}

func (s *Server) handleCreateToken(c echo.Context) error {
	var req struct {
		Name string `json:"name"`
	}
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	tok, err := s.store.CreateToken(req.Name)
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
	if err := s.audit(c, "token_create", "token "+req.Name); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]string{"name": req.Name, "token": tok})
}

func (s *Server) handleRevokeToken(c echo.Context) error {
	name := c.Param("name")
	if err := s.store.RevokeToken(name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiError(http.StatusNotFound, "not_found", fmt.Sprintf("no token %q", truncate(name, 64)))
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
	doc, err := s.store.Notice(hash)
	if errors.Is(err, store.ErrNotFound) {
		return apiError(http.StatusNotFound, "not_found", "no notice with that hash")
	}
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, doc)
}
