package main

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// istiodTranslation reads /debug/translation, istiod-lite's latest
// translation output (what it pushed to the proxies), back into the
// resources warrenctl reasons about. Status is not parsed: describe and
// analyze compute it from objects.
func istiodTranslation(ctx context.Context, c istiodClient) (*translate.Output, error) {
	b, err := c.get(ctx, "/debug/translation", nil)
	if err != nil {
		return nil, err
	}
	out, err := parseTranslationYAML(b)
	if err != nil {
		return nil, fmt.Errorf("%s: /debug/translation: %v", c.where(), err)
	}
	return out, nil
}

// parseTranslationYAML is the inverse of translate.Output.YAML for the
// proxy resources, diagnostics and waypoints.
func parseTranslationYAML(b []byte) (*translate.Output, error) {
	var doc struct {
		Workloads      map[string]json.RawMessage `json:"workloads"`
		Services       map[string]json.RawMessage `json:"services"`
		Authorizations map[string]json.RawMessage `json:"authorizations"`
		L7Services     map[string]json.RawMessage `json:"l7services"`
		TrustBundle    map[string]json.RawMessage `json:"trustBundle"`
		Waypoints      []translate.Waypoint       `json:"waypoints"`
		Diagnostics    []translate.Diagnostic     `json:"diagnostics"`
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(j, &doc); err != nil {
		return nil, err
	}
	out := &translate.Output{Waypoints: doc.Waypoints, Diagnostics: doc.Diagnostics}
	if out.Workloads, err = unmarshalAll(doc.Workloads, func() *warrenv1.Workload { return &warrenv1.Workload{} }); err != nil {
		return nil, fmt.Errorf("workloads: %w", err)
	}
	if out.Services, err = unmarshalAll(doc.Services, func() *warrenv1.Service { return &warrenv1.Service{} }); err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	if out.Authorizations, err = unmarshalAll(doc.Authorizations, func() *warrenv1.Authorization { return &warrenv1.Authorization{} }); err != nil {
		return nil, fmt.Errorf("authorizations: %w", err)
	}
	if out.L7Services, err = unmarshalAll(doc.L7Services, func() *warrenv1.L7Service { return &warrenv1.L7Service{} }); err != nil {
		return nil, fmt.Errorf("l7services: %w", err)
	}
	if tb, ok := doc.TrustBundle["trust-bundle"]; ok {
		out.TrustBundle = &warrenv1.TrustBundle{}
		if err := protojson.Unmarshal(tb, out.TrustBundle); err != nil {
			return nil, fmt.Errorf("trustBundle: %w", err)
		}
	}
	return out, nil
}

func unmarshalAll[M proto.Message](in map[string]json.RawMessage, mk func() M) (map[string]M, error) {
	out := make(map[string]M, len(in))
	for k, raw := range in {
		m := mk()
		if err := protojson.Unmarshal(raw, m); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = m
	}
	return out, nil
}
