package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/store"
)

// Console sign-in: POST /admin/login with the form fields email and
// password sets the assent_session cookie and sends the browser to the
// console; the session and its expiry are kept in the ledger, so a restart
// signs nobody out.

func (s *Server) handleLogin(c echo.Context) error {
	if err := sameOrigin(c); err != nil {
		return err
	}
	email, password := c.FormValue("email"), c.FormValue("password")
	keys := []string{"email " + store.NormalizeEmail(email), "addr " + loginAddr(s.clientAddr(c.Request()))}
	if wait := s.logins.wait(keys); wait > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds()+0.999)))
		return apiError(http.StatusTooManyRequests, "too_many_attempts",
			fmt.Sprintf("too many failed sign-ins; try again in %d seconds", int(wait.Seconds()+0.999)))
	}
	// An unknown address costs the same work and gets the same answer.
	u, ok := s.store.CheckPassword(c.Request().Context(), email, password)
	if !ok {
		s.logins.fail(keys)
		return apiError(http.StatusUnauthorized, "invalid_credentials", "wrong email or password")
	}
	s.logins.succeed(keys)
	if err := s.startSession(c, u.Email); err != nil {
		return err
	}
	if err := s.store.Audit(c.Request().Context(), "user:"+u.Email, "sign_in", "console sign-in, role "+string(u.Role)); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/admin/")
}

// startSession makes a session and sets its cookie.
func (s *Server) startSession(c echo.Context, email string) error {
	id, ss, err := s.store.NewSession(c.Request().Context(), email, sessionTTL)
	if err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", Expires: ss.ExpiresAt, MaxAge: int(sessionTTL.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.https(c),
	})
	c.Set(ctxActor, actor{Name: ss.Email, Role: ss.Role, User: true, Session: id, CSRF: ss.CSRF})
	return nil
}

// https tells whether the browser reached the server over https: directly,
// through a proxy that says so, or by the configured public URL.
func (s *Server) https(c echo.Context) bool {
	if c.Scheme() == "https" {
		return true
	}
	u, err := url.Parse(s.cfg.PublicURL)
	return err == nil && u.Scheme == "https"
}

func (s *Server) handleLogout(c echo.Context) error {
	a := actorOf(c)
	if err := s.store.EndSession(c.Request().Context(), a.Session); err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.https(c)})
	if err := s.audit(c, "sign_out", "console sign-out"); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/admin/")
}

// handlePassword changes the signed-in user's password. Every session of
// the user ends; this browser gets a new one, and the new CSRF token.
func (s *Server) handlePassword(c echo.Context) error {
	var req struct {
		Current string `json:"current"`
		New     string `json:"new"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	a := actorOf(c)
	if _, ok := s.store.CheckPassword(c.Request().Context(), a.Name, req.Current); !ok {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "current: that is not your current password")
	}
	if err := s.store.SetPassword(c.Request().Context(), a.Name, req.New); err != nil {
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			return apiError(http.StatusUnprocessableEntity, "invalid_field", "new "+ve.Error())
		}
		return err
	}
	if err := s.startSession(c, a.Name); err != nil {
		return err
	}
	if err := s.audit(c, "password_change", "console password changed; other sessions ended"); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"csrf": actorOf(c).CSRF})
}

// requireSession admits a signed-in console user only (cookie and, for a
// change, the CSRF token).
func (s *Server) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		a, ok := s.sessionActor(c)
		if !ok {
			return apiError(http.StatusUnauthorized, "unauthorized", "not signed in to the console")
		}
		if err := checkCSRF(c, a); err != nil {
			return err
		}
		c.Set(ctxActor, a)
		return next(c)
	}
}

// sameOrigin refuses a browser's cross-site form post (login CSRF, which
// SameSite cookies do not prevent). Clients that send no Origin pass.
func sameOrigin(c echo.Context) error {
	o := c.Request().Header.Get("Origin")
	if o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Host != c.Request().Host {
		return apiError(http.StatusForbidden, "cross_origin", "sign in from the console's own page")
	}
	return nil
}

// Users API (admins).

func (s *Server) handleListUsers(c echo.Context) error {
	users, err := s.store.Users(c.Request().Context())
	return listJSON(c, users, err)
}

func (s *Server) handleCreateUser(c echo.Context) error {
	var req struct {
		Email    string `json:"email"`
		Role     string `json:"role"`
		Password string `json:"password"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	role, err := store.ParseRole(req.Role)
	if err != nil {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", err.Error())
	}
	u, err := s.store.CreateUserBy(c.Request().Context(), actorOf(c).auditName(), req.Email, role, req.Password)
	var ve *store.ValidationError
	switch {
	case errors.As(err, &ve):
		return apiError(http.StatusUnprocessableEntity, "invalid_field", ve.Error())
	case errors.Is(err, store.ErrExists):
		return apiError(http.StatusConflict, "user_exists", "a console user with that address exists already")
	case err != nil:
		return err
	}
	return c.JSON(http.StatusCreated, u)
}

func (s *Server) handleDeleteUser(c echo.Context) error {
	raw, err := url.PathUnescape(c.Param("email"))
	if err != nil {
		return apiError(http.StatusBadRequest, "invalid_field", "email: not a valid path segment")
	}
	email := store.NormalizeEmail(raw)
	err = s.store.DeleteUserBy(c.Request().Context(), actorOf(c).auditName(), email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return apiError(http.StatusNotFound, "not_found", "no console user with that address")
	case errors.Is(err, store.ErrLastAdmin):
		return apiError(http.StatusConflict, "last_admin", "that is the last admin token or user; make another admin first")
	case err != nil:
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// loginLimiter slows down guessing: after freeFailures failed sign-ins for
// one address or from one client, each further try must wait twice as long
// as the last (1 s, 2 s, 4 s, … up to maxLoginWait). A success clears it;
// a quiet quarter of an hour forgets it.
type loginLimiter struct {
	mu   sync.Mutex
	now  func() time.Time
	seen map[string]*loginFailures
}

type loginFailures struct {
	n     int
	last  time.Time
	until time.Time
}

const (
	freeFailures  = 5
	maxLoginWait  = 5 * time.Minute
	loginForget   = 15 * time.Minute
	maxLoginsKept = 100000
)

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{now: time.Now, seen: map[string]*loginFailures{}}
}

// loginAddr is the client key: IPv6 by its /64, as the write limit.
func loginAddr(a netip.Addr) string {
	if a = a.Unmap(); a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// wait is how long the longest-blocked key must still wait.
func (l *loginLimiter) wait(keys []string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var w time.Duration
	for _, k := range keys {
		if f := l.seen[k]; f != nil && f.until.After(now) {
			w = max(w, f.until.Sub(now))
		}
	}
	return w
}

func (l *loginLimiter) fail(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.seen) >= maxLoginsKept {
		for k, f := range l.seen {
			if now.Sub(f.last) > loginForget {
				delete(l.seen, k)
			}
		}
	}
	for _, k := range keys {
		f := l.seen[k]
		if f == nil || now.Sub(f.last) > loginForget {
			f = &loginFailures{}
			l.seen[k] = f
		}
		f.n++
		f.last = now
		if f.n >= freeFailures {
			f.until = now.Add(min(time.Second<<min(f.n-freeFailures, 20), maxLoginWait))
		}
	}
}

func (l *loginLimiter) succeed(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.seen, k)
	}
}
