package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/server"
	"github.com/assent/assent/store"
)

// fakeListmonk is a real HTTP server with the parts of listmonk's
// subscriber API the receiver uses, keeping subscribers in memory.
type fakeListmonk struct {
	mu    sync.Mutex
	next  int
	subs  map[int]map[string]any // id -> {"email","status","lists":map[int]string}
	calls []string
}

func (f *fakeListmonk) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, p, ok := r.BasicAuth(); !ok || u != "api" || p != "secret-token" {
		http.Error(w, "auth", http.StatusForbidden)
		return
	}
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	var in map[string]any
	json.NewDecoder(r.Body).Decode(&in)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/subscribers":
		for _, s := range f.subs {
			if s["email"] == in["email"] {
				http.Error(w, "exists", http.StatusConflict)
				return
			}
		}
		f.next++
		lists := map[int]string{}
		for _, l := range in["lists"].([]any) {
			lists[int(l.(float64))] = "confirmed"
		}
		f.subs[f.next] = map[string]any{"email": in["email"], "name": in["name"], "lists": lists}
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"id": f.next}})
	case r.Method == http.MethodGet && r.URL.Path == "/api/subscribers":
		q := r.URL.Query().Get("query")
		var results []map[string]any
		for id, s := range f.subs {
			if q == "subscribers.email = '"+s["email"].(string)+"'" {
				results = append(results, map[string]any{"id": id})
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"results": results}})
	case r.Method == http.MethodPut && r.URL.Path == "/api/subscribers/lists":
		for _, id := range in["ids"].([]any) {
			for _, l := range in["target_list_ids"].([]any) {
				f.subs[int(id.(float64))]["lists"].(map[int]string)[int(l.(float64))] = "unsubscribed"
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"data": true})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/subscribers/"):
		id, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/api/subscribers/"))
		delete(f.subs, id)
		json.NewEncoder(w).Encode(map[string]any{"data": true})
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeListmonk) state(email string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.subs {
		if s["email"] == email {
			return s["lists"].(map[int]string)[3]
		}
	}
	return "absent"
}

// A real Assent server sends its webhooks to the example receiver, which
// keeps a listmonk list in step: a confirmed signup is subscribed, an
// unsubscribe unsubscribes, an erasure deletes the subscriber.
func TestReceiverKeepsListmonkInStep(t *testing.T) {
	lm := &fakeListmonk{subs: map[int]map[string]any{}}
	lmSrv := httptest.NewServer(lm)
	defer lmSrv.Close()

	st, err := store.Open(filepath.Join(t.TempDir(), "assent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	loc, _ := geo.Open("")
	srv, err := server.New(server.Config{WebhookAllowPrivate: true, PublicURL: "https://consent.example.com"}, store.Bolt(st), loc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSite(server.ExampleSite("shop", []string{"https://shop.example"})); err != nil {
		t.Fatal(err)
	}
	tok, err := st.CreateToken("t")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(served) }()
	defer func() { cancel(); <-served }()
	base := "http://" + ln.Addr().String()

	rc := &Receiver{Listmonk: lmSrv.URL, User: "api", Token: "secret-token", ListID: 3}
	rcv := httptest.NewServer(rc)
	defer rcv.Close()

	call := func(method, path, body string, admin bool) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if admin {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, out)
		}
		return out
	}
	ep := call(http.MethodPost, "/v1/admin/webhooks", fmt.Sprintf(`{"url":%q,"events":["signup.confirmed","consent.withdrawn","subject.erased"]}`, rcv.URL), true)
	rc.Secret = ep["secret"].(string)

	waitState := func(email, want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for lm.state(email) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s in listmonk: %s, want %s (calls %v)", email, lm.state(email), want, lm.calls)
			}
			time.Sleep(10 * time.Millisecond) // polling
		}
	}
	signup := call(http.MethodPost, "/v1/sites/shop/signups", `{"email":"ann@example.com","name":"Ann","choices":{"newsletter":true}}`, false)
	call(http.MethodPost, "/v1/confirm", fmt.Sprintf(`{"token":%q}`, st.ConfirmToken("shop", signup["id"].(string))), false)
	waitState("ann@example.com", "confirmed")
	u := signup["unsubscribe_url"].(string)
	call(http.MethodPost, "/v1/unsubscribe", fmt.Sprintf(`{"token":%q}`, u[strings.LastIndex(u, "/")+1:]), false)
	waitState("ann@example.com", "unsubscribed")
	call(http.MethodDelete, "/v1/admin/subjects?email=ann@example.com", "", true)
	waitState("ann@example.com", "absent")

	// A request that is not signed with the secret is refused.
	resp, err := http.Post(rcv.URL, "application/json", strings.NewReader(`{"type":"subject.erased","data":{"email":"bob@example.com"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned request: %d", resp.StatusCode)
	}
}
