package app_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/workflows"
)

var update = flag.Bool("update", false, "rewrite the README's generated search-attribute block")

const (
	readmeBegin = "<!-- search-attributes: generated from workflows.SearchAttributes; `go test ./worker/app -run TestReadmeSearchAttributes -update` rewrites it -->\n"
	readmeEnd   = "<!-- /search-attributes -->\n"
)

// readmeSearchAttributes renders the README's list from the one in the
// code, with the same create lines the worker prints when one is missing.
func readmeSearchAttributes() string {
	var b strings.Builder
	b.WriteString("| attribute | type | holds |\n|-----------|------|-------|\n")
	for _, a := range workflows.SearchAttributes {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", a.Name(), a.Type(), a.Meaning)
	}
	b.WriteString("\n```sh\n")
	for _, a := range workflows.SearchAttributes {
		b.WriteString(app.CreateCommand("default", a) + "\n")
	}
	b.WriteString("```\n")
	return b.String()
}

// TestReadmeSearchAttributes keeps the contract people read equal to the
// list the workflow sets and the worker checks: the README once listed six
// attributes while runs set eight, and servers set up from it wedged runs.
func TestReadmeSearchAttributes(t *testing.T) {
	root, err := localenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "README.md")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	i := strings.Index(text, readmeBegin)
	j := strings.Index(text, readmeEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no generated search-attribute block: put these two lines in the workflow contract section:\n%s%s", path, readmeBegin, readmeEnd)
	}
	got := text[i+len(readmeBegin) : j]
	want := readmeSearchAttributes()
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(text[:i+len(readmeBegin)]+want+text[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the search-attribute block of %s", path)
		return
	}
	t.Errorf("the README's search attributes differ from workflows.SearchAttributes; run `go test ./worker/app -run TestReadmeSearchAttributes -update`.\ngot:\n%s\nwant:\n%s", got, want)
}
