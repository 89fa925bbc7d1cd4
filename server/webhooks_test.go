package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assent/assent/store"
	"github.com/assent/assent/webhook"
)

// hookServer is a test server that may send webhooks to loopback, with
// its sender running.
func hookServer(t *testing.T, schedule []time.Duration) *testServer {
	t.Helper()
	ts := newTestServer(t, &Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		WebhookAllowPrivate: true, WebhookSchedule: schedule})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ts.srv.RunWebhooks(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ts
}

// hookReceiver is a real receiver on loopback; hold makes it block every
// request until release is closed.
type hookReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
	ids    []string
}

func newHookReceiver(t *testing.T, hold <-chan struct{}) *hookReceiver {
	r := &hookReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.ids = append(r.ids, req.Header.Get("webhook-id"))
		r.mu.Unlock()
		if hold != nil {
			<-hold
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *hookReceiver) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.bodies {
		var v struct{ Type string }
		json.Unmarshal([]byte(b), &v)
		out = append(out, v.Type)
	}
	return out
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronisation
	}
}

type endpointJSON struct {
	ID, URL, Secret string
	Events, Sites   []string
	CreatedAt       time.Time `json:"created_at"`
}

func (ts *testServer) createHook(body any) endpointJSON {
	ts.t.Helper()
	resp := ts.admin(http.MethodPost, "/v1/admin/webhooks", body)
	if resp.StatusCode != http.StatusCreated {
		ts.t.Fatalf("create webhook: %d %s", resp.StatusCode, resp.body)
	}
	var ep endpointJSON
	json.Unmarshal(resp.body, &ep)
	return ep
}

func (ts *testServer) deliveries(id string) []webhook.Delivery {
	ts.t.Helper()
	resp := ts.admin(http.MethodGet, "/v1/admin/webhooks/"+id+"/deliveries", nil)
	if resp.StatusCode != http.StatusOK {
		ts.t.Fatalf("deliveries: %d %s", resp.StatusCode, resp.body)
	}
	var ds []webhook.Delivery
	json.Unmarshal(resp.body, &ds)
	return ds
}

