package server

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/xuri/excelize/v2"

	"github.com/assent/assent/store"
)

// adminGet calls the admin API with the test token.
func (ts *testServer) admin(method, path string, body any) response {
	ts.t.Helper()
	return ts.do(method, path, body, map[string]string{"Authorization": "Bearer " + ts.token})
}

// seed appends records straight into the ledger: every field the exports
// carry, including cells a spreadsheet would run as formulas.
func seed(t *testing.T, st *store.Store) []store.Record {
	t.Helper()
	in := []store.Record{
		{Site: "shop", Event: "grant", Source: "banner", Basis: "explicit", VisitorID: "v_1", Country: "DE", Regime: "opt-in",
			GeoDB: "2026-06-17", NoticeVersion: "1", NoticeHash: "sha256:aa", WidgetBuild: "sha256:bb",
			Choices: map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "granted"},
			PageURL: "https://shop.example/a", IP: "85.214.132.117", UserAgent: "Mozilla/5.0 (X11)", GPC: true},
		{Site: "shop", Event: "partial", Source: "signup", Basis: "explicit", Email: "Ann@Example.com ", VisitorID: "=HYPERLINK(\"http://evil\")",
			Country: "FR", Regime: "opt-in", NoticeVersion: "1", NoticeHash: "sha256:aa",
			Choices: map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "granted", "newsletter": "granted"},
			PageURL: "https://shop.example/b?x=1,2", IP: "2001:db8:1234:5678::1", UserAgent: "+cmd|' /C calc'!A0", DNT: true},
		{Site: "shop", Event: "deny", Source: "banner", Basis: "explicit", VisitorID: "v_3", Country: "US", Regime: "notice",
			NoticeVersion: "1", NoticeHash: "sha256:aa",
			Choices: map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "denied"},
			PageURL: "https://shop.example/c", UserAgent: "@SUM(1+1)\tand \"quotes\"\r\nnew line, comma, ünïcode ✓"},
		{Site: "shop", Event: "grant", Source: "signup", Basis: "implied", Email: "bob@example.com", VisitorID: "-2+3",
			Country: "US", Regime: "notice", NoticeVersion: "1", NoticeHash: "sha256:aa",
			Choices: map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "granted", "newsletter": "granted"}},
		{Site: "shop", Event: "withdraw", Source: "preferences", Basis: "explicit", Email: "ann@example.com", VisitorID: "v_2",
			Country: "FR", Regime: "opt-in", NoticeVersion: "2", NoticeHash: "sha256:cc",
			Choices: map[string]string{"necessary": "granted", "analytics": "denied", "marketing": "denied", "newsletter": "denied"}},
	}
	var out []store.Record
	for _, r := range in {
		got, err := st.Append(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got)
	}
	return out
}

// ledger is every record of the site as the store has it.
func ledger(t *testing.T, st *store.Store, q store.Query) []store.Record {
	t.Helper()
	var recs []store.Record
	if err := st.Records("shop", q, func(r store.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return recs
}

func ids(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// wantRow is the row the CSV and XLSX exports must hold for r, neutralised.
func wantRow(site store.Site, r store.Record) []string {
	row := []string{r.ID, r.RecordedAt.UTC().Format(rfc3339Nano), r.Site, r.Event, r.Source, r.Basis, r.Email, r.VisitorID,
		r.Country, r.Regime, r.NoticeVersion, r.NoticeHash}
	for _, p := range site.Purposes {
		row = append(row, r.Choices[p.ID])
	}
	row = append(row, r.IP, r.UserAgent, r.PageURL, strconv.FormatBool(r.GPC), strconv.FormatBool(r.DNT), r.PrevHash, r.Hash)
	for i, c := range row {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			row[i] = "'" + c
		}
	}
	return row
}

func parseCSV(t *testing.T, body []byte) [][]string {
	t.Helper()
	if !bytes.HasPrefix(body, []byte("\ufeff")) {
		t.Fatalf("CSV does not start with a UTF-8 byte-order mark: %q", body[:min(len(body), 10)])
	}
	if bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\n")) && !bytes.Contains(body, []byte("\r\n")) {
		t.Error("CSV rows must end with CRLF (RFC 4180)")
	}
	rows, err := csv.NewReader(bytes.NewReader(body[3:])).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v", err)
	}
	return rows
}

func parseXLSX(t *testing.T, body []byte, sheet string) [][]string {
	t.Helper()
	f, err := excelize.OpenReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("XLSX does not open: %v", err)
	}
	defer f.Close()
	if got := f.GetSheetList(); !reflect.DeepEqual(got, []string{sheet}) {
		t.Errorf("sheets %v, want just %q", got, sheet)
	}
	rows, err := f.GetRows(sheet)
	if err != nil {
		t.Fatal(err)
	}
	// No cell may be a formula.
	for i, row := range rows {
		for j := range row {
			cell, _ := excelize.CoordinatesToCellName(j+1, i+1)
			if fm, _ := f.GetCellFormula(sheet, cell); fm != "" {
				t.Errorf("cell %s is a formula: %q", cell, fm)
			}
		}
	}
	return rows
}

