package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/mail"
	"github.com/assent/assent/server"
	"github.com/assent/assent/store"
	"github.com/assent/assent/store/postgres"
)

var serveFlags = []string{"addr", "data", "database", "geoip", "trusted-proxies", "metrics-allow", "country-header", "rate-limit", "max-conns-per-client", "demo", "dev",
	"public-url", "smtp", "mail-from", "geo-poll", "retention-every", "log-format", "log-level", "webhook-allow-private"}

// defaultGeoDB is where `make` puts the default country database.
const defaultGeoDB = "geo-whois-asn-country.mmdb"

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("serve", serveFlags, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", f.args[0])}
	}
	log, err := newLogger(f.str("log-format"), f.str("log-level"), stderr)
	if err != nil {
		return err
	}
	cfg := server.Config{CountryHeader: f.str("country-header"), PublicURL: f.str("public-url")}
	if cfg.TrustedProxies, err = geo.ParsePrefixes(f.str("trusted-proxies")); err != nil {
		return usageError{"--trusted-proxies: " + err.Error()}
	}
	if cfg.MetricsAllow, err = geo.ParsePrefixes(f.str("metrics-allow")); err != nil {
		return usageError{"--metrics-allow: " + err.Error()}
	}
	if cfg.RateLimit, err = strconv.ParseFloat(f.str("rate-limit"), 64); err != nil || cfg.RateLimit < 0 {
		return usageError{fmt.Sprintf("--rate-limit: want a number ≥ 0, got %q", f.str("rate-limit"))}
	}
	if cfg.MaxConnsPerClient, err = strconv.Atoi(f.str("max-conns-per-client")); err != nil || cfg.MaxConnsPerClient < 0 {
		return usageError{fmt.Sprintf("--max-conns-per-client: want a whole number ≥ 0, got %q", f.str("max-conns-per-client"))}
	}
	if cfg.Demo, err = f.bool("demo"); err != nil {
		return err
	}
	if cfg.Dev, err = f.bool("dev"); err != nil {
		return err
	}
	if cfg.Mail, err = mailSender(f); err != nil {
		return err
	}
	if cfg.WebhookAllowPrivate, err = f.bool("webhook-allow-private"); err != nil {
		return err
	}
	geoPoll, err := f.duration("geo-poll")
	if err != nil {
		return err
	}
	retention, err := f.duration("retention-every")
	if err != nil {
		return err
	}

	st, err := openLedgerDB(ctx, f, false)
	if err != nil {
		return err
	}
	defer st.Close()

	geoPath := f.str("geoip")
	if geoPath == "" {
		if p := filepath.Join(f.str("data"), defaultGeoDB); fileExists(p) {
			geoPath = p
		} else {
			log.Warn("no country database: every visitor gets the opt-in regime; run `make geodb` or pass --geoip")
		}
	}
	loc, err := geo.Open(geoPath)
	if err != nil {
		return err
	}
	defer loc.Close()

	ln, err := net.Listen("tcp", f.str("addr"))
	if err != nil {
		return err
	}
	base := "http://" + displayAddr(ln.Addr())
	if cfg.Demo && cfg.PublicURL == "" {
		cfg.PublicURL = base // the demo's links point at its own address
	}
	if cfg.PublicURL == "" {
		log.Warn("no --public-url: signups get no unsubscribe_url and webhooks and exports no unsubscribe links until it is set")
	}
	srv, err := server.New(cfg, st, loc, log)
	if err != nil {
		ln.Close()
		return err
	}

	if err := firstToken(ctx, st, cfg.Demo, stdout); err != nil {
		return err
	}
	if cfg.Demo {
		if err := ensureDemoSite(ctx, st, ln.Addr(), cfg.Mail != nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "demo page:     %s/\nadmin console: %s/admin/\n", base, base)
		if err := demoUser(ctx, st, stdout); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if geoPoll > 0 && geoPath != "" {
		go loc.Watch(ctx, geoPoll, log)
	}
	go reloadOnHUP(ctx, loc, log)
	if retention > 0 {
		go st.RunRetention(ctx, retention, log)
	}
	log.Info("serving", "addr", ln.Addr().String(), "ledger", st.Describe(), "geoip", geoPath, "geo_db", loc.BuildDate(),
		"widget_build", srv.WidgetBuild(), "demo", cfg.Demo)
	fmt.Fprintf(stdout, "listening on %s\n", base)
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("stopped; pending ledger writes committed")
	return nil
}

func reloadOnHUP(ctx context.Context, loc *geo.Locator, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := loc.Reload(); err != nil {
				log.Error("country database reload failed; keeping the loaded one", "err", err.Error())
			} else {
				log.Info("country database reloaded", "geo_db", loc.BuildDate())
			}
		}
	}
}

