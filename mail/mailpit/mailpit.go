// Package mailpit runs a real SMTP server for tests: Mailpit
// (github.com/axllent/mailpit, installed by `make test` into bin/), on
// random loopback ports, read back through its HTTP API. It is for tests
// only; the product never imports it.
package mailpit

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Server is one Mailpit process.
type Server struct {
	t        testing.TB
	bin      string
	SMTPPort int
	HTTPPort int
	cmd      *exec.Cmd
}

// Binary finds Mailpit: $MAILPIT, bin/mailpit of the module (where the
// Makefile installs it), or mailpit on PATH.
func Binary() (string, error) {
	if p := os.Getenv("MAILPIT"); p != "" {
		return p, nil
	}
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if p := filepath.Join(d, "bin", "mailpit"); fileExists(p) {
				return p, nil
			}
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("mailpit not found: run `make test` (it installs it into bin/) or `GOBIN=$PWD/bin go install github.com/axllent/mailpit@v1.33.1`")
}

func fileExists(p string) bool { st, err := os.Stat(p); return err == nil && !st.IsDir() }

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// New picks the ports without starting Mailpit (tests of an SMTP outage
// start it later); Start starts it. Cleanup stops it.
func New(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, SMTPPort: FreePort(t), HTTPPort: FreePort(t)}
	t.Cleanup(s.Stop)
	return s
}

// Start runs Mailpit and waits (bounded) until its API answers.
func Start(t testing.TB) *Server {
	s := New(t)
	s.Start()
	return s
}

// SMTPURL is the --smtp value for this server.
func (s *Server) SMTPURL() string {
	return "smtp://127.0.0.1:" + strconv.Itoa(s.SMTPPort) + "?tls=none"
}

// APIURL is the base of its web UI and HTTP API.
func (s *Server) APIURL() string { return "http://127.0.0.1:" + strconv.Itoa(s.HTTPPort) }

// Start starts the process (again, after Stop: the mailbox starts empty).
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		return
	}
	s.cmd = exec.Command(s.bin, "--smtp", "127.0.0.1:"+strconv.Itoa(s.SMTPPort), "--listen", "127.0.0.1:"+strconv.Itoa(s.HTTPPort),
		"--database", filepath.Join(s.t.TempDir(), "mailpit.db"), "--quiet", "--disable-version-check")
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.APIURL() + "/api/v1/info")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.SMTPPort)); err == nil {
					c.Close()
					return
				}
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("mailpit did not answer on %s within 20s", s.APIURL())
		}
		time.Sleep(50 * time.Millisecond) // polling a process start, not synchronising on a guess
	}
}

// Stop kills the process, if running.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Address is a mail address in Mailpit's JSON.
type Address struct{ Name, Address string }

// Message is a message as Mailpit's API shows it.
type Message struct {
	ID        string
	MessageID string
	From      Address
	To        []Address
	Subject   string
	Text      string
	HTML      string
}

// Messages lists the mailbox, newest first.
func (s *Server) Messages() ([]Message, error) {
	var out struct{ Messages []Message }
	return out.Messages, s.get("/api/v1/messages?limit=500", &out)
}

// Message reads one message with its bodies.
func (s *Server) Message(id string) (Message, error) {
	var m Message
	return m, s.get("/api/v1/message/"+id, &m)
}

// Headers reads one message's headers.
func (s *Server) Headers(id string) (map[string][]string, error) {
	h := map[string][]string{}
	return h, s.get("/api/v1/message/"+id+"/headers", &h)
}

func (s *Server) get(path string, v any) error {
	resp, err := http.Get(s.APIURL() + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("mailpit %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// WaitFor polls until a message to addr has arrived, or fails the test
// after timeout.
func (s *Server) WaitFor(addr string, timeout time.Duration) Message {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs, err := s.Messages()
		if err == nil {
			for _, m := range msgs {
				for _, to := range m.To {
					if to.Address == addr {
						full, err := s.Message(m.ID)
						if err != nil {
							s.t.Fatal(err)
						}
						return full
					}
				}
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no mail to %s in Mailpit within %v (last error %v)", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// Count is how many messages to addr are in the mailbox.
func (s *Server) Count(addr string) int {
	s.t.Helper()
	msgs, err := s.Messages()
	if err != nil {
		s.t.Fatal(err)
	}
	n := 0
	for _, m := range msgs {
		for _, to := range m.To {
			if to.Address == addr {
				n++
			}
		}
	}
	return n
}
