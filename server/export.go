package server

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

// exportQuery is an export's period, filters and format, read from the
// query string with a clear 400 for each bad value.
type exportQuery struct {
	store.Query
	Format string
}

func parseExportQuery(c echo.Context) (exportQuery, error) {
	q := exportQuery{Format: c.QueryParam("format")}
	if q.Format == "" {
		q.Format = "csv"
	}
	switch q.Format {
	case "csv", "jsonl", "xlsx":
	default:
		return q, apiError(http.StatusBadRequest, "invalid_field", "format: one of csv, xlsx, jsonl")
	}
	var err error
	if q.From, err = parseTime(c.QueryParam("from")); err != nil {
		return q, apiError(http.StatusBadRequest, "invalid_field", "from: "+err.Error())
	}
	if q.To, err = parseTime(c.QueryParam("to")); err != nil {
		return q, apiError(http.StatusBadRequest, "invalid_field", "to: "+err.Error())
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return q, apiError(http.StatusBadRequest, "invalid_field", "to: must be after from")
	}
	q.Purpose = c.QueryParam("purpose")
	if cc := c.QueryParam("country"); cc != "" {
		if q.Country = strings.ToUpper(cc); !geo.ValidCountry(q.Country) {
			return q, apiError(http.StatusBadRequest, "invalid_field", "country: an ISO 3166-1 alpha-2 code such as DE")
		}
	}
	switch q.Regime = c.QueryParam("regime"); q.Regime {
	case "", string(geo.OptIn), string(geo.Notice):
	default:
		return q, apiError(http.StatusBadRequest, "invalid_field", "regime: opt-in or notice")
	}
	if e := c.QueryParam("email"); e != "" {
		if q.Email, err = checkEmail(e); err != nil {
			return q, apiError(http.StatusBadRequest, "invalid_email", err.Error())
		}
	}
	return q, nil
}

// parseTime takes RFC 3339 or a plain date (midnight UTC).
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor YYYY-MM-DD", truncate(s, 40))
}

func (s *Server) handleExportConsents(c echo.Context) error {
	site, err := s.site(c.Param("site"))
	if err != nil {
		return err
	}
	q, err := parseExportQuery(c)
	if err != nil {
		return err
	}
	if q.Purpose != "" && !hasPurpose(site, q.Purpose) {
		return apiError(http.StatusBadRequest, "unknown_purpose", fmt.Sprintf("purpose: site %q has no purpose %q", site.ID, q.Purpose))
	}
	if err := s.audit(c, "export", fmt.Sprintf("consents of site %s as %s", site.ID, q.Format)); err != nil {
		return err
	}
	s.exportHeaders(c, site.ID, "consents", q)
	return WriteRecords(c.Response(), q.Format, site, func(fn func(store.Record) error) error {
		return s.store.Records(site.ID, q.Query, fn)
	})
}

func (s *Server) handleExportSignups(c echo.Context) error {
	site, err := s.site(c.Param("site"))
	if err != nil {
		return err
	}
	q, err := parseExportQuery(c)
	if err != nil {
		return err
	}
	if err := s.audit(c, "export", fmt.Sprintf("signups of site %s as %s", site.ID, q.Format)); err != nil {
		return err
	}
	s.exportHeaders(c, site.ID, "signups", q)
	return WriteSubjects(c.Response(), q.Format, site, func(fn func(store.SubjectState) error) error {
		return s.store.Subjects(site.ID, q.Query, fn)
	})
}

func (s *Server) exportHeaders(c echo.Context, site, what string, q exportQuery) {
	period := "all"
	if !q.From.IsZero() || !q.To.IsZero() {
		period = q.From.Format("20060102") + "-" + q.To.Format("20060102")
		period = strings.ReplaceAll(period, "00010101", "start")
	}
	types := map[string]string{
		"csv":   "text/csv; charset=utf-8",
		"jsonl": "application/x-ndjson",
		"xlsx":  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	}
	h := c.Response().Header()
	h.Set("Content-Type", types[q.Format])
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="assent-%s-%s-%s.%s"`, site, what, period, q.Format))
	c.Response().WriteHeader(http.StatusOK)
}

func hasPurpose(site store.Site, id string) bool {
	for _, p := range site.Purposes {
		if p.ID == id {
			return true
		}
	}
	return false
}

func (s *Server) handleAudit(c echo.Context) error {
	q, err := parseExportQuery(c)
	if err != nil {
		return err
	}
	if c.QueryParam("format") == "" {
		q.Format = "jsonl"
	}
	h := c.Response().Header()
	h.Set("Content-Type", map[string]string{"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson", "xlsx": "text/csv; charset=utf-8"}[q.Format])
	c.Response().WriteHeader(http.StatusOK)
	w := bufio.NewWriter(c.Response())
	defer w.Flush()
	if q.Format == "jsonl" {
		enc := json.NewEncoder(w)
		return s.store.AuditLog(q.From, q.To, func(e store.AuditEntry) error { return enc.Encode(e) })
	}
	cw := csv.NewWriter(w)
	cw.Write([]string{"at", "token", "action", "detail"})
	err = s.store.AuditLog(q.From, q.To, func(e store.AuditEntry) error {
		return cw.Write([]string{e.At.UTC().Format(rfc3339Nano), safeCell(e.Token), e.Action, safeCell(e.Detail)})
	})
	cw.Flush()
	return err
}
