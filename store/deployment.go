package store

import (
	"context"
	"errors"
)

// DeploymentID returns the identity this database was given when its
// schema was made (migration 00004): access tokens carry it in their
// audience, so a token of another deployment is refused even when it was
// signed with the same JWT_SECRET. It does not change while the database
// lives; a database restored from another deployment's backup carries that
// deployment's id.
func (s *Store) DeploymentID(ctx context.Context) (string, error) {
	var ids []string
	if err := s.db.WithContext(ctx).Raw("SELECT id FROM deployment").Scan(&ids).Error; err != nil {
		return "", translate(err, "deployment")
	}
	if len(ids) != 1 || ids[0] == "" {
		return "", errors.New("store: the database has no deployment id: apply the migrations (batteryswap migrate up)")
	}
	return ids[0], nil
}
