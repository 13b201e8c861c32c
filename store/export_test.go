package store

// Announces counts the NOTIFYs this store asked its announcer to send.
func (s *Store) Announces() int64 { return s.announces.Load() }
