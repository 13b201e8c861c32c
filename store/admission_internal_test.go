package store

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
)

// Waiters are let in in the order they arrived, one per place given back;
// a waiter whose context ends leaves the queue without taking a place.
func TestAdmissionIsFirstComeFirstServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		a := make(admission, 2)
		for range 2 {
			if err := a.enter(ctx); err != nil {
				t.Fatal(err)
			}
		}
		const waiters = 8
		admitted := make(chan int, waiters)
		for i := range waiters {
			go func() {
				if err := a.enter(ctx); err != nil {
					t.Error(err)
					return
				}
				admitted <- i
			}()
			synctest.Wait() // waiter i is queued before waiter i+1 arrives
		}
		for want := range waiters {
			a.leave()
			synctest.Wait()
			select {
			case got := <-admitted:
				if got != want {
					t.Fatalf("waiter %d was let in when waiter %d had waited longest", got, want)
				}
			default:
				t.Fatalf("a place was given back and nobody was let in (waiter %d waits)", want)
			}
		}

		cctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- a.enter(cctx) }()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("enter with a cancelled context = %v, want context.Canceled", err)
		}
		if len(a) != 2 {
			t.Fatalf("%d places taken, want 2: the cancelled waiter took one", len(a))
		}
	})
}
