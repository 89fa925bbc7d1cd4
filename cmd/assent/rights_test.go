package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/assent/assent/store"
)

// Withdrawal and rectification on request, on the file and through a
// server: the records, the audit entry, the export state, verify.
func TestCLISubjectWithdrawAndRectify(t *testing.T) {
	ws, _ := places(t)
	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, append([]string{"subject", "withdraw", "--email", "ann@example.com", "--site", "shop",
				"--purpose", "newsletter", "--reason", "asked by mail on 2026-11-20"}, w.flags...)...)
			var got struct {
				Records []store.Record `json:"records"`
			}
			if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || len(got.Records) != 1 ||
				got.Records[0].Source != "admin" || got.Records[0].Reason != "asked by mail on 2026-11-20" || got.Records[0].Choices["newsletter"] != "denied" {
				t.Fatalf("withdraw: %d %q %s", code, stdout, stderr)
			}
			code, stdout, stderr = runCLI(t, append([]string{"subject", "rectify", "--email", "ann@example.com", "--new-email", "Ann@Example.org",
				"--name", "Ann", "--reason", "moved, asked by letter"}, w.flags...)...)
			if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || len(got.Records) != 1 || got.Records[0].NewEmail != "ann@example.org" ||
				!strings.Contains(stdout, "Art. 17(3)(e)") {
				t.Fatalf("rectify: %d %q %s", code, stdout, stderr)
			}
			var actions []string
			w.read(func(st *store.Store) {
				for _, e := range []string{"ann@example.com", "ann@example.org"} {
					recs, state, err := st.Subject(e)
					if err != nil || len(recs) != 3 || state.Email != "ann@example.org" || state.Purposes["shop"]["newsletter"] != "denied" {
						t.Errorf("look-up by %s: %v %d %+v", e, err, len(recs), state)
					}
				}
				var rows []store.SubjectState
				st.Subjects("shop", store.Query{}, func(s store.SubjectState) error { rows = append(rows, s); return nil })
				if len(rows) != 1 || rows[0].Email != "ann@example.org" {
					t.Errorf("signups rows %+v", rows)
				}
				if rep, err := st.Verify(); err != nil || !rep.OK {
					t.Errorf("verify %+v %v", rep, err)
				}
				st.AuditLog(time.Time{}, time.Time{}, func(e store.AuditEntry) error {
					if e.Action == "withdraw" || e.Action == "rectify" {
						actions = append(actions, e.Action+" "+e.Token)
					}
					return nil
				})
			})
			if !slices.Equal(actions, []string{"withdraw " + w.actor, "rectify " + w.actor}) {
				t.Errorf("audit %v", actions)
			}
			// Bad input: one line on stderr, exit 2 for usage, 1 for a refusal.
			for _, c := range []struct {
				args []string
				code int
				want string
			}{
				{[]string{"subject", "withdraw", "--email", "ann@example.org"}, 2, "--reason"},
				{[]string{"subject", "withdraw", "--reason", "r"}, 2, "--email"},
				{[]string{"subject", "rectify", "--email", "ann@example.org", "--reason", "r"}, 2, "--new-email"},
				{[]string{"subject", "withdraw", "--email", "ann@example.org", "--new-email", "x@example.org", "--reason", "r"}, 2, "withdraw takes"},
				{[]string{"subject", "withdraw", "--visitor-id", "v_1", "--email", "ann@example.org", "--reason", "r"}, 2, "--visitor-id"},
				{[]string{"subject", "withdraw", "--email", "not-an-address", "--reason", "r"}, 1, "email"},
				{[]string{"subject", "withdraw", "--email", "ann@example.org", "--site", "nope", "--reason", "r"}, 1, "nope"},
				{[]string{"subject", "withdraw", "--email", "ann@example.org", "--purpose", "cookies", "--reason", "r"}, 1, "cookies"},
				{[]string{"subject", "withdraw", "--email", "nobody@example.org", "--reason", "r"}, 1, "no records"},
				{[]string{"subject", "rectify", "--email", "ann@example.org", "--new-email", "ANN@example.org", "--reason", "r"}, 1, "same address"},
				{[]string{"subject", "rectify", "--email", "ann@example.org", "--new-email", "ann@example.com", "--reason", "r"}, 1, "already has records"},
				{[]string{"subject", "rectify", "--email", "nobody@example.org", "--new-email", "x@example.org", "--reason", "r"}, 1, "no records"},
			} {
				code, stdout, stderr := runCLI(t, append(c.args, w.flags...)...)
				if code != c.code || stdout != "" || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, c.want) {
					t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d naming %q", c.args, code, stdout, stderr, c.code, c.want)
				}
			}
			w.read(func(st *store.Store) {
				if recs, _, _ := st.Subject("ann@example.org"); len(recs) != 3 {
					t.Errorf("%d records after refused commands, want 3", len(recs))
				}
			})
		})
	}
}
