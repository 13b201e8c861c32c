package store

import "time"

// Announces counts the NOTIFYs this store asked its announcer to send.
func (s *Store) Announces() int64 { return s.announces.Load() }

// SetLeaseTimings makes PostgreSQL leases check their connection every ping
// and lets PostgreSQL end a lease's session after idle, until the test ends.
func SetLeaseTimings(t interface{ Cleanup(func()) }, ping, idle time.Duration) {
	oldPing, oldIdle := leasePing, leaseIdle
	leasePing, leaseIdle = ping, idle
	t.Cleanup(func() { leasePing, leaseIdle = oldPing, oldIdle })
}

// FreezeInTransaction leaves a PostgreSQL lease's connection inside an open
// transaction, as a holder frozen in the middle of Pending would.
func FreezeInTransaction(l any) error {
	return l.(*relayLease).db.Exec("BEGIN").Error
}

// Translate is translate, the store's mapping of driver errors.
var Translate = translate
