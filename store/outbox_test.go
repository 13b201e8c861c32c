package store_test

import (
	"strings"
	"testing"

	"batteryswap/models"
)

// contractFields are the payload fields CONTRACT §5 promises per event type.
var contractFields = map[string][]string{
	models.EventInventoryUpdate:  {"station_id", "station_name", "available_batteries", "booked_batteries", "charging_batteries", "total_batteries", "action"},
	models.EventBatteryBooked:    {"station_id", "station_name", "battery_id", "booking_id", "available_batteries", "booked_batteries"},
	models.EventBatteryCollected: {"station_id", "station_name", "battery_id", "returned_battery_id", "available_batteries", "booked_batteries", "charging_batteries"},
	models.EventBatteryAdded:     {"station_id", "station_name", "battery_id", "available_batteries", "total_batteries"},
	models.EventStationStatus:    {"station_id", "station_name", "status", "message"},
	models.EventBookingConfirmed: {"booking_id", "station_id", "station_name", "battery_info", "message"},
	models.EventBookingReady:     {"booking_id", "station_id", "station_name", "message"},
	models.EventBookingExpiring:  {"booking_id", "station_id", "station_name", "expires_at", "message"},
	models.EventBookingCancelled: {"booking_id", "station_id", "station_name", "message"},
	models.EventBookingExpired:   {"booking_id", "station_id", "station_name", "message"},
	models.EventBookingCollected: {"booking_id", "station_id", "station_name", "message"},
	models.EventNotification:     {"title", "message", "level"},
}

// TestEveryChangeWritesItsContractEvents drives each kind of change and checks
// the exact events it writes, their topics and their fields.
func TestEveryChangeWritesItsContractEvents(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		rider := f.user("fields@example.com")
		userTopic := models.UserTopic(rider.ID)
		var st *models.Station
		var booking *models.Booking
		steps := []struct {
			name string
			when func() error
			want string // station events, then user events
		}{
			{"create station", func() (err error) {
				st, err = f.s.CreateStation(f.ctx, models.StationInput{Name: "Fields", Address: "1 Field Rd", Latitude: 1, Longitude: 1})
				return err
			}, "station_status,inventory_update|"},
			{"add battery", func() error {
				c := 50
				_, err := f.s.AddBattery(f.ctx, st.ID, models.BatteryInput{SerialNumber: "F-1", ChargePercent: &c})
				return err
			}, "battery_added,inventory_update|"},
			{"add a second battery", func() error {
				c := 40
				_, err := f.s.AddBattery(f.ctx, st.ID, models.BatteryInput{SerialNumber: "F-2", ChargePercent: &c})
				return err
			}, "battery_added,inventory_update|"},
			{"book a charging battery", func() (err error) {
				booking, _, err = f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
				return err
			}, "battery_booked,inventory_update|booking_confirmed"},
			{"a second booking of the same rider writes nothing", func() error {
				// The claim of the other battery and the refused insert are
				// one statement on PostgreSQL: the claim must not survive.
				before, err := f.s.FindStationByID(f.ctx, st.ID)
				if err != nil {
					return err
				}
				if _, _, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, ""); !models.IsCode(err, models.CodeActiveBookingExists) {
					t.Fatalf("second active booking: %v", err)
				}
				after, err := f.s.FindStationByID(f.ctx, st.ID)
				if err != nil {
					return err
				}
				if after.Inventory != before.Inventory {
					t.Fatalf("refused booking changed the counts: %+v -> %+v", before.Inventory, after.Inventory)
				}
				return nil
			}, "|"},
			{"telemetry charges it", func() error {
				c := 100
				_, err := f.s.UpdateBattery(f.ctx, booking.BatteryID, models.BatteryPatch{ChargePercent: &c})
				return err
			}, "|booking_ready"},
			{"station status", func() error {
				m, s := "pump broken", models.StationMaintenance
				_, err := f.s.UpdateStation(f.ctx, st.ID, models.StationPatch{Status: &s, Message: &m})
				return err
			}, "station_status|"},
			{"cancel", func() error {
				_, err := f.s.CancelBooking(f.ctx, booking.ID, rider)
				return err
			}, "inventory_update|booking_cancelled"},
			{"admin notification", func() error {
				_, err := f.s.CreateNotification(f.ctx, models.NotificationInput{UserID: rider.ID, Title: "Hello", Message: "Welcome", Level: models.LevelInfo})
				return err
			}, "|notification"},
			{"a refused change writes nothing", func() error {
				_, _, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
				if !models.IsCode(err, models.CodeStationUnavailable) {
					t.Fatalf("booking at a station in maintenance: %v", err)
				}
				return nil
			}, "|"},
		}
		var userEvents []models.Event
		for _, step := range steps {
			before := f.head()
			if err := step.when(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			stationEvs := f.events(before, models.TopicStations)
			userEvs := f.events(before, userTopic)
			if got := strings.Join(types(stationEvs), ",") + "|" + strings.Join(types(userEvs), ","); got != step.want {
				t.Fatalf("%s wrote %s, want %s", step.name, got, step.want)
			}
			for _, e := range append(stationEvs, userEvs...) {
				m := payload(t, e)
				for _, field := range append([]string{"type", "id", "timestamp"}, contractFields[e.Type]...) {
					if _, ok := m[field]; !ok {
						t.Errorf("%s: %s lacks %q: %s", step.name, e.Type, field, e.Data())
					}
				}
				if sid, ok := e.Topic.StationID(); ok && (sid != st.ID || m["station_id"] != float64(st.ID)) {
					t.Errorf("%s: %s on topic %s for station %v", step.name, e.Type, e.Topic, m["station_id"])
				}
			}
			// Counts in an event are the station's counts after its change.
			if st != nil {
				cur, err := f.s.FindStationByID(f.ctx, st.ID)
				if err != nil {
					t.Fatal(err)
				}
				now := map[string]int{"available_batteries": cur.Available, "booked_batteries": cur.Booked,
					"charging_batteries": cur.Charging, "total_batteries": cur.Total}
				for _, e := range stationEvs {
					m := payload(t, e)
					for k, want := range now {
						if got, ok := m[k]; ok && got != float64(want) {
							t.Errorf("%s: %s says %s = %v, the station has %d", step.name, e.Type, k, got, want)
						}
					}
				}
			}
			userEvents = append(userEvents, userEvs...)
			for _, e := range userEvs {
				if e.Topic != userTopic {
					t.Errorf("%s: user event on topic %s", step.name, e.Topic)
				}
			}
		}
		// Each user event is also kept as a notification.
		ns, err := f.s.ListNotifications(f.ctx, rider.ID, false, models.Page{Limit: 50})
		if err != nil || len(ns) != 4 {
			t.Fatalf("notifications = %d (%v), want 4", len(ns), err)
		}
		// ... and each user event names its own notification.
		kept := map[float64]string{}
		for _, n := range ns {
			kept[float64(n.ID)] = n.Type
		}
		for _, e := range userEvents {
			id, _ := payload(t, e)["notification_id"].(float64)
			if kept[id] != e.Type {
				t.Errorf("%s names notification %v, which is a %q", e.Type, id, kept[id])
			}
		}
	})
}
