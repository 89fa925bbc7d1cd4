package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/assent/assent/store"
	"github.com/assent/assent/store/postgres"
	"github.com/assent/assent/store/postgres/pgtest"
)

// replicas is N `assent serve` processes on one PostgreSQL database behind
// a reverse proxy, as docs/deploy.md sets them up.
type replicas struct {
	t      *testing.T
	bin    string
	url    string // the database
	cmds   []*exec.Cmd
	bases  []string
	proxy  string
	writes []atomic.Int64 // POST /v1/… answered by each replica
	down   []atomic.Bool
}

// startReplicas creates the site with the CLI on the database at dbURL and
// starts n replicas and the proxy in front of them. Writes go to the
// replicas in turn; a replica the proxy cannot reach is skipped from then
// on, as a load balancer's health check would.
func startReplicas(t *testing.T, dbURL string, n int, siteJSON string) *replicas {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(t.TempDir(), "site.json")
	os.WriteFile(site, []byte(siteJSON), 0o600)
	if out, err := exec.Command(bin, "site", "create", "--database", dbURL, "--file", site).CombinedOutput(); err != nil {
		t.Fatalf("site create --database: %v %s", err, out)
	}
	r := &replicas{t: t, bin: bin, url: dbURL, writes: make([]atomic.Int64, n), down: make([]atomic.Bool, n)}
	for range n {
		cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--database", dbURL, "--geoip", geoDB(t),
			"--rate-limit", "0", "--log-level", "error", "--trusted-proxies", "127.0.0.1/32")
		base := startCmd(t, cmd)
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		r.cmds, r.bases = append(r.cmds, cmd), append(r.bases, base)
	}
	var next, nextWrite atomic.Int64
	targets := make([]*url.URL, n)
	for i, b := range r.bases {
		targets[i], _ = url.Parse(b)
	}
	pick := func(counter *atomic.Int64) int {
		for range n {
			i := int(counter.Add(1) % int64(n))
			if !r.down[i].Load() {
				return i
			}
		}
		return 0
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			i := pick(&next)
			if pr.In.Method == http.MethodPost {
				i = pick(&nextWrite)
			}
			pr.SetURL(targets[i])
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Assent-Replica", fmt.Sprint(i))
		},
		ModifyResponse: func(resp *http.Response) error {
			var i int
			fmt.Sscan(resp.Request.Header.Get("X-Assent-Replica"), &i)
			if resp.Request.Method == http.MethodPost && strings.HasPrefix(resp.Request.URL.Path, "/v1/sites/") {
				r.writes[i].Add(1)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			var i int
			fmt.Sscan(req.Header.Get("X-Assent-Replica"), &i)
			r.down[i].Store(true)
			http.Error(w, "replica unreachable", http.StatusBadGateway)
		},
	}
	ps := httptest.NewServer(rp)
	t.Cleanup(ps.Close)
	r.proxy = ps.URL
	return r
}

// ledger opens the database as one more replica would, to read it back.
func (r *replicas) ledger() *postgres.DB {
	r.t.Helper()
	db, err := postgres.Open(context.Background(), r.url, postgres.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { db.Close() })
	return db
}

