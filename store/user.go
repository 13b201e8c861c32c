package store

import (
	"context"
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
	CreatedAt    time.Time
}

func (userRow) TableName() string { return "users" }

func (r *userRow) model() *models.User {
	return &models.User{ID: r.ID, Email: r.Email, Name: r.Name, Role: models.Role(r.Role), PasswordHash: r.PasswordHash, CreatedAt: r.CreatedAt}
}

// CreateUser adds an account; the e-mail is normalised and must be unused
// (email_taken).
func (s *Store) CreateUser(ctx context.Context, email, name, passwordHash string, role models.Role) (*models.User, error) {
	r := userRow{Email: models.NormalizeEmail(email), Name: name, PasswordHash: passwordHash, Role: string(role), CreatedAt: s.now()}
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
			r = userRow{Email: models.NormalizeEmail(email), Name: name, PasswordHash: passwordHash, Role: string(models.RoleAdmin), CreatedAt: s.now()}
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
		r.Role, r.PasswordHash = string(models.RoleAdmin), passwordHash
		if err := tx.Model(&userRow{}).Where("id = ?", r.ID).Updates(map[string]any{"role": r.Role, "password_hash": r.PasswordHash}).Error; err != nil {
			return err
		}
		out = r.model()
		return nil
	})
	return out, was, err
}
