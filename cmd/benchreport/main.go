// Command benchreport runs Assent's benchmarks (`make bench`), prints one
// table and writes docs/benchmarks.md. Every comparison is a ratio of two
// figures measured in the same run, because these machines are shared and
// their absolute timings are noisy.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/assent/assent/build"
	"github.com/assent/assent/server"
	"github.com/assent/assent/widget"
)

// peers are the other banners' published bundles, pinned, fetched with
// `npm pack` into dist/peers. Osano's one-switch banner is the npm package
// cookieconsent.
var peers = []struct {
	name, pkg string
	files     []string
}{
	{"Osano cookieconsent 3.1.1", "cookieconsent@3.1.1", []string{"build/cookieconsent.min.js", "build/cookieconsent.min.css"}},
	{"vanilla-cookieconsent 3.1.0", "vanilla-cookieconsent@3.1.0", []string{"dist/cookieconsent.umd.js", "dist/cookieconsent.css"}},
	{"Klaro 0.7.22", "klaro@0.7.22", []string{"dist/klaro.js"}},
}

// suites are the `go test` benchmark runs.
var suites = []struct {
	pkg, pattern, benchtime string
}{
	{"./geo/", "Lookup|Geoip2", "1s"},
	{"./store/", "Append", "1s"},
	{"./server/", "Decision|Signups", "20000x"},
	{"./server/", "Export", "1x"},
	// Needs the PostgreSQL cluster of scripts/with-postgres (make bench).
	{"./server/", "SignupsBackends", "20000x"},
}

func main() {
	out := flag.String("o", "docs/benchmarks.md", "markdown file to write")
	flag.Parse()
	r := &report{results: map[string]map[string]float64{}}
	r.widget()
	for _, s := range suites {
		r.run(s.pkg, s.pattern, s.benchtime)
	}
	r.coldStart()
	md := r.markdown()
	fmt.Print(md)
	if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	if len(r.missing) > 0 {
		fmt.Fprintf(os.Stderr, "benchreport: not measured: %s\n", strings.Join(r.missing, "; "))
		os.Exit(1)
	}
}

type sizes struct{ raw, gz, br int }

type report struct {
	results map[string]map[string]float64 // benchmark name -> unit -> value
	raw     []string                      // go test output lines
	ours    sizes
	stub    sizes // the Consent Mode stub, /w/demo/consent-mode.js
	peerSz  []sizes
	cold    []time.Duration
	missing []string
	cpu     string
}

func measure(b []byte) sizes {
	var gz, br bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	bw := brotli.NewWriterLevel(&br, brotli.BestCompression)
	bw.Write(b)
	bw.Close()
	return sizes{len(b), gz.Len(), br.Len()}
}

func (r *report) widget() {
	b, err := build.Widget(widget.FS)
	if err != nil {
		r.missing = append(r.missing, "widget: "+err.Error())
		return
	}
	r.ours = measure(server.WidgetScript(b.JS, b.Hash, server.DemoSite([]string{"https://shop.example"})))
	stub, err := build.ConsentModeStub(widget.FS)
	if err != nil {
		r.missing = append(r.missing, "consent-mode stub: "+err.Error())
	} else {
		r.stub = measure(server.ConsentModeStub(stub.JS, server.DemoSite([]string{"https://shop.example"})))
	}
	dir := filepath.Join("dist", "peers")
	for _, p := range peers {
		var all []byte
		for _, f := range p.files {
			data, err := peerFile(dir, p.pkg, f)
			if err != nil {
				r.missing = append(r.missing, p.name+": "+err.Error())
				all = nil
				break
			}
			all = append(all, data...)
		}
		r.peerSz = append(r.peerSz, measure(all))
	}
}