// records reads a site's records from the database.
func ledgerRecords(t *testing.T, l store.Ledger, site string) []store.Record {
	t.Helper()
	var out []store.Record
	if err := l.Records(context.Background(), site, store.Query{}, func(r store.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustVerifyLedger(t *testing.T, l store.Ledger) store.VerifyReport {
	t.Helper()
	rep, err := l.Verify(context.Background())
	if err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	return rep
}

// load runs clients writers posting signups through base until stop is
// closed, and records every acknowledged id; it returns a wait function.
type load struct {
	mu       sync.Mutex
	acked    map[string]bool
	statuses map[int]int
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(base string, clients int) *load {
	l := &load{acked: map[string]bool{}, statuses: map[int]int{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 20 * time.Second}
	for w := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; i < 1_000_000; i++ { // bounded; stop ends it far sooner
				select {
				case <-l.stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"email":"p%d-%d@example.com","choices":{"newsletter":true}}`, w, i)
				resp, err := client.Post(base+"/v1/sites/shop/signups", "application/json", strings.NewReader(body))
				if err != nil {
					continue
				}
				var rec struct{ ID string }
				json.NewDecoder(resp.Body).Decode(&rec)
				resp.Body.Close()
				l.mu.Lock()
				l.statuses[resp.StatusCode]++
				if resp.StatusCode == http.StatusCreated && rec.ID != "" {
					l.acked[rec.ID] = true
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) count(status int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.statuses[status]
}

func (l *load) ackedIDs() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]bool, len(l.acked))
	for k := range l.acked {
		out[k] = true
	}
	return out
}

func (l *load) end() { close(l.stop); l.wg.Wait() }

// waitFor polls cond until it holds, failing after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const replicaSite = `{"id":"shop","origins":["ORIGIN"],"purposes":[{"id":"necessary","required":true},{"id":"analytics"},{"id":"newsletter","signup":true,"required_for_signup":true}]}`

// The widget in Chromium, on a host page, writes through a proxy in front of
// two replicas on one database: the first visitor's choice goes to one
// replica, the second's to the other, and both land on the one chain.
func TestTwoReplicasWidgetInChromium(t *testing.T) {
	host := newHostSite(t)
	r := startReplicas(t, pgtest.NewDatabase(t), 2, strings.Replace(replicaSite, "ORIGIN", host.origin, 1))
	page := host.page("/shop", `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host shop</title></head><body>
<h1>Host shop</h1><script src="`+r.proxy+`/w/shop.js" async></script></body></html>`)
	for visitor := range 2 {
		ctx := browser(t)
		do(t, ctx, chromedp.Navigate(page))
		dialogShown(t, ctx)
		if got := js[string](t, ctx, root+`.querySelector('[data-assent-action="accept-all"]').textContent.trim()`); got == "" {
			t.Fatal("the accept button shows no text")
		}
		click(t, ctx, `[data-assent-action="accept-all"]`)
		until(t, ctx, "the choice stored", `(c => c && c.id && c.choices.analytics)(assent.get())`)
		if js[bool](t, ctx, `!!(`+root+`.querySelector('[role=dialog]') && `+root+`.querySelector('[role=dialog]').offsetParent)`) {
			t.Errorf("visitor %d: the banner is still on screen after the choice", visitor)
		}
	}
	if a, b := r.writes[0].Load(), r.writes[1].Load(); a != 1 || b != 1 {
		t.Fatalf("writes per replica %d and %d, want one each", a, b)
	}
	db := r.ledger()
	recs := ledgerRecords(t, db, "shop")
	if len(recs) != 2 || recs[1].PrevHash != recs[0].Hash || recs[0].Event != "grant" || recs[1].Choices["analytics"] != "granted" {
		t.Fatalf("records %+v", recs)
	}
	mustVerifyLedger(t, db)
}

// kill -9 of one replica under load from 32 clients: nothing acknowledged
// is lost, every chain verifies, and the other replica keeps answering.
func TestKill9OneReplicaUnderLoad(t *testing.T) {
	r := startReplicas(t, pgtest.NewDatabase(t), 2, strings.Replace(replicaSite, "ORIGIN", "https://shop.example", 1))
	l := startLoad(r.proxy, 32)
	waitFor(t, "writes through both replicas", 60*time.Second, func() bool {
		return r.writes[0].Load() >= 50 && r.writes[1].Load() >= 50
	})
	r.cmds[0].Process.Signal(syscall.SIGKILL)
	r.cmds[0].Wait()
	after := r.writes[1].Load()
	waitFor(t, "the survivor to take the load", 60*time.Second, func() bool { return r.writes[1].Load() >= after+200 })
	l.end()
	acked := l.ackedIDs()

	resp, err := http.Get(r.bases[1] + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("survivor's healthz: %v %v", err, resp)
	}
	resp.Body.Close()
	db := r.ledger()
	present := map[string]bool{}
	for _, rec := range ledgerRecords(t, db, "shop") {
		present[rec.ID] = true
	}
	lost := 0
	for id := range acked {
		if !present[id] {
			lost++
		}
	}
	rep := mustVerifyLedger(t, db)
	t.Logf("%d acknowledged, %d stored, %d lost, statuses %v", len(acked), rep.Records, lost, l.statuses)
	if lost > 0 {
		t.Fatalf("%d acknowledged records lost", lost)
	}
	if len(acked) < 300 {
		t.Fatalf("only %d acknowledged: the load did not run", len(acked))
	}
}

// cluster is a PostgreSQL of the test's own (the shared one of `make test`
// serves other packages at the same time), so it can be stopped.
type cluster struct {
	t         *testing.T
	bin, data string
	port      int
	as        []string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	bin := os.Getenv("ASSENT_TEST_PG_BIN")
	if bin == "" {
		t.Fatal("ASSENT_TEST_PG_BIN is not set: run the tests with `make test` (scripts/with-postgres)")
	}
	dir, err := os.MkdirTemp("", "assent-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bin: bin, data: filepath.Join(dir, "data")}
	if os.Geteuid() == 0 {
		// initdb refuses root: the cluster belongs to the postgres user.
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
		c.as = []string{"runuser", "-u", "postgres", "--"}
	}
	t.Cleanup(func() {
		c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop")
		os.RemoveAll(dir)
	})
	if out, err := c.run("initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "--no-instructions"); err != nil {
		t.Fatalf("initdb: %v %s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port, handed to PostgreSQL
	if err != nil {
		t.Fatal(err)
	}
	c.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c.start()
	return c
}

func (c *cluster) run(tool string, args ...string) ([]byte, error) {
	argv := append(append(append([]string{}, c.as...), filepath.Join(c.bin, tool)), args...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

func (c *cluster) start() {
	c.t.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s", c.port, filepath.Dir(c.data))
	if out, err := c.run("pg_ctl", "-D", c.data, "-l", filepath.Join(filepath.Dir(c.data), "log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		c.t.Fatalf("pg_ctl start: %v %s", err, out)
	}
}

func (c *cluster) stop() {
	c.t.Helper()
	if out, err := c.run("pg_ctl", "-D", c.data, "-m", "fast", "-w", "stop"); err != nil {
		c.t.Fatalf("pg_ctl stop: %v %s", err, out)
	}
}

func (c *cluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=3", c.port)
}

// PostgreSQL restarted under load: writes get 503 while it is down, nothing
// acknowledged is lost, and writes resume by themselves when it is back.
func TestPostgresRestartUnderLoad(t *testing.T) {
	c := newCluster(t)
	r := startReplicas(t, c.url(), 2, strings.Replace(replicaSite, "ORIGIN", "https://shop.example", 1))
	l := startLoad(r.proxy, 16)
	waitFor(t, "writes before the restart", 60*time.Second, func() bool { return len(l.ackedIDs()) >= 100 })
	c.stop()
	waitFor(t, "503 while the database is down", 60*time.Second, func() bool { return l.count(http.StatusServiceUnavailable) > 0 })
	before := len(l.ackedIDs())
	c.start()
	waitFor(t, "writes to resume", 90*time.Second, func() bool { return len(l.ackedIDs()) >= before+100 })
	l.end()
	if l.count(http.StatusInternalServerError) > 0 {
		t.Errorf("%d answers were 500, want 503 while the database is down", l.count(http.StatusInternalServerError))
	}
	acked := l.ackedIDs()
	db := r.ledger()
	present := map[string]bool{}
	for _, rec := range ledgerRecords(t, db, "shop") {
		present[rec.ID] = true
	}
	lost := 0
	for id := range acked {
		if !present[id] {
			lost++
		}
	}
	rep := mustVerifyLedger(t, db)
	t.Logf("%d acknowledged, %d stored, %d lost, statuses %v", len(acked), rep.Records, lost, l.statuses)
	if lost > 0 {
		t.Fatalf("%d acknowledged records lost", lost)
	}
	for i, b := range r.bases {
		resp, err := http.Get(b + "/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("replica %d after the restart: %v %v", i, err, resp)
		}
		resp.Body.Close()
	}
}
