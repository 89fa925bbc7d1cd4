package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
	"github.com/assent/assent/store/postgres"
	"github.com/assent/assent/store/postgres/pgtest"
)

// signup posts one signup like the widget's, numbered i.
func signup(base string) func(c *http.Client, i int64) int {
	return func(c *http.Client, i int64) int {
		body := fmt.Sprintf(`{"email":"person%d@example.com","visitor_id":"v_%d","choices":{"newsletter":true,"analytics":true},"page_url":"https://shop.example/signup","locale":"de"}`, i, i)
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/sites/shop/signups", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", ipDE)
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36")
		return send(c, req)
	}
}

// serveLedger serves l on loopback as the benchmarks' server.
func serveLedger(b *testing.B, l store.Ledger) string {
	b.Helper()
	loc, err := geo.Open(testGeoDB(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	srv, err := New(cfg, l, loc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := l.Site(context.Background(), "shop"); err != nil {
		if _, err := l.CreateSite(context.Background(), testSite()); err != nil {
			b.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(func() { hs.Close(); loc.Close() })
	return hs.URL
}

// pgBytesPerRecord is the records table with its indexes and TOAST, per row.
func pgBytesPerRecord(b *testing.B, url string) float64 {
	b.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	var size, n int64
	if err := conn.QueryRow(context.Background(), `SELECT pg_total_relation_size('records'), (SELECT count(*) FROM records)`).Scan(&size, &n); err != nil {
		b.Fatal(err)
	}
	return float64(size) / float64(max(n, 1))
}

// seedRecords appends n banner choices and signups through the ledger's own
// group commit, from many goroutines, as a year of traffic would leave them.
func seedRecords(b *testing.B, l store.Ledger, n int) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 256)
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				r := store.Record{Site: "shop", Event: "grant", Source: "banner", Basis: "explicit",
					VisitorID: "v_seed_" + strconv.FormatInt(i, 36), Country: "DE", Regime: "opt-in", NoticeVersion: "1",
					Choices: map[string]string{"necessary": "granted", "analytics": "granted"}, IP: "85.214.132.1",
					PageURL: "https://shop.example/", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"}
				if i%4 == 0 {
					r.Source, r.Email = "signup", "seed"+strconv.FormatInt(i, 10)+"@example.com"
					r.Choices["newsletter"] = "granted"
				}
				if _, err := l.Append(context.Background(), r); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkSignupsBackends measures durable HTTP signups with 64 clients on
// each backend in one run: the bbolt file, an empty PostgreSQL database, and
// one that already holds ASSENT_BENCH_SEED records (default 1,000,000).
// Each reports bytes/record: the bbolt file, or PostgreSQL's records table
// with its indexes. Needs the cluster of scripts/with-postgres.
func BenchmarkSignupsBackends(b *testing.B) {
	seed := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("ASSENT_BENCH_SEED")); err == nil && v >= 0 {
		seed = v
	}
	b.Run("bolt", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "assent.db")
		st, err := store.Open(path, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		load(b, "records", signup(serveLedger(b, store.Bolt(st))), http.StatusCreated)
		fi, _ := os.Stat(path)
		counts, _ := st.Counts()
		b.ReportMetric(float64(fi.Size())/float64(max(counts["shop"], 1)), "bytes/record")
	})
	b.Run("postgres", func(b *testing.B) {
		url := pgtest.NewDatabase(b)
		db, err := postgres.Open(context.Background(), url, postgres.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		load(b, "records", signup(serveLedger(b, db)), http.StatusCreated)
		b.ReportMetric(pgBytesPerRecord(b, url), "bytes/record")
		commits, recs := db.WriteStats()
		b.ReportMetric(float64(recs)/float64(max(commits, 1)), "records/commit")
	})
	// Seeded once, on the parent, since a sub-benchmark body runs more than
	// once.
	seeded := pgtest.NewDatabase(b)
	db, err := postgres.Open(context.Background(), seeded, postgres.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.CreateSite(context.Background(), testSite()); err != nil {
		b.Fatal(err)
	}
	seedRecords(b, db, seed)
	if conn, err := pgx.Connect(context.Background(), seeded); err == nil {
		conn.Exec(context.Background(), `VACUUM ANALYZE records`)
		conn.Close(context.Background())
	}
	b.Run(fmt.Sprintf("postgres-%d", seed), func(b *testing.B) {
		load(b, "records", signup(serveLedger(b, db)), http.StatusCreated)
		b.ReportMetric(pgBytesPerRecord(b, seeded), "bytes/record")
	})
}
