package runbooks

import (
	"slices"
	"strings"
	"text/template/parse"
)

// TemplateRoots lists the data roots a template reads (params, steps,
// settings, ...), sorted, each once; nil for a plain string. It lets the
// worker tell templates it can render before any step runs (they read only
// .params, .settings, .environments and .run) from those it cannot.
func TemplateRoots(text string) ([]string, error) {
	if !isTemplate(text) {
		return nil, nil
	}
	refs, err := templateRefs(text)
	if err != nil {
		return nil, err
	}
	var roots []string
	for _, ref := range refs {
		if len(ref) > 0 && !slices.Contains(roots, ref[0]) {
			roots = append(roots, ref[0])
		}
	}
	slices.Sort(roots)
	return roots, nil
}

// MissingConfigKey reports whether a render error of text (from
// RenderString, RenderValue or RenderCondition) is a key the worker's config
// lacks: a field read under .settings or .environments that is not there,
// as in `{{ .settings.git.provider }}` without settings.git, or
// `{{ (index .environments .params.sandbox).url }}` without that url. It
// returns the missing key. text/template names the key but not reliably the
// expression (for a chain it points at the last argument), so the key is
// matched against the field names the template reads under the config
// roots; a name the template also reads elsewhere (a step's output of the
// same name) is not claimed.
func MissingConfigKey(text string, err error) (key string, ok bool) {
	if err == nil {
		return "", false
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, `map has no entry for key "`):
		key = msg[strings.Index(msg, `map has no entry for key "`)+len(`map has no entry for key "`):]
		key, _, _ = strings.Cut(key, `"`)
	case strings.Contains(msg, "nil pointer evaluating "):
		rest := msg[strings.Index(msg, "nil pointer evaluating ")+len("nil pointer evaluating "):]
		key = rest[strings.LastIndex(rest, ".")+1:]
		key = strings.TrimSpace(key)
	case strings.Contains(msg, "can't evaluate field "):
		key = msg[strings.Index(msg, "can't evaluate field ")+len("can't evaluate field "):]
		key, _, _ = strings.Cut(key, " ")
	default:
		return "", false
	}
	config, other, perr := configFields(text)
	if perr != nil || key == "" || !config[key] || other[key] {
		return "", false
	}
	return key, true
}

// configFields splits the field names a template reads into those under
// .settings/.environments (also through index: `(index .environments
// .params.sandbox).url` reads url) and those under anything else. Bodies of
// range and with (a new dot) are not looked into.
func configFields(text string) (config, other map[string]bool, err error) {
	tmpl, err := newTemplate("t", func(any) string { return "" }).Parse(text)
	if err != nil {
		return nil, nil, err
	}
	config, other = map[string]bool{}, map[string]bool{}
	isConfig := func(root string) bool { return root == RootSettings || root == RootEnvironments }
	add := func(set map[string]bool, idents []string) {
		for _, id := range idents {
			set[id] = true
		}
	}
	// readsConfig reports whether a node reads a config root anywhere.
	var readsConfig func(n parse.Node) bool
	readsConfig = func(n parse.Node) bool {
		switch x := n.(type) {
		case *parse.FieldNode:
			return isConfig(x.Ident[0])
		case *parse.VariableNode:
			return len(x.Ident) > 1 && x.Ident[0] == "$" && isConfig(x.Ident[1])
		case *parse.ChainNode:
			return readsConfig(x.Node)
		case *parse.PipeNode:
			for _, c := range x.Cmds {
				if readsConfig(c) {
					return true
				}
			}
		case *parse.CommandNode:
			for _, a := range x.Args {
				if readsConfig(a) {
					return true
				}
			}
		}
		return false
	}
	walkTemplate(tmpl.Tree.Root, func(n parse.Node) {
		switch x := n.(type) {
		case *parse.FieldNode:
			if isConfig(x.Ident[0]) {
				add(config, x.Ident[1:])
			} else {
				add(other, x.Ident[1:])
			}
		case *parse.VariableNode:
			if len(x.Ident) > 2 && x.Ident[0] == "$" {
				if isConfig(x.Ident[1]) {
					add(config, x.Ident[2:])
				} else {
					add(other, x.Ident[2:])
				}
			}
		case *parse.ChainNode:
			if readsConfig(x.Node) {
				add(config, x.Field)
			} else {
				add(other, x.Field)
			}
		}
	})
	return config, other, nil
}

// ConfigGuard returns, for a condition of the form `{{ and A B ... }}`,
// the conjuncts that read only the given roots, each as a template of its
// own (none when the condition has another form). The worker's config
// check renders them: when one is the boolean false, `and` returns it and
// the whole condition is false whatever the step-dependent conjuncts say,
// so the step is skipped the way a condition on config alone would be.
// (Only a real false counts: `and` takes the string "false" as true.) The
// upgrade and plugin-install runbooks guard their Kubernetes and
// single-server steps like this.
func ConfigGuard(text string, roots []string) []string {
	tmpl, err := newTemplate("t", func(any) string { return "" }).Parse(text)
	if err != nil {
		return nil
	}
	var action *parse.ActionNode
	for _, n := range tmpl.Tree.Root.Nodes {
		switch x := n.(type) {
		case *parse.TextNode:
			if strings.TrimSpace(string(x.Text)) != "" {
				return nil
			}
		case *parse.ActionNode:
			if action != nil {
				return nil
			}
			action = x
		default:
			return nil
		}
	}
	if action == nil || len(action.Pipe.Decl) > 0 || len(action.Pipe.Cmds) != 1 {
		return nil
	}
	args := action.Pipe.Cmds[0].Args
	if id, ok := args[0].(*parse.IdentifierNode); !ok || id.Ident != "and" || len(args) < 2 {
		return nil
	}
	var guards []string
	for _, a := range args[1:] {
		text := "{{ " + a.String() + " }}"
		got, err := TemplateRoots(text)
		if err != nil || len(got) == 0 {
			continue
		}
		only := true
		for _, r := range got {
			only = only && slices.Contains(roots, r)
		}
		if only {
			guards = append(guards, text)
		}
	}
	return guards
}
