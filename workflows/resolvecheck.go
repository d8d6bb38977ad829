package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/runbooks"
)

// checkConfigKeys renders, before any step runs, every template of the
// runbook that the worker's config feeds, and fails the run when one reads
// a settings or environment key the config does not have (settings.git,
// an environment's url or approvers, ...), or when a gate's approvers
// render empty. Without it such a run fails at the step that first reads
// the key, possibly after a sandbox change or days of waiting at a gate.
//
// What the steps will output is not known yet, so .steps is stubbed with
// each step type's declared outputs (zero values) and the state
// "succeeded"; .failedStep and .error are empty. Only errors about a
// missing config key count: any other render error (an index past a stub
// list, say) is left for the step itself. A step whose `if` reads only
// params and config is skipped when it renders false, as the run would; a
// step whose `if` depends on other steps is checked, since it may run.
//
// It runs inside the resolve activity, whose result history records, so
// it needs no workflow versioning: a run recorded before it replays from
// its recorded result.
func checkConfigKeys(rb *runbooks.Runbook, params, environments, settings map[string]any, cat *activities.Catalogue) error {
	c := &configCheck{cat: cat, stubs: map[string]any{}, missing: map[string]*missingKey{}}
	c.data = map[string]any{
		runbooks.RootParams:       params,
		runbooks.RootSteps:        c.stubs,
		runbooks.RootEnvironments: orEmpty(environments),
		runbooks.RootSettings:     orEmpty(settings),
		runbooks.RootRun: map[string]any{
			"id": "", "runId": "", "runbook": rb.Name, "requestedBy": "", "startedAt": "", "startedUnix": int64(0),
		},
		runbooks.RootFailedStep: "",
		runbooks.RootError:      "",
	}
	c.stubSteps(rb.Steps)
	c.stubSteps(rb.OnFailure)
	c.steps(rb.Steps)
	c.steps(rb.OnFailure)
	return c.err()
}

type configCheck struct {
	cat     *activities.Catalogue
	data    map[string]any
	stubs   map[string]any
	missing map[string]*missingKey
	order   []string
	// problems are the other findings (gates nobody can approve).
	problems []error
}

// configRoots are what a template may read for its result to be known
// before any step runs.
var configRoots = []string{runbooks.RootParams, runbooks.RootSettings, runbooks.RootEnvironments, runbooks.RootRun}

// guardRoots are what a ConfigGuard conjunct may read to decide a skip:
// configRoots without .run, whose values are stubs here.
var guardRoots = []string{runbooks.RootParams, runbooks.RootSettings, runbooks.RootEnvironments}

func (c *configCheck) stubSteps(steps []runbooks.Step) {
	for _, s := range steps {
		c.stubSteps(s.Parallel)
		outputs := map[string]any{}
		switch s.Kind() {
		case runbooks.KindApproval:
			outputs = gateOutputs(DecisionRecord{ApprovalDecision: ApprovalDecision{Decision: DecisionApprove}}, "")
		case runbooks.KindParallel:
			for _, child := range s.Parallel {
				outputs[child.ID] = c.stubs[child.ID].(map[string]any)["outputs"]
			}
		default:
			if c.cat != nil {
				if t, ok := c.cat.Lookup(s.Uses); ok {
					for _, o := range t.Outputs {
						outputs[o.Name] = zeroOutput(o.Type)
					}
				}
			}
		}
		c.stubs[s.ID] = stepData(outputs, StepSucceeded, "")
	}
}

func zeroOutput(typ string) any {
	switch typ {
	case "int":
		return int64(0)
	case "bool":
		return false
	case "list":
		return []any{}
	case "map", "any":
		return map[string]any{}
	default:
		return ""
	}
}

func (c *configCheck) steps(steps []runbooks.Step) {
	for _, s := range steps {
		c.step(s)
	}
}

func (c *configCheck) step(s runbooks.Step) {
	if s.If != "" && readsOnly(s.If, configRoots) {
		ok, err := runbooks.RenderCondition(s.If, c.data)
		if c.report(s.ID, "if", s.If, err) || !ok {
			return
		}
	} else {
		// `and <config> <steps>`: a config part that is false means the
		// step never runs. .run is left out: it is a stub here.
		for _, g := range runbooks.ConfigGuard(s.If, guardRoots) {
			if v, err := runbooks.RenderValue(g, c.data); err == nil && v == false {
				return
			}
		}
	}
	switch s.Kind() {
	case runbooks.KindParallel:
		c.steps(s.Parallel)
	case runbooks.KindApproval:
		a := s.Approval
		_, err := runbooks.RenderString(a.Message, c.data)
		c.report(s.ID, "approval.message", a.Message, err)
		if a.Timeout != "" {
			_, err := runbooks.RenderString(a.Timeout, c.data)
			c.report(s.ID, "approval.timeout", a.Timeout, err)
		}
		c.approvers(s)
		if r := a.Remind; r != nil {
			data := make(map[string]any, len(c.data)+1)
			for k, v := range c.data {
				data[k] = v
			}
			data[runbooks.RootGate] = map[string]any{"id": s.ID, "message": "", "approvers": []string{}, "waiting": "0s", "reminder": 1}
			if r.If != "" && readsOnly(r.If, append(configRoots, runbooks.RootGate)) {
				ok, err := runbooks.RenderCondition(r.If, data)
				if c.report(s.ID, "approval.remind.if", r.If, err) || !ok {
					return
				}
			}
			c.with(s.ID, "approval.remind.with", r.With, data)
		}
	default:
		c.with(s.ID, "with", s.With, c.data)
		c.required(s)
	}
}

