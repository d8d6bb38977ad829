package runbooks

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

var (
	stepIDRE    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	paramNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
)

// scope is what a step's templates may reference: the steps that have
// finished before it.
type scope struct {
	params    map[string]Param
	steps     map[string]bool
	onFailure bool
	// gate is set in a gate's reminder, which also sees .gate.
	gate bool
}

func (p *parser) validate(rb *Runbook, cat Catalogue) {
	if strings.TrimSpace(rb.Name) == "" {
		p.at("name", "a runbook needs a name")
	}
	for _, name := range sortedKeys(rb.Params) {
		p.validateParam(name, rb.Params[name])
	}
	if len(rb.Steps) == 0 {
		p.at("steps", "a runbook needs at least one step")
	}
	ids := map[string]string{}
	sc := &scope{params: rb.Params, steps: map[string]bool{}}
	for i, s := range rb.Steps {
		p.validateStep(s, fmt.Sprintf("steps[%d]", i), cat, ids, sc, false)
	}
	fsc := &scope{params: rb.Params, steps: map[string]bool{}, onFailure: true}
	for id := range sc.steps {
		fsc.steps[id] = true
	}
	for i, s := range rb.OnFailure {
		path := fmt.Sprintf("onFailure[%d]", i)
		// Compensation runs on a context that cancelling the run does not
		// reach, so only a timeout can end a gate nobody decides.
		if s.Kind() == KindApproval {
			t := strings.TrimSpace(s.Approval.Timeout)
			if t == "" {
				p.at(path+".approval.timeout", "an onFailure gate needs approval.timeout: compensation must never wait forever")
			} else if d, err := ParseRunbookDuration(t); err == nil && !isTemplate(t) && d <= 0 {
				p.at(path+".approval.timeout", "an onFailure gate needs a positive approval.timeout: compensation must never wait forever")
			}
		}
		p.validateStep(s, path, cat, ids, fsc, false)
	}
	if rb.Audit != nil {
		// The audit renders after compensation, so it sees every step.
		p.validateAudit(rb.Audit, fsc)
	}
}

var auditKeyRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

func (p *parser) validateAudit(a *Audit, sc *scope) {
	for _, part := range []struct {
		name   string
		fields map[string]string
	}{{"summary", a.Summary}, {"details", a.Details}} {
		path := "audit." + part.name
		if len(part.fields) > MaxAuditFields {
			p.at(path, "audit.%s has %d fields; at most %d are kept", part.name, len(part.fields), MaxAuditFields)
		}
		for _, k := range sortedKeys(part.fields) {
			if !auditKeyRE.MatchString(k) {
				p.at(joinPath(path, k), "audit field name %q must start with a letter and use only letters, digits and _", k)
			}
			p.checkTemplate(part.fields[k], joinPath(path, k), sc)
		}
	}
}

func (p *parser) validateParam(name string, prm Param) {
	path := "params." + name
	if !paramNameRE.MatchString(name) {
		p.at(path, "param name %q must start with a letter and use only letters, digits and _ (templates read it as .params.%s)", name, name)
	}
	switch prm.Type {
	case "", ParamString, ParamInt, ParamBool, ParamDuration, ParamEnvironment:
	default:
		p.at(path+".type", "unknown param type %q (want string, int, bool, duration or environment)", prm.Type)
		return
	}
	if prm.UnsetIfMissing && (prm.Type != ParamEnvironment || prm.Default == nil) {
		p.at(path+".unsetIfMissing", "unsetIfMissing is only allowed on environment params with a default")
	}
	if len(prm.Enum) > 0 && prm.Type != "" && prm.Type != ParamString {
		p.at(path+".enum", "enum is only allowed on string params")
	}
	if prm.Pattern != "" {
		if _, err := regexp.Compile(prm.Pattern); err != nil {
			p.at(path+".pattern", "invalid pattern: %v", err)
			return
		}
	}
	if prm.Default != nil {
		if _, err := coerceParam(name, prm, prm.Default); err != nil {
			p.at(path+".default", "default does not fit the param: %v", err)
		}
	}
}

