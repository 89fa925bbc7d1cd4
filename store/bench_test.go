package store

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Durable ingest benchmarks. Every figure is for the same record (a banner
// choice with every field set) on the same machine; compare them within one
// run (go test -run '^$' -bench Append ./store/), since fsync timings move
// from machine to machine and minute to minute.

// appendLoad appends n records from writers goroutines and returns the
// records per second and the 99th-percentile latency of one Append.
func appendLoad(tb testing.TB, s *Store, writers, n int) (float64, time.Duration) {
	rec := testRecord("shop")
	lat := make([][]time.Duration, writers)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				if _, err := s.Append(context.Background(), rec); err != nil {
					tb.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	var p99 time.Duration
	if len(all) > 0 {
		p99 = all[(len(all)*99+99)/100-1]
	}
	return float64(n) / elapsed.Seconds(), p99
}

func benchAppend(b *testing.B, writers int, opts Options) {
	s := newTestStore(b, opts)
	b.ResetTimer()
	rate, p99 := appendLoad(b, s, writers, b.N)
	b.StopTimer()
	b.ReportMetric(rate, "records/s")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	if commits, records := s.WriteStats(); commits > 0 {
		b.ReportMetric(float64(records)/float64(commits), "records/commit")
	}
}

// BenchmarkAppendGroupCommit64 is the ledger as the server uses it: 64
// concurrent writers, one fsync'd transaction per batch of whatever queued.
func BenchmarkAppendGroupCommit64(b *testing.B) { benchAppend(b, 64, Options{}) }

// BenchmarkAppendOneTxPerRecord is the baseline: the same 64 writers and
// code, but every record its own fsync'd bbolt transaction.
func BenchmarkAppendOneTxPerRecord(b *testing.B) { benchAppend(b, 64, Options{maxBatch: 1}) }

// BenchmarkAppendGroupCommit1 is one writer at a time: a batch is always one
// record, so this is the latency floor of a durable append.
func BenchmarkAppendGroupCommit1(b *testing.B) { benchAppend(b, 1, Options{}) }

// BenchmarkAppendNoCommit64 does everything but commit: the CPU ceiling of
// the write path, against which the group-commit figure shows what fsync costs.
func BenchmarkAppendNoCommit64(b *testing.B) { benchAppend(b, 64, Options{DiscardCommits: true}) }

// BenchmarkAppendRatio measures group commit and one transaction per record
// back to back, three times alternating, and reports the medians and the
// median of the three ratios: the figure to compare across machines, as
// both sides see the same disk at nearly the same moment.
func BenchmarkAppendRatio(b *testing.B) {
	var groups, singles, ratios []float64
	for i := 0; i < b.N; i++ {
		for range 3 {
			group, _ := appendLoad(b, newTestStore(b, Options{}), 64, 30000)
			single, _ := appendLoad(b, newTestStore(b, Options{maxBatch: 1}), 64, 2000)
			groups, singles, ratios = append(groups, group), append(singles, single), append(ratios, group/single)
		}
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(median(groups), "group-records/s")
	b.ReportMetric(median(singles), "one-tx-records/s")
	b.ReportMetric(median(ratios), "ratio")
}