// required fails a step whose required argument renders empty from the
// config alone, as web.smoke's url does for an environment without a url:
// the config has the key, but nothing in it.
func (c *configCheck) required(s runbooks.Step) {
	if c.cat == nil {
		return
	}
	t, ok := c.cat.Lookup(s.Uses)
	if !ok {
		return
	}
	for _, k := range t.RequiredArgs() {
		text, ok := s.With[k].(string)
		// Only what the config feeds: an empty param is the caller's
		// choice, and some step types take an empty required value.
		if !ok || !strings.Contains(text, "{{") || !readsOnly(text, configRoots) || !readsConfig(text) {
			continue
		}
		v, err := runbooks.RenderValue(text, c.data)
		if err != nil {
			continue
		}
		if v == nil || strings.TrimSpace(fmt.Sprint(v)) == "" {
			c.problems = append(c.problems, fmt.Errorf("step %s: with.%s is required but renders empty with this worker's settings and environments: %s",
				s.ID, k, strings.TrimSpace(text)))
		}
	}
}

// approvers fails a gate whose approvers, rendered from the config, name
// nobody: nobody could ever approve it, and the run would only find out
// after someone waited for it.
func (c *configCheck) approvers(s runbooks.Step) {
	var names []string
	for i, a := range s.Approval.Approvers {
		if !readsOnly(a, configRoots) {
			// Read from a step's outputs: known only when the gate opens.
			return
		}
		v, err := runbooks.RenderString(a, c.data)
		if c.report(s.ID, fmt.Sprintf("approval.approvers[%d]", i), a, err) {
			return
		}
		if err != nil {
			return
		}
		for _, one := range strings.Split(v, ",") {
			if one = strings.TrimSpace(one); one != "" {
				names = append(names, one)
			}
		}
	}
	if len(names) == 0 {
		c.problems = append(c.problems, fmt.Errorf("gate %s: approval.approvers %q name nobody with this worker's settings and environments, so nobody could ever approve it",
			s.ID, s.Approval.Approvers))
	}
}

func (c *configCheck) with(stepID, path string, with map[string]any, data map[string]any) {
	for _, k := range sortedKeys(with) {
		c.value(stepID, path+"."+k, with[k], data)
	}
}

func (c *configCheck) value(stepID, path string, v any, data map[string]any) {
	switch x := v.(type) {
	case string:
		_, err := runbooks.RenderValue(x, data)
		c.report(stepID, path, x, err)
	case map[string]any:
		c.with(stepID, path, x, data)
	case []any:
		for i, item := range x {
			c.value(stepID, fmt.Sprintf("%s[%d]", path, i), item, data)
		}
	}
}

// report records err if it is a missing config key, and says whether it was.
func (c *configCheck) report(stepID, path, text string, err error) bool {
	key, ok := runbooks.MissingConfigKey(text, err)
	if !ok {
		return false
	}
	m := c.missing[key]
	if m == nil {
		m = &missingKey{key: key, step: stepID, path: path, text: strings.TrimSpace(text)}
		c.missing[key] = m
		c.order = append(c.order, key)
	} else if m.step != stepID && !slices.Contains(m.others, stepID) {
		m.others = append(m.others, stepID)
	}
	return true
}

// missingKey is one key the config lacks, where it is first read, and
// which other steps read it: one line per key, however many steps read it.
type missingKey struct {
	key, step, path, text string
	others                []string
}

// maxReported bounds the lines of the error, which ends up in history.
const maxReported = 8

func (c *configCheck) err() error {
	if len(c.order) == 0 && len(c.problems) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("the runbook reads settings or environment keys this worker's config does not set; nothing ran:")
	for i, key := range c.order {
		if i == maxReported {
			fmt.Fprintf(&b, "\n- and %d more keys", len(c.order)-maxReported)
			break
		}
		m := c.missing[key]
		fmt.Fprintf(&b, "\n- %q: step %s reads it in %s: %s", key, m.step, m.path, m.text)
		if n := len(m.others); n > 0 {
			shown := m.others[:min(n, 5)]
			fmt.Fprintf(&b, " (also steps %s", strings.Join(shown, ", "))
			if n > len(shown) {
				fmt.Fprintf(&b, " and %d more", n-len(shown))
			}
			b.WriteString(")")
		}
	}
	for _, p := range c.problems {
		fmt.Fprintf(&b, "\n- %v", p)
	}
	return errors.New(b.String())
}

// readsConfig reports whether a template reads .settings or .environments.
func readsConfig(text string) bool {
	roots, _ := runbooks.TemplateRoots(text)
	return slices.Contains(roots, runbooks.RootSettings) || slices.Contains(roots, runbooks.RootEnvironments)
}

// readsOnly reports whether a template reads nothing but the given roots
// (a plain string reads nothing).
func readsOnly(text string, roots []string) bool {
	got, err := runbooks.TemplateRoots(text)
	if err != nil {
		return false
	}
	for _, r := range got {
		if !slices.Contains(roots, r) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
