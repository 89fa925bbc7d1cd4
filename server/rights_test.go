package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/assent/assent/store"
)

// signup makes a real signup through the public API.
func (ts *testServer) signup(email string, choices map[string]bool) {
	ts.t.Helper()
	r := ts.do(http.MethodPost, "/v1/sites/shop/signups", map[string]any{"email": email, "choices": choices}, fromShop)
	if r.StatusCode != 201 {
		ts.t.Fatalf("signup %s: %d %s", email, r.StatusCode, r.body)
	}
}

// signupsCSV is the signups export as rows keyed by the email column.
func (ts *testServer) signupsCSV() map[string]map[string]string {
	ts.t.Helper()
	r := ts.admin(http.MethodGet, "/v1/admin/sites/shop/signups?format=csv", nil)
	if r.StatusCode != 200 {
		ts.t.Fatalf("signups export: %d %s", r.StatusCode, r.body)
	}
	rows := parseCSV(ts.t.(*testing.T), r.body)
	out := map[string]map[string]string{}
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, h := range rows[0] {
			if i < len(row) {
				m[h] = row[i]
			}
		}
		out[m["email"]] = m
	}
	return out
}

func (ts *testServer) verifyOK() {
	ts.t.Helper()
	r := ts.admin(http.MethodGet, "/v1/admin/verify", nil)
	if r.StatusCode != 200 || !strings.Contains(string(r.body), `"ok":true`) {
		ts.t.Fatalf("verify: %d %s", r.StatusCode, r.body)
	}
}

type subjectAnswer struct {
	Email   string             `json:"email"`
	State   store.SubjectState `json:"state"`
	Records []store.Record     `json:"records"`
	Report  store.RightsReport `json:"report"`
}

func (ts *testServer) subject(email string) subjectAnswer {
	ts.t.Helper()
	r := ts.admin(http.MethodGet, "/v1/admin/subjects?email="+email, nil)
	var a subjectAnswer
	if r.StatusCode != 200 || json.Unmarshal(r.body, &a) != nil {
		ts.t.Fatalf("look-up %s: %d %s", email, r.StatusCode, r.body)
	}
	return a
}

// A withdrawal on request turns the purpose off in the signups export,
// keeps the reason in a chained admin record, names the token in the audit
// log, and verify still passes.
func TestWithdrawOnRequestHTTP(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.signup("ann@example.com", map[string]bool{"newsletter": true, "analytics": true})
	ts.signup("bob@example.com", map[string]bool{"newsletter": true})
	if got := ts.signupsCSV()["ann@example.com"]["newsletter"]; got != "granted" {
		t.Fatalf("before: newsletter %q", got)
	}
	r := ts.admin(http.MethodPost, "/v1/admin/subjects/withdraw", map[string]any{
		"email": "Ann@Example.com", "sites": []string{"shop"}, "purposes": []string{"newsletter"}, "reason": "asked by mail on 2026-11-20"})
	if r.StatusCode != 201 {
		t.Fatalf("withdraw: %d %s", r.StatusCode, r.body)
	}
	var got struct{ Records []store.Record }
	if err := json.Unmarshal(r.body, &got); err != nil || len(got.Records) != 1 {
		t.Fatalf("answer %s", r.body)
	}
	rec := got.Records[0]
	if rec.Event != "withdraw" || rec.Source != "admin" || rec.Reason != "asked by mail on 2026-11-20" || rec.Email != "ann@example.com" ||
		!reflectEqual(rec.Choices, map[string]string{"newsletter": "denied"}) || rec.PrevHash == "" {
		t.Fatalf("record %+v", rec)
	}
	rows := ts.signupsCSV()
	if rows["ann@example.com"]["newsletter"] != "denied" || rows["bob@example.com"]["newsletter"] != "granted" {
		t.Fatalf("after: ann %v, bob %v", rows["ann@example.com"], rows["bob@example.com"])
	}
	// The JSON Lines export carries the reason.
	if r := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=jsonl", nil); !strings.Contains(string(r.body), `"reason":"asked by mail on 2026-11-20"`) {
		t.Errorf("consents export lacks the reason: %s", r.body)
	}
	ts.verifyOK()
	var entry *store.AuditEntry
	if err := ts.st.AuditLog(time.Time{}, time.Time{}, func(e store.AuditEntry) error {
		if e.Action == "withdraw" {
			entry = &e
		}
		return nil
	}); err != nil || entry == nil || entry.Token != "test" || strings.Contains(entry.Detail, "ann") {
		t.Fatalf("audit entry %+v %v", entry, err)
	}
	// The report shows when it was given and withdrawn, and by whom.
	a := ts.subject("ann@example.com")
	var news *store.PurposeReport
	for _, s := range a.Report.Sites {
		for i, p := range s.Purposes {
			if s.Site == "shop" && p.Purpose == "newsletter" {
				news = &s.Purposes[i]
			}
		}
	}
	if news == nil || news.State != "denied" || news.GivenAt.IsZero() || !news.WithdrawnAt.Equal(rec.RecordedAt) || news.WithdrawnSource != "admin" ||
		len(a.Report.Requests) != 1 || a.Report.Requests[0].Reason != rec.Reason {
		t.Fatalf("report %+v", a.Report)
	}
}

func reflectEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A rectified address is found by both addresses, exported under the new
// one, keeps the old records as proof, and erasing either erases both.
func TestRectifyHTTP(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.signup("ann@exmaple.com", map[string]bool{"newsletter": true})
	before := ts.subject("ann@exmaple.com")
	r := ts.admin(http.MethodPost, "/v1/admin/subjects/rectify", map[string]any{
		"email": "ann@exmaple.com", "new_email": "ann@example.com", "name": "Ann Example", "reason": "typo, asked by phone on 2026-11-21"})
	if r.StatusCode != 201 {
		t.Fatalf("rectify: %d %s", r.StatusCode, r.body)
	}
	var ans struct {
		Email, NewEmail string `json:"-"`
		Records         []store.Record
		Kept, Reason    string
	}
	if err := json.Unmarshal(r.body, &ans); err != nil || len(ans.Records) != 1 || !strings.Contains(ans.Reason, "Art. 17(3)(e)") {
		t.Fatalf("answer %s", r.body)
	}
	rec := ans.Records[0]
	if rec.Event != "rectify" || rec.Source != "admin" || rec.Email != "ann@exmaple.com" || rec.NewEmail != "ann@example.com" || rec.Name != "Ann Example" {
		t.Fatalf("record %+v", rec)
	}
	for _, e := range []string{"ann@exmaple.com", "ann@example.com"} {
		a := ts.subject(e)
		if a.Email != "ann@example.com" || len(a.Records) != len(before.Records)+1 || a.Records[0].ID != before.Records[0].ID ||
			a.Records[0].Email != "ann@exmaple.com" || a.State.Purposes["shop"]["newsletter"] != "granted" {
			t.Fatalf("look-up by %s: %+v", e, a)
		}
		if !slices.Contains(a.Report.Addresses, "ann@exmaple.com") || a.Report.Sites[0].RectifiedAt.IsZero() {
			t.Fatalf("report by %s: %+v", e, a.Report)
		}
	}
	rows := ts.signupsCSV()
	if _, old := rows["ann@exmaple.com"]; old || rows["ann@example.com"]["newsletter"] != "granted" || len(rows) != 1 {
		t.Fatalf("signups export %v", rows)
	}
	ts.verifyOK()
	// A withdrawal through the old address lands under the new one.
	if r := ts.admin(http.MethodPost, "/v1/admin/subjects/withdraw", map[string]any{"email": "ann@exmaple.com", "reason": "letter"}); r.StatusCode != 201 ||
		!strings.Contains(string(r.body), `"email":"ann@example.com"`) {
		t.Fatalf("withdraw after rectify: %d %s", r.StatusCode, r.body)
	}
	if got := ts.signupsCSV()["ann@example.com"]["newsletter"]; got != "denied" {
		t.Fatalf("newsletter %q after withdrawal", got)
	}
	ts.verifyOK()
	// Erasing the old address erases the person; both are suppressed.
	if r := ts.admin(http.MethodDelete, "/v1/admin/subjects?email=ann@exmaple.com", nil); r.StatusCode != 200 {
		t.Fatalf("erase: %d %s", r.StatusCode, r.body)
	}
	for _, e := range []string{"ann@exmaple.com", "ann@example.com"} {
		r := ts.do(http.MethodPost, "/v1/sites/shop/signups", map[string]any{"email": e, "choices": map[string]bool{"newsletter": true}}, fromShop)
		if r.StatusCode != 409 || r.errorCode() != "suppressed" {
			t.Errorf("signup of %s after erasure: %d %s", e, r.StatusCode, r.body)
		}
	}
	if r := ts.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=jsonl", nil); strings.Contains(string(r.body), "ann@") {
		t.Errorf("an address survived erasure: %s", r.body)
	}
	ts.verifyOK()
}

