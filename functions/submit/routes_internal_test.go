package submit

import (
	"testing"

	"github.com/assetgen/assetgen/shared/openapi/openapitest"
)

// The routes New registers and the operations of the OpenAPI document are
// the same, both ways.
func TestRoutesAreTheDocumentsOperations(t *testing.T) {
	_, s, _ := testServer(t, testServerOptions{})
	var patterns []string
	for _, rt := range s.routes() {
		patterns = append(patterns, rt.pattern)
	}
	openapitest.CheckRoutes(t, "submit", patterns, nil)
}
