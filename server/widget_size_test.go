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

func TestWidgetWeightIsUnderBudget(t *testing.T) {
	b, err := build.Widget(widget.FS)
	if err != nil {
		t.Fatal(err)
	}
	served := WidgetScript(b.JS, b.Hash, DemoSite([]string{"https://shop.example"}))
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(served)
	zw.Close()
	t.Logf("widget as served: %d bytes raw, %d bytes gzip -9 (budget %d)", len(served), gz.Len(), widgetBudget)
	if gz.Len() > widgetBudget {
		t.Errorf("widget is %d bytes at gzip -9, over the %d-byte budget", gz.Len(), widgetBudget)
	}
}
