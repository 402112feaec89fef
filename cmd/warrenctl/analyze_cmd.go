package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/warren-mesh/warren/certs"
)

func newAnalyze(e *env) *cobra.Command {
	var (
		dir, bundleFile, failOn string
		all, listCodes          bool
		rootWarn                time.Duration
	)
	cmd := &cobra.Command{
		Use:   "analyze",
		Short: "Find misconfigurations, each with a stable code and a fix",
		Long: `analyze checks the mesh for misconfigurations: waypoint labels naming missing or
unusable Gateways, routes that do nothing or never match, unresolved or
unpermitted backends, gRPC ports without appProtocol, pods on nodes without a
ztunnel, policies nobody enforces, strict mTLS with plaintext clients, expiring
roots, rejected configuration. Every finding has a stable code (WA001…, see
--list-codes) and a fix.

Live it reads the cluster (and istiod-lite's syncz when reachable); with -f it
works offline on a directory of YAML through the same translation istiod-lite
runs. Checks that need live state are skipped offline (see the "needs" column of
--list-codes). Exit code 3 when findings at or above --fail-on exist.`,
		Example: `  warrenctl analyze                      # the context's namespace
  warrenctl analyze -A
  warrenctl analyze -f examples/         # offline, every namespace in the directory
  warrenctl analyze -f my-mesh/ --trust-bundle root-cert.pem --fail-on warning
  warrenctl analyze --list-codes`,
		Args: noArgs,
	}
	out := addOutputFlag(cmd, formatTable)
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all-namespaces", "A", false, "every namespace")
	fl.StringVarP(&dir, "filename", "f", "", "offline: a directory of YAML (or one file) instead of the cluster")
	fl.StringVar(&bundleFile, "trust-bundle", "", "PEM roots to check for expiry (default live: the warren-ca-root-cert ConfigMap)")
	fl.DurationVar(&rootWarn, "root-expiry-warning", 30*24*time.Hour, "warn about roots expiring within this long")
	fl.StringVar(&failOn, "fail-on", "error", "exit with code 3 when findings of this severity or worse exist: error, warning or none")
	fl.BoolVar(&listCodes, "list-codes", false, "print the analyzer codes and exit")
	_ = cmd.MarkFlagDirname("filename")
	_ = cmd.RegisterFlagCompletionFunc("fail-on", cobra.FixedCompletions([]string{"error", "warning", "none"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		w := cmd.OutOrStdout()
		if listCodes {
			return writeCodes(w, out.value)
		}
		if failOn != "error" && failOn != "warning" && failOn != "none" {
			return usagef("--fail-on %q: want error, warning or none", failOn)
		}
		if all && flagSet(cmd.Flags(), "namespace") {
			return usagef("-A and -n cannot be combined")
		}
		sel, err := labels.Parse(e.flags.ztunnelSelector)
		if err != nil {
			return usagef("--ztunnel-selector: %v", err)
		}
		m, err := e.loadMesh(cmd.Context(), dir)
		if err != nil {
			return err
		}
		in := analyzeInput{m: m, now: e.now(), rootWarn: rootWarn, ztunnels: sel}
		if in.roots, err = bundleRoots(bundleFile, m); err != nil {
			return err
		}
		if m.live || e.flags.istiodAddr != "" {
			if ic, err := e.istiod(); err == nil {
				if ps, err := syncz(cmd.Context(), ic); err == nil {
					in.syncz = ps
					if in.roots == nil {
						if ca, err := istiodCA(cmd.Context(), ic); err == nil {
							in.roots = caRoots(ca)
						}
					}
				} else {
					fmt.Fprintf(e.stderr, "warrenctl: note: %s; checks %s and %s skipped\n", oneLine(err.Error()), codeZtunnelDisconnected, codeProxyNACK)
				}
			}
		}
		for _, n := range m.notes {
			fmt.Fprintln(e.stderr, "warrenctl: note: "+n)
		}
		ns := ""
		if !all && (dir == "" || flagSet(cmd.Flags(), "namespace")) {
			ns = e.namespaceOf()
		}
		fs := filterFindings(analyzeMesh(in), ns)
		if out.value != formatTable {
			if fs == nil {
				fs = []finding{}
			}
			if err := writeStructured(w, out.value, fs); err != nil {
				return err
			}
		} else if err := writeFindings(w, fs, ns, m.source); err != nil {
			return err
		}
		return failExit(fs, failOn)
	}
	return cmd
}

// bundleRoots returns the roots to check: --trust-bundle, else the
// snapshot's bundle (live: the root ConfigMap). nil when unknown.
func bundleRoots(file string, m *mesh) ([]rootInfo, error) {
	var pem []byte
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--trust-bundle %s: %w", file, unwrapPathError(err))
		}
		pem = b
	case len(m.snap.TrustBundlePEM) > 0:
		pem = []byte(strings.Join(m.snap.TrustBundlePEM, "\n"))
	default:
		return nil, nil
	}
	roots, err := certs.ParseCertificates(pem)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	out := make([]rootInfo, 0, len(roots))
	for _, r := range roots {
		name := r.Subject.CommonName
		if name == "" {
			name = r.Subject.String()
		}
		out = append(out, rootInfo{Subject: name, Serial: r.SerialNumber.Text(16), NotAfter: r.NotAfter})
	}
	return out, nil
}

// caRoots converts istiod-lite's /debug/ca roots.
func caRoots(ca *caDebug) []rootInfo {
	out := []rootInfo{}
	for _, r := range ca.Roots {
		out = append(out, rootInfo{Subject: r.Subject, Serial: r.Serial, NotAfter: r.NotAfter})
	}
	return out
}

func failExit(fs []finding, failOn string) error {
	for _, f := range fs {
		if (failOn == "warning") || (failOn == "error" && f.Severity == sevError) {
			return &exitError{code: exitFindings}
		}
	}
	return nil
}

func writeFindings(w io.Writer, fs []finding, ns, source string) error {
	scope := "namespace " + ns
	if ns == "" {
		scope = "all namespaces"
	}
	if len(fs) == 0 {
		_, err := fmt.Fprintf(w, "No problems found in %s (%s).\n", scope, source)
		return err
	}
	t := newTable("CODE", "SEVERITY", "OBJECT", "MESSAGE")
	errs, warns := 0, 0
	for _, f := range fs {
		obj := f.Kind + " " + f.Name
		if f.Namespace != "" && f.Kind != "Namespace" && f.Kind != "Node" {
			obj = f.Kind + " " + f.Namespace + "/" + f.Name
		}
		t.add(f.Code, f.Severity, obj, f.Message)
		t.add("", "", "", "fix: "+f.Fix)
		if f.Severity == sevError {
			errs++
		} else {
			warns++
		}
	}
	if err := t.write(w); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s, %s in %s (%s).\n", plural(errs, "error"), plural(warns, "warning"), scope, source)
	return err
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return fmt.Sprintf("%d %ss", n, s)
}

func writeCodes(w io.Writer, format string) error {
	if format != formatTable {
		return writeStructured(w, format, analyzerCodes)
	}
	t := newTable("CODE", "SEVERITY", "NAME", "NEEDS", "SUMMARY")
	for _, c := range analyzerCodes {
		t.add(c.Code, c.Severity, c.Name, dash(c.Needs), c.Summary)
	}
	return t.write(w)
}
