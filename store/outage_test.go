package store_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
)

// TestDatabaseOutageIsServiceUnavailable cuts a real PostgreSQL database off
// (no new connections, every open one ended): reads and bookings answer
// service_unavailable, which the API turns into 503 with Retry-After, not
// 500 internal.
func TestDatabaseOutageIsServiceUnavailable(t *testing.T) {
	dbURL := storetest.URL(t, "postgres")
	s := storetest.OpenURL(t, dbURL, store.Options{})
	ctx := context.Background()
	st, err := s.CreateStation(ctx, models.StationInput{Name: "Far", Address: "1 Gone St", Latitude: 1, Longitude: 1})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateUser(ctx, "cut@example.com", "Cut", "hash", models.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(parsed.Path, "/")
	admin, err := pgx.Connect(ctx, storetest.BaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "ALTER DATABASE "+name+" ALLOW_CONNECTIONS true")
		admin.Close(context.Background())
	})
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+name+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
		t.Fatal(err)
	}

	if _, err := s.FindStationByID(ctx, st.ID); !models.IsCode(err, models.CodeServiceUnavailable) {
		t.Errorf("read during the outage: %v, want service_unavailable", err)
	}
	if _, _, err := s.CreateBooking(ctx, u.ID, st.ID, ""); !models.IsCode(err, models.CodeServiceUnavailable) {
		t.Errorf("booking during the outage: %v, want service_unavailable", err)
	}
}

// TestConfigurationIsNotAnOutage: connects that a real PostgreSQL refuses
// for the configuration (an unknown database, an unknown role) are 500s for
// the operator's log, not 503s to wait out; only the server going away is.
func TestConfigurationIsNotAnOutage(t *testing.T) {
	base := storetest.BaseURL(t)
	for _, tt := range []struct {
		name   string
		change func(u *url.URL)
	}{
		{"an unknown database", func(u *url.URL) { u.Path = "/bs_no_such_database" }},
		{"an unknown role", func(u *url.URL) { u.User = url.User("bs_no_such_role") }},
	} {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		tt.change(u)
		conn, err := pgconn.Connect(context.Background(), u.String())
		if err == nil {
			conn.Close(context.Background())
			t.Fatalf("%s: connected", tt.name)
		}
		var ce *pgconn.ConnectError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: %T %v, want a ConnectError", tt.name, err, err)
		}
		if got := store.Translate(err, "station"); models.IsCode(got, models.CodeServiceUnavailable) {
			t.Errorf("%s: %v is service_unavailable, want an internal error", tt.name, got)
		}
	}
}
