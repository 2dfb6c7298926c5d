// Package workload tells whether a workload has rolled out, the way kstatus (and so Flux and
// Argo CD) tells it.
package workload

import (
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// RolledOut reports whether kstatus calls a Deployment Current: its latest spec observed and
// every replica updated and available. The message says what it waits for otherwise.
func RolledOut(d *appsv1.Deployment) (bool, string, error) {
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(d)
	if err != nil {
		return false, "", err
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: raw})
	if err != nil {
		return false, "", err
	}
	return res.Status == status.CurrentStatus, res.Message, nil
}