// The admin API manages endpoints: the secret is shown once, the test
// event arrives signed, the deliveries list shows it, delete works.
func TestWebhookAdminAPI(t *testing.T) {
	ts := hookServer(t, nil)
	rcv := newHookReceiver(t, nil)
	ep := ts.createHook(map[string]any{"url": rcv.URL + "/hooks/assent", "events": []string{"signup.confirmed", "consent.withdrawn", "subject.erased"}, "sites": []string{"shop"}})
	if !strings.HasPrefix(ep.ID, "wh_") || !strings.HasPrefix(ep.Secret, "whsec_") || ep.URL != rcv.URL+"/hooks/assent" ||
		strings.Join(ep.Events, ",") != "signup.confirmed,consent.withdrawn,subject.erased" || strings.Join(ep.Sites, ",") != "shop" || ep.CreatedAt.IsZero() {
		t.Fatalf("created %+v", ep)
	}
	list := ts.admin(http.MethodGet, "/v1/admin/webhooks", nil)
	if list.StatusCode != http.StatusOK || strings.Contains(string(list.body), "whsec_") || !strings.Contains(string(list.body), ep.ID) {
		t.Fatalf("list: %d %s", list.StatusCode, list.body)
	}
	resp := ts.admin(http.MethodPost, "/v1/admin/webhooks/"+ep.ID+"/test", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("test: %d %s", resp.StatusCode, resp.body)
	}
	var ds []webhook.Delivery
	poll(t, "the test event delivered", func() bool {
		ds = ts.deliveries(ep.ID)
		return len(ds) == 1 && ds[0].Status == "delivered"
	})
	if got := rcv.types(); len(got) != 1 || got[0] != "webhook.test" || rcv.ids[0] != ds[0].EventID {
		t.Fatalf("received %v %v, listed %+v", got, rcv.ids, ds)
	}
	// Retry of a delivered one: 409; of an unknown one: 404.
	if r := ts.admin(http.MethodPost, "/v1/admin/webhooks/"+ep.ID+"/deliveries/"+ds[0].ID+"/retry", nil); r.StatusCode != http.StatusConflict || r.errorCode() != "not_failed" {
		t.Fatalf("retry delivered: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodPost, "/v1/admin/webhooks/"+ep.ID+"/deliveries/nope/retry", nil); r.StatusCode != http.StatusNotFound {
		t.Fatalf("retry unknown: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodDelete, "/v1/admin/webhooks/"+ep.ID, nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodDelete, "/v1/admin/webhooks/"+ep.ID, nil); r.StatusCode != http.StatusNotFound || r.errorCode() != "not_found" {
		t.Fatalf("delete again: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodGet, "/v1/admin/webhooks", nil); string(r.body) != "[]\n" {
		t.Fatalf("list after delete: %s", r.body)
	}
	var audit strings.Builder
	ts.st.AuditLog(time.Time{}, time.Time{}, func(e store.AuditEntry) error { audit.WriteString(e.Action + " "); return nil })
	if !strings.Contains(audit.String(), "webhook_create") || !strings.Contains(audit.String(), "webhook_delete") {
		t.Fatalf("audit: %s", audit.String())
	}
}

// Bad input gets a clear 4xx and stores nothing; a private URL is refused
// with url_not_allowed unless the server allows private targets.
func TestWebhookBadInput(t *testing.T) {
	ts := newTestServer(t, nil) // no --webhook-allow-private
	for _, tc := range []struct {
		body   any
		status int
		code   string
	}{
		{`{"url":`, 400, "invalid_json"},
		{`{"url":1}`, 400, "invalid_json"},
		{map[string]any{"url": "http://127.0.0.1:9/", "events": []string{"signup.created"}}, 422, "url_not_allowed"},
		{map[string]any{"url": "http://10.0.0.7/", "events": []string{"signup.created"}}, 422, "url_not_allowed"},
		{map[string]any{"url": "http://[::1]/", "events": []string{"signup.created"}}, 422, "url_not_allowed"},
		{map[string]any{"url": "http://169.254.169.254/", "events": []string{"signup.created"}}, 422, "url_not_allowed"},
		{map[string]any{"url": "http://localhost:8080/x", "events": []string{"signup.created"}}, 422, "url_not_allowed"},
		{map[string]any{"url": "ftp://93.184.215.14/", "events": []string{"signup.created"}}, 422, "invalid_field"},
		{map[string]any{"url": "", "events": []string{"signup.created"}}, 422, "invalid_field"},
		{map[string]any{"url": "https://93.184.215.14/", "events": []string{}}, 422, "invalid_field"},
		{map[string]any{"url": "https://93.184.215.14/", "events": []string{"signup.deleted"}}, 422, "invalid_field"},
		{map[string]any{"url": "https://93.184.215.14/", "events": []string{"signup.created"}, "sites": []string{"nope"}}, 404, "unknown_site"},
		{strings.Repeat(" ", 17<<10), 413, "body_too_large"},
	} {
		resp := ts.admin(http.MethodPost, "/v1/admin/webhooks", tc.body)
		if resp.StatusCode != tc.status || resp.errorCode() != tc.code {
			t.Errorf("%.80v: %d %s, want %d %s", tc.body, resp.StatusCode, resp.body, tc.status, tc.code)
		}
	}
	if r := ts.admin(http.MethodGet, "/v1/admin/webhooks", nil); string(r.body) != "[]\n" {
		t.Fatalf("something was stored: %s", r.body)
	}
	// A public address is fine without allow-private.
	ep := ts.createHook(map[string]any{"url": "https://93.184.215.14/hook", "events": []string{"signup.created"}})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/v1/admin/webhooks/" + ep.ID + "/deliveries?limit=0", 422},
		{http.MethodGet, "/v1/admin/webhooks/" + ep.ID + "/deliveries?limit=x", 422},
		{http.MethodGet, "/v1/admin/webhooks/wh_nope/deliveries", 404},
		{http.MethodPost, "/v1/admin/webhooks/wh_nope/test", 404},
		{http.MethodDelete, "/v1/admin/webhooks/wh_nope", 404},
		{http.MethodPost, "/v1/admin/webhooks/wh_nope/deliveries/0000000000000001/retry", 404},
	} {
		if r := ts.admin(tc.method, tc.path, nil); r.StatusCode != tc.status || r.errorCode() == "" {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, r.StatusCode, r.body)
		}
	}
	if r := ts.do(http.MethodGet, "/v1/admin/webhooks", nil, nil); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", r.StatusCode)
	}
}

