package server

import (
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

func newMetrics(st *store.Store) *metrics {
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
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "assent_ledger_up", Help: "1 when the ledger answers.",
		}, func() float64 {
			if st.Ping() != nil {
				return 0
			}
			return 1
		}))
	}
	m.h = echo.WrapHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return m
}

func (m *metrics) handler(c echo.Context) error { return m.h(c) }

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (m *metrics) recorded(site, event string) { m.records.WithLabelValues(site, event).Inc() }

func (m *metrics) rejectedOrigin(site string) { m.rejected.WithLabelValues(site).Inc() }
