package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assent/assent/store"
)

// receiver is a real HTTP server on loopback that keeps what it gets.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []received
	code int // answer; 0 = 204
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{req.Header.Clone(), b})
		code := r.code
		r.mu.Unlock()
		if code == 0 {
			code = http.StatusNoContent
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (r *receiver) setCode(c int) { r.mu.Lock(); r.code = c; r.mu.Unlock() }

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronisation
	}
}

func testLedger(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "assent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, id := range []string{"shop", "blog"} {
		if _, err := st.CreateSite(store.Site{ID: id, Origins: []string{"https://" + id + ".example"},
			Purposes: []store.Purpose{{ID: "necessary", Required: true}, {ID: "analytics"}, {ID: "newsletter", Signup: true}}}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// startService runs a service on st until the test ends.
func startService(t *testing.T, st *store.Store, opts Options) *Service {
	t.Helper()
	svc, err := New(context.Background(), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return svc
}

// appendRecord stores a record with its webhook events, as the server does.
func appendRecord(t *testing.T, st *store.Store, svc *Service, rec store.Record) store.Record {
	t.Helper()
	rec, items, err := st.AppendWith(context.Background(), rec, store.AppendOptions{Outbox: svc.RecordOutbox(func(r store.Record) string {
		return "https://consent.example/u/" + st.UnsubscribeToken(r.Site, r.Email)
	})})
	if err != nil {
		t.Fatal(err)
	}
	svc.Queued(items)
	return rec
}

func signup(site, email string) store.Record {
	return store.Record{Site: site, Event: "grant", Source: "signup", Basis: "explicit", Email: email, VisitorID: "v_" + email[:3],
		Choices: map[string]string{"necessary": "granted", "newsletter": "granted"}, IP: "85.214.132.117"}
}

// verifySignature checks a delivery the way Standard Webhooks 1.0 says a
// receiver must, written out here rather than calling Sign.
func verifySignature(t *testing.T, secret string, h http.Header, body []byte) {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") || len(key) < 24 {
		t.Fatalf("secret %q is not whsec_<base64 of ≥24 bytes>", secret)
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" {
		t.Fatalf("webhook-id %q, webhook-timestamp %q", id, ts)
	}
	if d := time.Since(time.Unix(sec, 0)); d < -time.Minute || d > time.Minute {
		t.Fatalf("webhook-timestamp %s is %s away from now", ts, d)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	found := false
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		found = found || hmac.Equal([]byte(sig), []byte(want))
	}
	if !found {
		t.Fatalf("webhook-signature %q, want %q", h.Get("webhook-signature"), want)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
}

func TestRecordEvents(t *testing.T) {
	for _, tc := range []struct {
		event, source string
		want          string
	}{
		{"grant", "banner", "consent.recorded"},
		{"partial", "preferences", "consent.recorded"},
		{"deny", "api", "consent.recorded"},
		{"withdraw", "preferences", "consent.recorded consent.withdrawn"},
		{"grant", "signup", "signup.created"},
		{"confirm", "double_opt_in", "signup.confirmed"},
		{"withdraw", "unsubscribe", "consent.withdrawn"},
		{"withdraw", "admin", "consent.withdrawn"},
		{"rectify", "admin", ""},
	} {
		got := strings.Join(RecordEvents(store.Record{Event: tc.event, Source: tc.source}), " ")
		if got != tc.want {
			t.Errorf("%s/%s: events %q, want %q", tc.event, tc.source, got, tc.want)
		}
	}
}

// Deliveries are signed per Standard Webhooks, carry the record, arrive in
// record order, and match the deliveries list; an endpoint gets only the
// types and sites it subscribed to.
func TestDeliverySignedInOrder(t *testing.T) {
	st := testLedger(t)
	rcv, other := newReceiver(t), newReceiver(t)
	svc := startService(t, st, Options{AllowPrivate: true})
	ctx := context.Background()
	ep, err := svc.Create(ctx, rcv.URL+"/hooks", []string{SignupCreated, ConsentWithdrawn}, []string{"shop"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, other.URL, []string{ConsentRecorded}, nil); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, appendRecord(t, st, svc, signup("shop", fmt.Sprintf("p%02d@example.com", i))).ID)
	}
	appendRecord(t, st, svc, signup("blog", "blog@example.com")) // not subscribed: other site
	waitFor(t, "5 deliveries", func() bool { return len(rcv.received()) >= 5 })

	ds, err := svc.Deliveries(ctx, ep.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "5 delivered", func() bool {
		ds, _ = svc.Deliveries(ctx, ep.ID, 0)
		n := 0
		for _, d := range ds {
			if d.Status == "delivered" {
				n++
			}
		}
		return n == 5
	})
	got := rcv.received()
	if len(got) != 5 {
		t.Fatalf("%d deliveries, want 5 (one per shop signup)", len(got))
	}
	for i, g := range got {
		verifySignature(t, ep.Secret, g.header, g.body)
		var body struct {
			Type string
			Data struct {
				ID, Email, Site, Event string
				UnsubscribeURL         string `json:"unsubscribe_url"`
			}
		}
		if err := json.Unmarshal(g.body, &body); err != nil {
			t.Fatal(err)
		}
		if body.Type != SignupCreated || body.Data.ID != ids[i] || body.Data.Site != "shop" ||
			body.Data.Email != fmt.Sprintf("p%02d@example.com", i) || !strings.HasPrefix(body.Data.UnsubscribeURL, "https://consent.example/u/") {
			t.Fatalf("delivery %d: %s", i, g.body)
		}
		// The list is newest first; its event ids are the webhook-ids.
		if d := ds[len(ds)-1-i]; d.EventID != g.header.Get("webhook-id") || d.Type != SignupCreated || d.Attempts != 1 || d.DeliveredAt.IsZero() {
			t.Fatalf("delivery %d listed as %+v, sent with webhook-id %s", i, d, g.header.Get("webhook-id"))
		}
	}
	if n := len(other.received()); n != 0 {
		t.Fatalf("an endpoint of consent.recorded got %d signup events", n)
	}
}

// A receiver that is down gets the event after a retry once it is up.
func TestReceiverDownThenUp(t *testing.T) {
	st := testLedger(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: connections are refused
	schedule := make([]time.Duration, 2000)
	for i := range schedule {
		schedule[i] = 10 * time.Millisecond
	}
	svc := startService(t, st, Options{AllowPrivate: true, Schedule: schedule})
	ctx := context.Background()
	ep, err := svc.Create(ctx, "http://"+addr+"/", []string{SignupCreated}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := appendRecord(t, st, svc, signup("shop", "down@example.com"))
	var ds []Delivery
	waitFor(t, "a failed attempt", func() bool {
		ds, _ = svc.Deliveries(ctx, ep.ID, 0)
		return len(ds) == 1 && ds[0].Attempts >= 1
	})
	if ds[0].Status != "pending" || ds[0].LastError == "" || ds[0].NextAttemptAt.IsZero() {
		t.Fatalf("after a refused connection: %+v", ds[0])
	}
	// Up again, on the same address.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rcv := &receiver{Server: httptest.NewUnstartedServer(nil)}
	rcv.Listener.Close()
	rcv.Listener = ln
	rcv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rcv.mu.Lock()
		rcv.got = append(rcv.got, received{r.Header.Clone(), b})
		rcv.mu.Unlock()
	})
	rcv.Start()
	t.Cleanup(rcv.Close)
	waitFor(t, "delivered", func() bool {
		ds, _ = svc.Deliveries(ctx, ep.ID, 0)
		return ds[0].Status == "delivered"
	})
	got := rcv.received()
	if len(got) != 1 || !strings.Contains(string(got[0].body), rec.ID) || got[0].header.Get("webhook-id") != ds[0].EventID {
		t.Fatalf("received %d deliveries: %+v", len(got), got)
	}
	verifySignature(t, ep.Secret, got[0].header, got[0].body)
	if ds[0].Attempts < 2 || ds[0].LastError != "" || ds[0].LastStatusCode != 200 {
		t.Fatalf("delivered after %d attempts, last answer %d %q", ds[0].Attempts, ds[0].LastStatusCode, ds[0].LastError)
	}
}

// After the schedule's retries a delivery is failed and says why; "retry
// now" sends it again, with the same webhook-id.
func TestFailedThenRetryNow(t *testing.T) {
	st := testLedger(t)
	rcv := newReceiver(t)
	rcv.setCode(http.StatusInternalServerError)
	svc := startService(t, st, Options{AllowPrivate: true, Schedule: []time.Duration{time.Millisecond, time.Millisecond}})
	ctx := context.Background()
	ep, err := svc.Create(ctx, rcv.URL, []string{SignupCreated}, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendRecord(t, st, svc, signup("shop", "fail@example.com"))
	var ds []Delivery
	waitFor(t, "failed", func() bool {
		ds, _ = svc.Deliveries(ctx, ep.ID, 0)
		return len(ds) == 1 && ds[0].Status == "failed"
	})
	if d := ds[0]; d.Attempts != 3 || d.LastStatusCode != 500 || d.LastError != "HTTP 500" || !d.NextAttemptAt.IsZero() {
		t.Fatalf("failed delivery: %+v", d)
	}
	if _, err := svc.Retry(ctx, ep.ID, "0000000000000099"); err == nil {
		t.Fatal("retry of an unknown delivery: no error")
	}
	rcv.setCode(http.StatusOK)
	if _, err := svc.Retry(ctx, ep.ID, ds[0].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivered after retry now", func() bool {
		ds, _ = svc.Deliveries(ctx, ep.ID, 0)
		return ds[0].Status == "delivered"
	})
	if _, err := svc.Retry(ctx, ep.ID, ds[0].ID); err != ErrNotFailed {
		t.Fatalf("retry of a delivered one: %v", err)
	}
	got := rcv.received()
	if len(got) != 4 || got[0].header.Get("webhook-id") != got[3].header.Get("webhook-id") {
		t.Fatalf("%d attempts received; ids %q, %q", len(got), got[0].header.Get("webhook-id"), got[len(got)-1].header.Get("webhook-id"))
	}
}

// A hanging endpoint holds up only itself: another endpoint gets every
// event while the first one's request is still blocked.
func TestHangingEndpointDoesNotHoldOthers(t *testing.T) {
	st := testLedger(t)
	release := make(chan struct{})
	var hungOnce sync.Once
	hung := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hungOnce.Do(func() { close(hung) })
		<-release
	}))
	t.Cleanup(func() { close(release); hang.Close() })
	rcv := newReceiver(t)
	svc := startService(t, st, Options{AllowPrivate: true})
	ctx := context.Background()
	if _, err := svc.Create(ctx, hang.URL, []string{SignupCreated}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, rcv.URL, []string{SignupCreated}, nil); err != nil {
		t.Fatal(err)
	}
	appendRecord(t, st, svc, signup("shop", "first@example.com"))
	<-hung
	for i := 0; i < 20; i++ {
		appendRecord(t, st, svc, signup("shop", fmt.Sprintf("n%02d@example.com", i)))
	}
	waitFor(t, "21 deliveries to the live endpoint", func() bool { return len(rcv.received()) == 21 })
	select {
	case <-release:
		t.Fatal("released early")
	default: // the hanging request is still open
	}
}

