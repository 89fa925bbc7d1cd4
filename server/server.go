// Package server is Assent's HTTP face: the widget and public API that
// visitors' browsers call, the admin API, and the admin console page.
//
// Handlers decode, validate, call one function of store or geo, and encode.
// The server owns no data itself: the ledger is store, countries are geo,
// bundles come from build. None of those packages imports this one.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/build"
	"github.com/assent/assent/geo"
	"github.com/assent/assent/mail"
	"github.com/assent/assent/store"
	"github.com/assent/assent/webhook"
	"github.com/assent/assent/widget"
)

// Config is what the server needs from the command line; cmd/assent's option
// table documents every field's flag and environment name.
type Config struct {
	TrustedProxies    []netip.Prefix
	CountryHeader     string // e.g. CF-IPCountry; honoured only from a trusted peer
	RateLimit         float64
	Demo              bool
	Dev               bool   // read widget/ and server/console/ from disk and rebuild on change
	DevDir            string // the widget folder for Dev, default "widget"
	DevConsoleDir     string // the console folder for Dev, default "server/console"
	MaxConnsPerClient int    // open connections per TCP peer, IPv6 per /64; 0 = no cap
	PublicURL         string // base for unsubscribe and confirmation links; "" = none (never from a request's Host)
	// MetricsAllow are the client networks that may read /metrics without a
	// token; nil = loopback only (DefaultMetricsAllow).
	MetricsAllow []netip.Prefix
	// Mail sends confirmation mails (--smtp, --mail-from); nil = no mail,
	// and a site cannot turn double opt-in on.
	Mail *mail.Sender
	// MailRetry overrides DefaultMailRetry: tests shorten it. Not a flag.
	MailRetry *MailRetry
	// WebhookAllowPrivate lets webhook endpoints point at loopback, private
	// and link-local addresses.
	WebhookAllowPrivate bool

	// WebhookSchedule replaces the webhook retry schedule: tests only (no
	// flag sets it), so that retries come in milliseconds.
	WebhookSchedule []time.Duration
}

// Server is the HTTP server and its dependencies.
type Server struct {
	cfg     Config
	store   store.Ledger
	geo     *geo.Locator
	log     *slog.Logger
	echo    *echo.Echo
	texts   *texts
	limit   *rateLimiter
	met     *metrics
	bundle  *bundles
	console *built[*consoleAssets]
	hooks   *webhook.Service

	routeRoles map[string]store.Role // "METHOD /path" of each admin route -> least role
	logins     *loginLimiter
	// rejected counts refused origins per site (in memory; see origins.go).
	rejected *rejectedOrigins
}

// New builds the widget and wires the routes. It fails if the widget does
// not build: a server that cannot serve its script must not start.
func New(cfg Config, st store.Ledger, loc *geo.Locator, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.MetricsAllow == nil {
		cfg.MetricsAllow = DefaultMetricsAllow()
	}
	var src fs.FS = widget.FS
	if cfg.Dev {
		dir := cfg.DevDir
		if dir == "" {
			dir = "widget"
		}
		src = osDirFS(dir)
	}
	b, err := newBundles(src, cfg.Dev, log)
	if err != nil {
		return nil, err
	}
	tx, err := loadTexts(src)
	if err != nil {
		return nil, err
	}
	cons, err := newBuilt(consoleSource(cfg), cfg.Dev, log, buildConsoleAssets)
	if err != nil {
		return nil, err
	}
	if bs, ok := store.BoltStore(st); ok {
		bs.OnFail(func(err error) {
			var fe *store.FailedError
			reason := "other"
			if errors.As(err, &fe) {
				reason = fe.Reason()
			}
			log.Error("ledger write failed: refusing every write until restarted; on restart run `assent verify`",
				"reason", reason, "err", err.Error())
		})
	}
	s := &Server{
		cfg:     cfg,
		store:   st,
		geo:     loc,
		log:     log,
		texts:   tx,
		limit:   newRateLimiter(cfg.RateLimit),
		met:     newMetrics(st),
		bundle:  b,
		console: cons,

		routeRoles: map[string]store.Role{},
		logins:     newLoginLimiter(),
		rejected:   newRejectedOrigins(),
	}
	if s.hooks, err = webhook.New(context.Background(), st, webhook.Options{
		AllowPrivate: cfg.WebhookAllowPrivate, Log: log, Schedule: cfg.WebhookSchedule,
	}); err != nil {
		return nil, err
	}
	s.met.reg.MustRegister(s.hooks.Collectors()...)
	s.echo = s.routes()
	return s, nil
}

