package api_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"batteryswap/api"
	"batteryswap/models"
	"batteryswap/store/storetest"
	"batteryswap/stream"
	"batteryswap/web"
)

// sibling starts a second server on e's database, as another instance of
// the same deployment would be; tune may adjust its configuration.
func (e *apiEnv) sibling(t *testing.T, tune func(*api.Config)) *apiEnv {
	t.Helper()
	broker := stream.NewMemoryBroker()
	t.Cleanup(func() { _ = broker.Close() })
	hub := stream.NewHub(broker, e.store, stream.HubOptions{})
	t.Cleanup(hub.Close)
	cfg := api.Config{
		JWTSecret: []byte("test"), BcryptCost: 4, AuthRateLimit: -1, BookingRateLimit: -1,
		Web: web.FS, OpenAPI: api.OpenAPI,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if tune != nil {
		tune(&cfg)
	}
	ts := httptest.NewServer(api.New(cfg, e.store, hub, broker).Handler())
	t.Cleanup(ts.Close)
	return &apiEnv{url: ts.URL, store: e.store, broker: broker, client: ts.Client()}
}

// A token is bound to the database it was signed for: a deployment that
// shares JWT_SECRET but has another database refuses it, even though the
// same user id exists there, and answers 401 rather than act as that user.
func TestTokenOfAnotherDeployment(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			here, there := newAPIEnv(t, d, nil), newAPIEnv(t, d, nil) // the same JWT_SECRET, two databases
			tokHere, idHere := here.newUser(t)
			tokThere, idThere := there.newUser(t)
			adminHere, adminIDHere := here.newAdmin(t)
			_, adminIDThere := there.newAdmin(t)
			if idHere != idThere || adminIDHere != adminIDThere {
				t.Fatalf("user ids %d/%d and %d/%d: the test needs the same ids in both databases", idHere, idThere, adminIDHere, adminIDThere)
			}
			there.do(t, http.MethodGet, "/api/v1/me", tokThere, nil).want(t, http.StatusOK)
			wantError(t, there.do(t, http.MethodGet, "/api/v1/me", tokHere, nil), http.StatusUnauthorized, "unauthorized")
			wantError(t, there.do(t, http.MethodPost, "/api/v1/bookings", tokHere, map[string]any{"station_id": 1}),
				http.StatusUnauthorized, "unauthorized")
			status, _ := there.head(t, http.MethodGet, "/stream/notifications?transport=poll&timeout=0", "Authorization", "Bearer "+tokHere)
			if status != http.StatusUnauthorized {
				t.Fatalf("another deployment's token opened a notification stream: %d", status)
			}
			// An operator's token of one deployment is nothing in the other.
			wantError(t, there.do(t, http.MethodPost, "/api/v1/stations", adminHere, map[string]any{
				"name": "Forged", "address": "1 Main St", "latitude": 1, "longitude": 2,
			}), http.StatusUnauthorized, "unauthorized")
		})
	}
}

// logout-all ends every token of the caller: on this instance at once, on
// another within the account cache's lifetime (its default here), streams
// included; a new login works.
func TestLogoutAll(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		other := e.sibling(t, nil)
		email := e.email()
		first, uid := e.register(t, email)
		second := str(t, e.login(t, email, testPassword).want(t, http.StatusOK).Body, "token")
		bystander, _ := e.newUser(t)
		for _, tok := range []string{first, second} {
			e.do(t, http.MethodGet, "/api/v1/me", tok, nil).want(t, http.StatusOK)
			other.do(t, http.MethodGet, "/api/v1/me", tok, nil).want(t, http.StatusOK) // cached there now
		}

		r := e.do(t, http.MethodPost, "/api/v1/auth/logout-all", second, nil).want(t, http.StatusNoContent)
		if ck := cookie(t, r, api.CookieName); ck.Value != "" || ck.MaxAge >= 0 {
			t.Errorf("cookie not cleared: %+v", ck)
		}
		for name, tok := range map[string]string{"first": first, "second": second} {
			wantError(t, e.do(t, http.MethodGet, "/api/v1/me", tok, nil), http.StatusUnauthorized, "unauthorized")
			wantError(t, e.do(t, http.MethodGet, "/api/v1/me", "", nil, "Cookie", api.CookieName+"="+tok), http.StatusUnauthorized, "unauthorized")
			if status, _ := e.head(t, http.MethodGet, "/stream/notifications?transport=poll&timeout=0&access_token="+tok, "Accept", "application/json"); status != http.StatusUnauthorized {
				t.Errorf("%s token opened a notification stream after logout-all: %d", name, status)
			}
			eventually(t, name+" token refused by the other instance", func() bool {
				return other.do(t, http.MethodGet, "/api/v1/me", tok, nil).Status == http.StatusUnauthorized
			})
		}
		e.do(t, http.MethodGet, "/api/v1/me", bystander, nil).want(t, http.StatusOK)

		again := str(t, e.login(t, email, testPassword).want(t, http.StatusOK).Body, "token")
		if got := id(t, e.do(t, http.MethodGet, "/api/v1/me", again, nil).want(t, http.StatusOK).Body, "id"); got != uid {
			t.Fatalf("me after a new login = %d, want %d", got, uid)
		}
		other.do(t, http.MethodGet, "/api/v1/me", again, nil).want(t, http.StatusOK)

		wantError(t, e.do(t, http.MethodPost, "/api/v1/auth/logout-all", "", nil), http.StatusUnauthorized, "unauthorized")
	})
}

