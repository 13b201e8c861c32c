package models

import (
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// Role is what a user may do.
type Role string

// The roles.
const (
	RoleUser  Role = "user"
	RoleAdmin Role = "admin"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleUser || r == RoleAdmin }

// Password limits: at least MinPasswordLength characters, and at most
// MaxPasswordBytes bytes, all that bcrypt reads.
const (
	MinPasswordLength = 8
	MaxPasswordBytes  = 72
)

// User is a rider or an operator. PasswordHash never leaves the server.
type User struct {
	ID           int64     `json:"id"`
	Email        string    `json:"email"`
	Name         string    `json:"name"`
	Role         Role      `json:"role"`
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`

	// TokenVersion is signed into every access token of the account; a
	// token with another one is refused, so raising it (logout-all) ends
	// every token issued before. It starts at a random value, so that an
	// id given again to another account (a restore of an older backup)
	// does not make the earlier account's tokens valid for the new one.
	TokenVersion int64 `json:"-"`
}

// IsAdmin reports whether u is an operator.
func (u *User) IsAdmin() bool { return u != nil && u.Role == RoleAdmin }

// NormalizeEmail trims and lower-cases an address so that one mailbox maps to one account.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// ValidateRegistration checks the fields of a new account.
func ValidateRegistration(email, password, name string) error {
	f := map[string]string{}
	if email == "" {
		f["email"] = "is required"
	} else if a, err := mail.ParseAddress(email); err != nil || a.Address != email || len(email) > 254 {
		f["email"] = "must be a valid e-mail address"
	}
	if password == "" {
		f["password"] = "is required"
	} else if utf8.RuneCountInString(password) < MinPasswordLength {
		f["password"] = "must be at least 8 characters"
	} else if len(password) > MaxPasswordBytes {
		f["password"] = "must be at most 72 bytes"
	}
	if strings.TrimSpace(name) == "" {
		f["name"] = "is required"
	} else if longer(name, 200) {
		f["name"] = "must be at most 200 characters"
	} else if why := singleLineText(name); why != "" {
		f["name"] = why
	}
	return ValidationError(f)
}

// longer reports whether s has more than n characters (runes, not bytes:
// the limits the API states are in characters, and a name in Cyrillic or
// Chinese takes two or three bytes a character).
func longer(s string, n int) bool {
	return len(s) > n && utf8.RuneCountInString(s) > n
}
