package runbooks

import (
	"fmt"
	"slices"
	"strings"
	"text/template/parse"
)

// Previewing templates before a run (`stagehand explain`): a template is
// rendered when everything it reads is known before the run starts —
// .params, .run.runbook, .run.requestedBy and, when the worker's config is
// at hand, .settings and .environments — with the same function map and
// data shape the workflow renders with, so the preview is what the run
// would send. A template that reads anything else (.steps, .run.id,
// .run.startedAt, .failedStep, .gate, ...) is known only at run time: its
// text is kept, with the parts that can be known rendered in place.

// PreviewState says how much of a value is known before the run.
type PreviewState string

// Preview states, from most to least known. A value built of several
// templates has the state of its least known part.
const (
	// PreviewLiteral: no template at all.
	PreviewLiteral PreviewState = "literal"
	// PreviewRendered: rendered from params (and the worker config).
	PreviewRendered PreviewState = "rendered"
	// PreviewNeedsConfig: reads .settings or .environments and no worker
	// config was given; plain paths show as "<from worker config: settings.x>".
	PreviewNeedsConfig PreviewState = "needsConfig"
	// PreviewRuntime: reads what only the run knows (step outputs, the
	// run's id or start time, the failed step, the open gate).
	PreviewRuntime PreviewState = "runtime"
	// PreviewError: rendering from what is known fails; the run would fail
	// the same way.
	PreviewError PreviewState = "error"
)

var previewRank = map[PreviewState]int{PreviewLiteral: 0, PreviewRendered: 1, PreviewNeedsConfig: 2, PreviewRuntime: 3, PreviewError: 4}

func worse(a, b PreviewState) PreviewState {
	if previewRank[b] > previewRank[a] {
		return b
	}
	return a
}

// PreviewInput is what is known about a run before it starts.
type PreviewInput struct {
	// Params are the resolved params (defaults applied, types converted).
	Params      map[string]any
	Runbook     string
	RequestedBy string
	// ConfigKnown says Settings and Environments are the worker's (its
	// config file was read). Without it they are not guessed.
	ConfigKnown  bool
	Settings     map[string]any
	Environments map[string]any
}

// Preview is one value as known before the run.
type Preview struct {
	State PreviewState `json:"state"`
	// Value is the rendered value (typed, as the step would receive it)
	// when State is literal or rendered; otherwise the text with the parts
	// that can be known rendered and the rest left as template (or, without
	// a worker config, "<from worker config: settings.x.y>").
	Value any `json:"value"`
	// Template is the original text of a string that is a template.
	Template string `json:"template,omitempty"`
	// Needs lists what is not known before the run, e.g.
	// "steps.checkout.outputs.dir", "run.startedUnix", "settings.git.provider".
	Needs []string `json:"needs,omitempty"`
	// Error is why rendering fails (State error).
	Error string `json:"error,omitempty"`
}

// Known reports whether the value is fully known before the run.
func (p Preview) Known() bool { return p.State == PreviewLiteral || p.State == PreviewRendered }

// data is the template data a run would have, limited to what is known.
func (in PreviewInput) data() map[string]any {
	d := map[string]any{
		RootParams: orEmptyMap(in.Params),
		RootRun:    map[string]any{"runbook": in.Runbook, "requestedBy": in.RequestedBy},
	}
	if in.ConfigKnown {
		d[RootSettings] = orEmptyMap(in.Settings)
		d[RootEnvironments] = orEmptyMap(in.Environments)
	}
	return d
}

func orEmptyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// classify says whether a field reference is known before the run.
func (in PreviewInput) classify(ref []string) PreviewState {
	switch ref[0] {
	case RootParams:
		return PreviewRendered
	case RootRun:
		if len(ref) > 1 && (ref[1] == "runbook" || ref[1] == "requestedBy") {
			return PreviewRendered
		}
		return PreviewRuntime
	case RootSettings, RootEnvironments:
		if in.ConfigKnown {
			return PreviewRendered
		}
		return PreviewNeedsConfig
	default:
		return PreviewRuntime
	}
}

