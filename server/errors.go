package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/store"
)

// apiError builds the one error shape every /v1 response uses:
// {"error":{"code":"…","message":"…"}}. code is a stable machine word.
func apiError(status int, code, message string) *echo.HTTPError {
	return &echo.HTTPError{Code: status, Message: errorBody{Error: errorDetail{Code: code, Message: message}}}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorHandler writes every error as JSON, and never leaks internals: an
// unexpected error is logged (without personal data) and answered 500.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		// A stream (an export, a backup) failed after its status and
		// part of its body went out: cut the connection rather than end
		// the body cleanly, so the client sees a failed download instead
		// of a short file that looks complete.
		s.log.Error("response failed mid-stream; connection aborted", "route", c.Path(), "err", err.Error())
		panic(http.ErrAbortHandler)
	}
	var he *echo.HTTPError
	var failed *store.FailedError
	switch {
	case errors.As(err, &he):
	case errors.Is(err, store.ErrCorrupt):
		s.log.Error("ledger damaged", "route", c.Path(), "err", err.Error())
		msg := "a damaged part of the ledger file could not be read; the operator must run `assent verify` and restore a backup"
		if strings.HasPrefix(c.Path(), "/v1/admin/") {
			// Admins get the detail: which record of which site (never
			// personal data).
			msg += ": " + err.Error()
		}
		he = apiError(http.StatusInternalServerError, "ledger_damaged", msg)
	case errors.As(err, &failed):
		// Logged once, when it happened (see New); not per request.
		c.Response().Header().Set("Retry-After", "60")
		he = apiError(http.StatusServiceUnavailable, "unavailable",
			"the ledger stopped accepting writes after a storage failure; an operator must restart the server")
	case errors.Is(err, store.ErrUnavailable):
		// The database did not answer: nothing was stored, and the next
		// request tries again (PostgreSQL restarting, a failover).
		s.log.Warn("ledger unavailable", "route", c.Path(), "err", err.Error())
		c.Response().Header().Set("Retry-After", "1")
		he = apiError(http.StatusServiceUnavailable, "unavailable", "the ledger is not answering; nothing was stored, try again shortly")
	case errors.Is(err, store.ErrNotSupported):
		he = apiError(http.StatusNotImplemented, "not_supported", err.Error())
	default:
		s.log.Error("request failed", "route", c.Path(), "err", err.Error())
		he = apiError(http.StatusInternalServerError, "internal", "internal error")
	}
	body, ok := he.Message.(errorBody)
	if !ok {
		// echo's own errors (404 route, 405, 413 from its middleware).
		code := map[int]string{
			http.StatusNotFound:              "not_found",
			http.StatusMethodNotAllowed:      "method_not_allowed",
			http.StatusRequestEntityTooLarge: "body_too_large",
			http.StatusUnauthorized:          "unauthorized",
			http.StatusTooManyRequests:       "rate_limited",
		}[he.Code]
		if code == "" {
			code = "error"
		}
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok && m != "" {
			msg = m
		}
		body = errorBody{Error: errorDetail{Code: code, Message: msg}}
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(he.Code)
		return
	}
	_ = c.JSON(he.Code, body)
}
