package portal

import (
	"fmt"
	"regexp"
	"strings"
)

// The backend registration is a checked line edit of the new backend
// system's entry point (packages/backend/src/index.ts):
//
//	const backend = createBackend();
//	backend.add(import('@backstage/plugin-catalog-backend'));
//	...
//	backend.start();
//
// A TypeScript parser is not worth its weight for one line: the file is
// scanned with comments and strings told apart, its shape checked (one
// createBackend() assigned to a variable, one start() statement on its own
// line after it), and the add inserted on a line of its own above start().
// A file of another shape (the legacy backend, a start() inside a
// function, two backends) is refused, saying what was found.

var (
	npmNameRE   = regexp.MustCompile(`^(@[a-z0-9~-][a-z0-9._~-]*/)?[a-z0-9~-][a-z0-9._~-]*$`)
	subpathRE   = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$`)
	createRE    = regexp.MustCompile(`\bcreateBackend\s*\(`)
	assignRE    = regexp.MustCompile(`\b(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*(?::\s*[\w$.<>]+\s*)?=\s*(?:await\s+)?createBackend\s*\(`)
	maxSubpath  = 200
	startFormat = `(?:^|[^\w$.])%s\s*\.\s*start\s*\(\s*\)`
)

// ValidatePluginSpec checks a package name (npm's grammar) and an optional
// subpath and returns what goes in import('...').
func ValidatePluginSpec(pkg, subpath string) (string, error) {
	if pkg == "" || len(pkg) > maxNameBytes || !npmNameRE.MatchString(pkg) {
		return "", invalidArgf("package %q is not an npm package name (lower case, optional @scope/, at most %d characters)", bounded(pkg, 240), maxNameBytes)
	}
	if subpath == "" {
		return pkg, nil
	}
	if len(subpath) > maxSubpath || !subpathRE.MatchString(subpath) || strings.Contains("/"+subpath+"/", "/../") || strings.Contains("/"+subpath+"/", "/./") {
		return "", invalidArgf("subpath %q is not a package subpath such as alpha (letters, digits, '.', '_', '-' and '/', no . or .. parts)", bounded(subpath, 240))
	}
	return pkg + "/" + subpath, nil
}

// BackendEdit is the result of EditBackendIndex.
type BackendEdit struct {
	Out   []byte
	Added bool
	// Line is the 1-based line of the add: the inserted one, or the
	// existing one when Added is false.
	Line int
}

// EditBackendIndex adds `<backend>.add(import('<spec>'));` above the
// `<backend>.start();` line of src, unless the backend adds spec already.
func EditBackendIndex(src []byte, spec string) (BackendEdit, error) {
	code := blankComments(string(src))
	creates := createRE.FindAllStringIndex(code, -1)
	if len(creates) != 1 {
		return BackendEdit{}, shapef("expected exactly one createBackend( call (the new backend system's index.ts), found %d", len(creates))
	}
	m := assignRE.FindStringSubmatchIndex(code)
	if m == nil {
		return BackendEdit{}, shapef("expected createBackend() assigned to a variable (const backend = createBackend();), found %q", lineAt(string(src), creates[0][0]))
	}
	name := code[m[2]:m[3]]
	qn := regexp.QuoteMeta(name)
	starts := regexp.MustCompile(fmt.Sprintf(startFormat, qn)).FindAllStringIndex(code, -1)
	if len(starts) != 1 {
		return BackendEdit{}, shapef("expected exactly one %s.start() statement, found %d", name, len(starts))
	}
	startOff := starts[0][0]
	if code[startOff] != name[0] {
		startOff++
	}
	if startOff < creates[0][0] {
		return BackendEdit{}, shapef("%s.start() comes before createBackend(): not the expected shape", name)
	}

	lines, nl := splitLines(string(src))
	codeLines, _ := splitLines(code)
	startLine := strings.Count(code[:startOff], "\n")
	if got := strings.TrimSpace(codeLines[startLine]); got != name+".start();" && got != name+".start()" {
		return BackendEdit{}, shapef("expected %s.start(); on a line of its own, found %q", name, bounded(strings.TrimSpace(lines[startLine]), 120))
	}

	addRE := regexp.MustCompile(fmt.Sprintf(`(?:^|[^\w$.])%s\s*\.\s*add\s*\(\s*import\s*\(\s*(['"])%s['"]\s*\)`, qn, regexp.QuoteMeta(spec)))
	if at := addRE.FindStringIndex(code); at != nil {
		off := at[0]
		if code[off] != name[0] {
			off++ // the character before the name
		}
		return BackendEdit{Out: src, Added: false, Line: strings.Count(code[:off], "\n") + 1}, nil
	}

	// The file's quotes: the first existing import('...') decides.
	quote := "'"
	if q := regexp.MustCompile(`\bimport\s*\(\s*(['"])`).FindStringSubmatch(code); q != nil {
		quote = q[1]
	}
	indent := lines[startLine][:len(lines[startLine])-len(strings.TrimLeft(lines[startLine], " \t"))]
	// Above start() and above the comment lines that sit directly on it
	// (they are about starting).
	at := startLine
	for at > 0 && strings.TrimSpace(codeLines[at-1]) == "" && strings.TrimSpace(lines[at-1]) != "" {
		at--
	}
	add := indent + name + ".add(import(" + quote + spec + quote + "));"
	lines = append(lines[:at], append([]string{add}, lines[at:]...)...)
	return BackendEdit{Out: []byte(strings.Join(lines, nl)), Added: true, Line: at + 1}, nil
}

// splitLines splits s at "\n" and says which break the file uses, so the
// inserted line gets the same; joining with it gives s back.
func splitLines(s string) ([]string, string) {
	if strings.Contains(s, "\r\n") {
		return strings.Split(s, "\r\n"), "\r\n"
	}
	return strings.Split(s, "\n"), "\n"
}

func lineAt(s string, off int) string {
	start := strings.LastIndex(s[:off], "\n") + 1
	end := strings.IndexByte(s[off:], '\n')
	if end < 0 {
		end = len(s) - off
	}
	return bounded(strings.TrimSpace(s[start:off+end]), 120)
}

// blankComments returns s with the text of // and /* */ comments replaced
// by spaces (line breaks kept, so offsets and line numbers still match);
// strings and template literals are kept as they are.
func blankComments(s string) string {
	b := []byte(s)
	blank := func(i int) {
		if b[i] != '\n' && b[i] != '\r' {
			b[i] = ' '
		}
	}
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\'' || c == '"' || c == '`':
			for i++; i < len(b) && b[i] != c; i++ {
				if b[i] == '\\' {
					i++
				} else if b[i] == '\n' && c != '`' {
					break // an unterminated string ends at the line
				}
			}
		case c == '/' && i+1 < len(b) && b[i+1] == '/':
			for ; i < len(b) && b[i] != '\n'; i++ {
				blank(i)
			}
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			blank(i)
			blank(i + 1)
			for i += 2; i < len(b); i++ {
				if b[i] == '*' && i+1 < len(b) && b[i+1] == '/' {
					blank(i)
					blank(i + 1)
					i++
					break
				}
				blank(i)
			}
		}
	}
	return string(b)
}
