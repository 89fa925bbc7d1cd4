package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/assent/assent/store"
)

// routeDecisions is who may call each route: "public" (no credentials),
// "viewer" (an admin token or console user of either role) or "admin".
// A route the server has and this table lacks fails the test: whoever adds
// a route decides here, and in routes.go, who may call it.
var routeDecisions = map[string]string{
	"GET /w/:script":                                         "public",
	"GET /w/:site/consent-mode.js":                           "public",
	"GET /v1/sites/:site/decision":                           "public",
	"POST /v1/sites/:site/consents":                          "public",
	"POST /v1/sites/:site/signups":                           "public",
	"OPTIONS /v1/sites/:site/consents":                       "public",
	"OPTIONS /v1/sites/:site/signups":                        "public",
	"GET /u/:token":                                          "public",
	"POST /u/:token":                                         "public",
	"GET /c/:token":                                          "public",
	"POST /v1/confirm":                                       "public",
	"POST /v1/unsubscribe":                                   "public",
	"GET /.well-known/jwks.json":                             "public",
	"GET /healthz":                                           "public",
	"GET /metrics":                                           "public",
	"GET /admin":                                             "public",
	"GET /admin/":                                            "public",
	"GET /admin/console.js":                                  "public",
	"GET /v1/admin/sites":                                    "viewer",
	"POST /v1/admin/sites":                                   "admin",
	"GET /v1/admin/sites/:site":                              "viewer",
	"PUT /v1/admin/sites/:site":                              "admin",
	"GET /v1/admin/sites/:site/consents":                     "viewer",
	"GET /v1/admin/sites/:site/signups":                      "viewer",
	"GET /v1/admin/sites/:site/mail":                         "viewer",
	"GET /v1/admin/sites/:site/rejected-origins":             "viewer",
	"GET /v1/admin/subjects":                                 "viewer",
	"DELETE /v1/admin/subjects":                              "admin",
	"POST /v1/admin/subjects/withdraw":                       "admin",
	"POST /v1/admin/subjects/rectify":                        "admin",
	"GET /v1/admin/notices/:hash":                            "viewer",
	"GET /v1/admin/verify":                                   "viewer",
	"GET /v1/admin/audit":                                    "viewer",
	"GET /v1/admin/whoami":                                   "viewer",
	"GET /v1/admin/texts":                                    "viewer",
	"GET /v1/admin/backup":                                   "admin",
	"GET /v1/admin/tokens":                                   "admin",
	"POST /v1/admin/tokens":                                  "admin",
	"DELETE /v1/admin/tokens/:name":                          "admin",
	"GET /v1/admin/users":                                    "admin",
	"POST /v1/admin/users":                                   "admin",
	"DELETE /v1/admin/users/:email":                          "admin",
	"POST /admin/login":                                      "public",
	"POST /admin/logout":                                     "session",
	"POST /admin/password":                                   "session",
	"GET /v1/admin/webhooks":                                 "admin",
	"POST /v1/admin/webhooks":                                "admin",
	"DELETE /v1/admin/webhooks/:id":                          "admin",
	"GET /v1/admin/webhooks/:id/deliveries":                  "admin",
	"POST /v1/admin/webhooks/:id/test":                       "admin",
	"POST /v1/admin/webhooks/:id/deliveries/:delivery/retry": "admin",
}

// rolePath fills a route's parameters with values that reach the handler.
func rolePath(path string) string {
	r := strings.NewReplacer(":site", "shop", ":name", "nobody", ":hash", "sha256:"+strings.Repeat("0", 64),
		":token", "x", ":script", "shop.js", ":id", "nobody", ":email", "nobody%40example.com")
	return r.Replace(path) + "?email=nobody%40example.com"
}