// A role change ends the account's tokens (CONTRACT §3), within the account
// cache's lifetime: a demoted operator's token no longer writes as an
// operator, and their next sign-in is a rider's; a promoted rider signs in
// again to act as one. (A token's role claim is never believed: TestMe.)
func TestRoleChangeEndsTheTokens(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, adminID := e.newAdmin(t)
		create := func(tok string) response {
			return e.do(t, http.MethodPost, "/api/v1/stations", tok, map[string]any{
				"name": fmt.Sprintf("Station %d", e.next()), "address": "1 Main St", "latitude": 1, "longitude": 2,
			})
		}
		setRole := func(id int64, role models.Role) string {
			u, err := e.store.FindUserByID(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.store.SetUserRole(context.Background(), u.Email, role); err != nil {
				t.Fatal(err)
			}
			return u.Email
		}
		create(admin).want(t, http.StatusCreated)
		email := setRole(adminID, models.RoleUser)
		eventually(t, "the demoted admin's token refused", func() bool {
			r := create(admin)
			if r.Status == http.StatusCreated {
				return false
			}
			wantError(t, r, http.StatusUnauthorized, "unauthorized")
			return true
		})
		again := str(t, e.login(t, email, testPassword).want(t, http.StatusOK).Body, "token")
		wantError(t, create(again), http.StatusForbidden, "forbidden")
		if role := str(t, e.do(t, http.MethodGet, "/api/v1/me", again, nil).want(t, http.StatusOK).Body, "role"); role != "user" {
			t.Fatalf("me.role = %q after the demotion, want user", role)
		}

		rider, riderID := e.newUser(t)
		wantError(t, create(rider), http.StatusForbidden, "forbidden")
		email = setRole(riderID, models.RoleAdmin)
		eventually(t, "the promoted rider's old token refused", func() bool {
			return e.do(t, http.MethodGet, "/api/v1/me", rider, nil).Status == http.StatusUnauthorized
		})
		promoted := str(t, e.login(t, email, testPassword).want(t, http.StatusOK).Body, "token")
		create(promoted).want(t, http.StatusCreated)
	})
}

// A token whose user does not exist (a database restored to before the
// account, or an id that never was) is 401 on every route, not a 500 where
// the store would trip over the missing user.
func TestTokenOfAnUnknownUser(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		_, stationID, _ := e.readyStation(t)
		_, uid := e.newUser(t)
		ghost := e.forge(t, "test", uid+1000, time.Hour, nil)
		for _, tc := range []struct {
			method, path string
			body         any
		}{
			{http.MethodPost, "/api/v1/bookings", map[string]any{"station_id": stationID}},
			{http.MethodGet, "/api/v1/bookings", nil},
			{http.MethodGet, "/api/v1/notifications", nil},
			{http.MethodGet, "/api/v1/me", nil},
			{http.MethodPost, "/api/v1/auth/logout-all", nil},
		} {
			wantError(t, e.do(t, tc.method, tc.path, ghost, tc.body), http.StatusUnauthorized, "unauthorized")
		}
		if status, _ := e.head(t, http.MethodGet, "/stream/notifications?transport=poll&timeout=0&access_token="+ghost, "Accept", "application/json"); status != http.StatusUnauthorized {
			t.Fatalf("a token of an unknown user opened a notification stream: %d", status)
		}
		if c := e.counts(t, stationID); c.available != 1 {
			t.Fatalf("the station's counts changed: %+v", c)
		}
	})
}

// access_token in the query string is a stream route's only: EventSource
// and WebSocket cannot send headers, every other client can. A REST route
// that needs a user refuses it with 401 (and does nothing), public ones
// ignore it.
func TestAccessTokenOnlyOnStreams(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, stationID, _ := e.readyStation(t)
		rider, _ := e.newUser(t)

		r := e.do(t, http.MethodPost, "/api/v1/stations?access_token="+admin, "", map[string]any{
			"name": "Through the URL", "address": "1 Main St", "latitude": 1, "longitude": 2,
		})
		wantError(t, r, http.StatusUnauthorized, "unauthorized")
		r = e.do(t, http.MethodGet, "/api/v1/stations", "", nil).want(t, http.StatusOK)
		if n := len(list(t, r.Body, "stations")); n != 1 {
			t.Fatalf("%d stations after a refused write, want 1", n)
		}
		wantError(t, e.do(t, http.MethodPost, "/api/v1/bookings?access_token="+rider, "", map[string]any{"station_id": stationID}),
			http.StatusUnauthorized, "unauthorized")
		wantError(t, e.do(t, http.MethodGet, "/api/v1/me?access_token="+rider, "", nil), http.StatusUnauthorized, "unauthorized")
		e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/stations/%d?access_token=whatever", stationID), "", nil).want(t, http.StatusOK)

		for _, path := range []string{"/stream/notifications", "/stream?topics=notifications", "/stream/notifications/"} {
			e.do(t, http.MethodGet, path+sep(path)+"transport=poll&timeout=0&access_token="+rider, "", nil).want(t, http.StatusOK)
		}
		wantError(t, e.do(t, http.MethodGet, "/stream/notifications?transport=poll&timeout=0", "", nil), http.StatusUnauthorized, "unauthorized")
	})
}

func sep(path string) string {
	for _, c := range path {
		if c == '?' {
			return "&"
		}
	}
	return "?"
}
