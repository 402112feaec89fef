package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// mesh is one view of the mesh: the objects, their index and the
// translation istiod-lite computes from them (pure, so offline and live
// agree).
type mesh struct {
	snap *model.Snapshot
	ix   *model.Index
	out  *translate.Output
	// live is true when the objects came from a cluster.
	live bool
	// source says where the objects came from, for messages.
	source string
	// notes are non-fatal gaps (missing CRDs, skipped objects).
	notes []string
}

func newMesh(snap *model.Snapshot, live bool, source string, notes []string) *mesh {
	ix := model.NewIndex(snap)
	return &mesh{snap: snap, ix: ix, out: translate.Translate(ix), live: live, source: source, notes: notes}
}

// loadMesh reads the objects from dir (offline) or, when dir is empty,
// from the cluster of the kubeconfig.
func (e *env) loadMesh(ctx context.Context, dir string) (*mesh, error) {
	if dir != "" {
		snap, err := load(dir)
		if err != nil {
			return nil, err
		}
		return newMesh(snap, false, dir, nil), nil
	}
	kc, err := e.kube("use -f DIR to work offline on a directory of YAML")
	if err != nil {
		return nil, err
	}
	snap, notes, err := liveSnapshot(ctx, kc, e.flags.systemNamespace)
	if err != nil {
		return nil, err
	}
	return newMesh(snap, true, "cluster "+kc.host, notes), nil
}

// load reads a directory of YAML, or one file, into a snapshot.
func load(path string) (*model.Snapshot, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", path, unwrapPathError(err))
	}
	if st.IsDir() {
		return file.LoadDir(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return file.Parse(path, data)
}

// podByName finds a pod in the index (its pods are sorted by
// namespace/name).
func podByName(ix *model.Index, ns, name string) *corev1.Pod {
	i, ok := slices.BinarySearchFunc(ix.Pods, model.Key(ns, name), func(p *corev1.Pod, key string) int {
		return strings.Compare(model.Key(p.Namespace, p.Name), key)
	})
	if !ok {
		return nil
	}
	return ix.Pods[i]
}
