package server

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/assent/assent/store"
)

const testPassword = "correct horse battery"

// login posts the sign-in form as a browser on the console's page would.
func (ts *testServer) login(email, password string, headers map[string]string) response {
	ts.t.Helper()
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for k, v := range headers {
		h[k] = v
	}
	return ts.do(http.MethodPost, "/admin/login", url.Values{"email": {email}, "password": {password}}.Encode(), h)
}

func sessionOf(t *testing.T, r response) *http.Cookie {
	t.Helper()
	for _, c := range r.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie: %d %v %s", sessionCookie, r.StatusCode, r.Header, r.body)
	return nil
}

// consoleHeaders are a signed-in browser's: the cookie, and the CSRF token
// the console read from whoami.
func (ts *testServer) consoleHeaders(cookie *http.Cookie) map[string]string {
	ts.t.Helper()
	h := map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}
	r := ts.do(http.MethodGet, "/v1/admin/whoami", nil, h)
	var who struct{ Kind, Name, Role, CSRF string }
	if r.StatusCode != 200 || json.Unmarshal(r.body, &who) != nil || who.Kind != "user" || who.CSRF == "" {
		ts.t.Fatalf("whoami: %d %s", r.StatusCode, r.body)
	}
	h["X-CSRF-Token"] = who.CSRF
	return h
}

