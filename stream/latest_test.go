package stream

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"batteryswap/models"
)

// latestEvent is a station event of the given type.
func latestEvent(seq, station int64, typ string) *Message {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return NewMessage(&models.Event{Seq: seq, Type: typ, Topic: models.StationTopic(station), CreatedAt: at,
		Payload: models.NewPayload(typ, at, map[string]any{"station_id": station, "seq": seq})})
}

// skippedOf reads "skipped" from a message's JSON (0 when absent).
func skippedOf(t *testing.T, m *Message) int {
	t.Helper()
	var v struct {
		ID      string `json:"id"`
		Skipped int    `json:"skipped"`
	}
	if err := json.Unmarshal(m.Data(), &v); err != nil {
		t.Fatal(err)
	}
	if v.ID != m.Event().ID() {
		t.Fatalf("data id %s, event %s", v.ID, m.Event().ID())
	}
	return v.Skipped
}

func TestMergeLatest(t *testing.T) {
	const (
		inv    = models.EventInventoryUpdate
		status = models.EventStationStatus
		booked = models.EventBatteryBooked
		added  = models.EventBatteryAdded
	)
	for _, tc := range []struct {
		name  string
		given []*Message
		want  []int64 // seqs kept
		skip  []int   // their "skipped"
	}{
		{"nothing to merge", []*Message{latestEvent(1, 1, inv), latestEvent(2, 2, inv), latestEvent(3, 1, status)}, []int64{1, 2, 3}, []int{0, 0, 0}},
		{"the newest inventory_update per station, battery events before it folded in",
			[]*Message{latestEvent(1, 1, booked), latestEvent(2, 1, inv), latestEvent(3, 2, inv), latestEvent(4, 1, booked), latestEvent(5, 1, inv), latestEvent(6, 2, inv)},
			[]int64{5, 6}, []int{3, 1}},
		{"the newest station_status per station",
			[]*Message{latestEvent(1, 1, status), latestEvent(2, 1, inv), latestEvent(3, 1, status), latestEvent(4, 1, status)},
			[]int64{2, 4}, []int{0, 2}},
		{"a battery event with no newer counts is kept",
			[]*Message{latestEvent(1, 1, inv), latestEvent(2, 1, added)},
			[]int64{1, 2}, []int{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := MergeLatest(slices.Clone(tc.given))
			if seqs := msgSeqs(got); !slices.Equal(seqs, tc.want) {
				t.Fatalf("kept %v, want %v", seqs, tc.want)
			}
			for i, m := range got {
				if n := skippedOf(t, m); n != tc.skip[i] {
					t.Errorf("event %d: skipped %d, want %d", m.Seq(), n, tc.skip[i])
				}
			}
		})
	}
	// Merging what was merged adds up.
	first := MergeLatest([]*Message{latestEvent(1, 1, inv), latestEvent(2, 1, inv)})
	again := MergeLatest(append(first, latestEvent(3, 1, booked), latestEvent(4, 1, inv)))
	if len(again) != 1 || again[0].Seq() != 4 || skippedOf(t, again[0]) != 3 {
		t.Fatalf("merged twice: %v, skipped %d; want event 4 replacing 3", msgSeqs(again), skippedOf(t, again[len(again)-1]))
	}
	// Shared messages are never modified.
	shared := latestEvent(9, 1, inv)
	before := string(shared.Data())
	MergeLatest([]*Message{latestEvent(8, 1, inv), shared})
	if string(shared.Data()) != before {
		t.Fatal("MergeLatest changed a shared message")
	}
}

// A latest subscriber that stops reading is never dropped: its queue stays
// bounded by the stations it follows while events pour in, and what it
// reads at last ends with the newest state of each, in order; an "all" subscriber
// beside it with the same queue size is dropped.
func TestLatestSubscriberStaysBounded(t *testing.T) {
	h, b, o := testHub(t, HubOptions{QueueSize: 16})
	ctx := testContext(t)
	latest, err := h.Subscribe(ctx, []models.Topic{models.TopicStations}, DeliverLatest)
	if err != nil {
		t.Fatal(err)
	}
	defer latest.Close()
	latest.StartAtHead()
	all := subscribe(t, h, 0, models.TopicStations)
	const stations, rounds = 5, 400
	for r := range rounds {
		topic := models.StationTopic(int64(r%stations + 1))
		o.addTyped(topic, models.EventBatteryBooked)
		o.addTyped(topic, models.EventInventoryUpdate)
		mustPublish(t, b, o.sequence()...)
		latest.mu.Lock()
		n := len(latest.q)
		latest.mu.Unlock()
		if n > 2*16 {
			t.Fatalf("round %d: %d events queued, want at most %d", r, n, 2*16)
		}
	}
	if _, err := all.Next(ctx, nil); err != ErrSlowConsumer {
		t.Fatalf("the all subscriber: %v, want ErrSlowConsumer", err)
	}
	batch, err := latest.Next(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(msgSeqs(batch)) || len(batch) > 2*16 {
		t.Fatalf("read %v, want at most %d events, in order", msgSeqs(batch), 2*16)
	}
	newest := map[models.Topic]*Message{}
	for _, m := range batch {
		newest[m.Event().Topic] = m
	}
	last := int64(2 * rounds)
	for topic, m := range newest {
		if m.Event().Type != models.EventInventoryUpdate || m.Seq() <= last-2*stations {
			t.Errorf("%s ends with event %d (%s): want its last inventory update", topic, m.Seq(), m.Event().Type)
		}
	}
	if len(newest) != stations {
		t.Errorf("read events of %d stations, want %d", len(newest), stations)
	}
	total := len(batch)
	for _, m := range batch {
		total += skippedOf(t, m)
	}
	if total != 2*rounds {
		t.Errorf("events read plus skipped = %d, want all %d", total, 2*rounds)
	}
}

// Latest delivery is for station topics only.
func TestLatestNeedsStationTopics(t *testing.T) {
	h, _, _ := testHub(t, HubOptions{})
	_, err := h.Subscribe(context.Background(), []models.Topic{models.TopicStations, models.UserTopic(1)}, DeliverLatest)
	if !models.IsCode(err, models.CodeInvalidRequest) {
		t.Fatalf("Subscribe = %v, want invalid_request", err)
	}
}
