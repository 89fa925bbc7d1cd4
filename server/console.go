package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/build"
	"github.com/assent/assent/server/console"
)

// consoleCSP allows the console's own script only: no inline script, no
// eval, requests and form posts (the sign-in form) to this server alone,
// and no framing of the console. Inline
// styles are allowed because the widget preview (a srcdoc iframe, which
// inherits this policy) renders its own <style> in its shadow root.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"connect-src 'self'; img-src 'self' data:; frame-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// consoleAssets are the admin console's page and script, built at start
// like the widget (and again on change with --dev).
type consoleAssets struct {
	page, js []byte
	etag     string
}

// consoleSource is the console's sources: embedded, or with --dev the
// folder on disk.
func consoleSource(cfg Config) fs.FS {
	if !cfg.Dev {
		return console.FS
	}
	if cfg.DevConsoleDir != "" {
		return osDirFS(cfg.DevConsoleDir)
	}
	return osDirFS(filepath.Join("server", "console"))
}

// buildConsoleAssets builds the console from fsys (server/console): the
// stylesheet goes inline into the page, the TypeScript is bundled by esbuild.
func buildConsoleAssets(fsys fs.FS) (*consoleAssets, error) {
	page, err := fs.ReadFile(fsys, "index.html")
	if err != nil {
		return nil, fmt.Errorf("build console: %w", err)
	}
	css, err := fs.ReadFile(fsys, "console.css")
	if err != nil {
		return nil, fmt.Errorf("build console: %w", err)
	}
	if !bytes.Contains(page, []byte("/*CSS*/")) {
		return nil, fmt.Errorf("build console: index.html has no /*CSS*/ place for the stylesheet")
	}
	b, err := build.Script(fsys, "src/main.ts", nil)
	if err != nil {
		return nil, err
	}
	page = bytes.Replace(page, []byte("/*CSS*/"), css, 1)
	sum := sha256.Sum256(b.JS)
	return &consoleAssets{page: page, js: b.JS, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}, nil
}

func (s *Server) handleConsole(c echo.Context) error {
	a := s.console.get()
	c.Response().Header().Set("Content-Security-Policy", consoleCSP)
	return c.HTMLBlob(http.StatusOK, a.page)
}

func (s *Server) handleConsoleScript(c echo.Context) error {
	a := s.console.get()
	c.Response().Header().Set("ETag", a.etag)
	return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", a.js)
}
