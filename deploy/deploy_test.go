// Package deploy_test checks that the deployment files (Dockerfile,
// .dockerignore, compose.yaml, deploy/nginx.conf) agree with each other and
// with the binary: its settings and defaults (cmd/batteryswap/config.go), its
// body limit and longest long-poll (api/), and its module (go.mod).
//
// Every check is a function from the files' text to a list of problems, so
// TestChecksCatchDisagreement can feed each one altered files and prove that
// it notices.
package deploy_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// repoRoot is the module root: go test runs in deploy/.
const repoRoot = ".."

// Contract values used when the code they come from cannot be read (the
// tests read them from the code when they can): CONTRACT.md §2 (bodies over
// 1 MiB are 413) and §4 (long-poll waits at most 60 s).
const (
	contractBodyLimit   = 1 << 20
	contractLongPollMax = 60 * time.Second
)

// deployFiles is the text of every file the checks read.
type deployFiles struct {
	compose, nginx, dockerfile, dockerignore string
	config                                   string // cmd/batteryswap/config.go
	api                                      string // api/*.go, tests left out (body limit, longest long-poll)
	gomod                                    string
	// buildInputs are the repository files `go build` needs: go.mod, go.sum,
	// every non-test Go file and every file an embed pattern takes.
	buildInputs []string
}

func loadFiles(t *testing.T) deployFiles {
	t.Helper()
	read := func(rel string, required bool) string {
		b, err := os.ReadFile(filepath.Join(repoRoot, rel))
		if err != nil {
			if required {
				t.Fatalf("read %s: %v", rel, err)
			}
			return ""
		}
		return string(b)
	}
	f := deployFiles{
		compose:      read("compose.yaml", true),
		nginx:        read("deploy/nginx.conf", true),
		dockerfile:   read("Dockerfile", true),
		dockerignore: read(".dockerignore", true),
		config:       read("cmd/batteryswap/config.go", true),
		gomod:        read("go.mod", true),
	}
	apiFiles, _ := filepath.Glob(filepath.Join(repoRoot, "api", "*.go"))
	for _, p := range apiFiles {
		if !strings.HasSuffix(p, "_test.go") {
			f.api += read(filepath.Join("api", filepath.Base(p)), false) + "\n"
		}
	}
	inputs, err := buildInputs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	f.buildInputs = inputs
	return f
}

var embedLine = regexp.MustCompile(`(?m)^//go:embed\s+(.+)$`)

func buildInputs(root string) ([]string, error) {
	out := []string{"go.mod", "go.sum"}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" || rel == "testout" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		out = append(out, rel)
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range embedLine.FindAllStringSubmatch(string(src), -1) {
			for _, pat := range strings.Fields(m[1]) {
				matches, err := filepath.Glob(filepath.Join(filepath.Dir(p), filepath.FromSlash(strings.TrimPrefix(pat, "all:"))))
				if err != nil || len(matches) == 0 {
					return fmt.Errorf("%s: embed pattern %q matches nothing", rel, pat)
				}
				for _, mp := range matches {
					_ = filepath.WalkDir(mp, func(q string, e fs.DirEntry, err error) error {
						if err == nil && !e.IsDir() {
							r, _ := filepath.Rel(root, q)
							out = append(out, filepath.ToSlash(r))
						}
						return nil
					})
				}
			}
		}
		return nil
	})
	return out, err
}

// model is the parsed form of deployFiles.
type model struct {
	settings     map[string]string // env name -> default
	appPort      string            // from ADDR's default
	heartbeat    time.Duration     // HEARTBEAT_INTERVAL's default
	bodyLimit    int64
	longPollMax  time.Duration
	goVersion    string // go.mod "go" directive, major.minor
	services     map[string]composeService
	nginxRoot    *ngxDirective
	nginxHTTP    *ngxDirective
	nginxServer  *ngxDirective
	docker       []dockerStage
	dockerIgnore []ignorePattern
	buildInputs  []string
}