// peerFile returns a file of a pinned npm package, fetching it once.
func peerFile(dir, pkg, file string) ([]byte, error) {
	pdir := filepath.Join(dir, strings.ReplaceAll(pkg, "/", "_"))
	if _, err := os.Stat(filepath.Join(pdir, "package")); err != nil {
		if err := os.MkdirAll(pdir, 0o755); err != nil {
			return nil, err
		}
		cmd := exec.Command("npm", "pack", "--silent", pkg)
		cmd.Dir = pdir
		name, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("npm pack %s: %v", pkg, err)
		}
		tgz := strings.TrimSpace(string(name))
		if out, err := exec.Command("tar", "-xzf", filepath.Join(pdir, tgz), "-C", pdir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("untar %s: %v %s", tgz, err, out)
		}
	}
	return os.ReadFile(filepath.Join(pdir, "package", file))
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

func (r *report) run(pkg, pattern, benchtime string) {
	args := []string{"test", "-run", "^$", "-bench", pattern, "-benchmem", "-benchtime", benchtime, "-count", "1", "-timeout", "60m", pkg}
	fmt.Fprintf(os.Stderr, "go %s\n", strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		r.missing = append(r.missing, fmt.Sprintf("go test %s -bench %s: %v", pkg, pattern, err))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "cpu: "); ok {
			r.cpu = v
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r.raw = append(r.raw, line)
		vals := map[string]float64{}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				vals[f[i+1]] = v
			}
		}
		r.results[m[1]] = vals
	}
}

// get returns a figure, noting it as missing when a benchmark did not run.
func (r *report) get(name, unit string) float64 {
	if v, ok := r.results[name][unit]; ok {
		return v
	}
	r.missing = append(r.missing, name+" "+unit)
	return 0
}

// coldStart times exec → first served widget, five times.
func (r *report) coldStart() {
	dir, err := os.MkdirTemp("", "assent-cold-")
	if err != nil {
		r.missing = append(r.missing, "cold start: "+err.Error())
		return
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "assent")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/assent").CombinedOutput(); err != nil {
		r.missing = append(r.missing, fmt.Sprintf("cold start build: %v %s", err, out))
		return
	}
	for i := 0; i < 5; i++ {
		d, err := oneColdStart(bin, filepath.Join(dir, fmt.Sprint("data", i)))
		if err != nil {
			r.missing = append(r.missing, "cold start: "+err.Error())
			return
		}
		r.cold = append(r.cold, d)
	}
}

