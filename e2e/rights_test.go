package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/assent/assent/store"
)

// An admin records a withdrawal and a rectification from the subject view,
// sees the rights report change, and the printed page shows the report
// alone.
func TestConsoleRights(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(shopSite())
	if _, err := e.st.Append(context.Background(), store.Record{Site: "shop", Event: "grant", Source: "signup", Basis: "explicit",
		Email: "ann@exmaple.com", Choices: map[string]string{"marketing": "granted", "analytics": "granted"}}); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	do(chromedp.Navigate(e.api+"/admin/#subjects"),
		chromedp.SendKeys(chromedp.ID("token"), e.token+"\r"),
		chromedp.WaitVisible(chromedp.ID("s-email")),
		chromedp.SendKeys(chromedp.ID("s-email"), "ann@exmaple.com\r"),
		consoleWait(`document.getElementById('subject-msg').textContent.includes('found')`))
	do(consoleWait(`document.getElementById('rights-report').textContent.includes('Rights report for ann@exmaple.com')`))
	if rep := consoleText(t, ctx, "rights-report"); !strings.Contains(rep, "marketing") || !strings.Contains(rep, "granted") {
		t.Errorf("report before: %q", rep)
	}
	consoleAxe(t, ctx, "the rights report")

	// A withdrawal without a reason is refused by the form; with one, it
	// is recorded and the report shows it.
	do(chromedp.Click(chromedp.ID("r-withdraw")), consoleWait(`document.getElementById('withdraw-dialog').open`))
	consoleAxe(t, ctx, "the withdrawal dialog")
	do(chromedp.SendKeys(chromedp.ID("w-purposes"), "marketing"),
		chromedp.SendKeys(chromedp.ID("w-reason"), "asked by mail on 2026-11-20"),
		chromedp.Click(chromedp.ID("withdraw-dialog-submit")),
		consoleWait(`!document.getElementById('withdraw-dialog').open || document.getElementById('withdraw-dialog-msg').textContent !== ''`))
	if msg := consoleText(t, ctx, "withdraw-dialog-msg"); msg != "" {
		t.Fatalf("withdrawal refused: %q", msg)
	}
	do(consoleWait(`document.getElementById('rights-msg').textContent.includes('Recorded 1 withdrawal')`),
		consoleWait(`document.getElementById('rights-report').textContent.includes('asked by mail on 2026-11-20')`))
	recs, st, err := e.st.Subject("ann@exmaple.com")
	if err != nil || len(recs) != 2 || recs[1].Source != "admin" || st.Purposes["shop"]["marketing"] != "denied" || st.Purposes["shop"]["analytics"] != "granted" {
		t.Fatalf("after the withdrawal: %v %+v %+v", err, recs, st)
	}

	// A rectification to an address that is taken shows the server's
	// message in the dialog; a free one is recorded, and the view follows
	// the new address.
	if _, err := e.st.Append(context.Background(), store.Record{Site: "shop", Event: "grant", Source: "signup", Basis: "explicit",
		Email: "bob@example.com", Choices: map[string]string{"marketing": "granted"}}); err != nil {
		t.Fatal(err)
	}
	do(chromedp.Click(chromedp.ID("r-rectify")), consoleWait(`document.getElementById('rectify-dialog').open`),
		chromedp.SendKeys(chromedp.ID("r-new-email"), "bob@example.com"),
		chromedp.SendKeys(chromedp.ID("r-reason"), "typo, asked by phone"),
		chromedp.Click(chromedp.ID("rectify-dialog-submit")),
		consoleWait(`document.getElementById('rectify-dialog-msg').textContent.includes('already has records')`))
	consoleAxe(t, ctx, "the rectify dialog")
	do(chromedp.SetValue(chromedp.ID("r-new-email"), "ann@example.com"),
		chromedp.Click(chromedp.ID("rectify-dialog-submit")),
		consoleWait(`document.getElementById('s-heading').textContent === 'Records of ann@example.com'`),
		consoleWait(`document.getElementById('rights-report').textContent.includes('ann@exmaple.com → ann@example.com')`))
	if got, _, _ := e.st.Subject("ann@example.com"); len(got) != 3 || got[2].Event != "rectify" {
		t.Fatalf("after the rectification: %+v", got)
	}

	// Printed, the page shows the report and hides the rest of the console.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`document.body.classList.add('print-report')`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"}); err != nil {
		t.Fatal(err)
	}
	vis := consoleEval[string](t, ctx, `[getComputedStyle(document.getElementById('rights-report')).visibility, getComputedStyle(document.getElementById('nav')).visibility, getComputedStyle(document.getElementById('s-records')).visibility, getComputedStyle(document.getElementById('r-print')).visibility].join(',')`)
	if vis != "visible,hidden,hidden,hidden" {
		t.Errorf("printed: report, nav, records, print button visibility %s", vis)
	}
}