func (m *model) appServices() []string {
	var out []string
	for name, svc := range m.services {
		if isBatteryswap(svc) && isServe(svc) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func isBatteryswap(svc composeService) bool { return svc.Build != nil }

func isServe(svc composeService) bool {
	return len(svc.Command) == 0 || svc.Command[0] == "serve"
}

var (
	settingsBlock = regexp.MustCompile(`(?s)var settings = \[\]setting\{\n(.*?)\n\}\n`)
	settingEntry  = regexp.MustCompile(`(?m)^\s*\{"([A-Z][A-Z0-9_]*)",\s*"[^"]*",\s*"((?:[^"\\]|\\.)*)",`)
	goDirective   = regexp.MustCompile(`(?m)^go\s+(\d+\.\d+)`)
	bodyLimitRe   = regexp.MustCompile(`BodyLimit\("(\d+)\s*([KMGkmg]?)(?:i?B)?"\)`)
	maxBodyRe     = regexp.MustCompile(`maxBody\w*\s*=\s*(\d+)(?:\s*<<\s*(\d+))?`)
	pollMaxRe     = regexp.MustCompile(`maxPollTimeout\s*=\s*(\d+)\s*\*\s*time\.Second`)
)

// parseModel parses f; a file that cannot be read as expected is a problem.
func parseModel(f deployFiles) (*model, []string) {
	m := &model{settings: map[string]string{}, bodyLimit: contractBodyLimit, longPollMax: contractLongPollMax,
		buildInputs: f.buildInputs}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// The binary's settings: the `settings` list of cmd/batteryswap/config.go.
	if blk := settingsBlock.FindStringSubmatch(f.config); blk == nil {
		bad("cmd/batteryswap/config.go: no `var settings = []setting{` list found (update deploy_test.go if it moved)")
	} else {
		for _, e := range settingEntry.FindAllStringSubmatch(blk[1], -1) {
			def, err := strconv.Unquote(`"` + e[2] + `"`)
			if err != nil {
				def = e[2]
			}
			m.settings[e[1]] = def
		}
	}
	for _, must := range []string{"ADDR", "DATABASE_URL", "REDIS_URL", "JWT_SECRET", "HEARTBEAT_INTERVAL"} {
		if _, ok := m.settings[must]; !ok {
			bad("cmd/batteryswap/config.go: setting %s not found in the settings list", must)
		}
	}
	if _, port, err := net.SplitHostPort(m.settings["ADDR"]); err != nil || port == "" {
		bad("cmd/batteryswap/config.go: ADDR default %q has no port", m.settings["ADDR"])
	} else {
		m.appPort = port
	}
	if d, err := time.ParseDuration(m.settings["HEARTBEAT_INTERVAL"]); err != nil {
		bad("cmd/batteryswap/config.go: HEARTBEAT_INTERVAL default %q: %v", m.settings["HEARTBEAT_INTERVAL"], err)
	} else {
		m.heartbeat = d
	}
	// The app's body limit: the largest that one of its layers (the Echo
	// middleware, the JSON binder) lets through.
	limits := []int64{}
	for _, b := range bodyLimitRe.FindAllStringSubmatch(f.api, -1) {
		n, _ := strconv.ParseInt(b[1], 10, 64)
		limits = append(limits, n<<map[string]int{"": 0, "k": 10, "m": 20, "g": 30}[strings.ToLower(b[2])])
	}
	for _, b := range maxBodyRe.FindAllStringSubmatch(f.api, -1) {
		n, _ := strconv.ParseInt(b[1], 10, 64)
		shift, _ := strconv.Atoi(b[2])
		limits = append(limits, n<<shift)
	}
	if len(limits) > 0 {
		m.bodyLimit = slices.Max(limits)
	}
	if p := pollMaxRe.FindStringSubmatch(f.api); p != nil {
		n, _ := strconv.Atoi(p[1])
		m.longPollMax = time.Duration(n) * time.Second
	}
	if g := goDirective.FindStringSubmatch(f.gomod); g == nil {
		bad("go.mod: no go directive")
	} else {
		m.goVersion = g[1]
	}

	// compose.yaml
	var compose composeFile
	if err := yaml.Unmarshal([]byte(f.compose), &compose); err != nil {
		bad("compose.yaml: %v", err)
	} else if len(compose.Services) == 0 {
		bad("compose.yaml: no services")
	} else {
		m.services = map[string]composeService{}
		for name, svc := range compose.Services {
			if svc == nil {
				bad("compose.yaml: service %s is empty", name)
				continue
			}
			m.services[name] = *svc
		}
	}

	// deploy/nginx.conf
	if root, err := parseNginx(f.nginx); err != nil {
		bad("deploy/nginx.conf: %v", err)
	} else {
		m.nginxRoot = root
		if https := root.all("http"); len(https) != 1 {
			bad("deploy/nginx.conf: want one http block, found %d", len(https))
		} else if servers := https[0].all("server"); len(servers) != 1 {
			bad("deploy/nginx.conf: want one server block, found %d", len(servers))
		} else {
			m.nginxHTTP, m.nginxServer = https[0], servers[0]
		}
	}

	// Dockerfile, .dockerignore
	stages, err := parseDockerfile(f.dockerfile)
	if err != nil {
		bad("Dockerfile: %v", err)
	}
	m.docker = stages
	m.dockerIgnore = parseDockerignore(f.dockerignore)
	return m, problems
}

// ---- checks ----

type check struct {
	name string
	fn   func(m *model) []string
}

var checks = []check{
	{"compose/env-are-settings", checkEnvAreSettings},
	{"compose/database-and-broker", checkDatabaseAndBroker},
	{"compose/shared-settings", checkSharedSettings},
	{"compose/migrations", checkMigrations},
	{"compose/healthchecks", checkHealthchecks},
	{"compose/dependencies", checkDependencies},
	{"compose/drain", checkDrain},
	{"compose/nginx-service", checkNginxService},
	{"compose/trusted-proxies", checkTrustedProxies},
	{"nginx/upstream", checkUpstream},
	{"nginx/streams", checkStreamLocations},
	{"nginx/api", checkAPILocations},
	{"nginx/body-limit", checkBodyLimit},
	{"nginx/json-errors", checkJSONErrors},
	{"dockerfile", checkDockerfile},
	{"dockerignore", checkDockerignore},
}

func TestDeployFilesAgree(t *testing.T) {
	m, problems := parseModel(loadFiles(t))
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		t.FailNow()
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range c.fn(m) {
				t.Error(p)
			}
		})
	}
}

// checkEnvAreSettings: every variable compose passes to the binary is one of
// its settings (a typo would be silently ignored by the binary).
func checkEnvAreSettings(m *model) []string {
	var out []string
	for _, name := range sortedKeys(m.services) {
		svc := m.services[name]
		if !isBatteryswap(svc) {
			continue
		}
		for _, k := range sortedKeys(svc.Environment) {
			if _, ok := m.settings[k]; !ok {
				out = append(out, fmt.Sprintf("service %s sets %s, which is not a setting of batteryswap (cmd/batteryswap/config.go)", name, k))
			}
		}
	}
	return out
}

// checkDatabaseAndBroker: the apps use PostgreSQL and Redis, at services of
// this file, with the credentials the postgres service is created with.
func checkDatabaseAndBroker(m *model) []string {
	var out []string
	apps := m.appServices()
	if len(apps) < 2 {
		out = append(out, fmt.Sprintf("want at least two app services (built from the Dockerfile, running serve), found %v", apps))
	}
	for _, name := range apps {
		env := m.services[name].Environment
		db, err := serviceURL(m, env, "DATABASE_URL", []string{"postgres", "postgresql"}, "postgres:", "5432")
		if err != nil {
			out = append(out, fmt.Sprintf("service %s: %v", name, err))
		} else {
			pgEnv := m.services[db.Hostname()].Environment
			user := orDefault(resolved(pgEnv["POSTGRES_USER"]), "postgres")
			pass := resolved(pgEnv["POSTGRES_PASSWORD"])
			dbname := orDefault(resolved(pgEnv["POSTGRES_DB"]), user)
			gotPass, _ := db.User.Password()
			if db.User.Username() != user || gotPass != pass || strings.TrimPrefix(db.Path, "/") != dbname {
				out = append(out, fmt.Sprintf("service %s: DATABASE_URL user/password/database %s/%s/%s differ from service %s's POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB %s/%s/%s",
					name, db.User.Username(), gotPass, strings.TrimPrefix(db.Path, "/"), db.Hostname(), user, pass, dbname))
			}
		}
		if _, err := serviceURL(m, env, "REDIS_URL", []string{"redis"}, "redis:", "6379"); err != nil {
			out = append(out, fmt.Sprintf("service %s: %v", name, err))
		}
	}
	return out
}

