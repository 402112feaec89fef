package main

import (
	"context"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

// applyWaypoint creates (or, with overwrite, updates) the waypoint
// Gateway and optionally labels its namespace to use it.
func applyWaypoint(ctx context.Context, kc *kubeClients, w, warn io.Writer, want *gwv1.Gateway, overwrite, enroll bool) error {
	ns, name := want.Namespace, want.Name
	nsObj, err := kc.core.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %s not found", ns)
	} else if err != nil {
		return kc.apiError("get namespace "+ns, err)
	}
	gws := kc.gw.GatewayV1().Gateways(ns)
	live, err := gws.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := gws.Create(ctx, want, metav1.CreateOptions{FieldManager: "warrenctl"}); err != nil {
			return kc.apiError("create Gateway "+waypointKey(ns, name), err)
		}
		fmt.Fprintf(w, "waypoint %s created\n", waypointKey(ns, name))
	case err != nil:
		return kc.apiError("get Gateway "+waypointKey(ns, name), err)
	case string(live.Spec.GatewayClassName) != model.WaypointClass:
		return fmt.Errorf("gateway %s exists with class %q: it is not a waypoint; refusing to change it", waypointKey(ns, name), live.Spec.GatewayClassName)
	case sameWaypoint(live, want):
		fmt.Fprintf(w, "waypoint %s unchanged\n", waypointKey(ns, name))
	case !overwrite:
		return fmt.Errorf("waypoint %s exists with %s=%s: pass --overwrite to change it to %s", waypointKey(ns, name), model.LabelWaypointFor, model.WaypointFor(live), model.WaypointFor(want))
	default:
		upd := live.DeepCopy()
		if upd.Labels == nil {
			upd.Labels = map[string]string{}
		}
		upd.Labels[model.LabelWaypointFor] = want.Labels[model.LabelWaypointFor]
		upd.Spec.Listeners = want.Spec.Listeners
		if _, err := gws.Update(ctx, upd, metav1.UpdateOptions{FieldManager: "warrenctl"}); err != nil {
			return kc.apiError("update Gateway "+waypointKey(ns, name), err)
		}
		fmt.Fprintf(w, "waypoint %s configured\n", waypointKey(ns, name))
	}
	if !enroll {
		return nil
	}
	if nsObj.Labels[model.LabelUseWaypoint] != name {
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, model.LabelUseWaypoint, name)
		if _, err := kc.core.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "warrenctl"}); err != nil {
			return kc.apiError("label namespace "+ns, err)
		}
	}
	fmt.Fprintf(w, "namespace %s labelled %s=%s\n", ns, model.LabelUseWaypoint, name)
	if nsObj.Labels[model.LabelDataplaneMode] != model.DataplaneAmbient {
		fmt.Fprintf(warn, "warrenctl: note: namespace %s is not in the mesh (no %s=%s label): the waypoint serves only clients in the mesh\n", ns, model.LabelDataplaneMode, model.DataplaneAmbient)
	}
	return nil
}

// waitProgrammed polls the Gateway until istiod-lite marks it
// Programmed, or the timeout passes.
func waitProgrammed(ctx context.Context, kc *kubeClients, ns, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no status yet"
	for {
		gw, err := kc.gw.GatewayV1().Gateways(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if c := findCondition(gw.Status.Conditions, string(gwv1.GatewayConditionProgrammed)); c != nil {
				if c.Status == metav1.ConditionTrue {
					return nil
				}
				last = fmt.Sprintf("Programmed=%s (%s: %s)", c.Status, c.Reason, c.Message)
			}
		} else if ctx.Err() == nil {
			return kc.apiError("get Gateway "+waypointKey(ns, name), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waypoint %s not ready after %s: %s", waypointKey(ns, name), timeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// deleteWaypoint deletes a waypoint Gateway and warns about labels that
// still name it.
func deleteWaypoint(ctx context.Context, kc *kubeClients, w, warn io.Writer, ns, name string) error {
	gws := kc.gw.GatewayV1().Gateways(ns)
	live, err := gws.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("waypoint %s not found", waypointKey(ns, name))
	} else if err != nil {
		return kc.apiError("get Gateway "+waypointKey(ns, name), err)
	}
	if string(live.Spec.GatewayClassName) != model.WaypointClass {
		return fmt.Errorf("gateway %s has class %q: it is not a waypoint; refusing to delete it", waypointKey(ns, name), live.Spec.GatewayClassName)
	}
	uid := live.UID
	if err := gws.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil {
		return kc.apiError("delete Gateway "+waypointKey(ns, name), err)
	}
	fmt.Fprintf(w, "waypoint %s deleted\n", waypointKey(ns, name))
	if n, err := kc.core.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil && n.Labels[model.LabelUseWaypoint] == name && n.Labels[model.LabelUseWaypointNamespace] == "" {
		fmt.Fprintf(warn, "warrenctl: note: namespace %s still has %s=%s: until you remove it (kubectl label namespace %s %s-), its Services use no waypoint and analyze reports %s\n",
			ns, model.LabelUseWaypoint, name, ns, model.LabelUseWaypoint, codeWaypointMissing)
	}
	sel := metav1.ListOptions{LabelSelector: model.LabelUseWaypoint + "=" + name}
	if l, err := kc.core.CoreV1().Services(ns).List(ctx, sel); err == nil {
		for _, s := range l.Items {
			if s.Labels[model.LabelUseWaypointNamespace] == "" {
				fmt.Fprintf(warn, "warrenctl: note: Service %s/%s still has %s=%s\n", ns, s.Name, model.LabelUseWaypoint, name)
			}
		}
	}
	return nil
}