// Every route of the router has a decision, and every admin route lets in
// exactly the roles its decision names, for tokens and for console users.
func TestEveryRouteHasARoleDecision(t *testing.T) {
	ts := newTestServer(t, nil)
	viewerTok, err := ts.st.CreateTokenRole("reader", store.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	creds := map[string]map[string]string{ // role/kind -> headers
		"admin token":  {"Authorization": "Bearer " + ts.token},
		"viewer token": {"Authorization": "Bearer " + viewerTok},
		"admin user":   ts.userHeaders("boss@example.com", store.RoleAdmin),
		"viewer user":  ts.userHeaders("dpo@example.com", store.RoleViewer),
	}
	seen := map[string]bool{}
	for _, rt := range ts.srv.echo.Routes() {
		if rt.Method == "echo_route_not_found" {
			continue // the admin group's catch-all 404
		}
		key := rt.Method + " " + rt.Path
		seen[key] = true
		want, ok := routeDecisions[key]
		if !ok {
			t.Errorf("route %s has no role decision: add it through read/write in routes.go, and to routeDecisions", key)
			continue
		}
		if want == "public" {
			if strings.HasPrefix(rt.Path, "/v1/admin") {
				t.Errorf("%s is an admin route but marked public", key)
			}
			continue
		}
		if want == "session" { // a signed-in console user's own business
			for who, h := range creds {
				if h["Cookie"] != "" { // a session of its own: signing out ends it
					h = ts.newSession(map[string]string{"admin user": "boss@example.com", "viewer user": "dpo@example.com"}[who])
				}
				r := ts.do(rt.Method, rolePath(rt.Path), nil, h)
				if strings.HasSuffix(who, "token") != (r.StatusCode == 401) {
					t.Errorf("%s as %s: %d %s", key, who, r.StatusCode, truncate(string(r.body), 200))
				}
			}
			continue
		}
		if got := ts.srv.routeRoles[key]; string(got) != want {
			t.Errorf("%s: routes.go gives role %q, the table %q", key, got, want)
		}
		for who, h := range creds {
			r := ts.do(rt.Method, rolePath(rt.Path), nil, h)
			r.body = []byte(truncate(string(r.body), 200))
			allowed := want == "viewer" || strings.HasPrefix(who, "admin")
			switch {
			case r.StatusCode == 401:
				t.Errorf("%s as %s: 401 %s", key, who, r.body)
			case allowed && r.StatusCode == 403:
				t.Errorf("%s as %s: 403, want let through: %s", key, who, r.body)
			case !allowed && (r.StatusCode != 403 || r.errorCode() != "forbidden"):
				t.Errorf("%s as %s: %d %s, want 403 forbidden", key, who, r.StatusCode, r.body)
			}
		}
	}
	for key := range routeDecisions {
		if !seen[key] {
			t.Errorf("routeDecisions names %s, which the server does not have", key)
		}
	}
}

// userHeaders signs a console user in straight through the ledger and
// gives the headers of a console request: the cookie and the CSRF token.
func (ts *testServer) userHeaders(email string, role store.Role) map[string]string {
	ts.t.Helper()
	if _, err := ts.st.CreateUser(email, role, "correct horse battery"); err != nil {
		ts.t.Fatal(err)
	}
	return ts.newSession(email)
}

// newSession signs an existing console user in once more.
func (ts *testServer) newSession(email string) map[string]string {
	ts.t.Helper()
	id, ss, err := ts.st.NewSession(email, sessionTTL)
	if err != nil {
		ts.t.Fatal(err)
	}
	return map[string]string{"Cookie": sessionCookie + "=" + id, "X-CSRF-Token": ss.CSRF}
}

// A viewer cannot erase, and the person's records are still there.
func TestViewerCannotErase(t *testing.T) {
	ts := newTestServer(t, nil)
	recs := seed(t, ts.st)
	email := ""
	for _, r := range recs {
		if r.Email != "" {
			email = r.Email
			break
		}
	}
	viewerTok, _ := ts.st.CreateTokenRole("reader", store.RoleViewer)
	before, _, _ := ts.st.Subject(email)
	for _, h := range []map[string]string{{"Authorization": "Bearer " + viewerTok}, ts.userHeaders("dpo@example.com", store.RoleViewer)} {
		r := ts.do(http.MethodDelete, "/v1/admin/subjects?email="+email, nil, h)
		if r.StatusCode != 403 || r.errorCode() != "forbidden" {
			t.Errorf("viewer erase: %d %s", r.StatusCode, r.body)
		}
		if r := ts.do(http.MethodGet, "/v1/admin/subjects?email="+email, nil, h); r.StatusCode != 200 {
			t.Errorf("viewer look-up: %d %s", r.StatusCode, r.body)
		}
	}
	after, _, _ := ts.st.Subject(email)
	if len(before) == 0 || len(after) != len(before) || after[0].Email != email {
		t.Errorf("records before %d, after %d", len(before), len(after))
	}
}

// Tokens get a role; the last admin cannot be revoked, not even by itself;
// the audit log names the token.
func TestTokenRoles(t *testing.T) {
	ts := newTestServer(t, nil)
	r := ts.admin(http.MethodPost, "/v1/admin/tokens", map[string]string{"name": "crm", "role": "viewer"})
	var tok struct{ Name, Role, Token string }
	if r.StatusCode != 201 || json.Unmarshal(r.body, &tok) != nil || tok.Role != "viewer" {
		t.Fatalf("create viewer: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodPost, "/v1/admin/tokens", map[string]string{"name": "ops"}); r.StatusCode != 201 || !strings.Contains(string(r.body), `"role":"admin"`) {
		t.Errorf("default role: %d %s", r.StatusCode, r.body)
	}
	for _, bad := range []any{map[string]string{"name": "x", "role": "root"}, map[string]any{"name": "y", "role": 1}, `{"name":"z","role":"Admin"}`} {
		if r := ts.admin(http.MethodPost, "/v1/admin/tokens", bad); r.StatusCode/100 != 4 || r.errorCode() == "" {
			t.Errorf("bad role %v: %d %s", bad, r.StatusCode, r.body)
		}
	}
	var list []store.Token
	if r := ts.admin(http.MethodGet, "/v1/admin/tokens", nil); json.Unmarshal(r.body, &list) != nil || len(list) != 3 {
		t.Fatalf("list: %s", r.body)
	}
	roles := map[string]store.Role{}
	for _, x := range list {
		roles[x.Name] = x.Role
	}
	if roles["test"] != store.RoleAdmin || roles["crm"] != store.RoleViewer || roles["ops"] != store.RoleAdmin {
		t.Errorf("roles %v", roles)
	}
	viewer := map[string]string{"Authorization": "Bearer " + tok.Token}
	if r := ts.do(http.MethodPost, "/v1/admin/tokens", map[string]string{"name": "mine"}, viewer); r.StatusCode != 403 {
		t.Errorf("viewer made a token: %d %s", r.StatusCode, r.body)
	}
	// Two admins: one may go. Then the last one may not, not even itself.
	if r := ts.admin(http.MethodDelete, "/v1/admin/tokens/ops", nil); r.StatusCode != 204 {
		t.Fatalf("revoke ops: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodDelete, "/v1/admin/tokens/test", nil); r.StatusCode != 409 || r.errorCode() != "last_admin" {
		t.Errorf("revoke the last admin (itself): %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodGet, "/v1/admin/sites", nil); r.StatusCode != 200 {
		t.Errorf("the last admin token stopped working: %d", r.StatusCode)
	}
	// A viewer token is not an admin: it can be revoked while one admin stays.
	if r := ts.admin(http.MethodDelete, "/v1/admin/tokens/crm", nil); r.StatusCode != 204 {
		t.Errorf("revoke viewer: %d %s", r.StatusCode, r.body)
	}
	// With an admin user, the last admin token may go: an admin remains.
	if _, err := ts.st.CreateUser("boss@example.com", store.RoleAdmin, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := ts.st.RevokeToken("test"); err != nil {
		t.Errorf("revoke the last token beside an admin user: %v", err)
	}
	if err := ts.st.DeleteUser("boss@example.com"); !errors.Is(err, store.ErrLastAdmin) {
		t.Errorf("delete the last admin user: %v", err)
	}
	// The audit log names who did what.
	var names []string
	ts.st.AuditLog(time.Time{}, time.Time{}, func(e store.AuditEntry) error {
		if e.Action == "token_create" || e.Action == "token_revoke" {
			names = append(names, e.Token+" "+e.Action+" "+e.Detail)
		}
		return nil
	})
	if len(names) < 3 || names[0] != "test token_create token crm role viewer" {
		t.Errorf("audit: %q", names)
	}
}
