package deploy_test

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// mutation alters one file in one place; check must then report a problem.
type mutation struct {
	check    string
	file     string // compose, nginx, dockerfile, dockerignore, config, api
	old, new string
	last     bool // replace the last occurrence instead of the first
}

var mutations = []mutation{
	// compose.yaml
	{"compose/env-are-settings", "compose", "      AUTO_MIGRATE: \"false\"\n", "      AUTO_MIGRATE: \"false\"\n      LOG_LEVL: debug\n", true},
	{"compose/database-and-broker", "compose", "REDIS_URL: redis://redis:6379/0", "REDIS_URL: redis://cache:6379/0", false},
	{"compose/database-and-broker", "compose", "REDIS_URL: redis://redis:6379/0", "REDIS_URL: redis://postgres:6379/0", true},
	{"compose/database-and-broker", "compose", "REDIS_URL: redis://redis:6379/0", "REDIS_URL: redis://redis:6380/0", true},
	{"compose/database-and-broker", "compose", "DATABASE_URL: postgres://batteryswap:batteryswap@", "DATABASE_URL: mysql://batteryswap:batteryswap@", true},
	{"compose/database-and-broker", "compose", "POSTGRES_PASSWORD: batteryswap", "POSTGRES_PASSWORD: other", false},
	{"compose/database-and-broker", "compose", "POSTGRES_DB: batteryswap", "POSTGRES_DB: swap", false},
	{"compose/database-and-broker", "compose", "    command: [\"serve\"]\n", "    command: [\"watch\", \"http://nginx/stream\"]\n", true},
	{"compose/shared-settings", "compose", "JWT_SECRET: ${JWT_SECRET:-dev-only-jwt-secret-change-me}", "JWT_SECRET: ${JWT_SECRET:-another-secret}", true},
	{"compose/shared-settings", "compose", "      JWT_SECRET: ${JWT_SECRET:-dev-only-jwt-secret-change-me}\n", "", false},
	{"compose/shared-settings", "compose", "sslmode=disable", "sslmode=require", false},
	{"compose/migrations", "compose", "AUTO_MIGRATE: \"false\"", "AUTO_MIGRATE: \"true\"", false},
	{"compose/migrations", "compose", "      AUTO_MIGRATE: \"false\"\n", "", true},
	{"compose/migrations", "compose", "condition: service_completed_successfully", "condition: service_started", false},
	{"compose/healthchecks", "compose", `"pg_isready", "-U", "batteryswap", "-d", "batteryswap"`, `"true"`, false},
	{"compose/healthchecks", "compose", `["CMD", "redis-cli", "ping"]`, `["CMD", "true"]`, false},
	{"compose/healthchecks", "compose", "http://127.0.0.1:8080/readyz", "http://127.0.0.1:8080/healthz", false},
	{"compose/healthchecks", "compose", "http://127.0.0.1:8080/readyz", "http://127.0.0.1:9090/readyz", true},
	{"compose/healthchecks", "compose", `["CMD", "/healthcheck",`, `["CMD", "/usr/bin/curl",`, false},
	{"compose/healthchecks", "compose", `["CMD", "/healthcheck", "http://127.0.0.1:8080/readyz"]`, `["CMD-SHELL", "curl -f http://127.0.0.1:8080/readyz"]`, false},
	{"compose/healthchecks", "dockerfile", "COPY --from=build /out/healthcheck /healthcheck\n", "", false},
	{"compose/dependencies", "compose", "      redis:\n        condition: service_healthy", "      redis:\n        condition: service_started", false},
	{"compose/dependencies", "compose", "      app2:\n        condition: service_healthy", "      app3:\n        condition: service_healthy", true},
	{"compose/dependencies", "compose", "    healthcheck:\n      test: [\"CMD\", \"redis-cli\", \"ping\"]\n      interval: 5s\n      timeout: 5s\n      retries: 20\n", "", false},
	{"compose/drain", "compose", "stop_grace_period: 75s", "stop_grace_period: 30s", false},
	{"compose/drain", "compose", "    stop_grace_period: 75s\n", "", true},
	{"compose/nginx-service", "compose", `"8080:80"`, `"8080:8081"`, false},
	{"compose/nginx-service", "nginx", "listen 80;", "listen 81;", false},
	{"compose/nginx-service", "compose", "/etc/nginx/nginx.conf:ro", "/etc/nginx/conf.d/default.conf:ro", false},
	{"compose/nginx-service", "compose", "image: nginx:1.27-alpine", "image: caddy:2", false},
	{"compose/trusted-proxies", "compose", "ipv4_address: 172.28.0.10", "ipv4_address: 172.28.0.11", false},
	{"compose/trusted-proxies", "compose", "      TRUSTED_PROXIES: 172.28.0.10/32\n", "", true},
	{"compose/trusted-proxies", "compose", "    networks:\n      default:\n        ipv4_address: 172.28.0.10 # TRUSTED_PROXIES of the apps\n", "", false},
	{"nginx/upstream", "compose", "      REDIS_URL: redis://redis:6379/0\n", "      REDIS_URL: redis://redis:6379/0\n      ADDR: \":9000\"\n", false},
	{"nginx/upstream", "compose", "  app2:\n    build: .", "  app3:\n    build: .", false},
	{"nginx/upstream", "nginx", "        server app2:8080 resolve;\n", "", false},
	{"nginx/upstream", "nginx", "server app1:8080 resolve;", "server app1:8081 resolve;", false},
	{"nginx/upstream", "nginx", "server app1:8080 resolve;", "server app1:8080 resolve;\n        server app9:8080 resolve;", false},
	{"nginx/upstream", "config", `{"ADDR", "addr", ":8080",`, `{"ADDR", "addr", ":9090",`, false},

	// deploy/nginx.conf
	{"nginx/streams", "nginx", "proxy_buffering off;", "proxy_buffering on;", false},
	{"nginx/streams", "nginx", "proxy_read_timeout 3600s;", "proxy_read_timeout 60s;", false},
	{"nginx/streams", "nginx", "            proxy_read_timeout 3600s;\n", "", false},
	{"nginx/streams", "nginx", "proxy_set_header Upgrade $http_upgrade;", "", false},
	{"nginx/streams", "nginx", "proxy_set_header Connection $connection_upgrade;", `proxy_set_header Connection "";`, false},
	{"nginx/streams", "nginx", "default upgrade;", "default close;", false},
	{"nginx/streams", "nginx", "location ~ ^/(stream|ws)(/|$)", "location ~ ^/(stream)(/|$)", false},
	{"nginx/streams", "nginx", "location ~ ^/(stream|ws)(/|$)", "location ~ ^/(stream|ws)/", false},
	{"nginx/streams", "nginx", "proxy_set_header Host $http_host;", "proxy_set_header Host $host;", true},
	{"nginx/streams", "nginx", "proxy_http_version 1.1;", "proxy_http_version 1.0;", true},
	{"nginx/streams", "nginx", "proxy_cache off;", "proxy_cache streams;", false},
	{"nginx/streams", "nginx", "gzip off;", "gzip on;", false},
	{"nginx/streams", "nginx", "proxy_set_header X-Forwarded-Proto $scheme;", "", true},
	{"nginx/streams", "config", `{"HEARTBEAT_INTERVAL", "heartbeat-interval", "15s",`, `{"HEARTBEAT_INTERVAL", "heartbeat-interval", "40m",`, false},
	{"nginx/streams", "compose", "      AUTO_MIGRATE: \"false\"\n", "      AUTO_MIGRATE: \"false\"\n      HEARTBEAT_INTERVAL: 45m\n", false},
	{"nginx/api", "nginx", "proxy_pass http://batteryswap;", "proxy_pass http://batteryswap/;", false},
	{"nginx/api", "nginx", "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;", "", false},
	{"nginx/api", "nginx", "proxy_set_header Host $http_host;", "", false},
	{"nginx/api", "nginx", "proxy_http_version 1.1;", "", false},
	{"nginx/body-limit", "nginx", "client_max_body_size 1m;", "client_max_body_size 512k;", false},
	{"nginx/body-limit", "api", "maxBody = 1 << 20", "maxBody = 1 << 21", false},
	{"nginx/body-limit", "api", `BodyLimit("1MiB")`, `BodyLimit("2MiB")`, false},
	{"compose/drain", "api", "maxPollTimeout     = 60 * time.Second", "maxPollTimeout     = 90 * time.Second", false},
	{"nginx/json-errors", "nginx", "error_page 413 @payload_too_large;", "", false},
	{"nginx/json-errors", "nginx", "error_page 502 503 504 =503 @unavailable;", "error_page 503 @unavailable;", false},
	{"nginx/json-errors", "nginx", `"code":"payload_too_large"`, `"code":"too_big"`, false},
	{"nginx/json-errors", "nginx", "default_type application/json;", "default_type text/html;", false},

	// Dockerfile
	{"dockerfile", "dockerfile", "EXPOSE 8080", "EXPOSE 8081", false},
	{"dockerfile", "config", `{"ADDR", "addr", ":8080",`, `{"ADDR", "addr", ":9090",`, false},
	{"dockerfile", "dockerfile", "USER nonroot:nonroot", "USER root", false},
	{"dockerfile", "dockerfile", "USER nonroot:nonroot\n", "", false},
	{"dockerfile", "dockerfile", `CMD ["serve"]`, `CMD ["server"]`, false},
	{"dockerfile", "dockerfile", "FROM golang:1.26 AS build", "FROM golang:1.25 AS build", false},
	{"dockerfile", "dockerfile", "CGO_ENABLED=0 go build", "go build", false},
	{"dockerfile", "dockerfile", `ENTRYPOINT ["/batteryswap"]`, `ENTRYPOINT ["/app"]`, false},
	{"dockerfile", "dockerfile", "COPY --from=build --chown=65532:65532 /out/data /data", "COPY --from=build /out/data /data", false},
	{"dockerfile", "dockerfile", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:12", false},
	{"dockerfile", "dockerfile", "-o /out/batteryswap ./cmd/batteryswap", "-o /out/bs ./cmd/batteryswap", false},
	{"dockerfile", "dockerfile", `CMD ["/healthcheck"]`, `CMD ["/usr/bin/curl", "-f", "http://127.0.0.1:8080/readyz"]`, false},

	// config.go
	{"compose/env-are-settings", "config", `{"AUTO_MIGRATE", "auto-migrate",`, `{"AUTOMIGRATE", "auto-migrate",`, false},

	// .dockerignore
	{"dockerignore", "dockerignore", "compose.yaml\n", "compose.yaml\nmigrations\n", false},
	{"dockerignore", "dockerignore", "compose.yaml\n", "compose.yaml\ncmd\n", false},
	{"dockerignore", "dockerignore", "compose.yaml\n", "compose.yaml\nweb/static\n", false},
	{"dockerignore", "dockerignore", "compose.yaml\n", "compose.yaml\n**/*.sql\n", false},
	{"dockerignore", "dockerignore", "compose.yaml\n", "compose.yaml\ngo.sum\n", false},
}

func (f *deployFiles) field(name string) *string {
	return map[string]*string{"compose": &f.compose, "nginx": &f.nginx, "dockerfile": &f.dockerfile,
		"dockerignore": &f.dockerignore, "config": &f.config, "api": &f.api}[name]
}

// TestChecksCatchDisagreement alters the real files one way at a time and
// requires the named check to notice; every check has such a case.
func TestChecksCatchDisagreement(t *testing.T) {
	base := loadFiles(t)
	if _, problems := parseModel(base); len(problems) > 0 {
		t.Fatalf("the real files do not parse: %v", problems)
	}
	byName := map[string]check{}
	for _, c := range checks {
		byName[c.name] = c
	}
	covered := map[string]bool{}
	for _, mu := range mutations {
		c, ok := byName[mu.check]
		if !ok {
			t.Errorf("mutation for unknown check %q", mu.check)
			continue
		}
		f := base
		p := f.field(mu.file)
		i := strings.Index(*p, mu.old)
		if mu.last {
			i = strings.LastIndex(*p, mu.old)
		}
		if i < 0 {
			if mu.file == "api" {
				// api/ is another part's code and changes shape; the
				// contract values stand in when it cannot be read.
				t.Logf("%s: %q is no longer in api/; mutation skipped", mu.check, mu.old)
				continue
			}
			t.Errorf("%s: %q is not in %s any more: update the mutation", mu.check, mu.old, mu.file)
			continue
		}
		*p = (*p)[:i] + mu.new + (*p)[i+len(mu.old):]
		m, problems := parseModel(f)
		if len(problems) == 0 {
			problems = c.fn(m)
		}
		if len(problems) == 0 {
			t.Errorf("%s did not notice %s: %q -> %q", mu.check, mu.file, mu.old, mu.new)
			continue
		}
		covered[mu.check] = true
		t.Logf("%s: %s %q -> %q: %s", mu.check, mu.file, mu.old, mu.new, problems[0])
	}
	for _, c := range checks {
		if !covered[c.name] {
			t.Errorf("check %s has no mutation that it catches", c.name)
		}
	}
}

// TestComposeForms: compose's other spellings of a command, an environment
// and depends_on read the same, every scalar is read as written, and a key
// given twice or a shape the checks cannot read is an error.
func TestComposeForms(t *testing.T) {
	var got composeFile
	err := yaml.Unmarshal([]byte(`services:
  a:
    build: .
    command: serve
    environment: ["KEY=value", "EMPTY="]
    depends_on: [b]
    healthcheck:
      test: ["CMD", "probe"]
      disable: true
  b:
    image: redis:7
    environment:
      FLAG: false
      COUNT: 20
      UNSET:
    depends_on:
      a:
        condition: service_healthy
      c:
    stop_grace_period: 75s
`), &got)
	if err != nil {
		t.Fatal(err)
	}
	want := composeFile{Services: map[string]*composeService{
		"a": {Build: ".", Command: stringOrList{"serve"}, Environment: composeEnv{"KEY": "value", "EMPTY": ""},
			DependsOn: composeDeps{"b": "service_started"}, Healthcheck: &composeHealth{Test: stringOrList{"CMD", "probe"}, Disable: true}},
		"b": {Image: "redis:7", Environment: composeEnv{"FLAG": "false", "COUNT": "20", "UNSET": ""},
			DependsOn: composeDeps{"a": "service_healthy", "c": "service_started"}, StopGracePeriod: "75s"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got.Services, want.Services)
	}
	for _, bad := range []string{
		"services:\n  a:\n    image: x\n    image: y\n",
		"services:\n  a:\n    environment:\n      A: 1\n      A: 2\n",
		"services:\n  a:\n    environment: A=1\n",
		"services:\n  a:\n    environment:\n      A: {b: 1}\n",
		"services:\n  a:\n    volumes:\n      - type: bind\n",
		"services:\n  a:\n\t  image: x\n",
	} {
		if err := yaml.Unmarshal([]byte(bad), new(composeFile)); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestNginxParserAndMatching(t *testing.T) {
	root, err := parseNginx(`http {
    proxy_read_timeout 10s;
    server {
        location / { proxy_pass http://a; }
        location /api/ { proxy_read_timeout 20s; }
        location ^~ /static/ { }
        location ~ ^/(stream|ws)(/|$) { return 200 'a;b{c}'; }
        location = /exact { }
        location @named { }
    }
}`)
	if err != nil {
		t.Fatal(err)
	}
	srv := root.all("http")[0].all("server")[0]
	for uri, want := range map[string]string{
		"/x": "/", "/api/v1": "/api/", "/static/a.js": "/static/", "/stream": "^/(stream|ws)(/|$)",
		"/ws/": "^/(stream|ws)(/|$)", "/streams": "/", "/exact": "/exact", "/exact/no": "/",
	} {
		loc, err := matchLocation(srv, uri)
		if err != nil || loc.Args[len(loc.Args)-1] != want {
			t.Errorf("matchLocation(%s) = %v, %v; want %s", uri, loc, err, want)
		}
	}
	api, _ := matchLocation(srv, "/api/x")
	top, _ := matchLocation(srv, "/x")
	if api.value("proxy_read_timeout") != "20s" || top.value("proxy_read_timeout") != "10s" {
		t.Error("inheritance of proxy_read_timeout is wrong")
	}
	ws, _ := matchLocation(srv, "/ws")
	if r := ws.all("return"); len(r) != 1 || r[0].Args[1] != "a;b{c}" {
		t.Errorf("quoted argument: %v", r)
	}
	for s, want := range map[string]string{"3600s": "1h0m0s", "60": "1m0s", "1m30s": "1m30s", "500ms": "500ms"} {
		if d, err := parseNginxTime(s); err != nil || d.String() != want {
			t.Errorf("parseNginxTime(%s) = %v, %v", s, d, err)
		}
	}
	for s, want := range map[string]int64{"1m": 1 << 20, "512k": 512 << 10, "100": 100, "2G": 2 << 30} {
		if n, err := parseNginxSize(s); err != nil || n != want {
			t.Errorf("parseNginxSize(%s) = %d, %v", s, n, err)
		}
	}
	for _, bad := range []string{"http {", "a b", "}", "a 'b;"} {
		if _, err := parseNginx(bad); err == nil {
			t.Errorf("parseNginx(%q): want an error", bad)
		}
	}
}
