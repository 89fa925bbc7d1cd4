package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

// maxPage is the largest page (?limit=) of the consents export.
const maxPage = 10000

// exportQuery is an export's period, filters, format and page.
type exportQuery struct {
	store.Query
	Format string
	Limit  int    // 0: every record
	After  string // a record id: only records after it
}

// parseExportQuery reads the query string, with a 400 naming the parameter
// for a bad value. extra formats are allowed beside csv, xlsx and jsonl.
func parseExportQuery(c echo.Context, def string, extra ...string) (exportQuery, error) {
	v := c.QueryParams()
	q := exportQuery{Format: v.Get("format")}
	if q.Format == "" {
		q.Format = def
	}
	if _, ok := Formats[q.Format]; !ok && !contains(extra, q.Format) {
		return q, apiError(http.StatusBadRequest, "invalid_field", "format: one of "+strings.Join(append([]string{"csv", "xlsx", "jsonl"}, extra...), ", "))
	}
	var err error
	if q.Query, err = ParseQuery(v); err != nil {
		code := "invalid_field"
		if strings.HasPrefix(err.Error(), "email:") {
			code = "invalid_email"
		}
		return q, apiError(http.StatusBadRequest, code, err.Error())
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 1 || q.Limit > maxPage {
			return q, apiError(http.StatusBadRequest, "invalid_field", fmt.Sprintf("limit: a whole number from 1 to %d", maxPage))
		}
	}
	if q.After = v.Get("after"); q.After != "" {
		t, ok := idTime(q.After)
		if !ok {
			return q, apiError(http.StatusBadRequest, "invalid_field", "after: a record id (26 characters, as in the id column)")
		}
		q.After = strings.ToUpper(q.After)
		// Ids sort by time: start the scan at the id's millisecond.
		if t.After(q.From) {
			q.From = t
		}
	}
	return q, nil
}

