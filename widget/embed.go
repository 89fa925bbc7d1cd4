// Package widget holds the browser widget's sources: the TypeScript and CSS
// that the build package bundles with esbuild, and the built-in texts per
// language (texts/LANG.json) that the server merges under each site's texts
// and sends with the decision. It holds no Go logic and builds nothing itself.
package widget

import "embed"

// FS holds src/ (main.ts is the entry, widget.css the stylesheet) and texts/.
//
//go:embed src texts
var FS embed.FS
