package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"batteryswap/api"
	"batteryswap/models"
	"batteryswap/store"
)

func openStore(ctx context.Context, cfg Config) (*store.Store, error) {
	return store.Open(ctx, cfg.DatabaseURL, storeOptions(cfg))
}

func storeOptions(cfg Config) store.Options {
	return store.Options{
		ReadyCharge: cfg.ReadyCharge, BookingHold: cfg.BookingHold, BookingWarn: cfg.BookingWarn, Logger: newLogger(cfg, io.Discard),
	}
}

// migrated readies the database for serve and the commands that write:
// with AUTO_MIGRATE it applies pending migrations, without it refuses to
// go on while some are pending (they would fail on a missing table).
func migrated(ctx context.Context, s *store.Store, cfg Config) error {
	if cfg.AutoMigrate {
		return s.Migrate(ctx)
	}
	pending, err := s.MigrationsPending(ctx)
	if err != nil {
		return err
	}
	if pending {
		return errors.New("the database has migrations pending and AUTO_MIGRATE is false: run \"batteryswap migrate up\" first")
	}
	return nil
}

func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, words, err := parse("migrate", args, getenv, stderr, 1, nil)
	if err != nil {
		return err
	}
	dir := "up"
	if len(words) > 0 {
		dir = words[0]
	}
	if dir != "up" && dir != "down" && dir != "status" {
		return fmt.Errorf("migrate: unknown direction %q (up, down or status)", dir)
	}
	opts := storeOptions(cfg)
	// Only up makes a database: status and down read or undo one that
	// exists, and leave no empty file behind where there was none.
	opts.Existing = dir != "up"
	s, err := store.Open(ctx, cfg.DatabaseURL, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	switch dir {
	case "up":
		if err := s.Migrate(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "migrations applied")
	case "down":
		rolledBack, err := s.MigrateDown(ctx)
		if err != nil {
			return err
		}
		if !rolledBack {
			fmt.Fprintln(stdout, "nothing to roll back: no migration is applied")
			return nil
		}
		fmt.Fprintln(stdout, "rolled back one migration")
	case "status":
		return s.MigrationStatus(ctx, stdout)
	}
	return nil
}

func cmdBroadcast(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var stationID int64
	var message string
	cfg, _, err := parse("broadcast", args, getenv, stderr, 0, func(fs *flag.FlagSet) {
		fs.Int64Var(&stationID, "station-id", 0, "only this station (default: every station)")
		fs.StringVar(&message, "message", "test broadcast", "message carried by the test event")
	})
	if err != nil {
		return err
	}
	if stationID < 0 {
		return fmt.Errorf("broadcast: --station-id must be a station's id (or 0 for every station), not %d", stationID)
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := migrated(ctx, s, cfg); err != nil {
		return err
	}
	n, err := s.BroadcastTest(ctx, stationID, message)
	if err != nil {
		return err
	}
	// The events wait in the outbox; the relay of a running instance
	// publishes them to every instance (NOTIFY wakes it on PostgreSQL).
	fmt.Fprintf(stdout, "queued %d test inventory_update event(s)\n", n)
	return nil
}

// stdin is where "--password -" reads from; tests replace it.
var stdin io.Reader = os.Stdin

// readSecretLine reads one line, without its line ending.
func readSecretLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		if err == io.EOF {
			return "", errors.New("nothing to read")
		}
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

const usersUsage = "usage: batteryswap users create --email E --password P [--name N] [--admin]\n" +
	"       batteryswap users set-role --email E --role user|admin"

func cmdUsers(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var email, password, name, role string
	var admin bool
	cfg, words, err := parse("users", args, getenv, stderr, 1, func(fs *flag.FlagSet) {
		fs.StringVar(&email, "email", "", "e-mail address (required)")
		fs.StringVar(&password, "password", "", "create: password, 8+ characters (required); - reads it from the first line of standard input, out of ps and shell history")
		fs.StringVar(&name, "name", "", "create: display name (default: the part of the e-mail before @)")
		fs.BoolVar(&admin, "admin", false, "create: make the user an admin")
		fs.StringVar(&role, "role", "", "set-role: user or admin")
	})
	if err != nil {
		return err
	}
	if len(words) == 1 && words[0] == "set-role" {
		return setRole(ctx, cfg, email, models.Role(role), stdout)
	}
	if len(words) != 1 || words[0] != "create" {
		return errors.New(usersUsage)
	}
	if password == "-" {
		if password, err = readSecretLine(stdin); err != nil {
			return fmt.Errorf("users create: reading the password from standard input: %w", err)
		}
	}
	email = models.NormalizeEmail(email)
	if name == "" {
		name, _, _ = strings.Cut(email, "@")
	}
	if err := models.ValidateRegistration(email, password, name); err != nil {
		return describe(err)
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := migrated(ctx, s, cfg); err != nil {
		return err
	}
	hash, err := api.HashPassword(password, 0)
	if err != nil {
		return err
	}
	newRole := models.RoleUser
	if admin {
		newRole = models.RoleAdmin
	}
	u, err := s.CreateUser(ctx, email, name, hash, newRole)
	if err != nil {
		return describe(err)
	}
	fmt.Fprintf(stdout, "created user %d <%s>, role %s\n", u.ID, u.Email, u.Role)
	return nil
}

// setRole gives an account a role. A change of role ends the account's
// tokens on every instance within seconds; its next sign-in carries the
// new role.
func setRole(ctx context.Context, cfg Config, email string, role models.Role, stdout io.Writer) error {
	if email == "" || !role.Valid() {
		return errors.New(usersUsage)
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := migrated(ctx, s, cfg); err != nil {
		return err
	}
	u, err := s.SetUserRole(ctx, email, role)
	if err != nil {
		return describe(err)
	}
	fmt.Fprintf(stdout, "user %d <%s> now has role %s; tokens signed before a change stop working within seconds\n", u.ID, u.Email, u.Role)
	return nil
}

// describe renders a domain error for a terminal.
func describe(err error) error {
	var b strings.Builder
	b.WriteString(err.Error())
	if e, ok := err.(*models.Error); ok {
		for f, m := range e.Fields {
			fmt.Fprintf(&b, "\n  %s: %s", f, m)
		}
	}
	return fmt.Errorf("%s", b.String())
}
