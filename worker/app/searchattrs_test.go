package app_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/workflows"
)

// registered returns the contract as ListSearchAttributes would report it,
// minus the names in drop.
func registered(drop ...string) map[string]enums.IndexedValueType {
	m := map[string]enums.IndexedValueType{"SomeoneElses": enums.INDEXED_VALUE_TYPE_INT}
	for _, a := range workflows.SearchAttributes {
		m[a.Name()] = a.Key.GetValueType()
	}
	for _, name := range drop {
		delete(m, name)
	}
	return m
}

func names(attrs []workflows.SearchAttribute) []string {
	out := make([]string, len(attrs))
	for i, a := range attrs {
		out[i] = a.Name()
	}
	return out
}

func TestCompareSearchAttributes(t *testing.T) {
	assert.Nil(t, app.CompareSearchAttributes("default", registered()), "all registered")

	e := app.CompareSearchAttributes("default", registered("StagehandFailedStep", "StagehandPR"))
	require.NotNil(t, e)
	// Contract order, not the order they were dropped in.
	assert.Equal(t, []string{"StagehandPR", "StagehandFailedStep"}, names(e.Missing))
	assert.Empty(t, e.WrongType)

	reg := registered("StagehandPR")
	reg["StagehandApprovers"] = enums.INDEXED_VALUE_TYPE_KEYWORD
	e = app.CompareSearchAttributes("ops", reg)
	require.NotNil(t, e)
	assert.Equal(t, "ops", e.Namespace)
	assert.Equal(t, []string{"StagehandPR"}, names(e.Missing))
	require.Len(t, e.WrongType, 1)
	assert.Equal(t, "StagehandApprovers", e.WrongType[0].Name())
	assert.Equal(t, "Keyword", e.WrongType[0].Registered)

	e = app.CompareSearchAttributes("empty", nil)
	require.NotNil(t, e)
	assert.Equal(t, names(workflows.SearchAttributes), names(e.Missing))
}

// TestSearchAttributesErrorMessage pins the whole message a person sees when
// the worker refuses to start: what is wrong, why it matters, and lines to
// paste.
func TestSearchAttributesErrorMessage(t *testing.T) {
	cases := []struct {
		name string
		err  *app.SearchAttributesError
		want string
	}{
		{
			name: "two missing",
			err:  withAddress(app.CompareSearchAttributes("default", registered("StagehandPR", "StagehandFailedStep")), "127.0.0.1:7233"),
			want: `namespace "default" on the Temporal server at 127.0.0.1:7233 lacks 2 of the 8 search attributes Stagehand's runs set; a run would fail every workflow task with BadSearchAttributes and never end, so the worker will not start.
  missing:    StagehandPR (Keyword)
  missing:    StagehandFailedStep (Keyword)
Create them, once per namespace, with the temporal CLI (add --address and the TLS or API-key flags you connect with):
  temporal operator search-attribute create --namespace default --name StagehandPR --type Keyword
  temporal operator search-attribute create --namespace default --name StagehandFailedStep --type Keyword
On Temporal Cloud, add them in the Cloud UI (Namespaces → default → Custom Search Attributes) or with tcld:
  tcld namespace search-attributes add --namespace default --search-attribute StagehandPR=Keyword --search-attribute StagehandFailedStep=Keyword`,
		},
		{
			name: "one wrong type, one missing, no address",
			err: func() *app.SearchAttributesError {
				reg := registered("StagehandImage")
				reg["StagehandApprovers"] = enums.INDEXED_VALUE_TYPE_TEXT
				return app.CompareSearchAttributes("ops", reg)
			}(),
			want: `namespace "ops" lacks 1 of the 8 search attributes Stagehand's runs set and has 1 with the wrong type; a run would fail every workflow task with BadSearchAttributes and never end, so the worker will not start.
  missing:    StagehandImage (Keyword)
  wrong type: StagehandApprovers is Text, runs set KeywordList
Create them, once per namespace, with the temporal CLI (add --address and the TLS or API-key flags you connect with); a type cannot be changed, so remove a wrong-typed one first:
  temporal operator search-attribute remove --namespace ops --name StagehandApprovers --yes
  temporal operator search-attribute create --namespace ops --name StagehandApprovers --type KeywordList
  temporal operator search-attribute create --namespace ops --name StagehandImage --type Keyword
On Temporal Cloud, add them in the Cloud UI (Namespaces → ops → Custom Search Attributes) or with tcld:
  tcld namespace search-attributes add --namespace ops --search-attribute StagehandApprovers=KeywordList --search-attribute StagehandImage=Keyword
  (Cloud cannot remove an attribute: free a wrong-typed name first with ` + "`tcld namespace search-attributes rename`" + `)`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.NotNil(t, tc.err)
			assert.Equal(t, tc.want, tc.err.Error())
		})
	}
}

