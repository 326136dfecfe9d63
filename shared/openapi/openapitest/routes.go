package openapitest

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Service is the x-service a route belongs to: "submit" or "progress".
type Service string

// Documented returns the operations the document gives service, as
// "METHOD /path" with every path parameter written {}.
func (c *Checker) Documented(service Service) []string {
	var out []string
	for path, item := range c.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			node, ok := op.Extensions.Get("x-service")
			if !ok {
				continue
			}
			var services []string
			if err := node.Decode(&services); err != nil || !slices.Contains(services, string(service)) {
				continue
			}
			out = append(out, strings.ToUpper(method)+" "+params.ReplaceAllString(path, "{}"))
		}
	}
	slices.Sort(out)
	return out
}

var params = regexp.MustCompile(`\{[^}]*\}`)

// Operation turns a ServeMux pattern into the operation it serves, as
// "METHOD /path" with every path parameter written {}: "{$}" matches the
// path as written, "{name...}" one parameter, and a pattern without a method
// serves GET (the console's subtree, which answers GET and HEAD only), a
// trailing slash standing for one file name.
func Operation(pattern string) string {
	method, path, found := strings.Cut(pattern, " ")
	if !found {
		method, path = http.MethodGet, pattern
	}
	path = strings.TrimSuffix(path, "{$}")
	if path == "" {
		path = "/"
	}
	if strings.HasSuffix(path, "/") && path != "/" && !found {
		path += "{}"
	}
	return method + " " + params.ReplaceAllString(path, "{}")
}

// CheckRoutes fails t unless the patterns service registers and the
// operations the document gives it are the same, both ways. planned are
// documented routes whose handlers are not registered yet; each must still
// be missing (remove it from the list once it is registered).
func CheckRoutes(t testing.TB, service Service, patterns, planned []string) {
	t.Helper()
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	documented := c.Documented(service)
	var registered []string
	for _, p := range patterns {
		registered = append(registered, Operation(p))
	}
	for i, op := range registered {
		if !slices.Contains(documented, op) {
			t.Errorf("%s registers %q (%s), which the OpenAPI document does not give it (x-service)", service, patterns[i], op)
		}
	}
	for _, op := range documented {
		if !slices.Contains(registered, op) && !slices.Contains(planned, op) {
			t.Errorf("the OpenAPI document gives %s the operation %s, which it does not register", service, op)
		}
	}
	for _, op := range planned {
		if slices.Contains(registered, op) {
			t.Errorf("%s registers %s now: take it off the list of planned routes", service, op)
		}
		if !slices.Contains(documented, op) {
			t.Errorf("planned route %s is not in the OpenAPI document", op)
		}
	}
	if t.Failed() {
		t.Logf("registered: %s\ndocumented: %s", fmt.Sprint(registered), fmt.Sprint(documented))
	}
}