// At connect time the address actually dialled is checked: a name that
// resolves to loopback is refused without --webhook-allow-private, even for
// an endpoint that got past the check when it was made (DNS rebinding).
func TestConnectTimeGuard(t *testing.T) {
	st := testLedger(t)
	rcv := newReceiver(t)
	svc := startService(t, st, Options{Schedule: []time.Duration{}})
	ctx := context.Background()
	_, port, _ := net.SplitHostPort(rcv.Listener.Addr().String())
	u := "http://localhost:" + port + "/"
	if err := CheckURL(ctx, u, false, nil); err == nil {
		t.Fatal("localhost accepted when made")
	}
	// As if the name had resolved to a public address when it was made.
	ep, err := st.CreateWebhook(ctx, store.WebhookEndpoint{ID: "wh_rebind", URL: u, Events: []string{SignupCreated}, Secret: NewSecret()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Test(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	var ds []Delivery
	waitFor(t, "the attempt", func() bool {
		ds, _ = svc.Deliveries(ctx, ep.ID, 0)
		return len(ds) == 1 && ds[0].Status == "failed"
	})
	if !strings.Contains(ds[0].LastError, ErrNotAllowed.Error()) {
		t.Fatalf("last error %q", ds[0].LastError)
	}
	if n := len(rcv.received()); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
}

// A redirect is not followed: the attempt fails with the 3xx, and the
// redirect's target gets nothing.
func TestNoRedirects(t *testing.T) {
	st := testLedger(t)
	target := newReceiver(t)
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	svc := startService(t, st, Options{AllowPrivate: true, Schedule: []time.Duration{}})
	ctx := context.Background()
	ep, err := svc.Create(ctx, redirect.URL, []string{SignupCreated}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Test(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	var ds []Delivery
	waitFor(t, "the attempt", func() bool {
		ds, _ = svc.Deliveries(ctx, ep.ID, 0)
		return len(ds) == 1 && ds[0].Status == "failed"
	})
	if ds[0].LastStatusCode != http.StatusTemporaryRedirect || len(target.received()) != 0 {
		t.Fatalf("redirect: %+v; target got %d", ds[0], len(target.received()))
	}
}

// An erasure queues subject.erased in its own transaction with what a
// recipient needs to erase the person too, and gives up the person's
// earlier deliveries that were still pending (their payloads are blanked).
func TestSubjectErased(t *testing.T) {
	st := testLedger(t)
	release := make(chan struct{})
	var mu sync.Mutex
	var bodies []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		<-release
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	t.Cleanup(rcv.Close)
	svc := startService(t, st, Options{AllowPrivate: true})
	ctx := context.Background()
	ep, err := svc.Create(ctx, rcv.URL, []string{SignupCreated, SubjectErased}, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendRecord(t, st, svc, signup("shop", "x1@example.com")) // in flight, held by the receiver
	appendRecord(t, st, svc, signup("shop", "ann@example.com"))
	appendRecord(t, st, svc, signup("blog", "ann@example.com"))
	_, items, err := st.EraseWith(ctx, "test", store.SubjectRef{Email: "Ann@example.com"}, svc.EraseOptions())
	if err != nil || len(items) != 1 {
		t.Fatalf("erase: %d items, %v", len(items), err)
	}
	svc.Queued(items)
	close(release)
	var ds []Delivery
	waitFor(t, "all settled", func() bool {
		ds, _ = svc.Deliveries(ctx, ep.ID, 0)
		for _, d := range ds {
			if d.Status == "pending" {
				return false
			}
		}
		return len(ds) == 4
	})
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 {
		t.Fatalf("%d bodies received, want the first signup and the erasure: %q", len(bodies), bodies)
	}
	var e struct {
		Type string
		Data store.ErasedSubject
	}
	json.Unmarshal([]byte(bodies[1]), &e)
	if e.Type != SubjectErased || e.Data.Email != "ann@example.com" || strings.Join(e.Data.Sites, ",") != "shop,blog" ||
		strings.Join(e.Data.VisitorIDs, ",") != "v_ann" || e.Data.ErasedAt.IsZero() {
		t.Fatalf("erasure event %s", bodies[1])
	}
	for _, d := range ds[1:3] { // ann's two signups, newest first after the erasure
		if d.Status != "failed" || d.LastError != "erased" || d.EventID != "" {
			t.Fatalf("ann's earlier delivery %+v", d)
		}
	}
}

func TestCheckURL(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		url        string
		notAllowed bool
		bad        bool
	}{
		{url: "https://93.184.215.14/hook"},
		{url: "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/"},
		{url: "http://127.0.0.1/", notAllowed: true},
		{url: "http://10.1.2.3:8080/", notAllowed: true},
		{url: "http://192.168.0.10/", notAllowed: true},
		{url: "http://172.16.0.1/", notAllowed: true},
		{url: "http://169.254.169.254/latest/meta-data", notAllowed: true},
		{url: "http://100.64.0.1/", notAllowed: true},
		{url: "http://0.0.0.0/", notAllowed: true},
		{url: "http://[::1]/", notAllowed: true},
		{url: "http://[fe80::1]/", notAllowed: true},
		{url: "http://[fd00::1]/", notAllowed: true},
		{url: "http://[::ffff:127.0.0.1]/", notAllowed: true},
		{url: "http://localhost:8080/", notAllowed: true},
		{url: "http://a.localhost/", notAllowed: true},
		{url: "ftp://93.184.215.14/", bad: true},
		{url: "https://", bad: true},
		{url: "not a url", bad: true},
		{url: "https://user:pw@93.184.215.14/", bad: true},
		{url: "https://93.184.215.14/" + strings.Repeat("a", 2048), bad: true},
	} {
		err := CheckURL(ctx, tc.url, false, nil)
		ue, _ := err.(*URLError)
		switch {
		case tc.notAllowed && (ue == nil || !ue.NotAllowed):
			t.Errorf("%s: %v, want not allowed", tc.url, err)
		case tc.bad && (ue == nil || ue.NotAllowed):
			t.Errorf("%s: %v, want a bad URL", tc.url, err)
		case !tc.bad && !tc.notAllowed && err != nil:
			t.Errorf("%s: %v", tc.url, err)
		}
		if tc.notAllowed {
			if err := CheckURL(ctx, tc.url, true, nil); err != nil {
				t.Errorf("%s with allow-private: %v", tc.url, err)
			}
		}
	}
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "2a00:1450:4001::1"} {
		if !PublicAddr(netip.MustParseAddr(a)) {
			t.Errorf("%s not public", a)
		}
	}
}