func parseJSONL[T any](t *testing.T, body []byte) []T {
	t.Helper()
	var out []T
	dec := json.NewDecoder(bytes.NewReader(body))
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("JSON Lines do not parse: %v", err)
		}
		out = append(out, v)
	}
	if len(body) > 0 && bytes.Count(body, []byte("\n")) != len(out) {
		t.Errorf("%d lines for %d records", bytes.Count(body, []byte("\n")), len(out))
	}
	return out
}

// table rows padded to the header's width (XLSX leaves out empty cells).
func pad(rows [][]string, n int) [][]string {
	for i := range rows {
		for len(rows[i]) < n {
			rows[i] = append(rows[i], "")
		}
	}
	return rows
}

func TestExportConsentsRoundTrip(t *testing.T) {
	ts := newTestServer(t, nil)
	seed(t, ts.st)
	site, _ := ts.st.Site("shop")
	want := ledger(t, ts.st, store.Query{})
	if len(want) != 5 {
		t.Fatalf("ledger has %d records", len(want))
	}
	header := RecordHeader(site)
	wantHeader := []string{"id", "recorded_at", "site", "event", "source", "basis", "email", "visitor_id", "country", "regime",
		"notice_version", "notice_hash", "necessary", "analytics", "marketing", "newsletter",
		"ip", "user_agent", "page_url", "gpc", "dnt", "prev_hash", "hash"}
	if !reflect.DeepEqual(header, wantHeader) {
		t.Fatalf("header\n%v, want\n%v", header, wantHeader)
	}

	for _, format := range []string{"csv", "xlsx"} {
		t.Run(format, func(t *testing.T) {
			resp := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format="+format, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, resp.body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != Formats[format] {
				t.Errorf("Content-Type %q", ct)
			}
			if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="assent-shop-consents-all.`+format+`"` {
				t.Errorf("Content-Disposition %q", cd)
			}
			var rows [][]string
			if format == "csv" {
				rows = parseCSV(t, resp.body)
			} else {
				rows = pad(parseXLSX(t, resp.body, "consents"), len(header))
			}
			if !reflect.DeepEqual(rows[0], header) {
				t.Errorf("header row %v", rows[0])
			}
			if len(rows) != len(want)+1 {
				t.Fatalf("%d rows, want %d", len(rows)-1, len(want))
			}
			for i, r := range want {
				w := wantRow(site, r)
				if format == "csv" {
					// encoding/csv writes a line break inside a cell as CRLF
					// and reads it back as LF.
					for j := range w {
						w[j] = strings.ReplaceAll(w[j], "\r\n", "\n")
					}
				}
				for j := range header {
					if rows[i+1][j] != w[j] {
						t.Errorf("record %d column %s = %q, want %q", i, header[j], rows[i+1][j], w[j])
					}
				}
			}
			// The formula-like cells, spelled out.
			if got := rows[2][7]; got != `'=HYPERLINK("http://evil")` {
				t.Errorf("visitor_id not neutralised: %q", got)
			}
			if got := rows[2][17]; got != "'+cmd|' /C calc'!A0" {
				t.Errorf("user_agent not neutralised: %q", got)
			}
			if got := rows[4][7]; got != "'-2+3" {
				t.Errorf("visitor_id -2+3 not neutralised: %q", got)
			}
			// Emails are stored normalised.
			if rows[2][6] != "ann@example.com" {
				t.Errorf("email %q", rows[2][6])
			}
		})
	}

	t.Run("jsonl", func(t *testing.T) {
		resp := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=jsonl", nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		got := parseJSONL[store.Record](t, resp.body)
		if len(got) != len(want) {
			t.Fatalf("%d records, want %d", len(got), len(want))
		}
		for i := range want {
			if !got[i].RecordedAt.Equal(want[i].RecordedAt) {
				t.Errorf("record %d recorded_at %v, want %v", i, got[i].RecordedAt, want[i].RecordedAt)
			}
			got[i].RecordedAt = want[i].RecordedAt
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("record %d\n got %+v\nwant %+v", i, got[i], want[i])
			}
		}
		// JSON keeps the text as it is: no apostrophes, no HTML escaping.
		if !bytes.Contains(resp.body, []byte(`"visitor_id":"=HYPERLINK(\"http://evil\")"`)) || bytes.Contains(resp.body, []byte(`\u003c`)) {
			t.Errorf("JSON Lines altered the text")
		}
	})
}

