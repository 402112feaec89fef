package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwxv1a1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"

	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
	"github.com/warren-mesh/warren/istiod-lite/model"
)

// maxFileBytes bounds one YAML file; bigger files are refused, not parsed.
const maxFileBytes = 32 << 20

// Error is a problem at a place in a file.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// LoadDir reads every *.yaml and *.yml file directly in dir, in name order,
// into one snapshot. The first problem is returned with its file and line;
// duplicates (same kind, namespace and name) are an error too.
func LoadDir(dir string) (*model.Snapshot, error) {
	return LoadFS(os.DirFS(dir), dir)
}

// LoadFS is LoadDir over a file system (e.g. an embedded one); prefix is
// prepended to file names in errors.
func LoadFS(fsys fs.FS, prefix string) (*model.Snapshot, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	s := &model.Snapshot{}
	seen := map[string]string{}
	for _, n := range names {
		path := filepath.Join(prefix, n)
		info, err := fs.Stat(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("file source: %w", err)
		}
		if info.Size() > maxFileBytes {
			return nil, &Error{File: path, Line: 1, Msg: fmt.Sprintf("file is %d bytes, over the %d byte limit", info.Size(), maxFileBytes)}
		}
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("file source: %w", err)
		}
		if err := parseInto(s, path, data, seen); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Parse reads one multi-document YAML stream into a new snapshot.
func Parse(name string, data []byte) (*model.Snapshot, error) {
	s := &model.Snapshot{}
	return s, parseInto(s, name, data, map[string]string{})
}

func parseInto(s *model.Snapshot, file string, data []byte, seen map[string]string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			line, msg := yamlErr(err)
			return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg}
		}
		if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
			continue // empty document
		}
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			return &Error{File: file, Line: root.Line, Msg: "a document must be a mapping (an object with apiVersion and kind)"}
		}
		if err := decodeDoc(s, file, root, seen); err != nil {
			return err
		}
	}
}

// yamlErr splits "yaml: line N: problem" into N and the problem.
func yamlErr(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var n int
	if _, e := fmt.Sscanf(msg, "line %d:", &n); e == nil {
		if _, rest, ok := strings.Cut(msg, ": "); ok {
			return n, rest
		}
	}
	return 1, msg
}

// kindOf maps apiVersion+kind to a decoder that appends to the snapshot.
type target struct {
	obj        any
	namespaced bool
	add        func(s *model.Snapshot)
}

func newTarget(apiVersion, kind string) (*target, bool) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		o := &corev1.Namespace{}
		return &target{o, false, func(s *model.Snapshot) { s.Namespaces = append(s.Namespaces, o) }}, true
	case "v1/Pod":
		o := &corev1.Pod{}
		return &target{o, true, func(s *model.Snapshot) { s.Pods = append(s.Pods, o) }}, true
	case "v1/Service":
		o := &corev1.Service{}
		return &target{o, true, func(s *model.Snapshot) { s.Services = append(s.Services, o) }}, true
	case "v1/Node":
		o := &corev1.Node{}
		return &target{o, false, func(s *model.Snapshot) { s.Nodes = append(s.Nodes, o) }}, true
	case "v1/ServiceAccount":
		o := &corev1.ServiceAccount{}
		return &target{o, true, func(*model.Snapshot) {}}, true
	case "discovery.k8s.io/v1/EndpointSlice":
		o := &discoveryv1.EndpointSlice{}
		return &target{o, true, func(s *model.Snapshot) { s.EndpointSlices = append(s.EndpointSlices, o) }}, true
	case "apps/v1/Deployment":
		o := &appsv1.Deployment{}
		return &target{o, true, func(s *model.Snapshot) { s.WaypointDeployments = append(s.WaypointDeployments, o) }}, true
	case "gateway.networking.k8s.io/v1/GatewayClass", "gateway.networking.k8s.io/v1beta1/GatewayClass":
		o := &gwv1.GatewayClass{}
		return &target{o, false, func(s *model.Snapshot) { s.GatewayClasses = append(s.GatewayClasses, o) }}, true
	case "gateway.networking.k8s.io/v1/Gateway", "gateway.networking.k8s.io/v1beta1/Gateway":
		o := &gwv1.Gateway{}
		return &target{o, true, func(s *model.Snapshot) { s.Gateways = append(s.Gateways, o) }}, true
	case "gateway.networking.k8s.io/v1/HTTPRoute", "gateway.networking.k8s.io/v1beta1/HTTPRoute":
		o := &gwv1.HTTPRoute{}
		return &target{o, true, func(s *model.Snapshot) { s.HTTPRoutes = append(s.HTTPRoutes, o) }}, true
	case "gateway.networking.k8s.io/v1/GRPCRoute":
		o := &gwv1.GRPCRoute{}
		return &target{o, true, func(s *model.Snapshot) { s.GRPCRoutes = append(s.GRPCRoutes, o) }}, true
	case "gateway.networking.k8s.io/v1/ReferenceGrant", "gateway.networking.k8s.io/v1beta1/ReferenceGrant":
		o := &gwv1.ReferenceGrant{}
		return &target{o, true, func(s *model.Snapshot) { s.ReferenceGrants = append(s.ReferenceGrants, o) }}, true
	case "gateway.networking.x-k8s.io/v1alpha1/XBackendTrafficPolicy":
		o := &gwxv1a1.XBackendTrafficPolicy{}
		return &target{o, true, func(s *model.Snapshot) { s.BackendTrafficPolicies = append(s.BackendTrafficPolicies, o) }}, true
	case "security.warren.io/v1alpha1/AuthorizationPolicy":
		o := &secv1.AuthorizationPolicy{}
		return &target{o, true, func(s *model.Snapshot) { s.AuthorizationPolicies = append(s.AuthorizationPolicies, o) }}, true
	}
	return nil, false
}

