package server

import (
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// rejectedOrigins counts, per site, the origins whose browser writes (and
// CORS preflights) were refused, so that a site owner sees which page is
// missing from the site's origins instead of a banner that silently comes
// back on every page.
//
// The counts live in memory, not in the ledger: they are diagnostics, not
// proof, an Origin header is whatever a caller sends, and a ledger write per
// refused request would let anyone fill the disk. They start again at zero
// when the server restarts (the answer says since when), and each replica
// counts its own; assent_rejected_origins_total{site} in /metrics is what a
// Prometheus keeps over restarts and sums over replicas.
type rejectedOrigins struct {
	since time.Time
	now   func() time.Time

	mu    sync.Mutex
	sites map[string]map[string]*rejectedOrigin
}

type rejectedOrigin struct {
	Origin  string    `json:"origin"`
	Count   int64     `json:"count"`
	FirstAt time.Time `json:"first_at"`
	LastAt  time.Time `json:"last_at"`
	logged  time.Time
}

// maxRejectedOrigins bounds the table per site: past it the origin seen
// least recently makes room, so forged Origin headers cannot grow memory.
const maxRejectedOrigins = 100

func newRejectedOrigins() *rejectedOrigins {
	return &rejectedOrigins{since: time.Now().UTC(), now: time.Now, sites: map[string]map[string]*rejectedOrigin{}}
}

// add counts one refusal and logs it at warn: the first time an origin is
// refused, then at most once a minute per origin with the running count, so
// a busy page that is not allowed cannot flood the log.
func (r *rejectedOrigins) add(site, origin string, log *slog.Logger) {
	origin = truncate(origin, 200)
	now := r.now().UTC()
	r.mu.Lock()
	tab := r.sites[site]
	if tab == nil {
		tab = map[string]*rejectedOrigin{}
		r.sites[site] = tab
	}
	e := tab[origin]
	if e == nil {
		if len(tab) >= maxRejectedOrigins {
			var oldest *rejectedOrigin
			for _, o := range tab {
				if oldest == nil || o.LastAt.Before(oldest.LastAt) {
					oldest = o
				}
			}
			delete(tab, oldest.Origin)
		}
		e = &rejectedOrigin{Origin: origin, FirstAt: now}
		tab[origin] = e
	}
	e.Count++
	e.LastAt = now
	logIt := e.logged.IsZero() || now.Sub(e.logged) >= time.Minute
	if logIt {
		e.logged = now
	}
	count := e.Count
	r.mu.Unlock()
	if logIt {
		log.Warn("write refused: origin not in the site's origins", "site", site, "origin", origin, "count", count,
			"fix", "add the origin (or a wildcard like https://*.example.com) to the site's origins")
	}
}

// list returns a site's refused origins, most refused first.
func (r *rejectedOrigins) list(site string) []rejectedOrigin {
	r.mu.Lock()
	out := make([]rejectedOrigin, 0, len(r.sites[site]))
	for _, e := range r.sites[site] {
		out = append(out, *e)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Origin < out[j].Origin
	})
	return out
}

// handleRejectedOrigins answers GET /v1/admin/sites/{site}/rejected-origins.
func (s *Server) handleRejectedOrigins(c echo.Context) error {
	site, err := s.site(c.Request().Context(), c.Param("site"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{
		"site":    site.ID,
		"since":   s.rejected.since.Format(rfc3339Nano),
		"origins": s.rejected.list(site.ID),
	})
}
