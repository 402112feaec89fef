package main

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

var waypointForValues = []string{model.WaypointForService, model.WaypointForWorkload, model.WaypointForAll, model.WaypointForNone}

// checkWaypointArgs validates a waypoint name (it also names the
// waypoint's ServiceAccount, Service and Deployment) and --for.
func checkWaypointArgs(name, forValue string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return usagef("waypoint name %q: %s", name, strings.Join(errs, "; "))
	}
	for _, v := range waypointForValues {
		if v == forValue {
			return nil
		}
	}
	return usagef("--for %q: want %s", forValue, orList(waypointForValues))
}

// waypointGateway is the Gateway that makes a waypoint: class
// warren-waypoint, one HBONE listener "mesh" on 15008, and the
// waypoint-for label.
func waypointGateway(ns, name, forValue string) *gwv1.Gateway {
	return &gwv1.Gateway{
		TypeMeta:   metav1.TypeMeta{APIVersion: gwv1.GroupVersion.String(), Kind: "Gateway"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{model.LabelWaypointFor: forValue}},
		Spec: gwv1.GatewaySpec{
			GatewayClassName: model.WaypointClass,
			Listeners:        []gwv1.Listener{{Name: model.WaypointListenerName, Port: model.HBONEPort, Protocol: "HBONE"}},
		},
	}
}

// gatewayManifest renders a Gateway as a clean manifest (no empty status
// or creationTimestamp), for generate.
func gatewayManifest(gw *gwv1.Gateway) map[string]any {
	var listeners []any
	for _, l := range gw.Spec.Listeners {
		listeners = append(listeners, map[string]any{"name": string(l.Name), "port": int(l.Port), "protocol": string(l.Protocol)})
	}
	meta := map[string]any{"name": gw.Name, "namespace": gw.Namespace}
	if len(gw.Labels) > 0 {
		meta["labels"] = gw.Labels
	}
	return map[string]any{
		"apiVersion": gw.APIVersion,
		"kind":       gw.Kind,
		"metadata":   meta,
		"spec":       map[string]any{"gatewayClassName": string(gw.Spec.GatewayClassName), "listeners": listeners},
	}
}

// sameWaypoint reports whether live already is the waypoint want
// describes (class, waypoint-for label and an HBONE listener on 15008).
func sameWaypoint(live, want *gwv1.Gateway) bool {
	if live.Spec.GatewayClassName != want.Spec.GatewayClassName || model.WaypointFor(live) != model.WaypointFor(want) {
		return false
	}
	for _, l := range live.Spec.Listeners {
		if l.Port == model.HBONEPort && l.Protocol == "HBONE" {
			return true
		}
	}
	return false
}

func waypointKey(ns, name string) string { return fmt.Sprintf("%s/%s", ns, name) }
