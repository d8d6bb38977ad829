package secrets

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
)

// Whoever can reach the Temporal namespace chooses a run's params, and a
// runbook's `with` may name any reference; so the worker, not the run,
// decides which references a step may resolve and where the value may go.
// A Policy holds that decision as rules from the worker config
// (`secrets.allow`) plus the rules the config implies for references it
// names itself (a database's passwordRef for that database's server, ...).
// Anything no rule allows is refused before the value is read, and so
// before any request is made.

// Rule allows one reference (or a family of them) for some steps and
// destinations.
type Rule struct {
	// Ref is a reference (env:GITHUB_TOKEN) or, ending in "*", a prefix of
	// references (secret:portal-db/*).
	Ref string `yaml:"ref" json:"ref"`
	// Steps are step types (git.merge), step-type prefixes ending in "*"
	// (db.*), or "runbook/stepId" for one step of a runbook the worker
	// loaded (never of an inline definition).
	Steps []string `yaml:"steps" json:"steps"`
	// Hosts are where a step may send the value: host (any port over
	// TLS; over plain http only a loopback host) or host:port (that port,
	// http included); "*" is any host (meant for a webhook URL reference, whose
	// value is its own destination). Steps that hand the value to a local
	// process (exec.run env) need none.
	Hosts []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	// Origin says where the rule comes from, for errors: empty for
	// `secrets.allow`, else the config key that implies it
	// ("settings.git.tokenRef").
	Origin string `yaml:"-" json:"-"`
}

// Check reports what is wrong with a rule on its own.
func (r Rule) Check() error {
	var errs []error
	scheme, rest, ok := strings.Cut(r.Ref, ":")
	switch {
	case r.Ref == "":
		errs = append(errs, errors.New("ref is empty"))
	case !ok || scheme == "" || rest == "":
		errs = append(errs, fmt.Errorf("ref %q: want SCHEME:NAME (env:GITHUB_TOKEN, secret:NAME/KEY), optionally ending in *", r.Ref))
	case strings.Contains(strings.TrimSuffix(r.Ref, "*"), "*"):
		errs = append(errs, fmt.Errorf("ref %q: * may only end the reference (a prefix)", r.Ref))
	}
	if len(r.Steps) == 0 {
		errs = append(errs, fmt.Errorf("ref %s: steps is empty: name the step types (git.merge) or runbook/stepId that may use it", r.Ref))
	}
	for _, s := range r.Steps {
		rb, id, isStep := strings.Cut(s, "/")
		switch {
		case s == "" || s == "*":
			errs = append(errs, fmt.Errorf("ref %s: step %q: name a step type (git.merge), a prefix (db.*) or runbook/stepId", r.Ref, s))
		case isStep && (rb == "" || id == "" || strings.ContainsAny(s, "*") || strings.Count(s, "/") != 1):
			errs = append(errs, fmt.Errorf("ref %s: step %q: want runbook/stepId (no patterns)", r.Ref, s))
		case !isStep && strings.Contains(strings.TrimSuffix(s, "*"), "*"):
			errs = append(errs, fmt.Errorf("ref %s: step %q: * may only end a step type (a prefix)", r.Ref, s))
		}
	}
	for _, h := range r.Hosts {
		if h == "*" {
			continue
		}
		if h == "" || strings.ContainsAny(h, "/@?# ") || strings.Contains(h, "://") {
			errs = append(errs, fmt.Errorf("ref %s: host %q: want a host name or host:port (no scheme, path or user)", r.Ref, h))
		}
	}
	return errors.Join(errs...)
}

// Policy decides per use which references may be resolved. A nil *Policy
// allows nothing.
type Policy struct {
	rules []Rule
}

