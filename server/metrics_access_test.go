package server

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

// /metrics answers loopback (the default --metrics-allow) and, from any other
// client address, only a request with a valid admin or viewer bearer token.
// Loopback is a trusted proxy in the test server, so X-Forwarded-For makes
// the client an outside address.
func TestMetricsAccess(t *testing.T) {
	ts := newTestServer(t, nil)
	viewer, err := ts.st.CreateTokenRole("metrics-viewer", store.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		headers map[string]string
		status  int
		code    string
	}{
		{"loopback", nil, http.StatusOK, ""},
		{"outside", map[string]string{"X-Forwarded-For": ipUS}, http.StatusForbidden, "forbidden"},
		{"outside, IPv6", map[string]string{"X-Forwarded-For": "2001:4860:4860::8888"}, http.StatusForbidden, "forbidden"},
		{"outside with admin token", map[string]string{"X-Forwarded-For": ipUS, "Authorization": "Bearer " + ts.token}, http.StatusOK, ""},
		{"outside with viewer token", map[string]string{"X-Forwarded-For": ipUS, "Authorization": "Bearer " + viewer}, http.StatusOK, ""},
		{"outside with a bad token", map[string]string{"X-Forwarded-For": ipUS, "Authorization": "Bearer nope"}, http.StatusUnauthorized, "unauthorized"},
		{"outside with a non-bearer header", map[string]string{"X-Forwarded-For": ipUS, "Authorization": "Basic eDp5"}, http.StatusUnauthorized, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ts.do(http.MethodGet, "/metrics", nil, tt.headers)
			if r.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tt.status, r.body)
			}
			if tt.status == http.StatusOK {
				if !strings.Contains(string(r.body), "assent_http_requests_total") {
					t.Errorf("no metrics in the answer")
				}
				return
			}
			if r.errorCode() != tt.code {
				t.Errorf("error code %q, want %q: %s", r.errorCode(), tt.code, r.body)
			}
			if strings.Contains(string(r.body), "assent_http_requests_total") {
				t.Errorf("a refused answer carries metrics")
			}
		})
	}
}

// --metrics-allow widens the networks that need no token.
func TestMetricsAllowConfigured(t *testing.T) {
	cfg := &Config{TrustedProxies: prefixes(t, "127.0.0.0/8"), MetricsAllow: prefixes(t, "8.8.8.0/24")}
	ts := newTestServer(t, cfg)
	if r := ts.do(http.MethodGet, "/metrics", nil, map[string]string{"X-Forwarded-For": ipUS}); r.StatusCode != http.StatusOK {
		t.Errorf("allowed network: %d %s", r.StatusCode, r.body)
	}
	if r := ts.do(http.MethodGet, "/metrics", nil, nil); r.StatusCode != http.StatusForbidden {
		t.Errorf("loopback not in --metrics-allow: %d %s", r.StatusCode, r.body)
	}
}

func prefixes(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := geo.ParsePrefixes(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
