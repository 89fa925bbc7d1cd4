package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/assent/assent/store"
)

// buildBinary builds the real assent binary once per test run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "assent-e2e-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "assent")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/assent").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// binaryWithSite builds the binary and makes a fresh ledger holding one
// site, created with `assent site create` as an admin would.
func binaryWithSite(t *testing.T, siteJSON string) (bin, data string) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	data = t.TempDir()
	site := filepath.Join(t.TempDir(), "site.json")
	if err := os.WriteFile(site, []byte(siteJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "site", "create", "--data", data, "--file", site).CombinedOutput(); err != nil {
		t.Fatalf("site create: %v %s", err, out)
	}
	return bin, data
}

// startBinary runs `assent serve` as a child process on a random loopback
// port and returns its base URL once it listens.
func startBinary(t *testing.T, bin, data string, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--geoip", geoDB(t), "--rate-limit", "0", "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	return cmd, startCmd(t, cmd)
}

// startCmd starts a prepared `assent serve` and returns its base URL once
// it listens.
func startCmd(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				urls <- u
			}
		}
	}()
	select {
	case u := <-urls:
		return u
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("server did not start: %s", stderr.String())
	}
	return ""
}

// Killing the server with SIGKILL at a random moment under load loses no
// record it acknowledged, and every chain still verifies. Several rounds,
// each on the ledger the previous round left.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	bin, data := binaryWithSite(t, `{"id":"shop","origins":["https://shop.example"],"purposes":[{"id":"necessary","required":true},{"id":"newsletter","signup":true,"required_for_signup":true}]}`)

	acked := map[string]bool{}
	const rounds = 4
	for round := 0; round < rounds; round++ {
		cmd, base := startBinary(t, bin, data)
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		client := &http.Client{Timeout: 5 * time.Second}
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 100000; i++ { // bounded; the kill ends it far sooner
					select {
					case <-stop:
						return
					default:
					}
					body := fmt.Sprintf(`{"email":"p%d-%d-%d@example.com","choices":{"newsletter":true}}`, round, w, i)
					resp, err := client.Post(base+"/v1/sites/shop/signups", "application/json", strings.NewReader(body))
					if err != nil {
						return // the server is gone
					}
					var r struct{ ID string }
					json.NewDecoder(resp.Body).Decode(&r)
					resp.Body.Close()
					if resp.StatusCode == http.StatusCreated && r.ID != "" {
						mu.Lock()
						acked[r.ID] = true
						mu.Unlock()
					}
				}
			}(w)
		}
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		close(stop)
		wg.Wait()

		st, err := store.Open(filepath.Join(data, "assent.db"), store.Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		present := map[string]bool{}
		st.Records("shop", store.Query{}, func(r store.Record) error { present[r.ID] = true; return nil })
		rep, err := st.Verify()
		st.Close()
		if err != nil || !rep.OK {
			t.Fatalf("round %d: verify after SIGKILL: %v %+v", round, err, rep)
		}
		lost := 0
		for id := range acked {
			if !present[id] {
				lost++
			}
		}
		t.Logf("round %d: %d acknowledged so far, %d stored, %d lost", round, len(acked), len(present), lost)
		if lost > 0 {
			t.Fatalf("round %d: %d acknowledged records lost", round, lost)
		}
	}
	if len(acked) < rounds {
		t.Fatalf("only %d records acknowledged in %d rounds: the load did not run", len(acked), rounds)
	}
}

// A record survives a clean restart, and a ledger held by a running server
// gives the CLI a one-line error naming --server instead of a hang.
func TestRestartAndHeldLedger(t *testing.T) {
	bin, data := binaryWithSite(t, `{"id":"shop","origins":["https://shop.example"],"purposes":[{"id":"analytics"}]}`)
	cmd, base := startBinary(t, bin, data)
	resp, err := http.Post(base+"/v1/sites/shop/consents", "application/json", strings.NewReader(`{"choices":{"analytics":true}}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("consent: %v %v", err, resp)
	}
	var r struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()

	start := time.Now()
	out, err := exec.Command(bin, "verify", "--data", data).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "--server") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("verify on a held ledger: exit %d, output %q; want exit 1 and one line naming --server", code, out)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("verify on a held ledger took %s", time.Since(start))
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	cmd, base = startBinary(t, bin, data)
	resp, err = http.Get(base + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after restart: %v", err)
	}
	resp.Body.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	out, err = exec.Command(bin, "export", "--data", data, "--site", "shop", "--format", "jsonl").CombinedOutput()
	if err != nil || !strings.Contains(string(out), r.ID) {
		t.Errorf("record %s missing after restart: %v %s", r.ID, err, out)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
