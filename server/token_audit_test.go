package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/assent/assent/store"
)

// A token made without a name is answered, listed and audited under the
// name the ledger gave it, so that the audit entry names a token one can
// find and revoke.
func TestUnnamedTokenIsAuditedUnderItsName(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, body := range []any{map[string]string{"role": "viewer"}, nil} {
		r := ts.admin(http.MethodPost, "/v1/admin/tokens", body)
		var made struct{ Name, Role, Token string }
		if r.StatusCode != http.StatusCreated || json.Unmarshal(r.body, &made) != nil || made.Token == "" {
			t.Fatalf("create: %d %s", r.StatusCode, r.body)
		}
		if made.Name == "" {
			t.Fatalf("the answer names no token: %s", r.body)
		}
		list := ts.admin(http.MethodGet, "/v1/admin/tokens", nil)
		if !strings.Contains(string(list.body), `"`+made.Name+`"`) {
			t.Errorf("token %q not in the list: %s", made.Name, list.body)
		}
		audit := ts.admin(http.MethodGet, "/v1/admin/audit", nil)
		want := "token " + made.Name + " role " + made.Role
		found := false
		for _, e := range parseJSONL[store.AuditEntry](t, audit.body) {
			if e.Action == "token_create" && e.Detail == want {
				found = true
			}
			if e.Action == "token_create" && strings.HasPrefix(e.Detail, "token  ") {
				t.Errorf("audit entry without a name: %q", e.Detail)
			}
		}
		if !found {
			t.Errorf("no token_create %q in the audit log:\n%s", want, audit.body)
		}
		if r := ts.admin(http.MethodDelete, "/v1/admin/tokens/"+made.Name, nil); r.StatusCode != http.StatusNoContent {
			t.Errorf("revoke %s by the audited name: %d %s", made.Name, r.StatusCode, r.body)
		}
	}
}
