package e2e

// Issue 9 against the real binary: an erased person stays erased, whatever
// the caller sends and however requests interleave.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/assent/assent/store"
)

const ledgerSiteJSON = `{"id":"shop","origins":["https://shop.example"],"purposes":[{"id":"necessary","required":true},` +
	`{"id":"analytics"},{"id":"newsletter","signup":true,"required_for_signup":true}]}`

// liveBinary is a running `assent serve` with an admin token.
type liveBinary struct {
	t     *testing.T
	bin   string
	data  string
	cmd   *exec.Cmd
	base  string
	token string
}

// startLive makes a ledger with the site shop and an admin token, and
// starts the binary on it; extra are more serve flags.
func startLive(t *testing.T, extra ...string) *liveBinary {
	t.Helper()
	bin, data := binaryWithSite(t, ledgerSiteJSON)
	out, err := exec.Command(bin, "token", "create", "--name", "e2e", "--data", data).Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	l := &liveBinary{t: t, bin: bin, data: data, token: strings.TrimSpace(string(out))}
	l.start(extra...)
	return l
}

func (l *liveBinary) start(extra ...string) {
	l.t.Helper()
	l.cmd, l.base = startBinary(l.t, l.bin, l.data, extra...)
	cmd := l.cmd
	l.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
		}
	})
}

func (l *liveBinary) stop() {
	l.t.Helper()
	l.cmd.Process.Signal(syscall.SIGTERM)
	l.cmd.Wait()
}

// call sends a request; body is JSON unless it is a string. It returns
// the status and the body.
func (l *liveBinary) call(method, path string, body any, admin bool) (int, []byte) {
	l.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, l.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if admin {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func errCode(b []byte) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(b, &e)
	return e.Error.Code
}

// subject is GET /v1/admin/subjects with the given query.
func (l *liveBinary) subject(q url.Values) []store.Record {
	l.t.Helper()
	code, b := l.call(http.MethodGet, "/v1/admin/subjects?"+q.Encode(), nil, true)
	var v struct{ Records []store.Record }
	if code != 200 || json.Unmarshal(b, &v) != nil {
		l.t.Fatalf("subject look-up %s: %d %s", q.Encode(), code, b)
	}
	return v.Records
}

// The public signups endpoint once let the caller choose "source":"api" (or
// banner, preferences) and so skip the suppression check: an erased
// address was stored again in clear with a name and a granted newsletter.
func TestErasedStaysErasedWhateverTheSource(t *testing.T) {
	l := startLive(t)
	signup := func(source string) (int, []byte) {
		return l.call(http.MethodPost, "/v1/sites/shop/signups", map[string]any{
			"email": "eve@example.org", "name": "Eve Example", "visitor_id": "v_eve",
			"choices": map[string]bool{"newsletter": true}, "source": source,
		}, false)
	}
	if code, b := signup("api"); code != http.StatusCreated {
		t.Fatalf("signup: %d %s", code, b)
	}
	if recs := l.subject(url.Values{"email": {"eve@example.org"}}); len(recs) != 1 || recs[0].Source != "signup" {
		t.Fatalf("a signup sent with source api was stored as %+v, want source signup", recs)
	}
	if code, b := l.call(http.MethodDelete, "/v1/admin/subjects?email=eve@example.org", nil, true); code != 200 {
		t.Fatalf("erase: %d %s", code, b)
	}
	for _, source := range []string{"", "signup", "api", "banner", "preferences"} {
		if code, b := signup(source); code != http.StatusConflict || errCode(b) != "suppressed" {
			t.Errorf("signup of the erased address with source %q: %d %s, want 409 suppressed", source, code, b)
		}
	}
	// A banner choice from the erased person's browser is stored erased.
	if code, b := l.call(http.MethodPost, "/v1/sites/shop/consents", map[string]any{
		"visitor_id": "v_eve", "choices": map[string]bool{"analytics": true}, "source": "api"}, false); code != http.StatusCreated {
		t.Fatalf("consent: %d %s", code, b)
	}
	for _, what := range []string{"consents", "signups"} {
		for _, format := range []string{"jsonl", "csv"} {
			code, out := l.call(http.MethodGet, "/v1/admin/sites/shop/"+what+"?format="+format, nil, true)
			if code != 200 {
				t.Fatalf("%s export: %d %s", what, code, out)
			}
			for _, clear := range []string{"eve@example.org", "Eve Example", "v_eve"} {
				if bytes.Contains(out, []byte(clear)) {
					t.Errorf("%s %s export holds %q after erasure:\n%s", what, format, clear, out)
				}
			}
		}
	}
}

// An unsubscribe overlapping an erasure once stored the address again (295
// of 300 runs). Both requests at once, many times, over HTTP.
func TestEraseUnsubscribeRaceOverHTTP(t *testing.T) {
	l := startLive(t, "--public-url", "https://consent.example.com") // signups carry unsubscribe_url only with it
	const runs = 60
	for i := 0; i < runs; i++ {
		email := fmt.Sprintf("race%02d@example.org", i)
		code, b := l.call(http.MethodPost, "/v1/sites/shop/signups", map[string]any{
			"email": email, "visitor_id": fmt.Sprintf("v_race%02d", i), "choices": map[string]bool{"newsletter": true}}, false)
		var w struct {
			UnsubscribeURL string `json:"unsubscribe_url"`
		}
		if code != http.StatusCreated || json.Unmarshal(b, &w) != nil {
			t.Fatalf("signup: %d %s", code, b)
		}
		token := w.UnsubscribeURL[strings.LastIndex(w.UnsubscribeURL, "/u/")+3:]
		var wg sync.WaitGroup
		start := make(chan struct{})
		var codes [2]int
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			codes[0], _ = l.call(http.MethodDelete, "/v1/admin/subjects?email="+email, nil, true)
		}()
		go func() {
			defer wg.Done()
			<-start
			codes[1], _ = l.call(http.MethodPost, "/v1/unsubscribe", map[string]string{"token": token}, false)
		}()
		close(start)
		wg.Wait()
		if codes != [2]int{200, 200} {
			t.Fatalf("run %d: erase %d, unsubscribe %d", i, codes[0], codes[1])
		}
		for _, r := range l.subject(url.Values{"email": {email}}) {
			if !r.Erased || r.Email != "" || r.VisitorID != "" || r.IP != "" || r.UserAgent != "" {
				t.Fatalf("run %d: record %s (%s) holds personal data after the erasure: %+v", i, r.ID, r.Source, r)
			}
		}
	}
	l.stop()
	raw, err := exec.Command(l.bin, "export", "--data", l.data, "--site", "shop", "--format", "jsonl").CombinedOutput()
	if err != nil || bytes.Contains(raw, []byte("@example.org")) {
		t.Fatalf("export after the races holds an address: %v\n%s", err, raw)
	}
	if out, err := exec.Command(l.bin, "verify", "--data", l.data).CombinedOutput(); err != nil {
		t.Fatalf("verify: %v %s", err, out)
	}
}

