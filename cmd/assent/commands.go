package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"

	"github.com/assent/assent/build"
	"github.com/assent/assent/geo"
	"github.com/assent/assent/store"
	"github.com/assent/assent/webhook"
	"github.com/assent/assent/widget"
)

func cmdSubject(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("subject", []string{"data", "database", "server", "email", "visitor-id", "receipt", "site", "purpose", "new-email", "name", "reason"}, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) == 1 && (f.args[0] == "withdraw" || f.args[0] == "rectify") {
		return subjectRights(ctx, f.args[0], f, stdout)
	}
	if len(f.args) != 1 || (f.args[0] != "show" && f.args[0] != "erase") {
		return usageError{"want: assent subject show|erase --email ADDRESS | --visitor-id ID (show also --receipt RECORD-ID), or subject withdraw|rectify"}
	}
	erase := f.args[0] == "erase"
	ref := store.SubjectRef{Email: store.NormalizeEmail(f.str("email")), VisitorID: f.str("visitor-id"), RecordID: f.str("receipt")}
	given := 0
	for _, v := range []string{ref.Email, ref.VisitorID, ref.RecordID} {
		if v != "" {
			given++
		}
	}
	switch {
	case erase && ref.RecordID != "":
		return usageError{"subject erase takes --email or --visitor-id, not --receipt"}
	case given != 1:
		return usageError{"give exactly one of --email, --visitor-id, --receipt"}
	}
	l, err := openLedger(ctx, f, false)
	if err != nil {
		return err
	}
	defer l.Close()
	q := url.Values{}
	switch {
	case ref.Email != "":
		q.Set("email", ref.Email)
	case ref.VisitorID != "":
		q.Set("visitor_id", ref.VisitorID)
	default:
		q.Set("receipt", ref.RecordID)
	}
	path := "/v1/admin/subjects?" + q.Encode()
	if l.remote != nil {
		method := http.MethodGet
		if erase {
			method = http.MethodDelete
		}
		var v any
		if err := l.remote.getJSON(ctx, method, path, nil, &v); err != nil {
			return err
		}
		return printJSON(stdout, v)
	}
	if erase {
		// The erasure queues its subject.erased webhook events in its own
		// transaction; the server delivers them when it next runs.
		hooks, err := webhook.New(ctx, l.st, webhook.Options{})
		if err != nil {
			return err
		}
		rep, _, err := l.st.EraseWith(ctx, "cli", ref, hooks.EraseOptions())
		if err != nil {
			return err
		}
		return printJSON(stdout, rep)
	}
	recs, state, err := l.st.Lookup(ctx, ref)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []store.Record{}
	}
	if err := l.st.Audit(ctx, "cli", "access", fmt.Sprintf("subject access: %d records", len(recs))); err != nil {
		return err
	}
	return printJSON(stdout, map[string]any{"email": state.Email, "state": state, "records": recs, "report": store.Report(recs, state)})
}

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("verify", []string{"data", "database", "server"}, args, stderr)
	if err != nil {
		return err
	}
	l, err := openLedger(ctx, f, false)
	if err != nil {
		return err
	}
	defer l.Close()
	var rep store.VerifyReport
	if l.remote != nil {
		err = l.remote.getJSON(ctx, http.MethodGet, "/v1/admin/verify", nil, &rep)
	} else {
		rep, err = l.st.Verify(ctx)
		if err == nil {
			err = l.st.Audit(ctx, "cli", "verify", fmt.Sprintf("ok=%t records=%d", rep.OK, rep.Records))
		}
	}
	if err != nil {
		return err
	}
	if err := printJSON(stdout, rep); err != nil {
		return err
	}
	if !rep.OK {
		return fmt.Errorf("verify failed: record %s of site %s: %s", rep.BadID, rep.BadSite, rep.Reason)
	}
	return nil
}

