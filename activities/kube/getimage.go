package kube

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GetImageInput is the `with` of kube.getImage.
type GetImageInput struct {
	Cluster    string `json:"cluster,omitempty"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	Container  string `json:"container,omitempty"`
}

// GetImageOutput is what the Deployment runs now.
type GetImageOutput struct {
	Container string `json:"container"`
	Image     string `json:"image"`
	Revision  string `json:"revision"`
	// Replicas is spec.replicas: what a later kube.scale scales back to.
	Replicas int32  `json:"replicas"`
	ReadAt   string `json:"readAt"`
}

// GetImage reads a Deployment container's current image. Runbooks call it
// before changing anything, so the image to roll back to is recorded in
// history by a read: a retried or replayed kube.setImage may find its own
// image already set and report it as "previous", but this read cannot.
func (a *Activities) GetImage(ctx context.Context, in GetImageInput) (GetImageOutput, error) {
	c, err := a.cluster(in.Cluster)
	if err != nil {
		return GetImageOutput{}, err
	}
	ref := DeploymentRef{Namespace: in.Namespace, Deployment: in.Deployment}
	d, err := c.Client.AppsV1().Deployments(in.Namespace).Get(ctx, in.Deployment, metav1.GetOptions{})
	if err != nil {
		return GetImageOutput{}, classify(fmt.Sprintf("get deployment %s", ref), err)
	}
	container, err := pickContainer(&d.Spec.Template.Spec, in.Container, ref)
	if err != nil {
		return GetImageOutput{}, err
	}
	_, image, _ := containerImage(&d.Spec.Template.Spec, container)
	return GetImageOutput{Container: container, Image: image, Revision: d.Annotations[RevisionAnnotation], Replicas: specReplicas(d), ReadAt: time.Now().UTC().Format(time.RFC3339)}, nil
}
