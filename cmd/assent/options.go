package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// option is one row of the configuration table: every flag with its
// default, its ASSENT_* environment name and its meaning, in one place.
type option struct {
	name, def, usage string
}

// options is that table. A sub-command declares the names it takes.
var options = map[string]option{
	"addr":                  {"addr", ":8080", "address to listen on"},
	"data":                  {"data", "./data", "folder of the ledger file (assent.db)"},
	"database":              {"database", "", "a PostgreSQL database (postgres://user:pass@host:5432/db?sslmode=…) that several replicas share, instead of the file in --data; ASSENT_DATABASE_FILE names a file holding it"},
	"geoip":                 {"geoip", "", "country database (.mmdb): ip-location-db or MaxMind GeoIP2/GeoLite2 Country/City; empty = data/geo-whois-asn-country.mmdb if present, else every country is unknown (opt-in)"},
	"trusted-proxies":       {"trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed (e.g. 10.0.0.0/8,127.0.0.1)"},
	"metrics-allow":         {"metrics-allow", "127.0.0.0/8,::1/128", "comma-separated CIDRs that may read /metrics without a token (others need an admin or viewer bearer token)"},
	"country-header":        {"country-header", "", "a CDN's country header (e.g. CF-IPCountry), believed only from a trusted proxy"},
	"rate-limit":            {"rate-limit", "10", "writes per second per client address, IPv6 per /64 (0 = off)"},
	"demo":                  {"demo", "false", "serve the demo page at / with a demo site and a demo-only country switch"},
	"dev":                   {"dev", "false", "read widget/ and server/console/ from disk and rebuild on change (run from the checkout)"},
	"max-conns-per-client":  {"max-conns-per-client", "64", "open connections per client (TCP peer) address, IPv6 per /64; more are closed at once (0 = off)"},
	"public-url":            {"public-url", "", "this server's public base URL, for unsubscribe and confirmation links (default: none, so no unsubscribe links; never taken from a request's Host; required with --smtp; --demo: its own address)"},
	"smtp":                  {"smtp", "", "SMTP server for confirmation mails: smtp://user:pass@host:587 (STARTTLS when offered), smtp://host:1025?tls=none, smtps://host:465; empty = no mail (ASSENT_SMTP_FILE: read it from a file)"},
	"mail-from":             {"mail-from", "", "From of every mail, e.g. \"Example Shop <news@shop.example>\"; required with --smtp"},
	"geo-poll":              {"geo-poll", "30s", "how often to look for a changed country database (0 = only on SIGHUP)"},
	"retention-every":       {"retention-every", "1h", "how often the retention purge runs"},
	"log-format":            {"log-format", "text", "log format: text or json"},
	"log-level":             {"log-level", "info", "log level: debug, info, warn, error"},
	"server":                {"server", "", "URL of a running server to ask instead of opening the ledger (token in ASSENT_TOKEN)"},
	"site":                  {"site", "", "site id (subject withdraw: comma-separated ids; empty = all)"},
	"from":                  {"from", "", "start of the period, inclusive (RFC 3339 or YYYY-MM-DD)"},
	"to":                    {"to", "", "end of the period, exclusive (RFC 3339 or YYYY-MM-DD); for ledger copy, the postgres:// URL to copy into"},
	"format":                {"format", "csv", "export format: csv, xlsx or jsonl"},
	"o":                     {"o", "-", "output file (- = stdout)"},
	"email":                 {"email", "", "the person's email address"},
	"visitor-id":            {"visitor-id", "", "a visitor id the person's browser used"},
	"receipt":               {"receipt", "", "the record id of a receipt the person holds"},
	"name":                  {"name", "", "a name for the token; subject rectify: the person's corrected name"},
	"new-email":             {"new-email", "", "subject rectify: the person's corrected address"},
	"reason":                {"reason", "", "subject withdraw|rectify: who asked, how and when (kept in the record)"},
	"role":                  {"role", "admin", "role of a token or console user: admin (everything) or viewer (read only)"},
	"file":                  {"file", "", "a site config JSON file"},
	"purpose":               {"purpose", "", "export: only records granting this purpose; subject withdraw: the purpose withdrawn (comma-separated ids; empty = all)"},
	"country":               {"country", "", "only records from this country (ISO code)"},
	"regime":                {"regime", "", "only records of this regime: opt-in or notice"},
	"webhook-allow-private": {"webhook-allow-private", "false", "let webhook endpoints point at loopback, private, link-local and reserved addresses (default: refused when made and at connect time)"},
}

func envName(flagName string) string {
	return "ASSENT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flags holds one sub-command's parsed values.
type flags struct {
	fs   *flag.FlagSet
	vals map[string]*string
	args []string
}

// parseFlags parses args for a sub-command taking names, flags and words in
// any order. Environment variables fill in what the command line leaves out.
// Bad usage is an error; -h prints the table of the command's options.
func parseFlags(cmd string, names []string, args []string, stderr io.Writer) (*flags, error) {
	f := &flags{fs: flag.NewFlagSet(cmd, flag.ContinueOnError), vals: map[string]*string{}}
	f.fs.SetOutput(io.Discard)
	for _, n := range names {
		o, ok := options[n]
		if !ok {
			panic("no option " + n)
		}
		def := o.def
		if v, ok := os.LookupEnv(envName(n)); ok {
			def = v
		}
		v := def
		f.vals[n] = &v
		if o.def == "true" || o.def == "false" {
			f.fs.Var(boolString{&v}, n, o.usage) // --demo alone means true
		} else {
			f.fs.StringVar(&v, n, def, o.usage)
		}
	}
	f.fs.Usage = func() { printOptions(stderr, cmd, names) }
	for {
		if err := f.fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				f.fs.Usage()
			}
			return nil, err
		}
		args = f.fs.Args()
		if len(args) == 0 {
			break
		}
		f.args = append(f.args, args[0])
		args = args[1:]
	}
	return f, nil
}

func printOptions(w io.Writer, cmd string, names []string) {
	fmt.Fprintf(w, "Usage of assent %s:\n", cmd)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  flag\tenvironment\tdefault\tmeaning")
	for _, n := range names {
		o := options[n]
		fmt.Fprintf(tw, "  --%s\t%s\t%s\t%s\n", n, envName(n), o.def, o.usage)
	}
	tw.Flush()
}

func (f *flags) str(name string) string { return *f.vals[name] }

func (f *flags) bool(name string) (bool, error) {
	switch strings.ToLower(f.str(name)) {
	case "", "false", "0", "no":
		return false, nil
	case "true", "1", "yes":
		return true, nil
	}
	return false, usageError{fmt.Sprintf("--%s: want true or false, got %q", name, f.str(name))}
}

func (f *flags) duration(name string) (time.Duration, error) {
	d, err := time.ParseDuration(f.str(name))
	if err != nil || d < 0 {
		return 0, usageError{fmt.Sprintf("--%s: want a duration such as 30s, got %q", name, f.str(name))}
	}
	return d, nil
}

// usageError is bad usage: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// boolString is a string flag that may stand alone, like a bool flag.
type boolString struct{ p *string }

func (b boolString) String() string {
	if b.p == nil {
		return ""
	}
	return *b.p
}
func (b boolString) Set(s string) error { *b.p = s; return nil }
func (b boolString) IsBoolFlag() bool   { return true }
