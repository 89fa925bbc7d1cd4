package server

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
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
	e.GET("/v1/sites/:site/decision", s.handleDecision, cors)
	writes := e.Group("/v1/sites/:site", s.limitBody, s.rateLimit)
	writes.POST("/consents", s.handleConsent)
	writes.POST("/signups", s.handleSignup)
	writes.OPTIONS("/consents", s.handlePreflight)
	writes.OPTIONS("/signups", s.handlePreflight)
	e.GET("/u/:token", s.handleUnsubscribePage)
	e.POST("/v1/unsubscribe", s.handleUnsubscribe, s.limitBody, s.rateLimit)
	e.GET("/.well-known/jwks.json", s.handleJWKS, cors)
	e.GET("/healthz", s.handleHealth)
	e.GET("/metrics", s.met.handler)

	// Admin API: bearer token, never cached.
	admin := e.Group("/v1/admin", noStore, s.requireToken)
	admin.GET("/sites", s.handleListSites)
	admin.POST("/sites", s.handleCreateSite, s.limitBody)
	admin.GET("/sites/:site", s.handleGetSite)
	admin.PUT("/sites/:site", s.handlePutSite, s.limitBody)
	admin.GET("/sites/:site/consents", s.handleExportConsents)
	admin.GET("/sites/:site/signups", s.handleExportSignups)
	admin.GET("/subjects", s.handleSubject)
	admin.DELETE("/subjects", s.handleEraseSubject)
	admin.GET("/notices/:hash", s.handleNotice)
	admin.GET("/verify", s.handleVerify)
	admin.GET("/audit", s.handleAudit)
	admin.GET("/backup", s.handleBackup)
	admin.GET("/tokens", s.handleListTokens)
	admin.POST("/tokens", s.handleCreateToken, s.limitBody)
	admin.DELETE("/tokens/:name", s.handleRevokeToken)
	admin.GET("/webhooks", s.handleListWebhooks)
	admin.POST("/webhooks", s.handleCreateWebhook, s.limitBody)
	admin.DELETE("/webhooks/:id", s.handleDeleteWebhook)
	admin.GET("/webhooks/:id/deliveries", s.handleWebhookDeliveries)
	admin.POST("/webhooks/:id/test", s.handleTestWebhook)
	admin.POST("/webhooks/:id/deliveries/:delivery/retry", s.handleRetryDelivery)

	// Admin console: the page itself needs no token; its API calls do.
	e.GET("/admin", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/admin/") })
	e.GET("/admin/", s.handleConsole, noStore)
	e.GET("/admin/console.js", s.handleConsoleScript, noStore)

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
