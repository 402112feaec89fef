package kube

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNodeHeartbeatsAreNotChanges(t *testing.T) {
	old := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", ResourceVersion: "1", Labels: map[string]string{corev1.LabelTopologyZone: "z1"}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}},
		},
	}
	beat := old.DeepCopy()
	beat.ResourceVersion = "2"
	beat.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Minute))
	if nodeRelevant(old, beat) {
		t.Error("a heartbeat counted as a change")
	}
	relabel := beat.DeepCopy()
	relabel.Labels[corev1.LabelTopologyZone] = "z2"
	readdress := beat.DeepCopy()
	readdress.Status.Addresses[0].Address = "10.0.0.2"
	for name, n := range map[string]*corev1.Node{"label": relabel, "address": readdress} {
		if !nodeRelevant(old, n) {
			t.Errorf("a %s change was ignored", name)
		}
	}
}
