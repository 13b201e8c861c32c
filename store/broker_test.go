package store_test

import (
	"context"
	"testing"
	"time"

	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
	"batteryswap/stream"
)

// handlerFunc is a stream.Handler that hands each delivered run to f.
type handlerFunc func(topic models.Topic, msgs []*stream.Message)

func (f handlerFunc) Deliver(topic models.Topic, msgs []*stream.Message) { f(topic, msgs) }
func (handlerFunc) Resync()                                              {}

// With PostgreSQL as the broker, a batch the relay publishes on one
// instance reaches another instance through the store's announcement
// (NOTIFY on batteryswap_published, heard on its LISTEN connection), not
// only through the broker's poll: with the poll an hour apart, every change
// still arrives at once, the second one too (the first could also have
// ridden on the listener's wake-up when it connected).
func TestPostgresBrokerDeliversOnAnnouncement(t *testing.T) {
	url := storetest.URL(t, "postgres")
	a, b := storetest.OpenURL(t, url, store.Options{}), storetest.OpenURL(t, url, store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	got := make(chan int64, 64)
	reader := stream.NewPostgresBroker(b, b, stream.PostgresOptions{Poll: time.Hour})
	defer reader.Close()
	reader.Start(handlerFunc(func(_ models.Topic, msgs []*stream.Message) {
		for _, m := range msgs {
			got <- m.Seq()
		}
	}))
	if err := reader.Subscribe(ctx, models.TopicStations); err != nil {
		t.Fatal(err)
	}

	publisher := stream.NewPostgresBroker(a, a, stream.PostgresOptions{Poll: time.Hour})
	defer publisher.Close()
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		_ = stream.NewRelay(a, publisher, stream.RelayOptions{}).Run(ctx)
	}()
	defer func() { cancel(); <-relayDone }()

	st, err := a.CreateStation(ctx, models.StationInput{Name: "Bus", Address: "1 Bus Rd", Latitude: 1, Longitude: 1})
	if err != nil {
		t.Fatal(err)
	}
	last := waitDelivered(t, got, 2, 0) // station_status, inventory_update
	m, s := "closed for the night", models.StationClosed
	if _, err := a.UpdateStation(ctx, st.ID, models.StationPatch{Status: &s, Message: &m}); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, got, 1, last)
}

// waitDelivered waits for n sequence numbers after last, in order, and
// returns the last one.
func waitDelivered(t *testing.T, got <-chan int64, n int, last int64) int64 {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for range n {
		select {
		case seq := <-got:
			if seq <= last {
				t.Fatalf("delivered %d after %d", seq, last)
			}
			last = seq
		case <-deadline:
			t.Fatalf("no delivery within 10 s after %d (the poll is an hour away: the announcement did not arrive)", last)
		}
	}
	return last
}