// serviceURL reads env[key] as a URL of one of schemes whose host is a
// compose service running image prefix on port.
func serviceURL(m *model, env map[string]string, key string, schemes []string, image, port string) (*url.URL, error) {
	raw, ok := env[key]
	if !ok {
		return nil, fmt.Errorf("%s is not set", key)
	}
	v, err := interpolate(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", key, err)
	}
	u, err := url.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", key, err)
	}
	if !slices.Contains(schemes, u.Scheme) {
		return nil, fmt.Errorf("%s=%q: want a %s:// URL", key, v, schemes[0])
	}
	target, ok := m.services[u.Hostname()]
	if !ok {
		return nil, fmt.Errorf("%s points at host %q, which is not a service of compose.yaml", key, u.Hostname())
	}
	if !strings.HasPrefix(target.Image, image) {
		return nil, fmt.Errorf("%s points at service %s, whose image %q is not %s*", key, u.Hostname(), target.Image, image)
	}
	if p := orDefault(u.Port(), port); p != port {
		return nil, fmt.Errorf("%s uses port %s; %s listens on %s", key, p, u.Hostname(), port)
	}
	return u, nil
}

// sharedKeys must be equal on every instance (docs/operations.md, "Many
// instances"): one database and broker, tokens that verify everywhere, the
// same holds and retention.
var sharedKeys = []string{"DATABASE_URL", "REDIS_URL", "JWT_SECRET", "HISTORY_RETENTION", "BOOKING_HOLD",
	"BOOKING_WARN", "READY_CHARGE", "ALLOWED_ORIGINS", "STATION_STALE_AFTER"}

func checkSharedSettings(m *model) []string {
	var out []string
	apps := m.appServices()
	if len(apps) == 0 {
		return []string{"no app services"}
	}
	first := m.services[apps[0]].Environment
	if v, ok := first["JWT_SECRET"]; !ok || resolved(v) == "" {
		out = append(out, fmt.Sprintf("service %s: JWT_SECRET must be set (else each instance makes its own random key)", apps[0]))
	}
	for _, name := range apps[1:] {
		env := m.services[name].Environment
		for _, k := range sharedKeys {
			a, aok := first[k]
			b, bok := env[k]
			if a != b || aok != bok {
				out = append(out, fmt.Sprintf("%s differs between %s (%q) and %s (%q)", k, apps[0], a, name, b))
			}
		}
	}
	// The other binaries (the migrate job) use the apps' database.
	for _, name := range sortedKeys(m.services) {
		svc := m.services[name]
		if !isBatteryswap(svc) || isServe(svc) {
			continue
		}
		env := svc.Environment
		if env["DATABASE_URL"] != first["DATABASE_URL"] {
			out = append(out, fmt.Sprintf("service %s: DATABASE_URL %q differs from the apps' %q", name, env["DATABASE_URL"], first["DATABASE_URL"]))
		}
	}
	return out
}

// checkMigrations: several instances must not migrate at once
// (docs/operations.md: AUTO_MIGRATE=false and `migrate up` as a deploy
// step), so each app waits for a migrate job to finish.
func checkMigrations(m *model) []string {
	var out []string
	apps := m.appServices()
	if len(apps) < 2 {
		return nil
	}
	for _, name := range apps {
		env := m.services[name].Environment
		auto := orDefault(resolved(env["AUTO_MIGRATE"]), m.settings["AUTO_MIGRATE"])
		if b, err := strconv.ParseBool(auto); err != nil || b {
			out = append(out, fmt.Sprintf("service %s: AUTO_MIGRATE=%q; with several instances it must be false", name, auto))
		}
		ok := false
		for dep, cond := range m.services[name].DependsOn {
			svc, exists := m.services[dep]
			cmd := svc.Command
			if exists && isBatteryswap(svc) && len(cmd) > 0 && cmd[0] == "migrate" &&
				(len(cmd) == 1 || cmd[1] == "up") && cond == "service_completed_successfully" {
				ok = true
			}
		}
		if !ok {
			out = append(out, fmt.Sprintf("service %s: does not wait (service_completed_successfully) for a service running `migrate up`", name))
		}
	}
	return out
}

var readyURL = regexp.MustCompile(`^https?://(127\.0\.0\.1|localhost|\[::1\]):(\d+)/readyz$`)

