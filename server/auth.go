package server

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/store"
)

// actor is who makes an admin request: a bearer token or a signed-in
// console user, with the role that decides what they may do.
type actor struct {
	Name    string // the token's name, or the user's email
	Role    store.Role
	User    bool   // signed in with the session cookie
	Session string // the session id (cookie value) of a user
	CSRF    string // the session's CSRF token
}

// auditName is how the audit log names the actor: the token's name, or
// "user:" and the console user's address.
func (a actor) auditName() string {
	if a.User {
		return "user:" + a.Name
	}
	return a.Name
}

const ctxActor = "assent.actor"

// sessionCookie holds a console user's session id.
const sessionCookie = "assent_session"

// sessionTTL is how long a console sign-in lasts, checked by the server
// (the session's expiry is in the ledger, not only in the cookie).
const sessionTTL = 12 * time.Hour

func actorOf(c echo.Context) actor { a, _ := c.Get(ctxActor).(actor); return a }

// requireAuth admits a request with a valid bearer token or a console
// session cookie and remembers who made it. A request with a cookie that
// changes anything must also carry the session's CSRF token.
func (s *Server) requireAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		auth := c.Request().Header.Get("Authorization")
		if auth == "" {
			if a, ok := s.sessionActor(c); ok {
				if err := checkCSRF(c, a); err != nil {
					return err
				}
				c.Set(ctxActor, a)
				return next(c)
			}
		}
		scheme, tok, ok := strings.Cut(auth, " ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.ToLower(scheme)), []byte("bearer")) != 1 || tok == "" {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="assent"`)
			return apiError(http.StatusUnauthorized, "unauthorized", "admin endpoints need Authorization: Bearer <token>, or signing in to the console")
		}
		t, ok := s.store.TokenFor(c.Request().Context(), strings.TrimSpace(tok))
		if !ok {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="assent", error="invalid_token"`)
			return apiError(http.StatusUnauthorized, "unauthorized", "the bearer token is not valid")
		}
		c.Set(ctxActor, actor{Name: t.Name, Role: t.Role})
		return next(c)
	}
}

// sessionActor is the console user signed in by the request's cookie.
func (s *Server) sessionActor(c echo.Context) (actor, bool) {
	ck, err := c.Cookie(sessionCookie)
	if err != nil {
		return actor{}, false
	}
	ss, ok := s.store.SessionFor(c.Request().Context(), ck.Value)
	if !ok {
		return actor{}, false
	}
	return actor{Name: ss.Email, Role: ss.Role, User: true, Session: ck.Value, CSRF: ss.CSRF}, true
}

// checkCSRF refuses a state-changing cookie request without the session's
// CSRF token in X-CSRF-Token. SameSite=Strict already keeps the cookie off
// other sites' requests; the token is the second lock the contract asks for.
func checkCSRF(c echo.Context, a actor) error {
	switch c.Request().Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	got := c.Request().Header.Get("X-CSRF-Token")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(a.CSRF)) != 1 {
		return apiError(http.StatusForbidden, "csrf", "this change needs the console's X-CSRF-Token header; reload the console")
	}
	return nil
}

// roleRoutes adds routes to an admin group, each with the least role that
// may call it; requireRole checks it on every request.
type roleRoutes struct {
	s    *Server
	g    *echo.Group
	role store.Role
}

func (s *Server) withRole(g *echo.Group, role store.Role) roleRoutes {
	return roleRoutes{s: s, g: g, role: role}
}

func (r roleRoutes) add(method, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	rt := r.g.Add(method, path, h, m...)
	r.s.routeRoles[rt.Method+" "+rt.Path] = r.role
	return rt
}

func (r roleRoutes) GET(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	return r.add(http.MethodGet, path, h, m...)
}

func (r roleRoutes) POST(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	return r.add(http.MethodPost, path, h, m...)
}

func (r roleRoutes) PUT(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	return r.add(http.MethodPut, path, h, m...)
}

func (r roleRoutes) DELETE(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	return r.add(http.MethodDelete, path, h, m...)
}

// requireRole lets the actor through if their role may call the route. It
// fails closed: a route added without a role answers 403 to everyone.
func (s *Server) requireRole(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		need, ok := s.routeRoles[c.Request().Method+" "+c.Path()]
		if !ok {
			if strings.HasSuffix(c.Path(), "/*") || c.Path() == "/v1/admin" {
				return next(c) // the group's catch-all: 404
			}
			return apiError(http.StatusForbidden, "forbidden", "this route has no role decision; no one may call it")
		}
		if need == store.RoleAdmin && actorOf(c).Role != store.RoleAdmin {
			return apiError(http.StatusForbidden, "forbidden", "this needs the admin role; "+actorOf(c).auditName()+" is a viewer")
		}
		return next(c)
	}
}
