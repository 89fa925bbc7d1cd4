package e2e

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/assent/assent/mail/mailpit"
	"github.com/assent/assent/store"
)

// doiServer runs the real binary in demo mode with mail to mp on a port
// chosen beforehand, so --public-url names it; it returns the command, the
// base URL and an admin token made with `assent token create`.
func doiServer(t *testing.T, mp *mailpit.Server, data string) (*exec.Cmd, string) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(mailpit.FreePort(t))
	base := "http://127.0.0.1:" + port
	cmd, _ := startBinary(t, bin, data, "--addr", "127.0.0.1:"+port, "--demo", "--smtp", mp.SMTPURL(),
		"--mail-from", "Assent demo <demo@assent.localhost>", "--public-url", base)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, base
}

func adminToken(t *testing.T, data string) string {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "token", "create", "--data", data, "--name", "e2e").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

func getJSON(t *testing.T, url, token string, out any) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return b
}

func jsonl[T any](t *testing.T, b []byte) []T {
	t.Helper()
	var out []T
	dec := json.NewDecoder(strings.NewReader(string(b)))
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// verifyReceipt checks a receipt's Ed25519 signature against the server's
// JWKS and returns its claims.
func verifyReceipt(t *testing.T, base, jws string) map[string]any {
	t.Helper()
	var set struct{ Keys []struct{ X, Kid string } }
	getJSON(t, base+"/.well-known/jwks.json", "", &set)
	parts := strings.Split(strings.TrimSpace(jws), ".")
	if len(parts) != 3 || len(set.Keys) != 1 {
		t.Fatalf("receipt %q, keys %+v", jws, set.Keys)
	}
	pub, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatal("the receipt's signature does not verify against /.well-known/jwks.json")
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	return claims
}

// The whole double opt-in path, as a person lives it: sign up on the demo
// page in German, the mail arrives in Mailpit in German with the headers
// mail providers require, a mail scanner's GET of the link confirms nothing,
// the person opens the link and clicks Confirm, and the confirm record is in
// the export and its receipt verifies.
func TestDoubleOptInWholePath(t *testing.T) {
	mp := mailpit.Start(t)
	data := t.TempDir()
	token := adminToken(t, data) // before the server holds the ledger
	_, base := doiServer(t, mp, data)
	de := builtinTexts(t, "de")

	ctx := browser(t, chromedp.Flag("lang", "de-DE"), chromedp.Flag("accept-lang", "de-DE,de"))
	do(t, ctx, chromedp.Navigate(base+"/?country=DE"))
	dialogShown(t, ctx)
	press(t, ctx, "\x1b", false) // the cookie banner first
	js[any](t, ctx, `assent.open('signup')`)
	until(t, ctx, "the signup form", root+`.querySelector('input[name=email]')`)
	click(t, ctx, `[data-assent-purpose="newsletter"]`)
	js[any](t, ctx, root+`.querySelector('input[name=email]').focus()`)
	do(t, ctx, chromedp.KeyEvent("jana@example.org"))
	click(t, ctx, `[data-assent-action="submit"]`)
	until(t, ctx, "the pending text", root+`.querySelector('[role=status]')`)
	if got := js[string](t, ctx, root+`.querySelector('[role=status]').textContent`); got != txt(de, "signup", "pending") {
		t.Errorf("after signing up the form says %q, want %q", got, txt(de, "signup", "pending"))
	}

	m := mp.WaitFor("jana@example.org", 30*time.Second)
	if m.Subject != "Bitte bestätigen Sie Ihre Anmeldung bei Assent demo shop" {
		t.Errorf("subject %q", m.Subject)
	}
	h, err := mp.Headers(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if u := h["List-Unsubscribe"]; len(u) != 1 || !strings.HasPrefix(u[0], "<"+base+"/u/") {
		t.Errorf("List-Unsubscribe %q", u)
	}
	if p := h["List-Unsubscribe-Post"]; len(p) != 1 || p[0] != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post %q", p)
	}
	if id := h["Message-Id"]; len(id) != 1 || !strings.HasSuffix(id[0], "@assent.localhost>") {
		t.Errorf("Message-ID %q", id)
	}
	link := regexp.MustCompile(regexp.QuoteMeta(base) + `/c/[A-Za-z0-9_-]+(\?lang=de)?`).FindString(m.Text)
	if !strings.HasSuffix(link, "?lang=de") {
		t.Fatalf("no confirmation link in the signup's language in %q", m.Text)
	}

	records := func() []store.Record {
		return jsonl[store.Record](t, getJSON(t, base+"/v1/admin/sites/demo/consents?format=jsonl", token, nil))
	}
	signups := func() []map[string]any {
		return jsonl[map[string]any](t, getJSON(t, base+"/v1/admin/sites/demo/signups?format=jsonl", token, nil))
	}
	before := records()
	// A mail scanner fetches the link: nothing changes.
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(records()) != len(before) || signups()[0]["double_opt_in"] != "pending" {
		t.Fatalf("a plain GET of the link: %d, %d records (was %d), state %v", resp.StatusCode, len(records()), len(before), signups()[0]["double_opt_in"])
	}

	// The person opens the link and clicks Confirm.
	do(t, ctx, chromedp.Navigate(link))
	until(t, ctx, "the Confirm button", `document.querySelector('[data-assent-action=confirm]')`)
	if got := js[string](t, ctx, `document.querySelector('[data-assent-action=confirm]').textContent`); got != txt(de, "confirm_button") {
		t.Errorf("the button says %q", got)
	}
	if got := js[string](t, ctx, `document.querySelector('main p').textContent`); !strings.Contains(got, "Assent demo shop") {
		t.Errorf("the page does not name the site: %q", got)
	}
	do(t, ctx, chromedp.Click(chromedp.CSS(`[data-assent-action=confirm]`)))
	until(t, ctx, "the thank-you page", `document.querySelector('h1') && document.querySelector('h1').textContent == `+jsString(txt(de, "confirmed_title")))

	after := records()
	if len(after) != len(before)+1 {
		t.Fatalf("%d records after confirming, want %d", len(after), len(before)+1)
	}
	c := after[len(after)-1]
	signup := before[len(before)-1]
	if c.Event != "confirm" || c.Source != "double_opt_in" || c.Confirms != signup.ID || c.Email != "jana@example.org" ||
		c.IP == "" || !strings.Contains(c.UserAgent, "Chrome") {
		t.Fatalf("confirm record %+v (signup %s)", c, signup.ID)
	}
	row := signups()[0]
	if row["double_opt_in"] != "confirmed" || row["confirmed_at"] == "" || row["confirm_ip"] == "" || row["signup_ip"] == "" {
		t.Errorf("signups export row %v", row)
	}
	receipt := js[string](t, ctx, `document.querySelector('[data-receipt]').textContent`)
	claims := verifyReceipt(t, base, receipt)
	if claims["consentReceiptID"] != c.ID || claims["hash"] != c.Hash || claims["event"] != "confirm" {
		t.Errorf("receipt claims %v do not name record %s", claims, c.ID)
	}
	var v struct{ OK bool }
	getJSON(t, base+"/v1/admin/verify", token, &v)
	if !v.OK {
		t.Error("the ledger does not verify")
	}

	// The admin sees the mail and its state in the console's Mail page.
	do(t, ctx, chromedp.Navigate(base+"/admin/#mail"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token+"\r"),
		consoleWait(`document.querySelectorAll('#mail-table tbody tr').length === 1`))
	cells := js[[]string](t, ctx, `[...document.querySelectorAll("#mail-table tbody td")].map(td => td.textContent)`)
	if len(cells) < 4 || cells[1] != "jana@example.org" || cells[2] != "sent" || cells[3] != "1" {
		t.Errorf("the console's mail row %q, want jana@example.org, sent, 1 attempt", cells)
	}
}

// kill -9 right after the 201: the mail was queued in the signup's commit,
// so the restarted server sends it. SMTP is down at first, so the mail
// cannot have left before the kill; it arrives once Mailpit is up.
func TestConfirmationMailSurvivesKill9(t *testing.T) {
	mp := mailpit.New(t) // SMTP down
	data := t.TempDir()
	token := adminToken(t, data)
	cmd, base := doiServer(t, mp, data)
	body := `{"email":"kill@example.org","locale":"fr","choices":{"newsletter":true}}`
	resp, err := http.Post(base+"/v1/sites/demo/signups", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		ID          string `json:"id"`
		DoubleOptIn string `json:"double_opt_in"`
	}
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != 201 || created.DoubleOptIn != "pending" {
		t.Fatalf("signup: %d %+v", resp.StatusCode, created)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	mp.Start()
	doiServerAt(t, mp, data, base)
	m := mp.WaitFor("kill@example.org", 40*time.Second)
	if m.Subject != "Veuillez confirmer votre inscription à Assent demo shop" {
		t.Errorf("subject %q", m.Subject)
	}
	h, _ := mp.Headers(m.ID)
	if id := h["Message-Id"]; len(id) != 1 || !strings.Contains(id[0], created.ID) {
		t.Errorf("Message-ID %q does not name signup %s", id, created.ID)
	}
	var mails []map[string]any
	getJSON(t, base+"/v1/admin/sites/demo/mail", token, &mails)
	if len(mails) != 1 || mails[0]["state"] != "sent" {
		t.Errorf("mail list after the restart: %v", mails)
	}
}

// doiServerAt restarts the binary on the address of base.
func doiServerAt(t *testing.T, mp *mailpit.Server, data, base string) {
	t.Helper()
	bin, _ := buildBinary()
	addr := strings.TrimPrefix(base, "http://")
	cmd, _ := startBinary(t, bin, data, "--addr", addr, "--demo", "--smtp", mp.SMTPURL(),
		"--mail-from", "Assent demo <demo@assent.localhost>", "--public-url", base)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}
