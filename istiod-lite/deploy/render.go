package deploy

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/ca"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// Labels, ports and paths of what the deployer creates.
const (
	// LabelGatewayName names the Gateway on every object and on the pods;
	// the Service and the Deployment select pods by it.
	LabelGatewayName = "gateway.networking.k8s.io/gateway-name"
	// LabelManagedBy=ManagedBy marks the objects the deployer owns (and may
	// delete).
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "istiod-lite"

	ContainerName = "waypoint"
	PortHBONE     = model.HBONEPort // 15008, port name "mesh"
	PortReadiness = 15021           // GET /healthz/ready
	PortMetrics   = 15020           // GET /metrics
	ReadinessPath = "/healthz/ready"

	// TokenDir holds the projected ServiceAccount token (audience
	// ca.Audience) the waypoint authenticates to the CA and xDS with.
	TokenDir  = "/var/run/secrets/tokens"
	TokenFile = TokenDir + "/warren-ca-token"
	// RootCertDir holds the warren-ca-root-cert ConfigMap (optional: the
	// CA publishes it in enrolled namespaces and warren-system).
	RootCertDir  = "/var/run/secrets/warren"
	RootCertFile = RootCertDir + "/" + ca.RootConfigMapKey

	// waypointUID is the non-root user the waypoint runs as (Istio's proxy UID).
	waypointUID = 1337
)

// Waypoint is one waypoint to run: the translated Waypoint and the UID of
// its Gateway (the owner of everything created for it).
type Waypoint struct {
	translate.Waypoint
	GatewayUID types.UID
}

func (w Waypoint) key() string { return model.Key(w.Namespace, w.Name) }

func (w Waypoint) labels() map[string]string {
	return map[string]string{LabelGatewayName: w.Name, LabelManagedBy: ManagedBy}
}

func (w Waypoint) owner() *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(gwv1.GroupVersion.String()).WithKind("Gateway").
		WithName(w.Name).WithUID(w.GatewayUID).
		WithController(true).WithBlockOwnerDeletion(true)
}

// ServiceAccount renders the waypoint's ServiceAccount, whose name makes
// the waypoint's identity spiffe://<td>/ns/<ns>/sa/<gateway>.
func (o *Options) ServiceAccount(w Waypoint) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(w.Name, w.Namespace).
		WithLabels(w.labels()).
		WithOwnerReferences(w.owner())
}

// Service renders the waypoint's Service: the HBONE port, selecting the
// waypoint pods. It carries use-waypoint=none: traffic to a waypoint never
// goes through a waypoint.
func (o *Options) Service(w Waypoint) *corev1ac.ServiceApplyConfiguration {
	l := w.labels()
	l[model.LabelUseWaypoint] = model.WaypointNone
	return corev1ac.Service(w.Name, w.Namespace).
		WithLabels(l).
		WithOwnerReferences(w.owner()).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(map[string]string{LabelGatewayName: w.Name}).
			WithPorts(corev1ac.ServicePort().
				WithName(model.WaypointListenerName).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(PortHBONE).
				WithTargetPort(intstr.FromInt32(PortHBONE))))
}

// Args are the waypoint binary's flags the Deployment passes.
func (o *Options) Args(w Waypoint) []string {
	return []string{
		"--gateway-name=" + w.Name,
		"--gateway-namespace=" + w.Namespace,
		"--waypoint-for=" + w.For,
		"--identity=" + w.Identity,
		"--xds-address=" + o.XDSAddress,
		"--ca-address=" + o.CAAddress,
		"--token-file=" + TokenFile,
		"--root-cert-file=" + RootCertFile,
		fmt.Sprintf("--hbone-port=%d", PortHBONE),
		fmt.Sprintf("--readiness-port=%d", PortReadiness),
		fmt.Sprintf("--metrics-port=%d", PortMetrics),
	}
}

// Deployment renders the waypoint's Deployment. Its pods are labelled
// out of capture (warren.io/dataplane-mode=none): a waypoint speaks HBONE
// itself.
func (o *Options) Deployment(w Waypoint) *appsv1ac.DeploymentApplyConfiguration {
	podLabels := w.labels()
	podLabels[model.LabelDataplaneMode] = model.DataplaneNone
	fieldEnv := func(name, path string) *corev1ac.EnvVarApplyConfiguration {
		return corev1ac.EnvVar().WithName(name).WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath(path)))
	}
	container := corev1ac.Container().
		WithName(ContainerName).
		WithImage(o.Image).
		WithImagePullPolicy(o.PullPolicy).
		WithArgs(o.Args(w)...).
		WithEnv(
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_IP", "status.podIP"),
			fieldEnv("NODE_NAME", "spec.nodeName"),
		).
		WithPorts(
			corev1ac.ContainerPort().WithName(model.WaypointListenerName).WithContainerPort(PortHBONE).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("status-port").WithContainerPort(PortReadiness).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("metrics").WithContainerPort(PortMetrics).WithProtocol(corev1.ProtocolTCP),
		).
		WithReadinessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath(ReadinessPath).WithPort(intstr.FromInt32(PortReadiness))).
			WithPeriodSeconds(2).WithFailureThreshold(3)).
		WithSecurityContext(corev1ac.SecurityContext().
			WithRunAsNonRoot(true).WithRunAsUser(waypointUID).WithRunAsGroup(waypointUID).
			WithAllowPrivilegeEscalation(false).WithReadOnlyRootFilesystem(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL"))).
		WithVolumeMounts(
			corev1ac.VolumeMount().WithName("warren-token").WithMountPath(TokenDir).WithReadOnly(true),
			corev1ac.VolumeMount().WithName("warren-ca-root").WithMountPath(RootCertDir).WithReadOnly(true),
		)
	pod := corev1ac.PodTemplateSpec().
		WithLabels(podLabels).
		WithAnnotations(map[string]string{
			"prometheus.io/scrape": "true",
			"prometheus.io/port":   fmt.Sprint(PortMetrics),
			"prometheus.io/path":   "/metrics",
		}).
		WithSpec(corev1ac.PodSpec().
			WithServiceAccountName(w.Name).
			WithAutomountServiceAccountToken(false).
			WithContainers(container).
			WithVolumes(
				corev1ac.Volume().WithName("warren-token").WithProjected(corev1ac.ProjectedVolumeSource().
					WithSources(corev1ac.VolumeProjection().WithServiceAccountToken(corev1ac.ServiceAccountTokenProjection().
						WithAudience(ca.Audience).WithExpirationSeconds(3600).WithPath("warren-ca-token")))),
				corev1ac.Volume().WithName("warren-ca-root").WithConfigMap(corev1ac.ConfigMapVolumeSource().
					WithName(ca.RootConfigMapName).WithOptional(true)),
			))
	return appsv1ac.Deployment(w.Name, w.Namespace).
		WithLabels(w.labels()).
		WithOwnerReferences(w.owner()).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(o.Replicas).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{LabelGatewayName: w.Name})).
			WithStrategy(appsv1ac.DeploymentStrategy().WithType(appsv1.RollingUpdateDeploymentStrategyType)).
			WithTemplate(pod))
}
