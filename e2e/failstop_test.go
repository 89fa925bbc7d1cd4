package e2e

// Fail-stop on I/O errors, with real fault injection: the real binary runs
// under strace, which makes one fdatasync (or pwrite) of the ledger fail.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer collects a child's stderr while tests read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startUnderStrace runs `assent serve` under strace with the given fault
// injection and returns the command, its base URL and its stderr.
func startUnderStrace(t *testing.T, l *liveBinary, inject string) (*exec.Cmd, string, *lockedBuffer) {
	t.Helper()
	return startStrace(t, l, "/dev/null", inject)
}

// startStrace runs `assent serve` under strace, its trace in traceFile,
// with one option: "inject=…" or "trace=…".
func startStrace(t *testing.T, l *liveBinary, traceFile, opt string) (*exec.Cmd, string, *lockedBuffer) {
	t.Helper()
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatalf("strace is missing: install it from Debian's packages (make test does)")
	}
	syscallName, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(opt, "inject="), "trace="), ":")
	// -P: only the calls on the ledger file are traced, and so injected.
	args := []string{"-f", "-qq", "-o", traceFile, "-P", filepath.Join(l.data, "assent.db"), "-e", "trace=" + syscallName}
	if strings.HasPrefix(opt, "inject=") {
		args = append(args, "-e", opt)
	}
	args = append(args, l.bin, "serve", "--addr", "127.0.0.1:0", "--data", l.data, "--geoip", geoDB(t),
		"--rate-limit", "0", "--log-level", "warn", "--geo-poll", "0", "--retention-every", "0")
	cmd := exec.Command(strace, args...)
	// Its own process group: killing it kills strace and the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killGroup(cmd) })
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
		return cmd, u, stderr
	case <-time.After(60 * time.Second):
		t.Fatalf("server under strace did not start: %s", stderr.String())
	}
	return nil, "", nil
}

// killGroup kills a command started in its own process group, and waits.
func killGroup(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
}

func TestFailStopOnIOErrors(t *testing.T) {
	cases := []struct{ name, inject, reason string }{
		// A commit makes two fdatasyncs: the pages, then the meta page.
		// Consecutive counts hit one of each.
		{"fdatasync EIO (a)", "inject=fdatasync:error=EIO:when=14", "EIO"},
		{"fdatasync EIO (b)", "inject=fdatasync:error=EIO:when=15", "EIO"},
		{"pwrite ENOSPC", "inject=pwrite64:error=ENOSPC:when=30", "ENOSPC"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bin, data := binaryWithSite(t, ledgerSiteJSON)
			out, err := exec.Command(bin, "token", "create", "--name", "e2e", "--data", data).Output()
			if err != nil {
				t.Fatalf("token create: %v", err)
			}
			l := &liveBinary{t: t, bin: bin, data: data, token: strings.TrimSpace(string(out))}
			cmd, base, stderr := startUnderStrace(t, l, tc.inject)
			l.cmd, l.base = cmd, base

			// Write until the injected failure; everything acknowledged
			// before it must survive.
			var acked []string
			failedAt := -1
			for i := 0; i < 500 && failedAt < 0; i++ {
				code, b := l.call(http.MethodPost, "/v1/sites/shop/consents",
					map[string]any{"visitor_id": fmt.Sprintf("v_%d", i), "choices": map[string]bool{"analytics": true}}, false)
				switch code {
				case http.StatusCreated:
					var w struct{ ID string }
					json.Unmarshal(b, &w)
					acked = append(acked, w.ID)
				case http.StatusServiceUnavailable:
					if errCode(b) != "unavailable" {
						t.Fatalf("write %d: 503 %s, want code unavailable", i, b)
					}
					failedAt = i
				default:
					t.Fatalf("write %d: %d %s, want 201 or 503 unavailable", i, code, b)
				}
			}
			if failedAt < 0 {
				t.Fatalf("no write failed after %d: the fault was not injected", len(acked))
			}
			t.Logf("the write after %d acknowledged ones failed", len(acked))

			// From now on every write is refused, reads of health say so.
			writes := []struct {
				method, path string
				body         any
				admin        bool
			}{
				{http.MethodPost, "/v1/sites/shop/consents", map[string]any{"choices": map[string]bool{"analytics": true}}, false},
				{http.MethodPost, "/v1/sites/shop/signups", map[string]any{"email": "ann@example.org", "choices": map[string]bool{"newsletter": true}}, false},
				{http.MethodPut, "/v1/admin/sites/shop", json.RawMessage(ledgerSiteJSON), true},
				{http.MethodPost, "/v1/admin/tokens", map[string]string{"name": "another"}, true},
				{http.MethodDelete, "/v1/admin/subjects?email=ann@example.org", nil, true},
			}
			for i := 0; i < 20; i++ {
				w := writes[i%len(writes)]
				if code, b := l.call(w.method, w.path, w.body, w.admin); code != http.StatusServiceUnavailable || errCode(b) != "unavailable" {
					t.Errorf("%s %s after the failure: %d %s, want 503 unavailable", w.method, w.path, code, b)
				}
			}
			if code, b := l.call(http.MethodGet, "/healthz", nil, false); code != http.StatusServiceUnavailable {
				t.Errorf("/healthz after the failure: %d %s", code, b)
			}
			_, metrics := l.call(http.MethodGet, "/metrics", nil, false)
			if want := `assent_ledger_write_failed{reason="` + tc.reason + `"} 1`; !strings.Contains(string(metrics), want) {
				t.Errorf("/metrics lacks %s", want)
			}
			if log := stderr.String(); !strings.Contains(log, "ledger write failed") || !strings.Contains(log, tc.reason) && !strings.Contains(log, "input/output error") && !strings.Contains(log, "no space") {
				t.Errorf("no error log naming the failure: %q", log)
			}

			// Restart without faults: what is on disk verifies and holds
			// everything acknowledged.
			killGroup(cmd)
			if out, err := exec.Command(bin, "verify", "--data", data).CombinedOutput(); err != nil {
				t.Fatalf("verify after restart: %v %s", err, out)
			}
			raw, err := exec.Command(bin, "export", "--data", data, "--site", "shop", "--format", "jsonl").Output()
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range acked {
				if !bytes.Contains(raw, []byte(id)) {
					t.Errorf("acknowledged record %s lost", id)
				}
			}
			l.start()
			if code, b := l.call(http.MethodPost, "/v1/sites/shop/consents", map[string]any{"choices": map[string]bool{"analytics": true}}, false); code != http.StatusCreated {
				t.Errorf("write after restart: %d %s", code, b)
			}
		})
	}
}
