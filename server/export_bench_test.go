package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

// The export benchmarks: records/s and peak RSS of exporting a ledger of
// 1,000,000 records (ASSENT_BENCH_RECORDS to change) as CSV, XLSX and JSON
// Lines through the real HTTP handler. Each export runs in a child process
// (this test binary again, running TestExportBenchChild), so its peak RSS
// (getrusage ru_maxrss) is the export's alone, not the benchmark's, whose
// heap holds whatever filled the ledger.
//
//	go test -run '^$' -bench BenchmarkExport -benchtime 1x ./server/
//
// The ledger is made once, with store.Append from many goroutines, and kept
// in $TMPDIR/assent-bench-export-N (ASSENT_BENCH_DIR to move it) so later
// runs skip the fill.

func benchRecords() int {
	if n, err := strconv.Atoi(os.Getenv("ASSENT_BENCH_RECORDS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

var benchLedger = sync.OnceValues(func() (string, error) {
	n := benchRecords()
	dir := os.Getenv("ASSENT_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("assent-bench-export-%d", n))
	}
	path := filepath.Join(dir, "assent.db")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	st, err := store.Open(path, store.Options{})
	if err != nil {
		return "", err
	}
	defer st.Close()
	have := 0
	if _, err := st.Site("shop"); err == nil {
		if err := st.Records("shop", store.Query{}, func(store.Record) error { have++; return nil }); err != nil {
			return "", err
		}
	} else if _, err := st.CreateSite(store.Site{ID: "shop", Origins: []string{"https://shop.example"}, Purposes: []store.Purpose{
		{ID: "necessary", Required: true}, {ID: "analytics"}, {ID: "marketing"}, {ID: "newsletter", Signup: true},
	}}); err != nil {
		return "", err
	}
	if have >= n {
		return path, nil
	}
	start := time.Now()
	var next atomic.Int64
	next.Store(int64(have))
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for g := 0; g < 512; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if _, err := st.Append(context.Background(), benchRecord(int(i))); err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return "", err
	default:
	}
	fmt.Fprintf(os.Stderr, "filled %s with %d records in %v\n", path, n-have, time.Since(start).Round(time.Millisecond))
	return path, nil
})

// benchRecord is a typical record: a third are signups with an email.
func benchRecord(i int) store.Record {
	g := func(b bool) string {
		if b {
			return "granted"
		}
		return "denied"
	}
	r := store.Record{
		Site: "shop", Event: "partial", Source: "banner", Basis: "explicit",
		VisitorID: fmt.Sprintf("v_%020d", i), Country: []string{"DE", "FR", "US", "GB", "NL"}[i%5],
		Regime: "opt-in", GeoDB: "2026-06-17", NoticeVersion: "7",
		NoticeHash:  "sha256:5f1e0c3b9a7d2e4f6a8b0c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1a3b5c7d9e1f",
		WidgetBuild: "sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
		Choices:     map[string]string{"necessary": "granted", "analytics": g(i%2 == 0), "marketing": g(i%3 == 0), "newsletter": "denied"},
		PageURL:     fmt.Sprintf("https://shop.example/products/%d?ref=home", i%997),
		IP:          fmt.Sprintf("85.214.%d.%d", i%251, i%199),
		UserAgent:   "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
	}
	if i%3 == 0 {
		r.Source, r.Email = "signup", fmt.Sprintf("person%d@example.com", i)
		r.Choices["newsletter"] = "granted"
	}
	if i%4 == 0 {
		r.Country, r.Regime = "US", "notice"
	}
	return r
}

func BenchmarkExportCSV(b *testing.B)   { benchExport(b, "csv") }
func BenchmarkExportXLSX(b *testing.B)  { benchExport(b, "xlsx") }
func BenchmarkExportJSONL(b *testing.B) { benchExport(b, "jsonl") }

func benchExport(b *testing.B, format string) {
	path, err := benchLedger()
	if err != nil {
		b.Fatal(err)
	}
	var peakKB, anonKB int64
	var bytesOut, records int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestExportBenchChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "ASSENT_EXPORT_CHILD="+format+","+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("export child: %v\n%s", err, out)
		}
		var n, size, anon int64
		for _, line := range strings.Split(string(out), "\n") {
			if rest, ok := strings.CutPrefix(line, "EXPORT "); ok {
				fmt.Sscanf(rest, "%d %d %d", &n, &size, &anon)
			}
		}
		anonKB = max(anonKB, anon)
		if n != int64(benchRecords()) {
			b.Fatalf("child exported %d records, want %d:\n%s", n, benchRecords(), out)
		}
		records += n
		bytesOut += size
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > peakKB {
			peakKB = ru.Maxrss // kilobytes on Linux
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(peakKB)/1024, "peak-rss-MiB")
	b.ReportMetric(float64(anonKB)/1024, "peak-anon-MiB")
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "ledger-MiB")
	}
	b.ReportMetric(float64(bytesOut)/float64(b.N)/(1<<20), "output-MiB")
}

// TestExportBenchChild is the benchmark's child process: it serves the
// ledger and downloads one export through HTTP, counting the records.
func TestExportBenchChild(t *testing.T) {
	spec := os.Getenv("ASSENT_EXPORT_CHILD")
	if spec == "" {
		t.Skip("only run as the export benchmark's child process")
	}
	format, path, _ := strings.Cut(spec, ",")
	// ru_maxrss counts the ledger's pages that bbolt's read-only mmap
	// touched, which are page cache, not memory the export holds; the
	// anonymous part (heap, stacks, buffers) is sampled from /proc.
	var anonKB atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			anonKB.Store(max(anonKB.Load(), rssAnonKB()))
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	loc, _ := geo.Open("")
	srv, err := New(Config{}, store.Bolt(st), loc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	tok, err := st.CreateToken("")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/v1/admin/sites/shop/consents?format="+format, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("export: %s", resp.Status)
	}
	var n, size int64
	switch format {
	case "xlsx":
		// Counting rows would need the whole workbook open; the child
		// counts the rows the handler wrote by reading the ledger instead,
		// and the round-trip tests check XLSX rows.
		size, err = io.Copy(io.Discard, resp.Body)
		st.Records("shop", store.Query{}, func(store.Record) error { n++; return nil })
	default:
		c := &lineCounter{}
		size, err = io.Copy(c, resp.Body)
		n = c.lines
		if format == "csv" {
			n-- // the header
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-sampled
	fmt.Printf("EXPORT %d %d %d\n", n, size, max(anonKB.Load(), rssAnonKB()))
}

// rssAnonKB is the process's anonymous resident memory (Linux).
func rssAnonKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// lineCounter counts newlines; no value in the benchmark's records holds
// one, so lines are rows.
type lineCounter struct{ lines int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			c.lines++
		}
	}
	return len(p), nil
}
