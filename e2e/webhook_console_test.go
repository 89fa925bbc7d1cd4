package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/assent/assent/store"
)

// From the console alone an admin points Assent at a URL: adds the
// endpoint and sees its secret once, sends a test event and sees it
// delivered, sees a signup's delivery fail with the receiver's status,
// retries it once the receiver is fixed, and deletes the endpoint.
func TestWebhookConsole(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, webhookSchedule: []time.Duration{}})
	site := shopSite()
	site.Purposes = append(site.Purposes, store.Purpose{ID: "newsletter", Signup: true, RequiredForSignup: true})
	e.site(site)
	var code atomic.Int32
	code.Store(200)
	var mu sync.Mutex
	var ids, bodies []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		ids, bodies = append(ids, r.Header.Get("webhook-id")), append(bodies, string(b))
		mu.Unlock()
		w.WriteHeader(int(code.Load()))
	}))
	defer rcv.Close()

	ctx := browser(t)
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	do(chromedp.Navigate(e.api+"/admin/#webhooks"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), e.token+"\r"), chromedp.WaitVisible(chromedp.ID("wh-form")))
	consoleAxe(t, ctx, "the webhooks page")

	do(chromedp.SendKeys(chromedp.ID("wh-url"), rcv.URL+"/hooks"),
		chromedp.Click(chromedp.ID("wh-ev-signup-created")),
		chromedp.Click(chromedp.ID("wh-ev-consent-withdrawn")),
		chromedp.Click(chromedp.CSS(`#wh-form button[type=submit]`)),
		consoleWait(`!document.getElementById('wh-secret').hidden`))
	if s := consoleText(t, ctx, "wh-secret-value"); !strings.HasPrefix(s, "whsec_") {
		t.Fatalf("secret shown: %q", s)
	}
	if list := consoleText(t, ctx, "wh-table"); !strings.Contains(list, rcv.URL+"/hooks") || !strings.Contains(list, "signup.created, consent.withdrawn") || !strings.Contains(list, "all") {
		t.Fatalf("endpoint list: %q", list)
	}
	consoleAxe(t, ctx, "the new endpoint and its secret")

	// Send test event: its delivery shows as delivered.
	do(chromedp.Click(chromedp.CSS(`#wh-table tbody button:nth-child(2)`)),
		consoleWait(`document.getElementById('wh-deliveries-box').hidden === false`))
	refresh := `document.querySelector('#wh-deliveries-box .row button').click(), document.querySelector('#wh-deliveries tbody')?.textContent || ''`
	do(consoleWait(`(` + refresh + `).includes('webhook.test') && document.querySelector('#wh-deliveries tbody').textContent.includes('delivered')`))
	consoleAxe(t, ctx, "the deliveries")

	// A signup whose delivery the receiver refuses: failed, with its status.
	code.Store(500)
	resp, err := http.Post(e.api+"/v1/sites/shop/signups", "application/json", strings.NewReader(`{"email":"ann@example.com","choices":{"newsletter":true}}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("signup: %v %v", err, resp)
	}
	resp.Body.Close()
	firstRow := `document.querySelector('#wh-deliveries tbody tr')`
	do(consoleWait(`(` + refresh + `).includes('failed') && ` + firstRow + `.textContent.includes('500')`))
	if row := consoleEval[string](t, ctx, firstRow+`.textContent`); !strings.Contains(row, "signup.created") || !strings.Contains(row, "HTTP 500") || !strings.Contains(row, "Retry now") {
		t.Fatalf("failed delivery row: %q", row)
	}
	// Fixed receiver, "Retry now": delivered, with the same webhook-id.
	code.Store(200)
	do(chromedp.Click(chromedp.CSS(`#wh-deliveries tbody tr:first-child button`)),
		consoleWait(`(`+refresh+`) && `+firstRow+`.textContent.includes('delivered')`))
	mu.Lock()
	if len(ids) != 3 || ids[1] != ids[2] || !strings.Contains(bodies[2], `"email":"ann@example.com"`) {
		t.Errorf("receiver got ids %v", ids)
	}
	mu.Unlock()

	// Delete, after the browser's confirmation.
	do(chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(`#wh-table tbody button.danger`)),
		consoleWait(`document.getElementById('wh-msg').textContent === 'No endpoint yet.'`))
	if eps, _ := e.st.Webhooks(t.Context()); len(eps) != 0 {
		t.Fatalf("%d endpoints left", len(eps))
	}
}
