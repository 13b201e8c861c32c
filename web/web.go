// Package web embeds the live dashboard served at "/".
package web

import "embed"

// FS holds the dashboard: index.html and its assets under static/ (app.js,
// live.js, app.css). Paths are relative to the root, as the server serves it.
//
//go:embed index.html static
var FS embed.FS
