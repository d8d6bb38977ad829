package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"

	"github.com/stagehand-dev/stagehand/workflows"
)

// SearchAttributesError says which of the contract's search attributes the
// namespace lacks or has with another type, and how to fix each. Without
// them a run does not fail cleanly: the server rejects the workflow task that
// upserts an unknown attribute (BadSearchAttributes), retries it forever, and
// the run stays open, its outcome never recorded. So the worker refuses to
// start instead.
type SearchAttributesError struct {
	// Namespace is the namespace that was checked.
	Namespace string
	// Address is the frontend the worker talks to, named in the message so
	// a person runs the commands against the same server.
	Address string
	// Missing are the attributes the namespace does not have.
	Missing []workflows.SearchAttribute
	// WrongType are attributes registered with another type.
	WrongType []WrongTypeSearchAttribute
}

// WrongTypeSearchAttribute is an attribute the namespace registered with a
// type the workflow does not set.
type WrongTypeSearchAttribute struct {
	workflows.SearchAttribute
	// Registered is the type the namespace has, e.g. Text.
	Registered string
}

// Error names every problem, then the commands that fix them: the temporal
// CLI for a self-hosted server or a dev server (the Temporal UI cannot create
// search attributes), tcld for Temporal Cloud.
func (e *SearchAttributesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "namespace %q", e.Namespace)
	if e.Address != "" {
		fmt.Fprintf(&b, " on the Temporal server at %s", e.Address)
	}
	n := len(workflows.SearchAttributes)
	switch {
	case len(e.Missing) > 0 && len(e.WrongType) > 0:
		fmt.Fprintf(&b, " lacks %d of the %d search attributes Stagehand's runs set and has %d with the wrong type", len(e.Missing), n, len(e.WrongType))
	case len(e.Missing) > 0:
		fmt.Fprintf(&b, " lacks %d of the %d search attributes Stagehand's runs set", len(e.Missing), n)
	default:
		fmt.Fprintf(&b, " has %d of the %d search attributes Stagehand's runs set with the wrong type", len(e.WrongType), n)
	}
	b.WriteString("; a run would fail every workflow task with BadSearchAttributes and never end, so the worker will not start.\n")
	for _, a := range e.Missing {
		fmt.Fprintf(&b, "  missing:    %s (%s)\n", a.Name(), a.Type())
	}
	for _, a := range e.WrongType {
		fmt.Fprintf(&b, "  wrong type: %s is %s, runs set %s\n", a.Name(), a.Registered, a.Type())
	}
	b.WriteString("Create them, once per namespace, with the temporal CLI (add --address and the TLS or API-key flags you connect with)")
	if len(e.WrongType) > 0 {
		b.WriteString("; a type cannot be changed, so remove a wrong-typed one first")
	}
	b.WriteString(":\n")
	for _, a := range e.WrongType {
		// A type cannot be changed in place. Removing an attribute changes
		// what past runs' visibility records show for it: an operator's
		// decision, which is why the worker only prints the command.
		fmt.Fprintf(&b, "  %s\n", RemoveCommand(e.Namespace, a.Name()))
		fmt.Fprintf(&b, "  %s\n", CreateCommand(e.Namespace, a.SearchAttribute))
	}
	for _, a := range e.Missing {
		fmt.Fprintf(&b, "  %s\n", CreateCommand(e.Namespace, a))
	}
	fmt.Fprintf(&b, "On Temporal Cloud, add them in the Cloud UI (Namespaces → %s → Custom Search Attributes) or with tcld:\n", e.Namespace)
	fmt.Fprintf(&b, "  %s", TcldAddCommand(e.Namespace, e.all()))
	if len(e.WrongType) > 0 {
		b.WriteString("\n  (Cloud cannot remove an attribute: free a wrong-typed name first with `tcld namespace search-attributes rename`)")
	}
	return b.String()
}

func (e *SearchAttributesError) all() []workflows.SearchAttribute {
	all := make([]workflows.SearchAttribute, 0, len(e.WrongType)+len(e.Missing))
	for _, a := range e.WrongType {
		all = append(all, a.SearchAttribute)
	}
	return append(all, e.Missing...)
}

// CreateCommand is the temporal CLI line that registers one attribute on a
// namespace; the README's contract shows the same lines.
func CreateCommand(namespace string, a workflows.SearchAttribute) string {
	return fmt.Sprintf("temporal operator search-attribute create --namespace %s --name %s --type %s", namespace, a.Name(), a.Type())
}

// RemoveCommand is the temporal CLI line that removes an attribute, the first
// half of fixing one registered with the wrong type.
func RemoveCommand(namespace, name string) string {
	return fmt.Sprintf("temporal operator search-attribute remove --namespace %s --name %s --yes", namespace, name)
}

// TcldAddCommand is the Temporal Cloud line that adds attributes to a
// namespace (Cloud namespaces are named <namespace>.<account id>).
func TcldAddCommand(namespace string, attrs []workflows.SearchAttribute) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tcld namespace search-attributes add --namespace %s", namespace)
	for _, a := range attrs {
		fmt.Fprintf(&b, " --search-attribute %s=%s", a.Name(), a.Type())
	}
	return b.String()
}

// CompareSearchAttributes returns the contract's attributes that registered
// (name → type, as ListSearchAttributes reports a namespace's custom ones)
// lacks or types differently, in the contract's order, or nil if none.
func CompareSearchAttributes(namespace string, registered map[string]enums.IndexedValueType) *SearchAttributesError {
	e := &SearchAttributesError{Namespace: namespace}
	for _, a := range workflows.SearchAttributes {
		got, ok := registered[a.Name()]
		switch {
		case !ok:
			e.Missing = append(e.Missing, a)
		case got != a.Key.GetValueType():
			e.WrongType = append(e.WrongType, WrongTypeSearchAttribute{SearchAttribute: a, Registered: got.String()})
		}
	}
	if len(e.Missing) == 0 && len(e.WrongType) == 0 {
		return nil
	}
	return e
}

// ErrSearchAttributesUnverified wraps a refusal by the server to list the
// namespace's search attributes (no permission, or an API it does not offer).
// The worker then starts anyway, with a warning: a connection allowed to run
// workflows but not to read the namespace's settings is a deployment choice,
// and refusing to start would turn it into an outage.
var ErrSearchAttributesUnverified = errors.New("search attributes not verified")

// OperatorClient is the part of client.Client the check uses.
type OperatorClient interface {
	OperatorService() operatorservice.OperatorServiceClient
}

// CheckSearchAttributes lists the namespace's search attributes through the
// operator service and compares them with workflows.SearchAttributes. It
// returns a *SearchAttributesError when any is missing or mistyped, an error
// wrapping ErrSearchAttributesUnverified when the server will not say, and
// any other failure as is.
func CheckSearchAttributes(ctx context.Context, c OperatorClient, namespace, address string) error {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		// The SDK hands back serviceerror types, which status.Code does not
		// see through; ToStatus reads those and plain gRPC statuses alike.
		if code := serviceerror.ToStatus(err).Code(); code == codes.PermissionDenied || code == codes.Unimplemented {
			return fmt.Errorf("%w: listing the search attributes of namespace %q: %w", ErrSearchAttributesUnverified, namespace, err)
		}
		return fmt.Errorf("list search attributes of namespace %q: %w", namespace, err)
	}
	if e := CompareSearchAttributes(namespace, resp.GetCustomAttributes()); e != nil {
		e.Address = address
		return e
	}
	return nil
}
