package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

// testServer is the real server on a loopback port with a real ledger file
// and the real default country database.
type testServer struct {
	t     testing.TB
	url   string
	st    *store.Store
	srv   *Server
	token string
	path  string
}

const (
	ipDE = "85.214.132.117"
	ipUS = "8.8.8.8"
	// The host page's origin, allowed on the test site.
	shopOrigin = "https://shop.example"
)

func testGeoDB(t testing.TB) string {
	p := os.Getenv("ASSENT_TEST_GEOIP")
	if p == "" {
		p = filepath.Join("..", "data", "geo-whois-asn-country.mmdb")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("country database %s is missing: run `make geodb` (make test does)", p)
	}
	return p
}

// newTestServer starts a server; loopback is a trusted proxy unless cfg
// says otherwise, so tests choose a visitor's country by X-Forwarded-For.
func newTestServer(t testing.TB, cfg *Config) *testServer {
	t.Helper()
	return newTestServerLog(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// newTestServerLog is newTestServer logging to log.
func newTestServerLog(t testing.TB, cfg *Config, log *slog.Logger) *testServer {
	t.Helper()
	if cfg == nil {
		cfg = &Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	}
	path := filepath.Join(t.TempDir(), "assent.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	loc, err := geo.Open(testGeoDB(t))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(*cfg, store.Bolt(st), loc, log)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	tok, err := st.CreateToken("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close(); st.Close(); loc.Close() })
	ts := &testServer{t: t, url: hs.URL, st: st, srv: srv, token: tok, path: path}
	ts.createSite(testSite())
	return ts
}

// publicAtOwnURL sets --public-url to the test server's own address (known
// only once it listens), before any request, so links point back at it.
func (ts *testServer) publicAtOwnURL() *testServer {
	ts.srv.cfg.PublicURL = ts.url + "/"
	return ts
}

func testSite() store.Site { return ExampleSite("shop", []string{shopOrigin}) }

func (ts *testServer) createSite(s store.Site) {
	ts.t.Helper()
	resp := ts.do(http.MethodPost, "/v1/admin/sites", s, map[string]string{"Authorization": "Bearer " + ts.token})
	if resp.StatusCode != http.StatusCreated {
		ts.t.Fatalf("create site %s: %d %s", s.ID, resp.StatusCode, resp.body)
	}
}

type response struct {
	*http.Response
	body []byte
}

// errorCode is the {"error":{"code"}} of a JSON error answer.
func (r response) errorCode() string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// do sends body (raw []byte or string as is, anything else as JSON).
func (ts *testServer) do(method, path string, body any, headers map[string]string) response {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, ts.url+path, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if h := headers["Host"]; h != "" {
		req.Host = h // net/http sends req.Host, not a Host header
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp, b}
}

// count is how many records the site has in the ledger.
func (ts *testServer) count(site string) int {
	ts.t.Helper()
	n := 0
	if err := ts.st.Records(site, store.Query{}, func(store.Record) error { n++; return nil }); err != nil {
		ts.t.Fatal(err)
	}
	return n
}