func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("backup", []string{"data", "database", "server"}, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return usageError{"want: assent backup FILE"}
	}
	l, err := openLedger(ctx, f, false)
	if err != nil {
		return err
	}
	defer l.Close()
	if l.st != nil {
		if _, ok := store.BoltStore(l.st); !ok {
			return fmt.Errorf("backup of a PostgreSQL ledger: %w; use pg_dump or pg_basebackup (docs/deploy.md)", store.ErrNotSupported)
		}
	}
	w, done, err := output(f.args[0], stdout)
	if err != nil {
		return err
	}
	var n int64
	if l.remote != nil {
		resp, err2 := l.remote.do(ctx, http.MethodGet, "/v1/admin/backup", nil)
		if err = err2; err == nil {
			n, err = io.Copy(w, resp.Body)
			resp.Body.Close()
		}
	} else {
		if err = l.st.Audit(ctx, "cli", "backup", "copy to a file"); err == nil {
			n, err = l.st.Backup(ctx, w)
		}
	}
	if derr := done(err == nil); err == nil {
		err = derr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %d bytes to %s\n", n, f.args[0])
	return nil
}

func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("token", []string{"data", "database", "server", "name", "role"}, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) == 0 {
		return usageError{"want: assent token create [--name NAME] [--role admin|viewer] | list | revoke NAME"}
	}
	verb := f.args[0]
	switch {
	case verb == "create" && len(f.args) == 1, verb == "list" && len(f.args) == 1, verb == "revoke" && len(f.args) == 2:
	default:
		return usageError{"want: assent token create [--name NAME] [--role admin|viewer] | list | revoke NAME"}
	}
	role, err := store.ParseRole(f.str("role"))
	if err != nil {
		return usageError{"--role: want admin or viewer"}
	}
	l, err := openLedger(ctx, f, verb == "create")
	if err != nil {
		return err
	}
	defer l.Close()
	switch verb {
	case "create":
		var tok string
		if l.remote != nil {
			var v struct{ Token string }
			err = l.remote.getJSON(ctx, http.MethodPost, "/v1/admin/tokens", map[string]string{"name": f.str("name"), "role": string(role)}, &v)
			tok = v.Token
		} else {
			_, tok, err = l.st.CreateTokenBy(ctx, "cli", f.str("name"), role)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "new %s token (shown once; only its hash is stored):\n", role)
		fmt.Fprintln(stdout, tok)
		return nil
	case "list":
		var toks []store.Token
		if l.remote != nil {
			err = l.remote.getJSON(ctx, http.MethodGet, "/v1/admin/tokens", nil, &toks)
		} else {
			toks, err = l.st.Tokens(ctx)
		}
		if err != nil {
			return err
		}
		for _, t := range toks {
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", t.Name, t.Role, t.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
		}
		return nil
	}
	name := f.args[1]
	if l.remote != nil {
		return l.remote.getJSON(ctx, http.MethodDelete, "/v1/admin/tokens/"+url.PathEscape(name), nil, nil)
	}
	return l.st.RevokeTokenBy(ctx, "cli", name)
}

func cmdSite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("site", []string{"data", "database", "server", "file"}, args, stderr)
	if err != nil {
		return err
	}
	verb := ""
	if len(f.args) > 0 {
		verb = f.args[0]
	}
	switch {
	case verb == "list" && len(f.args) == 1, verb == "show" && len(f.args) == 2, verb == "create" && len(f.args) == 1:
	default:
		return usageError{"want: assent site list | show ID | create --file site.json"}
	}
	var site store.Site
	if verb == "create" {
		if f.str("file") == "" {
			return usageError{"--file is required"}
		}
		b, err := os.ReadFile(f.str("file"))
		if err != nil {
			return err
		}
		if err := store.CheckSiteKeys(b); err != nil {
			return fmt.Errorf("%s: %v", f.str("file"), err)
		}
		if err := json.Unmarshal(b, &site); err != nil {
			return fmt.Errorf("%s: not a site config: %v", f.str("file"), err)
		}
	}
	l, err := openLedger(ctx, f, verb == "create")
	if err != nil {
		return err
	}
	defer l.Close()
	var out any
	switch verb {
	case "list":
		if l.remote != nil {
			err = l.remote.getJSON(ctx, http.MethodGet, "/v1/admin/sites", nil, &out)
		} else {
			out, err = l.st.Sites(ctx)
		}
	case "show":
		if l.remote != nil {
			err = l.remote.getJSON(ctx, http.MethodGet, "/v1/admin/sites/"+url.PathEscape(f.args[1]), nil, &out)
		} else if out, err = l.st.Site(ctx, f.args[1]); err != nil {
			err = fmt.Errorf("site %q: %w", f.args[1], err)
		}
	case "create":
		if l.remote != nil {
			err = l.remote.getJSON(ctx, http.MethodPost, "/v1/admin/sites", site, &out)
		} else {
			out, err = l.st.CreateSiteBy(ctx, "cli", site)
		}
	}
	if err != nil {
		return err
	}
	return printJSON(stdout, out)
}

