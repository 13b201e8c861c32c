package stream

import (
	"encoding/json"
	"strconv"

	"batteryswap/models"
)

// MergeLatest merges a run of pending station events (in Seq order) to
// what a reader that only wants the current state needs: per station the
// newest inventory_update and the newest station_status, each carrying in
// "skipped" how many events it replaces (its own older ones, and for
// inventory_update the station's battery_* events before it, whose counts
// it supersedes). A battery_* event with no newer inventory_update of its
// station is kept, as is every event that is not a station's. The result
// is in Seq order; events ids still increase. msgs is reused.
func MergeLatest(msgs []*Message) []*Message {
	type station struct {
		inv, status       *Message // the newest of each, once seen (walking backwards)
		invSkip, statSkip int
	}
	seen := make(map[int64]*station)
	keep := make([]bool, len(msgs))
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		id, ok := m.ev.Topic.StationID()
		if !ok {
			keep[i] = true
			continue
		}
		st := seen[id]
		if st == nil {
			st = &station{}
			seen[id] = st
		}
		switch typ := m.ev.Type; {
		case typ == models.EventInventoryUpdate && st.inv == nil:
			st.inv, keep[i] = m, true
		case typ == models.EventInventoryUpdate:
			st.invSkip += 1 + m.skipped
		case typ == models.EventStationStatus && st.status == nil:
			st.status, keep[i] = m, true
		case typ == models.EventStationStatus:
			st.statSkip += 1 + m.skipped
		case isBatteryEvent(typ) && st.inv != nil:
			st.invSkip += 1 + m.skipped
		default:
			keep[i] = true
		}
	}
	out := msgs[:0]
	for i, m := range msgs {
		if !keep[i] {
			continue
		}
		if id, ok := m.ev.Topic.StationID(); ok {
			switch st := seen[id]; {
			case m == st.inv && st.invSkip > 0:
				m = m.withSkipped(m.skipped + st.invSkip)
			case m == st.status && st.statSkip > 0:
				m = m.withSkipped(m.skipped + st.statSkip)
			}
		}
		out = append(out, m)
	}
	clear(msgs[len(out):])
	return out
}

func isBatteryEvent(typ string) bool {
	switch typ {
	case models.EventBatteryBooked, models.EventBatteryCollected, models.EventBatteryAdded:
		return true
	}
	return false
}

// withSkipped returns a copy of m whose payload says it replaces n events.
// It is a message of one subscriber's, not shared.
func (m *Message) withSkipped(n int) *Message {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(m.ev.Payload, &fields); err != nil {
		return m // a payload the store wrote is an object; keep the event as it is
	}
	fields["skipped"] = json.RawMessage(strconv.Itoa(n))
	payload, err := json.Marshal(fields)
	if err != nil {
		return m
	}
	ev := *m.ev
	ev.Payload = payload
	out := NewMessage(&ev)
	out.skipped = n
	return out
}
