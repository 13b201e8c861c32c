package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"

	"batteryswap/sseclient"
)

// cmdWatch follows a stream and prints one JSON line per event. It reconnects
// for ever with backoff, resumes with Last-Event-ID, and exits cleanly on
// Ctrl-C.
func cmdWatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	token := fs.String("token", getenv("BATTERYSWAP_TOKEN"), "access token (env BATTERYSWAP_TOKEN) for /stream/notifications")
	since := fs.String("last-event-id", "", "resume after this event id")
	quiet := fs.Bool("quiet", false, "do not report reconnects on stderr")
	words, err := parseAnywhere(fs, args)
	if err != nil {
		return err
	}
	if len(words) != 1 {
		return fmt.Errorf("usage: batteryswap watch [--token T] [--last-event-id N] URL")
	}
	u, err := url.Parse(words[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("watch: %q is not an http(s) URL", words[0])
	}
	opts := sseclient.Options{LastEventID: *since, Headers: map[string]string{}}
	if *token != "" {
		opts.Headers["Authorization"] = "Bearer " + *token
	}
	connects := 0
	opts.OnConnect = func() {
		connects++
		if connects > 1 && !*quiet {
			fmt.Fprintln(stderr, "watch: reconnected")
		}
	}
	err = sseclient.Follow(ctx, u.String(), opts, func(ev sseclient.Event) error {
		_, err := fmt.Fprintf(stdout, "%s\n", ev.Data)
		return err
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