func cmdGeo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("geo", []string{"geoip", "data"}, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) == 0 {
		return usageError{"want: assent geo [--geoip FILE] IP..."}
	}
	path := f.str("geoip")
	if path == "" {
		if p := filepath.Join(f.str("data"), defaultGeoDB); fileExists(p) {
			path = p
		}
	}
	loc, err := geo.Open(path)
	if err != nil {
		return err
	}
	defer loc.Close()
	addrs := make([]netip.Addr, len(f.args))
	for i, a := range f.args {
		if addrs[i], err = netip.ParseAddr(a); err != nil {
			return fmt.Errorf("%q is not an IP address", a)
		}
	}
	db := loc.BuildDate()
	if db == "" {
		db = "none"
	}
	for _, a := range addrs {
		r := loc.Lookup(a)
		cc := r.Country
		if cc == "" {
			cc = "unknown"
		}
		fmt.Fprintf(stdout, "%s\tcountry=%s\teu=%t\tregime=%s\tsource=%s\tdb=%s\n", a.Unmap(), cc, r.EU, geo.Decide(r.Country, nil), r.Source, db)
	}
	return nil
}

func cmdBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("build", []string{"o"}, args, stderr)
	if err != nil {
		return err
	}
	dir := f.str("o")
	if dir == "-" {
		dir = "dist"
	}
	b, err := build.Widget(widget.FS)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out := filepath.Join(dir, "assent.js")
	if err := os.WriteFile(out, b.JS, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\t%d bytes\t%s\n", out, len(b.JS), b.Hash)
	return nil
}

// cmdNotice prints the notice a record's notice_hash names: the exact texts
// the visitor was shown, as stored once in the ledger.
func cmdNotice(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("notice", []string{"data", "database", "server"}, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return usageError{"want: assent notice sha256:HASH"}
	}
	l, err := openLedger(ctx, f, false)
	if err != nil {
		return err
	}
	defer l.Close()
	var doc json.RawMessage
	if l.remote != nil {
		err = l.remote.getJSON(ctx, http.MethodGet, "/v1/admin/notices/"+url.PathEscape(f.args[0]), nil, &doc)
	} else if doc, err = l.st.Notice(ctx, f.args[0]); err != nil {
		err = fmt.Errorf("notice %s: %w", f.args[0], err)
	}
	if err != nil {
		return err
	}
	// The stored bytes exactly, with no newline added, so that their SHA-256
	// is the record's notice_hash: `assent notice H > n.json; sha256sum n.json`.
	_, err = stdout.Write(doc)
	return err
}

// cmdCompact rewrites a stopped ledger without its free pages, where bbolt
// keeps old versions of changed pages (erased data among them).
func cmdCompact(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("compact", []string{"data"}, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) != 0 {
		return usageError{"want: assent compact [--data DIR] (on a stopped ledger)"}
	}
	path := filepath.Join(f.str("data"), "assent.db")
	before, after, err := store.Compact(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "compacted %s: %d -> %d bytes\n", path, before, after)
	return nil
}

// cmdRestore puts a backup in place of a stopped bbolt ledger and
// re-applies every erasure of the erasure journal recorded since.
func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("restore", []string{"data", "database"}, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return usageError{"want: assent restore FILE [--data DIR] (on a stopped ledger)"}
	}
	if f.str("database") != "" {
		return fmt.Errorf("restore of a PostgreSQL ledger: %w; use PostgreSQL's own tools (pg_restore, point-in-time recovery)", store.ErrNotSupported)
	}
	path := filepath.Join(f.str("data"), "assent.db")
	rep, err := store.Restore(f.args[0], path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "restored %s from %s: %d journal entries, %d records erased again, %d suppression entries added, %d bytes\n",
		path, f.args[0], rep.Entries, rep.Reerased, rep.Suppressions, rep.Size)
	return nil
}
