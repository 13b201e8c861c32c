package sseclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"batteryswap/sseclient"
)

// A stream that ends in the middle of a frame (a server dropping a slow
// reader, or stopping) must not yield that frame: its data is cut short,
// and resuming after its id would lose the event. Follow drops it and
// resumes after the last whole event, which the server then sends again.
func TestFollowDropsAFrameCutOffByTheEndOfTheStream(t *testing.T) {
	for _, nl := range []string{"\n", "\r\n", "\r"} {
		t.Run(fmt.Sprintf("%q", nl), func(t *testing.T) {
			var conns atomic.Int32
			resumed := make(chan string, 4)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				frame := func(id int) string {
					return fmt.Sprintf("id: %d%sevent: e%sdata: {\"n\":%d}%s%s", id, nl, nl, id, nl, nl)
				}
				if conns.Add(1) == 1 {
					// Two whole events, then the third cut off in its data line.
					whole := frame(1) + frame(2)
					third := frame(3)
					fmt.Fprint(w, whole+third[:len(third)-4-len(nl)]) // up to the middle of its data
					return
				}
				resumed <- r.Header.Get("Last-Event-ID")
				fmt.Fprint(w, frame(3))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}))
			defer srv.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var got []string
			done := errors.New("done")
			err := sseclient.Follow(ctx, srv.URL, sseclient.Options{MaxBackoff: 50 * time.Millisecond}, func(ev sseclient.Event) error {
				got = append(got, ev.ID+" "+string(ev.Data))
				if len(got) == 3 {
					return done
				}
				return nil
			})
			if !errors.Is(err, done) {
				t.Fatalf("Follow: %v (events %q)", err, got)
			}
			if want := fmt.Sprint([]string{`1 {"n":1}`, `2 {"n":2}`, `3 {"n":3}`}); fmt.Sprint(got) != want {
				t.Fatalf("events %q, want %s", got, want)
			}
			if id := <-resumed; id != "2" {
				t.Fatalf("resumed with Last-Event-ID %q, want 2", id)
			}
		})
	}
}
