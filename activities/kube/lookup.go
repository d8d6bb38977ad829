package kube

// Cluster returns the cluster a step names (the only one when name is empty
// and a single cluster is configured), for other adapters that act on the
// same clusters, such as the flux steps.
func (a *Activities) Cluster(name string) (*Cluster, error) { return a.cluster(name) }
