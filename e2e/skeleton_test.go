package e2e

import (
	"encoding/csv"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/assent/assent/store"
)

func shopSite() store.Site {
	return store.Site{
		ID: "shop", Name: "Example Shop",
		Purposes: []store.Purpose{
			{ID: "necessary", Required: true},
			{ID: "analytics", ConsentMode: []string{"analytics_storage"}},
			{ID: "marketing", ConsentMode: []string{"ad_storage", "ad_user_data", "ad_personalization"}},
		},
	}
}

// A visitor from Germany, on a shop on another origin, sees unticked boxes,
// ticks one, saves, and the admin finds that choice in the CSV export.
func TestGermanVisitorChoiceReachesTheExport(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.site(shopSite())
	page := e.host.page("/", e.embed("shop", "en", ""))
	e.setVisitor(ipGermany)
	ctx := browser(t)

	err := chromedp.Do(ctx,
		chromedp.Navigate(page),
		chromedp.WaitVisible(shadow(`input[data-assent-purpose="analytics"]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	checked, err := chromedp.Run(ctx, chromedp.Evaluate[[]bool](`[...document.querySelector('#assent').shadowRoot.querySelectorAll('input[type=checkbox][data-assent-purpose]')].map(i => i.checked)`))
	if err != nil {
		t.Fatal(err)
	}
	ua, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.userAgent`))
	if err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(shadow(`input[data-assent-purpose="analytics"]`)),
		chromedp.Click(shadow(`[data-assent-action="save"]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(checked) != 2 {
		t.Fatalf("saw %d purpose checkboxes, want 2 (analytics, marketing)", len(checked))
	}
	for i, c := range checked {
		if c {
			t.Errorf("checkbox %d was ticked before the visitor chose", i)
		}
	}

	recs := e.waitRecords("shop", 1)
	r := recs[0]
	want := map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "denied"}
	for p, s := range want {
		if r.Choices[p] != s {
			t.Errorf("choice %s = %q, want %q", p, r.Choices[p], s)
		}
	}
	if r.Event != "partial" || r.Country != "DE" || r.Regime != "opt-in" || r.Basis != "explicit" || r.Source != "banner" {
		t.Errorf("record = event %q country %q regime %q basis %q source %q", r.Event, r.Country, r.Regime, r.Basis, r.Source)
	}
	if r.IP != "85.214.132.0" || r.UserAgent != ua || !strings.HasPrefix(r.PageURL, e.host.origin) {
		t.Errorf("record ip %q ua %q page %q", r.IP, r.UserAgent, r.PageURL)
	}

	resp := e.admin(http.MethodGet, "/v1/admin/sites/shop/consents?format=csv", nil)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(body), "\ufeff"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[1][0] != r.ID {
		t.Fatalf("CSV export = %d rows, want the header and record %s", len(rows), r.ID)
	}

	unauth, _ := http.Get(e.api + "/v1/admin/sites/shop/consents?format=csv")
	unauth.Body.Close()
	if unauth.StatusCode != http.StatusUnauthorized {
		t.Errorf("export without a token: %d, want 401", unauth.StatusCode)
	}
}
