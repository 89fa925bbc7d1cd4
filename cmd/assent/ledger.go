package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/assent/assent/server"
	"github.com/assent/assent/store"
)

// ledger is where a ledger command works: the file itself (no server holds
// it) or a running server's admin API (--server, token in ASSENT_TOKEN).
type ledger struct {
	st     store.Ledger
	remote *apiClient
}

// openLedger opens the ledger for a command. Only create makes a new,
// empty ledger (token create and site create, to set up before the first
// start); every other command refuses a folder without one, so a typo in
// --data is an error, not a fresh empty ledger.
func openLedger(ctx context.Context, f *flags, create bool) (*ledger, error) {
	if u := f.str("server"); u != "" {
		tok := os.Getenv("ASSENT_TOKEN")
		if tok == "" {
			return nil, usageError{"--server needs the admin token in ASSENT_TOKEN"}
		}
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, usageError{fmt.Sprintf("--server: want a URL such as http://localhost:8080, got %q", u)}
		}
		return &ledger{remote: &apiClient{base: strings.TrimSuffix(u, "/"), token: tok, http: &http.Client{Timeout: 10 * time.Minute}}}, nil
	}
	if u, err := databaseURL(f); err != nil {
		return nil, err
	} else if u != "" {
		st, err := openLedgerDB(ctx, f, false)
		if err != nil {
			return nil, err
		}
		return &ledger{st: st}, nil
	}
	dir := f.str("data")
	if create || fileExists(filepath.Join(dir, "assent.db")) {
		st, err := openStore(dir, false)
		if err != nil {
			return nil, err
		}
		return &ledger{st: store.Bolt(st)}, nil
	}
	return nil, fmt.Errorf("no ledger at %s/assent.db (use --data DIR, or --server URL)", dir)
}

func (l *ledger) Close() error {
	if l.st != nil {
		return l.st.Close()
	}
	return nil
}

// apiClient calls a running server's admin API.
type apiClient struct {
	base, token string
	http        *http.Client
}

// do sends a request and returns the response for a 2xx; any other status
// becomes an error carrying the server's JSON message.
func (c *apiClient) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", c.base, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return nil, fmt.Errorf("server said %d %s: %s", resp.StatusCode, e.Error.Code, e.Error.Message)
	}
	return nil, fmt.Errorf("server said %s", resp.Status)
}

// getJSON decodes a 2xx JSON answer into v.
func (c *apiClient) getJSON(ctx context.Context, method, path string, body, v any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// output opens -o: a file written whole only on success, or stdout.
func output(name string, stdout io.Writer) (io.Writer, func(ok bool) error, error) {
	if name == "" || name == "-" {
		return stdout, func(bool) error { return nil }, nil
	}
	tmp, err := os.CreateTemp(dirOf(name), ".assent-out-*")
	if err != nil {
		return nil, nil, err
	}
	return tmp, func(ok bool) error {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
			return nil
		}
		if err := tmp.Sync(); err != nil {
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		return os.Rename(tmp.Name(), name)
	}, nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i+1]
	}
	return "."
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

var exportFlags = []string{"data", "database", "server", "site", "from", "to", "format", "o", "purpose", "country", "regime", "email"}

func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("export", exportFlags, args, stderr)
	if err != nil {
		return err
	}
	if f.str("site") == "" {
		return usageError{"--site is required"}
	}
	switch f.str("format") {
	case "csv", "xlsx", "jsonl":
	default:
		return usageError{fmt.Sprintf("--format: want csv, xlsx or jsonl, got %q", f.str("format"))}
	}
	q := url.Values{}
	for _, n := range []string{"from", "to", "format", "purpose", "country", "regime", "email"} {
		if v := f.str(n); v != "" {
			q.Set(n, v)
		}
	}
	sq, err := server.ParseQuery(q)
	if err != nil {
		return usageError{err.Error()}
	}
	l, err := openLedger(ctx, f, false)
	if err != nil {
		return err
	}
	defer l.Close()
	w, done, err := output(f.str("o"), stdout)
	if err != nil {
		return err
	}
	if l.remote != nil {
		resp, err := l.remote.do(ctx, http.MethodGet, "/v1/admin/sites/"+url.PathEscape(f.str("site"))+"/consents?"+q.Encode(), nil)
		if err == nil {
			_, err = io.Copy(w, resp.Body)
			resp.Body.Close()
		}
		done(err == nil)
		return err
	}
	site, err := l.st.Site(ctx, f.str("site"))
	if err != nil {
		done(false)
		return fmt.Errorf("site %q: %w", f.str("site"), err)
	}
	err = server.WriteRecords(w, f.str("format"), site, func(fn func(store.Record) error) error {
		return l.st.Records(ctx, site.ID, sq, fn)
	})
	if err == nil {
		err = l.st.Audit(ctx, "cli", "export", fmt.Sprintf("consents of site %s as %s", site.ID, f.str("format")))
	}
	if derr := done(err == nil); err == nil {
		err = derr
	}
	return err
}
