package api

import (
	"context"
	"sync"
	"time"

	"batteryswap/models"
)

// accounts reads the accounts that tokens name, for their role and token
// version, and keeps each for a short while: a token is checked against
// its account on every request, and a rider's burst of requests should not
// each cost a database read. The price is that a change (logout-all on
// another instance, a role change) applies within ttl rather than at once;
// logout-all on this instance applies at once (forget).
//
// The cache is bounded by two generations of at most max/2 entries: when
// the current one is full it becomes the previous one and the older is
// dropped, so memory stays bounded however many accounts sign in.
type accounts struct {
	find func(ctx context.Context, id int64) (*models.User, error)
	ttl  time.Duration
	max  int
	now  func() time.Time

	mu        sync.Mutex
	cur, prev map[int64]cachedAccount
}

type cachedAccount struct {
	user *models.User
	at   time.Time
}

func newAccounts(find func(context.Context, int64) (*models.User, error), ttl time.Duration, max int) *accounts {
	return &accounts{find: find, ttl: ttl, max: max, now: time.Now,
		cur: map[int64]cachedAccount{}, prev: map[int64]cachedAccount{}}
}

// get returns the account of id: from the cache when it was read less than
// ttl ago, else from the store (not_found for an unknown id, which is not
// cached). The returned user is shared: callers must not change it.
func (a *accounts) get(ctx context.Context, id int64) (*models.User, error) {
	if u := a.cached(id); u != nil {
		return u, nil
	}
	u, err := a.find(ctx, id)
	if err != nil {
		return nil, err
	}
	// The password hash has no business in a cache that every request reads.
	acct := *u
	acct.PasswordHash = ""
	a.put(id, &acct)
	return &acct, nil
}

func (a *accounts) cached(id int64) *models.User {
	if a.ttl <= 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.cur[id]
	if !ok {
		e, ok = a.prev[id]
	}
	if !ok || a.now().Sub(e.at) >= a.ttl {
		return nil
	}
	u := *e.user // each request its own copy: nothing shared to change by mistake
	return &u
}

func (a *accounts) put(id int64, u *models.User) {
	if a.ttl <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cur) >= a.max/2 {
		a.prev, a.cur = a.cur, make(map[int64]cachedAccount, len(a.cur))
	}
	a.cur[id] = cachedAccount{user: u, at: a.now()}
}

// forget drops id, so that the next request reads the account again.
func (a *accounts) forget(id int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.cur, id)
	delete(a.prev, id)
}

// size is the number of cached entries, for tests of the bound.
func (a *accounts) size() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cur) + len(a.prev)
}

// deployment is the database's deployment id (Store.DeploymentID), read
// once, when a token is first signed or checked, and kept: it does not
// change while the database lives. A failed read is tried again next time.
type deployment struct {
	read func(context.Context) (string, error)
	mu   sync.Mutex
	id   string
}

func (d *deployment) get(ctx context.Context) (string, error) {
	d.mu.Lock()
	id := d.id
	d.mu.Unlock()
	if id != "" {
		return id, nil
	}
	// Not under the lock: a database that is slow to answer would hold up
	// every request that authenticates, not only this one.
	id, err := d.read(ctx)
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	d.id = id
	d.mu.Unlock()
	return id, nil
}