// checkHealthchecks: postgres with pg_isready, redis with redis-cli ping, and
// every app with its /readyz on its own port, through a probe that exists in
// the image (which has no shell).
func checkHealthchecks(m *model) []string {
	var out []string
	test := func(name string) []string {
		hc := m.services[name].Healthcheck
		if hc == nil || hc.Disable {
			return nil
		}
		return hc.Test
	}
	dbHost, redisHost := "postgres", "redis"
	if apps := m.appServices(); len(apps) > 0 {
		env := m.services[apps[0]].Environment
		if u, err := url.Parse(resolved(env["DATABASE_URL"])); err == nil && u.Hostname() != "" {
			dbHost = u.Hostname()
		}
		if u, err := url.Parse(resolved(env["REDIS_URL"])); err == nil && u.Hostname() != "" {
			redisHost = u.Hostname()
		}
	}
	if tt := strings.Join(test(dbHost), " "); !strings.Contains(tt, "pg_isready") {
		out = append(out, fmt.Sprintf("service %s: healthcheck %q does not run pg_isready", dbHost, tt))
	}
	if tt := test(redisHost); !slices.Contains(tt, "redis-cli") || !slices.Contains(tt, "ping") {
		out = append(out, fmt.Sprintf("service %s: healthcheck %q does not run redis-cli ping", redisHost, tt))
	}
	imageFiles := m.finalImagePaths()
	for _, name := range m.appServices() {
		tt := test(name)
		if len(tt) < 2 || tt[0] != "CMD" {
			out = append(out, fmt.Sprintf("service %s: healthcheck %q must be an exec form [\"CMD\", ...]: the image has no shell", name, tt))
			continue
		}
		if !slices.Contains(imageFiles, tt[1]) {
			out = append(out, fmt.Sprintf("service %s: healthcheck runs %s, which the Dockerfile does not put in the image (it has %v)", name, tt[1], imageFiles))
		}
		port := appPortOf(m, name)
		found := false
		for _, arg := range tt[2:] {
			if u := readyURL.FindStringSubmatch(arg); u != nil {
				found = true
				if u[2] != port {
					out = append(out, fmt.Sprintf("service %s: healthcheck probes port %s; the app listens on %s", name, u[2], port))
				}
			}
		}
		if !found {
			out = append(out, fmt.Sprintf("service %s: healthcheck %q does not probe http://127.0.0.1:%s/readyz", name, tt, port))
		}
	}
	return out
}

// checkDependencies: every dependency exists; a service_healthy one has a
// healthcheck; the apps wait for a healthy database and broker, nginx for the
// apps.
func checkDependencies(m *model) []string {
	var out []string
	for _, name := range sortedKeys(m.services) {
		for dep, cond := range m.services[name].DependsOn {
			svc, ok := m.services[dep]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("service %s depends on %s, which does not exist", name, dep))
			case cond == "service_healthy" && svc.Healthcheck == nil:
				out = append(out, fmt.Sprintf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep))
			}
		}
	}
	for _, name := range m.appServices() {
		deps := m.services[name].DependsOn
		env := m.services[name].Environment
		for _, key := range []string{"DATABASE_URL", "REDIS_URL"} {
			u, err := url.Parse(resolved(env[key]))
			if err != nil || u.Hostname() == "" {
				continue // reported by compose/database-and-broker
			}
			if deps[u.Hostname()] != "service_healthy" {
				out = append(out, fmt.Sprintf("service %s: does not wait for %s (its %s) with condition service_healthy", name, u.Hostname(), key))
			}
		}
	}
	if nginx, ok := m.services["nginx"]; ok {
		deps := nginx.DependsOn
		for _, app := range m.appServices() {
			if deps[app] != "service_healthy" {
				out = append(out, fmt.Sprintf("service nginx: does not wait for %s with condition service_healthy", app))
			}
		}
	}
	return out
}

// checkDrain: SIGTERM drains, and a long-poll may take the longest wait to
// end; the grace period must cover it (docs/operations.md, "Draining").
func checkDrain(m *model) []string {
	var out []string
	for _, name := range m.appServices() {
		v := m.services[name].StopGracePeriod
		d, err := time.ParseDuration(orDefault(v, "10s"))
		if err != nil || d <= m.longPollMax {
			out = append(out, fmt.Sprintf("service %s: stop_grace_period %q must exceed the longest long-poll (%s)", name, v, m.longPollMax))
		}
	}
	return out
}

// checkNginxService: nginx mounts deploy/nginx.conf as its main configuration
// and publishes the port the configuration listens on.
func checkNginxService(m *model) []string {
	var out []string
	svc, ok := m.services["nginx"]
	if !ok {
		return []string{"compose.yaml has no nginx service"}
	}
	if !strings.HasPrefix(svc.Image, "nginx:") {
		out = append(out, fmt.Sprintf("service nginx: image %q is not nginx", svc.Image))
	}
	mounted := false
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && path.Clean(parts[0]) == "deploy/nginx.conf" {
			mounted = true
			// The file has events{} and http{}: it is a main configuration.
			if parts[1] != "/etc/nginx/nginx.conf" {
				out = append(out, fmt.Sprintf("service nginx: deploy/nginx.conf is a main configuration (events, http) but is mounted at %s, not /etc/nginx/nginx.conf", parts[1]))
			}
		}
	}
	if !mounted {
		out = append(out, "service nginx: does not mount ./deploy/nginx.conf")
	}
	listen := map[string]bool{}
	if m.nginxServer != nil {
		for _, l := range m.nginxServer.all("listen") {
			if len(l.Args) > 0 {
				a := l.Args[0]
				if _, p, err := net.SplitHostPort(a); err == nil {
					a = p
				}
				listen[a] = true
			}
		}
	}
	ports := svc.Ports
	if len(ports) == 0 {
		out = append(out, "service nginx: publishes no port")
	}
	for _, p := range ports {
		p = strings.TrimSuffix(p, "/tcp")
		container := p[strings.LastIndex(p, ":")+1:]
		if !listen[container] {
			out = append(out, fmt.Sprintf("service nginx: publishes container port %s, but nginx.conf listens on %v", container, sortedKeys(listen)))
		}
	}
	return out
}

// checkTrustedProxies: nginx has a fixed address, and every app trusts it
// (TRUSTED_PROXIES, or its default) for X-Forwarded-For: else the apps
// would see every client as nginx and count them all as one in the
// per-address limits.
func checkTrustedProxies(m *model) []string {
	svc, ok := m.services["nginx"]
	if !ok {
		return nil // reported by compose/nginx-service
	}
	var nginx net.IP
	for _, addr := range svc.Networks {
		if ip := net.ParseIP(addr); ip != nil {
			nginx = ip
		}
	}
	if nginx == nil {
		return []string{"service nginx: no fixed ipv4_address on its network, so the apps cannot trust it for X-Forwarded-For (TRUSTED_PROXIES)"}
	}
	var out []string
	for _, name := range m.appServices() {
		v, ok := m.services[name].Environment["TRUSTED_PROXIES"]
		if !ok {
			v = m.settings["TRUSTED_PROXIES"]
		}
		trusted := false
		for _, p := range strings.Split(resolved(v), ",") {
			p = strings.TrimSpace(p)
			if _, n, err := net.ParseCIDR(p); err == nil && n.Contains(nginx) || net.ParseIP(p).Equal(nginx) {
				trusted = true
			}
		}
		if !trusted {
			out = append(out, fmt.Sprintf("service %s: TRUSTED_PROXIES %q does not hold nginx's address %s", name, v, nginx))
		}
	}
	return out
}

