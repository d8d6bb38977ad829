package workflows

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"
)

// Who decided a gate, as far as the connection can tell.
//
// An approval's `by` is whatever the client typed. Temporal does record the
// caller's identity (client.Options.Identity) with a signal event, but it
// does not hand it to workflow code, and an update's request identity
// (Meta.Identity) is not reachable from the handler either (SDK v1.50:
// the update protocol keeps it to itself). So the client puts its identity
// in a header, IdentityHeader, on every start, signal and update it sends
// (ClientInterceptor), and the worker's inbound interceptor
// (WorkerInterceptors) hands it to the approval handlers, which record it
// in DecisionRecord.Identity and check it against the worker's
// ApprovalPolicy.
//
// How much this proves: the header is the client's own claim, exactly as
// trustworthy as the connection that carries it. With mTLS the stagehand
// CLI claims its certificate's subject, but nothing in Temporal stops a
// client holding *some* valid certificate from claiming another subject,
// unless the frontend enforces it (a server-side authorizer/claim mapper
// bound to the certificate, or a proxy that overwrites the header). What it
// gives without that: decisions record the connection identity apart from
// --as, and a gate that requires identity refuses a decision whose claimed
// identity does not map to the approver.

// IdentityHeader is the Temporal header that carries the caller's identity
// with approval signals and updates.
const IdentityHeader = "stagehand-identity"

// MaxIdentityLen bounds a recorded identity; longer claims are cut.
const MaxIdentityLen = 256

// CLIIdentity is the identity the stagehand CLI uses when its connection
// has no client certificate: stagehand-cli:<os user>@<host>.
func CLIIdentity(user, host string) string {
	if user == "" {
		user = "unknown"
	}
	if host == "" {
		host = "unknown"
	}
	return "stagehand-cli:" + user + "@" + host
}

// CertIdentity is the identity of a connection that authenticates with a
// client certificate: its subject in RFC 2253 form, e.g. "CN=alice,O=acme".
// The connection helper sets client.Options.Identity to it.
func CertIdentity(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	return cert.Subject.String()
}

// CertIdentityFromTLS is CertIdentity of a loaded client certificate
// (tls.LoadX509KeyPair leaves Leaf empty before Go 1.23; the first DER
// block is the leaf). "" if it cannot be parsed.
func CertIdentityFromTLS(c tls.Certificate) string {
	if c.Leaf != nil {
		return CertIdentity(c.Leaf)
	}
	if len(c.Certificate) == 0 {
		return ""
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return ""
	}
	return CertIdentity(leaf)
}

// WithIdentityHeader returns opts with a client interceptor that sends
// opts.Identity in IdentityHeader on every signal and update, so approval
// gates can record (and check) who is on the other end. Options without an
// identity are returned unchanged: the SDK's default (pid@host) says
// nothing about a person. Set opts.Identity first (CLIIdentity, or
// CertIdentityFromTLS for a connection with a client certificate): the
// header carries the identity opts has when this is called.
func WithIdentityHeader(opts client.Options) client.Options {
	if strings.TrimSpace(opts.Identity) == "" {
		return opts
	}
	opts.Interceptors = append(append([]interceptor.ClientInterceptor(nil), opts.Interceptors...), ClientInterceptor(opts.Identity))
	return opts
}

// ClientInterceptor writes identity into IdentityHeader of every signal and
// update the client sends.
func ClientInterceptor(identity string) interceptor.ClientInterceptor {
	return &identityClientInterceptor{identity: identity}
}

type identityClientInterceptor struct {
	interceptor.ClientInterceptorBase
	identity string
}

func (c *identityClientInterceptor) InterceptClient(next interceptor.ClientOutboundInterceptor) interceptor.ClientOutboundInterceptor {
	o := &identityClientOutbound{identity: c.identity}
	o.Next = next
	return o
}

type identityClientOutbound struct {
	interceptor.ClientOutboundInterceptorBase
	identity string
}

func (o *identityClientOutbound) put(ctx context.Context) error {
	h := interceptor.Header(ctx)
	if h == nil {
		return nil
	}
	p, err := converter.GetDefaultDataConverter().ToPayload(o.identity)
	if err != nil {
		return fmt.Errorf("encode %s header: %w", IdentityHeader, err)
	}
	h[IdentityHeader] = p
	return nil
}

// ExecuteWorkflow sends the identity with a run's start too: the worker
// records it as the requester's connection identity, so the four-eyes rule
// holds even when requestedBy names someone else.
func (o *identityClientOutbound) ExecuteWorkflow(ctx context.Context, in *interceptor.ClientExecuteWorkflowInput) (client.WorkflowRun, error) {
	if err := o.put(ctx); err != nil {
		return nil, err
	}
	return o.Next.ExecuteWorkflow(ctx, in)
}