// ParseQuery reads an export's period and filters (from, to, purpose,
// country, regime, email); the CLI uses it too. Errors name the parameter.
func ParseQuery(v url.Values) (store.Query, error) {
	var q store.Query
	var err error
	if q.From, err = parseTime(v.Get("from")); err != nil {
		return q, fmt.Errorf("from: %w", err)
	}
	if q.To, err = parseTime(v.Get("to")); err != nil {
		return q, fmt.Errorf("to: %w", err)
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return q, errors.New("to: must be after from")
	}
	q.Purpose = v.Get("purpose")
	if cc := v.Get("country"); cc != "" {
		if q.Country = strings.ToUpper(cc); !geo.ValidCountry(q.Country) {
			return q, errors.New("country: an ISO 3166-1 alpha-2 code such as DE")
		}
	}
	switch q.Regime = v.Get("regime"); q.Regime {
	case "", string(geo.OptIn), string(geo.Notice):
	default:
		return q, errors.New("regime: opt-in or notice")
	}
	if e := v.Get("email"); e != "" {
		if q.Email, err = checkEmail(e); err != nil {
			return q, err // "email: …"
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

// idTime reads the millisecond a record id starts with: its first ten
// Crockford base32 characters, as in a ULID.
func idTime(id string) (time.Time, bool) {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	if len(id) != 26 {
		return time.Time{}, false
	}
	var ms int64
	for i := 0; i < 26; i++ {
		d := strings.IndexByte(crockford, strings.ToUpper(id[i : i+1])[0])
		if d < 0 {
			return time.Time{}, false
		}
		if i < 10 {
			ms = ms<<5 | int64(d)
		}
	}
	return time.UnixMilli(ms).UTC(), true
}

// errPageFull stops a paged export's scan once the page is full.
var errPageFull = errors.New("page full")

func (s *Server) handleExportConsents(c echo.Context) error {
	site, err := s.site(c.Request().Context(), c.Param("site"))
	if err != nil {
		return err
	}
	q, err := parseExportQuery(c, "csv", "summary")
	if err != nil {
		return err
	}
	if q.Purpose != "" && !hasPurpose(site, q.Purpose) {
		return apiError(http.StatusBadRequest, "unknown_purpose", fmt.Sprintf("purpose: site %q has no purpose %q", site.ID, q.Purpose))
	}
	records := func(fn func(store.Record) error) error {
		return s.store.Records(c.Request().Context(), site.ID, q.Query, fn)
	}
	if q.After != "" || q.Limit > 0 {
		records = pageOf(records, q.After, q.Limit)
	}
	if q.Format == "summary" {
		// Counts only, no personal data: not an export, so not audited.
		sum, err := summarise(site, records)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, sum)
	}
	detail := fmt.Sprintf("consents of site %s as %s", site.ID, q.Format)
	if q.Limit > 0 {
		detail += fmt.Sprintf(" (a page of %d)", q.Limit)
	}
	if err := s.audit(c, "export", detail); err != nil {
		return err
	}
	return s.stream(c, exportName(site.ID, "consents", q), q.Format, func() error {
		return WriteRecords(c.Response(), q.Format, site, records)
	})
}

// pageOf keeps the records after the id after, up to limit (0: no limit).
func pageOf(records func(func(store.Record) error) error, after string, limit int) func(func(store.Record) error) error {
	return func(fn func(store.Record) error) error {
		n := 0
		err := records(func(r store.Record) error {
			if after != "" && r.ID <= after {
				return nil
			}
			if limit > 0 && n == limit {
				return errPageFull
			}
			n++
			return fn(r)
		})
		if errors.Is(err, errPageFull) {
			return nil
		}
		return err
	}
}

func (s *Server) handleExportSignups(c echo.Context) error {
	site, err := s.site(c.Request().Context(), c.Param("site"))
	if err != nil {
		return err
	}
	q, err := parseExportQuery(c, "csv")
	if err != nil {
		return err
	}
	if q.Limit > 0 || q.After != "" {
		return apiError(http.StatusBadRequest, "invalid_field", "limit, after: the signups export is not paged")
	}
	if q.Purpose != "" && !hasPurpose(site, q.Purpose) {
		return apiError(http.StatusBadRequest, "unknown_purpose", fmt.Sprintf("purpose: site %q has no purpose %q", site.ID, q.Purpose))
	}
	if err := s.audit(c, "export", fmt.Sprintf("signups of site %s as %s", site.ID, q.Format)); err != nil {
		return err
	}
	return s.stream(c, exportName(site.ID, "signups", q), q.Format, func() error {
		base := s.publicURL()
		unsub := func(email string) string {
			if base == "" {
				return ""
			}
			return base + "/u/" + s.store.UnsubscribeToken(site.ID, email)
		}
		return WriteSubjects(c.Response(), q.Format, site, unsub, func(fn func(store.SubjectState) error) error {
			return s.store.Subjects(c.Request().Context(), site.ID, q.Query, fn)
		})
	})
}

// handleAudit reads the audit log: JSON Lines by default (the console shows
// it), or a csv/xlsx download. Only from and to filter it.
func (s *Server) handleAudit(c echo.Context) error {
	q, err := parseExportQuery(c, "jsonl")
	if err != nil {
		return err
	}
	name := ""
	if c.QueryParam("format") != "" {
		name = exportName("", "audit", q)
	}
	return s.stream(c, name, q.Format, func() error {
		return WriteAudit(c.Response(), q.Format, func(fn func(store.AuditEntry) error) error {
			return s.store.AuditLog(c.Request().Context(), q.From, q.To, fn)
		})
	})
}

// stream sends an export. The status goes out with the first bytes, so an
// error before them is still a JSON error. An error after them aborts the
// connection, so the client sees a broken transfer rather than a file that
// looks complete.
func (s *Server) stream(c echo.Context, filename, format string, write func() error) error {
	h := c.Response().Header()
	h.Set("Content-Type", Formats[format])
	if filename != "" {
		h.Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	}
	err := write()
	if err == nil {
		if !c.Response().Committed {
			c.Response().WriteHeader(http.StatusOK)
		}
		return nil
	}
	if c.Response().Committed {
		s.log.Error("export failed after its first bytes; connection aborted", "route", c.Path(), "err", err.Error())
		panic(http.ErrAbortHandler)
	}
	h.Del("Content-Disposition")
	if errors.Is(err, ErrTooManyRows) {
		return apiError(http.StatusUnprocessableEntity, "too_many_rows", err.Error())
	}
	return err
}

// exportName is the download's file name, with the site and the period:
// assent-shop-consents-20260101-20260201.csv; an open end is "start" or
// "now".
func exportName(site, what string, q exportQuery) string {
	period := "all"
	if !q.From.IsZero() || !q.To.IsZero() {
		from, to := "start", "now"
		if !q.From.IsZero() {
			from = q.From.UTC().Format("20060102")
		}
		if !q.To.IsZero() {
			to = q.To.UTC().Format("20060102")
		}
		period = from + "-" + to
	}
	parts := []string{"assent", site, what, period}
	if site == "" {
		parts = []string{"assent", what, period}
	}
	return strings.Join(parts, "-") + "." + q.Format
}

func hasPurpose(site store.Site, id string) bool {
	for _, p := range site.Purposes {
		if p.ID == id {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Summary is the consents export's format=summary: counts for the
// console's charts, in memory bounded by days, purposes and countries.
type Summary struct {
	Records   int            `json:"records"`
	Days      []DayCount     `json:"days"`
	Purposes  []RateCount    `json:"purposes"`
	Countries []RateCount    `json:"countries"`
	Events    map[string]int `json:"events"`
	Regimes   map[string]int `json:"regimes"`
	byDay     map[string]*DayCount
	byPurpose map[string]*RateCount
	byCountry map[string]*RateCount
}

// DayCount is one UTC day's records by event.
type DayCount struct {
	Date     string `json:"date"`
	Records  int    `json:"records"`
	Grant    int    `json:"grant"`
	Deny     int    `json:"deny"`
	Partial  int    `json:"partial"`
	Withdraw int    `json:"withdraw"`
}

// RateCount counts the choices of optional purposes: Rate is
// Granted / (Granted + Denied).
type RateCount struct {
	Key     string  `json:"key"`
	Records int     `json:"records"`
	Granted int     `json:"granted"`
	Denied  int     `json:"denied"`
	Rate    float64 `json:"rate"`
}

// summarise counts records per UTC day and event, and the acceptance rate
// of the optional (not required) purposes, per purpose and per country.
func summarise(site store.Site, records func(func(store.Record) error) error) (*Summary, error) {
	optional := map[string]bool{}
	for _, p := range site.Purposes {
		optional[p.ID] = !p.Required
	}
	s := &Summary{Events: map[string]int{}, Regimes: map[string]int{},
		byDay: map[string]*DayCount{}, byPurpose: map[string]*RateCount{}, byCountry: map[string]*RateCount{}}
	for _, p := range site.Purposes {
		if !p.Required {
			s.byPurpose[p.ID] = &RateCount{Key: p.ID}
		}
	}
	err := records(func(r store.Record) error {
		s.Records++
		s.Events[r.Event]++
		s.Regimes[r.Regime]++
		day := r.RecordedAt.UTC().Format("2006-01-02")
		d := s.byDay[day]
		if d == nil {
			d = &DayCount{Date: day}
			s.byDay[day] = d
		}
		d.Records++
		switch r.Event {
		case "grant":
			d.Grant++
		case "deny":
			d.Deny++
		case "partial":
			d.Partial++
		case "withdraw":
			d.Withdraw++
		}
		cc := r.Country
		if cc == "" {
			cc = "unknown"
		}
		c := s.byCountry[cc]
		if c == nil {
			c = &RateCount{Key: cc}
			s.byCountry[cc] = c
		}
		c.Records++
		for id, state := range r.Choices {
			p := s.byPurpose[id]
			if !optional[id] || p == nil {
				continue
			}
			p.Records++
			switch state {
			case "granted":
				p.Granted++
				c.Granted++
			case "denied":
				p.Denied++
				c.Denied++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.Days = make([]DayCount, 0, len(s.byDay))
	for _, d := range s.byDay {
		s.Days = append(s.Days, *d)
	}
	sort.Slice(s.Days, func(i, j int) bool { return s.Days[i].Date < s.Days[j].Date })
	s.Purposes = make([]RateCount, 0, len(s.byPurpose))
	for _, p := range site.Purposes {
		if rc := s.byPurpose[p.ID]; rc != nil {
			s.Purposes = append(s.Purposes, rc.withRate())
		}
	}
	s.Countries = make([]RateCount, 0, len(s.byCountry))
	for _, c := range s.byCountry {
		s.Countries = append(s.Countries, c.withRate())
	}
	sort.Slice(s.Countries, func(i, j int) bool {
		a, b := s.Countries[i], s.Countries[j]
		return a.Records > b.Records || (a.Records == b.Records && a.Key < b.Key)
	})
	return s, nil
}

func (rc RateCount) withRate() RateCount {
	if n := rc.Granted + rc.Denied; n > 0 {
		rc.Rate = float64(rc.Granted) / float64(n)
	}
	return rc
}