// upstreamOf returns the upstream block that loc proxies to.
func upstreamOf(m *model, loc *ngxDirective) (*ngxDirective, error) {
	pp := loc.value("proxy_pass")
	name, ok := strings.CutPrefix(pp, "http://")
	if !ok || name == "" || strings.ContainsAny(name, "/$") {
		// A URI part (http://name/) would rewrite request paths.
		return nil, fmt.Errorf("%s: proxy_pass %q must be http://UPSTREAM with no path", loc, pp)
	}
	for _, u := range m.nginxHTTP.all("upstream") {
		if len(u.Args) == 1 && u.Args[0] == name {
			return u, nil
		}
	}
	return nil, fmt.Errorf("%s: proxy_pass to %q, which is no upstream block", loc, name)
}

// appPortOf is the port app listens on: its ADDR, else the binary's default.
func appPortOf(m *model, app string) string {
	if a := resolved(m.services[app].Environment["ADDR"]); a != "" {
		if _, p, err := net.SplitHostPort(a); err == nil {
			return p
		}
	}
	return m.appPort
}

// checkUpstream: the upstream is exactly the app services, on the port they
// listen on.
func checkUpstream(m *model) []string {
	if m.nginxServer == nil {
		return []string{"nginx.conf has no server"}
	}
	var out []string
	want := map[string]bool{}
	for _, app := range m.appServices() {
		want[net.JoinHostPort(app, appPortOf(m, app))] = true
	}
	for _, uri := range []string{"/", "/stream/stations"} {
		loc, err := matchLocation(m.nginxServer, uri)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		up, err := upstreamOf(m, loc)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		got := map[string]bool{}
		for _, s := range up.all("server") {
			if len(s.Args) > 0 {
				got[s.Args[0]] = true
			}
		}
		for _, w := range sortedKeys(want) {
			if !got[w] {
				out = append(out, fmt.Sprintf("upstream %s (serving %s) lacks app service %s", up.Args[0], uri, w))
			}
		}
		for _, g := range sortedKeys(got) {
			if !want[g] {
				out = append(out, fmt.Sprintf("upstream %s (serving %s) has server %s, which is no app service on its port (%v)", up.Args[0], uri, g, sortedKeys(want)))
			}
		}
	}
	return out
}

// streamURIs are the stream paths of CONTRACT.md §4, with the WebSocket
// aliases.
var streamURIs = []string{"/stream", "/stream/stations", "/stream/stations/3", "/stream/notifications",
	"/ws/stations", "/ws/stations/", "/ws/stations/3/", "/ws/notifications/"}

// checkStreamLocations: streams are proxied unbuffered over HTTP/1.1, with a
// read timeout above the heartbeat and the longest long-poll, and WebSocket
// upgrades passed on.
func checkStreamLocations(m *model) []string {
	if m.nginxServer == nil {
		return []string{"nginx.conf has no server"}
	}
	var out []string
	heartbeat := m.heartbeat
	for _, app := range m.appServices() {
		if d, err := time.ParseDuration(resolved(m.services[app].Environment["HEARTBEAT_INTERVAL"])); err == nil && d > heartbeat {
			heartbeat = d
		}
	}
	upgradeVar := ""
	for _, mp := range m.nginxHTTP.all("map") {
		if len(mp.Args) == 2 && mp.Args[0] == "$http_upgrade" {
			vals := map[string]string{}
			for _, e := range mp.Block {
				if len(e.Args) == 1 {
					vals[e.Name] = e.Args[0]
				}
			}
			if vals["default"] == "upgrade" && (vals[""] == "" || vals[""] == "close") {
				upgradeVar = mp.Args[1]
			}
		}
	}
	if upgradeVar == "" {
		out = append(out, "nginx.conf: no `map $http_upgrade $connection_upgrade { default upgrade; '' ''; }`")
	}
	for _, uri := range streamURIs {
		loc, err := matchLocation(m.nginxServer, uri)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		bad := func(format string, args ...any) {
			out = append(out, fmt.Sprintf("%s (serving %s): ", loc, uri)+fmt.Sprintf(format, args...))
		}
		if _, err := upstreamOf(m, loc); err != nil {
			bad("%v", err)
		}
		if v := loc.value("proxy_http_version"); v != "1.1" {
			bad("proxy_http_version %q, want 1.1 (streaming and WebSocket need it)", v)
		}
		if v := loc.value("proxy_buffering"); v != "off" {
			bad("proxy_buffering %q, want off", v)
		}
		if v := loc.value("proxy_cache"); v != "" && v != "off" {
			bad("proxy_cache %q, want off", v)
		}
		if v := loc.value("gzip"); v == "on" {
			bad("gzip on would hold stream events back")
		}
		rt, err := parseNginxTime(orDefault(loc.value("proxy_read_timeout"), "60s"))
		if err != nil {
			bad("%v", err)
		} else if rt <= m.longPollMax || rt < 2*heartbeat {
			bad("proxy_read_timeout %s must exceed the longest long-poll (%s) and twice HEARTBEAT_INTERVAL (%s)", rt, m.longPollMax, heartbeat)
		}
		if v, _ := loc.header("Upgrade"); v != "$http_upgrade" {
			bad("Upgrade header %q, want $http_upgrade", v)
		}
		if v, _ := loc.header("Connection"); upgradeVar == "" || v != upgradeVar {
			bad("Connection header %q, want %s from the $http_upgrade map", v, orDefault(upgradeVar, "$connection_upgrade"))
		}
		out = append(out, forwardedHeaders(loc, uri)...)
	}
	return out
}

