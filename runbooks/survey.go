package runbooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// LibraryEntry is one runbook a worker would load, as listings show it.
type LibraryEntry struct {
	Runbook *Runbook
	// File is builtin/<name>.yaml or the path in the runbooks directory.
	File    string
	Builtin bool
	// Overrides is the built-in file this runbook replaces ("" if none).
	Overrides string
}

// SurveyLibrary loads what NewLibrary loads — the built-in runbooks, then
// every *.yaml / *.yml file in dir (which may replace a built-in of the same
// name) — but carries on past invalid files: it returns every runbook that
// loads, sorted by name, and the problems of the rest, so a listing shows
// both. NewLibrary refuses the whole set when any problem is returned here.
func SurveyLibrary(dir string, cat Catalogue) ([]LibraryEntry, []Problem, error) {
	byName := map[string]*LibraryEntry{}
	var problems []Problem
	load := func(file string, data []byte, builtin bool) {
		rb, err := Parse(file, data, cat)
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				problems = append(problems, ve.Problems...)
				return
			}
			problems = append(problems, Problem{File: file, Message: err.Error()})
			return
		}
		e := &LibraryEntry{Runbook: rb, File: file, Builtin: builtin}
		if prev, dup := byName[rb.Name]; dup {
			if !prev.Builtin || builtin {
				problems = append(problems, Problem{File: file, Path: "name", Message: fmt.Sprintf("runbook %q is also defined in %s", rb.Name, prev.File)})
				return
			}
			e.Overrides = prev.File
		}
		byName[rb.Name] = e
	}
	sources, err := BuiltinSources()
	if err != nil {
		return nil, nil, err
	}
	for _, s := range sources {
		load(s.File, s.Data, true)
	}
	if dir != "" {
		files, err := os.ReadDir(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("read runbooks directory: %w", err)
		}
		for _, f := range files {
			ext := filepath.Ext(f.Name())
			if f.IsDir() || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			path := filepath.Join(dir, f.Name())
			data, err := readRunbookFile(path)
			if err != nil {
				problems = append(problems, Problem{File: path, Message: err.Error()})
				continue
			}
			load(path, data, false)
		}
	}
	out := make([]LibraryEntry, 0, len(byName))
	for _, e := range byName {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Runbook.Name < out[j].Runbook.Name })
	return out, problems, nil
}
