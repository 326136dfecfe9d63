// Command function serves one function the way Cloud Functions runs it: through
// the Functions Framework, with FUNCTION_TARGET (Submit, Generate or Progress)
// mounted at "/" and receiving every path. Point it at the emulators of a
// running `make run` with STORAGE_EMULATOR_HOST and TASKS_EMULATOR_HOST, the
// same variables a deployment would use for real services.
package main

import (
	"fmt"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	// Registers Submit, Generate and Progress.
	_ "github.com/assetgen/assetgen/functions"
)

func main() {
	if os.Getenv("FUNCTION_TARGET") == "" {
		fmt.Fprintln(os.Stderr, "function: set FUNCTION_TARGET to Submit, Generate or Progress")
		os.Exit(2)
	}
	// The framework does not read PORT itself.
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.StartHostPort(os.Getenv("HOST"), port); err != nil {
		fmt.Fprintln(os.Stderr, "function:", err)
		os.Exit(1)
	}
}
