package server

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/assent/assent/store"
)

// metrics are the server's Prometheus series. Labels are route patterns,
// methods, status codes, site ids and events: nothing personal.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	records  *prometheus.CounterVec
	rejected *prometheus.CounterVec
	h        echo.HandlerFunc
}

func newMetrics(st store.Ledger) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assent_http_requests_total", Help: "HTTP requests by route, method and status.",
	}, []string{"route", "method", "status"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "assent_http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	m.records = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assent_records_total", Help: "Consent records stored since start, by site and event.",
	}, []string{"site", "event"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assent_rejected_origins_total", Help: "Browser writes and preflights refused since start because their Origin is not in the site's origins, by site.",
	}, []string{"site"})
	m.reg.MustRegister(m.requests, m.duration, m.records, m.rejected,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if st != nil {
		m.reg.MustRegister(mailCollector{st})
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "assent_ledger_up", Help: "1 when the ledger answers.",
		}, func() float64 {
			if st.Ping(context.Background()) != nil {
				return 0
			}
			return 1
		}))
		if bs, ok := store.BoltStore(st); ok { // only a file fails stop
			m.reg.MustRegister(writeFailed{bs})
		}
	}
	m.h = echo.WrapHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return m
}

func (m *metrics) handler(c echo.Context) error { return m.h(c) }

// DefaultMetricsAllow is loopback, the networks that may read /metrics
// without a token unless --metrics-allow says otherwise.
func DefaultMetricsAllow() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// metricsGate lets a client from an allowed network (--metrics-allow; the
// client address honours --trusted-proxies) read /metrics; anyone else needs
// a valid bearer token of any role, checked as on the admin API.
func (s *Server) metricsGate(next echo.HandlerFunc) echo.HandlerFunc {
	withToken := s.requireAuth(next)
	return func(c echo.Context) error {
		a := s.clientAddr(c.Request()).Unmap()
		for _, p := range s.cfg.MetricsAllow {
			if p.Contains(a) {
				return next(c)
			}
		}
		if c.Request().Header.Get("Authorization") == "" {
			return apiError(http.StatusForbidden, "forbidden", "/metrics answers only allowed networks (--metrics-allow) or a request with Authorization: Bearer <token>")
		}
		return withToken(c)
	}
}

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (m *metrics) recorded(site, event string) { m.records.WithLabelValues(site, event).Inc() }

func (m *metrics) rejectedOrigin(site string) { m.rejected.WithLabelValues(site).Inc() }

// writeFailed is assent_ledger_write_failed: 1, with the errno as reason,
// once a write or sync of the ledger failed and it stopped accepting writes
// (store.FailedError); 0 before.
type writeFailed struct{ st *store.Store }

var writeFailedDesc = prometheus.NewDesc("assent_ledger_write_failed",
	"1 after a write or sync of the ledger file failed: every write is refused (503) until the server is restarted.",
	[]string{"reason"}, nil)

func (w writeFailed) Describe(ch chan<- *prometheus.Desc) { ch <- writeFailedDesc }

func (w writeFailed) Collect(ch chan<- prometheus.Metric) {
	var fe *store.FailedError
	if err := w.st.Failed(); errors.As(err, &fe) {
		ch <- prometheus.MustNewConstMetric(writeFailedDesc, prometheus.GaugeValue, 1, fe.Reason())
		return
	}
	ch <- prometheus.MustNewConstMetric(writeFailedDesc, prometheus.GaugeValue, 0, "")
}

// mailCollector reads the mails per state from the ledger at each scrape,
// so the figures are the ledger's, across restarts.
type mailCollector struct{ st store.Ledger }

var mailDesc = prometheus.NewDesc("assent_mail_total", "Confirmation mails in the outbox, by state (queued, sent, failed).", []string{"state"}, nil)

func (c mailCollector) Describe(ch chan<- *prometheus.Desc) { ch <- mailDesc }
func (c mailCollector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.st.OutboxCounts(context.Background(), mailKind)
	if err != nil {
		return
	}
	for _, state := range []string{store.OutboxQueued, store.OutboxSent, store.OutboxFailed} {
		ch <- prometheus.MustNewConstMetric(mailDesc, prometheus.GaugeValue, float64(counts[state]), state)
	}
}
