// Package build turns the browser sources (the widget and the admin console)
// into minified bundles with esbuild's Go API, in-process, at server start
// and from `assent build`.
//
// It reads sources from an fs.FS — the embedded copy in production, the
// folder on disk with --dev — so a plain `go build ./cmd/assent` is enough:
// nothing generated has to exist first. It does not serve anything; the
// server keeps the bundles and their compressed forms.
package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

// Bundle is one built script.
type Bundle struct {
	JS   []byte // minified ES2017 IIFE
	Hash string // "sha256:<hex>" of JS: the build recorded with every consent
}

// Widget builds the consent widget from fsys: entry src/main.ts, with
// src/widget.css minified and handed to the code as __ASSENT_CSS__.
func Widget(fsys fs.FS) (Bundle, error) {
	css, err := fs.ReadFile(fsys, "src/widget.css")
	if err != nil {
		return Bundle{}, fmt.Errorf("build widget: %w", err)
	}
	min, err := minifyCSS(string(css), "src/widget.css")
	if err != nil {
		return Bundle{}, err
	}
	lit, _ := json.Marshal(min)
	return Script(fsys, "src/main.ts", map[string]string{"__ASSENT_CSS__": string(lit)})
}

// ConsentModeStub builds the Consent Mode stub (src/stub.ts), which the
// server serves as /w/SITE/consent-mode.js wrapped in a function around
// its config (S). That wrapper is its only scope: the bundle is bare statements
// (esbuild's ESM format with nothing imported or exported), without the
// IIFE and "use strict" of Script, because the stub's budget is 600 B gzip.
func ConsentModeStub(fsys fs.FS) (Bundle, error) {
	return script(fsys, "src/stub.ts", nil, api.FormatESModule)
}

// Script bundles the TypeScript entry in fsys into one minified IIFE.
// defines replace free identifiers with JS literals. Any esbuild error or
// warning fails the build with every message.
func Script(fsys fs.FS, entry string, defines map[string]string) (Bundle, error) {
	return script(fsys, entry, defines, api.FormatIIFE)
}

func script(fsys fs.FS, entry string, defines map[string]string, format api.Format) (Bundle, error) {
	res := api.Build(api.BuildOptions{
		EntryPoints:       []string{entry},
		Bundle:            true,
		Write:             false,
		Format:            format,
		Target:            api.ES2017,
		Platform:          api.PlatformBrowser,
		MinifyWhitespace:  true,
		MinifyIdentifiers: true,
		MinifySyntax:      true,
		Charset:           api.CharsetUTF8,
		LegalComments:     api.LegalCommentsNone,
		Define:            defines,
		LogLevel:          api.LogLevelSilent,
		Outfile:           "out.js",
		Plugins:           []api.Plugin{fsPlugin(fsys)},
	})
	if err := messages(entry, res.Errors, res.Warnings); err != nil {
		return Bundle{}, err
	}
	if len(res.OutputFiles) != 1 {
		return Bundle{}, fmt.Errorf("build %s: esbuild wrote %d files, want 1", entry, len(res.OutputFiles))
	}
	js := bytes.TrimSpace(res.OutputFiles[0].Contents)
	sum := sha256.Sum256(js)
	return Bundle{JS: js, Hash: "sha256:" + hex.EncodeToString(sum[:])}, nil
}

func minifyCSS(src, name string) (string, error) {
	res := api.Transform(src, api.TransformOptions{
		Loader:           api.LoaderCSS,
		MinifyWhitespace: true,
		MinifySyntax:     true,
		Target:           api.ES2017,
		Sourcefile:       name,
		LogLevel:         api.LogLevelSilent,
	})
	if err := messages(name, res.Errors, res.Warnings); err != nil {
		return "", err
	}
	return strings.TrimSpace(string(res.Code)), nil
}

// messages turns esbuild's errors and warnings into one error: a warning is
// as fatal as an error, so a dubious widget never ships quietly.
func messages(what string, errs, warns []api.Message) error {
	if len(errs) == 0 && len(warns) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "build %s: %d error(s), %d warning(s)", what, len(errs), len(warns))
	for _, kind := range []struct {
		name string
		list []api.Message
	}{{"error", errs}, {"warning", warns}} {
		for _, m := range kind.list {
			b.WriteString("\n  ")
			if m.Location != nil {
				fmt.Fprintf(&b, "%s:%d:%d: ", m.Location.File, m.Location.Line, m.Location.Column)
			}
			fmt.Fprintf(&b, "%s: %s", kind.name, m.Text)
		}
	}
	return errors.New(b.String())
}

// fsPlugin resolves every import inside fsys, so the build reads the
// embedded sources and never the working directory.
func fsPlugin(fsys fs.FS) api.Plugin {
	const ns = "assent-fs"
	return api.Plugin{
		Name: "fs",
		Setup: func(pb api.PluginBuild) {
			pb.OnResolve(api.OnResolveOptions{Filter: ".*"}, func(a api.OnResolveArgs) (api.OnResolveResult, error) {
				p := a.Path
				if a.Importer != "" {
					if !strings.HasPrefix(p, ".") {
						return api.OnResolveResult{}, fmt.Errorf("import %q: only relative imports are allowed (no runtime dependencies)", p)
					}
					p = path.Join(path.Dir(a.Importer), p)
				}
				p = path.Clean(strings.TrimPrefix(p, "/"))
				for _, cand := range []string{p, p + ".ts", p + "/index.ts"} {
					if st, err := fs.Stat(fsys, cand); err == nil && !st.IsDir() {
						return api.OnResolveResult{Path: cand, Namespace: ns}, nil
					}
				}
				return api.OnResolveResult{}, fmt.Errorf("cannot find %q", p)
			})
			pb.OnLoad(api.OnLoadOptions{Filter: ".*", Namespace: ns}, func(a api.OnLoadArgs) (api.OnLoadResult, error) {
				b, err := fs.ReadFile(fsys, a.Path)
				if err != nil {
					return api.OnLoadResult{}, err
				}
				s := string(b)
				loader := api.LoaderTS
				switch path.Ext(a.Path) {
				case ".js":
					loader = api.LoaderJS
				case ".css", ".html", ".svg":
					loader = api.LoaderText
				}
				return api.OnLoadResult{Contents: &s, Loader: loader}, nil
			})
		},
	}
}
