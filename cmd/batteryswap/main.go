// Command batteryswap runs the battery-swap booking service and its tools:
// serve (the default), demo, migrate, broadcast, watch and users.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the flags were listed, as asked
		}
		fmt.Fprintln(os.Stderr, "batteryswap:", err)
		os.Exit(1)
	}
}

const usage = `batteryswap — battery-swap booking service

Usage:
  batteryswap [serve] [flags]                 run the HTTP server (default)
  batteryswap demo [--riders N] [--speed X] [--seed S]
                                              serve a seeded demo network kept alive by a simulator
  batteryswap migrate [up|down|status]        apply or inspect SQL migrations
  batteryswap broadcast [--station-id N] [--message TEXT]
                                              publish a test inventory_update
  batteryswap watch URL                       follow a live stream, one JSON line per event
  batteryswap users create --email E --password P [--name N] [--admin]
  batteryswap users set-role --email E --role user|admin

serve, demo, migrate, broadcast and users take the configuration flags (run
"batteryswap serve -h" to list them); watch takes its own ("watch -h").
Flags may come before or after a command's words; the configuration flags
also before the command (batteryswap --database-url URL migrate status).
`

// run dispatches a sub-command. It is main without the process: tests call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		cmd, args = "help", nil
	} else if i := commandAt(args); i >= 0 {
		cmd, args = args[i], append(args[:i:i], args[i+1:]...)
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, args, getenv, stderr)
	case "demo":
		return cmdDemo(ctx, args, getenv, stderr)
	case "migrate":
		return cmdMigrate(ctx, args, getenv, stdout, stderr)
	case "broadcast":
		return cmdBroadcast(ctx, args, getenv, stdout, stderr)
	case "watch":
		return cmdWatch(ctx, args, getenv, stdout, stderr)
	case "users":
		return cmdUsers(ctx, args, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// commandAt finds the command word in args: the first word, after any
// configuration flags (batteryswap --database-url X migrate status), or -1
// when there is none and serve is meant. A word that is no command is
// returned too, for run to call it unknown. Every configuration flag takes
// a value, so "--addr serve" is a flag and its value, not the command.
func commandAt(args []string) int {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return -1
		}
		if !strings.HasPrefix(a, "-") {
			return i
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !slices.ContainsFunc(settings, func(s setting) bool { return s.flag == name }) {
			return -1 // not a configuration flag: the command's flag parsing reports it
		}
		if !hasValue {
			i++ // its value
		}
	}
	return -1
}

// parse registers the configuration flags plus extra ones on a new flag set,
// parses args and loads the configuration. Flags may come before or after
// the command's words (migrate down --database-url …): the flag package
// alone would stop at the first word and silently ignore every flag after
// it. The words come back in order; more than maxWords is an error.
func parse(name string, args []string, getenv func(string) string, stderr io.Writer, maxWords int, extra func(*flag.FlagSet)) (Config, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := registerFlags(fs)
	if extra != nil {
		extra(fs)
	}
	words, err := parseAnywhere(fs, args)
	if err != nil {
		return Config{}, nil, err
	}
	if len(words) > maxWords {
		return Config{}, nil, fmt.Errorf("%s: unexpected argument %q", name, words[maxWords])
	}
	cfg, err := loadConfig(getenv, givenFlags(fs, flags))
	return cfg, words, err
}

// parseAnywhere parses fs's flags wherever they stand among args and returns
// the other words in order.
func parseAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return words, nil
		}
		words, args = append(words, fs.Arg(0)), fs.Args()[1:]
	}
}
