package server

import (
	"bytes"
	"compress/gzip"
	"testing"

	"github.com/assent/assent/build"
	"github.com/assent/assent/widget"
)

// widgetBudget is the weight promised in SPEC.md: the whole widget as served
// (code, CSS and a site's config without texts) under 7 KB at gzip -9.
const widgetBudget = 7168

// stubBudget is the Consent Mode stub's: it blocks the page's parser, so it
// must stay tiny.
const stubBudget = 600

func gzipLen(b []byte) int {
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	return gz.Len()
}

func TestWidgetWeightIsUnderBudget(t *testing.T) {
	b, err := build.Widget(widget.FS)
	if err != nil {
		t.Fatal(err)
	}
	served := WidgetScript(b.JS, b.Hash, DemoSite([]string{"https://shop.example"}))
	gz := gzipLen(served)
	t.Logf("widget as served: %d bytes raw, %d bytes gzip -9 (budget %d)", len(served), gz, widgetBudget)
	if gz > widgetBudget {
		t.Errorf("widget is %d bytes at gzip -9, over the %d-byte budget", gz, widgetBudget)
	}
}

func TestConsentModeStubWeightIsUnderBudget(t *testing.T) {
	b, err := build.ConsentModeStub(widget.FS)
	if err != nil {
		t.Fatal(err)
	}
	site := DemoSite([]string{"https://shop.example"})
	site.CookieDomain = "shop.example"
	site.ConsentMode.AdsDataRedaction = true
	served := ConsentModeStub(b.JS, site)
	gz := gzipLen(served)
	t.Logf("consent-mode stub as served: %d bytes raw, %d bytes gzip -9 (budget %d)", len(served), gz, stubBudget)
	if gz > stubBudget {
		t.Errorf("stub is %d bytes at gzip -9, over the %d-byte budget", gz, stubBudget)
	}
}
