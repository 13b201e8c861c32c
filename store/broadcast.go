package store

import (
	"context"

	"gorm.io/gorm"

	"batteryswap/models"
)

// BroadcastTest writes a test inventory_update (action "test") for one
// station, or for every station when stationID is 0, through the outbox, so
// it reaches every instance exactly as a real change would. It returns how
// many events it wrote.
func (s *Store) BroadcastTest(ctx context.Context, stationID int64, message string) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var rows []stationRow
		q := tx.Order("id")
		if stationID > 0 {
			q = q.Where("id = ?", stationID)
		}
		if err := q.Find(&rows).Error; err != nil {
			return err
		}
		if stationID > 0 && len(rows) == 0 {
			return models.Errorf(models.CodeNotFound, "station %d not found", stationID)
		}
		if len(rows) == 0 {
			return nil
		}
		ids := make([]int64, len(rows))
		for i := range rows {
			ids[i] = rows[i].ID
		}
		inv, err := inventories(tx, ids)
		if err != nil {
			return err
		}
		o := s.outbox(tx, s.now())
		for i := range rows {
			f := inventoryFields(rows[i].model(inv[rows[i].ID]), models.ActionTest)
			f["message"] = message
			o.add(models.EventInventoryUpdate, models.StationTopic(rows[i].ID), f)
		}
		n = len(rows)
		return o.flush()
	})
	return n, translate(err, "station")
}
