package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"time"

	"gorm.io/gorm"

	"batteryswap/models"
)

type userRow struct {
	ID           int64
	Email        string
	Name         string
	PasswordHash string
	Role         string
	TokenVersion int64
	CreatedAt    time.Time
}

func (userRow) TableName() string { return "users" }

func (r *userRow) model() *models.User {
	return &models.User{ID: r.ID, Email: r.Email, Name: r.Name, Role: models.Role(r.Role), PasswordHash: r.PasswordHash,
		TokenVersion: r.TokenVersion, CreatedAt: r.CreatedAt}
}

// CreateUser adds an account; the e-mail is normalised and must be unused
// (email_taken).
func (s *Store) CreateUser(ctx context.Context, email, name, passwordHash string, role models.Role) (*models.User, error) {
	r := userRow{Email: models.NormalizeEmail(email), Name: name, PasswordHash: passwordHash, Role: string(role),
		TokenVersion: firstTokenVersion(), CreatedAt: s.now()}
	if err := s.db.WithContext(ctx).Create(&r).Error; err != nil {
		if isUniqueViolation(err) {
			return nil, models.Errorf(models.CodeEmailTaken, "an account with this e-mail already exists")
		}
		return nil, translate(err, "user")
	}
	return r.model(), nil
}

// FindUserByEmail returns the account of an e-mail address (not_found).
func (s *Store) FindUserByEmail(ctx context.Context, email string) (*models.User, error) {
	var r userRow
	err := s.db.WithContext(ctx).Where("email = ?", models.NormalizeEmail(email)).Take(&r).Error
	if err != nil {
		return nil, translate(err, "user")
	}
	return r.model(), nil
}

// FindUserByID returns an account (not_found).
func (s *Store) FindUserByID(ctx context.Context, id int64) (*models.User, error) {
	var r userRow
	if err := s.db.WithContext(ctx).Take(&r, id).Error; err != nil {
		return nil, translate(err, "user")
	}
	return r.model(), nil
}

// EnsureAdmin makes sure an admin with this e-mail exists: it creates one, or
// promotes an existing account and sets its password hash. was is the
// account's role before (empty when it was created).
func (s *Store) EnsureAdmin(ctx context.Context, email, name, passwordHash string) (u *models.User, was models.Role, err error) {
	u, was, err = s.ensureAdmin(ctx, email, name, passwordHash)
	if isUniqueViolation(err) {
		// Another instance created it at the same moment; now it exists.
		u, was, err = s.ensureAdmin(ctx, email, name, passwordHash)
	}
	return u, was, translate(err, "user")
}

func (s *Store) ensureAdmin(ctx context.Context, email, name, passwordHash string) (*models.User, models.Role, error) {
	var out *models.User
	var was models.Role
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var r userRow
		err := tx.Where("email = ?", models.NormalizeEmail(email)).Take(&r).Error
		if err == gorm.ErrRecordNotFound {
			r = userRow{Email: models.NormalizeEmail(email), Name: name, PasswordHash: passwordHash, Role: string(models.RoleAdmin),
				TokenVersion: firstTokenVersion(), CreatedAt: s.now()}
			if err := tx.Create(&r).Error; err != nil {
				return err
			}
			out = r.model()
			return nil
		}
		if err != nil {
			return err
		}
		was = models.Role(r.Role)
		change := map[string]any{"role": string(models.RoleAdmin), "password_hash": passwordHash}
		if was != models.RoleAdmin {
			// A promotion is a role change: the rider's tokens end (SetUserRole).
			change["token_version"] = gorm.Expr("token_version + 1")
			r.TokenVersion++
		}
		r.Role, r.PasswordHash = string(models.RoleAdmin), passwordHash
		if err := tx.Model(&userRow{}).Where("id = ?", r.ID).Updates(change).Error; err != nil {
			return err
		}
		out = r.model()
		return nil
	})
	return out, was, err
}

// firstTokenVersion is a new account's token version: random, so that an id
// that comes back (a database restored from an older backup hands out again
// the ids of accounts made after it) does not carry the tokens of the
// account that had it before (models.User.TokenVersion).
func firstTokenVersion() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.BigEndian.Uint64(b[:]) >> 2) // positive, with room to count up
}

// BumpTokenVersion raises an account's token version, so that every token
// issued for it before is refused (logout-all). not_found for an unknown id.
func (s *Store) BumpTokenVersion(ctx context.Context, id int64) error {
	res := s.db.WithContext(ctx).Model(&userRow{}).Where("id = ?", id).
		Update("token_version", gorm.Expr("token_version + 1"))
	if res.Error != nil {
		return translate(res.Error, "user")
	}
	if res.RowsAffected == 0 {
		return models.Errorf(models.CodeNotFound, "user not found")
	}
	return nil
}

// SetUserRole gives the account of an e-mail address a role and returns it
// (not_found for an unknown address). A change of role also raises the
// token version: the account's tokens stop working (within the API's short
// account cache) and its next sign-in carries the new role. Giving an
// account the role it has changes nothing.
func (s *Store) SetUserRole(ctx context.Context, email string, role models.Role) (*models.User, error) {
	if !role.Valid() {
		return nil, models.ValidationError(map[string]string{"role": "must be user or admin"})
	}
	var out *models.User
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var r userRow
		if err := tx.Where("email = ?", models.NormalizeEmail(email)).Take(&r).Error; err != nil {
			return err
		}
		if r.Role != string(role) {
			if err := tx.Model(&userRow{}).Where("id = ?", r.ID).
				Updates(map[string]any{"role": string(role), "token_version": gorm.Expr("token_version + 1")}).Error; err != nil {
				return err
			}
			r.Role = string(role)
			r.TokenVersion++
		}
		out = r.model()
		return nil
	})
	if err != nil {
		return nil, translate(err, "user")
	}
	return out, nil
}
