//go:build unix

package store

import (
	"errors"
	"os"
	"syscall"
)

// errFileInUse: another process holds the lock lockFile asked for.
var errFileInUse = errors.New("store: the file is locked by another process")

// lockFile takes an exclusive flock on f without waiting: errFileInUse when
// another process holds one. The lock lasts until f is closed (or the
// process ends, however it ends). flock locks are apart from the POSIX
// record locks SQLite itself takes, so the two do not meet.
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errFileInUse
	}
	return err
}
