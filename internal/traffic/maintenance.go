package traffic

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DefaultMaintenanceImage serves the maintenance page: nginx as a non-root user (uid 101), its
// pid and temporary files under /tmp.
const DefaultMaintenanceImage = "nginxinc/nginx-unprivileged:1.28-alpine"

// DefaultMaintenancePage is the page shown while Mastodon is down for the migration.
const DefaultMaintenancePage = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Down for maintenance</title>
<style>
body { font-family: system-ui, sans-serif; background: #191b22; color: #d9e1e8; display: flex;
       align-items: center; justify-content: center; min-height: 100vh; margin: 0; text-align: center; }
main { max-width: 32rem; padding: 2rem; }
h1 { color: #fff; }
</style>
</head>
<body>
<main>
<h1>We'll be back shortly</h1>
<p>This server is down for scheduled maintenance. Nothing you posted is lost; please try again in a few minutes.</p>
</main>
</body>
</html>
`

// The maintenance pods listen where Mastodon's do, under the same port names, and answer the
// health checks of both components (the GKE BackendConfigs of the source Services keep probing
// them there) with 200: so a source Service, its targetPort and its load balancer's health check
// work unchanged when its selector picks the maintenance pods.
const (
	maintenanceWebPort       = 3000
	maintenanceStreamingPort = 4000
	maintenanceMountPath     = "/usr/share/nginx/maintenance"
)

// nginxConfig answers 503 with the page for every path but the health checks. The page is served
// through a named location, so asking for it by name gets the 503 too; it is never cached.
var nginxConfig = fmt.Sprintf(`server {
    listen %[1]d;
    listen %[2]d;
    server_name _;
    root %[3]s;

    location = /health {
        access_log off;
        default_type text/plain;
        return 200 "OK\n";
    }
    location = /api/v1/streaming/health {
        access_log off;
        default_type text/plain;
        return 200 "OK\n";
    }
    location / {
        return 503;
    }

    error_page 503 @maintenance;
    location @maintenance {
        add_header Retry-After 300 always;
        add_header Cache-Control "no-store" always;
        rewrite ^ /index.html break;
    }
}
`, maintenanceWebPort, maintenanceStreamingPort, maintenanceMountPath)

// Maintenance is the maintenance page: a ConfigMap with the page and nginx's configuration, a
// Deployment of nginx serving it, and a Service, all named Name.
type Maintenance struct {
	Namespace, Name string
	// Page is the HTML shown (default DefaultMaintenancePage).
	Page string
	// Image is nginx's image (default DefaultMaintenanceImage).
	Image string
}

// MaintenanceObjects returns the objects of the maintenance page, with the default image.
func MaintenanceObjects(namespace, name, page string) []client.Object {
	return Maintenance{Namespace: namespace, Name: name, Page: page}.Objects()
}

func (m Maintenance) labels() map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":       "mastodon-maintenance",
		"app.kubernetes.io/instance":   m.Name,
		"app.kubernetes.io/managed-by": "mastodon-operator",
	}
}

func (m Maintenance) selector() map[string]string {
	l := m.labels()
	delete(l, "app.kubernetes.io/managed-by")
	return l
}

// Objects returns the ConfigMap, the Deployment and the Service, with apiVersion and kind set so
// that they can be server-side applied.
func (m Maintenance) Objects() []client.Object {
	page := m.Page
	if page == "" {
		page = DefaultMaintenancePage
	}
	image := m.Image
	if image == "" {
		image = DefaultMaintenanceImage
	}
	meta := metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name, Labels: m.labels()}
	sum := sha256.Sum256([]byte(page + "\x00" + nginxConfig))

	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: *meta.DeepCopy(),
		Data:       map[string]string{"index.html": page, "default.conf": nginxConfig},
	}
	httpGet := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
			PeriodSeconds: 5}
	}
	deploy := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: *meta.DeepCopy(),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: m.selector()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels: m.labels(),
					// A new page rolls the pods, which read it only at start.
					Annotations: map[string]string{"mastodon-operator.io/page-sha256": hex.EncodeToString(sum[:8])},
				},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken: ptr.To(false),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](101), RunAsGroup: ptr.To[int64](101),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:  "nginx",
						Image: image,
						Ports: []corev1.ContainerPort{
							{Name: "http", ContainerPort: maintenanceWebPort, Protocol: corev1.ProtocolTCP},
							{Name: "streaming", ContainerPort: maintenanceStreamingPort, Protocol: corev1.ProtocolTCP},
						},
						ReadinessProbe: httpGet("/health"),
						LivenessProbe:  httpGet("/health"),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "page", MountPath: maintenanceMountPath, ReadOnly: true},
							{Name: "config", MountPath: "/etc/nginx/conf.d", ReadOnly: true},
							{Name: "tmp", MountPath: "/tmp"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "page", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: m.Name},
							Items:                []corev1.KeyToPath{{Key: "index.html", Path: "index.html"}},
						}}},
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: m.Name},
							Items:                []corev1.KeyToPath{{Key: "default.conf", Path: "default.conf"}},
						}}},
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
	svcMeta := *meta.DeepCopy()
	// Container-native load balancing, as the source Services have it, for the Ingress method.
	svcMeta.Annotations = map[string]string{AnnotationNEG: `{"ingress": true}`}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: svcMeta,
		Spec: corev1.ServiceSpec{
			Selector: m.selector(),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: maintenanceWebPort, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
				{Name: "streaming", Port: maintenanceStreamingPort, TargetPort: intstr.FromString("streaming"), Protocol: corev1.ProtocolTCP},
			},
		},
	}
	return []client.Object{cm, deploy, svc}
}

// Targets returns the maintenance page as the target of every component.
func (m Maintenance) Targets() map[Component]Target {
	var tmpl *corev1.PodTemplateSpec
	for _, o := range m.Objects() {
		if d, ok := o.(*appsv1.Deployment); ok {
			tmpl = &d.Spec.Template
		}
	}
	return map[Component]Target{
		Web: {Selector: m.selector(), PodTemplate: tmpl, Service: m.Name, Port: maintenanceWebPort, OwnAnnotations: true},
		Streaming: {Selector: m.selector(), PodTemplate: tmpl.DeepCopy(), Service: m.Name, Port: maintenanceStreamingPort,
			OwnAnnotations: true},
	}
}

// MaintenanceTargets returns the maintenance page named name as the target of every component.
func MaintenanceTargets(name string) map[Component]Target {
	return Maintenance{Name: name}.Targets()
}

// ApplyObjects server-side applies objects (MaintenanceObjects) under fieldOwner. The objects
// need apiVersion and kind.
func ApplyObjects(ctx context.Context, c client.Client, objects []client.Object, fieldOwner string) error {
	for _, o := range objects {
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{Object: raw}
		// Fields the server owns or fills in are not ours to apply.
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "status")
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s: %w", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
		}
	}
	return nil
}

// DeleteObjects deletes objects (MaintenanceObjects); those already gone are fine.
func DeleteObjects(ctx context.Context, c client.Client, objects []client.Object) error {
	for _, o := range objects {
		if err := c.Delete(ctx, o, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting %s %s: %w", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
		}
	}
	return nil
}