// previewMode is how the workflow renders a template: a step argument keeps
// a single action's type (RenderValue), a message is text (RenderString),
// an `if` is a boolean (RenderCondition).
type previewMode int

const (
	modeValue previewMode = iota
	modeString
	modeCondition
)

// PreviewValue previews a step argument (strings inside maps and lists
// too), as RenderValue would render it.
func PreviewValue(v any, in PreviewInput) Preview {
	switch x := v.(type) {
	case string:
		return previewText(x, in, modeValue)
	case map[string]any:
		out := Preview{State: PreviewLiteral}
		m := make(map[string]any, len(x))
		for _, k := range sortedKeys(x) {
			c := PreviewValue(x[k], in)
			m[k] = c.Value
			out.merge(c, k)
		}
		out.Value = m
		return out
	case []any:
		out := Preview{State: PreviewLiteral}
		l := make([]any, len(x))
		for i, item := range x {
			c := PreviewValue(item, in)
			l[i] = c.Value
			out.merge(c, fmt.Sprintf("[%d]", i))
		}
		out.Value = l
		return out
	default:
		return Preview{State: PreviewLiteral, Value: v}
	}
}

func (p *Preview) merge(c Preview, where string) {
	p.State = worse(p.State, c.State)
	for _, n := range c.Needs {
		if !slices.Contains(p.Needs, n) {
			p.Needs = append(p.Needs, n)
		}
	}
	if c.Error != "" {
		e := where + ": " + c.Error
		if p.Error != "" {
			e = p.Error + "; " + e
		}
		p.Error = e
	}
}

// PreviewString previews text rendered as a string (a gate's message,
// approvers or timeout; an audit field), as RenderString would.
func PreviewString(text string, in PreviewInput) Preview {
	return previewText(text, in, modeString)
}

// PreviewCondition previews an `if`: Value is a bool when it is known.
func PreviewCondition(text string, in PreviewInput) Preview {
	return previewText(text, in, modeCondition)
}

func previewText(text string, in PreviewInput, mode previewMode) Preview {
	if !isTemplate(text) {
		if mode == modeCondition {
			ok, _ := RenderCondition(text, nil)
			return Preview{State: PreviewLiteral, Value: ok}
		}
		return Preview{State: PreviewLiteral, Value: text}
	}
	p := Preview{Template: text}
	tmpl, err := newTemplate("t", func(any) string { return "" }).Parse(text)
	if err != nil {
		return Preview{State: PreviewError, Value: text, Template: text, Error: err.Error()}
	}
	p.State = PreviewRendered
	p.addNeeds(tmpl.Tree.Root, in)
	data := in.data()
	if p.State == PreviewRendered {
		var v any
		switch mode {
		case modeValue:
			v, err = RenderValue(text, data)
		case modeString:
			v, err = RenderString(text, data)
		case modeCondition:
			v, err = RenderCondition(text, data)
		}
		if err == nil {
			p.Value = v
			return p
		}
		if !readsUnknownRoot(err) {
			p.State, p.Value, p.Error = PreviewError, text, err.Error()
			return p
		}
		// A reference the walk cannot see (`$.steps...` inside a range
		// body) reached a root only the run has.
		p.State = PreviewRuntime
	}
	p.Value = partial(tmpl.Tree.Root, text, in, data)
	return p
}

// addNeeds records every field reference that is not known before the run
// and sets the state to that of the least known one.
func (p *Preview) addNeeds(root parse.Node, in PreviewInput) {
	walkTemplate(root, func(n parse.Node) {
		var ref []string
		switch x := n.(type) {
		case *parse.FieldNode:
			ref = x.Ident
		case *parse.VariableNode:
			if len(x.Ident) > 1 && x.Ident[0] == "$" {
				ref = x.Ident[1:]
			}
		}
		if len(ref) == 0 {
			return
		}
		st := in.classify(ref)
		p.State = worse(p.State, st)
		if st != PreviewRendered {
			if name := strings.Join(ref, "."); !slices.Contains(p.Needs, name) {
				p.Needs = append(p.Needs, name)
			}
		}
	})
}

