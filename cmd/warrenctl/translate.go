package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

func newTranslate() *cobra.Command {
	var (
		dir, output, trustDomain string
		section                  string
	)
	cmd := &cobra.Command{
		Use:   "translate",
		Short: "Translate a directory of YAML into the exact per-proxy config istiod-lite would send, offline",
		Long: `translate runs the same pure translation as istiod-lite on a directory (or one
file) of Kubernetes and Gateway API YAML — Pods included, with their IPs and nodes —
and prints the resulting proxy configuration and the status every object would get.
No cluster is needed.`,
		Example: `  # everything
  warrenctl x translate -f examples/
  # only the waypoint route tables, as JSON
  warrenctl x translate -f my-mesh/ --section l7services -o json
  # the status your routes would get
  warrenctl x translate -f routes.yaml --section status`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("-f is required: a directory or a YAML file")
			}
			snap, err := load(dir)
			if err != nil {
				return err
			}
			snap.Config.TrustDomain = trustDomain
			out, err := translate.Translate(model.NewIndex(snap)).YAML()
			if err != nil {
				return err
			}
			var doc map[string]any
			if err := yaml.Unmarshal(out, &doc); err != nil {
				return err
			}
			var v any = doc
			if section != "" {
				sec, ok := doc[section]
				if !ok {
					return fmt.Errorf("--section %q: not in the output (have workloads, services, authorizations, l7services, trustBundle, status, waypoints, diagnostics; empty sections are omitted)", section)
				}
				v = sec
			}
			w := cmd.OutOrStdout()
			switch output {
			case "yaml":
				b, err := yaml.Marshal(v)
				if err != nil {
					return err
				}
				_, err = w.Write(b)
				return err
			case "json":
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			return fmt.Errorf("-o %q: want yaml or json", output)
		},
	}
	cmd.Flags().StringVarP(&dir, "filename", "f", "", "directory of YAML files, or one YAML file")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "yaml or json")
	cmd.Flags().StringVar(&section, "section", "", "print only this top-level section (workloads, services, l7services, status, ...)")
	cmd.Flags().StringVar(&trustDomain, "trust-domain", "cluster.local", "trust domain of workload identities")
	return cmd
}

func load(path string) (*model.Snapshot, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
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