func (p *parser) validateStep(s Step, path string, cat Catalogue, ids map[string]string, sc *scope, inParallel bool) {
	switch {
	case s.ID == "":
		p.at(path+".id", "a step needs an id")
	case !stepIDRE.MatchString(s.ID):
		p.at(path+".id", "step id %q must start with a letter and use only letters, digits and _ (templates read it as .steps.%s)", s.ID, s.ID)
	default:
		if prev, dup := ids[s.ID]; dup {
			p.at(path+".id", "duplicate step id %q (first used at %s)", s.ID, prev)
		} else {
			ids[s.ID] = path
		}
	}
	forms := 0
	if s.Uses != "" {
		forms++
	}
	if s.Approval != nil {
		forms++
	}
	if len(s.Parallel) > 0 {
		forms++
	}
	if forms != 1 {
		p.at(path, "a step needs exactly one of uses, approval or parallel")
		return
	}
	if s.If != "" {
		p.checkTemplate(s.If, path+".if", sc)
	}
	if s.Retry != nil {
		p.validateRetry(*s.Retry, path+".retry", cat)
	}
	switch s.Kind() {
	case KindActivity:
		p.validateActivityStep(s, path, cat, sc)
	case KindApproval:
		if inParallel {
			p.at(path+".approval", "approval gates cannot run inside a parallel group")
		}
		if len(s.With) > 0 || s.Retry != nil {
			p.at(path, "an approval gate takes no with or retry")
		}
		if len(s.Approval.Approvers) == 0 {
			p.at(path+".approval.approvers", "an approval gate needs at least one approver")
		}
		for i, a := range s.Approval.Approvers {
			if strings.TrimSpace(a) == "" {
				p.at(fmt.Sprintf("%s.approval.approvers[%d]", path, i), "empty approver name")
			} else if isTemplate(a) {
				p.checkTemplate(a, fmt.Sprintf("%s.approval.approvers[%d]", path, i), sc)
			}
		}
		p.checkTemplate(s.Approval.Message, path+".approval.message", sc)
		if t := s.Approval.Timeout; t != "" {
			if isTemplate(t) {
				p.checkTemplate(t, path+".approval.timeout", sc)
			} else if _, err := ParseRunbookDuration(t); err != nil {
				p.at(path+".approval.timeout", "%v", err)
			}
		}
		if r := s.Approval.Remind; r != nil {
			rpath := path + ".approval.remind"
			if r.Every <= 0 {
				p.at(rpath+".every", "remind needs a positive interval, e.g. 4h")
			}
			if r.Uses == "" {
				p.at(rpath+".uses", "remind needs a step type, e.g. notify.send")
			} else {
				rsc := &scope{params: sc.params, steps: sc.steps, onFailure: sc.onFailure, gate: true}
				p.validateActivityStep(Step{ID: s.ID + "_remind", Uses: r.Uses, With: r.With}, rpath, cat, rsc)
				if r.If != "" {
					p.checkTemplate(r.If, rpath+".if", rsc)
				}
			}
		}
	case KindParallel:
		if inParallel {
			p.at(path+".parallel", "parallel groups cannot be nested")
		}
		if len(s.With) > 0 || s.Retry != nil || s.Timeout != 0 {
			p.at(path, "a parallel group takes no with, retry or timeout (set them on its steps)")
		}
		// Siblings run at the same time, so none may read another's outputs.
		var done []string
		for i, c := range s.Parallel {
			inner := &scope{params: sc.params, steps: map[string]bool{}, onFailure: sc.onFailure}
			for id := range sc.steps {
				inner.steps[id] = true
			}
			p.validateStep(c, fmt.Sprintf("%s.parallel[%d]", path, i), cat, ids, inner, true)
			done = append(done, c.ID)
		}
		for _, id := range done {
			sc.steps[id] = true
		}
	}
	sc.steps[s.ID] = true
}

func (p *parser) validateActivityStep(s Step, path string, cat Catalogue, sc *scope) {
	if cat != nil {
		info, ok := cat.StepInfo(s.Uses)
		if !ok {
			p.at(path+".uses", "unknown step type %q (known: %s)", s.Uses, strings.Join(cat.Names(), ", "))
		} else {
			if info.Keys != nil {
				allowed := map[string]bool{}
				for _, k := range info.Keys {
					allowed[k] = true
				}
				for _, k := range sortedKeys(s.With) {
					if !allowed[k] {
						p.at(path+".with."+k, "step type %s takes no argument %q (it takes: %s)", s.Uses, k, strings.Join(info.Keys, ", "))
					}
				}
			}
			for _, k := range info.Required {
				if _, ok := s.With[k]; !ok {
					p.at(path+".with", "step type %s needs argument %q", s.Uses, k)
				}
			}
		}
	}
	var info StepInfo
	if cat != nil {
		info, _ = cat.StepInfo(s.Uses)
	}
	if s.Uses == "wait" && len(info.Durations) == 0 {
		// Without a catalogue the native wait is still known.
		info = StepInfo{Durations: []string{"duration"}, Native: true}
	}
	for _, k := range info.Durations {
		p.checkDurationArg(s.With[k], path+".with."+k, info.Native)
	}
	p.checkValueTemplates(s.With, path+".with", sc)
}

