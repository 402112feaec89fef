package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion of the API.
var GroupVersion = schema.GroupVersion{Group: "security.warren.io", Version: "v1alpha1"}

// AuthorizationPolicyResource is the plural resource name.
const AuthorizationPolicyResource = "authorizationpolicies"

// AuthorizationPolicy allows or denies traffic to its targets. Rules with
// only source identity, namespace and destination port conditions are
// enforced by ztunnel; rules with method, path or header conditions need
// a waypoint.
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AuthorizationPolicySpec   `json:"spec"`
	Status AuthorizationPolicyStatus `json:"status,omitempty"`
}

// AuthorizationPolicyList is a list of AuthorizationPolicy.
type AuthorizationPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuthorizationPolicy `json:"items"`
}

// Action of a policy.
type Action string

// Actions.
const (
	ActionAllow Action = "ALLOW"
	ActionDeny  Action = "DENY"
)

// AuthorizationPolicySpec is the desired policy.
type AuthorizationPolicySpec struct {
	// TargetRefs attach the policy (GEP-713 style): a Namespace (group ""),
	// a Service (group ""), or a waypoint Gateway (group
	// gateway.networking.k8s.io). Empty means the policy's own namespace.
	TargetRefs []TargetRef `json:"targetRefs,omitempty"`
	// Action is ALLOW (default) or DENY. With any ALLOW policy on a
	// workload, traffic matching no ALLOW rule is denied; DENY wins over ALLOW.
	Action Action `json:"action,omitempty"`
	// Rules: a request matching any rule matches the policy. An ALLOW policy
	// with no rules allows nothing; a DENY policy with no rules denies nothing.
	Rules []Rule `json:"rules,omitempty"`
}

// TargetRef names the object a policy attaches to.
type TargetRef struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
}

// Rule matches when its from, to and when clauses all match.
type Rule struct {
	From *Source      `json:"from,omitempty"`
	To   *Destination `json:"to,omitempty"`
	When []Condition  `json:"when,omitempty"`
}

// Source conditions (L4: ztunnel can enforce them).
type Source struct {
	// Identities are SPIFFE IDs; a trailing "*" matches by prefix.
	Identities    []string `json:"identities,omitempty"`
	NotIdentities []string `json:"notIdentities,omitempty"`
	Namespaces    []string `json:"namespaces,omitempty"`
	NotNamespaces []string `json:"notNamespaces,omitempty"`
}

// Destination conditions. Ports are L4; methods and paths need a waypoint.
type Destination struct {
	Ports   []int32  `json:"ports,omitempty"`
	Methods []string `json:"methods,omitempty"`
	// Paths are exact, or prefixes with a trailing "*".
	Paths []string `json:"paths,omitempty"`
}

// Condition on a request header (needs a waypoint).
type Condition struct {
	Header string   `json:"header"`
	Values []string `json:"values"`
}

// AuthorizationPolicyStatus says whether the policy was accepted and who
// enforces it.
type AuthorizationPolicyStatus struct {
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DeepCopyInto copies in into out.
func (in *AuthorizationPolicy) DeepCopyInto(out *AuthorizationPolicy) {
	*out = *in
	out.TypeMeta = in.TypeMeta
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec.TargetRefs = append([]TargetRef(nil), in.Spec.TargetRefs...)
	if in.Spec.Rules != nil {
		out.Spec.Rules = make([]Rule, len(in.Spec.Rules))
		for i, r := range in.Spec.Rules {
			out.Spec.Rules[i] = r.deepCopy()
		}
	}
	if in.Status.Conditions != nil {
		out.Status.Conditions = make([]metav1.Condition, len(in.Status.Conditions))
		for i := range in.Status.Conditions {
			in.Status.Conditions[i].DeepCopyInto(&out.Status.Conditions[i])
		}
	}
}

func (r Rule) deepCopy() Rule {
	out := Rule{}
	if r.From != nil {
		out.From = &Source{
			Identities: clone(r.From.Identities), NotIdentities: clone(r.From.NotIdentities),
			Namespaces: clone(r.From.Namespaces), NotNamespaces: clone(r.From.NotNamespaces),
		}
	}
	if r.To != nil {
		out.To = &Destination{Ports: clone(r.To.Ports), Methods: clone(r.To.Methods), Paths: clone(r.To.Paths)}
	}
	for _, c := range r.When {
		out.When = append(out.When, Condition{Header: c.Header, Values: clone(c.Values)})
	}
	return out
}

func clone[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append([]T(nil), s...)
}

// DeepCopy returns a copy.
func (in *AuthorizationPolicy) DeepCopy() *AuthorizationPolicy {
	if in == nil {
		return nil
	}
	out := new(AuthorizationPolicy)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *AuthorizationPolicy) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (in *AuthorizationPolicyList) DeepCopyObject() runtime.Object {
	if in == nil {
		return nil
	}
	out := &AuthorizationPolicyList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	for i := range in.Items {
		out.Items = append(out.Items, *in.Items[i].DeepCopy())
	}
	return out
}
