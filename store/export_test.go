package store

import "time"

// Announces counts the NOTIFYs this store asked its announcer to send.
func (s *Store) Announces() int64 { return s.announces.Load() }

// SetLeasePing makes PostgreSQL leases check their connection every d, until
// the test ends.
func SetLeasePing(t interface{ Cleanup(func()) }, d time.Duration) {
	old := leasePing
	leasePing = d
	t.Cleanup(func() { leasePing = old })
}
