// Package console holds the admin console's sources: the page (index.html),
// its stylesheet (console.css) and its TypeScript (src/, entry src/main.ts),
// embedded so that `go build ./cmd/assent` needs nothing generated. The
// server bundles the script with the build package at start-up and serves
// the page at /admin/. It holds no Go logic and no framework: plain DOM code
// that calls the admin API with the token the admin types in.
package console

import "embed"

// FS holds index.html, console.css and src/.
//
//go:embed index.html console.css src
var FS embed.FS
