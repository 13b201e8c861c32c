//go:build !unix

package store

import (
	"errors"
	"os"
)

var errFileInUse = errors.New("store: the file is locked by another process")

// lockFile has no flock to take here: a second instance on the same SQLite
// file is not detected on this platform.
func lockFile(*os.File) error { return nil }
