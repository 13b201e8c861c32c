package api_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"batteryswap/api"
)

// TestOpenAPIDescribesEveryRoute: the document parses and validates as
// OpenAPI 3, and every route the server registers is in it.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI 3: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	srv := api.New(api.Config{JWTSecret: []byte("x"), OpenAPI: api.OpenAPI}, nil, nil, nil)
	param := regexp.MustCompile(`:([a-z_]+)`)
	seen := 0
	for _, r := range srv.Echo().Routes() {
		if strings.HasSuffix(r.Path, "/*") || r.Method == "echo_route_not_found" {
			continue // static assets of the dashboard
		}
		path := param.ReplaceAllString(r.Path, "{$1}")
		item := doc.Paths.Find(path)
		if item == nil && doc.Paths.Find(path+"/") == nil {
			t.Errorf("route %s %s is not in openapi.yaml", r.Method, path)
			continue
		}
		if item == nil {
			item = doc.Paths.Find(path + "/")
		}
		if item.GetOperation(r.Method) == nil {
			t.Errorf("route %s %s has no operation in openapi.yaml", r.Method, path)
		}
		seen++
	}
	if seen < 25 {
		t.Fatalf("only %d routes checked", seen)
	}
}
