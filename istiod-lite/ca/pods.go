package ca

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

// PodLocator answers where pods running as a service account are scheduled.
type PodLocator interface {
	// NodesFor returns the nodes with a live (not finished, not deleted)
	// pod running as namespace/serviceAccount, sorted and deduplicated.
	NodesFor(namespace, serviceAccount string) ([]string, error)
}

const identityIndex = "warren-identity"

// KubePodLocator answers from a pod informer indexed by identity.
type KubePodLocator struct {
	informer cache.SharedIndexInformer
}

// NewKubePodLocator registers an identity index on the factory's pod
// informer. Start the factory and wait for sync before use.
func NewKubePodLocator(factory informers.SharedInformerFactory) (*KubePodLocator, error) {
	inf := factory.Core().V1().Pods().Informer()
	err := inf.AddIndexers(cache.Indexers{identityIndex: func(obj any) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, nil
		}
		return []string{p.Namespace + "/" + podSA(p)}, nil
	}})
	if err != nil {
		return nil, fmt.Errorf("ca: pod index: %w", err)
	}
	return &KubePodLocator{informer: inf}, nil
}

// HasSynced reports whether the pod cache is filled.
func (l *KubePodLocator) HasSynced() bool { return l.informer.HasSynced() }

// NodesFor implements PodLocator.
func (l *KubePodLocator) NodesFor(ns, sa string) ([]string, error) {
	if !l.informer.HasSynced() {
		return nil, fmt.Errorf("ca: pod cache not synced yet")
	}
	objs, err := l.informer.GetIndexer().ByIndex(identityIndex, ns+"/"+sa)
	if err != nil {
		return nil, fmt.Errorf("ca: pod index: %w", err)
	}
	var nodes []string
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && podLive(p) {
			nodes = append(nodes, p.Spec.NodeName)
		}
	}
	return sortedUnique(nodes), nil
}

func podSA(p *corev1.Pod) string {
	if p.Spec.ServiceAccountName == "" {
		return "default"
	}
	return p.Spec.ServiceAccountName
}

func podLive(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && p.DeletionTimestamp == nil &&
		p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func sortedUnique(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

// StaticPodLocator answers from a fixed list of pods (file mode, tests).
type StaticPodLocator struct {
	mu   sync.RWMutex
	pods []*corev1.Pod
}

// NewStaticPodLocator returns a locator over pods.
func NewStaticPodLocator(pods ...*corev1.Pod) *StaticPodLocator {
	return &StaticPodLocator{pods: pods}
}

// Set replaces the pod list.
func (l *StaticPodLocator) Set(pods []*corev1.Pod) {
	l.mu.Lock()
	l.pods = pods
	l.mu.Unlock()
}

// NodesFor implements PodLocator.
func (l *StaticPodLocator) NodesFor(ns, sa string) ([]string, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var nodes []string
	for _, p := range l.pods {
		if p.Namespace == ns && podSA(p) == sa && podLive(p) {
			nodes = append(nodes, p.Spec.NodeName)
		}
	}
	return sortedUnique(nodes), nil
}

// LoadPodsFromDir reads the Pod documents of every *.yaml/*.yml file in dir
// (multi-document files allowed; other kinds skipped). Errors name the file
// and document.
func LoadPodsFromDir(dir string) ([]*corev1.Pod, error) {
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	var pods []*corev1.Pod
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		for i, doc := range splitYAML(string(data)) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return nil, fmt.Errorf("ca: %s: document %d: %v", f, i+1, err)
			}
			if head.Kind != "Pod" || head.APIVersion != "v1" {
				continue
			}
			p := &corev1.Pod{}
			if err := yaml.UnmarshalStrict([]byte(doc), p); err != nil {
				return nil, fmt.Errorf("ca: %s: document %d: %v", f, i+1, err)
			}
			if p.Namespace == "" {
				p.Namespace = "default"
			}
			pods = append(pods, p)
		}
	}
	return pods, nil
}

func splitYAML(s string) []string {
	var docs []string
	var cur []string
	flush := func() {
		d := strings.TrimSpace(strings.Join(cur, "\n"))
		if d != "" {
			docs = append(docs, d)
		}
		cur = nil
	}
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "---") && strings.TrimSpace(strings.TrimLeft(line, "-")) == "" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}
