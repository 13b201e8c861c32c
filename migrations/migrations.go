// Package migrations embeds the numbered SQL migrations, one folder per
// dialect, applied with goose by the store.
package migrations

import "embed"

// FS holds postgres/*.sql and sqlite/*.sql.
//
//go:embed postgres/*.sql sqlite/*.sql
var FS embed.FS
