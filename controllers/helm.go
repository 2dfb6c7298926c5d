package controllers

import (
	"context"
	"fmt"

	"helm.sh/helm/v3/pkg/action"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// The Helm SDK installs whatever the official chart holds, so the operator may manage those kinds.
// +kubebuilder:rbac:groups="",resources=configmaps;secrets;services;serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=apps,resources=deployments;replicasets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=cloud.google.com,resources=backendconfigs,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=networking.gke.io,resources=frontendconfigs;managedcertificates,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=monitoring.googleapis.com,resources=podmonitorings,verbs=get;list;watch;create;update;patch

// helmConfig is the Helm SDK's configuration for a namespace, with releases in Secrets.
func (r *MastodonMigrationReconciler) helmConfig(ctx context.Context, namespace string) (*action.Configuration, error) {
	logger := log.FromContext(ctx).WithName("helm")
	return r.HelmClients.Config(namespace, func(format string, v ...any) {
		logger.V(1).Info(fmt.Sprintf(format, v...))
	})
}
