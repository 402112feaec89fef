package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	meshtests "sigs.k8s.io/gateway-api/conformance/tests/mesh"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/yaml"
)

func main() {
	report := flag.String("report", "", "conformance report YAML (--report-output of the suite)")
	logFile := flag.String("log", "", "optional `go test -v` output of the same run: adds a row per mesh test")
	command := flag.String("command", "", "optional file holding the command of the run, quoted in the output")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: conformance-table -report R.yaml [-log R.log] [-command R.command.txt] > README.md\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *report == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(os.Stdout, *report, *logFile, *command); err != nil {
		fmt.Fprintln(os.Stderr, "conformance-table:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, reportPath, logPath, commandPath string) error {
	b, err := os.ReadFile(reportPath)
	if err != nil {
		return err
	}
	var r confv1.ConformanceReport
	if err := yaml.UnmarshalStrict(b, &r); err != nil {
		return fmt.Errorf("%s: %w", reportPath, err)
	}
	var lg *runLog
	if logPath != "" {
		f, err := os.Open(logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		if lg, err = parseLog(f); err != nil {
			return fmt.Errorf("%s: %w", logPath, err)
		}
	}
	var cmd string
	if commandPath != "" {
		c, err := os.ReadFile(commandPath)
		if err != nil {
			return err
		}
		cmd = strings.TrimSpace(string(c))
	}
	writeMarkdown(w, filepath.Base(reportPath), &r, lg, cmd)
	return nil
}

// result is one top-level conformance test's outcome in a go test -v log.
type result struct {
	Outcome string // PASS, FAIL, SKIP
	// Seconds is the longest of the test's and its subtests' durations: go
	// test reports a parent's time without its parallel subtests.
	Seconds float64
	Reason  string // skip message
}

// runLog is what a go test -v log (or its results.txt extract) says.
type runLog struct {
	Results map[string]result // by test ShortName
	Notes   []string          // the runner's TIMING and setup warning lines
}

var (
	resultRE = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): TestConformance/([^/\s]+) \(([0-9.]+)s\)`)
	subRE    = regexp.MustCompile(`^\s*--- (?:PASS|FAIL|SKIP): TestConformance/([^/\s]+)/\S+ \(([0-9.]+)s\)`)
	skipRE   = regexp.MustCompile(`Skipping (\S+): (.*)$`)
	noteRE   = regexp.MustCompile(`^\s*\S+\.go:\d+: ((TIMING |setup: WARNING|setup: .*NOT installed).*)$`)
)

// parseLog reads the top-level subtests of TestConformance and the runner's
// notes from go test -v output.
func parseLog(r io.Reader) (*runLog, error) {
	out := map[string]result{}
	reasons := map[string]string{}
	subMax := map[string]float64{}
	var notes []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := resultRE.FindStringSubmatch(line); m != nil {
			secs, _ := strconv.ParseFloat(m[3], 64)
			out[m[2]] = result{Outcome: m[1], Seconds: secs}
			continue
		}
		if m := subRE.FindStringSubmatch(line); m != nil {
			secs, _ := strconv.ParseFloat(m[2], 64)
			subMax[m[1]] = max(subMax[m[1]], secs)
			continue
		}
		if m := skipRE.FindStringSubmatch(line); m != nil {
			reasons[m[1]] = strings.TrimSpace(m[2])
		}
		if m := noteRE.FindStringSubmatch(line); m != nil {
			notes = append(notes, strings.Join(strings.Fields(m[1]), " "))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for name, secs := range subMax {
		if res, ok := out[name]; ok {
			res.Seconds = max(res.Seconds, secs)
			out[name] = res
		}
	}
	for name, reason := range reasons {
		if res, ok := out[name]; ok && res.Outcome == "SKIP" {
			res.Reason = reason
			out[name] = res
		}
	}
	return &runLog{Results: out, Notes: notes}, nil
}

func writeMarkdown(w io.Writer, file string, r *confv1.ConformanceReport, lg *runLog, cmd string) {
	fmt.Fprintf(w, "Report `%s` (%s): Gateway API %s, channel %s, mode %s; %s %s %s.\n\n",
		file, r.Date, r.GatewayAPIVersion, r.GatewayAPIChannel, r.Mode, r.Organization, r.Project, r.Version)
	if cmd != "" {
		fmt.Fprintf(w, "```\n%s\n```\n\n", cmd)
	}
	profiles := append([]confv1.ProfileReport(nil), r.ProfileReports...)
	sort.Slice(profiles, func(i, j int) bool { return profiles[i].Name < profiles[j].Name })
	if len(profiles) == 0 {
		fmt.Fprintln(w, "The report has no profile results: the suite ran no test (its setup failed; see the notes).")
	}
	if len(profiles) > 0 {
		fmt.Fprintln(w, "| profile | level | result | passed | failed | skipped | failed tests |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	}
	for _, p := range profiles {
		row := func(level string, s confv1.Status) {
			fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %d | %s |\n", p.Name, level, s.Result, s.Passed, s.Failed, s.Skipped, strings.Join(s.FailedTests, ", "))
		}
		row("core", p.Core)
		if p.Extended != nil {
			row("extended", p.Extended.Status)
		}
	}
	fmt.Fprintln(w)
	for _, p := range profiles {
		fmt.Fprintf(w, "- %s: %s", p.Name, p.Summary)
		if p.Extended != nil {
			fmt.Fprintf(w, " Extended features claimed: %s; not claimed: %s.",
				list(p.Extended.SupportedFeatures), list(p.Extended.UnsupportedFeatures))
		}
		fmt.Fprintln(w)
	}
	if lg == nil {
		return
	}
	results := lg.Results
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mesh test | features | counted in | result | time (longest subtest) |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	tests := append([]suite.ConformanceTest(nil), meshtests.MeshConformanceTests...)
	sort.Slice(tests, func(i, j int) bool { return tests[i].ShortName < tests[j].ShortName })
	counts := map[string]int{}
	for _, t := range tests {
		res, ok := results[t.ShortName]
		outcome, secs := "not run", ""
		if ok {
			outcome, secs = strings.ToLower(res.Outcome), fmt.Sprintf("%.1f s", res.Seconds)
			if res.Outcome == "SKIP" && res.Reason != "" {
				outcome = "skip: " + res.Reason
			}
		}
		counts[strings.SplitN(outcome, ":", 2)[0]]++
		var fs []string
		for _, f := range t.Features {
			fs = append(fs, string(f))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", t.ShortName, strings.Join(fs, ", "), profilesOf(t), outcome, secs)
	}
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	fmt.Fprintf(w, "\n%d mesh tests: %s. A test whose features are not all in a profile (core or extended) is run when its features are claimed but counted in no profile.\n", len(tests), strings.Join(parts, ", "))
	if len(lg.Notes) > 0 {
		fmt.Fprintln(w, "\nRun notes (from the log):")
		fmt.Fprintln(w)
		for _, n := range lg.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// profilesOf names the mesh profiles that count test (every feature of the
// test is a core or extended feature of the profile, as the suite decides).
func profilesOf(t suite.ConformanceTest) string {
	var out []string
	for _, p := range []suite.ConformanceProfile{suite.MeshHTTPConformanceProfile, suite.MeshGRPCConformanceProfile} {
		in, ext := true, false
		for _, f := range t.Features {
			switch {
			case p.CoreFeatures.Has(f):
			case p.ExtendedFeatures.Has(f):
				ext = true
			default:
				in = false
			}
		}
		if in {
			level := "core"
			if ext {
				level = "extended"
			}
			out = append(out, fmt.Sprintf("%s (%s)", p.Name, level))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