func TestExportFilters(t *testing.T) {
	ts := newTestServer(t, nil)
	recs := seed(t, ts.st)
	mid := recs[2].RecordedAt
	cases := []struct {
		query string
		want  []store.Record
	}{
		{"", recs},
		{"from=" + url.QueryEscape(mid.Format(time.RFC3339Nano)), recs[2:]},
		{"to=" + url.QueryEscape(mid.Format(time.RFC3339Nano)), recs[:2]},
		{"from=" + url.QueryEscape(recs[1].RecordedAt.Format(time.RFC3339Nano)) + "&to=" + url.QueryEscape(recs[3].RecordedAt.Format(time.RFC3339Nano)), recs[1:3]},
		{"from=" + mid.Add(48*time.Hour).Format("2006-01-02"), nil},
		{"to=" + mid.Add(48*time.Hour).Format("2006-01-02"), recs},
		{"purpose=analytics", []store.Record{recs[0], recs[3]}},
		{"purpose=newsletter", []store.Record{recs[1], recs[3]}},
		{"country=fr", []store.Record{recs[1], recs[4]}},
		{"regime=notice", []store.Record{recs[2], recs[3]}},
		{"regime=opt-in&country=DE", recs[:1]},
		{"email=" + url.QueryEscape(" ANN@example.com"), []store.Record{recs[1], recs[4]}},
		{"email=nobody@example.com", nil},
		{"purpose=marketing&regime=opt-in", []store.Record{recs[0], recs[1]}},
	}
	for _, c := range cases {
		for _, format := range []string{"jsonl", "csv"} {
			resp := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format="+format+"&"+c.query, nil)
			if resp.StatusCode != 200 {
				t.Errorf("%s: %d %s", c.query, resp.StatusCode, resp.body)
				continue
			}
			var got []string
			if format == "jsonl" {
				got = ids(parseJSONL[store.Record](t, resp.body))
			} else {
				for _, row := range parseCSV(t, resp.body)[1:] {
					got = append(got, row[0])
				}
			}
			if !slices.Equal(got, ids(c.want)) {
				t.Errorf("%s as %s: ids %v, want %v", c.query, format, got, ids(c.want))
			}
		}
	}
}

