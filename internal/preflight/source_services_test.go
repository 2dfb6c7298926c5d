package preflight

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// The API server of envtest runs no EndpointSlice controller: the test writes the slices a
// cluster would have, ready or not.
func TestSourceServicesFindsServicesWithoutReadyEndpoints(t *testing.T) {
	ctx := context.Background()
	c := apiServer(t)
	ns := newNamespace(t, c)
	service := func(name string, selector map[string]string) {
		t.Helper()
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// slice gives the Service one endpoint per readiness (nil: unknown, which counts as ready).
	slice := func(name, service string, ready ...*bool) {
		t.Helper()
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
				Labels: map[string]string{discoveryv1.LabelServiceName: service}},
			AddressType: discoveryv1.AddressTypeIPv4,
		}
		for i, r := range ready {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.0.0.%d", i+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: r},
			})
		}
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	web := map[string]string{"app": "mastodon-web"}
	service("ready", web)
	slice("ready-a", "ready", ptr.To(false))
	slice("ready-b", "ready", ptr.To(true))
	service("unknown", web)
	slice("unknown-a", "unknown", nil)
	service("not-ready", map[string]string{"app": "mastodon-streaming", "tier": "front"})
	slice("not-ready-a", "not-ready", ptr.To(false))
	service("no-slices", web)
	service("no-selector", nil)

	cases := []struct {
		service string
		want    []v1alpha1.Finding
	}{
		{"ready", nil},
		{"unknown", nil},
		{"not-ready", []v1alpha1.Finding{{Object: "Service/not-ready",
			Message: "Service not-ready has no ready endpoint (selector app=mastodon-streaming,tier=front): the traffic switch would move users away from nothing; check that its pods are Ready and match the selector"}}},
		{"no-slices", []v1alpha1.Finding{{Object: "Service/no-slices",
			Message: "Service no-slices has no ready endpoint (selector app=mastodon-web): the traffic switch would move users away from nothing; check that its pods are Ready and match the selector"}}},
		{"no-selector", nil},
		{"missing", []v1alpha1.Finding{{Object: "Service/missing",
			Message: fmt.Sprintf("Service missing not found in namespace %s: check spec.source.services", ns)}}},
	}
	for _, tc := range cases {
		t.Run(tc.service, func(t *testing.T) {
			m := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: ns},
				Spec: v1alpha1.MastodonMigrationSpec{Source: v1alpha1.SourceSpec{Services: []string{tc.service}}}}
			findings, err := sourceServices(ctx, Input{Client: c, Migration: m})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(findings, tc.want) {
				t.Errorf("findings %+v, want %+v", findings, tc.want)
			}
		})
	}
}