// forwardedHeaders: the original Host (with its port: the app allows a
// WebSocket whose Origin equals the Host it receives, api/server.go
// originAllowed), the client address and the scheme.
func forwardedHeaders(loc *ngxDirective, uri string) []string {
	var out []string
	for h, want := range map[string]string{"Host": "$http_host", "X-Forwarded-For": "$proxy_add_x_forwarded_for",
		"X-Forwarded-Proto": "$scheme"} {
		if v, _ := loc.header(h); v != want {
			out = append(out, fmt.Sprintf("%s (serving %s): %s header %q, want %s", loc, uri, h, v, want))
		}
	}
	sort.Strings(out)
	return out
}

// checkAPILocations: everything else is proxied to the same upstream.
func checkAPILocations(m *model) []string {
	if m.nginxServer == nil {
		return []string{"nginx.conf has no server"}
	}
	var out []string
	for _, uri := range []string{"/", "/api/v1/stations", "/api/v1/bookings", "/healthz", "/readyz", "/metrics", "/openapi.yaml", "/static/app.js"} {
		loc, err := matchLocation(m.nginxServer, uri)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		if _, err := upstreamOf(m, loc); err != nil {
			out = append(out, fmt.Sprintf("%s: %v", uri, err))
		}
		if v := loc.value("proxy_http_version"); v != "1.1" {
			out = append(out, fmt.Sprintf("%s (serving %s): proxy_http_version %q, want 1.1 (keep-alive to the upstream)", loc, uri, v))
		}
		out = append(out, forwardedHeaders(loc, uri)...)
	}
	return out
}

// checkBodyLimit: nginx lets through every body the app accepts, so the app
// answers its own 413 payload_too_large.
func checkBodyLimit(m *model) []string {
	if m.nginxServer == nil {
		return []string{"nginx.conf has no server"}
	}
	loc, err := matchLocation(m.nginxServer, "/api/v1/bookings")
	if err != nil {
		return []string{err.Error()}
	}
	v := orDefault(loc.value("client_max_body_size"), "1m")
	n, err := parseNginxSize(v)
	if err != nil {
		return []string{err.Error()}
	}
	if n != 0 && n < m.bodyLimit {
		return []string{fmt.Sprintf("client_max_body_size %s (%d bytes) is below the app's limit of %d bytes", v, n, m.bodyLimit)}
	}
	return nil
}

// checkJSONErrors: the errors nginx makes itself are JSON with a code, like
// the app's (CONTRACT.md §2), not nginx's HTML pages.
func checkJSONErrors(m *model) []string {
	if m.nginxServer == nil {
		return []string{"nginx.conf has no server"}
	}
	var out []string
	loc, err := matchLocation(m.nginxServer, "/api/v1/bookings")
	if err != nil {
		return []string{err.Error()}
	}
	pages := map[string]string{}
	for _, ep := range loc.effective("error_page") {
		if len(ep.Args) < 2 {
			continue
		}
		for _, code := range ep.Args[:len(ep.Args)-1] {
			pages[code] = ep.Args[len(ep.Args)-1]
		}
	}
	for code, want := range map[string]string{"413": "payload_too_large", "502": "", "504": ""} {
		target := pages[code]
		named := namedLocation(m.nginxServer, target)
		if named == nil {
			out = append(out, fmt.Sprintf("no error_page %s to a named location (nginx would answer HTML)", code))
			continue
		}
		ret := named.all("return")
		if len(ret) != 1 || len(ret[0].Args) != 2 || named.value("default_type") != "application/json" {
			out = append(out, fmt.Sprintf("%s: want default_type application/json and `return CODE '{...}'`", named))
			continue
		}
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal([]byte(ret[0].Args[1]), &body); err != nil || body.Error.Code == "" {
			out = append(out, fmt.Sprintf("%s: body is not {\"error\":{\"code\":...}}: %v", named, err))
		} else if want != "" && body.Error.Code != want {
			out = append(out, fmt.Sprintf("%s: code %q, want %q", named, body.Error.Code, want))
		}
		if want != "" && ret[0].Args[0] != code {
			out = append(out, fmt.Sprintf("%s: answers %s, want %s", named, ret[0].Args[0], code))
		}
	}
	return out
}

// ---- Dockerfile ----

type dockerInstr struct {
	cmd  string // upper case
	args string
	line int
}

type dockerStage struct {
	image, name string
	instrs      []dockerInstr
}

func parseDockerfile(src string) ([]dockerStage, error) {
	var stages []dockerStage
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		start := i
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				next = ""
			}
			l = strings.TrimSuffix(l, "\\") + " " + next
		}
		cmd, args, _ := strings.Cut(l, " ")
		in := dockerInstr{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start + 1}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			var st dockerStage
			for _, w := range f {
				if !strings.HasPrefix(w, "--") {
					st.image = w
					break
				}
			}
			if n := len(f); n >= 3 && strings.EqualFold(f[n-2], "AS") {
				st.name = f[n-1]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				continue
			}
			return nil, fmt.Errorf("line %d: %s before FROM", in.line, in.cmd)
		}
		s := &stages[len(stages)-1]
		s.instrs = append(s.instrs, in)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return stages, nil
}

func (s dockerStage) last(cmd string) (dockerInstr, bool) {
	for i := len(s.instrs) - 1; i >= 0; i-- {
		if s.instrs[i].cmd == cmd {
			return s.instrs[i], true
		}
	}
	return dockerInstr{}, false
}

type dockerCopy struct {
	from, chown string
	srcs        []string
	dst         string
}

