package main

import (
	"fmt"
	"io"
	"strings"
)

// writeTrace renders a prediction for people.
func writeTrace(w io.Writer, p *tracePrediction) error {
	k := newKV(w)
	dst := p.Destination.Kind
	switch p.Destination.Kind {
	case "service":
		dst = fmt.Sprintf("Service %s port %d", p.Destination.Name, p.Destination.Port)
	case "workload":
		dst = fmt.Sprintf("pod %s (%s) port %d", p.Destination.Name, p.Destination.Address, p.Destination.Port)
	case "external":
		dst = fmt.Sprintf("%s:%d (not in the mesh)", p.Destination.Address, p.Destination.Port)
	}
	req := fmt.Sprintf("%s %s", p.Request.Method, p.Request.URL)
	if p.Request.GRPC {
		req += " (gRPC)"
	}
	k.add("Request", "%s", req)
	k.add("To", "%s", dst)
	from := fmt.Sprintf("pod %s (%s on %s) as %s", p.Source.Pod, dash(p.Source.Address), dash(p.Source.Node), p.Source.Identity)
	k.add("From", "%s", from)
	if p.Destination.Waypoint != "" {
		k.add("Waypoint", "%s", p.Destination.Waypoint)
	}
	if p.Destination.Protocol != "" {
		k.add("Protocol", "%s", p.Destination.Protocol)
	}
	k.add("Config", "%s", p.ConfigFrom)
	if err := k.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	t := newTable("#", "STEP", "AT", "DECISION")
	for i, h := range p.Hops {
		t.add(fmt.Sprint(i+1), h.Step, h.At, h.Decision)
		for _, d := range h.Details {
			t.add("", "", "", "  "+d)
		}
		for _, rc := range h.Routes {
			verdict := "MATCH"
			if !rc.Matched {
				verdict = "no: " + rc.Why
			}
			t.add("", "", "", fmt.Sprintf("  [%d] %s {%s}: %s", rc.Index, rc.Route, rc.Match, verdict))
		}
	}
	if err := t.write(w); err != nil {
		return err
	}
	fmt.Fprintln(w)
	r := p.Result
	res := newKV(w)
	res.add("Result", "%s", r.Outcome)
	if r.Status != 0 {
		res.add("Status", "%d", r.Status)
	}
	if r.GRPCStatus != "" {
		res.add("gRPC status", "%s", r.GRPCStatus)
	}
	if r.Route != "" {
		res.add("Route", "%s", r.Route)
	}
	res.add("Summary", "%s", r.Summary)
	if err := res.flush(); err != nil {
		return err
	}
	if len(r.Backends) > 0 {
		fmt.Fprintln(w)
		bt := newTable("BACKEND", "WEIGHT", "SHARE", "ENDPOINT", "POD", "NODE", "TUNNEL", "SHARE", "ALLOWED")
		for _, b := range r.Backends {
			name := fmt.Sprintf("%s:%d", b.Service, b.Port)
			if b.Port == 0 {
				name = b.Service
			}
			if b.Invalid != "" {
				bt.add(name, fmt.Sprint(b.Weight), percent(b.Percent), "invalid: "+b.Invalid, "-", "-", "-", "-", "-")
				continue
			}
			if len(b.Endpoints) == 0 {
				bt.add(name, fmt.Sprint(b.Weight), percent(b.Percent), "(no ready endpoint)", "-", "-", "-", "-", "-")
				continue
			}
			for i, ep := range b.Endpoints {
				if i > 0 {
					name = ""
				}
				weight, share := fmt.Sprint(b.Weight), percent(b.Percent)
				if i > 0 {
					weight, share = "", ""
				}
				allowed := "yes"
				if !ep.Allowed {
					allowed = "no"
				}
				bt.add(name, weight, share, ep.Address, ep.Workload, dash(ep.Node), ep.Tunnel, percent(ep.Percent), allowed)
			}
		}
		if err := bt.write(w); err != nil {
			return err
		}
	}
	if len(p.Notes) > 0 {
		fmt.Fprintln(w, "\nNotes:")
		for _, n := range p.Notes {
			fmt.Fprintln(w, "  "+strings.TrimSpace(n))
		}
	}
	return nil
}
