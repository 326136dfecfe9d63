package progress

import (
	"net/http"
	"testing"

	"github.com/assetgen/assetgen/shared/openapi/openapitest"
)

// The routes New registers and the operations of the OpenAPI document are
// the same, both ways.
func TestRoutesAreTheDocumentsOperations(t *testing.T) {
	var patterns []string
	for _, rt := range routes(testConfig(), Deps{}, &Hub{}, http.NotFoundHandler()) {
		patterns = append(patterns, rt.pattern)
	}
	openapitest.CheckRoutes(t, "progress", patterns, nil)
}