func (s dockerStage) copies() []dockerCopy {
	var out []dockerCopy
	for _, in := range s.instrs {
		if in.cmd != "COPY" {
			continue
		}
		var c dockerCopy
		var rest []string
		for _, w := range strings.Fields(in.args) {
			switch {
			case strings.HasPrefix(w, "--from="):
				c.from = strings.TrimPrefix(w, "--from=")
			case strings.HasPrefix(w, "--chown="):
				c.chown = strings.TrimPrefix(w, "--chown=")
			case strings.HasPrefix(w, "--"):
			default:
				rest = append(rest, w)
			}
		}
		if len(rest) >= 2 {
			c.srcs, c.dst = rest[:len(rest)-1], rest[len(rest)-1]
			out = append(out, c)
		}
	}
	return out
}

// goBuildOutputs maps each package built in the build stages (./cmd/...) to
// its -o output, for commands that build with CGO_ENABLED=0.
func (m *model) goBuildOutputs() (map[string]string, []string) {
	out, nocgo := map[string]string{}, []string{}
	for _, st := range m.docker[:len(m.docker)-1] {
		for _, in := range st.instrs {
			if in.cmd != "RUN" {
				continue
			}
			for _, seg := range regexp.MustCompile(`&&|;`).Split(in.args, -1) {
				f := strings.Fields(seg)
				i := slices.Index(f, "build")
				if i < 1 || f[i-1] != "go" {
					continue
				}
				var o, pkg string
				for j := i + 1; j < len(f); j++ {
					if f[j] == "-o" && j+1 < len(f) {
						o = f[j+1]
						j++
					} else if strings.HasPrefix(f[j], "./") {
						pkg = f[j]
					}
				}
				if pkg == "" || o == "" {
					continue
				}
				if !strings.Contains(seg, "CGO_ENABLED=0") {
					nocgo = append(nocgo, pkg)
				}
				out[pkg] = o
			}
		}
	}
	return out, nocgo
}

// finalImagePaths are the files COPY puts into the final image from the
// builder's go build outputs.
func (m *model) finalImagePaths() []string {
	if len(m.docker) < 2 {
		return nil
	}
	outputs, _ := m.goBuildOutputs()
	built := map[string]bool{}
	for _, o := range outputs {
		built[o] = true
	}
	var out []string
	for _, c := range m.docker[len(m.docker)-1].copies() {
		if c.from != "" && len(c.srcs) == 1 && built[c.srcs[0]] {
			out = append(out, c.dst)
		}
	}
	return out
}

func jsonArgs(in dockerInstr) []string {
	var v []string
	if json.Unmarshal([]byte(in.args), &v) != nil {
		return nil
	}
	return v
}

func checkDockerfile(m *model) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, "Dockerfile: "+fmt.Sprintf(format, args...)) }
	if len(m.docker) < 2 {
		return []string{"Dockerfile: want a build stage and a runtime stage"}
	}
	builder, final := m.docker[0], m.docker[len(m.docker)-1]
	tag, ok := strings.CutPrefix(builder.image, "golang:")
	if !ok || !strings.HasPrefix(tag, m.goVersion) || (len(tag) > len(m.goVersion) && tag[len(m.goVersion)] >= '0' && tag[len(m.goVersion)] <= '9') {
		bad("build stage %q is not golang:%s (go.mod's go %s)", builder.image, m.goVersion, m.goVersion)
	}
	outputs, nocgo := m.goBuildOutputs()
	for _, pkg := range nocgo {
		bad("go build %s without CGO_ENABLED=0: the runtime image has no libc", pkg)
	}
	bin, ok := outputs["./cmd/batteryswap"]
	if !ok {
		bad("no `go build -o OUT ./cmd/batteryswap` in a build stage")
	}
	switch {
	case strings.HasPrefix(final.image, "gcr.io/distroless/static"):
	case final.image == "scratch":
		hasCA := false
		for _, c := range final.copies() {
			hasCA = hasCA || strings.Contains(strings.Join(c.srcs, " "), "ca-certificates")
		}
		if !hasCA {
			bad("scratch runtime without CA certificates")
		}
	default:
		bad("runtime image %q is neither distroless/static nor scratch", final.image)
	}
	entry := ""
	for _, c := range final.copies() {
		if c.from != "" && len(c.srcs) == 1 && c.srcs[0] == bin {
			entry = c.dst
		}
	}
	if entry == "" {
		bad("the runtime stage does not COPY %s from the build stage", bin)
	}
	if in, ok := final.last("ENTRYPOINT"); !ok || !slices.Equal(jsonArgs(in), []string{entry}) {
		bad("ENTRYPOINT %q, want [%q]", in.args, entry)
	}
	if in, ok := final.last("CMD"); !ok || !slices.Equal(jsonArgs(in), []string{"serve"}) {
		bad("CMD %q, want [\"serve\"]", in.args)
	}
	user, ok := final.last("USER")
	u, _, _ := strings.Cut(user.args, ":")
	if !ok || u == "" || u == "root" || u == "0" {
		bad("the runtime stage must run as a non-root USER, has %q", user.args)
	}
	exposed := false
	if in, ok := final.last("EXPOSE"); ok {
		for _, p := range strings.Fields(in.args) {
			exposed = exposed || strings.TrimSuffix(p, "/tcp") == m.appPort
		}
	}
	if !exposed {
		bad("does not EXPOSE the app's port %s", m.appPort)
	}
	// The embedded SQLite default writes batteryswap.db in the working
	// directory: it must belong to the user.
	wd, ok := final.last("WORKDIR")
	if !ok || wd.args == "/" {
		bad("the runtime stage needs a WORKDIR of its own for the SQLite default, has %q", wd.args)
	} else {
		owned := false
		for _, c := range final.copies() {
			owner, _, _ := strings.Cut(c.chown, ":")
			if path.Clean(c.dst) == path.Clean(wd.args) && (owner == u || (u == "nonroot" && owner == "65532") || (u == "65532" && owner == "nonroot")) {
				owned = true
			}
		}
		if !owned {
			bad("WORKDIR %s is not made with COPY --chown=%s: the non-root user could not write batteryswap.db there", wd.args, u)
		}
	}
	if hc, ok := final.last("HEALTHCHECK"); ok && hc.args != "NONE" {
		_, args, _ := strings.Cut(hc.args, "CMD")
		probe := jsonArgs(dockerInstr{args: strings.TrimSpace(args)})
		if len(probe) == 0 || !slices.Contains(m.finalImagePaths(), probe[0]) {
			bad("HEALTHCHECK %q does not run a probe the image has", hc.args)
		}
	}
	return out
}