// readsUnknownRoot reports whether a render error is a root or .run key
// that the preview data leaves out because only the run has it.
func readsUnknownRoot(err error) bool {
	msg := err.Error()
	for _, k := range []string{RootSteps, RootFailedStep, RootError, RootGate, RootSettings, RootEnvironments, "id", "runId", "startedAt", "startedUnix"} {
		if strings.Contains(msg, `map has no entry for key "`+k+`"`) {
			return true
		}
	}
	return false
}

// partial renders a template piece by piece: its text, each action on its
// own when what it reads is known, and the branch an `if` takes when its
// condition is known. What cannot be known is kept as template text (a
// plain path into a worker config not given becomes "<from worker config:
// settings.x.y>"); so are range and with blocks.
func partial(root *parse.ListNode, text string, in PreviewInput, data map[string]any) string {
	var b strings.Builder
	partialList(&b, root, in, data)
	return b.String()
}

func partialList(b *strings.Builder, list *parse.ListNode, in PreviewInput, data map[string]any) {
	if list == nil {
		return
	}
	for _, n := range list.Nodes {
		switch x := n.(type) {
		case *parse.TextNode:
			b.Write(x.Text)
		case *parse.ActionNode:
			action := "{{ " + x.Pipe.String() + " }}"
			switch pipeState(x.Pipe, in) {
			case PreviewRendered:
				// A variable set by an earlier action makes this fail
				// to parse alone; it is then kept as text.
				if s, err := RenderString(action, data); err == nil {
					b.WriteString(s)
					continue
				}
			case PreviewNeedsConfig:
				if path, ok := configPath(x.Pipe, data); ok {
					b.WriteString("<from worker config: " + path + ">")
					continue
				}
			}
			b.WriteString(action)
		case *parse.IfNode:
			if pipeState(x.Pipe, in) == PreviewRendered {
				if s, err := RenderString("{{ if "+x.Pipe.String()+" }}1{{ end }}", data); err == nil {
					if s == "1" {
						partialList(b, x.List, in, data)
					} else {
						partialList(b, x.ElseList, in, data)
					}
					continue
				}
			}
			b.WriteString(x.String())
		default:
			b.WriteString(n.String())
		}
	}
}

// pipeState is the state of the least known reference of a pipeline.
func pipeState(p *parse.PipeNode, in PreviewInput) PreviewState {
	var ap Preview
	ap.State = PreviewRendered
	ap.addNeeds(p, in)
	return ap.State
}

// configPath names what a pipeline reads when it is a plain path into the
// worker config: `.settings.git.provider`, `index .settings.git "tokenRef"`
// or `(index .environments .params.sandbox).url` (the index keys rendered).
func configPath(p *parse.PipeNode, data map[string]any) (string, bool) {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) != 1 {
		return "", false
	}
	args := p.Cmds[0].Args
	if len(args) == 1 {
		return configNodePath(args[0], data)
	}
	if id, ok := args[0].(*parse.IdentifierNode); !ok || id.Ident != "index" || len(args) < 3 {
		return "", false
	}
	base, ok := configNodePath(args[1], data)
	if !ok {
		return "", false
	}
	parts := []string{base}
	for _, a := range args[2:] {
		switch k := a.(type) {
		case *parse.StringNode:
			parts = append(parts, k.Text)
		case *parse.FieldNode:
			if k.Ident[0] != RootParams {
				return "", false
			}
			s, err := RenderString("{{ "+k.String()+" }}", data)
			if err != nil {
				return "", false
			}
			parts = append(parts, s)
		default:
			return "", false
		}
	}
	return strings.Join(parts, "."), true
}

func configNodePath(n parse.Node, data map[string]any) (string, bool) {
	switch x := n.(type) {
	case *parse.FieldNode:
		if x.Ident[0] == RootSettings || x.Ident[0] == RootEnvironments {
			return strings.Join(x.Ident, "."), true
		}
	case *parse.PipeNode:
		return configPath(x, data)
	case *parse.ChainNode:
		base, ok := configNodePath(x.Node, data)
		if !ok {
			return "", false
		}
		return base + "." + strings.Join(x.Field, "."), true
	}
	return "", false
}
