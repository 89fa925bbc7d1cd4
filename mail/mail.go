// Package mail sends Assent's mails over SMTP (github.com/wneessen/go-mail):
// it parses the --smtp URL, composes a message (plain text and HTML, the
// List-Unsubscribe headers of RFC 2369 and RFC 8058, a stable Message-ID)
// and sends it, telling a temporary refusal from a permanent one. It knows
// nothing of the ledger or of HTTP; the server's sender drains the outbox
// through it.
package mail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Config is where and as whom to send.
type Config struct {
	// URL is smtp://user:pass@host:587 (STARTTLS when offered),
	// smtp://host:1025?tls=none (plain, a local relay) or smtps://host:465
	// (implicit TLS).
	URL string
	// From is the From of every mail: "Example Shop <news@shop.example>".
	From string
	// Timeout bounds one connection and send; 0 means 30 s.
	Timeout time.Duration
}

// Sender sends mails. It is safe for concurrent use; each Send opens its
// own connection (confirmation mails are few).
type Sender struct {
	host     string
	port     int
	opts     []gomail.Option
	from     string
	fromAddr string
}

// New checks the configuration; it does not connect.
func New(c Config) (*Sender, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" || (u.Scheme != "smtp" && u.Scheme != "smtps") {
		return nil, fmt.Errorf("--smtp: want smtp://[user:pass@]host[:port][?tls=none] or smtps://…, got %q", redact(c.URL))
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("--mail-from: want an address such as \"Example Shop <news@shop.example>\": %v", err)
	}
	host := u.Hostname()
	port := 587
	if u.Scheme == "smtps" {
		port = 465
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("--smtp: bad port %q", p)
		}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	opts := []gomail.Option{gomail.WithPort(port), gomail.WithTimeout(timeout)}
	switch tls := u.Query().Get("tls"); {
	case u.Scheme == "smtps":
		opts = append(opts, gomail.WithSSL())
	case tls == "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case tls == "" || tls == "opportunistic":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case tls == "required":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	default:
		return nil, fmt.Errorf("--smtp: tls=%q: want none, opportunistic or required", tls)
	}
	if user := u.User.Username(); user != "" {
		pass, _ := u.User.Password()
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover), gomail.WithUsername(user), gomail.WithPassword(pass))
	}
	return &Sender{host: host, port: port, opts: opts, from: from.String(), fromAddr: from.Address}, nil
}

// redact drops a password from a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Describe names the server for logs, without credentials.
func (s *Sender) Describe() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// Message is one mail.
type Message struct {
	To        string // the bare address: the only personal data in the mail
	Subject   string
	Text      string // text/plain
	HTML      string // text/html alternative; "" for none
	MessageID string // without angle brackets: "<id>@<domain of From>" is made from it
	// Unsubscribe is the one-click unsubscribe URL (List-Unsubscribe and
	// List-Unsubscribe-Post: List-Unsubscribe=One-Click); "" for none.
	Unsubscribe string
	Lang        string // Content-Language
}

// Error is a failed send: Code is the SMTP reply code (0 if the server
// was not reached), Temporary whether trying again may succeed.
type Error struct {
	Code      int
	Temporary bool
	Err       error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Send composes and sends m. Its error is an *Error.
func (s *Sender) Send(ctx context.Context, m Message) error {
	msg := gomail.NewMsg()
	if err := msg.From(s.from); err != nil {
		return &Error{Err: fmt.Errorf("from: %w", err)}
	}
	if err := msg.To(m.To); err != nil {
		return &Error{Err: fmt.Errorf("to: %w", err)}
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageIDWithValue(m.MessageID + "@" + domainOf(s.fromAddr))
	if m.Lang != "" {
		msg.SetGenHeader(gomail.HeaderContentLang, m.Lang)
	}
	if m.Unsubscribe != "" {
		msg.SetGenHeader("List-Unsubscribe", "<"+m.Unsubscribe+">")
		msg.SetGenHeader("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	}
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	c, err := gomail.NewClient(s.host, s.opts...)
	if err != nil {
		return &Error{Err: err}
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return classify(err)
	}
	return nil
}

func domainOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[i+1:]
		}
	}
	return "localhost"
}

// classify turns go-mail's error into an *Error: a 5xx reply is permanent,
// anything else (a 4xx, a refused or broken connection) temporary.
func classify(err error) *Error {
	e := &Error{Temporary: true, Err: err}
	var se *gomail.SendError
	if errors.As(err, &se) {
		e.Code = se.ErrorCode()
		if e.Code >= 500 && e.Code < 600 {
			e.Temporary = false
		}
		if se.IsTemp() {
			e.Temporary = true
		}
	}
	return e
}
