package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"batteryswap/models"
)

// A unique violation is known by PostgreSQL's code, whatever language the
// server writes its messages in.
func TestUniqueViolationByCode(t *testing.T) {
	de := fmt.Errorf("store: %w", &pgconn.PgError{Code: "23505", Message: "doppelter Schlüsselwert verletzt Unique-Constraint"})
	if !isUniqueViolation(de) {
		t.Error("23505 with a German message is not seen as a unique violation")
	}
	if isUniqueViolation(&pgconn.PgError{Code: "23503", Message: "verletzt Fremdschlüssel-Constraint"}) {
		t.Error("a foreign-key violation is seen as a unique violation")
	}
}

// SQLite's unique violations are known by its extended result code (a
// real one, from the driver), and other constraint failures are not.
func TestSQLiteUniqueViolationByCode(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "codes.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, n INTEGER NOT NULL CHECK (n > 0))",
		"INSERT INTO t (id, k, n) VALUES (1, 'a', 1)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	_, dup := db.Exec("INSERT INTO t (id, k, n) VALUES (2, 'a', 1)")
	_, pk := db.Exec("INSERT INTO t (id, k, n) VALUES (1, 'b', 1)")
	_, check := db.Exec("INSERT INTO t (id, k, n) VALUES (3, 'c', 0)")
	if !isUniqueViolation(dup) || !isUniqueViolation(pk) {
		t.Errorf("unique and primary-key violations not seen as unique: %v; %v", dup, pk)
	}
	if check == nil || isUniqueViolation(check) || classify(check) != errOther {
		t.Errorf("a CHECK failure is classified %v: %v", classify(check), check)
	}
	// The text alone decides nothing.
	if isUniqueViolation(errors.New("UNIQUE constraint failed: t.k")) {
		t.Error("a message that says unique constraint is seen as a unique violation")
	}
}

// A database out of reach is service_unavailable (503, retry), not an
// internal error, and the driver's error stays in the chain for the log.
func TestUnavailableByKind(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"a broken connection", fmt.Errorf("query: %w", driver.ErrBadConn), true},
		{"a connection cut mid-answer", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"a refused dial", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{"a refused connect", &pgconn.ConnectError{Config: &pgconn.Config{}}, true},
		{"55000 outside a connect (a bug, not an outage)", fmt.Errorf("query: %w", &pgconn.PgError{Code: "55000"}), false},
		{"a protocol violation (a bug, not an outage)", &pgconn.PgError{Code: "08P01"}, false},
		{"wrong credentials (configuration)", &pgconn.PgError{Code: "28P01"}, false},
		{"an unknown database (configuration)", &pgconn.PgError{Code: "3D000"}, false},
		{"a statement timeout", &pgconn.PgError{Code: "57014"}, false},
		{"a deadline (the caller's, passed on as is)", context.DeadlineExceeded, false},
		{"a unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"a syntax error", &pgconn.PgError{Code: "42601"}, false},
		{"anything else", errors.New("boom"), false},
	} {
		err := translate(tt.err, "station")
		if got := models.IsCode(err, models.CodeServiceUnavailable); got != tt.want {
			t.Errorf("%s: service_unavailable = %v, want %v (%v)", tt.name, got, tt.want, err)
		}
		if tt.want && !errors.Is(err, tt.err) {
			t.Errorf("%s: the driver's error left the chain: %v", tt.name, err)
		}
	}
}

// A certificate that does not verify is configuration, not an outage
// (TestConfigurationIsNotAnOutage has the connects a real server refuses).
func TestCertificateFailureIsConfiguration(t *testing.T) {
	if unavailable(fmt.Errorf("connect: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}})) {
		t.Error("a failed certificate verification is an outage")
	}
}
