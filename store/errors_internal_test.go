package store

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
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
