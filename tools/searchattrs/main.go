// Command searchattrs prints the search attributes Stagehand's workflows
// set, one NAME=Type per line, in the form `temporal server start-dev
// --search-attribute` takes. scripts/dev-up.sh reads it so that the dev
// server registers exactly workflows.SearchAttributeDefinitions, with no
// second copy of the list to drift.
package main

import (
	"fmt"

	"github.com/stagehand-dev/stagehand/workflows"
)

func main() {
	for _, def := range workflows.SearchAttributeDefinitions {
		fmt.Println(def)
	}
}
