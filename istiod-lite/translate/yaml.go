package translate

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// YAML renders the output for people and golden files: resources in their
// protobuf JSON form, keys sorted, deterministic.
func (o *Output) YAML() ([]byte, error) {
	doc := map[string]any{}
	put := func(key string, m any) {
		if m != nil {
			doc[key] = m
		}
	}
	var err error
	conv := func(msgs map[string]proto.Message) any {
		if len(msgs) == 0 {
			return nil
		}
		out := map[string]any{}
		for k, m := range msgs {
			b, e := protojson.MarshalOptions{UseProtoNames: false}.Marshal(m)
			if e != nil {
				err = e
				return nil
			}
			var v any
			if e := json.Unmarshal(b, &v); e != nil {
				err = e
				return nil
			}
			out[k] = v
		}
		return out
	}
	put("workloads", conv(asMessages(o.Workloads)))
	put("services", conv(asMessages(o.Services)))
	put("authorizations", conv(asMessages(o.Authorizations)))
	put("l7services", conv(asMessages(o.L7Services)))
	if o.TrustBundle != nil {
		put("trustBundle", conv(map[string]proto.Message{"trust-bundle": o.TrustBundle}))
	}
	st := map[string]any{}
	addStatus := func(k string, v any, n int) {
		if n > 0 {
			st[k] = v
		}
	}
	addStatus("gatewayClasses", o.Status.GatewayClasses, len(o.Status.GatewayClasses))
	addStatus("gateways", o.Status.Gateways, len(o.Status.Gateways))
	addStatus("httpRoutes", o.Status.HTTPRoutes, len(o.Status.HTTPRoutes))
	addStatus("grpcRoutes", o.Status.GRPCRoutes, len(o.Status.GRPCRoutes))
	addStatus("backendTrafficPolicies", o.Status.BackendTrafficPolicies, len(o.Status.BackendTrafficPolicies))
	addStatus("authorizationPolicies", o.Status.AuthorizationPolicies, len(o.Status.AuthorizationPolicies))
	if len(st) > 0 {
		doc["status"] = st
	}
	if len(o.Waypoints) > 0 {
		doc["waypoints"] = o.Waypoints
	}
	if len(o.Diagnostics) > 0 {
		doc["diagnostics"] = o.Diagnostics
	}
	if err != nil {
		return nil, fmt.Errorf("translate: render: %w", err)
	}
	return yaml.Marshal(doc)
}

func asMessages[M proto.Message](m map[string]M) map[string]proto.Message {
	out := make(map[string]proto.Message, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