func (o *identityClientOutbound) SignalWorkflow(ctx context.Context, in *interceptor.ClientSignalWorkflowInput) error {
	if err := o.put(ctx); err != nil {
		return err
	}
	return o.Next.SignalWorkflow(ctx, in)
}

func (o *identityClientOutbound) SignalWithStartWorkflow(ctx context.Context, in *interceptor.ClientSignalWithStartWorkflowInput) (client.WorkflowRun, error) {
	if err := o.put(ctx); err != nil {
		return nil, err
	}
	return o.Next.SignalWithStartWorkflow(ctx, in)
}

func (o *identityClientOutbound) UpdateWorkflow(ctx context.Context, in *interceptor.ClientUpdateWorkflowInput) (client.WorkflowUpdateHandle, error) {
	if err := o.put(ctx); err != nil {
		return nil, err
	}
	return o.Next.UpdateWorkflow(ctx, in)
}

// WorkerInterceptors are the interceptors a Stagehand worker installs
// (worker.Options.Interceptors): the one that hands IdentityHeader to the
// approval handlers.
func WorkerInterceptors() []interceptor.WorkerInterceptor {
	return []interceptor.WorkerInterceptor{&identityWorkerInterceptor{}}
}

type identityWorkerInterceptor struct {
	interceptor.WorkerInterceptorBase
}

func (*identityWorkerInterceptor) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	i := &identityInbound{signals: &signalIdentities{}}
	i.Next = next
	return i
}

// identityInbound reads IdentityHeader. Updates get it in their context;
// signals are queued by the SDK as bare payloads on a channel, so the
// identities of approval signals wait in a FIFO that the handler pops once
// per received signal: both follow the order signals were delivered in
// (history order, so replays pair them the same way).
type identityInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	signals *signalIdentities
}

type (
	identityKey      struct{}
	startIdentityKey struct{}
	signalQueueKey   struct{}
	signalIdentities struct{ queue []string }
)

func (i *identityInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	ctx = workflow.WithValue(ctx, startIdentityKey{}, headerIdentity(interceptor.WorkflowHeader(ctx)))
	return i.Next.ExecuteWorkflow(workflow.WithValue(ctx, signalQueueKey{}, i.signals), in)
}

func (i *identityInbound) HandleSignal(ctx workflow.Context, in *interceptor.HandleSignalInput) error {
	if in.SignalName != ApprovalSignal {
		return i.Next.HandleSignal(ctx, in)
	}
	i.signals.queue = append(i.signals.queue, headerIdentity(interceptor.WorkflowHeader(ctx)))
	if err := i.Next.HandleSignal(ctx, in); err != nil {
		// Not queued on the channel: drop its identity too.
		i.signals.queue = i.signals.queue[:len(i.signals.queue)-1]
		return err
	}
	return nil
}

func (i *identityInbound) ValidateUpdate(ctx workflow.Context, in *interceptor.UpdateInput) error {
	return i.Next.ValidateUpdate(withHeaderIdentity(ctx), in)
}

func (i *identityInbound) ExecuteUpdate(ctx workflow.Context, in *interceptor.UpdateInput) (any, error) {
	return i.Next.ExecuteUpdate(withHeaderIdentity(ctx), in)
}

func withHeaderIdentity(ctx workflow.Context) workflow.Context {
	return workflow.WithValue(ctx, identityKey{}, headerIdentity(interceptor.WorkflowHeader(ctx)))
}

// headerIdentity decodes IdentityHeader; a missing or undecodable header is
// no identity, never an error: the gate's policy decides whether that is
// acceptable.
func headerIdentity(h map[string]*commonpb.Payload) string {
	p := h[IdentityHeader]
	if p == nil {
		return ""
	}
	var id string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &id); err != nil {
		return ""
	}
	id = strings.TrimSpace(id)
	if len(id) > MaxIdentityLen {
		id = id[:MaxIdentityLen]
	}
	return id
}

// updateIdentity is the identity the interceptor found on the update being
// validated or executed; "" when there was none or no interceptor.
func updateIdentity(ctx workflow.Context) string {
	id, _ := ctx.Value(identityKey{}).(string)
	return id
}

// startIdentity is the identity of the connection that started the run;
// "" when there was none or no interceptor.
func startIdentity(ctx workflow.Context) string {
	id, _ := ctx.Value(startIdentityKey{}).(string)
	return id
}

// nextSignalIdentity pops the identity of the approval signal just
// received; "" when the worker runs without the interceptor.
func nextSignalIdentity(ctx workflow.Context) string {
	q, _ := ctx.Value(signalQueueKey{}).(*signalIdentities)
	if q == nil || len(q.queue) == 0 {
		return ""
	}
	id := q.queue[0]
	q.queue = q.queue[1:]
	return id
}
