package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// section writes a titled block whose body is indented by two spaces.
func section(w io.Writer, title string, body func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := body(&buf); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	text := strings.TrimRight(buf.String(), "\n")
	if text == "" {
		text = "none"
	}
	for _, l := range strings.Split(text, "\n") {
		fmt.Fprintln(w, strings.TrimRight("  "+l, " "))
	}
	return nil
}

func waypointLine(v waypointView) string {
	switch {
	case v.Problem != "":
		return fmt.Sprintf("none: %s: %s", v.Why, v.Problem)
	case v.Gateway == "":
		return "none: " + v.Why
	}
	s := fmt.Sprintf("%s at %s, chosen by %s", v.Gateway, dash(v.Address), v.Why)
	if v.Ready != "" && v.Ready != "True" {
		s += "; NOT READY (Programmed=" + v.Ready + ")"
	}
	return s
}

func conditionsLine(cs []conditionView) string {
	var parts []string
	for _, c := range cs {
		s := c.Type + "=" + c.Status
		if c.Status != "True" {
			s += " (" + c.Reason + ": " + c.Message + ")"
		}
		parts = append(parts, s)
	}
	return dash(strings.Join(parts, ", "))
}

func writeRoutes(w io.Writer, rs []routeView) error {
	for i, r := range rs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s %s/%s on %s, %s\n", r.Kind, r.Namespace, r.Name, r.Parent, r.Role)
		fmt.Fprintf(w, "  status: %s\n", conditionsLine(r.Conditions))
		if len(r.Entries) == 0 {
			fmt.Fprintln(w, "  not in any waypoint table")
			continue
		}
		t := newTable("TABLE", "PORT", "#", "RULE", "MATCH", "BACKENDS", "FILTERS")
		for _, e := range r.Entries {
			t.add(e.Table, fmt.Sprint(e.Port), fmt.Sprint(e.Index), e.Rule, e.Match, dash(strings.Join(e.Backends, ", ")), dash(strings.Join(e.Filters, "; ")))
		}
		var buf bytes.Buffer
		if err := t.write(&buf); err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
			fmt.Fprintln(w, "  "+l)
		}
	}
	return nil
}

func writePolicies(w io.Writer, ps []policyView) error {
	if len(ps) == 0 {
		return nil
	}
	t := newTable("POLICY", "ACTION", "RULES", "L7", "TARGET", "STATUS")
	for _, p := range ps {
		l7 := "no"
		if p.L7 {
			l7 = "yes"
		}
		t.add(p.Name, p.Action, fmt.Sprint(p.Rules), l7, p.Target, conditionsLine(p.Conditions))
	}
	return t.write(w)
}

func writeLines(w io.Writer, ls []string) error {
	for _, l := range ls {
		fmt.Fprintln(w, l)
	}
	return nil
}

func writePodDescription(w io.Writer, d *podDescription) error {
	k := newKV(w)
	k.add("Pod", "%s/%s", d.Namespace, d.Name)
	k.add("Node", "%s%s", dash(d.Node), orEmpty(" (zone ", d.Zone, ")"))
	k.add("IPs", "%s", dash(strings.Join(d.IPs, ", ")))
	k.add("Phase", "%s, ready: %v", dash(d.Phase), d.Ready)
	k.add("Identity", "%s", d.Identity)
	mesh := "no"
	if d.Enrolled {
		mesh = "yes"
	}
	k.add("In the mesh", "%s (%s)", mesh, d.EnrolledWhy)
	k.add("mTLS mode", "%s (%s)", d.MTLSMode, d.MTLSWhy)
	k.add("Waypoint", "%s", waypointLine(d.Waypoint))
	if err := k.flush(); err != nil {
		return err
	}
	steps := []struct {
		title string
		body  func(io.Writer) error
	}{
		{"Services it backs", func(w io.Writer) error {
			if len(d.Services) == 0 {
				return nil
			}
			t := newTable("SERVICE", "PORTS", "WAYPOINT")
			for _, s := range d.Services {
				t.add(s.Service, dash(strings.Join(s.Ports, ", ")), dash(s.Waypoint))
			}
			return t.write(w)
		}},
		{"Routes to it (bound to the Services it backs)", func(w io.Writer) error { return writeRoutes(w, d.InboundRoutes) }},
		{"Routes for its own requests (consumer routes of namespace " + d.Namespace + ")", func(w io.Writer) error { return writeRoutes(w, d.OutboundRoutes) }},
		{"Policies ztunnel enforces on traffic to it", func(w io.Writer) error { return writePolicies(w, d.Policies) }},
	}
	for _, s := range steps {
		if err := section(w, s.title, s.body); err != nil {
			return err
		}
	}
	if len(d.Diagnostics) > 0 {
		return section(w, "Problems", func(w io.Writer) error { return writeLines(w, d.Diagnostics) })
	}
	return nil
}

func writeServiceDescription(w io.Writer, d *serviceDescription) error {
	k := newKV(w)
	k.add("Service", "%s/%s (%s)", d.Namespace, d.Name, d.Type)
	k.add("Hostname", "%s", d.Hostname)
	k.add("Addresses", "%s", dash(strings.Join(d.Addresses, ", ")))
	k.add("Waypoint", "%s", waypointLine(d.Waypoint))
	if d.TrafficPolicy != "" {
		k.add("Traffic policy", "XBackendTrafficPolicy %s", d.TrafficPolicy)
	}
	if err := k.flush(); err != nil {
		return err
	}
	err := section(w, "Ports", func(w io.Writer) error {
		t := newTable("PORT", "TARGET", "NAME", "PROTOCOL", "APP PROTOCOL", "AT THE WAYPOINT")
		for _, p := range d.Ports {
			t.add(fmt.Sprint(p.Port), p.TargetPort, dash(p.Name), p.Protocol, dash(p.AppProtocol), dash(p.L7))
		}
		return t.write(w)
	})
	if err != nil {
		return err
	}
	if err := section(w, "Routes", func(w io.Writer) error { return writeRoutes(w, d.Routes) }); err != nil {
		return err
	}
	if err := section(w, "Policies", func(w io.Writer) error { return writePolicies(w, d.Policies) }); err != nil {
		return err
	}
	err = section(w, "Endpoints", func(w io.Writer) error {
		if len(d.Endpoints) == 0 {
			return nil
		}
		t := newTable("POD", "ADDRESS", "NODE", "READY", "MESH", "IDENTITY", "PORTS")
		for _, e := range d.Endpoints {
			t.add(e.Pod, e.Address, dash(e.Node), yesNo(e.Ready), yesNo(e.Mesh), e.Identity, e.Ports)
		}
		return t.write(w)
	})
	if err != nil {
		return err
	}
	if len(d.Diagnostics) > 0 {
		return section(w, "Problems", func(w io.Writer) error { return writeLines(w, d.Diagnostics) })
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
