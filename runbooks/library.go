package runbooks

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Source is a runbook's text and where it came from.
type Source struct {
	Name string
	File string
	Data []byte
}

// Library is the set of runbooks a worker can run by name: the built-in ones
// embedded in the binary, overridden or extended by a directory of files.
type Library struct {
	sources map[string]Source
}

// NewLibrary loads the built-in runbooks and, if dir is not empty, every
// *.yaml / *.yml file in dir (a file whose runbook name matches a built-in
// one replaces it). Every runbook is validated against cat; all problems
// from all files are returned together.
func NewLibrary(dir string, cat Catalogue) (*Library, error) {
	lib := &Library{sources: map[string]Source{}}
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
		if prev, dup := lib.sources[rb.Name]; dup && !(strings.HasPrefix(prev.File, "builtin/") && !builtin) {
			problems = append(problems, Problem{File: file, Path: "name", Message: fmt.Sprintf("runbook %q is also defined in %s", rb.Name, prev.File)})
			return
		}
		lib.sources[rb.Name] = Source{Name: rb.Name, File: file, Data: data}
	}
	entries, err := fs.Glob(builtinFS, "builtin/*.yaml")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		data, err := builtinFS.ReadFile(e)
		if err != nil {
			return nil, err
		}
		load(e, data, true)
	}
	if dir != "" {
		files, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("read runbooks directory: %w", err)
		}
		for _, f := range files {
			ext := filepath.Ext(f.Name())
			if f.IsDir() || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			path := filepath.Join(dir, f.Name())
			data, err := readRunbookFile(path)
			if err != nil {
				return nil, err
			}
			load(path, data, false)
		}
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	return lib, nil
}

// Names lists the runbooks in the library.
func (l *Library) Names() []string {
	names := make([]string, 0, len(l.sources))
	for n := range l.sources {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Source returns the text of the named runbook.
func (l *Library) Source(name string) (Source, error) {
	s, ok := l.sources[name]
	if !ok {
		return Source{}, fmt.Errorf("unknown runbook %q (known: %s)", name, strings.Join(l.Names(), ", "))
	}
	return s, nil
}

// BuiltinSources returns the embedded runbooks, for tools that list or
// validate them without a worker.
func BuiltinSources() ([]Source, error) {
	entries, err := fs.Glob(builtinFS, "builtin/*.yaml")
	if err != nil {
		return nil, err
	}
	var out []Source
	for _, e := range entries {
		data, err := builtinFS.ReadFile(e)
		if err != nil {
			return nil, err
		}
		out = append(out, Source{File: e, Data: data})
	}
	return out, nil
}
