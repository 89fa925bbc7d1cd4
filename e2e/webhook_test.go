package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Events queued before a kill -9 are delivered after the restart, none
// lost, each with the webhook-id it had before (at least once, idempotent
// by that id), in record order.
func TestWebhooksSurviveKill9(t *testing.T) {
	bin, data := binaryWithSite(t, `{"id":"shop","origins":["https://shop.example"],"purposes":[{"id":"necessary","required":true},{"id":"newsletter","signup":true,"required_for_signup":true}]}`)
	out, err := exec.Command(bin, "token", "create", "--name", "e2e", "--data", data).Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	token := strings.TrimSpace(string(out))

	// The receiver holds every request open until hold is closed.
	hold := make(chan struct{})
	type got struct{ webhookID, recordID string }
	var mu sync.Mutex
	var seen []got
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body struct{ Data struct{ ID string } }
		json.Unmarshal(b, &body)
		mu.Lock()
		seen = append(seen, got{r.Header.Get("webhook-id"), body.Data.ID})
		mu.Unlock()
		<-hold
	}))
	defer rcv.Close()
	received := func() []got { mu.Lock(); defer mu.Unlock(); return slices.Clone(seen) }

	cmd, base := startBinary(t, bin, data, "--webhook-allow-private")
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/admin/webhooks",
		strings.NewReader(fmt.Sprintf(`{"url":%q,"events":["signup.created"]}`, rcv.URL)))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create webhook: %v %v", err, resp)
	}
	resp.Body.Close()

	var acked []string
	for i := 0; i < 10; i++ {
		resp, err := http.Post(base+"/v1/sites/shop/signups", "application/json",
			strings.NewReader(fmt.Sprintf(`{"email":"k%d@example.com","choices":{"newsletter":true}}`, i)))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("signup %d: %v %v", i, err, resp)
		}
		var r struct{ ID string }
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		acked = append(acked, r.ID)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(received()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no delivery started")
		}
		time.Sleep(10 * time.Millisecond) // polling
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	before := received()
	if len(before) != 1 || before[0].recordID != acked[0] {
		t.Fatalf("before the kill: %+v; want only the first record's delivery (in order, one at a time)", before)
	}
	close(hold) // the receiver answers 200 from now on

	cmd, _ = startBinary(t, bin, data, "--webhook-allow-private")
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	deadline = time.Now().Add(30 * time.Second)
	for {
		ids := map[string]bool{}
		for _, g := range received() {
			ids[g.recordID] = true
		}
		if len(ids) == len(acked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart %d of %d records delivered", len(ids), len(acked))
		}
		time.Sleep(10 * time.Millisecond) // polling
	}
	all := received()
	webhookIDs := map[string]string{}
	var order []string
	for _, g := range all {
		if prev, ok := webhookIDs[g.recordID]; ok && prev != g.webhookID {
			t.Fatalf("record %s delivered with webhook-ids %s and %s", g.recordID, prev, g.webhookID)
		}
		if _, ok := webhookIDs[g.recordID]; !ok {
			order = append(order, g.recordID)
		}
		webhookIDs[g.recordID] = g.webhookID
	}
	if !slices.Equal(order, acked) {
		t.Fatalf("delivered in order %v, records in order %v", order, acked)
	}
	if all[1].webhookID != before[0].webhookID {
		t.Fatalf("the first event was sent again as %s, before the kill as %s", all[1].webhookID, before[0].webhookID)
	}
	t.Logf("%d requests for %d events (the one in flight at the kill sent twice)", len(all), len(acked))
}