// What happens through the public and admin API reaches the endpoint as
// events: a banner choice, a signup, an unsubscribe, an erasure.
func TestWebhookEventsFromTheAPI(t *testing.T) {
	ts := hookServer(t, nil).publicAtOwnURL()
	rcv := newHookReceiver(t, nil)
	ep := ts.createHook(map[string]any{"url": rcv.URL, "events": webhook.Types})
	if r := ts.do(http.MethodPost, "/v1/sites/shop/consents", `{"visitor_id":"v_ann","choices":{"analytics":true}}`, nil); r.StatusCode != 201 {
		t.Fatalf("consent: %d %s", r.StatusCode, r.body)
	}
	r := ts.do(http.MethodPost, "/v1/sites/shop/signups", `{"email":"ann@example.com","visitor_id":"v_ann","choices":{"newsletter":true}}`, nil)
	if r.StatusCode != 201 {
		t.Fatalf("signup: %d %s", r.StatusCode, r.body)
	}
	var sr struct {
		ID             string
		UnsubscribeURL string `json:"unsubscribe_url"`
	}
	json.Unmarshal(r.body, &sr)
	if r := ts.do(http.MethodPost, "/v1/confirm", map[string]string{"token": ts.st.ConfirmToken("shop", sr.ID)}, nil); r.StatusCode != 200 {
		t.Fatalf("confirm: %d %s", r.StatusCode, r.body)
	}
	token := sr.UnsubscribeURL[strings.LastIndex(sr.UnsubscribeURL, "/")+1:]
	if r := ts.do(http.MethodPost, "/v1/unsubscribe", map[string]string{"token": token}, nil); r.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d %s", r.StatusCode, r.body)
	}
	// Erasure gives up the person's deliveries still pending (tested in
	// package webhook); here the earlier ones are through first.
	delivered := func(n int) func() bool {
		return func() bool {
			ds := ts.deliveries(ep.ID)
			for _, d := range ds {
				if d.Status != "delivered" {
					return false
				}
			}
			return len(ds) == n
		}
	}
	poll(t, "4 delivered", delivered(4))
	if r := ts.admin(http.MethodDelete, "/v1/admin/subjects?email=ann@example.com", nil); r.StatusCode != 200 {
		t.Fatalf("erase: %d %s", r.StatusCode, r.body)
	}
	poll(t, "5 events", func() bool { return len(rcv.types()) >= 5 })
	if got := strings.Join(rcv.types(), " "); got != "consent.recorded signup.created signup.confirmed consent.withdrawn subject.erased" {
		t.Fatalf("events %s", got)
	}
	rcv.mu.Lock()
	signup, confirmed, erased := rcv.bodies[1], rcv.bodies[2], rcv.bodies[4]
	rcv.mu.Unlock()
	if !strings.Contains(signup, `"unsubscribe_url":"`+sr.UnsubscribeURL+`"`) || !strings.Contains(signup, `"email":"ann@example.com"`) {
		t.Fatalf("signup event %s", signup)
	}
	if !strings.Contains(confirmed, `"event":"confirm"`) || !strings.Contains(confirmed, `"source":"double_opt_in"`) || !strings.Contains(confirmed, `"unsubscribe_url":"`+sr.UnsubscribeURL+`"`) {
		t.Fatalf("confirmation event %s", confirmed)
	}
	if !strings.Contains(erased, `"email":"ann@example.com","visitor_ids":["v_ann"]`) || !strings.Contains(erased, `"sites":["shop"]`) {
		t.Fatalf("erasure event %s", erased)
	}
	poll(t, "5 delivered", delivered(5))
	m := ts.do(http.MethodGet, "/metrics", nil, nil)
	if !strings.Contains(string(m.body), `assent_webhook_attempts_total{result="delivered"} 5`) || !strings.Contains(string(m.body), "assent_webhook_pending 0") {
		t.Fatalf("metrics lack the deliveries:\n%s", grepLines(string(m.body), "assent_webhook"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A receiver that hangs does not delay the public API: every write is
// answered while the receiver still holds the first delivery open.
func TestHangingReceiverDoesNotDelayPublicAPI(t *testing.T) {
	ts := hookServer(t, nil)
	release := make(chan struct{})
	rcv := newHookReceiver(t, release)
	defer close(release)
	ts.createHook(map[string]any{"url": rcv.URL, "events": []string{"signup.created"}})
	if r := ts.do(http.MethodPost, "/v1/sites/shop/signups", `{"email":"first@example.com","choices":{"newsletter":true}}`, nil); r.StatusCode != 201 {
		t.Fatalf("signup: %d %s", r.StatusCode, r.body)
	}
	poll(t, "the receiver holding the first delivery", func() bool { rcv.mu.Lock(); defer rcv.mu.Unlock(); return len(rcv.bodies) == 1 })
	var wg sync.WaitGroup
	errs := make(chan string, 200)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				r := ts.do(http.MethodPost, "/v1/sites/shop/signups", fmt.Sprintf(`{"email":"p%d-%d@example.com","choices":{"newsletter":true}}`, w, i), nil)
				if r.StatusCode != 201 {
					errs <- fmt.Sprintf("%d %s", r.StatusCode, r.body)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	rcv.mu.Lock()
	n := len(rcv.bodies)
	rcv.mu.Unlock()
	select {
	case <-release:
		t.Fatal("released")
	default:
	}
	if n != 1 || ts.count("shop") != 201 {
		t.Fatalf("while the receiver hung: %d deliveries started, %d records stored", n, ts.count("shop"))
	}
}

// A withdrawal an admin records for a person (asked by mail) reaches the
// endpoint as consent.withdrawn.
func TestWebhookAdminWithdraw(t *testing.T) {
	ts := hookServer(t, nil)
	rcv := newHookReceiver(t, nil)
	ts.createHook(map[string]any{"url": rcv.URL, "events": []string{"consent.withdrawn"}})
	if r := ts.do(http.MethodPost, "/v1/sites/shop/signups", `{"email":"bob@example.com","choices":{"newsletter":true}}`, nil); r.StatusCode != 201 {
		t.Fatalf("signup: %d %s", r.StatusCode, r.body)
	}
	r := ts.admin(http.MethodPost, "/v1/admin/subjects/withdraw", map[string]any{"email": "bob@example.com", "reason": "asked by mail"})
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("withdraw: %d %s", r.StatusCode, r.body)
	}
	poll(t, "the withdrawal event", func() bool { return len(rcv.types()) == 1 })
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if b := rcv.bodies[0]; !strings.Contains(b, `"type":"consent.withdrawn"`) || !strings.Contains(b, `"source":"admin"`) || !strings.Contains(b, `"email":"bob@example.com"`) {
		t.Fatalf("event %s", b)
	}
}
