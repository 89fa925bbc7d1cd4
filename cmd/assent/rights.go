package main

import (
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/assent/assent/store"
	"github.com/assent/assent/webhook"
)

// subjectRights runs `assent subject withdraw` and `assent subject
// rectify`: requests a person made to an admin by mail, phone or letter,
// recorded on the ledger file (audit actor "cli") or through --server.
func subjectRights(ctx context.Context, verb string, f *flags, stdout io.Writer) error {
	for _, n := range []string{"visitor-id", "receipt"} {
		if f.str(n) != "" {
			return usageError{"subject " + verb + " takes --email, not --" + n}
		}
	}
	var body any
	switch verb {
	case "withdraw":
		if f.str("new-email") != "" || f.str("name") != "" {
			return usageError{"subject withdraw takes --email, --site, --purpose and --reason"}
		}
		body = store.Withdrawal{Email: f.str("email"), Sites: list(f.str("site")), Purposes: list(f.str("purpose")), Reason: f.str("reason")}
	default:
		if f.str("site") != "" || f.str("purpose") != "" {
			return usageError{"subject rectify takes --email, --new-email, --name and --reason"}
		}
		body = store.Rectification{Email: f.str("email"), NewEmail: f.str("new-email"), Name: f.str("name"), Reason: f.str("reason")}
	}
	if f.str("email") == "" || f.str("reason") == "" || (verb == "rectify" && f.str("new-email") == "") {
		return usageError{map[string]string{
			"withdraw": "want: assent subject withdraw --email ADDRESS [--site ID] [--purpose ID] --reason TEXT",
			"rectify":  "want: assent subject rectify --email OLD --new-email NEW [--name NAME] --reason TEXT",
		}[verb]}
	}
	l, err := openLedger(ctx, f, false)
	if err != nil {
		return err
	}
	defer l.Close()
	if l.remote != nil {
		var v any
		if err := l.remote.getJSON(ctx, http.MethodPost, "/v1/admin/subjects/"+verb, body, &v); err != nil {
			return err
		}
		return printJSON(stdout, v)
	}
	if verb == "withdraw" {
		// The withdraw records queue their consent.withdrawn webhook events
		// in their own commit; the server delivers them when it next runs.
		hooks, err := webhook.New(ctx, l.st, webhook.Options{})
		if err != nil {
			return err
		}
		recs, err := l.st.WithdrawOnRequest(ctx, "cli", body.(store.Withdrawal), store.AppendOptions{Outbox: hooks.RecordOutbox(nil)})
		if err != nil {
			return err
		}
		return printJSON(stdout, map[string]any{"records": recs})
	}
	recs, err := l.st.Rectify(ctx, "cli", body.(store.Rectification), store.AppendOptions{})
	if err != nil {
		return err
	}
	return printJSON(stdout, map[string]any{"email": recs[0].Email, "new_email": recs[0].NewEmail, "records": recs,
		"kept": "every record made before, with the address submitted then", "reason": store.RectifyNote})
}

// list reads a flag that may name several ids, comma-separated.
func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
