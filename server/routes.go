package server

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/assent/assent/store"
)

// maxBody is the largest request body the API reads (SPEC: 16 KiB).
const maxBody = 16 << 10

// routes is the one place that lists every route, grouped by who may call
// it, with each group's middleware beside it.
func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	// Deliberate: the default RealIP trusts a forged X-Forwarded-For.
	e.IPExtractor = func(r *http.Request) string { return s.clientAddr(r).String() }
	e.Use(middleware.Recover(), s.accessLog, securityHeaders)

	// Visitors' browsers: the widget and the public API.
	e.GET("/w/:script", s.handleWidget)
	e.GET("/w/:site/consent-mode.js", s.handleConsentModeStub)
	e.GET("/v1/sites/:site/decision", s.handleDecision, cors)
	writes := e.Group("/v1/sites/:site", s.limitBody, s.rateLimit)
	writes.POST("/consents", s.handleConsent)
	writes.POST("/signups", s.handleSignup)
	writes.OPTIONS("/consents", s.handlePreflight)
	writes.OPTIONS("/signups", s.handlePreflight)
	e.GET("/u/:token", s.handleUnsubscribePage)
	e.POST("/u/:token", s.handleOneClickUnsubscribe, s.limitBody, s.rateLimit) // RFC 8058
	e.POST("/v1/unsubscribe", s.handleUnsubscribe, s.limitBody, s.rateLimit)
	e.GET("/c/:token", s.handleConfirmPage)
	e.POST("/v1/confirm", s.handleConfirm, s.limitBody, s.rateLimit)
	e.GET("/.well-known/jwks.json", s.handleJWKS, cors)
	e.GET("/healthz", s.handleHealth)
	e.GET("/metrics", s.met.handler, s.metricsGate)

	// Admin API: a bearer token or a signed-in console user (whose changes
	// also need the X-CSRF-Token header), never cached. Every admin route is
	// added through `read` (role viewer or admin: reading sites, the log,
	// exports, subject access, the audit log, verify, notices) or `write`
	// (role admin: any change, and what a viewer may not take out, such as
	// backups and tokens). A route added with admin.GET & co. has no role
	// and answers 403 to everyone; TestEveryRouteHasARoleDecision
	// (roles_test.go) walks the router and fails until the route is in its
	// table too.
	admin := e.Group("/v1/admin", noStore, s.requireAuth, s.requireRole)
	read, write := s.withRole(admin, store.RoleViewer), s.withRole(admin, store.RoleAdmin)
	read.GET("/sites", s.handleListSites)
	write.POST("/sites", s.handleCreateSite, s.limitBody)
	read.GET("/sites/:site", s.handleGetSite)
	write.PUT("/sites/:site", s.handlePutSite, s.limitBody)
	read.GET("/sites/:site/consents", s.handleExportConsents)
	read.GET("/sites/:site/signups", s.handleExportSignups)
	read.GET("/sites/:site/rejected-origins", s.handleRejectedOrigins)
	read.GET("/sites/:site/mail", s.handleMailList)
	read.GET("/subjects", s.handleSubject)
	write.DELETE("/subjects", s.handleEraseSubject)
	write.POST("/subjects/withdraw", s.handleWithdrawSubject, s.limitBody)
	write.POST("/subjects/rectify", s.handleRectifySubject, s.limitBody)
	read.GET("/notices/:hash", s.handleNotice)
	read.GET("/verify", s.handleVerify)
	read.GET("/audit", s.handleAudit)
	read.GET("/whoami", s.handleWhoami)
	read.GET("/texts", s.handleTexts)
	write.GET("/backup", s.handleBackup)
	write.GET("/tokens", s.handleListTokens)
	write.POST("/tokens", s.handleCreateToken, s.limitBody)
	write.DELETE("/tokens/:name", s.handleRevokeToken)
	write.GET("/users", s.handleListUsers)
	write.POST("/users", s.handleCreateUser, s.limitBody)
	write.DELETE("/users/:email", s.handleDeleteUser)
	// Webhooks are admin-only, the deliveries list too: it is how the
	// endpoints are run, not part of the consent log a viewer reads.
	write.GET("/webhooks", s.handleListWebhooks)
	write.POST("/webhooks", s.handleCreateWebhook, s.limitBody)
	write.DELETE("/webhooks/:id", s.handleDeleteWebhook)
	write.GET("/webhooks/:id/deliveries", s.handleWebhookDeliveries)
	write.POST("/webhooks/:id/test", s.handleTestWebhook)
	write.POST("/webhooks/:id/deliveries/:delivery/retry", s.handleRetryDelivery)

	// Admin console: the page itself needs no sign-in; its API calls do.
	// Signing in is open to all (slowed down after failures); signing out
	// and changing one's password need the session and its CSRF token.
	e.GET("/admin", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/admin/") })
	e.GET("/admin/", s.handleConsole, noStore)
	e.GET("/admin/console.js", s.handleConsoleScript, noStore)
	e.POST("/admin/login", s.handleLogin, noStore, s.limitBody)
	e.POST("/admin/logout", s.handleLogout, noStore, s.requireSession)
	e.POST("/admin/password", s.handlePassword, noStore, s.requireSession, s.limitBody)

	if s.cfg.Demo {
		e.GET("/", s.handleDemoPage)
	}
	return e
}

// securityHeaders go on every response. The widget script overrides the
// resource policy: it must load on other sites' pages.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Resource-Policy", "same-site")
		return next(c)
	}
}

func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		return next(c)
	}
}

// cors lets any page read a public, non-personal answer.
func cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Cross-Origin-Resource-Policy", "cross-origin")
		return next(c)
	}
}

// limitBody answers 413 for a body over maxBody, before reading it whole.
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > maxBody {
			return apiError(http.StatusRequestEntityTooLarge, "body_too_large", "request body is over 16 KiB")
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, maxBody)
		return next(c)
	}
}

// accessLog logs the route pattern, never the path itself: paths carry
// site ids and unsubscribe tokens, and no address or agent is logged.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		status := c.Response().Status
		s.met.observe(c.Path(), c.Request().Method, status, time.Since(start))
		if status >= 500 {
			s.log.Warn("request", "method", c.Request().Method, "route", c.Path(), "status", status, "ms", time.Since(start).Milliseconds())
		} else {
			s.log.Debug("request", "method", c.Request().Method, "route", c.Path(), "status", status, "ms", time.Since(start).Milliseconds())
		}
		return nil
	}
}