// Bad input gets a clear 4xx JSON error and stores nothing.
func TestRightsBadInput(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.signup("ann@example.com", map[string]bool{"newsletter": true})
	ts.signup("bob@example.com", map[string]bool{"newsletter": true})
	ts.signup("gone@example.com", map[string]bool{"newsletter": true})
	if r := ts.admin(http.MethodDelete, "/v1/admin/subjects?email=gone@example.com", nil); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	n := ts.count("shop")
	const w, rc = "/v1/admin/subjects/withdraw", "/v1/admin/subjects/rectify"
	cases := []struct {
		path   string
		body   any
		status int
		code   string
	}{
		{w, `{"email":`, 400, "invalid_json"},
		{w, `[1]`, 400, "invalid_json"},
		{w, `{"email":"ann@example.com","reason":"r"} {}`, 400, "invalid_json"},
		{w, `{"email":"ann@example.com","reason":7}`, 400, "invalid_json"},
		{w, `{"email":"ann@example.com","purpose":"newsletter","reason":"r"}`, 422, "invalid_field"},
		{w, `{"email":"ann@example.com"}`, 422, "invalid_field"},
		{w, `{"email":"ann@example.com","reason":"   "}`, 422, "invalid_field"},
		{w, `{"email":"not-an-address","reason":"r"}`, 422, "invalid_email"},
		{w, `{"email":"","reason":"r"}`, 422, "invalid_email"},
		{w, `{"email":"ann@example.com","sites":["nope"],"reason":"r"}`, 422, "unknown_site"},
		{w, `{"email":"ann@example.com","purposes":["cookies"],"reason":"r"}`, 422, "unknown_purpose"},
		{w, `{"email":"ann@example.com","purposes":["necessary"],"reason":"r"}`, 422, "invalid_field"},
		{w, `{"email":"nobody@example.com","reason":"r"}`, 404, "not_found"},
		{w, `{"email":"gone@example.com","reason":"r"}`, 409, "suppressed"},
		{w, `{"email":"ann@example.com","reason":"` + strings.Repeat("x", 17<<10) + `"}`, 413, "body_too_large"},
		{rc, `{"email":"ann@example.com","new_email":"ann@example.com","reason":"r"}`, 422, "invalid_field"},
		{rc, `{"email":"ann@example.com","new_email":" ANN@example.com","reason":"r"}`, 422, "invalid_field"},
		{rc, `{"email":"ann@example.com","new_email":"ann@","reason":"r"}`, 422, "invalid_email"},
		{rc, `{"email":"ann@example.com","new_email":"Ann <x@example.com>","reason":"r"}`, 422, "invalid_email"},
		{rc, `{"email":"ann@example.com","new_email":"x@example.com"}`, 422, "invalid_field"},
		{rc, `{"email":"ann@example.com","new_email":"x@example.com","name":"` + strings.Repeat("n", 201) + `","reason":"r"}`, 422, "invalid_field"},
		{rc, `{"email":"ann@example.com","new_email":"bob@example.com","reason":"r"}`, 409, "subject_exists"},
		{rc, `{"email":"ann@example.com","new_email":"gone@example.com","reason":"r"}`, 409, "suppressed"},
		{rc, `{"email":"nobody@example.com","new_email":"x@example.com","reason":"r"}`, 404, "not_found"},
		{rc, `{"email":"ann@example.com","new_email":"x@example.com","reason":"r","sites":["shop"]}`, 422, "invalid_field"},
	}
	for _, c := range cases {
		r := ts.admin(http.MethodPost, c.path, c.body)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if r.StatusCode != c.status || json.Unmarshal(r.body, &e) != nil || e.Error.Code != c.code || e.Error.Message == "" {
			t.Errorf("%s %.80v: %d %s, want %d %s", c.path, c.body, r.StatusCode, truncate(string(r.body), 200), c.status, c.code)
		}
	}
	if got := ts.count("shop"); got != n {
		t.Errorf("%d records after bad requests, want %d", got, n)
	}
	if r := ts.do(http.MethodGet, "/healthz", nil, nil); r.StatusCode != 200 {
		t.Errorf("healthz %d", r.StatusCode)
	}
}

// Viewers may read the rights report but not record a withdrawal or a
// rectification; nothing is stored.
func TestViewerCannotWithdrawOrRectify(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.signup("ann@example.com", map[string]bool{"newsletter": true})
	n := ts.count("shop")
	viewerTok, err := ts.st.CreateTokenRole("reader", store.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []map[string]string{{"Authorization": "Bearer " + viewerTok}, ts.userHeaders("dpo@example.com", store.RoleViewer)} {
		for path, body := range map[string]string{
			"/v1/admin/subjects/withdraw": `{"email":"ann@example.com","reason":"r"}`,
			"/v1/admin/subjects/rectify":  `{"email":"ann@example.com","new_email":"x@example.com","reason":"r"}`,
		} {
			if r := ts.do(http.MethodPost, path, body, h); r.StatusCode != 403 || r.errorCode() != "forbidden" {
				t.Errorf("viewer %s: %d %s", path, r.StatusCode, r.body)
			}
		}
		if r := ts.do(http.MethodGet, "/v1/admin/subjects?email=ann@example.com", nil, h); r.StatusCode != 200 || !strings.Contains(string(r.body), `"report":{`) {
			t.Errorf("viewer report: %d %s", r.StatusCode, r.body)
		}
	}
	if got := ts.count("shop"); got != n {
		t.Errorf("%d records, want %d", got, n)
	}
	// An admin console user's withdrawal names the user in the audit log.
	h := ts.userHeaders("boss@example.com", store.RoleAdmin)
	if r := ts.do(http.MethodPost, "/v1/admin/subjects/withdraw", `{"email":"ann@example.com","reason":"r"}`, h); r.StatusCode != 201 {
		t.Fatalf("admin user: %d %s", r.StatusCode, r.body)
	}
	found := false
	ts.st.AuditLog(time.Time{}, time.Time{}, func(e store.AuditEntry) error {
		found = found || (e.Action == "withdraw" && e.Token == "user:boss@example.com")
		return nil
	})
	if !found {
		t.Error("no audit entry naming the console user")
	}
}