func decodeDoc(s *model.Snapshot, file string, root *yaml.Node, seen map[string]string) error {
	var head struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
	}
	if err := root.Decode(&head); err != nil {
		return &Error{File: file, Line: root.Line, Msg: err.Error()}
	}
	if head.APIVersion == "" || head.Kind == "" {
		return &Error{File: file, Line: root.Line, Field: "apiVersion/kind", Msg: "both are required"}
	}
	if head.Kind == "List" {
		return &Error{File: file, Line: root.Line, Field: "kind", Msg: "List is not supported; write the items as separate documents"}
	}
	tg, ok := newTarget(head.APIVersion, head.Kind)
	if !ok {
		return &Error{File: file, Line: lineOfKey(root, "kind", root.Line), Field: "kind", Msg: fmt.Sprintf("%s %s is not a kind the file source reads", head.APIVersion, head.Kind)}
	}
	var generic any
	if err := root.Decode(&generic); err != nil {
		return &Error{File: file, Line: root.Line, Msg: err.Error()}
	}
	raw, err := json.Marshal(generic)
	if err != nil {
		return &Error{File: file, Line: root.Line, Msg: "cannot convert to JSON: " + err.Error()}
	}
	jd := json.NewDecoder(bytes.NewReader(raw))
	jd.DisallowUnknownFields()
	if err := jd.Decode(tg.obj); err != nil {
		return jsonError(file, root, err)
	}
	meta := objectMeta(tg.obj)
	if meta.name == "" {
		return &Error{File: file, Line: lineOfKey(root, "metadata", root.Line), Field: "metadata.name", Msg: "is required"}
	}
	if tg.namespaced && *meta.namespace == "" {
		*meta.namespace = "default"
	}
	if !tg.namespaced && *meta.namespace != "" {
		return &Error{File: file, Line: lineOfKey(root, "namespace", root.Line), Field: "metadata.namespace", Msg: head.Kind + " is cluster-scoped"}
	}
	key := head.Kind + " " + model.Key(*meta.namespace, meta.name)
	here := fmt.Sprintf("%s:%d", file, root.Line)
	if prev, dup := seen[key]; dup {
		return &Error{File: file, Line: root.Line, Field: "metadata.name", Msg: fmt.Sprintf("%s is already defined at %s", key, prev)}
	}
	seen[key] = here
	tg.add(s)
	return nil
}

type metaRef struct {
	name      string
	namespace *string
}

func objectMeta(o any) metaRef {
	type metaObj interface {
		GetName() string
		GetNamespace() string
	}
	m := o.(metaObj)
	var ns *string
	switch x := o.(type) {
	case *corev1.Namespace:
		ns = &x.Namespace
	case *corev1.Pod:
		ns = &x.Namespace
	case *corev1.Service:
		ns = &x.Namespace
	case *corev1.Node:
		ns = &x.Namespace
	case *corev1.ServiceAccount:
		ns = &x.Namespace
	case *discoveryv1.EndpointSlice:
		ns = &x.Namespace
	case *appsv1.Deployment:
		ns = &x.Namespace
	case *gwv1.GatewayClass:
		ns = &x.Namespace
	case *gwv1.Gateway:
		ns = &x.Namespace
	case *gwv1.HTTPRoute:
		ns = &x.Namespace
	case *gwv1.GRPCRoute:
		ns = &x.Namespace
	case *gwv1.ReferenceGrant:
		ns = &x.Namespace
	case *gwxv1a1.XBackendTrafficPolicy:
		ns = &x.Namespace
	case *secv1.AuthorizationPolicy:
		ns = &x.Namespace
	}
	return metaRef{name: m.GetName(), namespace: ns}
}

// jsonError turns a strict-decoding error into file:line: field: problem.
func jsonError(file string, root *yaml.Node, err error) error {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		path := strings.Split(ute.Field, ".")
		return &Error{File: file, Line: lineOfPath(root, path), Field: ute.Field, Msg: fmt.Sprintf("cannot use %s as %s", ute.Value, ute.Type)}
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return &Error{File: file, Line: lineOfKey(root, f, root.Line), Field: f, Msg: "unknown field"}
	}
	return &Error{File: file, Line: root.Line, Msg: strings.TrimPrefix(msg, "json: ")}
}

// lineOfKey finds the first mapping key named key (depth first).
func lineOfKey(n *yaml.Node, key string, def int) int {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i].Line
			}
		}
	}
	for _, c := range n.Content {
		if l := lineOfKey(c, key, 0); l > 0 {
			return l
		}
	}
	return def
}

// lineOfPath follows a dotted JSON path through mappings, stepping into
// the first element of sequences.
func lineOfPath(n *yaml.Node, path []string) int {
	line := n.Line
	cur := n
	for _, p := range path {
		for cur.Kind == yaml.SequenceNode && len(cur.Content) > 0 {
			cur = cur.Content[0]
		}
		if cur.Kind != yaml.MappingNode {
			break
		}
		found := false
		for i := 0; i+1 < len(cur.Content); i += 2 {
			if cur.Content[i].Value == p {
				line = cur.Content[i].Line
				cur = cur.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			break
		}
	}
	return line
}
