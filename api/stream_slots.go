package api

// writeSlots bounds how many hijacked streams write to their sockets at
// once. A fan-out makes every subscriber's goroutine runnable at the same
// moment; if they could all run, every P would stay busy until the last
// write, and Go's scheduler polls the network only when a P has nothing
// else to run (or from sysmon, every 10 ms). Meanwhile what the network
// woke, the booking or station change whose database round trips make the
// next event, the relay and the broker's reader, would wait behind the
// fan-out for each of its round trips, and under load the stream fell
// behind for good (docs/BENCHMARKS.md, "Writes that leave a P free"). With
// at most GOMAXPROCS-1 writers one P is always free, and cmd/batteryswap
// runs one P more than the machine has CPUs, so the writers still have
// every CPU. A writer holds its slot only while the kernel takes its
// bytes, never while it waits for a full socket to drain
// (sysWriter.send): a client that stops reading holds none. Once that
// socket has room, the rest of the write goes out without a slot, so the
// cap is exact only for clients that keep up: a fan-out makes few such
// resumed writes, and waiting for a slot again would hold up a client
// that is already behind.
type writeSlots chan struct{}

// take waits for a slot.
func (w writeSlots) take() { w <- struct{}{} }

// give returns a slot taken.
func (w writeSlots) give() { <-w }