// ---- .dockerignore ----

type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
	text   string
}

func parseDockerignore(src string) []ignorePattern {
	var out []ignorePattern
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		p := ignorePattern{text: l}
		if strings.HasPrefix(l, "!") {
			p.negate, l = true, strings.TrimSpace(l[1:])
		}
		l = path.Clean(strings.TrimPrefix(l, "/"))
		var b strings.Builder
		b.WriteString("^")
		for i := 0; i < len(l); i++ {
			switch {
			case strings.HasPrefix(l[i:], "**/"):
				b.WriteString("(?:.*/)?")
				i += 2
			case strings.HasPrefix(l[i:], "**"):
				b.WriteString(".*")
				i++
			case l[i] == '*':
				b.WriteString("[^/]*")
			case l[i] == '?':
				b.WriteString("[^/]")
			default:
				b.WriteString(regexp.QuoteMeta(l[i : i+1]))
			}
		}
		b.WriteString("$")
		p.re = regexp.MustCompile(b.String())
		out = append(out, p)
	}
	return out
}

// ignored tells whether docker leaves rel out of the build context: the last
// matching pattern decides, and a pattern matching a directory takes all in it.
func ignored(patterns []ignorePattern, rel string) (bool, string) {
	excluded, by := false, ""
	for _, p := range patterns {
		for q := rel; q != "." && q != "/"; q = path.Dir(q) {
			if p.re.MatchString(q) {
				excluded, by = !p.negate, p.text
				break
			}
		}
	}
	return excluded, by
}

// checkDockerignore: the build context keeps every input of `go build`.
func checkDockerignore(m *model) []string {
	var out []string
	for _, f := range m.buildInputs {
		if ex, by := ignored(m.dockerIgnore, f); ex {
			out = append(out, fmt.Sprintf(".dockerignore: %q leaves out %s, which the build needs", by, f))
		}
	}
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("... and %d more", len(out)-5))
	}
	return out
}

// ---- compose.yaml ----

// composeFile is the part of compose.yaml that the checks read; other keys
// are ignored. A scalar decodes into a string as written (5s, 20, false), as
// compose passes it on.
type composeFile struct {
	Services map[string]*composeService `yaml:"services"`
}

type composeService struct {
	Build           any            `yaml:"build"` // a context path or a mapping: set means built from the Dockerfile
	Image           string         `yaml:"image"`
	Command         stringOrList   `yaml:"command"`
	Environment     composeEnv     `yaml:"environment"`
	Healthcheck     *composeHealth `yaml:"healthcheck"`
	DependsOn       composeDeps    `yaml:"depends_on"`
	StopGracePeriod string         `yaml:"stop_grace_period"`
	Volumes         []string       `yaml:"volumes"` // short syntax
	Ports           []string       `yaml:"ports"`   // short syntax
	Networks        composeNets    `yaml:"networks"`
}

// composeNets is a service's networks: a list of names, or a mapping of
// names to their settings (a fixed ipv4_address); the fixed addresses are
// kept.
type composeNets map[string]string

func (n *composeNets) UnmarshalYAML(node *yaml.Node) error {
	*n = composeNets{}
	if node.Kind == yaml.SequenceNode {
		var names []string
		if err := node.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			(*n)[name] = ""
		}
		return nil
	}
	var m map[string]*struct {
		IPv4 string `yaml:"ipv4_address"`
	}
	if err := node.Decode(&m); err != nil {
		return err
	}
	for name, v := range m {
		if v != nil {
			(*n)[name] = v.IPv4
		} else {
			(*n)[name] = ""
		}
	}
	return nil
}

type composeHealth struct {
	Test    stringOrList `yaml:"test"`
	Disable bool         `yaml:"disable"`
}

// stringOrList is a list of strings, or one string as a list of one.
type stringOrList []string

func (l *stringOrList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = stringOrList{n.Value}
		return nil
	}
	return n.Decode((*[]string)(l))
}

// composeEnv is a service's environment, in map or "KEY=value" list form.
type composeEnv map[string]string

func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return n.Decode((*map[string]string)(e))
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*e = composeEnv{}
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		(*e)[k] = v
	}
	return nil
}

// composeDeps maps each dependency to its condition (list form: started).
type composeDeps map[string]string

func (d *composeDeps) UnmarshalYAML(n *yaml.Node) error {
	*d = composeDeps{}
	if n.Kind == yaml.SequenceNode {
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			(*d)[name] = "service_started"
		}
		return nil
	}
	var long map[string]struct {
		Condition string `yaml:"condition"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	for name, dep := range long {
		(*d)[name] = orDefault(dep.Condition, "service_started")
	}
	return nil
}

var interpolation = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}$]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$`)

// interpolate applies compose's ${VAR:-default} rules with every variable
// unset, as on a fresh checkout; a required variable (${VAR:?msg}) stands
// for itself.
func interpolate(s string) (string, error) {
	var err error
	out := interpolation.ReplaceAllStringFunc(s, func(m string) string {
		g := interpolation.FindStringSubmatch(m)
		switch {
		case m == "$$":
			return "$"
		case g[4] != "":
			return ""
		case g[1] != "" && strings.HasSuffix(g[2], "-"):
			return g[3]
		case g[1] != "" && strings.HasSuffix(g[2], "?"):
			return "<required " + g[1] + ">"
		case g[1] != "":
			return ""
		}
		err = fmt.Errorf("unsupported interpolation in %q", s)
		return m
	})
	return out, err
}

func resolved(s string) string {
	v, err := interpolate(s)
	if err != nil {
		return s
	}
	return v
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
