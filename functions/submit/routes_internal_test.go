package submit

import (
	"testing"

	"github.com/assetgen/assetgen/shared/openapi/openapitest"
)

// plannedRoutes are operations the OpenAPI document gives the submit function
// whose handlers are not registered yet.
var plannedRoutes = []string{
	"GET /batch",
	"GET /batch/{}/archive",
	"POST /batch/{}/retry",
	"POST /uploads",
}

// The routes New registers and the operations of the OpenAPI document are
// the same, both ways.
func TestRoutesAreTheDocumentsOperations(t *testing.T) {
	_, s, _ := testServer(t, testServerOptions{})
	var patterns []string
	for _, rt := range s.routes() {
		patterns = append(patterns, rt.pattern)
	}
	openapitest.CheckRoutes(t, "submit", patterns, plannedRoutes)
}
