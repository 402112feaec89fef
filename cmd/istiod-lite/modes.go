package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/examples"
	"github.com/warren-mesh/warren/istiod-lite/ca"
	"github.com/warren-mesh/warren/istiod-lite/deploy"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/source/kube"
	"github.com/warren-mesh/warren/istiod-lite/status"
)

// kubePlane watches the API server: informers as the source, TokenReview
// authentication, the status writer, the waypoint deployer and the root
// ConfigMap publisher.
func kubePlane(ctx context.Context, o options, td spiffeid.TrustDomain, mesh model.MeshConfig, authority *certs.CA, reg prometheus.Registerer, log *slog.Logger) (*plane, error) {
	cfg, err := kubeConfig(o)
	if err != nil {
		return nil, err
	}
	ko := kube.Options{Mesh: mesh, Logger: log, Registerer: reg}
	if err := ko.ClientsForConfig(cfg); err != nil {
		return nil, err
	}
	src, err := kube.New(ko)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(ko.Client, 0)
	pods, err := ca.NewKubePodLocator(factory)
	if err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	sw, err := status.New(status.Options{Gateway: ko.Gateway, Dynamic: ko.Dynamic, Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	dep, err := deploy.New(deploy.Options{
		Client: ko.Client, Image: o.waypointImage, Logger: log, Registerer: reg,
		XDSAddress: o.serviceAccount + "." + o.systemNamespace + ".svc:15012",
	})
	if err != nil {
		return nil, err
	}
	return &plane{
		source:    src,
		auth:      &ca.TokenReviewAuthenticator{Client: ko.Client, TrustDomain: td},
		pods:      pods,
		status:    sw,
		waypoints: dep,
		runners: []runner{src, sw, dep,
			&ca.RootPublisher{Client: ko.Client, Bundle: authority.Bundle(), SystemNamespace: o.systemNamespace, Logger: log}},
		ready: func(ctx context.Context) error {
			log.Info("istiod-lite: waiting for informer caches")
			if !cache.WaitForCacheSync(ctx.Done(), src.HasSynced, pods.HasSynced, dep.HasSynced) {
				return errors.New("informer caches did not sync")
			}
			return nil
		},
	}, nil
}

func kubeConfig(o options) (*rest.Config, error) {
	if o.inCluster {
		return rest.InClusterConfig()
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("-kubeconfig %s: %w", o.kubeconfig, err)
	}
	return cfg, nil
}

// filePlane serves a YAML directory (watched) or the embedded examples,
// authenticating proxies with bootstrap tokens and locating pods from the
// YAML for node-scoped impersonation.
func filePlane(o options, td spiffeid.TrustDomain, log *slog.Logger) (*plane, error) {
	p := &plane{}
	if o.bootstrapTokens != "" {
		auth, err := ca.LoadBootstrapTokens(o.bootstrapTokens, td)
		if err != nil {
			return nil, err
		}
		p.auth = auth
	} else {
		// No tokens: nobody authenticates on 15012 (the plaintext test
		// port, if enabled, needs none).
		auth, _ := ca.NewStaticAuthenticator(td, nil, "(none)")
		p.auth = auth
		log.Warn("istiod-lite: no -bootstrap-tokens: the TLS port refuses every proxy")
	}
	locator := ca.NewStaticPodLocator()
	p.pods = locator
	p.onSnap = func(s *model.Snapshot) { locator.Set(s.Pods) }
	if o.configDir == "" {
		snap, err := file.LoadFS(examples.FS(), "examples")
		if err != nil {
			return nil, err
		}
		log.Info("istiod-lite: file mode, serving the embedded examples (use -config-dir for your own)")
		p.source = staticSource{snap}
		return p, nil
	}
	src, err := file.New(file.Options{Dir: o.configDir})
	if err != nil {
		return nil, err
	}
	log.Info("istiod-lite: file mode", "config_dir", o.configDir)
	p.source = src
	p.runners = append(p.runners, &fileWatch{src: src, log: log})
	return p, nil
}

// staticSource serves one snapshot forever.
type staticSource struct{ snap *model.Snapshot }

func (s staticSource) Snapshot() *model.Snapshot { return s.snap }
func (s staticSource) Changed() <-chan struct{}  { return nil }

// fileWatch runs the file source's watcher, logging bad edits.
type fileWatch struct {
	src *file.Source
	log *slog.Logger
}

func (f *fileWatch) Name() string { return f.src.Name() }

func (f *fileWatch) Start(ctx context.Context) error {
	return f.src.Start(ctx, func(err error) {
		f.log.Error("istiod-lite: config not reloaded, keeping the last good state", "error", err)
	})
}