func TestSignInSessionAndCSRF(t *testing.T) {
	ts := newTestServer(t, nil)
	if _, err := ts.st.CreateUser("Ann@Example.com", store.RoleAdmin, testPassword); err != nil {
		t.Fatal(err)
	}
	// Wrong password and unknown address: the same answer.
	bad := ts.login("ann@example.com", "wrong password!", nil)
	unknown := ts.login("nobody@example.com", testPassword, nil)
	if bad.StatusCode != 401 || unknown.StatusCode != 401 || string(bad.body) != string(unknown.body) || len(bad.Cookies())+len(unknown.Cookies()) != 0 {
		t.Errorf("wrong password %d %s; unknown address %d %s", bad.StatusCode, bad.body, unknown.StatusCode, unknown.body)
	}
	for _, body := range []string{"", "email=ann%40example.com", "password=" + url.QueryEscape(testPassword), "%zz", strings.Repeat("a", 20<<10)} {
		r := ts.do(http.MethodPost, "/admin/login", body, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		if r.StatusCode/100 != 4 || r.errorCode() == "" || len(r.Cookies()) != 0 {
			t.Errorf("login body %.40q: %d %s", body, r.StatusCode, r.body)
		}
	}
	if r := ts.login("ann@example.com", testPassword, map[string]string{"Origin": "https://evil.example"}); r.StatusCode != 403 || len(r.Cookies()) != 0 {
		t.Errorf("cross-site login: %d %s", r.StatusCode, r.body)
	}

	ts.srv.logins.succeed([]string{"addr 127.0.0.1"}) // the bad tries above count as failures of this client
	r := ts.login("ANN@example.com ", testPassword, map[string]string{"Origin": ts.url})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/admin/" {
		t.Fatalf("login: %d %q %s", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	ck := sessionOf(t, r)
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/" || ck.MaxAge <= 0 {
		t.Errorf("cookie %+v", ck)
	}
	h := ts.consoleHeaders(ck)

	// Reads need the cookie only; changes also the CSRF token.
	if r := ts.do(http.MethodGet, "/v1/admin/sites/shop", nil, map[string]string{"Cookie": h["Cookie"]}); r.StatusCode != 200 {
		t.Errorf("read with cookie: %d %s", r.StatusCode, r.body)
	}
	site := testSite()
	site.Name = "Changed by Ann"
	for _, csrf := range []string{"", "wrong", h["X-CSRF-Token"] + "x"} {
		r := ts.do(http.MethodPut, "/v1/admin/sites/shop", site, map[string]string{"Cookie": h["Cookie"], "X-CSRF-Token": csrf})
		if r.StatusCode != 403 || r.errorCode() != "csrf" {
			t.Errorf("change with CSRF token %q: %d %s", csrf, r.StatusCode, r.body)
		}
	}
	if got, _ := ts.st.Site("shop"); got.Name == site.Name {
		t.Error("a change without the CSRF token was stored")
	}
	if r := ts.do(http.MethodPut, "/v1/admin/sites/shop", site, h); r.StatusCode != 200 {
		t.Errorf("change with the CSRF token: %d %s", r.StatusCode, r.body)
	}
	// The audit log names the user.
	var actors []string
	ts.st.AuditLog(time.Time{}, time.Time{}, func(e store.AuditEntry) error {
		if e.Action == "site_update" || e.Action == "sign_in" {
			actors = append(actors, e.Action+" "+e.Token)
		}
		return nil
	})
	if strings.Join(actors, ",") != "sign_in user:ann@example.com,site_update user:ann@example.com" {
		t.Errorf("audit actors %q", actors)
	}

	// Sign out: 303, the cookie is cleared and the session is gone.
	if r := ts.do(http.MethodPost, "/admin/logout", nil, map[string]string{"Cookie": h["Cookie"]}); r.StatusCode != 403 {
		t.Errorf("logout without CSRF: %d", r.StatusCode)
	}
	out := ts.do(http.MethodPost, "/admin/logout", nil, h)
	if out.StatusCode != http.StatusSeeOther || sessionOf(t, out).MaxAge >= 0 {
		t.Errorf("logout: %d %v", out.StatusCode, out.Cookies())
	}
	if r := ts.do(http.MethodGet, "/v1/admin/sites", nil, h); r.StatusCode != 401 {
		t.Errorf("after logout: %d", r.StatusCode)
	}
}

func TestSessionCookieSecureUnderHTTPS(t *testing.T) {
	ts := newTestServer(t, &Config{PublicURL: "https://consent.example.com"})
	ts.st.CreateUser("ann@example.com", store.RoleViewer, testPassword)
	if ck := sessionOf(t, ts.login("ann@example.com", testPassword, nil)); !ck.Secure {
		t.Errorf("cookie under https: %+v", ck)
	}
}

// After freeFailures wrong passwords for one address, even the right one
// must wait, and the answer says how long.
func TestSignInSlowedAfterFailures(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.st.CreateUser("ann@example.com", store.RoleAdmin, testPassword)
	for i := 0; i < freeFailures; i++ {
		if r := ts.login("ann@example.com", "not the password", nil); r.StatusCode != 401 {
			t.Fatalf("failure %d: %d", i+1, r.StatusCode)
		}
	}
	r := ts.login("ann@example.com", testPassword, nil)
	if r.StatusCode != 429 || r.errorCode() != "too_many_attempts" || r.Header.Get("Retry-After") == "" || len(r.Cookies()) != 0 {
		t.Errorf("after %d failures: %d %q %s", freeFailures, r.StatusCode, r.Header.Get("Retry-After"), r.body)
	}
	// An unknown address is slowed down the same way.
	for i := 0; i < freeFailures; i++ {
		ts.srv.logins.succeed([]string{"addr 127.0.0.1"})
		ts.login("ghost@example.com", "not the password", nil)
	}
	ts.srv.logins.succeed([]string{"addr 127.0.0.1"})
	if r := ts.login("ghost@example.com", "not the password", nil); r.StatusCode != 429 {
		t.Errorf("unknown address after failures: %d", r.StatusCode)
	}
}

func TestLoginLimiterBacksOff(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	l := newLoginLimiter()
	l.now = func() time.Time { return now }
	keys := []string{"email a@example.com", "addr " + loginAddr(netip.MustParseAddr("2001:db8::1"))}
	for i := 0; i < freeFailures-1; i++ {
		l.fail(keys)
		if w := l.wait(keys); w != 0 {
			t.Fatalf("after %d failures: wait %v", i+1, w)
		}
	}
	var waits []time.Duration
	for i := 0; i < 12; i++ {
		l.fail(keys)
		waits = append(waits, l.wait(keys))
	}
	if waits[0] != time.Second || waits[1] != 2*time.Second || waits[4] != 16*time.Second || waits[11] != maxLoginWait {
		t.Errorf("waits %v", waits)
	}
	// The same /64 is the same client.
	if w := l.wait([]string{"addr " + loginAddr(netip.MustParseAddr("2001:db8::ffff"))}); w != maxLoginWait {
		t.Errorf("another address of the /64: %v", w)
	}
	now = now.Add(maxLoginWait)
	if w := l.wait(keys); w != 0 {
		t.Errorf("after the wait: %v", w)
	}
	l.succeed(keys)
	l.fail(keys)
	if w := l.wait(keys); w != 0 {
		t.Errorf("a success starts over: %v", w)
	}
}

func TestPasswordChange(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.st.CreateUser("ann@example.com", store.RoleViewer, testPassword)
	h := ts.consoleHeaders(sessionOf(t, ts.login("ann@example.com", testPassword, nil)))
	other := ts.consoleHeaders(sessionOf(t, ts.login("ann@example.com", testPassword, nil)))
	const newPassword = "a much longer passphrase"
	for _, tc := range []struct {
		body any
		code int
	}{
		{map[string]string{"current": "wrong", "new": newPassword}, 422},
		{map[string]string{"current": testPassword, "new": "short"}, 422},
		{map[string]any{"current": testPassword, "new": 12}, 400},
		{"{", 400},
	} {
		if r := ts.do(http.MethodPost, "/admin/password", tc.body, h); r.StatusCode != tc.code || r.errorCode() == "" {
			t.Errorf("password change %v: %d %s", tc.body, r.StatusCode, r.body)
		}
	}
	if r := ts.do(http.MethodPost, "/admin/password", map[string]string{"current": testPassword, "new": newPassword}, map[string]string{"Cookie": h["Cookie"]}); r.StatusCode != 403 {
		t.Errorf("without CSRF: %d", r.StatusCode)
	}
	r := ts.do(http.MethodPost, "/admin/password", map[string]string{"current": testPassword, "new": newPassword}, h)
	var got struct{ CSRF string }
	if r.StatusCode != 200 || json.Unmarshal(r.body, &got) != nil || got.CSRF == "" {
		t.Fatalf("change: %d %s", r.StatusCode, r.body)
	}
	// This browser has a new session; every other session has ended.
	fresh := map[string]string{"Cookie": sessionCookie + "=" + sessionOf(t, r).Value, "X-CSRF-Token": got.CSRF}
	if r := ts.do(http.MethodGet, "/v1/admin/sites", nil, fresh); r.StatusCode != 200 {
		t.Errorf("new session: %d", r.StatusCode)
	}
	for _, old := range []map[string]string{h, other} {
		if r := ts.do(http.MethodGet, "/v1/admin/sites", nil, old); r.StatusCode != 401 {
			t.Errorf("old session: %d", r.StatusCode)
		}
	}
	if r := ts.login("ann@example.com", testPassword, nil); r.StatusCode != 401 {
		t.Errorf("old password: %d", r.StatusCode)
	}
	if r := ts.login("ann@example.com", newPassword, nil); r.StatusCode != 303 {
		t.Errorf("new password: %d", r.StatusCode)
	}
}

func TestUsersAPI(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, tc := range []struct {
		body any
		code int
	}{
		{map[string]string{"email": "dpo@example.com", "role": "viewer", "password": testPassword}, 201},
		{map[string]string{"email": "DPO@example.com", "role": "viewer", "password": testPassword}, 409},
		{map[string]string{"email": "boss@example.com", "password": testPassword}, 201},
		{map[string]string{"email": "x@example.com", "role": "owner", "password": testPassword}, 422},
		{map[string]string{"email": "not an address", "password": testPassword}, 422},
		{map[string]string{"email": "y@example.com", "password": "eleven char"}, 422},
		{map[string]any{"email": "z@example.com", "password": 123456789012}, 400},
	} {
		if r := ts.admin(http.MethodPost, "/v1/admin/users", tc.body); r.StatusCode != tc.code {
			t.Errorf("create %v: %d %s", tc.body, r.StatusCode, r.body)
		} else if tc.code == 201 && strings.Contains(string(r.body), "argon2") {
			t.Errorf("the hash left the server: %s", r.body)
		}
	}
	var users []store.User
	if r := ts.admin(http.MethodGet, "/v1/admin/users", nil); json.Unmarshal(r.body, &users) != nil || len(users) != 2 ||
		users[0].Email != "boss@example.com" || users[0].Role != store.RoleAdmin || users[1].Role != store.RoleViewer {
		t.Errorf("list: %s", r.body)
	}
	if r := ts.admin(http.MethodDelete, "/v1/admin/users/nobody%40example.com", nil); r.StatusCode != 404 {
		t.Errorf("delete unknown: %d", r.StatusCode)
	}
	// The last admin: the token and boss. Boss may go, then the token may not.
	if r := ts.admin(http.MethodDelete, "/v1/admin/users/boss%40example.com", nil); r.StatusCode != 204 {
		t.Errorf("delete boss: %d %s", r.StatusCode, r.body)
	}
	if r := ts.admin(http.MethodDelete, "/v1/admin/tokens/test", nil); r.StatusCode != 409 {
		t.Errorf("revoke the last admin: %d %s", r.StatusCode, r.body)
	}
}