// Erasing an address erases the banner choices of the visitor ids used with
// it; look-up works by visitor id and by receipt record id; erasure by
// visitor id.
func TestErasureCoversThePerson(t *testing.T) {
	l := startLive(t)
	consent := func(visitor string) string {
		code, b := l.call(http.MethodPost, "/v1/sites/shop/consents", map[string]any{
			"visitor_id": visitor, "choices": map[string]bool{"analytics": true}}, false)
		var w struct{ ID string }
		if code != http.StatusCreated || json.Unmarshal(b, &w) != nil {
			t.Fatalf("consent: %d %s", code, b)
		}
		return w.ID
	}
	banner := consent("v_jorg")
	code, b := l.call(http.MethodPost, "/v1/sites/shop/signups", map[string]any{
		"email": "jörg@bücher.example", "visitor_id": "v_jorg", "choices": map[string]bool{"newsletter": true}}, false)
	if code != http.StatusCreated {
		t.Fatalf("signup: %d %s", code, b)
	}
	stranger := consent("v_stranger")

	for _, q := range []url.Values{{"email": {"JÖRG@bücher.example"}}, {"visitor_id": {"v_jorg"}}, {"receipt": {banner}}} {
		if recs := l.subject(q); len(recs) != 2 || recs[0].ID != banner {
			t.Errorf("look-up %s: %d records, want the banner choice and the signup", q.Encode(), len(recs))
		}
	}
	for _, bad := range []string{"", "?email=x", "?visitor_id=" + url.QueryEscape("v\x01"), "?receipt=nope",
		"?email=a@example.org&visitor_id=v_1", "?visitor_id=" + strings.Repeat("v", 65)} {
		if code, b := l.call(http.MethodGet, "/v1/admin/subjects"+bad, nil, true); code != http.StatusBadRequest || errCode(b) == "" {
			t.Errorf("look-up %q: %d %s, want 400 with a JSON error", bad, code, b)
		}
	}
	if code, b := l.call(http.MethodGet, "/v1/admin/subjects?receipt=01JAAAAAAAAAAAAAAAAAAAAAAA", nil, true); code != http.StatusNotFound || errCode(b) != "not_found" {
		t.Errorf("look-up of an unknown record id: %d %s", code, b)
	}
	if code, b := l.call(http.MethodDelete, "/v1/admin/subjects?email="+url.QueryEscape("jörg@bücher.example"), nil, true); code != 200 {
		t.Fatalf("erase: %d %s", code, b)
	}
	recs := l.subject(url.Values{"receipt": {banner}})
	if len(recs) != 2 {
		t.Fatalf("after erasure: %d records", len(recs))
	}
	for _, r := range recs {
		if !r.Erased || r.VisitorID != "" || r.IP != "" || r.UserAgent != "" {
			t.Errorf("record %s not erased: %+v", r.ID, r)
		}
	}
	if recs := l.subject(url.Values{"receipt": {stranger}}); len(recs) != 1 || recs[0].Erased {
		t.Errorf("another visitor's record was touched: %+v", recs)
	}
	if code, b := l.call(http.MethodDelete, "/v1/admin/subjects?visitor_id=v_stranger", nil, true); code != 200 {
		t.Fatalf("erase by visitor id: %d %s", code, b)
	}
	if recs := l.subject(url.Values{"receipt": {stranger}}); len(recs) != 1 || !recs[0].Erased {
		t.Errorf("erasure by visitor id left %+v", recs)
	}
	l.stop()
	if out, err := exec.Command(l.bin, "verify", "--data", l.data).CombinedOutput(); err != nil {
		t.Fatalf("verify: %v %s", err, out)
	}
}

