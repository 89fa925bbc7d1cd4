package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/mail"
	"github.com/assent/assent/mail/mailpit"
	"github.com/assent/assent/store"
)

const publicURL = "https://consent.example.com"

// newMailServer is a test server that sends mail to mp, with its sender
// running and the site "news" (double opt-in) created.
func newMailServer(t *testing.T, mp *mailpit.Server, retry *MailRetry) *testServer {
	t.Helper()
	sender, err := mail.New(mail.Config{URL: mp.SMTPURL(), From: "Example Shop <news@shop.example>", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, &Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		PublicURL: publicURL, Mail: sender, MailRetry: retry})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ts.srv.runMailSender(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	site := ExampleSite("news", []string{shopOrigin})
	site.DoubleOptIn = true
	site.Texts = map[string]json.RawMessage{"fr": json.RawMessage(`{"confirm_subject":"Confirmez, s'il vous plaît","confirm_body":"Cliquez : {link}"}`)}
	ts.createSite(site)
	return ts
}

func signupBody(email, locale string) map[string]any {
	return map[string]any{"email": email, "name": "Ada Lovelace", "locale": locale, "choices": map[string]bool{"newsletter": true}}
}

var confirmLink = regexp.MustCompile(regexp.QuoteMeta(publicURL) + `/c/([A-Za-z0-9_-]+)(\?lang=[a-z-]+)?`)

// mails is the admin list of a site's mails.
func (ts *testServer) mails(site string) []mailView {
	ts.t.Helper()
	resp := ts.admin(http.MethodGet, "/v1/admin/sites/"+site+"/mail", nil)
	if resp.StatusCode != 200 {
		ts.t.Fatalf("mail list: %d %s", resp.StatusCode, resp.body)
	}
	var out []mailView
	if err := json.Unmarshal(resp.body, &out); err != nil {
		ts.t.Fatal(err)
	}
	return out
}

// waitMails polls the admin list until ok holds, or fails after 20 s.
func (ts *testServer) waitMails(site string, ok func([]mailView) bool) []mailView {
	ts.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := ts.mails(site)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			ts.t.Fatalf("mail list never got there: %+v", m)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func TestDoubleOptInMailAndConfirm(t *testing.T) {
	mp := mailpit.Start(t)
	ts := newMailServer(t, mp, nil)
	hdr := map[string]string{"X-Forwarded-For": ipDE, "Origin": shopOrigin, "User-Agent": "Signup-Browser/1.0"}

	resp := ts.do(http.MethodPost, "/v1/sites/news/signups", signupBody("Ada@Example.org", "de"), hdr)
	if resp.StatusCode != 201 {
		t.Fatalf("signup: %d %s", resp.StatusCode, resp.body)
	}
	var created struct {
		ID          string `json:"id"`
		DoubleOptIn string `json:"double_opt_in"`
	}
	json.Unmarshal(resp.body, &created)
	if created.DoubleOptIn != "pending" {
		t.Fatalf("signup answer %s, want double_opt_in pending", resp.body)
	}

	m := mp.WaitFor("ada@example.org", 20*time.Second)
	if m.Subject != "Bitte bestätigen Sie Ihre Anmeldung bei Example Shop" {
		t.Errorf("subject %q, want the German one", m.Subject)
	}
	if m.From.Address != "news@shop.example" || len(m.To) != 1 {
		t.Errorf("from %+v to %+v", m.From, m.To)
	}
	h, err := mp.Headers(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	unsub := h["List-Unsubscribe"]
	if len(unsub) != 1 || !strings.HasPrefix(unsub[0], "<"+publicURL+"/u/") || !strings.HasSuffix(unsub[0], ">") {
		t.Errorf("List-Unsubscribe %q", unsub)
	}
	if got := h["List-Unsubscribe-Post"]; len(got) != 1 || got[0] != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post %q", got)
	}
	if mid := h["Message-Id"]; len(mid) != 1 || !strings.Contains(mid[0], created.ID) || !strings.HasSuffix(mid[0], "@shop.example>") {
		t.Errorf("Message-ID %q", mid)
	}
	if lang := h["Content-Language"]; len(lang) != 1 || lang[0] != "de" {
		t.Errorf("Content-Language %q", lang)
	}
	// Nothing personal beyond the To: no name, no IP, no user agent.
	all, _ := json.Marshal(h)
	for _, personal := range []string{"Ada", "Lovelace", "85.214", "Signup-Browser"} {
		if strings.Contains(m.Text+m.HTML+string(all), personal) {
			t.Errorf("the mail carries %q", personal)
		}
	}
	match := confirmLink.FindStringSubmatch(m.Text)
	if match == nil || !strings.Contains(m.HTML, match[0]) {
		t.Fatalf("no confirmation link in the plain text or the HTML:\n%s\n%s", m.Text, m.HTML)
	}
	token := match[1]

	// A mail scanner follows the link: the page changes nothing.
	before := ts.count("news")
	if match[2] != "?lang=de" {
		t.Errorf("the link %q does not carry the signup's language", match[0])
	}
	// The page is in the signup's language, whatever the browser prefers.
	page := ts.do(http.MethodGet, "/c/"+token+match[2], nil, map[string]string{"Accept-Language": "en"})
	if page.StatusCode != 200 || !strings.Contains(string(page.body), "Bestätigen") || !strings.Contains(string(page.body), "Example Shop — Newsletter") {
		t.Fatalf("confirm page: %d %s", page.StatusCode, page.body)
	}
	if ts.count("news") != before {
		t.Fatal("GET /c/{token} stored something")
	}
	// The person clicks Confirm (the page's form post).
	form := ts.do(http.MethodPost, "/v1/confirm", "token="+url.QueryEscape(token),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": "203.0.113.9", "User-Agent": "Clicker/2", "Accept-Language": "de"})
	if form.StatusCode != 200 || !strings.Contains(string(form.body), "Vielen Dank!") {
		t.Fatalf("confirm form: %d %s", form.StatusCode, form.body)
	}
	if ts.count("news") != before+1 {
		t.Fatal("confirming stored no record")
	}
	// Twice (JSON this time): 200, the same record, nothing new.
	again := ts.do(http.MethodPost, "/v1/confirm", map[string]string{"token": token}, nil)
	var conf confirmResponse
	json.Unmarshal(again.body, &conf)
	if again.StatusCode != 200 || conf.DoubleOptIn != "confirmed" || conf.ID == "" || ts.count("news") != before+1 {
		t.Fatalf("second confirm: %d %s (records %d)", again.StatusCode, again.body, ts.count("news"))
	}
	recs, _, _ := ts.st.Subject("ada@example.org")
	c := recs[len(recs)-1]
	if c.ID != conf.ID || c.Event != "confirm" || c.Source != "double_opt_in" || c.Confirms != created.ID ||
		c.IP != "203.0.113.0" || c.UserAgent != "Clicker/2" {
		t.Fatalf("confirm record %+v", c)
	}

	// The signups export shows the whole proof.
	exp := ts.admin(http.MethodGet, "/v1/admin/sites/news/signups?format=jsonl", nil)
	var row signupJSON
	json.Unmarshal(exp.body, &row)
	if row.DoubleOptIn != "confirmed" || row.SignupIP != "85.214.132.0" || row.ConfirmIP != "203.0.113.0" ||
		row.ConfirmedAt != fmtTime(c.RecordedAt) || row.SignupAt == "" || !strings.HasPrefix(row.UnsubURL, publicURL+"/u/") {
		t.Fatalf("signups export row %s", exp.body)
	}
	csv := ts.admin(http.MethodGet, "/v1/admin/sites/news/signups", nil)
	if !strings.Contains(string(csv.body), "double_opt_in,signup_at,signup_ip,confirmed_at,confirm_ip,unsubscribe_url,suppressed") ||
		!strings.Contains(string(csv.body), ",confirmed,") {
		t.Fatalf("signups CSV:\n%s", csv.body)
	}

	// Admins see the mail, and /metrics counts it.
	ms := ts.mails("news")
	if len(ms) != 1 || ms[0].State != "sent" || ms[0].To != "ada@example.org" || ms[0].Attempts != 1 || ms[0].SentAt == "" || ms[0].Kind != "confirm" {
		t.Fatalf("mail list %+v", ms)
	}
	metrics := ts.do(http.MethodGet, "/metrics", nil, nil)
	if !strings.Contains(string(metrics.body), `assent_mail_total{state="sent"} 1`) {
		t.Errorf("metrics lack assent_mail_total sent 1")
	}

	// Bad tokens.
	for _, bad := range []string{"", "nonsense", token[:len(token)-3] + "AAA"} {
		r := ts.do(http.MethodPost, "/v1/confirm", map[string]string{"token": bad}, nil)
		if r.StatusCode != 404 || r.errorCode() != "invalid_token" {
			t.Errorf("confirm %q: %d %s", bad, r.StatusCode, r.body)
		}
	}
	if r := ts.do(http.MethodPost, "/v1/confirm", `{"token":`, nil); r.StatusCode != 400 || r.errorCode() != "invalid_json" {
		t.Errorf("confirm with broken JSON: %d %s", r.StatusCode, r.body)
	}
	if r := ts.do(http.MethodGet, "/c/nonsense", nil, nil); r.StatusCode != 404 {
		t.Errorf("page of a bad token: %d", r.StatusCode)
	}

	// RFC 8058 one-click unsubscribe at the List-Unsubscribe URL.
	upath := strings.TrimSuffix(strings.TrimPrefix(unsub[0], "<"+publicURL), ">")
	if r := ts.do(http.MethodPost, upath, "List-Unsubscribe=Other", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); r.StatusCode != 400 {
		t.Errorf("one-click with a wrong body: %d", r.StatusCode)
	}
	one := ts.do(http.MethodPost, upath, "List-Unsubscribe=One-Click", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if one.StatusCode != 200 {
		t.Fatalf("one-click: %d %s", one.StatusCode, one.body)
	}
	recs, st, _ := ts.st.Subject("ada@example.org")
	if last := recs[len(recs)-1]; last.Event != "withdraw" || last.Source != "unsubscribe" || st.Purposes["news"]["newsletter"] != "denied" {
		t.Fatalf("after one-click: %+v", last)
	}
	// Again (mail clients retry): 200, nothing new stored.
	n := ts.count("news")
	if r := ts.do(http.MethodPost, upath, "List-Unsubscribe=One-Click", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); r.StatusCode != 200 || ts.count("news") != n {
		t.Errorf("a repeated one-click: %d, %d records (was %d)", r.StatusCode, ts.count("news"), n)
	}
	if r := ts.do(http.MethodPost, "/u/nonsense", "List-Unsubscribe=One-Click", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); r.StatusCode != 404 || r.errorCode() != "invalid_token" {
		t.Errorf("one-click with a bad token: %d %s", r.StatusCode, r.body)
	}
}

func TestConfirmationMailLanguageAndCap(t *testing.T) {
	mp := mailpit.Start(t)
	ts := newMailServer(t, mp, nil)
	// The site's own French texts win over the built-in ones.
	if r := ts.do(http.MethodPost, "/v1/sites/news/signups", signupBody("fr@example.org", "fr"), nil); r.StatusCode != 201 {
		t.Fatal(r.StatusCode)
	}
	m := mp.WaitFor("fr@example.org", 20*time.Second)
	if m.Subject != "Confirmez, s'il vous plaît" || !strings.HasPrefix(m.Text, "Cliquez : "+publicURL+"/c/") {
		t.Errorf("French mail: %q %q", m.Subject, m.Text)
	}
	// Built-in Polish texts.
	ts.do(http.MethodPost, "/v1/sites/news/signups", signupBody("pl@example.org", "pl"), nil)
	if m := mp.WaitFor("pl@example.org", 20*time.Second); m.Subject != "Potwierdź subskrypcję Example Shop" {
		t.Errorf("Polish subject %q", m.Subject)
	}
	// Five signups of one address: every record is stored, three mails go.
	for i := 0; i < 5; i++ {
		if r := ts.do(http.MethodPost, "/v1/sites/news/signups", signupBody("bomb@example.org", "en"), nil); r.StatusCode != 201 {
			t.Fatalf("signup %d: %d", i, r.StatusCode)
		}
	}
	ts.waitMails("news", func(ms []mailView) bool {
		sent := 0
		for _, m := range ms {
			if m.State == "sent" {
				sent++
			}
		}
		return sent == len(ms)
	})
	if n := mp.Count("bomb@example.org"); n != 3 {
		t.Fatalf("%d mails to one address, want 3", n)
	}
	if recs, _, _ := ts.st.Subject("bomb@example.org"); len(recs) != 5 {
		t.Fatalf("%d records, want 5", len(recs))
	}
}

// TestMailWaitsForSMTP: the SMTP server is down when the signup comes; the
// mail is retried and arrives once it is up.
func TestMailWaitsForSMTP(t *testing.T) {
	mp := mailpit.New(t) // not started yet
	ts := newMailServer(t, mp, &MailRetry{Steps: []time.Duration{50 * time.Millisecond}, Every: 100 * time.Millisecond, GiveUp: time.Minute})
	if r := ts.do(http.MethodPost, "/v1/sites/news/signups", signupBody("late@example.org", "en"), nil); r.StatusCode != 201 {
		t.Fatal(r.StatusCode)
	}
	ms := ts.waitMails("news", func(ms []mailView) bool { return len(ms) == 1 && ms[0].Attempts >= 2 })
	if ms[0].State != "queued" || ms[0].LastError == "" || ms[0].NextAt == "" {
		t.Fatalf("while SMTP is down: %+v", ms[0])
	}
	mp.Start()
	m := mp.WaitFor("late@example.org", 20*time.Second)
	if !confirmLink.MatchString(m.Text) {
		t.Fatalf("mail without a link: %q", m.Text)
	}
	ms = ts.waitMails("news", func(ms []mailView) bool { return ms[0].State == "sent" })
	if ms[0].Attempts < 3 {
		t.Errorf("sent after %d attempts, want the failed ones counted too", ms[0].Attempts)
	}
}

func TestRetrySchedule(t *testing.T) {
	r := DefaultMailRetry
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	now := t0
	var delays []time.Duration
	for n := 1; ; n++ {
		next := r.next(n, t0, now)
		if next.IsZero() {
			break
		}
		delays = append(delays, next.Sub(now))
		now = next
	}
	want := []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 30 * time.Minute}
	for i, d := range want {
		if delays[i] != d {
			t.Fatalf("retry %d after %v, want %v", i+1, delays[i], d)
		}
	}
	if len(delays) < 20 || delays[len(delays)-1] != time.Hour || now.Sub(t0) > 24*time.Hour {
		t.Fatalf("hourly part: %d retries ending %v after queueing", len(delays), now.Sub(t0))
	}
}

func TestDoubleOptInNeedsMail(t *testing.T) {
	ts := newTestServer(t, nil)
	site := ExampleSite("news", []string{shopOrigin})
	site.DoubleOptIn = true
	r := ts.admin(http.MethodPost, "/v1/admin/sites", site)
	if r.StatusCode != 422 || r.errorCode() != "mail_not_configured" {
		t.Fatalf("double opt-in without --smtp: %d %s", r.StatusCode, r.body)
	}
	r = ts.admin(http.MethodPut, "/v1/admin/sites/shop", func() store.Site { s := testSite(); s.DoubleOptIn = true; return s }())
	if r.StatusCode != 422 || r.errorCode() != "mail_not_configured" {
		t.Fatalf("PUT double opt-in without --smtp: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodGet, "/v1/admin/sites/nosuch/mail", nil); r.StatusCode != 404 {
		t.Errorf("mail list of an unknown site: %d", r.StatusCode)
	}
	if r := ts.admin(http.MethodGet, "/v1/admin/sites/shop/mail?limit=x", nil); r.StatusCode != 400 {
		t.Errorf("mail list with a bad limit: %d", r.StatusCode)
	}
	if r := ts.do(http.MethodGet, "/v1/admin/sites/shop/mail", nil, nil); r.StatusCode != 401 {
		t.Errorf("mail list without a token: %d", r.StatusCode)
	}
}

// TestConfirmLinkExpires: a link older than 7 days answers 410
// token_expired (the page in the visitor's language), stores nothing, and
// the signup's state becomes expired.
func TestConfirmLinkExpires(t *testing.T) {
	clock := struct {
		sync.Mutex
		t time.Time
	}{t: time.Now()}
	now := func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.t }
	st, err := store.Open(filepath.Join(t.TempDir(), "assent.db"), store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	loc, err := geo.Open(testGeoDB(t))
	if err != nil {
		t.Fatal(err)
	}
	sender, _ := mail.New(mail.Config{URL: "smtp://127.0.0.1:1?tls=none", From: "news@shop.example"})
	srv, err := New(Config{PublicURL: publicURL, Mail: sender}, store.Bolt(st), loc, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); st.Close(); loc.Close() })
	site := ExampleSite("news", nil)
	site.DoubleOptIn = true
	if _, err := st.CreateSite(site); err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, url: hs.URL, st: st, srv: srv}
	r := ts.do(http.MethodPost, "/v1/sites/news/signups", signupBody("old@example.org", "de"), nil)
	var created struct{ ID string }
	json.Unmarshal(r.body, &created)
	token := st.ConfirmToken("news", created.ID)
	clock.Lock()
	clock.t = clock.t.Add(store.ConfirmTTL + time.Minute)
	clock.Unlock()
	before := ts.count("news")
	if r := ts.do(http.MethodPost, "/v1/confirm", map[string]string{"token": token}, nil); r.StatusCode != 410 || r.errorCode() != "token_expired" {
		t.Fatalf("expired link: %d %s", r.StatusCode, r.body)
	}
	page := ts.do(http.MethodPost, "/v1/confirm", "token="+url.QueryEscape(token), map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Accept-Language": "de"})
	if page.StatusCode != 410 || !strings.Contains(string(page.body), "Dieser Bestätigungslink ist abgelaufen") {
		t.Fatalf("expired link, form: %d %s", page.StatusCode, page.body)
	}
	if ts.count("news") != before {
		t.Fatal("an expired link stored a record")
	}
	var state string
	st.Subjects("news", store.Query{Email: "old@example.org"}, func(s store.SubjectState) error { state = s.DoubleOptIn; return nil })
	if state != "expired" {
		t.Fatalf("state %q, want expired", state)
	}
}