// firstToken prints an admin token on the first start of an empty ledger,
// and in demo mode on every start (a demo token, so `make run` can show one).
func firstToken(ctx context.Context, st store.Ledger, demo bool, stdout io.Writer) error {
	n, err := st.TokenCount(ctx)
	if err != nil {
		return err
	}
	name := "admin"
	if demo {
		name = "demo-" + time.Now().UTC().Format("20060102-150405.000")
	} else if n > 0 {
		return nil
	}
	tok, err := st.CreateToken(ctx, name)
	if err != nil {
		return err
	}
	if err := st.Audit(ctx, "", "token_create", "token "+name+" at start-up"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "admin token %q (shown once; only its hash is stored):\n%s\n", name, tok)
	if !demo {
		fmt.Fprintln(stdout, "to sign in to the console: ASSENT_PASSWORD=… assent user create --email YOU --role admin")
	}
	return nil
}

// demoEmail is the demo's console user.
const demoEmail = "admin@demo.example"

// demoUser makes the demo's admin console user, with a fresh password on
// every start (only its hash is kept, so it cannot be shown again), and
// prints how to sign in.
func demoUser(ctx context.Context, st store.Ledger, stdout io.Writer) error {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	pw := base64.RawURLEncoding.EncodeToString(b)
	_, err := st.CreateUser(ctx, demoEmail, store.RoleAdmin, pw)
	if errors.Is(err, store.ErrExists) {
		err = st.SetPassword(ctx, demoEmail, pw)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "console sign-in: %s with password %s (new on every demo start)\n", demoEmail, pw)
	return nil
}

// ensureDemoSite keeps the demo site's origins on the listening port, and
// turns double opt-in on when the server sends mail.
func ensureDemoSite(ctx context.Context, st store.Ledger, addr net.Addr, mail bool) error {
	port := "8080"
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(ta.Port)
	}
	origins := []string{"http://localhost:" + port, "http://127.0.0.1:" + port}
	site, err := st.Site(ctx, "demo")
	if errors.Is(err, store.ErrNotFound) {
		site = server.DemoSite(origins)
		site.DoubleOptIn = mail
		_, err = st.CreateSite(ctx, site)
		return err
	}
	if err != nil {
		return err
	}
	if fmt.Sprint(site.Origins) != fmt.Sprint(origins) || site.DoubleOptIn != mail {
		site.Origins, site.DoubleOptIn = origins, mail
		_, err = st.PutSite(ctx, site)
	}
	return err
}

// mailSender reads --smtp (or the file ASSENT_SMTP_FILE names, so the
// password need not sit in the environment), --mail-from and --public-url.
func mailSender(f *flags) (*mail.Sender, error) {
	smtp := f.str("smtp")
	if p := os.Getenv("ASSENT_SMTP_FILE"); smtp == "" && p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("ASSENT_SMTP_FILE: %w", err)
		}
		smtp = strings.TrimSpace(string(b))
	}
	if smtp == "" {
		if f.str("mail-from") != "" {
			return nil, usageError{"--mail-from needs --smtp"}
		}
		return nil, nil
	}
	if f.str("mail-from") == "" || f.str("public-url") == "" {
		return nil, usageError{"--smtp needs --mail-from and --public-url (links in mails never come from a request's Host)"}
	}
	if u, err := url.Parse(f.str("public-url")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Sprintf("--public-url: want an http(s) URL such as https://consent.example.com, got %q", f.str("public-url"))}
	}
	s, err := mail.New(mail.Config{URL: smtp, From: f.str("mail-from")})
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return s, nil
}

func displayAddr(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		return "localhost:" + strconv.Itoa(ta.Port)
	}
	return a.String()
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level: want debug, info, warn or error, got %q", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format: want text or json, got %q", format)}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// openLedgerDB opens the ledger a command names: the PostgreSQL database of
// --database, or else the bbolt file in --data (created for a server).
func openLedgerDB(ctx context.Context, f *flags, readOnly bool) (store.Ledger, error) {
	u, err := databaseURL(f)
	if err != nil {
		return nil, err
	}
	if u != "" {
		if !postgres.IsURL(u) {
			return nil, usageError{"--database: want a postgres:// URL, or nothing for the ledger file in --data"}
		}
		db, err := postgres.Open(ctx, u, postgres.Options{})
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	st, err := openStore(f.str("data"), readOnly)
	if err != nil {
		return nil, err
	}
	return store.Bolt(st), nil
}

// databaseURL is --database, or the content of the file ASSENT_DATABASE_FILE
// names (a secret kept in a file, as containers keep them); "" for the
// ledger file in --data.
func databaseURL(f *flags) (string, error) {
	u, ok := f.vals["database"]
	if !ok {
		return "", nil
	}
	if *u == "" {
		if p := os.Getenv("ASSENT_DATABASE_FILE"); p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				return "", fmt.Errorf("ASSENT_DATABASE_FILE: %w", err)
			}
			*u = strings.TrimSpace(string(b))
		}
	}
	return *u, nil
}

// openStore opens the ledger in dir, creating dir for a server.
func openStore(dir string, readOnly bool) (*store.Store, error) {
	if !readOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	return store.Open(filepath.Join(dir, "assent.db"), store.Options{Timeout: time.Second, ReadOnly: readOnly})
}