// After an erasure, copies of the address were readable in the ledger's
// free pages and in a backup taken after it. A backup made after the
// erasure holds none; the ledger file holds none after `assent compact`.
func TestErasedBytesLeaveTheFile(t *testing.T) {
	l := startLive(t)
	const addr = "erased.person@example.org"
	for i := 0; i < 40; i++ { // signups and changes: many page versions hold the address
		code, b := l.call(http.MethodPost, "/v1/sites/shop/signups", map[string]any{
			"email": addr, "name": "Erased Person", "visitor_id": "v_erased", "choices": map[string]bool{"newsletter": true, "analytics": i%2 == 0}}, false)
		if code != http.StatusCreated {
			t.Fatalf("signup: %d %s", code, b)
		}
		l.call(http.MethodPost, "/v1/sites/shop/signups", map[string]any{
			"email": fmt.Sprintf("other%02d@example.org", i), "choices": map[string]bool{"newsletter": true}}, false)
	}
	if code, b := l.call(http.MethodDelete, "/v1/admin/subjects?email="+addr, nil, true); code != 200 {
		t.Fatalf("erase: %d %s", code, b)
	}
	code, backup := l.call(http.MethodGet, "/v1/admin/backup", nil, true)
	if code != 200 || len(backup) == 0 {
		t.Fatalf("backup: %d", code)
	}
	for _, clear := range []string{addr, "Erased Person", "v_erased"} {
		if n := bytes.Count(backup, []byte(clear)); n != 0 {
			t.Errorf("a backup taken after the erasure holds %d copies of %q", n, clear)
		}
	}
	if !bytes.Contains(backup, []byte("other07@example.org")) {
		t.Errorf("the backup lacks live data")
	}
	l.stop()
	path := l.data + "/assent.db"
	raw, _ := os.ReadFile(path)
	t.Logf("before compact: %d copies of the address in the file's free pages", bytes.Count(raw, []byte(addr)))
	if out, err := exec.Command(l.bin, "compact", "--data", l.data).CombinedOutput(); err != nil {
		t.Fatalf("compact: %v %s", err, out)
	}
	raw, _ = os.ReadFile(path)
	for _, clear := range []string{addr, "Erased Person", "v_erased"} {
		if n := bytes.Count(raw, []byte(clear)); n != 0 {
			t.Errorf("the ledger holds %d copies of %q after compact", n, clear)
		}
	}
	if out, err := exec.Command(l.bin, "verify", "--data", l.data).CombinedOutput(); err != nil {
		t.Fatalf("verify after compact: %v %s", err, out)
	}
	// The compacted ledger serves, and the erased person stays erased.
	l.start()
	if code, b := l.call(http.MethodPost, "/v1/sites/shop/signups", map[string]any{
		"email": addr, "choices": map[string]bool{"newsletter": true}}, false); code != http.StatusConflict {
		t.Errorf("signup after compact: %d %s, want 409", code, b)
	}
}
