package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

// BenchmarkSignupsWebhook compares durable signups with no webhook
// endpoint and with one endpoint subscribed to signup.created, delivered
// to a real receiver on loopback while the load runs (same run, so the
// ratio holds on a shared machine).
func BenchmarkSignupsWebhook(b *testing.B) {
	for _, endpoints := range []int{0, 1} {
		b.Run(map[int]string{0: "none", 1: "one-endpoint"}[endpoints], func(b *testing.B) {
			st, err := store.Open(filepath.Join(b.TempDir(), "assent.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			loc, err := geo.Open(testGeoDB(b))
			if err != nil {
				b.Fatal(err)
			}
			cfg := Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, WebhookAllowPrivate: true}
			srv, err := New(cfg, store.Bolt(st), loc, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := st.CreateSite(testSite()); err != nil {
				b.Fatal(err)
			}
			rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusNoContent)
			}))
			if endpoints == 1 {
				if _, err := srv.hooks.Create(context.Background(), rcv.URL, []string{"signup.created"}, nil); err != nil {
					b.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { srv.RunWebhooks(ctx); close(done) }()
			hs := httptest.NewServer(srv.Handler())
			b.Cleanup(func() {
				hs.Close()
				cancel()
				<-done
				rcv.Close()
				st.Close()
				loc.Close()
			})
			load(b, "records", func(c *http.Client, i int64) int {
				body := fmt.Sprintf(`{"email":"person%d@example.com","visitor_id":"v_%d","choices":{"newsletter":true,"analytics":true},"page_url":"https://shop.example/signup","locale":"de"}`, i, i)
				req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1/sites/shop/signups", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Forwarded-For", ipDE)
				return send(c, req)
			}, http.StatusCreated)
			if endpoints == 1 {
				c, err := st.OutboxCounts(context.Background(), "webhook")
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(c[store.OutboxSent]), "delivered-during-run")
			}
		})
	}
}
