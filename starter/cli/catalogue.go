package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// CatalogueOptions are the inputs of `stagehand runbooks`.
type CatalogueOptions struct {
	Output string
}

// stepTypeInfo is one step type as --output json prints it.
type stepTypeInfo struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	With        []string `json:"with,omitempty"`
	Required    []string `json:"required,omitempty"`
	// Native steps run inside the workflow (timers), not as activities.
	Native bool `json:"native,omitempty"`
}

func newCatalogueCmd(f *Factory, _ *GlobalOptions) *cobra.Command {
	opts := &CatalogueOptions{}
	cmd := &cobra.Command{
		Use:     "runbooks",
		Aliases: []string{"catalogue", "catalog"},
		Short:   "List the step types runbooks can use",
		Long: `List the built-in step types a runbook can name in ` + "`uses`" + `, with the
` + "`with`" + ` keys each accepts (required ones marked *) and what it does.

This is the catalogue validate checks runbooks against; it needs no server.`,
		Example: `  stagehand runbooks
  stagehand catalogue --output json | jq '.[].name'`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			return runCatalogue(f, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "table", "output format: table, json or markdown")
	return cmd
}

func runCatalogue(f *Factory, opts *CatalogueOptions) error {
	if err := checkOutput(opts.Output, "table", "json", "markdown"); err != nil {
		return err
	}
	cat, err := f.Catalogue()
	if err != nil {
		return exitf(ExitUsage, "build step catalogue: %v", err)
	}
	var infos []stepTypeInfo
	for _, t := range cat.Types() {
		infos = append(infos, stepTypeInfo{Name: t.Name, Description: t.Description, With: t.InputKeys(), Required: t.Required, Native: t.Native})
	}
	if opts.Output == "json" {
		return writeJSON(f.IO.Out, infos)
	}
	tb := &table{header: []string{"STEP TYPE", "WITH", "DESCRIPTION"}}
	for _, in := range infos {
		required := map[string]bool{}
		for _, r := range in.Required {
			required[r] = true
		}
		keys := make([]string, 0, len(in.With))
		for _, k := range in.With {
			if required[k] {
				k += "*"
			}
			keys = append(keys, k)
		}
		tb.add(in.Name, orDash(strings.Join(keys, ", ")), in.Description)
	}
	if opts.Output == "markdown" {
		err = tb.writeMarkdown(f.IO.Out)
	} else {
		err = tb.writeText(f.IO.Out)
	}
	if err != nil {
		return exitf(ExitUsage, "write output: %v", err)
	}
	return nil
}
