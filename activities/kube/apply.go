package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/stagehand-dev/stagehand/activities"
)

// ApplyInput is the `with` of kube.apply.
type ApplyInput struct {
	Cluster string `json:"cluster,omitempty"`
	// Manifests is one or more YAML (or JSON) documents separated by ---.
	Manifests string `json:"manifests"`
	// Namespace is used for namespaced objects that do not name one.
	Namespace string `json:"namespace,omitempty"`
	// Force takes ownership of fields another field manager owns; without
	// it such a conflict fails the step (KubeApplyConflict).
	Force bool `json:"force,omitempty"`
}

// ApplyOutput lists what was applied as "Kind/namespace/name" (cluster-
// scoped objects as "Kind/name").
type ApplyOutput struct {
	Applied []string `json:"applied"`
}

// Apply server-side applies every document with the field manager
// "stagehand". Server-side apply is idempotent by construction, which is
// what a retried step needs. All documents are decoded and mapped before
// the first is applied, so a typo in the last document changes nothing.
func (a *Activities) Apply(ctx context.Context, in ApplyInput) (ApplyOutput, error) {
	c, err := a.cluster(in.Cluster)
	if err != nil {
		return ApplyOutput{}, err
	}
	if c.Dynamic == nil || c.Mapper == nil {
		return ApplyOutput{}, nonRetryable(activities.ErrKubeNoDynamicClient, fmt.Sprintf("cluster %q has no dynamic client; it cannot apply manifests", c.Name), nil)
	}
	objs, err := decodeManifests(in.Manifests)
	if err != nil {
		return ApplyOutput{}, err
	}
	type planned struct {
		obj     *unstructured.Unstructured
		mapping *meta.RESTMapping
		id      string
	}
	plan := make([]planned, 0, len(objs))
	for i, obj := range objs {
		gvk := obj.GroupVersionKind()
		mapping, err := a.restMapping(c, gvk)
		if err != nil {
			return ApplyOutput{}, err
		}
		id := gvk.Kind + "/" + obj.GetName()
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			if obj.GetNamespace() == "" {
				if in.Namespace == "" {
					return ApplyOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf(
						"manifest %d (%s %s) names no namespace and the step sets none", i+1, gvk.Kind, obj.GetName()), nil)
				}
				obj.SetNamespace(in.Namespace)
			}
			id = gvk.Kind + "/" + obj.GetNamespace() + "/" + obj.GetName()
		} else {
			obj.SetNamespace("")
		}
		plan = append(plan, planned{obj: obj, mapping: mapping, id: id})
	}
	out := ApplyOutput{Applied: []string{}}
	for _, p := range plan {
		var ri = c.Dynamic.Resource(p.mapping.Resource)
		opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: in.Force}
		if p.obj.GetNamespace() != "" {
			_, err = ri.Namespace(p.obj.GetNamespace()).Apply(ctx, p.obj.GetName(), p.obj, opts)
		} else {
			_, err = ri.Apply(ctx, p.obj.GetName(), p.obj, opts)
		}
		if err != nil {
			return ApplyOutput{}, classify(fmt.Sprintf("apply %s (applied before it: %d)", p.id, len(out.Applied)), err)
		}
		out.Applied = append(out.Applied, p.id)
	}
	return out, nil
}

// restMapping maps a kind to its resource, refreshing discovery once when
// the kind is unknown: a CRD may have been installed after the cache was
// filled (possibly by an earlier document of this very step's runbook).
func (a *Activities) restMapping(c *Cluster, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	mapping, err := c.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.Mapper.Reset()
		mapping, err = c.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if meta.IsNoMatchError(err) {
		return nil, nonRetryable(activities.ErrKubeUnknownKind, fmt.Sprintf("the cluster does not serve %s", gvk.String()), err)
	}
	if err != nil {
		return nil, classify(fmt.Sprintf("discover resource for %s", gvk.String()), err)
	}
	return mapping, nil
}

// decodeManifests splits and decodes multi-document YAML; empty documents
// (a leading ---, comments only) are skipped, and List kinds are expanded.
func decodeManifests(s string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(s)), 4096)
	var out []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("manifests: document %d is not valid YAML", doc), err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("manifests: document %d: bad list", doc), err)
			}
			for i := range list.Items {
				out = append(out, &list.Items[i])
			}
			continue
		}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf(
				"manifests: document %d needs apiVersion, kind and metadata.name", doc), nil)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, nonRetryable(activities.ErrInvalidArguments, "manifests: no objects", nil)
	}
	return out, nil
}