// RunWebhooks delivers webhook events until ctx is done (Serve runs it).
func (s *Server) RunWebhooks(ctx context.Context) { s.hooks.Run(ctx) }

// Handler returns the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// WidgetBuild is the hash of the widget bundle being served.
func (s *Server) WidgetBuild() string { return s.bundle.widget().Hash }

// Serve serves on ln until ctx is done, then shuts down gracefully: requests
// in flight finish, and so do the ledger writes they wait for.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.cfg.Mail != nil {
		sctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.runMailSender(sctx) }()
		defer func() { stop(); <-done }()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(limitConns(ln, s.cfg.MaxConnsPerClient)) }()
	hctx, stopHooks := context.WithCancel(ctx)
	hooksDone := make(chan struct{})
	go func() { s.RunWebhooks(hctx); close(hooksDone) }()
	defer func() { stopHooks(); <-hooksDone }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// clientAddr is the address the server decides and limits by: the TCP peer,
// or, behind a trusted proxy, the right-most untrusted X-Forwarded-For entry.
func (s *Server) clientAddr(r *http.Request) netip.Addr {
	return geo.ClientAddr(peerAddr(r), strings.Join(r.Header.Values("X-Forwarded-For"), ","), s.cfg.TrustedProxies)
}

func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// decision is what the server decides about one visitor of one site.
type decision struct {
	Country string
	Source  string // geoip, header, demo, unknown
	Regime  geo.Regime
}

func (s *Server) decide(c echo.Context, site store.Site) decision {
	r := c.Request()
	d := decision{Source: "unknown"}
	switch {
	case s.cfg.Demo && c.QueryParam("demo_country") != "":
		if cc := strings.ToUpper(c.QueryParam("demo_country")); geo.ValidCountry(cc) {
			d.Country, d.Source = cc, "demo"
		}
	case s.cfg.CountryHeader != "" && r.Header.Get(s.cfg.CountryHeader) != "" &&
		geo.IsTrusted(peerAddr(r), s.cfg.TrustedProxies):
		if cc := strings.ToUpper(strings.TrimSpace(r.Header.Get(s.cfg.CountryHeader))); geo.ValidCountry(cc) {
			d.Country, d.Source = cc, "header"
		}
	}
	if d.Source == "unknown" {
		res := s.geo.Lookup(s.clientAddr(r))
		d.Country, d.Source = res.Country, res.Source
	}
	d.Regime = geo.Decide(d.Country, site.OptInCountries)
	return d
}

// built is something made from source files — the widget bundle, the admin
// console — once at start, and with --dev again whenever a source file
// changes. A failed rebuild is logged and the last good build kept.
type built[T any] struct {
	src  fs.FS
	make func(fs.FS) (T, error)
	dev  bool
	log  *slog.Logger

	mu    sync.Mutex
	v     T
	stamp string // dev: the sources' modification stamp of v
}

func newBuilt[T any](src fs.FS, dev bool, log *slog.Logger, make func(fs.FS) (T, error)) (*built[T], error) {
	v, err := make(src)
	if err != nil {
		return nil, err
	}
	b := &built[T]{src: src, make: make, dev: dev, log: log, v: v}
	if dev {
		b.stamp = modStamp(src)
	}
	return b, nil
}

func (b *built[T]) get() T {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dev {
		if st := modStamp(b.src); st != b.stamp {
			b.stamp = st
			if v, err := b.make(b.src); err == nil {
				b.v = v
			} else {
				b.log.Error("dev rebuild failed; serving the previous build", "err", err.Error())
			}
		}
	}
	return b.v
}

// bundles keeps the built widget and, per site, the served script with its
// compressed forms and ETag, made once per site version and widget build.
type bundles struct {
	w    *built[build.Bundle]
	stub *built[build.Bundle] // the Consent Mode stub

	mu      sync.Mutex
	perSite map[string]*servedScript
}

func newBundles(src fs.FS, dev bool, log *slog.Logger) (*bundles, error) {
	w, err := newBuilt(src, dev, log, build.Widget)
	if err != nil {
		return nil, err
	}
	stub, err := newBuilt(src, dev, log, build.ConsentModeStub)
	if err != nil {
		return nil, err
	}
	return &bundles{w: w, stub: stub, perSite: map[string]*servedScript{}}, nil
}

func (b *bundles) widget() build.Bundle { return b.w.get() }

func jsonString(v any) string {
	out, _ := json.Marshal(v)
	return string(out)
}