// NewPolicy checks the rules and builds a Policy from them. Errors name
// each bad rule as secrets.allow[i] (counting the rules without an
// Origin), or by its Origin.
func NewPolicy(rules []Rule) (*Policy, error) {
	var problems []string
	i := 0
	for _, r := range rules {
		label := r.Origin
		if label == "" {
			label = fmt.Sprintf("secrets.allow[%d]", i)
			i++
		}
		if err := r.Check(); err != nil {
			for _, msg := range strings.Split(err.Error(), "\n") {
				problems = append(problems, label+": "+msg)
			}
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return &Policy{rules: slices.Clone(rules)}, nil
}

// Rules returns the policy's rules (for `worker --check` and tests).
func (p *Policy) Rules() []Rule {
	if p == nil {
		return nil
	}
	return slices.Clone(p.rules)
}

// Use says where a resolved value goes. Host, HostInValue or Local is set
// by the call site; a call that declares none is refused,
// so a call site that forgot to say where the value goes cannot slip past
// the host check.
type Use struct {
	// Host is the network destination the step sends the value to: host
	// or host:port (a URL's Host).
	Host string
	// Plaintext: the value goes to Host unencrypted (an http:// URL). A
	// rule's bare host name does not allow that, only host:port or a
	// loopback host, so a run cannot downgrade an allowed https
	// destination to clear text on the wire.
	Plaintext bool
	// HostInValue: the value is itself a URL (a webhook) and its host is
	// the destination, checked once the value is read and before it is
	// used.
	HostInValue bool
	// Local: the value goes to a process on the worker (exec.run env), not
	// to a destination the step chooses; only the step is checked.
	Local bool
	// Configured: the worker config itself chose this reference for this
	// use and its destination (a database's passwordRef for that
	// database's server, a command's own env), and the run chose neither;
	// no rule is needed. Never set it for a reference that came from a
	// step's `with`.
	Configured bool
}

// ResolveFor resolves ref for one use: the step (from ctx) and where the
// value goes. With a nil Resolver no policy applies (tests and tools that
// build adapters by hand); the worker always passes a Guard.
func ResolveFor(ctx context.Context, r Resolver, ref string, use Use) (string, error) {
	return Resolve(context.WithValue(ctx, useKey{}, use), r, ref)
}

type useKey struct{}

// NotAllowedError is a refusal by the policy. Its text names the
// reference, the step and the config that would allow it, never a value.
type NotAllowedError struct {
	msg string
}

func (e *NotAllowedError) Error() string { return e.msg }

// Refusal returns err as the step's failure when it is (or wraps) a
// refusal by the policy: a non-retryable SecretNotAllowed error, so the
// call site passes it on unchanged instead of folding it into its own
// error types. It returns nil for any other error.
func Refusal(err error) error {
	var na *NotAllowedError
	if !errors.As(err, &na) {
		return nil
	}
	return temporal.NewApplicationErrorWithOptions(na.msg, activities.ErrSecretNotAllowed,
		temporal.ApplicationErrorOptions{NonRetryable: true})
}

// Guard wraps a Resolver so that it resolves only what p allows for the
// use (set by ResolveFor) and the step (set by the step adapter).
func Guard(p *Policy, inner Resolver) Resolver {
	return func(ctx context.Context, ref string) (string, error) {
		use, declared := ctx.Value(useKey{}).(Use)
		step, inStep := activities.StepUseOf(ctx)
		if !declared || use == (Use{}) {
			return "", &NotAllowedError{msg: fmt.Sprintf("secret %s: refused: the caller did not declare where the value goes (a bug in %s)", ref, stepLabel(step, inStep))}
		}
		if inner == nil {
			inner = Env
		}
		if use.Configured {
			return inner(ctx, ref)
		}
		rules := p.matching(ref, step, inStep)
		if len(rules) == 0 {
			return "", &NotAllowedError{msg: fmt.Sprintf("secret %s is not allowed for %s; nothing was sent. To allow it, add to the worker config: %s",
				ref, stepLabel(step, inStep), suggestion(ref, step, inStep, use.Host))}
		}
		if use.Host != "" {
			if err := checkHost(rules, ref, use.Host, use.Plaintext, step, inStep); err != nil {
				return "", err
			}
		}
		v, err := inner(ctx, ref)
		if err != nil || !use.HostInValue {
			return v, err
		}
		u, perr := url.Parse(strings.TrimSpace(v))
		if perr != nil || u.Host == "" {
			// Never echo the value: it is the secret.
			return "", &NotAllowedError{msg: fmt.Sprintf("secret %s: refused for %s: its value is not a URL with a host", ref, stepLabel(step, inStep))}
		}
		if err := checkHost(rules, ref, hostWithPort(u), u.Scheme == "http", step, inStep); err != nil {
			return "", err
		}
		return v, nil
	}
}

// matching returns the rules allowing ref for the step.
func (p *Policy) matching(ref string, step activities.StepUse, inStep bool) []Rule {
	if p == nil {
		return nil
	}
	var out []Rule
	for _, r := range p.rules {
		if !matchPattern(r.Ref, ref) {
			continue
		}
		if !inStep {
			// Outside a step only Configured uses resolve.
			continue
		}
		for _, s := range r.Steps {
			if strings.Contains(s, "/") {
				if step.Runbook != "" && s == step.Runbook+"/"+step.StepID {
					out = append(out, r)
					break
				}
				continue
			}
			if matchPattern(s, step.Type) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

func matchPattern(pattern, s string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(s, prefix)
	}
	return pattern == s
}

// checkHost allows dest (host or host:port) when one of the rules lists
// it: "*", the host name (any port), or exactly host:port. Names compare
// case-insensitively. Over plain http (plaintext) a bare host name matches
// only a loopback host: elsewhere the rule must name host:port.
func checkHost(rules []Rule, ref, dest string, plaintext bool, step activities.StepUse, inStep bool) error {
	host, port := splitHost(dest)
	var allowed []string
	bareMatch := false
	for _, r := range rules {
		for _, h := range r.Hosts {
			if h == "*" {
				return nil
			}
			rh, rp := splitHost(h)
			if rh == host && (rp == port || rp == "" && (!plaintext || isLoopback(host))) {
				return nil
			}
			if rh == host && rp == "" {
				bareMatch = true
			}
			allowed = append(allowed, h)
		}
	}
	if bareMatch {
		return &NotAllowedError{msg: fmt.Sprintf("secret %s may not be sent to %s over plain http by %s: the rule names %s without a port, which allows it over TLS only; nothing was sent. Use https, or name %s in the rule's hosts to allow clear text",
			ref, dest, stepLabel(step, inStep), host, dest)}
	}
	list := "none"
	if len(allowed) > 0 {
		list = strings.Join(allowed, ", ")
	}
	return &NotAllowedError{msg: fmt.Sprintf("secret %s may not be sent to %s by %s (hosts allowed for it there: %s); nothing was sent. To allow it, add to the worker config: %s",
		ref, dest, stepLabel(step, inStep), list, suggestion(ref, step, inStep, dest))}
}

// isLoopback: clear text to this host does not cross a network.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitHost lower-cases and splits host[:port], tolerating a bare host
// and [v6] literals.
func splitHost(s string) (host, port string) {
	s = strings.ToLower(strings.TrimSpace(s))
	if h, p, err := net.SplitHostPort(s); err == nil {
		return strings.TrimSuffix(h, "."), p
	}
	return strings.TrimSuffix(strings.Trim(s, "[]"), "."), ""
}

// hostWithPort is u's host with the scheme's default port made explicit,
// so a host:port rule matches https://host/ as host:443.
func hostWithPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	switch u.Scheme {
	case "https":
		return net.JoinHostPort(u.Hostname(), "443")
	case "http":
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}

// URLHost is the destination of an http(s) URL for Use.Host (default port
// made explicit).
func URLHost(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%q is not a URL with a host", raw)
	}
	return hostWithPort(u), nil
}

func stepLabel(step activities.StepUse, inStep bool) string {
	if !inStep {
		return "the worker (outside any step)"
	}
	if step.Runbook != "" {
		return fmt.Sprintf("step %q (%s) of runbook %s", step.StepID, step.Type, step.Runbook)
	}
	return fmt.Sprintf("step %q (%s)", step.StepID, step.Type)
}

// suggestion is the `secrets.allow` entry that would allow the use, as one
// line of flow YAML.
func suggestion(ref string, step activities.StepUse, inStep bool, dest string) string {
	steps := step.Type
	if !inStep {
		steps = "<step type>"
	}
	s := fmt.Sprintf("secrets.allow: [{ref: %s, steps: [%s]", ref, steps)
	if dest != "" {
		s += fmt.Sprintf(", hosts: [%s]", dest)
	}
	if step.Runbook != "" {
		s += fmt.Sprintf("}] (or steps: [%s/%s] for this step only)", step.Runbook, step.StepID)
	} else {
		s += "}]"
	}
	return s
}