func TestExportFileNameNamesSiteAndPeriod(t *testing.T) {
	ts := newTestServer(t, nil)
	for query, want := range map[string]string{
		"from=2026-01-01&to=2026-02-01":    "assent-shop-consents-20260101-20260201.csv",
		"from=2026-01-01":                  "assent-shop-consents-20260101-now.csv",
		"to=2026-02-01&format=xlsx":        "assent-shop-consents-start-20260201.xlsx",
		"from=2026-01-01T10:00:00%2B02:00": "assent-shop-consents-20260101-now.csv",
	} {
		resp := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?"+query, nil)
		if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="`+want+`"` {
			t.Errorf("%s: %d Content-Disposition %q, want %s", query, resp.StatusCode, cd, want)
		}
	}
	resp := ts.admin(http.MethodGet, "/v1/admin/sites/shop/signups?from=2026-03-01&format=jsonl", nil)
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "assent-shop-signups-20260301-now.jsonl") {
		t.Errorf("signups Content-Disposition %q", cd)
	}
}

func TestExportBadQueriesAre400(t *testing.T) {
	ts := newTestServer(t, nil)
	cases := []struct{ path, code string }{
		{"/v1/admin/sites/shop/consents?format=pdf", "invalid_field"},
		{"/v1/admin/sites/shop/consents?from=yesterday", "invalid_field"},
		{"/v1/admin/sites/shop/consents?to=2026-13-01", "invalid_field"},
		{"/v1/admin/sites/shop/consents?from=2026-02-01&to=2026-01-01", "invalid_field"},
		{"/v1/admin/sites/shop/consents?from=2026-02-01&to=2026-02-01", "invalid_field"},
		{"/v1/admin/sites/shop/consents?country=Germany", "invalid_field"},
		{"/v1/admin/sites/shop/consents?country=1A", "invalid_field"},
		{"/v1/admin/sites/shop/consents?regime=optin", "invalid_field"},
		{"/v1/admin/sites/shop/consents?email=not-an-address", "invalid_email"},
		{"/v1/admin/sites/shop/consents?email=" + url.QueryEscape("Ann <ann@example.com>"), "invalid_email"},
		{"/v1/admin/sites/shop/consents?purpose=cookies", "unknown_purpose"},
		{"/v1/admin/sites/shop/consents?limit=0", "invalid_field"},
		{"/v1/admin/sites/shop/consents?limit=ten", "invalid_field"},
		{"/v1/admin/sites/shop/consents?limit=10001", "invalid_field"},
		{"/v1/admin/sites/shop/consents?after=01ABC", "invalid_field"},
		{"/v1/admin/sites/shop/consents?after=01JD0000000000000000000000U", "invalid_field"},
		{"/v1/admin/sites/shop/signups?format=summary", "invalid_field"},
		{"/v1/admin/sites/shop/signups?limit=5", "invalid_field"},
		{"/v1/admin/sites/shop/signups?purpose=cookies", "unknown_purpose"},
		{"/v1/admin/sites/shop/signups?regime=x", "invalid_field"},
		{"/v1/admin/audit?format=pdf", "invalid_field"},
		{"/v1/admin/audit?from=last-week", "invalid_field"},
		{"/v1/admin/subjects", "invalid_field"},
		{"/v1/admin/subjects?email=a@example.com&visitor_id=v_1", "invalid_field"},
		{"/v1/admin/subjects?visitor_id=%01", "invalid_field"},
		{"/v1/admin/subjects?receipt=nope", "invalid_field"},
		{"/v1/admin/subjects?email=nope", "invalid_email"},
	}
	for _, c := range cases {
		resp := ts.admin(http.MethodGet, c.path, nil)
		if resp.StatusCode != http.StatusBadRequest || resp.errorCode() != c.code {
			t.Errorf("%s: %d %s, want 400 %s", c.path, resp.StatusCode, resp.body, c.code)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q, want JSON", c.path, ct)
		}
		if cd := resp.Header.Get("Content-Disposition"); cd != "" {
			t.Errorf("%s: an error is not a download: %q", c.path, cd)
		}
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(resp.body, &e); e.Error.Message == "" {
			t.Errorf("%s: no message", c.path)
		}
	}
	for _, p := range []string{"/v1/admin/sites/nope/consents", "/v1/admin/sites/nope/signups", "/v1/admin/sites/nope"} {
		if resp := ts.admin(http.MethodGet, p, nil); resp.StatusCode != 404 || resp.errorCode() != "unknown_site" {
			t.Errorf("%s: %d %s", p, resp.StatusCode, resp.body)
		}
	}
}

func TestExportPages(t *testing.T) {
	ts := newTestServer(t, nil)
	seed(t, ts.st)
	seed(t, ts.st)
	all := ledger(t, ts.st, store.Query{})
	var paged []string
	after := ""
	for page := 0; page < 10; page++ {
		resp := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=jsonl&limit=3&after="+after, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, resp.body)
		}
		got := parseJSONL[store.Record](t, resp.body)
		if len(got) > 3 {
			t.Fatalf("page of %d records, limit 3", len(got))
		}
		paged = append(paged, ids(got)...)
		if len(got) < 3 {
			break
		}
		after = strings.ToLower(got[len(got)-1].ID) // ids are case-insensitive
	}
	if !slices.Equal(paged, ids(all)) {
		t.Errorf("pages give\n%v\nwant\n%v", paged, ids(all))
	}
	// Paging combines with a filter.
	resp := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=jsonl&limit=1&regime=notice&after="+all[2].ID, nil)
	if got := ids(parseJSONL[store.Record](t, resp.body)); !slices.Equal(got, []string{all[3].ID}) {
		t.Errorf("filtered page %v, want %v", got, all[3].ID)
	}
}

func TestExportSummary(t *testing.T) {
	ts := newTestServer(t, nil)
	recs := seed(t, ts.st)
	resp := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=summary", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, resp.body)
	}
	var sum Summary
	if err := json.Unmarshal(resp.body, &sum); err != nil {
		t.Fatal(err)
	}
	day := recs[0].RecordedAt.UTC().Format("2006-01-02")
	if sum.Records != 5 || len(sum.Days) < 1 || sum.Days[0].Date > day {
		t.Fatalf("summary %+v", sum)
	}
	total, grants := 0, 0
	for _, d := range sum.Days {
		total += d.Records
		grants += d.Grant
	}
	if total != 5 || grants != 2 {
		t.Errorf("days count %d records, %d grants", total, grants)
	}
	// analytics: granted in records 0 and 3, denied in 1, 2 and 4.
	want := map[string][2]int{"analytics": {2, 3}, "marketing": {3, 2}, "newsletter": {2, 1}}
	for _, p := range sum.Purposes {
		if p.Key == "necessary" {
			t.Error("a required purpose has no acceptance rate")
		}
		if w := want[p.Key]; p.Granted != w[0] || p.Denied != w[1] {
			t.Errorf("purpose %s: %d granted %d denied, want %v", p.Key, p.Granted, p.Denied, w)
		}
	}
	if len(sum.Countries) != 3 || sum.Countries[0].Key != "FR" && sum.Countries[0].Key != "US" {
		t.Errorf("countries %+v", sum.Countries)
	}
	for _, c := range sum.Countries {
		if c.Key == "DE" && (c.Records != 1 || c.Rate != 1) {
			t.Errorf("DE %+v", c)
		}
	}
}

func TestExportSignups(t *testing.T) {
	ts := newTestServer(t, nil).publicAtOwnURL()
	body := func(email string, news bool) map[string]any {
		return map[string]any{"email": email, "visitor_id": "v_" + strings.ToLower(email), "choices": map[string]bool{"newsletter": news}}
	}
	for _, email := range []string{"Carol@example.com", "=evil@example.com"} {
		if r := ts.do(http.MethodPost, "/v1/sites/shop/signups", body(email, true), fromShop); r.StatusCode != 201 {
			t.Fatalf("signup: %d %s", r.StatusCode, r.body)
		}
	}
	// A later banner choice does not change the newsletter state.
	header := []string{"email", "first_signup_at", "last_change_at", "double_opt_in", "signup_at", "signup_ip",
		"confirmed_at", "confirm_ip", "unsubscribe_url", "suppressed", "newsletter"}
	subjects := map[string]store.SubjectState{}
	for _, e := range []string{"carol@example.com", "=evil@example.com"} {
		_, st, err := ts.st.Subject(e)
		if err != nil {
			t.Fatal(err)
		}
		subjects[e] = st
	}
	for _, format := range []string{"csv", "xlsx"} {
		resp := ts.admin(http.MethodGet, "/v1/admin/sites/shop/signups?format="+format, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", format, resp.StatusCode, resp.body)
		}
		var rows [][]string
		if format == "csv" {
			rows = parseCSV(t, resp.body)
		} else {
			rows = pad(parseXLSX(t, resp.body, "signups"), len(header))
		}
		if !reflect.DeepEqual(rows[0], header) || len(rows) != 3 {
			t.Fatalf("%s: rows %v", format, rows)
		}
		for _, row := range rows[1:] {
			email := strings.TrimPrefix(row[0], "'")
			st, ok := subjects[email]
			if !ok {
				t.Errorf("%s: unexpected email %q", format, row[0])
				continue
			}
			unsub := ts.url + "/u/" + ts.st.UnsubscribeToken("shop", st.Email)
			want := []string{safeCell(st.Email), fmtTime(st.FirstSignupAt), fmtTime(st.LastChangeAt), "none", "", "", "", "", unsub, "false", "granted"}
			if !reflect.DeepEqual(row, want) {
				t.Errorf("%s: row %q, want %q", format, row, want)
			}
		}
	}
	resp := ts.admin(http.MethodGet, "/v1/admin/sites/shop/signups?format=jsonl&email=carol@example.com", nil)
	got := parseJSONL[signupJSON](t, resp.body)
	if len(got) != 1 || got[0].Email != "carol@example.com" || got[0].Purposes["newsletter"] != "granted" || got[0].DoubleOptIn != "none" || got[0].Suppressed {
		t.Errorf("jsonl %+v", got)
	}
}

func TestAdminSubjectAccessAndErasure(t *testing.T) {
	ts := newTestServer(t, nil)
	recs := seed(t, ts.st)
	resp := ts.admin(http.MethodGet, "/v1/admin/subjects?email="+url.QueryEscape("ANN@example.com"), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, resp.body)
	}
	var access struct {
		Email   string         `json:"email"`
		Records []store.Record `json:"records"`
	}
	json.Unmarshal(resp.body, &access)
	if access.Email != "ann@example.com" || !slices.Equal(ids(access.Records), []string{recs[1].ID, recs[4].ID}) {
		t.Fatalf("access %s", resp.body)
	}
	// Somebody unknown: 200 with no record.
	resp = ts.admin(http.MethodGet, "/v1/admin/subjects?email=nobody@example.com", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(resp.body), `"records":[]`) {
		t.Errorf("unknown person: %d %s", resp.StatusCode, resp.body)
	}

	if r := ts.admin(http.MethodDelete, "/v1/admin/subjects?email=bad", nil); r.StatusCode != 400 || r.errorCode() != "invalid_email" {
		t.Errorf("erase a bad address: %d %s", r.StatusCode, r.body)
	}
	resp = ts.admin(http.MethodDelete, "/v1/admin/subjects?email=ann@example.com", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("erase: %d %s", resp.StatusCode, resp.body)
	}
	var rep store.ErasureReport
	json.Unmarshal(resp.body, &rep)
	if rep.Records != 2 || !slices.Contains(rep.Removed, "email") || !strings.Contains(rep.Reason, "17(3)(e)") {
		t.Errorf("erasure report %s", resp.body)
	}
	after := ledger(t, ts.st, store.Query{})
	for _, i := range []int{1, 4} {
		r := after[i]
		if !r.Erased || r.Email != "" || r.IP != "" || r.UserAgent != "" || r.Hash != recs[i].Hash {
			t.Errorf("record %d after erasure: %+v", i, r)
		}
	}
	// The export shows the erasure, and the chains still verify.
	resp = ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=jsonl", nil)
	if bytes.Contains(resp.body, []byte("ann@example.com")) || bytes.Count(resp.body, []byte(`"erased":true`)) != 2 {
		t.Errorf("export after erasure:\n%s", resp.body)
	}
	var v store.VerifyReport
	if r := ts.admin(http.MethodGet, "/v1/admin/verify", nil); r.StatusCode != 200 || json.Unmarshal(r.body, &v) != nil || !v.OK || v.Records != 5 {
		t.Errorf("verify after erasure: %d %s", r.StatusCode, r.body)
	}
	// A new signup of the address is refused, and the audit log never
	// names the person.
	r := ts.do(http.MethodPost, "/v1/sites/shop/signups", map[string]any{"email": "ann@example.com", "choices": map[string]bool{"newsletter": true}}, fromShop)
	if r.StatusCode != http.StatusConflict || r.errorCode() != "suppressed" {
		t.Errorf("signup after erasure: %d %s", r.StatusCode, r.body)
	}
	audit := ts.admin(http.MethodGet, "/v1/admin/audit", nil)
	if bytes.Contains(audit.body, []byte("ann@")) || !bytes.Contains(audit.body, []byte(`"action":"erase"`)) {
		t.Errorf("audit log:\n%s", audit.body)
	}
}

func TestAdminVerify(t *testing.T) {
	ts := newTestServer(t, nil)
	seed(t, ts.st)
	r := ts.admin(http.MethodGet, "/v1/admin/verify", nil)
	var v store.VerifyReport
	if r.StatusCode != 200 || json.Unmarshal(r.body, &v) != nil || !v.OK || v.Records != 5 || v.Sites["shop"].Records != 5 || v.Sites["shop"].Head == "" {
		t.Errorf("verify: %d %s", r.StatusCode, r.body)
	}
}

func TestAdminAuditLogFormats(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=csv", nil)
	ts.admin(http.MethodGet, "/v1/admin/verify", nil)
	resp := ts.admin(http.MethodGet, "/v1/admin/audit", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" || resp.Header.Get("Content-Disposition") != "" {
		t.Fatalf("%d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
	}
	entries := parseJSONL[store.AuditEntry](t, resp.body)
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
		if e.Token != "test" || e.At.IsZero() {
			t.Errorf("entry %+v", e)
		}
	}
	if !slices.Equal(actions, []string{"site_create", "export", "verify"}) {
		t.Errorf("actions %v", actions)
	}
	want := [][]string{{"at", "token", "action", "detail"}}
	for _, e := range entries {
		want = append(want, []string{e.At.UTC().Format(rfc3339Nano), e.Token, e.Action, e.Detail})
	}
	for _, format := range []string{"csv", "xlsx"} {
		resp := ts.admin(http.MethodGet, "/v1/admin/audit?format="+format, nil)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "assent-audit-all."+format) {
			t.Fatalf("%s: %d %q", format, resp.StatusCode, resp.Header.Get("Content-Disposition"))
		}
		var rows [][]string
		if format == "csv" {
			rows = parseCSV(t, resp.body)
		} else {
			rows = pad(parseXLSX(t, resp.body, "audit"), 4)
		}
		if !reflect.DeepEqual(rows, want) {
			t.Errorf("%s:\n%q\nwant\n%q", format, rows, want)
		}
	}
	// A period with nothing in it.
	resp = ts.admin(http.MethodGet, "/v1/admin/audit?from=2000-01-01&to=2000-01-02", nil)
	if resp.StatusCode != 200 || len(resp.body) != 0 {
		t.Errorf("empty period: %d %q", resp.StatusCode, resp.body)
	}
}

func TestAdminSites(t *testing.T) {
	ts := newTestServer(t, nil)
	var list []store.Site
	if r := ts.admin(http.MethodGet, "/v1/admin/sites", nil); r.StatusCode != 200 || json.Unmarshal(r.body, &list) != nil || len(list) != 1 || list[0].ID != "shop" {
		t.Fatalf("list: %d %s", r.StatusCode, r.body)
	}
	blog := store.Site{ID: "blog", Origins: []string{"https://blog.example"}, Purposes: []store.Purpose{{ID: "analytics"}}}
	r := ts.admin(http.MethodPost, "/v1/admin/sites", blog)
	var created store.Site
	if r.StatusCode != 201 || json.Unmarshal(r.body, &created) != nil || created.PolicyVersion == "" {
		t.Fatalf("create: %d %s", r.StatusCode, r.body)
	}
	cases := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{http.MethodPost, "/v1/admin/sites", blog, 409, "site_exists"},
		{http.MethodPost, "/v1/admin/sites", store.Site{ID: "Bad Id", Purposes: []store.Purpose{{ID: "a"}}}, 422, "invalid_field"},
		{http.MethodPost, "/v1/admin/sites", store.Site{ID: "nopurpose"}, 422, "invalid_field"},
		{http.MethodPost, "/v1/admin/sites", `{"id":`, 400, "invalid_json"},
		{http.MethodPut, "/v1/admin/sites/blog", store.Site{ID: "other", Purposes: blog.Purposes}, 422, "invalid_field"},
		{http.MethodPut, "/v1/admin/sites/blog", store.Site{ID: "blog", Origins: []string{"blog.example"}, Purposes: blog.Purposes}, 422, "invalid_field"},
		{http.MethodPut, "/v1/admin/sites/nope", store.Site{ID: "nope", Purposes: blog.Purposes}, 404, "unknown_site"},
		{http.MethodGet, "/v1/admin/sites/nope", nil, 404, "unknown_site"},
	}
	for _, c := range cases {
		r := ts.admin(c.method, c.path, c.body)
		if r.StatusCode != c.status || r.errorCode() != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, r.StatusCode, r.body, c.status, c.code)
		}
	}
	// A change of purposes gives a new policy version.
	blog.Purposes = append(blog.Purposes, store.Purpose{ID: "marketing"})
	r = ts.admin(http.MethodPut, "/v1/admin/sites/blog", blog)
	var updated store.Site
	if r.StatusCode != 200 || json.Unmarshal(r.body, &updated) != nil || updated.PolicyVersion == created.PolicyVersion || len(updated.Purposes) != 2 {
		t.Errorf("put: %d %s", r.StatusCode, r.body)
	}
	var got store.Site
	if r := ts.admin(http.MethodGet, "/v1/admin/sites/blog", nil); r.StatusCode != 200 || json.Unmarshal(r.body, &got) != nil || got.PolicyVersion != updated.PolicyVersion {
		t.Errorf("get: %d %s", r.StatusCode, r.body)
	}
}

func TestAdminTokens(t *testing.T) {
	ts := newTestServer(t, nil)
	r := ts.admin(http.MethodPost, "/v1/admin/tokens", map[string]string{"name": "dpo"})
	var tok struct{ Name, Token string }
	if r.StatusCode != 201 || json.Unmarshal(r.body, &tok) != nil || tok.Name != "dpo" || !strings.HasPrefix(tok.Token, "asn_") {
		t.Fatalf("create: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodPost, "/v1/admin/tokens", map[string]string{"name": "dpo"}); r.StatusCode != 409 {
		t.Errorf("duplicate: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodPost, "/v1/admin/tokens", map[string]string{"name": "no spaces"}); r.StatusCode != 422 {
		t.Errorf("bad name: %d %s", r.StatusCode, r.body)
	}
	dpo := map[string]string{"Authorization": "Bearer " + tok.Token}
	if r := ts.do(http.MethodGet, "/v1/admin/sites", nil, dpo); r.StatusCode != 200 {
		t.Errorf("new token refused: %d", r.StatusCode)
	}
	var list []store.Token
	if r := ts.admin(http.MethodGet, "/v1/admin/tokens", nil); r.StatusCode != 200 || json.Unmarshal(r.body, &list) != nil || len(list) != 2 {
		t.Errorf("list: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodDelete, "/v1/admin/tokens/dpo", nil); r.StatusCode != 204 {
		t.Errorf("revoke: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodDelete, "/v1/admin/tokens/dpo", nil); r.StatusCode != 404 {
		t.Errorf("revoke again: %d %s", r.StatusCode, r.body)
	}
	if r := ts.do(http.MethodGet, "/v1/admin/sites", nil, dpo); r.StatusCode != 401 || r.errorCode() != "unauthorized" {
		t.Errorf("revoked token: %d %s", r.StatusCode, r.body)
	}
}

func TestAdminBackupIsALedger(t *testing.T) {
	ts := newTestServer(t, nil)
	seed(t, ts.st)
	r := ts.admin(http.MethodGet, "/v1/admin/backup", nil)
	if r.StatusCode != 200 || !strings.Contains(r.Header.Get("Content-Disposition"), "assent-backup-") {
		t.Fatalf("%d %q", r.StatusCode, r.Header.Get("Content-Disposition"))
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, r.body, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := ledger(t, st, store.Query{}); len(got) != 5 {
		t.Errorf("backup holds %d records", len(got))
	}
}

// Every admin route refuses a request without a valid token.
func TestEveryAdminRouteNeedsAToken(t *testing.T) {
	ts := newTestServer(t, nil)
	routes := [][2]string{
		{"GET", "/v1/admin/sites"}, {"POST", "/v1/admin/sites"}, {"GET", "/v1/admin/sites/shop"}, {"PUT", "/v1/admin/sites/shop"},
		{"GET", "/v1/admin/sites/shop/consents"}, {"GET", "/v1/admin/sites/shop/signups"}, {"GET", "/v1/admin/subjects?email=a@b.example"},
		{"DELETE", "/v1/admin/subjects?email=a@b.example"}, {"GET", "/v1/admin/verify"}, {"GET", "/v1/admin/audit"},
		{"GET", "/v1/admin/backup"}, {"GET", "/v1/admin/tokens"}, {"POST", "/v1/admin/tokens"}, {"DELETE", "/v1/admin/tokens/test"},
	}
	for _, rt := range routes {
		for _, auth := range []string{"", "Bearer asn_not-a-token", "Bearer " + ts.token + "x"} {
			r := ts.do(rt[0], rt[1], nil, map[string]string{"Authorization": auth})
			if r.StatusCode != 401 || r.errorCode() != "unauthorized" || r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with %q: %d %s", rt[0], rt[1], auth, r.StatusCode, r.body)
			}
		}
	}
	// Nothing was erased or created by those.
	if toks, _ := ts.st.Tokens(); len(toks) != 1 {
		t.Errorf("%d tokens", len(toks))
	}
}

func TestAdminConsolePage(t *testing.T) {
	ts := newTestServer(t, nil)
	r := ts.do(http.MethodGet, "/admin/", nil, nil)
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("%d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	csp := r.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
		t.Errorf("CSP %q", csp)
	}
	page := string(r.body)
	if strings.Count(page, "<script") != 1 || !strings.Contains(page, `<script src="/admin/console.js" defer></script>`) {
		t.Errorf("the page must load its one script from a file, no inline script")
	}
	if strings.Contains(page, "/*CSS*/") || !strings.Contains(page, "--accent") {
		t.Errorf("stylesheet not inlined")
	}
	js := ts.do(http.MethodGet, "/admin/console.js", nil, nil)
	if js.StatusCode != 200 || !strings.HasPrefix(js.Header.Get("Content-Type"), "text/javascript") || len(js.body) < 2000 ||
		!bytes.Contains(js.body, []byte("/v1/admin/sites")) {
		t.Errorf("script: %d %q %d bytes", js.StatusCode, js.Header.Get("Content-Type"), len(js.body))
	}
	if js.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", js.Header.Get("Cache-Control"))
	}
	if r := ts.do(http.MethodGet, "/admin", nil, nil); r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != "/admin/" {
		t.Errorf("/admin: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
}

// WriteRecords keeps the API's column order whatever the site's purposes.
func TestExportRecordHeaderFollowsSitePurposes(t *testing.T) {
	site := store.Site{ID: "x", Purposes: []store.Purpose{{ID: "zeta"}, {ID: "alpha"}}}
	var b bytes.Buffer
	rec := store.Record{ID: "01", Site: "x", Choices: map[string]string{"alpha": "granted", "zeta": "denied"}}
	if err := WriteRecords(&b, "csv", site, func(fn func(store.Record) error) error { return fn(rec) }); err != nil {
		t.Fatal(err)
	}
	rows := parseCSV(t, b.Bytes())
	if got := fmt.Sprint(rows[0][12:14], rows[1][12:14]); got != "[zeta alpha] [denied granted]" {
		t.Errorf("purpose columns %s", got)
	}
	if err := WriteRecords(&b, "pdf", site, func(func(store.Record) error) error { return nil }); err == nil {
		t.Error("an unknown format must fail")
	}
}

// An XLSX export too big for one sheet is refused before its first byte;
// an error after the first bytes aborts the connection rather than ending
// a file that looks complete.
func TestExportErrorsBeforeAndAfterTheFirstByte(t *testing.T) {
	ts := newTestServer(t, nil)
	seed(t, ts.st)
	old := xlsxMaxRows
	xlsxMaxRows = 3 // the header and two records
	t.Cleanup(func() { xlsxMaxRows = old })
	r := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=xlsx", nil)
	if r.StatusCode != http.StatusUnprocessableEntity || r.errorCode() != "too_many_rows" || r.Header.Get("Content-Disposition") != "" {
		t.Errorf("too many rows: %d %s %q", r.StatusCode, r.body, r.Header.Get("Content-Disposition"))
	}
	if r := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=xlsx&country=FR", nil); r.StatusCode != 200 {
		t.Errorf("two rows fit: %d %s", r.StatusCode, r.body)
	}

	e := echo.New()
	srv := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/", nil), httptest.NewRecorder())
	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Errorf("a late error gave %v, want the handler aborted", p)
		}
	}()
	srv.stream(c, "x.csv", "csv", func() error {
		c.Response().Write(bytes.Repeat([]byte("a,b\r\n"), 1000))
		return errors.New("disk on fire")
	})
	t.Error("the late error was not turned into an abort")
}

// The CSV guard also neutralises a formula after ';' or ',' (spreadsheets
// whose locale splits cells there).
func TestSafeCellAfterSeparators(t *testing.T) {
	for in, want := range map[string]string{
		"=1+1":                            "'=1+1",
		"ok;=HYPERLINK(\"x\")":            "ok;'=HYPERLINK(\"x\")",
		"a, -2+3":                         "a, '-2+3",
		"x;;@SUM(A1)":                     "x;;'@SUM(A1)",
		"Mozilla/5.0 (X11; Linux x86_64)": "Mozilla/5.0 (X11; Linux x86_64)",
		"plain":                           "plain",
	} {
		if got := safeCell(in); got != want {
			t.Errorf("safeCell(%q) = %q, want %q", in, got, want)
		}
	}
}