// checkDurationArg checks a literal duration argument (templates are
// checked when they render): negative, overflowing and over-long values are
// refused here, before any run, naming the field.
func (p *parser) checkDurationArg(v any, path string, native bool) {
	d, ok := v.(string)
	if !ok || isTemplate(d) || strings.TrimSpace(d) == "" {
		return
	}
	if _, err := ParseRunbookDuration(d); err != nil {
		p.at(path, "%v", err)
		return
	}
	if !native {
		if _, err := time.ParseDuration(strings.TrimSpace(d)); err != nil {
			p.at(path, "invalid duration %q: this step type takes Go durations such as 30s, 5m or 72h (no days)", d)
		}
	}
}

func (p *parser) validateRetry(r RetryPolicy, path string, cat Catalogue) {
	if r.MaxAttempts < 0 {
		p.at(path+".maxAttempts", "maxAttempts must be 0 (unlimited) or more")
	}
	if r.BackoffCoefficient != 0 && r.BackoffCoefficient < 1 {
		p.at(path+".backoffCoefficient", "backoffCoefficient must be at least 1")
	}
	if r.MaximumInterval != 0 && r.MaximumInterval < r.InitialInterval {
		p.at(path+".maximumInterval", "maximumInterval (%s) is shorter than initialInterval (%s)", r.MaximumInterval, r.InitialInterval)
	}
	if cat == nil {
		return
	}
	// A misspelt name would never match, and the step would quietly go on
	// retrying a failure the author meant to stop at.
	known := cat.ErrorTypes()
	for i, name := range r.NonRetryable {
		if !contains(known, name) {
			p.at(fmt.Sprintf("%s.nonRetryable[%d]", path, i), "unknown error type %q (known: %s)", name, strings.Join(known, ", "))
		}
	}
}

func (p *parser) checkValueTemplates(v any, path string, sc *scope) {
	switch x := v.(type) {
	case string:
		p.checkTemplate(x, path, sc)
	case map[string]any:
		for _, k := range sortedKeys(x) {
			p.checkValueTemplates(x[k], joinPath(path, k), sc)
		}
	case []any:
		for i, item := range x {
			p.checkValueTemplates(item, fmt.Sprintf("%s[%d]", path, i), sc)
		}
	}
}

// checkTemplate parses a template and checks that what it reads exists:
// declared params, and steps that finish before this one.
func (p *parser) checkTemplate(text, path string, sc *scope) {
	if !isTemplate(text) {
		return
	}
	refs, err := templateRefs(text)
	if err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "template: t:")
		p.at(path, "template syntax: %s", msg)
		return
	}
	for _, ref := range refs {
		root := ref[0]
		if !knownRoots[root] {
			p.at(path, "template reads .%s: unknown name (use .params, .steps, .environments, .settings, .run, .failedStep, .error or .gate)", strings.Join(ref, "."))
			continue
		}
		switch root {
		case RootParams:
			if len(ref) > 1 {
				if _, ok := sc.params[ref[1]]; !ok {
					p.at(path, "template reads unknown param %q (declared: %s)", ref[1], strings.Join(sortedKeys(sc.params), ", "))
				}
			}
		case RootSteps:
			if len(ref) > 1 && !sc.steps[ref[1]] {
				p.at(path, "template reads step %q, which does not finish before this step", ref[1])
			} else if len(ref) > 2 && ref[2] != "outputs" && ref[2] != "state" && ref[2] != "error" {
				p.at(path, "template reads .steps.%s.%s: a step has outputs, state and error", ref[1], ref[2])
			}
		case RootRun:
			if len(ref) > 1 && !contains(RunKeys, ref[1]) {
				p.at(path, "template reads .run.%s: unknown key (.run has %s)", ref[1], strings.Join(RunKeys, ", "))
			}
		case RootFailedStep, RootError:
			if !sc.onFailure {
				p.at(path, "template reads .%s, which only onFailure steps have", root)
			}
		case RootGate:
			if !sc.gate {
				p.at(path, "template reads .gate, which only a gate's remind step has")
			}
		}
	}
}

// ParamError lists every problem with the parameters a run was started
// with. Messages never contain the values of secret params.
type ParamError struct {
	Runbook  string
	Problems []string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("invalid params for runbook %q: %s", e.Runbook, strings.Join(e.Problems, "; "))
}

// ResolveParams checks given values against the runbook's declarations,
// converts them to their declared types (CLI values arrive as strings),
// and fills in defaults. Every problem is reported at once.
//
// Params of type environment are only checked to be strings here; use
// ResolveParamsIn where the worker's environments are known.
func ResolveParams(rb *Runbook, given map[string]any) (map[string]any, error) {
	return ResolveParamsIn(rb, given, nil)
}

