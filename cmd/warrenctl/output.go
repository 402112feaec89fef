package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// Output formats.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// outputFlag is -o/--output: a value from a fixed set, checked when the
// flag is parsed so a bad value is a usage error.
type outputFlag struct {
	value   string
	allowed []string
}

func (o *outputFlag) String() string { return o.value }
func (o *outputFlag) Type() string   { return "format" }
func (o *outputFlag) Set(v string) error {
	if !slices.Contains(o.allowed, v) {
		return fmt.Errorf("want %s", orList(o.allowed))
	}
	o.value = v
	return nil
}

// addOutputFlag registers -o with its default and allowed values (table,
// json and yaml unless given) and their shell completion.
func addOutputFlag(cmd *cobra.Command, def string, allowed ...string) *outputFlag {
	if len(allowed) == 0 {
		allowed = []string{formatTable, formatJSON, formatYAML}
	}
	o := &outputFlag{value: def, allowed: allowed}
	cmd.Flags().VarP(o, "output", "o", "output format: "+strings.Join(allowed, "|"))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
	return o
}

// orList renders "a, b or c".
func orList(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// writeStructured writes v as indented JSON or as YAML (converted from the
// same JSON, so both formats carry the same fields).
func writeStructured(w io.Writer, format string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	if format == formatJSON {
		_, err := w.Write(buf.Bytes())
		return err
	}
	y, err := yaml.JSONToYAML(buf.Bytes())
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}

// table is an aligned text table: a header in capitals and rows, padded
// with two spaces between columns (kubectl's look).
type table struct {
	header []string
	rows   [][]string
}

func newTable(header ...string) *table { return &table{header: header} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) len() int { return len(t.rows) }

func (t *table) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	line := func(cells []string) {
		for i, c := range cells {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, strings.ReplaceAll(c, "\t", " "))
		}
		fmt.Fprintln(tw)
	}
	if len(t.header) > 0 {
		line(t.header)
	}
	for _, r := range t.rows {
		line(r)
	}
	return tw.Flush()
}

// age renders how long ago t was, kubectl style ("5m3s", "2d"); "-" for
// the zero time.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return duration.HumanDuration(d)
}

// dash returns s, or "-" when it is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// kv writes "key: value" lines aligned on the colon, for describe-style
// sections.
type kv struct {
	tw *tabwriter.Writer
}

func newKV(w io.Writer) *kv { return &kv{tw: tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)} }

func (k *kv) add(key, format string, args ...any) {
	fmt.Fprintf(k.tw, "%s:\t%s\n", key, fmt.Sprintf(format, args...))
}

func (k *kv) flush() error { return k.tw.Flush() }
