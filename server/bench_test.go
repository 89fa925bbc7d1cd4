package server

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

// loadClients is the concurrency of the HTTP benchmarks.
const loadClients = 64

// benchServer is a real server on loopback; discard replaces only the
// ledger's final commit with a no-op (validation, digests, encoding and
// signing stay), for the durable-vs-no-op ratio.
func benchServer(b *testing.B, discard bool) string {
	b.Helper()
	st, err := store.Open(filepath.Join(b.TempDir(), "assent.db"), store.Options{DiscardCommits: discard})
	if err != nil {
		b.Fatal(err)
	}
	loc, err := geo.Open(testGeoDB(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	srv, err := New(cfg, store.Bolt(st), loc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.CreateSite(testSite()); err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(func() { hs.Close(); st.Close(); loc.Close() })
	return hs.URL
}

// load sends b.N requests from loadClients goroutines and reports
// requests/s and the 99th-percentile latency in milliseconds.
func load(b *testing.B, unit string, send func(c *http.Client, i int64) int, want int) {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 2 * loadClients, MaxIdleConnsPerHost: 2 * loadClients}, Timeout: 30 * time.Second}
	var next atomic.Int64
	lat := make([][]time.Duration, loadClients)
	var wg sync.WaitGroup
	var bad atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < loadClients; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if code := send(client, i); code != want {
					bad.Add(1)
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := bad.Load(); n > 0 {
		b.Fatalf("%d requests did not answer %d", n, want)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit+"/s")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}

func BenchmarkDecision(b *testing.B) {
	base := benchServer(b, false)
	ips := []string{ipDE, ipUS, "81.2.69.142", "1.1.1.1", "2a00:1450:4001:82b::200e"}
	load(b, "req", func(c *http.Client, i int64) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/sites/shop/decision?lang=de", nil)
		req.Header.Set("X-Forwarded-For", ips[i%int64(len(ips))])
		return send(c, req)
	}, http.StatusOK)
}

// BenchmarkSignups compares durable signups (fsync'd group commit before
// each 201) with the same server whose commit is a no-op.
func BenchmarkSignups(b *testing.B) {
	for _, mode := range []struct {
		name    string
		discard bool
	}{{"durable", false}, {"nocommit", true}} {
		b.Run(mode.name, func(b *testing.B) {
			base := benchServer(b, mode.discard)
			load(b, "records", func(c *http.Client, i int64) int {
				body := fmt.Sprintf(`{"email":"person%d@example.com","visitor_id":"v_%d","choices":{"newsletter":true,"analytics":true},"page_url":"https://shop.example/signup","locale":"de"}`, i, i)
				req, _ := http.NewRequest(http.MethodPost, base+"/v1/sites/shop/signups", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Forwarded-For", ipDE)
				req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36")
				return send(c, req)
			}, http.StatusCreated)
		})
	}
}

// send does req and returns its status, 0 when it got no answer.
func send(c *http.Client, req *http.Request) int {
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
