package build

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestScript(t *testing.T) {
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    string // substring of the output
		wantErr string // substring of the error
	}{
		{
			name: "bundles relative imports",
			files: fstest.MapFS{
				"src/main.ts":  {Data: []byte(`import {greet} from "./greet"; (window as any).x = greet("hi");`)},
				"src/greet.ts": {Data: []byte(`export function greet(s: string): string { return s + "!" }`)},
			},
			want: `"hi"`,
		},
		{
			name:    "syntax error fails",
			files:   fstest.MapFS{"src/main.ts": {Data: []byte(`let x = ;`)}},
			wantErr: "error",
		},
		{
			name:    "warning fails too",
			files:   fstest.MapFS{"src/main.ts": {Data: []byte(`let a = 1; if (a == -0) {}`)}},
			wantErr: "warning",
		},
		{
			name:    "package imports are refused",
			files:   fstest.MapFS{"src/main.ts": {Data: []byte(`import x from "left-pad"; console.log(x)`)}},
			wantErr: "only relative imports",
		},
		{
			name:    "missing entry",
			files:   fstest.MapFS{},
			wantErr: "cannot find",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Script(tt.files, "src/main.ts", nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b.JS), tt.want) {
				t.Errorf("output %q lacks %q", b.JS, tt.want)
			}
			if !strings.HasPrefix(b.Hash, "sha256:") || len(b.Hash) != 7+64 {
				t.Errorf("hash = %q", b.Hash)
			}
		})
	}
}

func TestWidgetInjectsMinifiedCSS(t *testing.T) {
	files := fstest.MapFS{
		"src/main.ts":    {Data: []byte(`declare const __ASSENT_CSS__: string; (window as any).css = __ASSENT_CSS__;`)},
		"src/widget.css": {Data: []byte(":host {\n  color : red ;\n}\n")},
	}
	b, err := Widget(files)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b.JS), `:host{color:red}`) {
		t.Errorf("minified CSS not injected: %s", b.JS)
	}
	files["src/widget.css"] = &fstest.MapFile{Data: []byte(":host { color: red")}
	if _, err := Widget(files); err == nil {
		t.Error("broken CSS built without error")
	}
}
