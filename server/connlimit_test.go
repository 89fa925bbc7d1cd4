package server

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
)

// TestMaxConnsPerClient: real TCP connections to the real server on
// loopback; the cap+1th is closed at once, and a slot frees on close.
func TestMaxConnsPerClient(t *testing.T) {
	const max = 3
	st, err := store.Open(filepath.Join(t.TempDir(), "assent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	loc, err := geo.Open(testGeoDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer loc.Close()
	srv, err := New(Config{MaxConnsPerClient: max}, store.Bolt(st), loc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(served) }()
	defer func() { cancel(); <-served }()

	// healthy sends one keep-alive request on a new connection and says
	// whether it was answered 200; the connection stays open.
	healthy := func() (net.Conn, bool) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return c, false
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return c, false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return c, resp.StatusCode == http.StatusOK
	}
	var held []net.Conn
	for i := 0; i < max; i++ {
		c, ok := healthy()
		if !ok {
			t.Fatalf("connection %d of %d not served", i+1, max)
		}
		held = append(held, c)
	}
	c, ok := healthy()
	c.Close()
	if ok {
		t.Fatalf("connection %d served, want it closed over the cap of %d", max+1, max)
	}
	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, ok := healthy()
		c.Close()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection served after one of the held ones closed")
		}
	}
	for _, c := range held[1:] {
		c.Close()
	}
}