func oneColdStart(bin, data string) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	cmd := exec.Command(bin, "serve", "--demo", "--addr", addr, "--data", data, "--log-level", "error", "--max-conns-per-client", "0")
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	client := &http.Client{Timeout: time.Second}
	for i := 0; i < 3000; i++ { // at most ~30 s
		resp, err := client.Get("http://" + addr + "/w/demo.js")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(start), nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, errors.New("the server never served /w/demo.js")
}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Benchmarks\n\n")
	w("Written by `make bench` (`go run ./cmd/benchreport -o docs/benchmarks.md`) on %s, %d cores (%s), %s.\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), r.cpu, runtime.Version())
	w("Machines here are shared and noisy: each comparison is a ratio of two figures measured in the same run.\n\n")

	w("## Widget weight\n\nThe whole widget as served (code, CSS and a site's config without texts) beside the peers' published bundles (JS + CSS).\n\n")
	w("| bundle | raw B | gzip -9 B | brotli B | gzip vs Assent |\n|---|---:|---:|---:|---:|\n")
	w("| **Assent** | %d | %d | %d | 1.00× |\n", r.ours.raw, r.ours.gz, r.ours.br)
	for i, p := range peers {
		if i < len(r.peerSz) && r.peerSz[i].raw > 0 {
			s := r.peerSz[i]
			w("| %s | %d | %d | %d | %.2f× |\n", p.name, s.raw, s.gz, s.br, ratio(float64(s.gz), float64(r.ours.gz)))
		}
	}
	w("\nBudget: 7,168 B gzip -9 (`TestWidgetWeightIsUnderBudget` fails over it).\n\n")
	w("The Consent Mode stub (`/w/demo/consent-mode.js`, synchronous in `<head>`: the page waits for it), as served with the demo site's mapping:\n\n")
	w("| script | raw B | gzip -9 B | brotli B |\n|---|---:|---:|---:|\n| **Assent Consent Mode stub** | %d | %d | %d |\n", r.stub.raw, r.stub.gz, r.stub.br)
	w("\nBudget: 600 B gzip -9 (`TestConsentModeStubWeightIsUnderBudget` fails over it). Widget and stub together: %d B gzip -9.\n\n", r.ours.gz+r.stub.gz)

	w("## Geo lookup (real default database)\n\n| lookup | ns/op | allocs/op | vs geoip2-golang `Country` |\n|---|---:|---:|---:|\n")
	for _, v := range []string{"IPv4", "IPv6"} {
		ours, allocs := r.get("BenchmarkLookup"+v, "ns/op"), r.get("BenchmarkLookup"+v, "allocs/op")
		mm := r.get("BenchmarkLookupMaxMindLayout"+v, "ns/op")
		g2 := r.get("BenchmarkGeoip2Country"+v, "ns/op")
		w("| Assent %s, default db | %.0f | %.0f | |\n", v, ours, allocs)
		w("| Assent %s, MaxMind layout | %.0f | %.0f | %.2f× |\n", v, mm, r.get("BenchmarkLookupMaxMindLayout"+v, "allocs/op"), ratio(mm, g2))
		w("| geoip2-golang `Country` %s, same file | %.0f | %.0f | 1.00× |\n", v, g2, r.get("BenchmarkGeoip2Country"+v, "allocs/op"))
	}
	w("\nTargets: 0 allocs/op; IPv4 ≤ 400 ns, IPv6 ≤ 600 ns; ≤ 0.6× geoip2-golang's `Country` on the same file.\n\n")

	w("## Decision endpoint (loopback, %d concurrent clients)\n\n", 64)
	w("| | requests/s | p99 ms |\n|---|---:|---:|\n| `GET /v1/sites/{site}/decision` | %.0f | %.2f |\n\n",
		r.get("BenchmarkDecision", "req/s"), r.get("BenchmarkDecision", "p99-ms"))

	w("## Durable consent ingest\n\n")
	gc, one := r.get("BenchmarkAppendGroupCommit64", "records/s"), r.get("BenchmarkAppendOneTxPerRecord", "records/s")
	w("| store, 64 writers | records/s | p99 ms |\n|---|---:|---:|\n")
	w("| group commit (one writer goroutine, fsync per batch) | %.0f | %.2f |\n", gc, r.get("BenchmarkAppendGroupCommit64", "p99-ms"))
	w("| one fsync'd bbolt `Update` per record | %.0f | %.2f |\n", one, r.get("BenchmarkAppendOneTxPerRecord", "p99-ms"))
	w("\nGroup commit / one transaction per record: **%.1f×** (target ≥ 20×, and ≥ 60,000 records/s on the machine the target was set on). ", ratio(gc, one))
	w("Both figures rest on this disk's fdatasync, since every bbolt commit syncs twice (its pages, then its meta page); see [bench-store.md](bench-store.md).\n\n")
	d, n := r.get("BenchmarkSignups/durable", "records/s"), r.get("BenchmarkSignups/nocommit", "records/s")
	w("| HTTP signups, 64 clients | records/s | p99 ms |\n|---|---:|---:|\n")
	w("| durable (201 after fsync) | %.0f | %.2f |\n", d, r.get("BenchmarkSignups/durable", "p99-ms"))
	w("| same server, commit replaced by a no-op | %.0f | %.2f |\n", n, r.get("BenchmarkSignups/nocommit", "p99-ms"))
	w("\nDurable / no-op commit: **%.2f×** (target ≥ 0.5×).\n\n", ratio(d, n))
	wn, w1 := r.get("BenchmarkSignupsWebhook/none", "records/s"), r.get("BenchmarkSignupsWebhook/one-endpoint", "records/s")
	w("| durable HTTP signups, 64 clients | records/s | p99 ms | webhooks delivered during the run |\n|---|---:|---:|---:|\n")
	w("| no webhook endpoint | %.0f | %.2f | |\n", wn, r.get("BenchmarkSignupsWebhook/none", "p99-ms"))
	w("| one endpoint subscribed to signup.created (receiver on loopback) | %.0f | %.2f | %.0f |\n", w1,
		r.get("BenchmarkSignupsWebhook/one-endpoint", "p99-ms"), r.get("BenchmarkSignupsWebhook/one-endpoint", "delivered-during-run"))
	w("\nOne endpoint / none: **%.2f×** (target ≥ 0.8×). Each event is outbox rows in the signup's own commit; each delivery's outcome is one more fsync'd transaction.\n\n", ratio(w1, wn))

	w("## Ledger backends: durable HTTP signups, 64 clients\n\n")
	w("The same server and load on each backend, in one run; PostgreSQL is a private cluster on this machine (scripts/with-postgres), one replica. Bytes per record: the bbolt file, or PostgreSQL's `records` table with its indexes and TOAST.\n\n")
	w("| backend | records/s | p99 ms | bytes/record |\n|---|---:|---:|---:|\n")
	bolt, pg := r.get("BenchmarkSignupsBackends/bolt", "records/s"), r.get("BenchmarkSignupsBackends/postgres", "records/s")
	w("| bbolt file | %.0f | %.2f | %.0f |\n", bolt, r.get("BenchmarkSignupsBackends/bolt", "p99-ms"), r.get("BenchmarkSignupsBackends/bolt", "bytes/record"))
	w("| PostgreSQL, empty | %.0f | %.2f | %.0f |\n", pg, r.get("BenchmarkSignupsBackends/postgres", "p99-ms"), r.get("BenchmarkSignupsBackends/postgres", "bytes/record"))
	seeded := ""
	for name := range r.results {
		if strings.HasPrefix(name, "BenchmarkSignupsBackends/postgres-") {
			seeded = name
		}
	}
	if seeded != "" {
		w("| PostgreSQL, %s records stored before | %.0f | %.2f | %.0f |\n", strings.TrimPrefix(seeded, "BenchmarkSignupsBackends/postgres-"),
			r.get(seeded, "records/s"), r.get(seeded, "p99-ms"), r.get(seeded, "bytes/record"))
		w("\nPostgreSQL / bbolt: **%.2f×**; full / empty PostgreSQL: **%.2f×** (target ≥ 0.9×); PostgreSQL / c15t's ~350 durable writes/s measured here: **%.1f×** (aim 20×). Records per PostgreSQL commit: %.1f.\n\n",
			ratio(pg, bolt), ratio(r.get(seeded, "records/s"), pg), pg/350, r.get("BenchmarkSignupsBackends/postgres", "records/commit"))
	} else {
		r.missing = append(r.missing, "BenchmarkSignupsBackends/postgres-N")
	}

	w("## Export of 1,000,000 records\n\n")
	w("Peak RSS counts the ledger's pages that bbolt reads through its memory map (the file is %.0f MiB); the export's own memory is the anonymous part, which stays flat whatever the size.\n\n", r.get("BenchmarkExportCSV", "ledger-MiB"))
	w("| format | records/s | peak RSS MiB | of which anonymous MiB | output MiB |\n|---|---:|---:|---:|---:|\n")
	for _, f := range []string{"CSV", "XLSX", "JSONL"} {
		name := "BenchmarkExport" + f
		w("| %s | %.0f | %.1f | %.1f | %.1f |\n", f, r.get(name, "records/s"), r.get(name, "peak-rss-MiB"), r.get(name, "peak-anon-MiB"), r.get(name, "output-MiB"))
	}
	w("\n## Cold start\n\nFrom exec of `assent serve --demo` on an empty ledger to the first served widget (five runs): ")
	if len(r.cold) > 0 {
		s := slices.Clone(r.cold)
		slices.Sort(s)
		w("median **%s**, min %s, max %s.\n\n", s[len(s)/2].Round(time.Millisecond), s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
	} else {
		w("not measured.\n\n")
	}
	w("## More detail\n\nHow each figure is made, and longer runs: [geo](bench-geo.md), [widget](bench-widget.md), [ledger](bench-store.md), [export](bench-export.md).\n\n")
	w("## Raw `go test -bench` lines\n\n```\n%s\n```\n", strings.Join(r.raw, "\n"))
	if len(r.missing) > 0 {
		w("\nNot measured in this run: %s\n", strings.Join(r.missing, "; "))
	}
	return b.String()
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
