package translate

import (
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cond builds a condition without a transition time: the status writer
// fills it when the condition actually changes.
func cond(typ string, ok bool, reason, msg string, gen int64) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen}
}

// problems collects messages for one condition, deduplicated and ordered.
type problems struct {
	reason string
	msgs   []string
}

func (p *problems) add(reason, format string, args ...any) {
	if p.reason == "" {
		p.reason = reason
	}
	m := fmt.Sprintf(format, args...)
	for _, x := range p.msgs {
		if x == m {
			return
		}
	}
	p.msgs = append(p.msgs, m)
}

func (p *problems) empty() bool { return len(p.msgs) == 0 }

func (p *problems) message() string {
	msgs := append([]string(nil), p.msgs...)
	sort.Strings(msgs)
	out := ""
	for i, m := range msgs {
		if i > 0 {
			out += "; "
		}
		out += m
	}
	return out
}
