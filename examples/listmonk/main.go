// Command listmonk is an example webhook receiver a site owner can copy: it
// checks Assent's Standard Webhooks signature and turns signup.confirmed,
// consent.withdrawn and subject.erased into calls to listmonk's subscriber
// API (or any newsletter tool with a similar API).
//
//	ASSENT_WEBHOOK_SECRET=whsec_… LISTMONK_URL=http://listmonk:9000 LISTMONK_LIST=3 \
//	LISTMONK_USER=api LISTMONK_TOKEN=… go run ./examples/listmonk
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Receiver handles Assent's webhook POSTs.
type Receiver struct {
	Secret   string // whsec_…, shown once when the endpoint was made
	Listmonk string // listmonk's base URL
	User     string // listmonk API user and token (basic auth)
	Token    string
	ListID   int
	Client   *http.Client

	mu   sync.Mutex
	seen map[string]bool // webhook-ids handled: deliveries are at least once
}

// verify is the Standard Webhooks 1.0 check (docs/webhooks.md).
func verify(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	ts, terr := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil || terr != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.%s", h.Get("webhook-id"), ts, body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

type event struct {
	Type string `json:"type"`
	Data struct {
		Email string `json:"email"`
		Name  string `json:"name"`
	} `json:"data"`
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if !verify(rc.Secret, r.Header, body) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	id := r.Header.Get("webhook-id")
	rc.mu.Lock()
	done := rc.seen[id]
	rc.mu.Unlock()
	if done {
		w.WriteHeader(http.StatusNoContent) // a retry of what was handled
		return
	}
	var ev event
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "bad JSON", http.StatusBadRequest)
		return
	}
	if err := rc.handle(ev); err != nil {
		log.Printf("%s %s: %v", ev.Type, id, err)
		http.Error(w, "newsletter tool failed", http.StatusBadGateway) // Assent retries
		return
	}
	rc.mu.Lock()
	if rc.seen == nil {
		rc.seen = map[string]bool{}
	}
	rc.seen[id] = true
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *Receiver) handle(ev event) error {
	switch ev.Type {
	case "signup.confirmed":
		return rc.call(http.MethodPost, "/api/subscribers", map[string]any{
			"email": ev.Data.Email, "name": ev.Data.Name, "status": "enabled",
			"lists": []int{rc.ListID}, "preconfirm_subscriptions": true}, nil, http.StatusConflict)
	case "consent.withdrawn":
		id, err := rc.find(ev.Data.Email)
		if err != nil || id == 0 {
			return err
		}
		return rc.call(http.MethodPut, "/api/subscribers/lists", map[string]any{
			"ids": []int{id}, "action": "unsubscribe", "target_list_ids": []int{rc.ListID}}, nil)
	case "subject.erased":
		id, err := rc.find(ev.Data.Email)
		if err != nil || id == 0 {
			return err
		}
		return rc.call(http.MethodDelete, "/api/subscribers/"+strconv.Itoa(id), nil, nil)
	}
	return nil // other events: not needed here
}

// find returns the subscriber id of an address, 0 when there is none.
func (rc *Receiver) find(email string) (int, error) {
	if email == "" {
		return 0, nil
	}
	var out struct {
		Data struct {
			Results []struct {
				ID int `json:"id"`
			} `json:"results"`
		} `json:"data"`
	}
	q := "subscribers.email = '" + strings.ReplaceAll(email, "'", "''") + "'"
	if err := rc.call(http.MethodGet, "/api/subscribers?query="+url.QueryEscape(q), nil, &out); err != nil {
		return 0, err
	}
	if len(out.Data.Results) == 0 {
		return 0, nil
	}
	return out.Data.Results[0].ID, nil
}

// call sends one API request; ok lists statuses besides 2xx that count as
// done (409: the subscriber exists already).
func (rc *Receiver) call(method, path string, in, out any, ok ...int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(rc.Listmonk, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(rc.User, rc.Token)
	c := rc.Client
	if c == nil {
		c = &http.Client{Timeout: 8 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	for _, code := range ok {
		if resp.StatusCode == code {
			return nil
		}
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func main() {
	list, _ := strconv.Atoi(os.Getenv("LISTMONK_LIST"))
	rc := &Receiver{Secret: os.Getenv("ASSENT_WEBHOOK_SECRET"), Listmonk: os.Getenv("LISTMONK_URL"),
		User: os.Getenv("LISTMONK_USER"), Token: os.Getenv("LISTMONK_TOKEN"), ListID: list}
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8090"
	}
	log.Printf("receiving Assent webhooks on %s", addr)
	log.Fatal(http.ListenAndServe(addr, rc))
}
