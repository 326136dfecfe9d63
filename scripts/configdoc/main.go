// Command configdoc prints the README's configuration tables from the code's
// own list of variables, so the documentation cannot drift.
package main

import (
	"fmt"

	"github.com/assetgen/assetgen/shared/config"
)

func main() {
	fmt.Println("Local stack only (`make run`):")
	fmt.Println()
	fmt.Print(config.Markdown(config.LocalVars))
	fmt.Println()
	fmt.Println("Every function:")
	fmt.Println()
	fmt.Print(config.Markdown(config.Vars))
}