func withAddress(e *app.SearchAttributesError, addr string) *app.SearchAttributesError {
	e.Address = addr
	return e
}

func TestCreateCommand(t *testing.T) {
	assert.Equal(t, "temporal operator search-attribute create --namespace prod --name StagehandApprovers --type KeywordList",
		app.CreateCommand("prod", workflows.SearchAttribute{Key: workflows.SearchApprovers}))
}

// operatorStub answers ListSearchAttributes with a fixed response or error.
type operatorStub struct {
	operatorservice.OperatorServiceClient
	resp  *operatorservice.ListSearchAttributesResponse
	err   error
	asked string
}

func (s *operatorStub) OperatorService() operatorservice.OperatorServiceClient { return s }

func (s *operatorStub) ListSearchAttributes(_ context.Context, req *operatorservice.ListSearchAttributesRequest, _ ...grpc.CallOption) (*operatorservice.ListSearchAttributesResponse, error) {
	s.asked = req.GetNamespace()
	return s.resp, s.err
}

func TestCheckSearchAttributes(t *testing.T) {
	ctx := context.Background()

	all := &operatorStub{resp: &operatorservice.ListSearchAttributesResponse{CustomAttributes: registered()}}
	require.NoError(t, app.CheckSearchAttributes(ctx, all, "ops", "temporal:7233"))
	assert.Equal(t, "ops", all.asked, "the configured namespace is the one checked")

	six := &operatorStub{resp: &operatorservice.ListSearchAttributesResponse{CustomAttributes: registered("StagehandPR", "StagehandFailedStep")}}
	err := app.CheckSearchAttributes(ctx, six, "ops", "temporal:7233")
	var sae *app.SearchAttributesError
	require.ErrorAs(t, err, &sae)
	assert.Equal(t, "temporal:7233", sae.Address)
	assert.Equal(t, []string{"StagehandPR", "StagehandFailedStep"}, names(sae.Missing))

	// A connection that may not read the namespace's settings cannot tell;
	// the worker warns and starts rather than refusing.
	for _, denied := range []error{
		serviceerror.NewPermissionDenied("no operator role", ""),
		status.Error(codes.Unimplemented, "unknown service temporal.api.operatorservice.v1.OperatorService"),
	} {
		err := app.CheckSearchAttributes(ctx, &operatorStub{err: denied}, "ops", "")
		assert.ErrorIs(t, err, app.ErrSearchAttributesUnverified)
		assert.ErrorContains(t, err, `listing the search attributes of namespace "ops"`)
	}

	// Anything else is a failure to start, with its cause.
	err = app.CheckSearchAttributes(ctx, &operatorStub{err: serviceerror.NewNamespaceNotFound("ops")}, "ops", "")
	require.Error(t, err)
	assert.NotErrorIs(t, err, app.ErrSearchAttributesUnverified)
	assert.ErrorContains(t, err, `list search attributes of namespace "ops": Namespace ops is not found`)
}