// ResolveParamsIn is ResolveParams that also checks environment params
// against the known environment names (nil skips that check).
func ResolveParamsIn(rb *Runbook, given map[string]any, environments []string) (map[string]any, error) {
	out := map[string]any{}
	var problems []string
	for _, name := range sortedKeys(given) {
		if _, ok := rb.Params[name]; !ok {
			problems = append(problems, fmt.Sprintf("%s: unknown param (declared: %s)", name, strings.Join(sortedKeys(rb.Params), ", ")))
		}
	}
	for _, name := range sortedKeys(rb.Params) {
		prm := rb.Params[name]
		v, ok := given[name]
		fromDefault := false
		if !ok || v == nil {
			if prm.Default != nil {
				v, fromDefault = prm.Default, true
			} else if prm.Required {
				problems = append(problems, fmt.Sprintf("%s: required param missing", name))
				continue
			} else {
				out[name] = zeroValue(prm.Type)
				continue
			}
		}
		cv, err := coerceParam(name, prm, v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if prm.Type == ParamEnvironment && environments != nil && fromDefault && prm.UnsetIfMissing && !contains(environments, cv.(string)) {
			// The default names an environment teams usually have (a
			// sandbox); a worker without one (a single server) leaves the
			// param empty rather than refusing every run. The runbook's
			// preflight says so where a path needs it.
			out[name] = ""
			continue
		}
		if prm.Type == ParamEnvironment && environments != nil && !contains(environments, cv.(string)) {
			known := "none configured"
			if len(environments) > 0 {
				known = "configured: " + strings.Join(environments, ", ")
			}
			problems = append(problems, fmt.Sprintf("%s: unknown environment %q (%s)", name, cv, known))
			continue
		}
		out[name] = cv
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, &ParamError{Runbook: rb.Name, Problems: problems}
	}
	return out, nil
}

func zeroValue(t ParamType) any {
	switch t {
	case ParamInt:
		return int64(0)
	case ParamBool:
		return false
	default:
		return ""
	}
}

var secretRefRE = regexp.MustCompile(`^(env:[A-Za-z_][A-Za-z0-9_]*|secret:[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[A-Za-z0-9._-]+){0,2})$`)

func coerceParam(name string, prm Param, v any) (any, error) {
	var out any
	switch prm.Type {
	case "", ParamString, ParamEnvironment:
		s, ok := v.(string)
		if !ok {
			switch v.(type) {
			case int, int64, float64, bool:
				s = fmt.Sprint(v)
			default:
				return nil, fmt.Errorf("want a string, got %T", v)
			}
		}
		if prm.Secret {
			if !secretRefRE.MatchString(s) {
				// The value may be a real secret pasted by mistake: never echo it.
				return nil, fmt.Errorf("must be a secret reference (env:NAME or secret:NAME/KEY), not a secret value")
			}
			return s, nil
		}
		if len(prm.Enum) > 0 && !contains(prm.Enum, s) {
			return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(prm.Enum, ", "))
		}
		if prm.Pattern != "" {
			re, err := regexp.Compile(prm.Pattern)
			if err != nil {
				return nil, fmt.Errorf("invalid pattern: %v", err)
			}
			if !re.MatchString(s) {
				return nil, fmt.Errorf("%q does not match pattern %s", s, prm.Pattern)
			}
		}
		out = s
	case ParamInt:
		switch x := v.(type) {
		case int:
			out = int64(x)
		case int64:
			out = x
		case float64:
			if x != float64(int64(x)) {
				return nil, fmt.Errorf("want a whole number, got %v", x)
			}
			out = int64(x)
		case string:
			var n int64
			if _, err := fmt.Sscan(strings.TrimSpace(x), &n); err != nil || fmt.Sprint(n) != strings.TrimSpace(x) {
				return nil, fmt.Errorf("want an int, got %q", x)
			}
			out = n
		default:
			return nil, fmt.Errorf("want an int, got %T", v)
		}
	case ParamBool:
		switch x := v.(type) {
		case bool:
			out = x
		case string:
			switch strings.ToLower(strings.TrimSpace(x)) {
			case "true", "yes", "1":
				out = true
			case "false", "no", "0":
				out = false
			default:
				return nil, fmt.Errorf("want true or false, got %q", x)
			}
		default:
			return nil, fmt.Errorf("want a bool, got %T", v)
		}
	case ParamDuration:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a duration string such as 30s, got %T", v)
		}
		d, err := ParseRunbookDuration(s)
		if err != nil {
			return nil, err
		}
		out = d.String()
	default:
		return nil, fmt.Errorf("unknown param type %q", prm.Type)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
